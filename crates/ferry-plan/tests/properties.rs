//! Laws of the planner, on generated specs: every plan order respects every edge, planning is
//! deterministic, and planning again from the world a plan leaves behind finds nothing to do,
//! after a first build and after a failover.

mod support;

use std::collections::HashSet;

use ferry_core::{Plan, Snapshot};
use ferry_plan::{FailoverRequest, PlanConfig};
use proptest::prelude::*;
use support::{converge, synthetic};

fn respects_edges(plan: &Plan) {
    let mut seen = HashSet::new();
    for step in &plan.steps {
        for before in &step.after {
            assert!(
                seen.contains(before),
                "{} is listed before {before}",
                step.id
            );
        }
        seen.insert(step.id.clone());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn plans_respect_edges_are_deterministic_and_converge(size in 5usize..80, seed in any::<u64>()) {
        let spec = support::spec(&[("synthetic.toml", &synthetic::spec_text(size, seed))]);
        let rules = ferry_providers::rule_book();
        let empty = Snapshot::new(0);
        let build = ferry_plan::plan(&spec, &empty, &rules, &PlanConfig::default()).unwrap();
        respects_edges(&build);
        let again = ferry_plan::plan(&spec, &empty, &rules, &PlanConfig::default()).unwrap();
        prop_assert_eq!(&build, &again);

        let built = converge(&empty, &build, 1);
        let nothing = ferry_plan::plan(&spec, &built, &rules, &PlanConfig::default()).unwrap();
        prop_assert!(nothing.is_empty(), "{}", ferry_plan::render::text(&nothing, &Default::default()));

        let force = PlanConfig { failover: FailoverRequest::Force, ..PlanConfig::default() };
        let failover = ferry_plan::plan(&spec, &built, &rules, &force).unwrap();
        respects_edges(&failover);
        let moved = converge(&built, &failover, 2);
        let nothing = ferry_plan::plan(&spec, &moved, &rules, &PlanConfig::default()).unwrap();
        prop_assert!(nothing.is_empty(), "{}", ferry_plan::render::text(&nothing, &Default::default()));
    }
}
