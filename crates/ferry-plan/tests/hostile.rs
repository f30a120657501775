//! The planner and its renderers take whatever a library user's rules and a spec can hold
//! without a panic (issue 18): estimates whose sum does not fit in 64 bits, a change path
//! longer than 65,535 characters.

mod support;

use std::sync::OnceLock;

use ferry_core::{Action, Kind, KindRules, ResourceSpec, RuleBook, Snapshot};
use ferry_plan::PlanConfig;
use ferry_plan::render::{self, TextOptions};
use support::spec;

/// Hook rules as ferry's, except that every run is estimated at the largest number there is,
/// as a library user's own rules may say.
#[derive(Debug)]
struct EndlessHooks;

fn hooks() -> &'static dyn KindRules {
    static RULES: OnceLock<RuleBook> = OnceLock::new();
    RULES
        .get_or_init(ferry_providers::rule_book)
        .get(Kind::Hook)
        .expect("ferry has hook rules")
}

impl KindRules for EndlessHooks {
    fn kind(&self) -> Kind {
        Kind::Hook
    }
    fn description(&self) -> &'static str {
        hooks().description()
    }
    fn fields(&self) -> &'static [ferry_core::FieldSchema] {
        hooks().fields()
    }
    fn outputs(&self) -> &'static [ferry_core::OutputSchema] {
        hooks().outputs()
    }
    fn estimate_seconds(&self, _: Action, _: &ResourceSpec) -> u64 {
        u64::MAX
    }
}

const TWO_HOOKS: &str = r#"
[deployment]
name = "small"
location = "westeurope"

[failover]
mode = "off"

[hook.first]
shell = "true"

[hook.second]
shell = "true"
depends_on = ["hook.first"]
"#;

#[test]
fn estimates_whose_sum_overflows_saturate_and_every_view_still_renders() {
    let rules = ferry_providers::rule_book().with(Box::new(EndlessHooks));
    let spec = spec(&[("main.toml", TWO_HOOKS)]);
    let plan = ferry_plan::plan(&spec, &Snapshot::new(0), &rules, &PlanConfig::default())
        .expect("the plan is made");
    assert_eq!(plan.estimated_seconds, u64::MAX);
    assert!(!plan.critical_path.is_empty());
    let text = render::text(&plan, &TextOptions { color: false });
    assert!(text.contains("hook.second"), "{text}");
    let bars = render::estimated_bars(&plan);
    assert_eq!(bars.len(), 2);
    let svg = render::timeline_svg(&plan, &bars, "endless");
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(!render::json(&plan).is_empty());
}

/// `ferry show` panicked on a change path longer than 65,535 characters (a saved plan can
/// hold any path): `format!` cannot pad to a width that large.
#[test]
fn a_change_path_longer_than_65535_characters_renders() {
    let spec = spec(&[("main.toml", TWO_HOOKS)]);
    let mut plan = ferry_plan::plan(
        &spec,
        &Snapshot::new(0),
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    )
    .expect("the plan is made");
    let long = "p".repeat(70_000);
    let mut changes = plan.steps[0].changes_owned();
    changes.push(ferry_core::AttributeChange {
        path: long.clone(),
        before: Some(serde_json::json!("old")),
        after: Some(serde_json::json!("new")),
        forces_replacement: None,
    });
    plan.steps[0].changes = changes.into();
    for color in [false, true] {
        let rendered = render::text(&plan, &TextOptions { color });
        assert!(rendered.contains(&long));
    }
}

/// Issue 18: a `layout` change planned "No changes" while the kinds reference said it
/// replaced the pool. The pool reads its layout, and the plan refuses the change.
#[test]
fn a_pool_layout_change_is_refused_not_no_changes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../specs/data100");
    let files: Vec<(String, String)> = ["main.toml", "azure.toml", "service.toml", "storage.toml"]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(root.join(name)).unwrap();
            (
                name.to_string(),
                text.replace("layout = \"stripe\"", "layout = \"mirror\""),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(name, text)| (name.as_str(), text.as_str()))
        .collect();
    let spec = spec(&files);
    let snapshot = support::data100_snapshot("observed-healthy.json");
    let errors = ferry_plan::plan(
        &spec,
        &snapshot,
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    )
    .expect_err("a layout change is refused");
    let text = errors.to_string();
    assert!(text.contains("layout"), "{text}");
    assert!(text.contains("never recreates a pool"), "{text}");
}
