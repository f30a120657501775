//! A deployment opened for operations: its spec, its state backend and its world.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ferry_core::observation::SNAPSHOT_FORMAT_VERSION;
use ferry_core::{Providers, RuleBook, Secret, Snapshot};
use ferry_observe::ObserveConfig;
use ferry_spec::{LoadOptions, Spec, StateConfig};
use ferry_state::lock::{IfHolderRuns, LockInfo};
use ferry_state::{LocalBackend, StateBackend, StateDir, StateFile};
use ferry_state_blob::{BlobAuth, BlobBackend, BlobStateConfig, WatchLeader};
use ferry_world::World;

use crate::OpsError;

/// How long a blob lock lasts without renewal: Azure's longest finite lease, renewed in the
/// background every third of it; a crashed apply's lock is free again after this.
const BLOB_LEASE: Duration = Duration::from_secs(60);

/// Where a deployment's resources are read and changed.
#[derive(Debug, Clone)]
pub enum WorldSource {
    /// The real providers, configured from the spec and the environment (`FERRY_ARM_*`, the
    /// Azure credential chain).
    Live,
    /// A simulated world kept in a JSON file ([`ferry_world`]): for trying ferry, demos and
    /// tests. A missing file is an empty world only with `new`; each simulated step takes
    /// `time_scale` times its estimate.
    Simulated {
        path: PathBuf,
        new: bool,
        time_scale: f64,
    },
    /// Providers the caller built itself: its own settings (an ARM client pointed at the
    /// simulator), or a mix of real and simulated kinds.
    Providers(Providers),
}

/// A spec opened for operations, with its state backend and its world.
#[derive(Debug)]
pub struct Deployment {
    pub(crate) spec: Spec,
    pub(crate) rules: RuleBook,
    /// The spec's path as the operator named it, for advice (`ferry force-unlock PATH ID`).
    pub(crate) spec_path: PathBuf,
    /// Built on first use: planning from a snapshot file needs no state.
    backend: OnceLock<Arc<dyn StateBackend>>,
    pub(crate) source: WorldSource,
    /// A drill's deployment: what production holds, which no step may touch; its providers
    /// ask before each step (`crate::drill::guard::GuardedProvider`).
    pub(crate) guard: Option<Arc<ferry_plan::drill::ProductionIdentities>>,
}

impl Deployment {
    /// Loads the spec at `path` with every built-in kind's rules and opens it.
    pub fn load(path: &Path, options: &LoadOptions, source: WorldSource) -> Result<Self, OpsError> {
        let rules = ferry_providers::rule_book();
        let spec = ferry_spec::load(path, options, &rules).map_err(OpsError::Spec)?;
        Self::open(spec, rules, path, source)
    }

    /// Opens a spec already loaded with `rules`; `spec_path` is where it was loaded from.
    pub fn open(
        spec: Spec,
        rules: RuleBook,
        spec_path: &Path,
        source: WorldSource,
    ) -> Result<Self, OpsError> {
        Ok(Self {
            spec,
            rules,
            spec_path: spec_path.to_owned(),
            backend: OnceLock::new(),
            source,
            guard: None,
        })
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn rules(&self) -> &RuleBook {
        &self.rules
    }

    pub fn spec_path(&self) -> &Path {
        &self.spec_path
    }

    pub fn source(&self) -> &WorldSource {
        &self.source
    }

    /// Where the state, journal and lock are, as the spec's `[state]` says.
    pub fn backend(&self) -> Result<&Arc<dyn StateBackend>, OpsError> {
        if let Some(backend) = self.backend.get() {
            return Ok(backend);
        }
        let backend = state_backend(&self.spec)?;
        Ok(self.backend.get_or_init(|| backend))
    }

    /// The state as it is saved now (empty before the first apply).
    pub fn state(&self) -> Result<StateFile, OpsError> {
        Ok(self.backend()?.load_state()?)
    }

    /// The world to read and change: the real providers, or the simulated world's (with the
    /// world itself, to save after an apply).
    pub(crate) fn providers(&self, persist: bool) -> Result<(Providers, Option<World>), OpsError> {
        let (providers, world) = self.unguarded_providers(persist)?;
        match &self.guard {
            Some(production) => Ok((crate::drill::guarded(&providers, production), world)),
            None => Ok((providers, world)),
        }
    }

    fn unguarded_providers(&self, persist: bool) -> Result<(Providers, Option<World>), OpsError> {
        match &self.source {
            WorldSource::Live => Ok((ferry_providers::live_providers(&self.spec)?, None)),
            WorldSource::Providers(providers) => Ok((providers.clone(), None)),
            WorldSource::Simulated {
                path,
                new,
                time_scale,
            } => {
                let world = ferry_world::file::load(path, *new, &self.rules)?;
                let providers = if persist {
                    ferry_world::file::persisting_providers(&world, *time_scale, path)
                } else {
                    ferry_world::file::providers(&world, *time_scale)
                };
                Ok((providers, Some(world)))
            }
        }
    }

    /// Reads every instance a plan needs, from where the state points and beyond it (the world,
    /// not the state, says which generation serves).
    pub async fn observe(&self) -> Result<Snapshot, OpsError> {
        let state = self.state()?;
        let (providers, _) = self.providers(false)?;
        self.read_with(&state, &providers).await
    }

    pub(crate) async fn read_with(
        &self,
        state: &StateFile,
        providers: &Providers,
    ) -> Result<Snapshot, OpsError> {
        Ok(ferry_observe::observe(
            &self.spec,
            &self.rules,
            state,
            providers,
            &ObserveConfig::default(),
        )
        .await?)
    }

    /// The election of the one acting `ferry watch` among this deployment's watchers: a lease
    /// on the state blob's `.watch-leader` beside it ([`WatchLeader`]), this process named by
    /// user, host and pid. `None` for a local state: its watcher has no peers and always acts.
    pub fn watch_leader(&self) -> Result<Option<WatchLeader>, OpsError> {
        if matches!(self.spec.state, StateConfig::Local { .. }) {
            return Ok(None);
        }
        let name = format!(
            "{}@{} (pid {})",
            ferry_state::lock::this_user(),
            ferry_state::lock::this_host(),
            std::process::id()
        );
        Ok(Some(WatchLeader::new(blob_config(&self.spec)?, &name)?))
    }

    /// Breaks the apply lock `id` after making sure its holder is gone; a holder that provably
    /// runs is refused unless `if_running` says otherwise. Returns the lock that was broken.
    /// A lock `id` that is not production's may be its drill's (`ferry drill`, whose own state
    /// is beside production's): lock ids are unique, so the one the error named is the one
    /// broken, and the advice a killed drill prints works as written.
    pub fn force_unlock(&self, id: &str, if_running: IfHolderRuns) -> Result<LockInfo, OpsError> {
        match self.backend()?.force_unlock(id, if_running) {
            Ok(lock) => Ok(lock),
            Err(
                error @ (ferry_state::lock::LockError::NotLocked { .. }
                | ferry_state::lock::LockError::WrongId { .. }),
            ) => {
                let mut drill_spec = self.spec.clone();
                drill_spec.state = ferry_plan::drill::drill_state(&self.spec.state);
                let drill = state_backend(&drill_spec)?;
                let drill_holds_it = drill
                    .read_lock()
                    .ok()
                    .flatten()
                    .is_some_and(|lock| lock.id == id);
                if drill_holds_it {
                    drill
                        .force_unlock(id, if_running)
                        .map_err(|error| error.for_spec(&self.spec_path).into())
                } else {
                    Err(error.for_spec(&self.spec_path).into())
                }
            }
            Err(error) => Err(error.for_spec(&self.spec_path).into()),
        }
    }
}

/// Where the spec's state, journal and lock are: the local folder or an Azure blob, both
/// behind the same interface so that apply, plan and force-unlock need not care.
pub fn state_backend(spec: &Spec) -> Result<Arc<dyn StateBackend>, OpsError> {
    match &spec.state {
        StateConfig::Local { path } => Ok(Arc::new(LocalBackend::new(StateDir::new(path.clone())))),
        StateConfig::AzureBlob { .. } => Ok(Arc::new(BlobBackend::new(blob_config(spec)?)?)),
    }
}

/// The blob backend's configuration of the spec's `azure_blob` `[state]`.
pub(crate) fn blob_config(spec: &Spec) -> Result<BlobStateConfig, OpsError> {
    match &spec.state {
        StateConfig::Local { .. } => Err(OpsError::StateSetup(
            "the state is local, not in Azure Blob Storage: set backend = \"azure_blob\" in [state]".to_owned(),
        )),
        StateConfig::AzureBlob {
            account,
            container,
            blob,
            endpoint,
            sas_url_env,
            ca_file,
        } => {
            let (container_url, auth) = match sas_url_env {
                Some(variable) => {
                    let sas_url = std::env::var(variable)
                        .ok()
                        .filter(|value| !value.is_empty());
                    let Some(sas_url) = sas_url else {
                        return Err(OpsError::StateSetup(format!(
                            "[state] sas_url_env names {variable}, which is not set: export the container's SAS URL in {variable}, or remove sas_url_env to sign in with Entra ID"
                        )));
                    };
                    let (url, signature) = BlobStateConfig::split_sas_url(&Secret::new(sas_url))?;
                    (url, BlobAuth::Sas(signature))
                }
                None => {
                    let url = match endpoint {
                        Some(endpoint) => {
                            let text = format!("{}/{container}", endpoint.trim_end_matches('/'));
                            url::Url::parse(&text).map_err(|error| {
                                OpsError::StateSetup(format!(
                                    "[state] endpoint {endpoint} is not a URL: write it like https://ACCOUNT.blob.core.windows.net: {error}"
                                ))
                            })?
                        }
                        None => BlobStateConfig::public_container_url(account, container)?,
                    };
                    (
                        url,
                        BlobAuth::Credential(ferry_arm::CredentialChoice::Chain),
                    )
                }
            };
            let config = BlobStateConfig {
                container_url,
                blob: blob.clone(),
                auth,
                ca_file: ca_file.clone(),
                // The operator's own copy of every journal record this machine writes; a
                // drill's beside the drill's, never in production's.
                local_journal: if blob.ends_with(ferry_plan::drill::DRILL_BLOB_SUFFIX) {
                    StateDir::new(spec.root.join(".ferry/drill")).journal_path()
                } else {
                    StateDir::for_spec_dir(&spec.root).journal_path()
                },
                lease: BLOB_LEASE,
                request_timeout: Duration::from_secs(30),
                // Long enough for a passing fault; an apply whose storage is gone stops
                // within it of the first write that failed.
                retry_for: Duration::from_secs(30),
            };
            Ok(config)
        }
    }
}

/// Reads a snapshot written by `ferry observe`.
pub fn read_snapshot(path: &Path) -> Result<Snapshot, OpsError> {
    let refuse = |message: String| OpsError::Snapshot(message);
    let text = std::fs::read_to_string(path).map_err(|error| {
        refuse(format!(
            "cannot read the snapshot {}: {error}",
            path.display()
        ))
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|error| refuse(format!("{} is not JSON: {error}", path.display())))?;
    match value.get("format_version").and_then(|v| v.as_str()) {
        Some(SNAPSHOT_FORMAT_VERSION) => {}
        other => {
            return Err(refuse(format!(
                "{} has snapshot format {}, and this ferry reads format {SNAPSHOT_FORMAT_VERSION}: write it again with ferry observe",
                path.display(),
                other.unwrap_or("(none)")
            )));
        }
    }
    serde_json::from_value(value).map_err(|error| {
        refuse(format!(
            "{} is not a ferry snapshot: {error}",
            path.display()
        ))
    })
}
