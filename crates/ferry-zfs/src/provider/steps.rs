//! A step's target (pool, settings, host, expected devices) and the export, create and update
//! steps; `run_step` turns a plan step into one of them.

use ferry_core::fields::zfs_pool;
use ferry_core::{
    Action, ApplyContext, Attributes, InstanceAddress, ResourceAddress, Step, StepOutcome, Value,
};
use serde_json::json;

use super::host::{Host, PoolState, WantedPool, command_failed, existing_paths, pool_state, query};
use super::import::Mounting;
use super::read::{expected_devices, imported_attributes};
use super::settings::PoolSettings;
use super::{ZfsError, ZfsPoolProvider};
use crate::parse::{self, DatasetRow, PoolStatus};
use crate::shell::{command_line, quote};
use crate::ssh::SshError;

/// The hosts a step's `fenced_hosts` names.
pub(super) struct FencedHosts {
    /// It names at least one: the plan fenced them before the step, so an import may take -f.
    pub(super) named: bool,
    /// Those that can be addressed, each asked over SSH right before an import.
    pub(super) askable: Vec<Host>,
}

/// What a step works with.
pub(super) struct StepTarget<'a> {
    pub(super) address: &'a ResourceAddress,
    pub(super) settings: PoolSettings,
    pub(super) host: Host,
    pub(super) expected: Vec<(InstanceAddress, String)>,
    /// The step is a hot standby's replica's (an instance of a generation).
    pub(super) replica: bool,
}

impl StepTarget<'_> {
    pub(super) fn pool(&self) -> &str {
        &self.settings.name
    }

    /// The pool this step looks for on its host: by name, on the step's own disks.
    pub(super) fn wanted(&self) -> WantedPool<'_> {
        WantedPool {
            name: self.pool(),
            devices: &self.expected,
            replica: self.replica,
        }
    }

    pub(super) fn label(&self) -> String {
        self.address.to_string()
    }

    /// Runs a command that changes the pool. If the connection drops, the command may or may
    /// not have taken effect: the caller reads the state again rather than repeating it.
    pub(super) async fn change(
        &self,
        arguments: &[&str],
    ) -> Result<Result<(), ZfsError>, SshError> {
        let command = command_line(arguments.iter().copied());
        let output = self.host.connection.run(&command).await?;
        if output.success() {
            Ok(Ok(()))
        } else {
            Ok(Err(command_failed(
                &self.host,
                &self.label(),
                &command,
                &output,
            )))
        }
    }

    /// The spec's disks whose device is not in the host's device folder.
    pub(super) async fn missing_disks(&self) -> Result<Vec<String>, ZfsError> {
        let paths: Vec<String> = self.expected.iter().map(|(_, path)| path.clone()).collect();
        let present = existing_paths(&self.host, &paths).await?;
        Ok(self
            .expected
            .iter()
            .filter(|(_, path)| !present.contains(path))
            .map(|(disk, path)| format!("{disk} is not at {path}"))
            .collect())
    }

    /// The pool is ONLINE with every expected device ONLINE.
    pub(super) fn verify(&self, status: &PoolStatus) -> Result<(), ZfsError> {
        let mut problems: Vec<String> = status
            .devices()
            .filter(|row| row.state != "ONLINE")
            .map(|row| {
                let disk = self
                    .expected
                    .iter()
                    .find(|(_, path)| path == row.path())
                    .map_or_else(String::new, |(disk, _)| format!(" ({disk})"));
                format!("{}{disk} is {}", row.path(), row.state)
            })
            .collect();
        for (disk, path) in &self.expected {
            if !status.devices().any(|row| row.path() == path) {
                problems.push(format!("{disk} ({path}) is not a vdev of the pool"));
            }
        }
        if status.state == "ONLINE" && problems.is_empty() {
            Ok(())
        } else {
            Err(ZfsError::NotOnline {
                pool: self.label(),
                host: self.host.instance.to_string(),
                state: status.state.clone(),
                problems,
            })
        }
    }

    pub(super) fn outcome(&self, status: &PoolStatus, datasets: &[DatasetRow]) -> StepOutcome {
        let mut outputs = imported_attributes(
            &self.settings,
            &self.host,
            status,
            datasets,
            &self.expected,
            false,
        );
        // Outputs are what other resources reference; the dataset table stays in the reading.
        outputs.remove("datasets");
        StepOutcome { outputs }
    }

    async fn export(&self) -> Result<StepOutcome, ZfsError> {
        let not_imported = || {
            let mut outputs = Attributes::new();
            outputs.insert("imported".into(), json!(false));
            StepOutcome { outputs }
        };
        match pool_state(&self.host, self.wanted()).await? {
            PoolState::Imported { .. } => {}
            _ => return Ok(not_imported()),
        }
        match self.change(&["zpool", "export", self.pool()]).await {
            Ok(Ok(())) => Ok(not_imported()),
            Ok(Err(error)) => Err(error),
            Err(error) => match pool_state(&self.host, self.wanted()).await? {
                PoolState::Imported { .. } => Err(error.into()),
                _ => Ok(not_imported()),
            },
        }
    }

    async fn create(&self) -> Result<StepOutcome, ZfsError> {
        match pool_state(&self.host, self.wanted()).await? {
            PoolState::Imported { .. } => return self.update().await,
            PoolState::Importable(_) | PoolState::ImportedElsewhere { .. } => {
                return Err(ZfsError::ExistsNotImported {
                    pool: self.label(),
                    folder: self.host.device_folder.clone(),
                });
            }
            PoolState::NotFound => {}
        }
        self.create_bare_pool().await?;
        self.update().await
    }

    /// Seeds a hot standby's replica on this host, from `primary`, and returns its outputs.
    ///
    /// On bare disks (the first seed): the pool created with no dataset of its own (the
    /// primary's arrive by the first round), marked a read-only replica, and a full round sent.
    /// On disks that hold the pool already (the failback: the old primary's disks, re-seated on
    /// this host after a hot failover): imported, with `-f` only when ZFS asks for it and the
    /// plan fenced the hosts that had it, each asked over SSH right before, as for an import
    /// (safety invariant 1 of ARCHITECTURE.md); then marked, which leaves a replica as it is
    /// (a primary handed over became one) and refuses a writable pool with data of its own (a
    /// primary fenced rather than handed over, which may hold writes `primary` never got);
    /// then a round sends the increment from the newest snapshot both hold.
    ///
    /// Done again after an interruption, it finds the pool and goes on: a replica already
    /// marked is not marked again, and the round sends from the newest snapshot both hold.
    pub(super) async fn seed_replica(
        &self,
        primary: &Host,
        fenced: &FencedHosts,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<StepOutcome, ZfsError> {
        let replication = |source| ZfsError::Replication {
            pool: self.label(),
            source,
        };
        // Whether this seed imported the pool (without mounting it) rather than found it.
        let mut imported_now = false;
        match pool_state(&self.host, self.wanted()).await? {
            PoolState::Imported { .. } => {}
            state @ (PoolState::Importable(_) | PoolState::ImportedElsewhere { .. }) => {
                // ZFS asks for -f when the pool was not exported (its host was fenced, not
                // stopped); a pool the plan fenced no host for is imported without, and ZFS
                // refuses it if another system may still use it.
                let needs_force = match &state {
                    PoolState::Importable(found) => found.pool.needs_force(),
                    _ => true,
                };
                let force = needs_force && fenced.named;
                progress(format!(
                    "the pool is on the replica's disks already: importing it{}",
                    if force {
                        " with -f, once the fenced hosts are asked"
                    } else {
                        ""
                    }
                ));
                self.import(force, &fenced.askable, Mounting::Never, progress)
                    .await?;
                imported_now = true;
            }
            PoolState::NotFound => self.create_bare_pool().await?,
        }
        let replica = self.host.end(self.pool());
        let source = primary.end(self.pool());
        // Always asked: the mark reads the pool first, leaves a replica marked already as it
        // is, finishes a mark an interrupted seed began, and refuses a pool with data of its
        // own or a promoted primary. (The root dataset is in every pool, so a count of the
        // datasets the replica shares with the primary never said whether it was marked: a
        // new pool was never marked, and its first round refused.)
        progress(format!("marking {replica} a read-only replica"));
        match crate::replication::mark_replica(replica).await {
            Ok(()) => {}
            Err(crate::replication::ReplicationError::CannotMark { reason, .. }) => {
                // Left as it is, but unmounted if this seed imported it: zfs-fuse, which has
                // no `zpool import -N`, mounted it read-only. Best effort: the refusal is what
                // the operator needs.
                if imported_now {
                    let _ = crate::replication::unmount_all(replica).await;
                }
                return Err(self.refuse_writable_pool(primary, reason).await);
            }
            Err(source) => return Err(replication(source)),
        }
        progress(format!("a round from {source}"));
        let round = crate::replication::replicate(source, replica, std::time::SystemTime::now())
            .await
            .map_err(replication)?;
        let increments = round.bases.values().filter(|base| base.is_some()).count();
        progress(format!(
            "{replica} holds {} ({} bytes in {increments} increments and {} full sends)",
            round.snapshot.name,
            round.bytes,
            round.bases.len() - increments,
        ));
        self.replica_outcome(primary).await
    }

    /// The seed's refusal of a pool it found on the replica's disks that is no replica and
    /// that `mark_replica` refused: said as the plan names the hosts, with the pool's role and
    /// `readonly` as its own `zfs get` reads them, and what to do. The pool is left as it is:
    /// it is the operator's to settle, and the seed refuses the same way until then.
    async fn refuse_writable_pool(&self, primary: &Host, reason: String) -> ZfsError {
        let properties = format!("{},readonly", crate::replication::ROLE_PROPERTY);
        let side = query(
            &self.host,
            &self.label(),
            &[
                "zfs",
                "get",
                "-H",
                "-o",
                "property,value",
                &properties,
                self.pool(),
            ],
        )
        .await
        .map(|output| {
            output
                .stdout
                .lines()
                .map(|line| line.replacen('\t', "=", 1))
                .collect::<Vec<_>>()
                .join(", ")
        });
        ZfsError::WritablePoolOnReplicaDisks {
            pool: self.label(),
            host: self.host.instance.to_string(),
            primary: primary.instance.to_string(),
            name: self.pool().to_owned(),
            reason: match side {
                Ok(side) if !side.is_empty() => format!("{side}: {reason}"),
                _ => reason,
            },
        }
    }

    /// The replica's outputs after a step: its host, role and lag, as a read gives them.
    async fn replica_outcome(&self, primary: &Host) -> Result<StepOutcome, ZfsError> {
        let replica = self.host.end(self.pool());
        let source = primary.end(self.pool());
        let status = crate::replication::status(source, replica)
            .await
            .map_err(|source| ZfsError::Replication {
                pool: self.label(),
                source,
            })?;
        let mut outputs = Attributes::new();
        outputs.insert(
            zfs_pool::HOST.to_owned(),
            json!(self.host.instance.to_string()),
        );
        outputs.insert(zfs_pool::REPLICATION_ROLE.to_owned(), json!("replica"));
        if let Some(lag) = status.lag_seconds() {
            outputs.insert(zfs_pool::REPLICA_LAG_SECONDS.to_owned(), json!(lag));
        }
        Ok(StepOutcome { outputs })
    }

    /// A planned promotion: the old primary, which answers, hands the pool over (stops, sends
    /// its last increment, becomes the replica), then this host's replica is promoted.
    pub(super) async fn take_over(
        &self,
        primary: &Host,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<StepOutcome, ZfsError> {
        let replica = self.host.end(self.pool());
        let source = primary.end(self.pool());
        progress(format!("{source} hands the pool over to {replica}"));
        let handed = crate::replication::hand_over(source, replica, std::time::SystemTime::now())
            .await
            .map_err(|source| ZfsError::Replication {
                pool: self.label(),
                source,
            })?;
        if let Some(round) = &handed.last_round {
            progress(format!(
                "the last increment, {}, reached {replica} ({} bytes)",
                round.snapshot.name, round.bytes
            ));
        }
        self.update().await
    }

    /// An unplanned promotion: the old primary, fenced (asked again right before, when it can
    /// be reached), and this host's replica rolled back to its newest complete snapshot and
    /// made the primary.
    pub(super) async fn promote_replica(
        &self,
        old: Option<&Host>,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<StepOutcome, ZfsError> {
        let replica = self.host.end(self.pool());
        let promotion = match old {
            Some(old) => crate::replication::promote(replica, old.end(self.pool())).await,
            // The old host's address is not known at all: nothing can be asked, and the plan's
            // fence (an ancestor of this step) is what stands between it and the pool.
            None => crate::replication::promote_fenced(replica).await,
        }
        .map_err(|source| match (source, old) {
            // Named as the plan names the hosts, as an import after a fence is refused: the
            // fence ran, and did not take effect.
            (crate::replication::ReplicationError::PrimaryNotFenced { detail, .. }, Some(old)) => {
                ZfsError::StillPrimaryAfterFence {
                    pool: self.label(),
                    host: self.host.instance.to_string(),
                    old_host: old.instance.to_string(),
                    detail,
                }
            }
            (source, _) => ZfsError::Replication {
                pool: self.label(),
                source,
            },
        })?;
        if let Some(snapshot) = &promotion.rolled_back_to {
            progress(format!("{replica} rolled back to {}", snapshot.name));
        }
        self.update().await
    }

    /// `zpool create` on the step's disks with its layout (never `-f`, so that disks holding
    /// a pool are refused), once every disk's device is there. A connection lost during the
    /// command is read back: a pool imported by then was created.
    async fn create_bare_pool(&self) -> Result<(), ZfsError> {
        let missing = self.missing_disks().await?;
        if !missing.is_empty() {
            return Err(ZfsError::MissingDisks {
                pool: self.label(),
                host: self.host.instance.to_string(),
                missing,
            });
        }
        let mut arguments = vec!["zpool", "create", self.pool()];
        match self.settings.layout.as_str() {
            "mirror" => arguments.push("mirror"),
            "raidz" => arguments.push("raidz"),
            _ => {}
        }
        for (_, path) in &self.expected {
            arguments.push(path);
        }
        match self.change(&arguments).await {
            Ok(result) => result,
            Err(error) => match pool_state(&self.host, self.wanted()).await? {
                PoolState::Imported { .. } => Ok(()),
                _ => Err(error.into()),
            },
        }
    }

    /// Imports a pool that is not imported (without -f), then makes its datasets match.
    pub(super) async fn update(&self) -> Result<StepOutcome, ZfsError> {
        let (status, mut datasets) = match pool_state(&self.host, self.wanted()).await? {
            PoolState::Imported { status, datasets } => (status, datasets),
            PoolState::Importable(_) => {
                self.import(false, &[], Mounting::Mounted, &|_| {}).await?;
                match pool_state(&self.host, self.wanted()).await? {
                    PoolState::Imported { status, datasets } => (status, datasets),
                    _ => {
                        return Err(ZfsError::NotFound {
                            pool: self.label(),
                            host: self.host.instance.to_string(),
                            folder: self.host.device_folder.clone(),
                        });
                    }
                }
            }
            PoolState::ImportedElsewhere { devices } => {
                return Err(ZfsError::ImportedElsewhere {
                    pool: self.label(),
                    host: self.host.instance.to_string(),
                    detail: format!("its devices {} are not on this host", devices.join(", ")),
                });
            }
            PoolState::NotFound => {
                return Err(ZfsError::NotFound {
                    pool: self.label(),
                    host: self.host.instance.to_string(),
                    folder: self.host.device_folder.clone(),
                });
            }
        };
        let mut changed = false;
        for (relative, managed) in &self.settings.datasets {
            let full = format!("{}/{relative}", self.pool());
            let assignments: Vec<String> = managed
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            match datasets.iter().find(|row| row.name == full) {
                None => {
                    let mut arguments = vec!["zfs", "create"];
                    for assignment in &assignments {
                        arguments.push("-o");
                        arguments.push(assignment);
                    }
                    arguments.push(&full);
                    self.change(&arguments).await??;
                    changed = true;
                }
                Some(row) => {
                    for (key, value) in managed {
                        let current = match key.as_str() {
                            "mountpoint" => Some(&row.mountpoint),
                            "sharenfs" => Some(&row.sharenfs),
                            "quota" => Some(&row.quota),
                            _ => None,
                        };
                        if current == Some(value) {
                            continue;
                        }
                        let assignment = format!("{key}={value}");
                        // Repeating a `zfs set` is harmless, so a dropped connection is simply
                        // reported as transient and the engine retries the step.
                        self.change(&["zfs", "set", &assignment, &full]).await??;
                        changed = true;
                    }
                }
            }
        }
        if changed {
            let command = format!(
                "zfs list -H -o {} -r {}",
                parse::DATASET_COLUMNS,
                quote(self.pool())
            );
            let listed = query(
                &self.host,
                &self.label(),
                &[
                    "zfs",
                    "list",
                    "-H",
                    "-o",
                    parse::DATASET_COLUMNS,
                    "-r",
                    self.pool(),
                ],
            )
            .await?;
            datasets = parse::parse_dataset_list(&command, &listed.stdout)?;
        }
        Ok(self.outcome(&status, &datasets))
    }
}

impl ZfsPoolProvider {
    /// The other end of a replication step: the host an input names (`replicate_from`,
    /// `hand_over_from`), reached with the pool's own SSH settings.
    fn other_host(
        &self,
        target: &StepTarget<'_>,
        context: &ApplyContext<'_>,
        input: &str,
    ) -> Result<Host, ZfsError> {
        let instance = context
            .inputs
            .get(input)
            .and_then(Value::as_str)
            .and_then(|text| text.parse::<InstanceAddress>().ok())
            .ok_or_else(|| ZfsError::Setting {
                pool: target.label(),
                message: format!("the step names no {input}"),
            })?;
        self.host(
            target.address,
            &target.settings,
            &instance,
            (context.outputs)(&instance),
        )
    }

    /// The hosts the step's `fenced_hosts` names, to be asked whether they still hold the pool
    /// before it is imported. One that cannot be addressed (no recorded address) cannot be
    /// asked: its fence, an ancestor of the step, is then what stands between it and the pool.
    fn fenced_hosts(&self, target: &StepTarget<'_>, context: &ApplyContext<'_>) -> FencedHosts {
        let mut fenced = FencedHosts {
            named: false,
            askable: Vec::new(),
        };
        for text in context
            .inputs
            .get("fenced_hosts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            fenced.named = true;
            let Ok(instance) = text.parse::<InstanceAddress>() else {
                continue;
            };
            match self.host(
                target.address,
                &target.settings,
                &instance,
                (context.outputs)(&instance),
            ) {
                Ok(host) => fenced.askable.push(host),
                Err(error) => (context.progress)(format!(
                    "{instance} cannot be asked whether it still holds the pool ({error}): relying on its fence"
                )),
            }
        }
        fenced
    }

    pub(super) async fn run_step(
        &self,
        step: &Step,
        context: &ApplyContext<'_>,
    ) -> Result<StepOutcome, ZfsError> {
        let address = &step.address.address;
        let settings = self.merged_settings(address, context.inputs)?;
        let host_instance = context
            .inputs
            .get(zfs_pool::HOST)
            .and_then(Value::as_str)
            .or_else(|| {
                self.pools
                    .get(address)
                    .and_then(|fields| fields.get(zfs_pool::HOST))
                    .and_then(Value::as_str)
            })
            .and_then(|text| text.parse::<InstanceAddress>().ok())
            .ok_or_else(|| ZfsError::Setting {
                pool: address.to_string(),
                message: "the step names no host".to_owned(),
            })?;
        let host = self.host(
            address,
            &settings,
            &host_instance,
            (context.outputs)(&host_instance),
        )?;
        let expected = expected_devices(&settings, &host.device_folder, context.outputs);
        let target = StepTarget {
            address,
            settings,
            host,
            expected,
            replica: step.address.generation.is_some(),
        };
        (context.progress)(format!("{} on {}", step.action, target.host.instance));
        match step.action {
            Action::Import => {
                let force =
                    context.inputs.get(zfs_pool::FORCE).and_then(Value::as_bool) == Some(true);
                let fenced = self.fenced_hosts(&target, context);
                target
                    .import(force, &fenced.askable, Mounting::Mounted, context.progress)
                    .await
            }
            Action::Export => target.export().await,
            // A stateful instance of a generation is a hot standby's replica.
            Action::Create if step.address.generation.is_some() => {
                let primary = self.other_host(&target, context, zfs_pool::REPLICATE_FROM)?;
                let fenced = self.fenced_hosts(&target, context);
                target
                    .seed_replica(&primary, &fenced, context.progress)
                    .await
            }
            Action::Promote => {
                let handed_over = context
                    .inputs
                    .get(zfs_pool::HAND_OVER_FROM)
                    .and_then(Value::as_str)
                    .is_some();
                if handed_over {
                    let primary = self.other_host(&target, context, zfs_pool::HAND_OVER_FROM)?;
                    target.take_over(&primary, context.progress).await
                } else {
                    let old = context
                        .inputs
                        .get("fenced_hosts")
                        .and_then(Value::as_array)
                        .and_then(|hosts| hosts.first())
                        .and_then(Value::as_str)
                        .and_then(|text| text.parse::<InstanceAddress>().ok());
                    let old_host = old.and_then(|instance| {
                        self.host(
                            address,
                            &target.settings,
                            &instance,
                            (context.outputs)(&instance),
                        )
                        .ok()
                    });
                    target
                        .promote_replica(old_host.as_ref(), context.progress)
                        .await
                }
            }
            // A drill's pool on the drill's copies of production's disks: the copy imported,
            // never a pool created on them (`drill.rs` says why that is safe).
            Action::Create if target.settings.drill.is_some() => {
                let drill = target.settings.drill.clone().unwrap_or_default();
                let not_copies =
                    super::drill::disks_not_copies(&target.settings.disks, &drill, context.outputs);
                target
                    .import_drill_copy(&drill, not_copies, context.progress)
                    .await
            }
            Action::Create => target.create().await,
            // The drill's clean-up: its copy exported from the drill's host, whose disks are
            // deleted next. A drill's pool is one whose spec says so or, for `--clean`, which
            // plans from the drill's layout without its copies, one whose every disk carries a
            // drill's tag. A pool that is no drill's has no delete: ferry never exports or
            // destroys a pool to delete it.
            Action::Delete
                if target.settings.drill.is_some()
                    || super::drill::drill_of_disks(&target.settings.disks, context.outputs)
                        .is_some() =>
            {
                target.export().await
            }
            Action::Update => target.update().await,
            action => Err(ZfsError::Unsupported {
                pool: address.to_string(),
                action,
            }),
        }
    }
}
