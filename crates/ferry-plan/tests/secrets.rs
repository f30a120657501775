//! Values from the environment are secrets by default: no plan text, plan JSON, saved plan or
//! `ferry show` holds one, an update shows both sides redacted with a fingerprint, and a
//! reading that remembers a sealed value plans no change while the value is the same.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferry_core::{Observation, Plan, Snapshot};
use ferry_plan::render::{self, TextOptions};
use ferry_plan::{PlanConfig, SavedPlan};
use ferry_spec::{LoadOptions, Spec};

const SPEC: &str = r#"[deployment]
name = "demo"
location = "westeurope"

[hook.deploy]
command = ["deploy", "--token=${env.DEPLOY_TOKEN}"]
env = { HUB_TOKEN = "${env.DEPLOY_TOKEN}", HUB_HOST = "hub.example.org", PROXY = "${var.proxy}" }

[variables]
proxy = "${env.PROXY_URL}"
"#;

const OLD_TOKEN: &str = "tok-1-very-secret";
const NEW_TOKEN: &str = "tok-2-rotated-secret";
const PROXY: &str = "http://user:proxy-password@proxy.example:3128";

fn spec(token: &str) -> Spec {
    let options = LoadOptions {
        variables: BTreeMap::new(),
        environment: BTreeMap::from([
            ("DEPLOY_TOKEN".to_owned(), token.to_owned()),
            ("PROXY_URL".to_owned(), PROXY.to_owned()),
        ]),
    };
    ferry_spec::load_sources(
        Path::new("spec"),
        vec![(PathBuf::from("main.toml"), SPEC.to_owned())],
        &options,
        &ferry_providers::rule_book(),
    )
    .unwrap_or_else(|errors| panic!("{}", errors.render(false)))
}

fn plan(spec: &Spec, snapshot: &Snapshot) -> Plan {
    ferry_plan::plan(
        spec,
        snapshot,
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    )
    .unwrap()
}

/// Every way a plan leaves ferry: text, JSON, a saved plan, and `ferry show` of it.
fn every_rendering(plan: &Plan, snapshot: &Snapshot) -> String {
    let saved = SavedPlan::new("demo", plan.clone(), snapshot).to_json();
    let shown = SavedPlan::from_json(&saved).unwrap().plan;
    [
        render::text(plan, &TextOptions { color: false }),
        render::json(plan),
        saved,
        render::text(&shown, &TextOptions { color: false }),
    ]
    .join("\n")
}

fn assert_no_secret(text: &str) {
    for secret in [OLD_TOKEN, NEW_TOKEN, PROXY, "proxy-password"] {
        assert!(!text.contains(secret), "{secret} shown in:\n{text}");
    }
}

#[test]
fn values_from_the_environment_are_redacted_with_a_fingerprint_in_every_rendering() {
    let spec = spec(OLD_TOKEN);
    let empty = Snapshot::new(0);
    let first = plan(&spec, &empty);
    let rendered = every_rendering(&first, &empty);
    assert_no_secret(&rendered);
    insta::assert_snapshot!(
        "first_plan_text",
        render::text(&first, &TextOptions { color: false })
    );
    // The step's inputs carry sealed references that the engine resolves at apply time.
    let inputs = serde_json::to_string(&first.steps[0].inputs).unwrap();
    assert!(
        inputs.contains(&format!(
            "${{env.DEPLOY_TOKEN@sha256:{}}}",
            ferry_core::secret::fingerprint(OLD_TOKEN)
        )),
        "{inputs}"
    );
}

#[test]
fn an_update_shows_both_sides_redacted_and_an_unchanged_secret_plans_nothing() {
    let spec_then = spec(OLD_TOKEN);
    let first = plan(&spec_then, &Snapshot::new(0));
    // What the engine leaves in the state after the run: the sealed inputs, and the exit code.
    let mut remembered = first.steps[0].inputs.clone();
    remembered.insert("exit_code".to_owned(), serde_json::json!(0));
    let mut converged = Snapshot::new(1);
    converged.resources.insert(
        first.steps[0].address.clone(),
        Observation::present(remembered),
    );

    let again = plan(&spec_then, &converged);
    assert!(
        again.steps.is_empty(),
        "{}",
        render::text(&again, &TextOptions { color: false })
    );

    let rotated = plan(&spec(NEW_TOKEN), &converged);
    let rendered = every_rendering(&rotated, &converged);
    assert_no_secret(&rendered);
    let text = render::text(&rotated, &TextOptions { color: false });
    for token in [OLD_TOKEN, NEW_TOKEN] {
        let fingerprint = ferry_core::secret::fingerprint(token);
        assert!(
            text.contains(&fingerprint),
            "{fingerprint} of {token} missing:\n{text}"
        );
    }
    insta::assert_snapshot!("rotated_plan_text", text);
}
