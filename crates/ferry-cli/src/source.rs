//! Where a command's readings come from, as the command line says: a snapshot file
//! (`--observed`), a simulated world (`--world`), or the real providers.

use anyhow::Result;
use ferry_core::Snapshot;
use ferry_ops::{Deployment, WorldSource};

use crate::args::SourceArgs;

/// The world the arguments name.
pub fn world_source(source: &SourceArgs) -> WorldSource {
    match &source.world {
        Some(path) => WorldSource::Simulated {
            path: path.clone(),
            new: source.new_world,
            time_scale: source.world_time_scale,
        },
        None => WorldSource::Live,
    }
}

/// The readings a command plans from: the snapshot file, or the deployment's world read now.
pub fn snapshot(deployment: &Deployment, source: &SourceArgs) -> Result<Snapshot> {
    if let Some(path) = &source.observed {
        return Ok(ferry_ops::read_snapshot(path)?);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(deployment.observe())?)
}
