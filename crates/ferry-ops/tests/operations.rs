//! The operations layer on the simulated world, as a program that embeds ferry would use it:
//! an apply takes the lock, plans with every guard, asks for approval, applies and releases;
//! a held lock, a stale saved plan and another deployment's plan are refused.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ferry_apply::{ApplyConfig, ApplyControl, HeldLock};
use ferry_ops::{
    Applied, ApplyRequest, Approval, Deployment, OpsError, PlanOptions, PlanSource, WorldSource,
};
use ferry_spec::LoadOptions;

/// A copy of specs/data100 in a scratch folder, with its world file beside it.
struct Scratch {
    folder: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let folder = tempfile::tempdir().unwrap();
        let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        ferry_testkit::copy_spec_folder(
            &repository.join("specs/data100"),
            &folder.path().join("data100"),
        );
        Self { folder }
    }

    fn spec(&self) -> PathBuf {
        self.folder.path().join("data100")
    }

    fn world(&self) -> PathBuf {
        self.folder.path().join("world.json")
    }

    fn open(&self) -> Deployment {
        Deployment::load(
            &self.spec(),
            &LoadOptions::default(),
            WorldSource::Simulated {
                path: self.world(),
                new: true,
                time_scale: 0.0,
            },
        )
        .unwrap()
    }
}

/// Applies `plan` with `answer` to every approval; returns how it ended and the plans shown.
async fn apply(
    deployment: &Deployment,
    plan: PlanSource,
    answer: Approval,
) -> (Result<Applied, OpsError>, Vec<usize>) {
    let shown = Mutex::new(Vec::new());
    let mut approve = |plan: &ferry_core::Plan| {
        shown.lock().unwrap().push(plan.steps.len());
        Ok(answer)
    };
    let applied = deployment
        .apply(ApplyRequest {
            plan,
            lock_timeout: Duration::ZERO,
            config: ApplyConfig::default(),
            control: &ApplyControl::new(),
            on_event: &|_| {},
            approve: &mut approve,
        })
        .await;
    (applied, shown.into_inner().unwrap())
}

#[tokio::test]
async fn an_approved_apply_builds_the_deployment_and_releases_its_lock() {
    let scratch = Scratch::new();
    let deployment = scratch.open();
    let (applied, shown) = apply(
        &deployment,
        PlanSource::Fresh(PlanOptions::default()),
        Approval::Approved,
    )
    .await;
    let Ok(Applied::Ran {
        report,
        active_generation,
        release_error,
        ..
    }) = applied
    else {
        panic!("the apply must run: {applied:?}");
    };
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(active_generation, 1);
    assert_eq!(release_error, None);
    assert_eq!(shown.len(), 1, "one approval, for the one fresh plan");
    assert!(scratch.world().exists(), "the simulated world is saved");
    // The lock was given back: it can be taken at once.
    let lock = HeldLock::take(&**deployment.backend().unwrap(), "check").unwrap();
    deployment
        .backend()
        .unwrap()
        .release_lock(&lock.id)
        .unwrap();

    // Nothing left to do: no approval is asked for.
    let again = Deployment::load(
        &scratch.spec(),
        &LoadOptions::default(),
        WorldSource::Simulated {
            path: scratch.world(),
            new: false,
            time_scale: 0.0,
        },
    )
    .unwrap();
    let (applied, shown) = apply(
        &again,
        PlanSource::Fresh(PlanOptions::default()),
        Approval::Approved,
    )
    .await;
    assert!(
        matches!(applied, Ok(Applied::NothingToDo { .. })),
        "{applied:?}"
    );
    assert!(shown.is_empty());
}

#[tokio::test]
async fn a_declined_plan_changes_nothing() {
    let scratch = Scratch::new();
    let deployment = scratch.open();
    let (applied, shown) = apply(
        &deployment,
        PlanSource::Fresh(PlanOptions::default()),
        Approval::Declined,
    )
    .await;
    assert!(
        matches!(applied, Ok(Applied::Declined { .. })),
        "{applied:?}"
    );
    assert_eq!(shown.len(), 1);
    assert!(
        !scratch.world().exists(),
        "no step ran, so no world was saved"
    );
    assert_eq!(deployment.state().unwrap().active_generation, 0);
}

#[tokio::test]
async fn an_apply_while_another_holds_the_lock_is_refused_before_reading_anything() {
    let scratch = Scratch::new();
    let deployment = scratch.open();
    let backend = deployment.backend().unwrap().clone();
    let other = HeldLock::take(&*backend, "apply").unwrap();
    let (applied, shown) = apply(
        &deployment,
        PlanSource::Fresh(PlanOptions::default()),
        Approval::Approved,
    )
    .await;
    let error = applied.unwrap_err();
    assert!(matches!(error, OpsError::Lock(_)), "{error:?}");
    assert!(
        error.to_string().contains("is locked by"),
        "the error names the holder: {error}"
    );
    assert!(shown.is_empty());
    backend.release_lock(&other.id).unwrap();
}

#[tokio::test]
async fn a_saved_plan_is_refused_once_its_readings_changed_or_for_another_deployment() {
    let scratch = Scratch::new();
    let deployment = scratch.open();
    let snapshot = deployment.observe().await.unwrap();
    let plan = deployment.plan(&snapshot, &PlanOptions::default()).unwrap();
    let saved = ferry_ops::saved_plan(
        deployment.spec(),
        plan,
        &snapshot,
        &scratch.spec(),
        &Default::default(),
    )
    .unwrap();

    // Another deployment's plan: refused before the lock is even taken.
    let mut other = saved.clone();
    other.deployment = "elsewhere".to_owned();
    let (applied, _) = apply(
        &deployment,
        PlanSource::Saved {
            plan: Box::new(other),
            path: PathBuf::from("other.plan"),
        },
        Approval::Approved,
    )
    .await;
    let error = applied.unwrap_err().to_string();
    assert!(
        error.starts_with("other.plan is a plan for deployment elsewhere, but "),
        "{error}"
    );

    // The world changes (the deployment is built) after the plan was made.
    let (built, _) = apply(
        &deployment,
        PlanSource::Fresh(PlanOptions::default()),
        Approval::Approved,
    )
    .await;
    assert!(matches!(built, Ok(Applied::Ran { .. })));
    let (applied, shown) = apply(
        &deployment,
        PlanSource::Saved {
            plan: Box::new(saved),
            path: PathBuf::from("data100.plan"),
        },
        Approval::Approved,
    )
    .await;
    let error = applied.unwrap_err();
    assert!(matches!(error, OpsError::Stale { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .ends_with("\nmake a new plan with ferry plan"),
        "{error}"
    );
    assert!(
        shown.is_empty(),
        "a saved plan was approved when it was reviewed"
    );
}

/// A spec of `count` independent hooks, with `limits` as its `[limits]` block's lines.
fn hooks_spec(folder: &Path, count: usize, limits: &str) -> PathBuf {
    let mut text = String::from("[deployment]\nname = \"hooks\"\nlocation = \"westeurope\"\n");
    if !limits.is_empty() {
        text.push_str(&format!("\n[limits]\n{limits}\n"));
    }
    for index in 0..count {
        text.push_str(&format!("\n[hook.h{index}]\nshell = \"true\"\n"));
    }
    let spec = folder.join("hooks.toml");
    std::fs::write(&spec, text).unwrap();
    spec
}

/// The spec's `[limits]` reach the engine through the operations, and the caller's
/// `kind_parallelism` wins over them: counted by the in-memory providers (each with a limit
/// of 8 of its own), whose steps take their estimates on tokio's paused clock.
#[tokio::test(start_paused = true)]
async fn the_specs_limits_bound_an_apply_and_the_callers_override_them() {
    // (the spec's [limits], the caller's hook limit, most hooks at once)
    let cases = [
        ("", None, 8),
        ("hook = 3", None, 3),
        ("hook = 3", Some(5), 5),
        ("vm = 1", Some(12), 12),
    ];
    for (limits, callers, expected) in cases {
        let folder = tempfile::tempdir().unwrap();
        let spec = hooks_spec(folder.path(), 20, limits);
        let world = ferry_world::World::new();
        let providers = ferry_world::memory_providers(&world, |provider| {
            provider.behaviour(ferry_world::Behaviour::from_estimates())
        });
        let deployment = Deployment::load(
            &spec,
            &LoadOptions::default(),
            WorldSource::Providers(providers),
        )
        .unwrap();
        let mut approve = |_: &ferry_core::Plan| Ok(Approval::Approved);
        let applied = deployment
            .apply(ApplyRequest {
                plan: PlanSource::Fresh(PlanOptions::default()),
                lock_timeout: Duration::ZERO,
                config: ApplyConfig {
                    parallelism: 16,
                    kind_parallelism: callers
                        .map(|limit| [(ferry_core::Kind::Hook, limit)].into())
                        .unwrap_or_default(),
                    ..ApplyConfig::default()
                },
                control: &ApplyControl::new(),
                on_event: &|_| {},
                approve: &mut approve,
            })
            .await;
        let Ok(Applied::Ran { report, .. }) = applied else {
            panic!("the apply must run: {applied:?}");
        };
        assert!(report.succeeded(), "{report:?}");
        assert_eq!(
            world.max_running_of(ferry_core::Kind::Hook),
            expected,
            "[limits] {limits:?}, the caller's {callers:?}"
        );
    }
}
