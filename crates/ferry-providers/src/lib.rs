//! Every built-in kind, assembled: the one place that depends on all provider crates. It
//! gives the rules of every kind ([`rule_book`]) and the real providers ([`live_providers`]).

mod live;

use ferry_core::RuleBook;

pub use live::{SetupError, live_providers, with_azure_providers};

/// The rules of every kind ferry ships.
pub fn rule_book() -> RuleBook {
    RuleBook::new()
        .with(Box::new(ferry_compute::ResourceGroupRules))
        .with(Box::new(ferry_compute::VnetRules))
        .with(Box::new(ferry_compute::PublicIpRules))
        .with(Box::new(ferry_compute::VmRules))
        .with(Box::new(ferry_disk::DiskRules))
        .with(Box::new(ferry_aks::AksClusterRules))
        .with(Box::new(ferry_zfs::ZfsPoolRules))
        .with(Box::new(ferry_dns::DnsRecordRules))
        .with(Box::new(ferry_aks::StaticIpRules))
        .with(Box::new(ferry_hook::HookRules))
        .with(Box::new(ferry_hook::CheckRules))
}

/// Provider-level guards on a finished plan, beyond the planner's invariants: today, DNS's
/// refusal of a plan that changes more than 30% of a zone's managed records (as octoDNS does)
/// unless `force`. Returns what to tell the operator when the plan is refused.
pub fn check_plan(
    plan: &ferry_core::Plan,
    observed: &ferry_core::Snapshot,
    force: bool,
) -> Result<(), String> {
    let managed = ferry_dns::managed_records_per_zone(observed);
    let config = ferry_dns::ChangeShareConfig {
        force,
        ..ferry_dns::ChangeShareConfig::default()
    };
    ferry_dns::check_change_share(&plan.steps, observed, &managed, &config)
        .map_err(|refused| refused.to_string())
}

#[cfg(test)]
mod tests {
    use ferry_core::Kind;

    #[test]
    fn every_kind_has_rules() {
        let book = super::rule_book();
        for kind in Kind::ALL {
            assert_eq!(book.get(kind).map(|rules| rules.kind()), Some(kind));
        }
    }
}
