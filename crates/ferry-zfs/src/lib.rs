//! ZFS pools on the NFS host: the planning rules of the `zfs_pool` kind (this file) and its
//! provider ([`provider`]), which runs `zpool` and `zfs` over SSH.
//!
//! A pool is stateful: a failover imports it on the new host. The import happens only after
//! every disk of the pool is attached there and every other host that could hold the pool is
//! fenced, and `zpool import -f` only when the old host could not export it first.
//!
//! # Why the `openssh` crate (over the system `ssh`) and not `russh`
//!
//! The provider drives the system OpenSSH client through the `openssh` crate, one ControlMaster
//! connection per host that every command reuses. It inherits OpenSSH's host-key checking
//! (`StrictHostKeyChecking=yes` with a known_hosts file or a pinned key, the exact semantics
//! operators already know), its key-file and agent authentication, and its keepalives, without
//! ferry reimplementing any of them; it builds in seconds with a handful of small dependencies,
//! where `russh` brings its own cryptography stack to compile and to keep patched. The cost is a
//! runtime dependency on the `ssh` binary, which every machine that administers Linux VMs has,
//! and error details that come as ssh's text (ferry parses the few it must, such as a changed
//! host key's fingerprint).

use ferry_core::fields::{vm, zfs_pool};
use ferry_core::provider::{FieldType as T, IntegerRange, OnChange};
use ferry_core::{
    Action, ChangeClass, FailoverContext, FieldError, FieldSchema as F, InstanceAddress, Kind,
    KindRules, Observation, OutputSchema as O, ResourceAddress, ResourceSpec, StepDraft, StepId,
    Value,
};
use serde_json::json;

pub mod parse;
pub mod provider;
pub mod replication;
pub mod shell;
pub mod ssh;

pub use provider::{ZfsError, ZfsPoolProvider, ZfsProviderConfig};

/// Why a pool's layout never changes: ZFS cannot turn a stripe into a mirror or a raidz in
/// place, and ferry never recreates a pool, which holds data.
const LAYOUT_IS_FIXED: &str = "a pool's vdev layout cannot change in place, and ferry never recreates a pool (it holds data): keep the layout the pool has, or move the data to a new pool by hand, then change the spec";

/// `[zfs_pool.NAME]`
#[derive(Debug, Clone, Copy, Default)]
pub struct ZfsPoolRules;

/// Checks a pool or dataset name against ZFS's naming rules (zfs(8), "naming").
pub fn check_zfs_name(name: &str, what: &str) -> Result<(), String> {
    let components: Vec<&str> = name.split('/').collect();
    for component in &components {
        if component.is_empty() {
            return Err(format!(
                "`{name}` has an empty component: a {what} name cannot have `//` or a leading or trailing `/`"
            ));
        }
        if let Some(bad) = component
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "_-.:".contains(*c)))
        {
            return Err(format!(
                "`{name}` contains `{bad}`: a {what} name may hold letters, digits, `_`, `-`, `.`, `:`"
            ));
        }
    }
    let pool = components[0];
    if !pool.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!("`{name}` must start with a letter"));
    }
    const RESERVED: &[&str] = &["mirror", "raidz", "draid", "spare", "log"];
    if what == "pool"
        && (RESERVED.iter().any(|word| pool.starts_with(word))
            || (pool.len() >= 2
                && pool.starts_with('c')
                && pool[1..2].chars().all(|c| c.is_ascii_digit())))
    {
        return Err(format!(
            "`{name}` is reserved: pool names cannot begin with mirror, raidz, draid, spare, log or c followed by a digit"
        ));
    }
    if name.len() > 255 {
        return Err(format!("`{name}` is longer than ZFS's 255 characters"));
    }
    Ok(())
}

impl KindRules for ZfsPoolRules {
    fn simulate(
        &self,
        step: &ferry_core::SimulatedStep<'_>,
        attributes: &mut ferry_core::Attributes,
    ) {
        use ferry_core::{InstanceAddress, Value};
        match step.action {
            Action::Export => {
                attributes.insert("imported".to_owned(), Value::Bool(false));
            }
            Action::Import => {
                if let Some(host) = step.inputs.get(zfs_pool::HOST) {
                    attributes.insert(zfs_pool::HOST.to_owned(), host.clone());
                }
                attributes.insert("imported".to_owned(), Value::Bool(true));
            }
            // The pool is now the replica's, on its host and disks, and writable.
            Action::Promote => {
                for field in [zfs_pool::HOST, zfs_pool::DISKS] {
                    if let Some(value) = step.inputs.get(field) {
                        attributes.insert(field.to_owned(), value.clone());
                    }
                }
                attributes.insert("imported".to_owned(), Value::Bool(true));
                attributes.insert(zfs_pool::REPLICATION_ROLE.to_owned(), json!("primary"));
                attributes.remove("readonly");
            }
            // A hot standby's replica (an instance of a generation) is seeded: read-only, and
            // as current as the round that seeded it.
            Action::Create if step.instance.generation.is_some() => {
                attributes.insert(zfs_pool::REPLICATION_ROLE.to_owned(), json!("replica"));
                attributes.insert("readonly".to_owned(), Value::Bool(true));
                attributes.insert(zfs_pool::REPLICA_LAG_SECONDS.to_owned(), json!(0));
                attributes.remove(zfs_pool::REPLICATE_FROM);
            }
            _ => {}
        }
        let text = |name: &str| {
            attributes
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let pool = text(zfs_pool::POOL_NAME).unwrap_or_else(|| step.instance.address.name.clone());
        // The export names the host's address, as the real provider's does.
        let host_ip = text(zfs_pool::HOST)
            .and_then(|host| host.parse::<InstanceAddress>().ok())
            .and_then(|host| (step.outputs_of)(&host))
            .and_then(|host| {
                host.get(vm::PRIVATE_IP)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "127.0.0.1".to_owned());
        attributes.insert("mountpoint".to_owned(), Value::from(format!("/{pool}")));
        attributes.insert(
            "nfs_export".to_owned(),
            Value::from(format!("{host_ip}:/export/{pool}")),
        );
        attributes.insert("health".to_owned(), Value::from("ONLINE"));
        ferry_core::SimulatedStep::default_output(attributes, "imported", Value::Bool(true));
    }

    fn kind(&self) -> Kind {
        Kind::ZfsPool
    }

    fn description(&self) -> &'static str {
        "A ZFS pool on managed disks, imported on a VM over SSH, with its datasets and NFS shares"
    }

    fn fields(&self) -> &'static [F] {
        const FIELDS: &[F] = &[
            F::optional(
                zfs_pool::POOL_NAME,
                T::String,
                Some("the resource's name"),
                OnChange::Replace("a pool is never renamed by ferry"),
                "the pool's name in ZFS",
            ),
            F::required(
                zfs_pool::HOST,
                T::Reference(Kind::Vm),
                OnChange::InPlace,
                "the VM that imports the pool and serves it over NFS",
            ),
            F::required(
                zfs_pool::DISKS,
                T::ReferenceList(Kind::Disk),
                OnChange::InPlace,
                "every managed disk holding a vdev of the pool",
            ),
            F::optional(
                zfs_pool::REPLICA_DISKS,
                T::ReferenceList(Kind::Disk),
                None,
                OnChange::InPlace,
                "a hot standby's disks (`[failover] standby = \"hot\"`): as many as disks, each at least as large as its counterpart, attached to the same host resource; the standby generation's host keeps a read-only replica of the pool on them",
            ),
            F::optional(
                zfs_pool::REPLICA_INTERVAL,
                T::String,
                Some("1m"),
                OnChange::InPlace,
                "with replica_disks: how often a round of replication runs (a snapshot of every dataset, then an increment sent to the replica), 10s to 1d",
            ),
            F::optional(
                zfs_pool::REPLICA_MAX_LAG,
                T::String,
                Some("twice replica_interval"),
                OnChange::InPlace,
                "with replica_disks: the recovery point objective; a replica further behind the primary than this is a failover readiness blocker and a watch alert",
            ),
            F::optional(
                "layout",
                T::String,
                Some("stripe"),
                OnChange::Refuse(LAYOUT_IS_FIXED),
                "stripe, mirror or raidz, for a pool that ferry creates; an existing pool's layout is read, and a change is refused",
            ),
            F::optional(
                "datasets",
                T::Table,
                None,
                OnChange::InPlace,
                "dataset name to its properties: mountpoint, sharenfs, quota",
            ),
            F::optional(
                zfs_pool::DRILL,
                T::String,
                None,
                OnChange::InPlace,
                "set by `ferry drill` in a drill's spec, never by hand: the drill's id, on a pool whose every disk is a copy of production's (`copy_of`); its create imports the copy of production's pool on those disks (with -f, since production's host last had it) instead of refusing it, and refuses when the host also sees production's pool",
            ),
            F::optional(
                "ssh_user",
                T::String,
                Some("the VM's admin_username"),
                OnChange::InPlace,
                "user for SSH to the host",
            ),
            F::optional(
                "ssh_port",
                T::Integer(IntegerRange::PORT),
                Some("22"),
                OnChange::InPlace,
                "SSH port of the host",
            ),
            F::optional(
                "ssh_key_file",
                T::String,
                Some("the SSH agent"),
                OnChange::InPlace,
                "private key file for SSH",
            ),
            F::optional(
                "known_hosts",
                T::String,
                Some("~/.ssh/known_hosts"),
                OnChange::InPlace,
                "known_hosts file that verifies the host's key",
            ),
            F::optional(
                "host_key",
                T::String,
                None,
                OnChange::InPlace,
                "the host's public key, pinned (OpenSSH format); overrides known_hosts",
            ),
        ];
        FIELDS
    }

    fn outputs(&self) -> &'static [O] {
        &[
            O {
                name: "mountpoint",
                description: "where the pool's root dataset is mounted on the host",
            },
            O {
                name: "nfs_export",
                description: "HOST:PATH of the folder that holds every shared dataset (else the pool's mountpoint), for hooks",
            },
            O {
                name: "health",
                description: "ONLINE, DEGRADED, FAULTED, ... as zpool reports it",
            },
        ]
    }

    fn validate(&self, spec: &ResourceSpec) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let pool = spec
            .str_field(zfs_pool::POOL_NAME)
            .unwrap_or(&spec.address.name)
            .to_owned();
        let pool_field = if spec.field(zfs_pool::POOL_NAME).is_some() {
            zfs_pool::POOL_NAME
        } else {
            ""
        };
        if let Err(message) = check_zfs_name(&pool, "pool") {
            errors.push(
                FieldError::new(pool_field, message)
                    .with_help("set pool_name to a valid ZFS pool name"),
            );
        }
        if let Some(datasets) = spec.field("datasets").and_then(Value::as_object) {
            for (name, properties) in datasets {
                let field = format!("datasets.{name}");
                if let Err(message) = check_zfs_name(&format!("{pool}/{name}"), "dataset") {
                    errors.push(FieldError::new(&field, message).with_help(
                        "rename the dataset: letters, digits, `_`, `-`, `.`, `:`, with `/` between levels",
                    ));
                }
                let Some(properties) = properties.as_object() else {
                    errors.push(
                        FieldError::new(&field, "a dataset is a table of properties").with_help(
                            "write it as { mountpoint = \"/home/x\", sharenfs = \"on\" }",
                        ),
                    );
                    continue;
                };
                for key in properties.keys() {
                    if !["mountpoint", "sharenfs", "quota", "compression"].contains(&key.as_str()) {
                        errors.push(
                            FieldError::new(
                                format!("{field}.{key}"),
                                format!("unknown dataset property `{key}`"),
                            )
                            .with_help("ferry manages mountpoint, sharenfs, quota and compression"),
                        );
                    }
                }
            }
        }
        errors.extend(validate_replica(spec));
        if let Some(layout) = spec.str_field("layout")
            && !["stripe", "mirror", "raidz"].contains(&layout)
        {
            errors.push(
                FieldError::new("layout", format!("`{layout}` is not a layout ferry builds"))
                    .with_help("use stripe, mirror or raidz"),
            );
        }
        let disk_count = spec
            .field(zfs_pool::DISKS)
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        // What `zpool create` accepts: a mirror or a raidz vdev of one disk is refused.
        if let Some(layout) = spec.str_field("layout")
            && ["mirror", "raidz"].contains(&layout)
            && (1..2).contains(&disk_count)
        {
            errors.push(
                FieldError::new(
                    "layout",
                    format!("a {layout} needs at least 2 disks, and the pool lists {disk_count}"),
                )
                .with_help(
                    "list at least 2 disks in disks, or use layout = \"stripe\" for a pool on one disk",
                ),
            );
        }
        if spec
            .field(zfs_pool::DISKS)
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            errors.push(
                FieldError::new(zfs_pool::DISKS, "a pool needs at least one disk")
                    .with_help("list the disks that hold its vdevs"),
            );
        }
        errors
    }

    fn classify_change(&self, attribute: &str, before: &Value, after: &Value) -> ChangeClass {
        if (attribute == zfs_pool::DISKS || attribute == zfs_pool::REPLICA_DISKS) && before != after
        {
            return ChangeClass::Refuse(
                "ferry does not add or remove a pool's vdevs: change the pool with zpool, then the spec"
                    .to_owned(),
            );
        }
        ferry_core::provider::schema_class(self, attribute)
    }

    fn estimate_seconds(&self, action: Action, _: &ResourceSpec) -> u64 {
        match action {
            Action::Import => 20,
            // Seconds, not minutes: the replica's datasets rolled back to their last common
            // snapshot and mounted (a hand-over adds one last increment, seconds of changes).
            Action::Promote => 15,
            Action::Export => 10,
            Action::Create => 30,
            _ => 5,
        }
    }

    fn is_observed(&self, field: &str) -> bool {
        !matches!(
            field,
            "ssh_user"
                | "ssh_port"
                | "ssh_key_file"
                | "known_hosts"
                | "host_key"
                | zfs_pool::REPLICA_DISKS
                | zfs_pool::REPLICA_INTERVAL
                | zfs_pool::REPLICA_MAX_LAG
                | zfs_pool::DRILL
        )
    }

    fn failover(&self, context: &FailoverContext<'_>) -> Result<Vec<StepDraft>, String> {
        let spec = context.spec;
        let me = spec.address.at(None);
        let to = context.to_generation;
        let Some(new_host) = reference(spec, zfs_pool::HOST).map(|host| host.at(Some(to))) else {
            return Ok(Vec::new());
        };
        let observed_host = context
            .observed
            .attribute(zfs_pool::HOST)
            .and_then(Value::as_str)
            .and_then(|text| text.parse::<InstanceAddress>().ok());
        if observed_host.as_ref() == Some(&new_host) {
            return Ok(Vec::new());
        }
        if spec.field(zfs_pool::REPLICA_DISKS).is_some() {
            return hot_failover(context, new_host, observed_host);
        }
        // The host that may hold the pool now: what the pool's reading says, or else the
        // previous generation of the spec's host.
        let old_host = observed_host
            .clone()
            .unwrap_or_else(|| new_host.address.at(Some(context.from_generation)));
        let fence = StepId::new(&old_host, Action::Fence);
        let mut drafts = Vec::new();
        let exportable = matches!(context.observed, Observation::Present { .. })
            && context
                .observed
                .attribute("imported")
                .and_then(Value::as_bool)
                .unwrap_or(false);
        // Exported already (by an earlier apply that was then interrupted): importable
        // without -f, with nothing left to export.
        let flag = |name: &str| context.observed.attribute(name).and_then(Value::as_bool);
        let exported = matches!(context.observed, Observation::Present { .. })
            && flag("imported") == Some(false)
            && flag("importable") == Some(true)
            && flag("needs_force") == Some(false)
            && flag("imported_elsewhere") != Some(true);
        if exportable {
            drafts.push(
                StepDraft::new(
                    me.clone(),
                    Action::Export,
                    format!("{old_host} answers: export the pool cleanly before it is fenced"),
                )
                .input(zfs_pool::HOST, json!(old_host.to_string()))
                .before(fence.clone()),
            );
        }
        drafts.extend(fence_unless_fenced(
            context,
            &old_host,
            format!("the pool {} moves to generation {to}: deallocate the old host so that it can never import it again", spec.address),
        ));
        let mut import = StepDraft::new(
            me,
            Action::Import,
            format!("generation {to}'s host is {new_host}"),
        )
        .input(zfs_pool::HOST, json!(new_host.to_string()))
        .input(zfs_pool::FORCE, json!(!exportable && !exported))
        // Asked over SSH right before the import: one that still answers with the pool
        // imported was not fenced, whatever ARM says.
        .input("fenced_hosts", json!([old_host.to_string()]))
        .after(fence)
        .after(StepId::new(&new_host, Action::Create));
        for disk in pool_disks(spec, context.observed)? {
            import = import.after(StepId::new(&disk.at(None), Action::Attach));
        }
        if exportable {
            import = import.after(StepId::new(&spec.address.at(None), Action::Export));
        } else if !exported {
            import.warning = Some(format!(
                "the pool could not be exported from {old_host}: it is imported with -f, only after {old_host} is fenced"
            ));
        }
        drafts.push(import);
        Ok(drafts)
    }
}

/// A hot standby's failover (`replica_disks`): no disk moves; the replica on the new
/// generation's host is promoted. When the old primary still answers with the pool imported,
/// it hands the pool over (its shares stopped, a last increment sent, then it becomes the
/// replica itself): nothing is lost, and nothing needs fencing. Otherwise its host is fenced
/// first and the replica is rolled back to its newest complete snapshot: what was written
/// after it is lost, at most the replica's lag.
fn hot_failover(
    context: &FailoverContext<'_>,
    new_host: InstanceAddress,
    observed_host: Option<InstanceAddress>,
) -> Result<Vec<StepDraft>, String> {
    let spec = context.spec;
    let to = context.to_generation;
    let me = spec.address.at(None);
    let replica = spec.address.at(Some(to));
    let role = |observation: &Observation| {
        observation
            .attribute(zfs_pool::REPLICATION_ROLE)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    // A standby's pool that reads `primary` was promoted by ferry (only a promotion sets that
    // role on it) in a failover that did not finish: a kill between the role's change and
    // the mounts. The promotion is finished (its steps find the role set and go on), unless
    // the old side reads primary too: two writable copies, which ferry never chooses between.
    let old_role = role(context.observed);
    let under_way = match context.snapshot.get(&replica) {
        Some(observation @ Observation::Present { .. })
            if role(observation).as_deref() == Some("replica") =>
        {
            false
        }
        Some(observation @ Observation::Present { .. })
            if role(observation).as_deref() == Some("primary") =>
        {
            if old_role.as_deref() == Some("primary") {
                return Err(format!(
                    "both {me} on generation {} and the hot standby's {replica} read primary: two writable copies of the pool, and ferry never chooses between them; compare them, keep one, and make the other a replica by destroying it (`zpool destroy` on its host) so that the next apply seeds it",
                    context.from_generation
                ));
            }
            true
        }
        Some(Observation::Present { .. }) => {
            return Err(format!(
                "the hot standby's pool {replica} is there but is no replica (its replication_role reads {}): ferry promotes only a read-only replica",
                context
                    .snapshot
                    .get(&replica)
                    .and_then(role)
                    .unwrap_or_else(|| "nothing".to_owned())
            ));
        }
        Some(Observation::Unknown { reason }) => {
            return Err(format!(
                "the hot standby's replica {replica} cannot be read ({reason}), and a hot failover promotes it: nothing else holds the data on generation {to}"
            ));
        }
        Some(Observation::Absent) | None => {
            return Err(format!(
                "the hot standby has no replica on generation {to} ({replica} reads absent): a hot failover promotes the replica, and the data's disks stay where they are; seed it with ferry apply, or fail over warm (standby = \"warm\") to move the disks"
            ));
        }
    };
    let old_host =
        observed_host.unwrap_or_else(|| new_host.address.at(Some(context.from_generation)));
    let answers = matches!(context.observed, Observation::Present { .. })
        && context
            .observed
            .attribute("imported")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    let mut drafts = Vec::new();
    // How much an unplanned promotion loses, as the replica last read it.
    let lost = context
        .snapshot
        .get(&replica)
        .and_then(|reading| reading.attribute(zfs_pool::REPLICA_LAG_SECONDS))
        .and_then(Value::as_u64)
        .map_or_else(String::new, |lag| {
            format!(" (the replica read {lag} s behind the primary: about that much)")
        });
    let mut promote = if answers {
        StepDraft::new(
            me,
            Action::Promote,
            if under_way {
                format!(
                    "{new_host}'s pool was promoted by a hand-over that did not finish: {old_host} answers, and the promotion is finished with nothing lost"
                )
            } else {
                format!(
                    "{old_host} answers: it stops serving, sends its last increment and becomes the replica; {new_host}'s replica is promoted with nothing lost"
                )
            },
        )
        .input(zfs_pool::HAND_OVER_FROM, json!(old_host.to_string()))
    } else {
        let fence = StepId::new(&old_host, Action::Fence);
        drafts.extend(fence_unless_fenced(
            context,
            &old_host,
            format!(
                "the replica of {} on generation {to} is promoted: deallocate the old primary's host so that it can never write to the pool again",
                spec.address
            ),
        ));
        StepDraft::new(
            me,
            Action::Promote,
            if under_way {
                format!(
                    "{new_host}'s pool was promoted by a failover that did not finish, and {old_host} does not answer: once it is fenced, the promotion is finished"
                )
            } else {
                format!(
                    "{old_host} does not answer: once it is fenced, {new_host}'s replica is rolled back to its newest complete snapshot and promoted; what was written after that snapshot is lost{}",
                    lost
                )
            },
        )
        .input("fenced_hosts", json!([old_host.to_string()]))
        .after(fence)
    };
    // The planner resolved the pool on the side it goes to, the replica's.
    promote = promote.input(zfs_pool::HOST, json!(new_host.to_string()));
    if let Some(disks) = context.inputs.get(zfs_pool::DISKS) {
        promote = promote.input(zfs_pool::DISKS, disks.clone());
    }
    drafts.push(promote);
    Ok(drafts)
}

/// The fence (a deallocation) of the host the pool was on, unless it reads fenced already.
fn fence_unless_fenced(
    context: &FailoverContext<'_>,
    host: &InstanceAddress,
    reason: String,
) -> Option<StepDraft> {
    if context
        .snapshot
        .get(host)
        .is_some_and(Observation::is_fenced_host)
    {
        return None;
    }
    Some(StepDraft::new(host.clone(), Action::Fence, reason).input("mode", json!("deallocate")))
}

/// What a pool's replica fields must say, on their own (the checks across resources, such as
/// each replica disk's host and size, are the spec loader's).
fn validate_replica(spec: &ResourceSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let duration = |field: &str| -> Option<Result<std::time::Duration, String>> {
        let text = spec.str_field(field)?;
        Some(
            humantime::parse_duration(text.trim())
                .map_err(|error| format!("`{text}` is not a duration ({error})")),
        )
    };
    let Some(replica) = spec
        .field(zfs_pool::REPLICA_DISKS)
        .and_then(Value::as_array)
    else {
        for field in [zfs_pool::REPLICA_INTERVAL, zfs_pool::REPLICA_MAX_LAG] {
            if spec.field(field).is_some() {
                errors.push(
                    FieldError::new(
                        field,
                        format!("{field} is set, but the pool has no replica_disks"),
                    )
                    .with_help("list the hot standby's disks in replica_disks, or remove it"),
                );
            }
        }
        return errors;
    };
    let disks = spec
        .field(zfs_pool::DISKS)
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let count = |n: usize| {
        if n == 1 {
            "1 disk".to_owned()
        } else {
            format!("{n} disks")
        }
    };
    if replica.len() != disks {
        errors.push(
            FieldError::new(
                zfs_pool::REPLICA_DISKS,
                format!(
                    "the replica has {} and the pool {}: the replica is built with the pool's layout, disk for disk",
                    count(replica.len()),
                    count(disks)
                ),
            )
            .with_help("list as many replica_disks as disks"),
        );
    }
    let interval = match duration(zfs_pool::REPLICA_INTERVAL) {
        Some(Ok(interval)) => {
            if !(10..=86_400).contains(&interval.as_secs()) {
                errors.push(
                    FieldError::new(
                        zfs_pool::REPLICA_INTERVAL,
                        format!("{} is outside 10s to 1d", humantime::format_duration(interval)),
                    )
                    .with_help("a round under 10 seconds snapshots faster than it sends; over a day is no hot standby"),
                );
            }
            interval
        }
        Some(Err(message)) => {
            errors.push(
                FieldError::new(zfs_pool::REPLICA_INTERVAL, message)
                    .with_help("write it as 30s, 1m or 5m"),
            );
            zfs_pool::DEFAULT_REPLICA_INTERVAL
        }
        None => zfs_pool::DEFAULT_REPLICA_INTERVAL,
    };
    match duration(zfs_pool::REPLICA_MAX_LAG) {
        Some(Ok(max_lag)) if max_lag < interval => errors.push(
            FieldError::new(
                zfs_pool::REPLICA_MAX_LAG,
                format!(
                    "{} is less than replica_interval ({}): the replica lags by up to an interval between rounds, so readiness would be lost every round",
                    humantime::format_duration(max_lag),
                    humantime::format_duration(interval)
                ),
            )
            .with_help("set replica_max_lag to at least replica_interval (twice it leaves room for a slow round)"),
        ),
        Some(Err(message)) => errors.push(
            FieldError::new(zfs_pool::REPLICA_MAX_LAG, message)
                .with_help("write it as 2m or 5m"),
        ),
        _ => {}
    }
    errors
}

fn reference(spec: &ResourceSpec, field: &str) -> Option<ResourceAddress> {
    spec.str_field(field)?.parse().ok()
}

/// Every disk the import must wait for: the spec's `disks` and every disk the pool was read
/// with, so that no vdev the pool really has is left behind. Refused when the reading shows
/// more vdevs than disks that ferry can name (a vdev on a disk the spec does not list): the
/// import would then wait for none of that disk's steps, and a striped pool would not import,
/// a raidz one would come up degraded.
fn pool_disks(
    spec: &ResourceSpec,
    observed: &Observation,
) -> Result<std::collections::BTreeSet<ResourceAddress>, String> {
    let addresses = |value: Option<&Value>| -> Vec<ResourceAddress> {
        value
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|text| text.parse::<ResourceAddress>().ok())
            .collect()
    };
    let listed = addresses(spec.field(zfs_pool::DISKS));
    let read = addresses(observed.attribute(zfs_pool::DISKS));
    let vdevs = observed
        .attribute("vdevs")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    // The provider names a vdev's disk only where it finds one of the spec's disks at the path
    // it expects on the host it read (an empty list when the pool sits on another host's luns,
    // as after an import on the new generation): only a partly named pool says a vdev is on a
    // disk the spec does not list.
    if !read.is_empty() && vdevs > read.len() {
        return Err(format!(
            "the pool has {vdevs} vdevs but only {} of them are on disks the spec lists ({}): the import would not wait for the others' attach; list every disk that holds a vdev of the pool in disks",
            read.len(),
            read.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(listed.into_iter().chain(read).collect())
}

#[cfg(test)]
mod tests {
    use super::check_zfs_name;

    /// Issue 18: a `layout` change planned "No changes" (the field was not compared) while the
    /// kinds reference said it replaces the pool. The layout is read, and a change refused.
    #[test]
    fn a_layout_change_is_read_and_refused() {
        use super::*;
        use crate::parse::{VdevRow, layout_of};
        assert!(ZfsPoolRules.is_observed("layout"));
        let refused =
            ZfsPoolRules.classify_change("layout", &Value::from("stripe"), &Value::from("mirror"));
        assert!(
            matches!(&refused, ChangeClass::Refuse(why) if why.contains("never recreates a pool")),
            "{refused:?}"
        );
        let row = |name: &str, depth| VdevRow {
            name: name.to_owned(),
            state: "ONLINE".to_owned(),
            depth,
            note: String::new(),
        };
        assert_eq!(
            layout_of(&[row("/dev/sdb", 1), row("/dev/sdc", 1)]),
            "stripe"
        );
        assert_eq!(
            layout_of(&[row("mirror-0", 1), row("/dev/sdb", 2), row("/dev/sdc", 2)]),
            "mirror"
        );
        assert_eq!(
            layout_of(&[row("raidz1-0", 1), row("/dev/sdb", 2)]),
            "raidz"
        );
        // As zfs-fuse prints them.
        for (captured, layout) in [
            (
                include_str!("parse/captured/status-stripe-online.txt"),
                "stripe",
            ),
            (
                include_str!("parse/captured/status-mirror-online.txt"),
                "mirror",
            ),
        ] {
            let status = crate::parse::parse_status("zpool status", captured).unwrap();
            assert_eq!(layout_of(&status.vdevs), layout);
        }
    }

    /// The failover drafts: a fence of the old host always precedes the import, and `force`
    /// is set only when the old host could not export the pool.
    #[test]
    fn the_import_follows_a_fence_and_forces_only_without_an_export() {
        use super::*;
        use ferry_core::Snapshot;
        let spec = ResourceSpec::new("zfs_pool.home".parse().unwrap())
            .with("host", json!("vm.nfs"))
            .with("disks", json!(["disk.home0"]));
        let imported = Observation::present(
            serde_json::from_value(json!({"host": "vm.nfs@g1", "imported": true})).unwrap(),
        );
        let unreachable = Observation::Unknown {
            reason: "ssh: connection refused".into(),
        };
        let listed = |needs_force: bool| {
            Observation::present(
                serde_json::from_value(json!({
                    "imported": false, "importable": true, "needs_force": needs_force
                }))
                .unwrap(),
            )
        };
        // Exported by an apply that was interrupted after it, and a pool ZFS says was last
        // used by another system.
        let (exported, abandoned) = (listed(false), listed(true));
        let snapshot = Snapshot::new(1);
        let inputs = ferry_core::Attributes::new();
        let mut lines = Vec::new();
        for observed in [&imported, &unreachable, &exported, &abandoned] {
            let drafts = ZfsPoolRules
                .failover(&FailoverContext {
                    spec: &spec,
                    observed,
                    from_generation: 1,
                    to_generation: 2,
                    snapshot: &snapshot,
                    inputs: &inputs,
                })
                .unwrap();
            let import = drafts
                .iter()
                .find(|draft| draft.action == Action::Import)
                .unwrap();
            assert!(import.after.contains(&StepId("vm.nfs@g1:fence".into())));
            lines.push(format!(
                "{}: force={} after={:?}",
                observed.describe(),
                import.inputs["force"],
                import
                    .after
                    .iter()
                    .map(|id| id.0.as_str())
                    .collect::<Vec<_>>()
            ));
        }
        assert_eq!(
            lines,
            [
                "present, healthy: force=false after=[\"vm.nfs@g1:fence\", \"vm.nfs@g2:create\", \"disk.home0:attach\", \"zfs_pool.home:export\"]",
                "unknown: ssh: connection refused: force=true after=[\"vm.nfs@g1:fence\", \"vm.nfs@g2:create\", \"disk.home0:attach\"]",
                "present, healthy: force=false after=[\"vm.nfs@g1:fence\", \"vm.nfs@g2:create\", \"disk.home0:attach\"]",
                "present, healthy: force=true after=[\"vm.nfs@g1:fence\", \"vm.nfs@g2:create\", \"disk.home0:attach\"]",
            ]
        );
    }

    #[test]
    fn zfs_names_follow_zfs_rules() {
        let results: Vec<String> = [
            ("home", "pool"),
            ("home/staging", "dataset"),
            ("mirror1", "pool"),
            ("c0", "pool"),
            ("1home", "pool"),
            ("home//x", "dataset"),
            ("home/st aging", "dataset"),
        ]
        .into_iter()
        .map(|(name, what)| match check_zfs_name(name, what) {
            Ok(()) => "ok".to_owned(),
            Err(message) => message,
        })
        .collect();
        assert_eq!(
            results,
            [
                "ok",
                "ok",
                "`mirror1` is reserved: pool names cannot begin with mirror, raidz, draid, spare, log or c followed by a digit",
                "`c0` is reserved: pool names cannot begin with mirror, raidz, draid, spare, log or c followed by a digit",
                "`1home` must start with a letter",
                "`home//x` has an empty component: a dataset name cannot have `//` or a leading or trailing `/`",
                "`home/st aging` contains ` `: a dataset name may hold letters, digits, `_`, `-`, `.`, `:`",
            ]
        );
    }
}
