//! ferry's TOML spec language: loading a folder of `*.toml` files into a validated [`Spec`].
//!
//! Loading never stops at the first mistake: every problem in every file is collected into
//! [`SpecErrors`], each pointing at the file, line and column of the offending text with a
//! help line, so that one `ferry validate` run shows everything to fix.
//!
//! A [`Spec`] is only ever built from a spec without problems: the planner can rely on every
//! reference naming an existing resource of the right kind, every output existing, no cycle,
//! and every kind's own validation passing.

mod error;
mod graph;
mod load;
mod reference;
pub mod resolve;
mod suggest;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_core::{Attributes, ResourceAddress, ResourceSpec, RuleBook, Value};

pub use error::{Problem, SpecError, SpecErrors};
pub use reference::kinds_reference;

use error::SourceFile;

/// A validated spec: the deployment, its policies, and every resource.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The spec's folder (for a single file: its parent); hooks run relative to it.
    pub root: PathBuf,
    pub deployment: Deployment,
    pub failover: FailoverPolicy,
    pub state: StateConfig,
    /// `[limits]`: the steps of a kind an apply runs at once, for the kinds it names; the
    /// others keep their provider's own limit. `ferry apply --kind-parallelism` overrides it.
    pub limits: ferry_core::limits::KindLimits,
    pub watch: WatchPolicy,
    /// `[variables]`, after `--var` overrides.
    pub variables: BTreeMap<String, Value>,
    /// The value of every `${env.NAME}` the spec holds: secrets by default, sealed in plans
    /// (`ferry_plan::plan`) and masked in errors and output.
    pub secrets: ferry_core::secret::Secrets,
    /// `[zones."NAME"]`: the DNS zones that records may live in, with their backend settings.
    pub zones: BTreeMap<String, Attributes>,
    pub resources: BTreeMap<ResourceAddress, ResourceSpec>,
    origins: BTreeMap<ResourceAddress, Origin>,
    dependencies: BTreeMap<ResourceAddress, Vec<Dependency>>,
    /// The resources a warm standby builds ahead ([`Spec::standby_resources`]); empty when the
    /// standby is cold.
    standby: BTreeSet<ResourceAddress>,
}

/// Where a resource was written, for messages from later stages.
#[derive(Debug, Clone)]
struct Origin {
    file: Arc<SourceFile>,
    /// The table header (`[vm.nfs]`) or inline table.
    header: Range<usize>,
}

/// `[deployment]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub name: String,
    pub subscription: Option<String>,
    pub location: String,
}

/// `[failover]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverPolicy {
    pub mode: FailoverMode,
    /// The resources whose bad health starts a failover.
    pub triggers: Vec<ResourceAddress>,
    /// When the generation a failover leaves is retired.
    pub retire_old: ferry_core::RetireOld,
    /// Whether the next generation waits, built ahead, for the failover.
    pub standby: Standby,
}

/// `[failover] standby`: what of the next generation exists before a failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Standby {
    /// Nothing: a failover builds the next generation from nothing.
    #[default]
    Cold,
    /// The next generation's resources that do not need the data (the network, the cluster,
    /// the NFS VM, the hooks marked `standby = true`) are built ahead and kept ready; a
    /// failover moves the data onto them and builds only what needs it.
    Warm,
    /// Warm, and each pool's replica (`replica_disks`) kept on the standby's host by
    /// continuous replication: a failover promotes it and moves no disk.
    Hot,
}

impl Standby {
    pub const CHOICES: &'static str = "cold, warm or hot";

    pub fn as_str(self) -> &'static str {
        match self {
            Standby::Cold => "cold",
            Standby::Warm => "warm",
            Standby::Hot => "hot",
        }
    }
}

impl std::str::FromStr for Standby {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        match text {
            "cold" => Ok(Standby::Cold),
            "warm" => Ok(Standby::Warm),
            "hot" => Ok(Standby::Hot),
            _ => Err(()),
        }
    }
}

/// `[watch]`: what `ferry watch`'s watchers of the deployment agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchPolicy {
    /// How many watchers must each have seen a trigger unhealthy for their hold time before
    /// the leader fails over automatically; 1 (the default) is the leader alone.
    pub quorum: u32,
}

impl Default for WatchPolicy {
    fn default() -> Self {
        Self { quorum: 1 }
    }
}

/// When `ferry plan` shows a failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailoverMode {
    /// Never: only reconcile.
    Off,
    /// Only with `--failover`.
    #[default]
    Manual,
    /// As soon as a trigger reads unhealthy.
    Automatic,
}

/// `[state]`: where ferry keeps what it must remember.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateConfig {
    /// A state folder on this machine, relative paths taken from the spec's folder.
    Local { path: PathBuf },
    /// A blob in Azure Storage, locked with a lease.
    AzureBlob {
        account: String,
        container: String,
        blob: String,
        /// The account's blob endpoint (Azurite, sovereign clouds); `None` for Azure's public
        /// `https://ACCOUNT.blob.core.windows.net`.
        endpoint: Option<String>,
        /// The environment variable that holds a container SAS URL; without it, an Entra ID
        /// token from the same credential chain as ARM. The SAS itself is never in a spec.
        sas_url_env: Option<String>,
        /// Extra CA certificates to trust (PEM), resolved against the spec's folder.
        ca_file: Option<PathBuf>,
    },
}

/// What the caller adds to the spec's files.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--var NAME=VALUE`: overrides of variables declared in `[variables]`.
    pub variables: BTreeMap<String, String>,
    /// The process environment, for `${env.NAME}`; passed in so that tests are hermetic.
    pub environment: BTreeMap<String, String>,
}

/// One resource that another depends on, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dependency {
    pub address: ResourceAddress,
    pub via: DependencyVia,
}

/// How a dependency is written in the spec.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DependencyVia {
    /// A reference field (`vm = "vm.nfs"`, `disks = ["disk.home0"]`): `field` is the field's
    /// name as the kind's schema has it (the schema's own text: a large spec has hundreds of
    /// thousands of references, and a copy of the name for each was an allocation each).
    Reference { field: &'static str },
    /// `${kind.name.output}` inside a field: `field` is the path of the string that holds it
    /// (`env.KUBECONFIG`, `values[0]`).
    Interpolation { field: String, output: String },
    /// `depends_on = ["kind.name"]`.
    DependsOn,
}

impl Spec {
    /// Every resource this one depends on, with why, each once: reference fields in the
    /// order of the kind's schema, then interpolations by field name and position, then
    /// `depends_on` in the order written.
    pub fn dependencies(&self, address: &ResourceAddress) -> &[Dependency] {
        self.dependencies.get(address).map_or(&[], Vec::as_slice)
    }

    /// Every resource's [`Spec::dependencies`], ordered by address: for a walk over every
    /// resource, side by side with [`Spec::resources`], rather than a lookup for each.
    pub fn all_dependencies(&self) -> impl Iterator<Item = (&ResourceAddress, &[Dependency])> {
        self.dependencies
            .iter()
            .map(|(address, dependencies)| (address, dependencies.as_slice()))
    }

    /// The resources a warm standby builds ahead of a failover, in the generation after the
    /// serving one: every replaceable resource that needs nothing stateful, directly or
    /// through another resource (the resource group, the network, the cluster, the NFS VM,
    /// its addresses), and the hooks marked `standby = true` (a hub deployed idle). Empty
    /// when `[failover] standby` is cold or the failover mode is off.
    pub fn standby_resources(&self) -> &BTreeSet<ResourceAddress> {
        &self.standby
    }

    /// The pools a hot standby keeps a replica of (`[failover] standby = "hot"`, each with its
    /// `replica_disks`); none otherwise.
    pub fn hot_pools(&self) -> impl Iterator<Item = &ResourceSpec> {
        let hot = self.failover.standby == Standby::Hot && self.failover.mode != FailoverMode::Off;
        self.resources
            .range(ResourceAddress::new(ferry_core::Kind::ZfsPool, "")..)
            .take_while(|(address, _)| address.kind == ferry_core::Kind::ZfsPool)
            .map(|(_, resource)| resource)
            .filter(move |resource| {
                hot && resource.ensure != ferry_core::Ensure::Absent
                    && resource
                        .field(ferry_core::fields::zfs_pool::REPLICA_DISKS)
                        .is_some()
            })
    }

    /// Whether `address` is built ahead in the standby generation.
    pub fn is_standby(&self, address: &ResourceAddress) -> bool {
        self.standby.contains(address)
    }

    /// `file:line:column` where the resource's table starts, for messages from later stages.
    pub fn location_of(&self, address: &ResourceAddress) -> Option<String> {
        let origin = self.origins.get(address)?;
        Some(origin.file.position(origin.header.start))
    }
}

/// A pool's `replica_disks`, as addresses (none for any other resource).
pub(crate) fn replica_disks(resource: &ResourceSpec) -> Vec<ResourceAddress> {
    if resource.address.kind != ferry_core::Kind::ZfsPool {
        return Vec::new();
    }
    resource
        .field(ferry_core::fields::zfs_pool::REPLICA_DISKS)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|disk| disk.as_str()?.parse().ok())
        .collect()
}

/// The name of a hook's field that puts it in a warm standby.
pub const STANDBY_FIELD: &str = "standby";

/// Whether a resource could be built ahead in a standby generation on its own account: a
/// replaceable resource that is not a hook, or a hook marked `standby = true`. It is in the
/// standby only if everything it needs is too ([`standby_closure`]).
pub(crate) fn standby_eligible(resource: &ResourceSpec) -> bool {
    let kind = resource.address.kind;
    if !kind.is_replaceable() {
        return false;
    }
    kind != ferry_core::Kind::Hook
        || resource.field(STANDBY_FIELD).and_then(Value::as_bool) == Some(true)
}

/// Which resources a standby generation can build with no data present: the eligible ones
/// (`eligible`, [`standby_eligible`]) whose dependencies are all in it too, or identities
/// outside every generation (a static IP's address). Settled in
/// dependency order, without recursion (a chain of 100,000 hooks is a spec like another);
/// a resource on a cycle (refused at load anyway) is settled as neither.
pub(crate) fn standby_closure(
    dependencies: &BTreeMap<ResourceAddress, Vec<Dependency>>,
    eligible: impl Fn(&ResourceAddress) -> bool,
) -> BTreeMap<ResourceAddress, bool> {
    let mut waiting: BTreeMap<&ResourceAddress, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&ResourceAddress, Vec<&ResourceAddress>> = BTreeMap::new();
    for (address, needs) in dependencies {
        let needs: Vec<&ResourceAddress> = needs
            .iter()
            .map(|dependency| &dependency.address)
            .filter(|dependency| *dependency != address && dependencies.contains_key(*dependency))
            .collect();
        waiting.insert(address, needs.len());
        for dependency in needs {
            dependents.entry(dependency).or_default().push(address);
        }
    }
    let mut ready: Vec<&ResourceAddress> = waiting
        .iter()
        .filter(|(_, count)| **count == 0)
        .map(|(address, _)| *address)
        .collect();
    let mut settled: BTreeMap<ResourceAddress, bool> = BTreeMap::new();
    while let Some(address) = ready.pop() {
        // An identity outside every generation (a static IP, a DNS record) is there for the
        // standby as for the serving generation: needing it keeps nothing out. Data does.
        let inside = eligible(address)
            && dependencies[address].iter().all(|dependency| {
                dependency.address == *address
                    || is_identity(dependency.address.kind)
                    || settled.get(&dependency.address).copied().unwrap_or(false)
            });
        settled.insert(address.clone(), inside);
        for dependent in dependents.get(address).into_iter().flatten() {
            let count = waiting.get_mut(dependent).expect("every dependent waits");
            *count -= 1;
            if *count == 0 {
                ready.push(dependent);
            }
        }
    }
    settled
}

/// A stateful kind that holds an identity rather than data: a standby may use it ahead of any
/// failover ([`Kind::holds_data`](ferry_core::Kind::holds_data)).
pub(crate) fn is_identity(kind: ferry_core::Kind) -> bool {
    kind.is_stateful() && !kind.holds_data()
}

/// Loads a spec: a folder of `*.toml` files (sorted by name, not recursive) or one file.
pub fn load(path: &Path, options: &LoadOptions, rules: &RuleBook) -> Result<Spec, SpecErrors> {
    let unreadable = |reason: std::io::Error| {
        SpecErrors::new(vec![SpecError::new(
            Problem::Unreadable {
                path: path.display().to_string(),
                reason: reason.to_string(),
            },
            None,
        )])
    };
    let (root, paths) = if path.is_dir() {
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(path).map_err(unreadable)? {
            let entry_path = entry.map_err(unreadable)?.path();
            if entry_path
                .extension()
                .is_some_and(|extension| extension == "toml")
                && entry_path.is_file()
            {
                paths.push(entry_path);
            }
        }
        paths.sort();
        if paths.is_empty() {
            return Err(SpecErrors::new(vec![
                SpecError::new(
                    Problem::NoSpecFiles {
                        path: path.display().to_string(),
                    },
                    None,
                )
                .help("point ferry at a folder of spec files, such as specs/data100"),
            ]));
        }
        (path.to_path_buf(), paths)
    } else {
        let parent = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        (parent.to_path_buf(), vec![path.to_path_buf()])
    };
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for file in paths {
        match std::fs::read_to_string(&file) {
            Ok(text) => files.push((file, text)),
            Err(reason) => errors.push(SpecError::new(
                Problem::Unreadable {
                    path: file.display().to_string(),
                    reason: reason.to_string(),
                },
                None,
            )),
        }
    }
    if !errors.is_empty() {
        return Err(SpecErrors::new(errors));
    }
    load_sources(&root, files, options, rules)
}

/// Loads a spec from files already in memory, named as they should appear in messages.
pub fn load_sources(
    root: &Path,
    files: Vec<(PathBuf, String)>,
    options: &LoadOptions,
    rules: &RuleBook,
) -> Result<Spec, SpecErrors> {
    load::load(root, files, options, rules)
}
