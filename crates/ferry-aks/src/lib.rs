//! Planning rules of AKS managed clusters, and of the static public IP their ingress takes
//! over in a failover (`static_ip`).
//!
//! The cluster is replaceable and it is the usual failover trigger: ARM may call it fine while
//! its API server does not answer, which is exactly the data100 outage. Clusters cannot move
//! between resource groups, so a failover always builds a new one.

mod provider;
mod static_ip;
mod static_ip_provider;

pub use provider::{AksClusterProvider, AksError};
pub use static_ip::StaticIpRules;
pub use static_ip_provider::StaticIpProvider;

use ferry_core::naming::{self, check_field};
use ferry_core::provider::{
    FieldType as T, IntegerRange, LOCATION_IS_FIXED, NAME_IS_THE_ID, OnChange,
};
use ferry_core::{
    Action, FieldError, FieldSchema as F, Kind, KindRules, OutputSchema as O, ResourceSpec, Value,
};

/// `[aks_cluster.NAME]`
#[derive(Debug, Clone, Copy, Default)]
pub struct AksClusterRules;

impl KindRules for AksClusterRules {
    /// The nodes are VMs billed while the cluster exists, whether its API server answers or not.
    fn upkeep(&self, observed: &ferry_core::Attributes) -> Option<String> {
        use ferry_core::Value;
        let count = observed.get("node_count").and_then(Value::as_i64);
        let size = observed.get("node_vm_size").and_then(Value::as_str);
        Some(match (count, size) {
            (Some(1), Some(size)) => format!("1 node of {size}"),
            (Some(count), Some(size)) => format!("{count} nodes of {size}"),
            _ => "its nodes".to_owned(),
        })
    }

    fn simulate(
        &self,
        step: &ferry_core::SimulatedStep<'_>,
        attributes: &mut ferry_core::Attributes,
    ) {
        use ferry_core::Value;
        let text = |name: &str| {
            attributes
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let prefix = text("dns_prefix").unwrap_or_else(|| step.instance.address.name.clone());
        let location = text("location").unwrap_or_else(|| "westeurope".to_owned());
        let fqdn = format!("{prefix}-{:x}.hcp.{location}.azmk8s.io", step.number);
        attributes.insert("fqdn".to_owned(), Value::from(fqdn));
        attributes.insert(
            "node_resource_group".to_owned(),
            Value::from(format!("MC_{prefix}")),
        );
        let kubeconfig = format!("/memory/kubeconfig/{}", step.instance);
        attributes.insert("kubeconfig".to_owned(), Value::from(kubeconfig));
    }

    fn kind(&self) -> Kind {
        Kind::AksCluster
    }

    fn description(&self) -> &'static str {
        "An AKS managed Kubernetes cluster; its health includes a probe of the API server's /readyz"
    }

    fn fields(&self) -> &'static [F] {
        const FIELDS: &[F] = &[
            F::required("name", T::String, NAME_IS_THE_ID, "cluster name"),
            F::required(
                "resource_group",
                T::Reference(Kind::ResourceGroup),
                OnChange::Replace("an AKS cluster cannot move to another resource group"),
                "the resource group that holds it",
            ),
            F::optional(
                "location",
                T::String,
                Some("the deployment's location"),
                LOCATION_IS_FIXED,
                "Azure region",
            ),
            F::required(
                "dns_prefix",
                T::String,
                OnChange::Replace("an AKS cluster's dnsPrefix cannot change"),
                "prefix of the API server's host name",
            ),
            F::optional(
                "kubernetes_version",
                T::String,
                Some("the region's default"),
                OnChange::InPlace,
                "Kubernetes version; a change is an in-place upgrade",
            ),
            F::optional(
                "node_count",
                T::Integer(IntegerRange::new(1, 1000)),
                Some("3"),
                OnChange::InPlace,
                "nodes in the system pool",
            ),
            F::optional(
                "node_vm_size",
                T::String,
                Some("Standard_D4s_v5"),
                OnChange::Replace("the system pool's VM size cannot change in place"),
                "VM size of the system pool",
            ),
            F::optional(
                "vnet",
                T::Reference(Kind::Vnet),
                None,
                OnChange::Replace("an AKS cluster cannot change virtual network"),
                "the virtual network of its nodes",
            ),
            F::optional(
                "subnet",
                T::String,
                Some("default"),
                OnChange::Replace("an AKS cluster cannot change subnet"),
                "the subnet of its nodes",
            ),
            F::optional("tags", T::StringMap, None, OnChange::InPlace, "Azure tags"),
        ];
        FIELDS
    }

    fn outputs(&self) -> &'static [O] {
        &[
            O {
                name: "id",
                description: "the Azure resource id",
            },
            O {
                name: "name",
                description: "the cluster name",
            },
            O {
                name: "fqdn",
                description: "the API server's host name",
            },
            O {
                name: "node_resource_group",
                description: "the resource group AKS manages for the nodes",
            },
            O {
                name: "kubeconfig",
                description: "path of a file (mode 0600) with the user kubeconfig, for hooks",
            },
        ]
    }

    fn validate(&self, spec: &ResourceSpec) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = [
            check_field(spec, "name", &naming::AKS_CLUSTER),
            check_field(spec, "dns_prefix", &naming::AKS_DNS_PREFIX),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let Some(count) = spec.field("node_count").and_then(Value::as_i64)
            && !(1..=1000).contains(&count)
        {
            errors.push(
                FieldError::new(
                    "node_count",
                    format!("{count} nodes is outside what AKS allows"),
                )
                .with_help("use 1 to 1000 nodes"),
            );
        }
        errors
    }

    fn estimate_seconds(&self, action: Action, _: &ResourceSpec) -> u64 {
        match action {
            Action::Create | Action::Replace => 480,
            Action::Update => 300,
            Action::Delete | Action::Retire => 300,
            _ => 60,
        }
    }
}
