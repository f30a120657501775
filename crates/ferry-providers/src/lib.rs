//! Every built-in kind, assembled: the one place that depends on all provider crates. It
//! gives the rules of every kind ([`rule_book`]) and the real providers ([`live_providers`]).

mod live;

use ferry_core::RuleBook;

pub use live::{SetupError, live_providers};

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
        .with(Box::new(ferry_hook::HookRules))
        .with(Box::new(ferry_hook::CheckRules))
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
