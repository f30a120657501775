//! Secrets at apply time: the engine opens a plan's sealed `${env.NAME@sha256:…}` with the
//! environment it is given and hands the provider the real value, masks that value in every
//! progress line and error, keeps it sealed in the state and the journal, and refuses a plan
//! whose secret changed since it was made before any step runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ferry_apply::{ApplyConfig, ApplyControl, ApplyError, Event, EventKind, Store, apply};
use ferry_core::{Kind, Plan};
use ferry_state::{Journal, StateFile};
use ferry_world::{Behaviour, MemoryProvider, World};

const TOKEN: &str = "tok-1-very-secret";

/// Hooks that print the secret, as a careless deploy script prints its environment, and
/// fail with it in their message.
fn careless_hooks(world: &World) -> ferry_core::Providers {
    ferry_core::Providers::new().with(Arc::new(
        MemoryProvider::new(Kind::Hook, world)
            .step(
                "hook.deploy@g1:run",
                Behaviour {
                    progress: vec![format!("logging in with {TOKEN}")],
                    ..Behaviour::default()
                },
            )
            .step(
                "hook.broken@g1:run",
                Behaviour {
                    progress: vec![format!("token={TOKEN}")],
                    fail: Some(format!("helm said no to {TOKEN}")),
                    ..Behaviour::default()
                },
            ),
    ))
}

fn plan(token: &str, spec_text: &str) -> (Plan, ferry_core::secret::Secrets) {
    let options = ferry_spec::LoadOptions {
        variables: BTreeMap::new(),
        environment: BTreeMap::from([("DEPLOY_TOKEN".to_owned(), token.to_owned())]),
    };
    let spec = ferry_spec::load_sources(
        Path::new("spec"),
        vec![(PathBuf::from("main.toml"), spec_text.to_owned())],
        &options,
        &ferry_providers::rule_book(),
    )
    .unwrap_or_else(|errors| panic!("{}", errors.render(false)));
    let plan = ferry_plan::plan(
        &spec,
        &ferry_core::Snapshot::new(0),
        &ferry_providers::rule_book(),
        &ferry_plan::PlanConfig::default(),
    )
    .unwrap();
    (plan, spec.secrets)
}

const SPEC: &str = r#"[deployment]
name = "demo"
location = "westeurope"

[hook.deploy]
command = ["deploy"]
env = { HUB_TOKEN = "${env.DEPLOY_TOKEN}" }

[hook.broken]
shell = "deploy --token ${env.DEPLOY_TOKEN}"
"#;

#[tokio::test]
async fn a_secret_reaches_the_provider_but_no_event_error_state_or_journal() {
    let (plan, secrets) = plan(TOKEN, SPEC);
    assert!(!ferry_plan::render::json(&plan).contains(TOKEN));
    let world = World::new();
    let providers = careless_hooks(&world);
    let folder = tempfile::tempdir().unwrap();
    let journal_path = folder.path().join("journal.jsonl");
    let mut store =
        Store::in_memory(StateFile::default()).journaling_to(Journal::open(&journal_path).unwrap());
    let config = ApplyConfig {
        secrets,
        ..ApplyConfig::default()
    };
    let events = Mutex::new(Vec::new());
    let report = apply(
        &plan,
        &providers,
        &config,
        &mut store,
        &ApplyControl::new(),
        &|event: &Event| events.lock().unwrap().push(event.clone()),
    )
    .await
    .unwrap();

    // The provider got the real value.
    let received = format!("{:?}", world.calls());
    assert!(received.contains(TOKEN), "{received}");

    let events = events.into_inner().unwrap();
    let progress: Vec<&str> = events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::StepProgress { line, .. } => Some(line.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(progress.len(), 2, "{events:?}");
    let fingerprint = ferry_core::secret::fingerprint(TOKEN);
    for line in &progress {
        assert!(
            line.contains(&format!("[redacted env.DEPLOY_TOKEN sha256:{fingerprint}]")),
            "{line}"
        );
    }
    let everything = [
        format!("{events:?}"),
        format!("{report:?}"),
        serde_json::to_string(&store.state).unwrap(),
        std::fs::read_to_string(&journal_path).unwrap(),
    ];
    for (place, text) in ["events", "report", "state", "journal"]
        .iter()
        .zip(&everything)
    {
        assert!(
            !text.contains(TOKEN),
            "the secret is in the {place}: {text}"
        );
    }
    // The state keeps the sealed reference, which the next plan opens again.
    assert!(everything[2].contains(&format!("${{env.DEPLOY_TOKEN@sha256:{fingerprint}}}")));
}

#[tokio::test]
async fn a_plan_whose_secret_changed_or_is_missing_is_refused_before_any_step() {
    let (plan, _) = plan(TOKEN, SPEC);
    let (_, rotated) = self::plan("tok-2-rotated-secret", SPEC);
    let world = World::new();
    let providers = careless_hooks(&world);
    let mut messages = Vec::new();
    for secrets in [rotated, ferry_core::secret::Secrets::new()] {
        let config = ApplyConfig {
            secrets,
            ..ApplyConfig::default()
        };
        let mut store = Store::in_memory(StateFile::default());
        let error = apply(
            &plan,
            &providers,
            &config,
            &mut store,
            &ApplyControl::new(),
            &|_: &Event| {},
        )
        .await
        .unwrap_err();
        assert!(matches!(error, ApplyError::Secret { .. }), "{error}");
        messages.push(error.to_string());
    }
    assert!(world.calls().is_empty());
    insta::assert_snapshot!(messages.join("\n"));
}
