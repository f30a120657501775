//! The simulated world kept in a file between commands (`ferry --world FILE`), and the
//! providers over it: each step takes its estimate scaled, and a world behind a file is saved
//! after every step, as a cloud keeps each finished operation.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ferry_core::{
    ApplyContext, InstanceAddress, Kind, Observation, Provider, Providers, ReadContext, RuleBook,
    Step, StepError, StepOutcome,
};

use crate::memory::{Behaviour, MemoryProvider, World, WorldFormatError};

/// Why a world file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WorldFileError {
    #[error(
        "the world file {} does not exist: check the path, or add --new-world to start from an empty simulated world (it is saved there by ferry apply)",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error("cannot read the world {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a ferry world file: {source}", path.display())]
    Format {
        path: PathBuf,
        source: WorldFormatError,
    },
    #[error("cannot write the world {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The simulated world in `path`, simulating with `rules`; a missing file is an empty world
/// only when `new` says so (a mistyped path must not silently start from nothing).
pub fn load(path: &Path, new: bool, rules: &RuleBook) -> Result<World, WorldFileError> {
    if !path.exists() {
        if new {
            return Ok(World::simulating(rules));
        }
        return Err(WorldFileError::Missing {
            path: path.to_owned(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| WorldFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    World::from_json(&text, rules).map_err(|source| WorldFileError::Format {
        path: path.to_owned(),
        source,
    })
}

/// Saves the world whole (`ferry_core::fs::write_atomically`), so that a kill leaves the old
/// world or the new one, never half of one.
pub fn save(path: &Path, world: &World) -> Result<(), WorldFileError> {
    ferry_core::fs::write_atomically(
        path,
        world.to_json().as_bytes(),
        &ferry_core::fs::WriteOptions::default(),
    )
    .map_err(|source| WorldFileError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Providers over a simulated world, for every kind; each step takes `time_scale` times its
/// estimate (0 for no wait at all).
pub fn providers(world: &World, time_scale: f64) -> Providers {
    let behaviour = Behaviour {
        latency_from_estimate: time_scale > 0.0,
        estimate_scale: Some(time_scale),
        ..Behaviour::default()
    };
    Kind::ALL
        .into_iter()
        .fold(Providers::new(), |providers, kind| {
            providers.with(Arc::new(
                MemoryProvider::new(kind, world).behaviour(behaviour.clone()),
            ))
        })
}

/// Like [`providers`], and the world is saved to `path` after every step: an apply killed
/// half-way (`kill -9`) leaves the world with the effects of the steps that ran, which is what
/// resuming must cope with.
pub fn persisting_providers(world: &World, time_scale: f64, path: &Path) -> Providers {
    let inner = providers(world, time_scale);
    let saving = Arc::new(Mutex::new(()));
    Kind::ALL
        .into_iter()
        .fold(Providers::new(), |providers, kind| match inner.get(kind) {
            Some(provider) => providers.with(Arc::new(PersistingProvider {
                inner: provider.clone(),
                world: world.clone(),
                path: path.to_owned(),
                saving: saving.clone(),
            })),
            None => providers,
        })
}

/// A simulated world's provider that saves the world after each step it runs.
#[derive(Debug)]
struct PersistingProvider {
    inner: Arc<dyn Provider>,
    world: World,
    path: PathBuf,
    /// One save at a time: each writes the whole world.
    saving: Arc<Mutex<()>>,
}

#[async_trait]
impl Provider for PersistingProvider {
    fn kind(&self) -> Kind {
        self.inner.kind()
    }

    fn concurrency_limit(&self) -> usize {
        self.inner.concurrency_limit()
    }

    async fn read(&self, context: ReadContext<'_>) -> Observation {
        self.inner.read(context).await
    }

    async fn tend(
        &self,
        instance: &InstanceAddress,
        context: ApplyContext<'_>,
    ) -> Result<Option<String>, StepError> {
        let result = self.inner.tend(instance, context).await;
        let _one_at_a_time = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        match (result, save(&self.path, &self.world)) {
            (Ok(_), Err(error)) => Err(StepError::permanent(format!(
                "the round ran, but the simulated world could not be saved: {error}"
            ))),
            (result, _) => result,
        }
    }

    async fn apply(
        &self,
        step: &Step,
        context: ApplyContext<'_>,
    ) -> Result<StepOutcome, StepError> {
        let result = self.inner.apply(step, context).await;
        let _one_at_a_time = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        match (result, save(&self.path, &self.world)) {
            (Ok(_), Err(error)) => Err(StepError::permanent(format!(
                "the step ran, but the simulated world could not be saved: {error}"
            ))),
            (result, _) => result,
        }
    }
}
