//! What the drill tests share (feature `ops-harness`): production built through
//! `ferry_ops::Deployment::apply` before a drill, and a drill's request with the settings a
//! test does not care about (no lock wait, the engine's defaults, no progress view, no
//! providers or tagged lists of the caller's), which a test changes with struct update syntax.

use std::time::Duration;

use ferry_apply::{ApplyConfig, ApplyControl, ApplyReport, Event};
use ferry_core::Plan;
use ferry_ops::{
    Applied, ApplyRequest, Approval, Deployment, DrillMode, DrillRequest, PlanOptions, PlanSource,
};
use ferry_plan::drill::DrillId;

fn no_event(_: &Event) {}

fn no_plan(_: &Plan) {}

/// Applies a fresh plan of `deployment`, approved, and asserts that every step succeeded:
/// production as a drill starts from it.
pub async fn build(deployment: &Deployment) -> ApplyReport {
    let applied = deployment
        .apply(ApplyRequest {
            plan: PlanSource::Fresh(PlanOptions::default()),
            lock_timeout: Duration::ZERO,
            config: ApplyConfig::default(),
            control: &ApplyControl::new(),
            on_event: &no_event,
            approve: &mut |_| Ok(Approval::Approved),
        })
        .await
        .unwrap_or_else(|error| panic!("production was not built: {error}"));
    let Applied::Ran { report, .. } = applied else {
        panic!("production was not built: {applied:?}");
    };
    assert!(report.succeeded(), "{}", report.counts().describe());
    report
}

/// A drill's request: `mode`, with the id `id`, under `control`.
pub fn drill_request<'a>(mode: DrillMode, id: &str, control: &'a ApplyControl) -> DrillRequest<'a> {
    DrillRequest {
        mode,
        id: Some(DrillId::new(id).unwrap_or_else(|refusal| panic!("{id}: {refusal}"))),
        lock_timeout: Duration::ZERO,
        config: ApplyConfig::default(),
        control,
        on_event: &no_event,
        on_plan: &no_plan,
        drill_providers: None,
        tagged_lists: None,
    }
}
