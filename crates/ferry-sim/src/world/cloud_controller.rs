//! AKS's cloud controller, one per cluster, running only while that cluster's API server is up
//! (a down API server is a dead control plane): each tick it reconciles every `LoadBalancer`
//! Service with the cluster's `kubernetes` load balancer, as cloud-provider-azure does.
//!
//! For a Service annotated with `service.beta.kubernetes.io/azure-pip-name` (and
//! `service.beta.kubernetes.io/azure-load-balancer-resource-group`, the IP's group; the node
//! group without it), the controller makes sure the load balancer has a frontend named `a` and
//! the Service's uid without dashes holding that IP, and a rule and a probe per port (both
//! `{frontend}-{PROTOCOL}-{port}`; the rule to the `kubernetes` pool with floating IP, the probe
//! on the port's `nodePort`). It writes through the same path as
//! an ARM PUT, so the same refusals apply: while the IP is held elsewhere the Service's latest
//! event is the refusal (`PublicIPAddressInUse: ...`), and the next tick tries again. A
//! frontend removed over ARM comes back on the next tick. A deleted Service's frontend and rules
//! are removed, then the Service goes (its finalizer); a Service whose type is no longer
//! `LoadBalancer` loses its frontend, its ingress and the finalizer. While a write on the load balancer that
//! held the IP runs (ferry's removal of its frontend), the IP is held by that write and the
//! controller's write is refused as busy (`AnotherOperationInProgress`), then retried.
//!
//! The controller's writes are not ARM requests a client made: they are neither counted nor
//! recorded as events, but they do start long-running operations and hold what they change.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use serde_json::{Value, json};

use super::ids::{Kind, kind_of, lower, subscription_of};
use super::managed_clusters::node_resource_group_id;
use super::{SimRequest, World};
use crate::kubernetes::{
    BACKEND_ANNOTATION, LOAD_BALANCER_FINALIZER, PIP_GROUP_ANNOTATION, PIP_NAME_ANNOTATION,
    SharedServices,
};

/// The long-running operations the controllers' writes started, to be completed on time.
pub(crate) type StartedOperations = Vec<(String, Duration)>;

/// Where each rule's connections go: the listening address `{public ip}:{frontend port}` and the
/// backend the Service names.
pub(crate) type ForwardingTable = BTreeMap<SocketAddrV4, SocketAddr>;

/// What one Service asks of its cluster's load balancer.
struct Wanted {
    balancer: String,
    public_ip: String,
    frontend: String,
    rules: Vec<WantedRule>,
}

/// One port of a Service: its rule and probe (both named `{frontend}-{PROTOCOL}-{port}`), and
/// the backend its connections go to.
struct WantedRule {
    name: String,
    protocol: String,
    port: u16,
    /// The port the probe asks on the nodes: the Service's `nodePort`.
    probe_port: u16,
    backend: Option<SocketAddr>,
}

fn annotation<'a>(service: &'a Value, name: &str) -> Option<&'a str> {
    service
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(name))
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
}

/// A frontend's name for a Service, as cloud-provider-azure names it: `a` and the uid without
/// its dashes.
fn frontend_name(service: &Value) -> String {
    let uid = service
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    format!("a{}", uid.replace('-', ""))
}

/// The backend of one port: the annotation's `IP:PORT`, or its `IP` with the port's
/// `targetPort`.
fn backend_of(service: &Value, port: &Value) -> Option<SocketAddr> {
    let text = annotation(service, BACKEND_ANNOTATION)?;
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Some(address);
    }
    let ip: IpAddr = text.parse().ok()?;
    let target = port
        .get("targetPort")
        .and_then(Value::as_u64)
        .or_else(|| port.get("port").and_then(Value::as_u64))?;
    Some(SocketAddr::new(ip, u16::try_from(target).ok()?))
}

fn has_finalizer(service: &Value) -> bool {
    service
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|finalizers| {
            finalizers
                .iter()
                .any(|item| item == LOAD_BALANCER_FINALIZER)
        })
}

fn items<'a>(body: &'a Value, collection: &str) -> Vec<&'a Value> {
    body.pointer(&format!("/properties/{collection}"))
        .and_then(Value::as_array)
        .map(|list| list.iter().collect())
        .unwrap_or_default()
}

fn named(body: &Value, collection: &str, name: &str) -> bool {
    items(body, collection)
        .iter()
        .any(|item| item.get("name").and_then(Value::as_str) == Some(name))
}

impl World {
    /// One tick of every running cluster's cloud controller; returns the operations its writes
    /// started.
    pub(crate) fn run_cloud_controllers(&mut self) -> StartedOperations {
        let clusters: Vec<(String, SharedServices)> = self
            .readyz
            .iter()
            .filter(|(_, server)| server.is_up())
            .map(|(cluster, server)| (cluster.clone(), server.services()))
            .collect();
        let mut started = Vec::new();
        for (cluster, services) in clusters {
            let snapshot = services
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .snapshot();
            for service in snapshot {
                let load_balancer =
                    service.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer");
                // A Service that is no longer a `LoadBalancer` but still carries the finalizer
                // had a frontend: it is removed as a deleted Service's is.
                if !load_balancer && !has_finalizer(&service) {
                    continue;
                }
                let deleted = service.pointer("/metadata/deletionTimestamp").is_some();
                let releasing = deleted || !load_balancer;
                let outcome = self.reconcile_service(&cluster, &service, releasing, &mut started);
                let mut services = services
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                match outcome {
                    Reconciled::Gone if deleted => services.finalize(&service),
                    Reconciled::Gone => services.release(&service),
                    Reconciled::Status(status) => services.record(&service, status, !releasing),
                }
            }
        }
        started
    }

    /// What a Service asks for; `Ok(None)` while its cluster's node group is not there yet (the
    /// cluster's create has not ended).
    fn wanted(&self, cluster: &str, service: &Value) -> Result<Option<Wanted>, String> {
        let stored = self
            .resources
            .get(cluster)
            .ok_or_else(|| "the cluster is gone".to_owned())?;
        let Some(node_group) = node_resource_group_id(&stored.id, &stored.body)
            .filter(|group| self.resources.contains_key(&lower(group)))
        else {
            return Ok(None);
        };
        let Some(ip_name) = annotation(service, PIP_NAME_ANNOTATION) else {
            return Err(format!(
                "SimulatorUnsupported: the simulator's cloud controller takes only a named public IP ({PIP_NAME_ANNOTATION})"
            ));
        };
        let ip_group = match annotation(service, PIP_GROUP_ANNOTATION) {
            Some(group) => format!(
                "/subscriptions/{}/resourceGroups/{group}",
                subscription_of(&stored.id)
            ),
            None => node_group.clone(),
        };
        let public_ip =
            format!("{ip_group}/providers/Microsoft.Network/publicIPAddresses/{ip_name}");
        if !self.resources.contains_key(&lower(&public_ip)) {
            // What cloud-provider-azure reports for a named IP it cannot find.
            return Err(format!(
                "PublicIPNotFound: user supplied IP address {ip_name} was not found in resource group {}",
                ip_group.rsplit('/').next().unwrap_or_default()
            ));
        }
        let frontend = frontend_name(service);
        let rules = service
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|port| {
                let number = u16::try_from(port.get("port")?.as_u64()?).ok()?;
                let protocol = port
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP")
                    .to_ascii_uppercase();
                let probe_port = port
                    .get("nodePort")
                    .and_then(Value::as_u64)
                    .and_then(|node_port| u16::try_from(node_port).ok())
                    .unwrap_or(number);
                Some(WantedRule {
                    name: format!("{frontend}-{protocol}-{number}"),
                    protocol,
                    port: number,
                    probe_port,
                    backend: backend_of(service, port),
                })
            })
            .collect();
        Ok(Some(Wanted {
            balancer: format!("{node_group}/providers/Microsoft.Network/loadBalancers/kubernetes"),
            public_ip,
            frontend,
            rules,
        }))
    }

    fn reconcile_service(
        &mut self,
        cluster: &str,
        service: &Value,
        deleting: bool,
        started: &mut StartedOperations,
    ) -> Reconciled {
        let wanted = match self.wanted(cluster, service) {
            Ok(Some(wanted)) => wanted,
            Ok(None) | Err(_) if deleting => return Reconciled::Gone,
            Ok(None) => return Reconciled::Status(pending_status(service)),
            Err(error) => return Reconciled::Status(failure_status(service, &error)),
        };
        let Some(stored) = self.resources.get(&lower(&wanted.balancer)).cloned() else {
            if deleting {
                return Reconciled::Gone;
            }
            // The controller makes the load balancer again, as cloud-provider-azure does.
            let body = json!({
                "location": self.resources.get(cluster).and_then(|cluster| cluster.body.get("location").cloned()).unwrap_or_else(|| json!("westeurope")),
                "sku": {"name": "Standard"},
                "properties": {"backendAddressPools": [{"name": "kubernetes"}]},
            });
            return match self.controller_put(&wanted.balancer, body, started) {
                Ok(()) => Reconciled::Status(pending_status(service)),
                Err(error) => Reconciled::Status(failure_status(service, &error)),
            };
        };
        let current = self.response_body(&stored);
        let mut desired = current.clone();
        let prefix = format!("{}-", wanted.frontend);
        let properties = desired["properties"]
            .as_object_mut()
            .expect("stored bodies have properties");
        let keep_other = |list: Option<&Value>, own: &dyn Fn(&str) -> bool| -> Vec<Value> {
            list.and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter(|item| {
                            !own(item.get("name").and_then(Value::as_str).unwrap_or_default())
                        })
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        };
        let is_frontend = |name: &str| name == wanted.frontend;
        let is_rule = |name: &str| name.starts_with(&prefix);
        let mut frontends = keep_other(properties.get("frontendIPConfigurations"), &is_frontend);
        let mut rules = keep_other(properties.get("loadBalancingRules"), &is_rule);
        let mut probes = keep_other(properties.get("probes"), &is_rule);
        let mut pools = keep_other(properties.get("backendAddressPools"), &|_| false);
        if !deleting {
            let mut frontend = items(&current, "frontendIPConfigurations")
                .into_iter()
                .find(|item| item.get("name").and_then(Value::as_str) == Some(&wanted.frontend))
                .cloned()
                .unwrap_or_else(|| json!({"name": wanted.frontend}));
            frontend["properties"] = json!({"publicIPAddress": {"id": wanted.public_ip}});
            frontends.push(frontend);
            if !named(&current, "backendAddressPools", "kubernetes") {
                pools.push(json!({"name": "kubernetes"}));
            }
            // As cloud-provider-azure writes them: floating IP on (the backend port is the
            // Service's port), a TCP probe of the node port.
            for rule in &wanted.rules {
                probes.push(json!({
                    "name": rule.name,
                    "properties": {"protocol": "Tcp", "port": rule.probe_port, "intervalInSeconds": 5, "numberOfProbes": 2},
                }));
                rules.push(json!({
                    "name": rule.name,
                    "properties": {
                        "frontendIPConfiguration": {"id": format!("{}/frontendIPConfigurations/{}", stored.id, wanted.frontend)},
                        "backendAddressPool": {"id": format!("{}/backendAddressPools/kubernetes", stored.id)},
                        "probe": {"id": format!("{}/probes/{}", stored.id, rule.name)},
                        "protocol": if rule.protocol == "UDP" { "Udp" } else { "Tcp" },
                        "frontendPort": rule.port,
                        "backendPort": rule.port,
                        "enableFloatingIP": true,
                    },
                }));
            }
        }
        // Compare what the controller owns, not what Network filled in.
        let unchanged = same_names_and_references(&current, &frontends, &rules, &pools, &probes);
        for rule in &wanted.rules {
            let rule_id = lower(&format!("{}/loadBalancingRules/{}", stored.id, rule.name));
            match rule.backend {
                Some(backend) if !deleting => {
                    self.service_backends.insert(rule_id, backend);
                }
                _ => {
                    self.service_backends.remove(&rule_id);
                }
            }
        }
        if unchanged {
            if deleting {
                return Reconciled::Gone;
            }
            return Reconciled::Status(self.settled_status(service, &wanted, &current));
        }
        properties.insert("frontendIPConfigurations".to_owned(), json!(frontends));
        properties.insert("loadBalancingRules".to_owned(), json!(rules));
        properties.insert("backendAddressPools".to_owned(), json!(pools));
        properties.insert("probes".to_owned(), json!(probes));
        match self.controller_put(&stored.id, desired, started) {
            Ok(()) => Reconciled::Status(pending_status(service)),
            Err(error) => Reconciled::Status(failure_status(service, &error)),
        }
    }

    /// A write through ARM's own path (`write`): the same preconditions and refusals.
    fn controller_put(
        &mut self,
        id: &str,
        body: Value,
        started: &mut StartedOperations,
    ) -> Result<(), String> {
        let request = SimRequest {
            method: "PUT".to_owned(),
            path: id.to_owned(),
            query: Vec::new(),
            headers: Vec::new(),
            body: serde_json::to_vec(&body).unwrap_or_default(),
        };
        match self.write(&request, id) {
            Ok((_, operation)) => {
                started.extend(operation);
                Ok(())
            }
            Err(refusal) => {
                let error: Value = serde_json::from_slice(&refusal.body).unwrap_or(Value::Null);
                let code = error
                    .pointer("/error/code")
                    .and_then(Value::as_str)
                    .unwrap_or("Unknown");
                let message = error
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                self.count_cloud_controller_refusal(code);
                Err(format!("{code}: {message}"))
            }
        }
    }

    /// The status of a Service whose frontend is as it wants: its IP once the frontend holds it
    /// and the load balancer's write has ended.
    fn settled_status(&self, service: &Value, wanted: &Wanted, balancer: &Value) -> Value {
        let holds = items(balancer, "frontendIPConfigurations")
            .iter()
            .any(|frontend| {
                frontend.get("name").and_then(Value::as_str) == Some(&wanted.frontend)
                    && frontend
                        .pointer("/properties/publicIPAddress/id")
                        .and_then(Value::as_str)
                        .is_some_and(|id| id.eq_ignore_ascii_case(&wanted.public_ip))
            });
        let succeeded = balancer
            .pointer("/properties/provisioningState")
            .and_then(Value::as_str)
            == Some("Succeeded");
        let address = self
            .resources
            .get(&lower(&wanted.public_ip))
            .and_then(|ip| ip.body.pointer("/properties/ipAddress"))
            .and_then(Value::as_str);
        match address {
            Some(address) if holds && succeeded => {
                let mut status = base_status(service);
                status["loadBalancer"] = json!({"ingress": [{"ip": address}]});
                status["ferrySim"]["lastEvent"] = json!("EnsuredLoadBalancer");
                if let Some(object) = status["ferrySim"].as_object_mut() {
                    object.remove("lastError");
                    object.remove("lastErrorCode");
                }
                status
            }
            _ => pending_status(service),
        }
    }

    /// Where connections to each public IP's frontend ports go: every rule of a load balancer
    /// whose frontend holds an IP and whose Service names a backend.
    pub(crate) fn forwarding_table(&self) -> ForwardingTable {
        let mut table = ForwardingTable::new();
        if self.service_backends.is_empty() {
            return table;
        }
        // A frontend carries traffic from the moment its load balancer's body has it, whatever
        // write is in progress on the load balancer: an unrelated update drops no flow.
        for stored in self.resources.values() {
            if kind_of(&stored.id) != Kind::LoadBalancer {
                continue;
            }
            for rule in items(&stored.body, "loadBalancingRules") {
                let Some(backend) = rule
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|id| self.service_backends.get(&lower(id)))
                else {
                    continue;
                };
                let Some(port) = rule
                    .pointer("/properties/frontendPort")
                    .and_then(Value::as_u64)
                    .and_then(|port| u16::try_from(port).ok())
                else {
                    continue;
                };
                let frontend_id = rule
                    .pointer("/properties/frontendIPConfiguration/id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let address = items(&stored.body, "frontendIPConfigurations")
                    .into_iter()
                    .find(|frontend| {
                        frontend
                            .get("id")
                            .and_then(Value::as_str)
                            .is_some_and(|id| id.eq_ignore_ascii_case(frontend_id))
                    })
                    .and_then(|frontend| frontend.pointer("/properties/publicIPAddress/id"))
                    .and_then(Value::as_str)
                    .and_then(|ip| self.resources.get(&lower(ip)))
                    .and_then(|ip| ip.body.pointer("/properties/ipAddress"))
                    .and_then(Value::as_str)
                    .and_then(|address| address.parse::<Ipv4Addr>().ok());
                if let Some(address) = address {
                    table.insert(SocketAddrV4::new(address, port), *backend);
                }
            }
        }
        table
    }
}

/// What a reconciliation leaves: the Service's new status, or a deleted Service that may go.
enum Reconciled {
    Status(Value),
    Gone,
}

/// Whether the frontends, rules and pools the controller wants are those the load balancer has,
/// by name and by what each references.
fn same_names_and_references(
    current: &Value,
    frontends: &[Value],
    rules: &[Value],
    pools: &[Value],
    probes: &[Value],
) -> bool {
    let shape = |items: Vec<&Value>| -> Vec<(String, String)> {
        let mut shape: Vec<(String, String)> = items
            .into_iter()
            .map(|item| {
                let name = item
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let properties = item.get("properties").cloned().unwrap_or(Value::Null);
                let reference = [
                    "/publicIPAddress/id",
                    "/frontendIPConfiguration/id",
                    "/backendAddressPool/id",
                    "/probe/id",
                    "/frontendPort",
                    "/port",
                    "/protocol",
                ]
                .iter()
                .map(|pointer| {
                    properties
                        .pointer(pointer)
                        .map(Value::to_string)
                        .unwrap_or_default()
                        .to_ascii_lowercase()
                })
                .collect::<Vec<_>>()
                .join(" ");
                (name, reference)
            })
            .collect();
        shape.sort();
        shape
    };
    shape(items(current, "frontendIPConfigurations")) == shape(frontends.iter().collect())
        && shape(items(current, "loadBalancingRules")) == shape(rules.iter().collect())
        && shape(items(current, "backendAddressPools")) == shape(pools.iter().collect())
        && shape(items(current, "probes")) == shape(probes.iter().collect())
}

/// The Service's status as it was, with the simulator's own field.
fn base_status(service: &Value) -> Value {
    let mut status = service.get("status").cloned().unwrap_or_else(|| json!({}));
    if !status.is_object() {
        status = json!({});
    }
    if !status.get("ferrySim").is_some_and(Value::is_object) {
        status["ferrySim"] = json!({});
    }
    status
}

/// A Service whose frontend was just written or is not settled yet: no ingress until it is.
fn pending_status(service: &Value) -> Value {
    let mut status = base_status(service);
    status["loadBalancer"] = json!({});
    status
}

/// A Service whose reconciliation was refused: the refusal is its latest event, and it has no
/// ingress.
fn failure_status(service: &Value, error: &str) -> Value {
    let mut status = pending_status(service);
    let code = error.split(':').next().unwrap_or_default();
    status["ferrySim"]["lastError"] = json!(error);
    status["ferrySim"]["lastErrorCode"] = json!(code);
    status["ferrySim"]["lastEvent"] = json!(format!("SyncLoadBalancerFailed: {error}"));
    status
}
