//! Per-kind concurrency limits: how many steps of one kind the engine runs at once when the
//! spec's `[limits]` or `ferry apply --kind-parallelism KIND=N` says so, over the provider's
//! own [`concurrency_limit`](crate::Provider::concurrency_limit).
//!
//! The defaults, and why, are each provider's: hooks follow the global parallelism (they are
//! processes on this machine, and the operator's `--parallelism` is the machine's budget);
//! the Azure kinds keep 8 each (ARM's write limits: a subscription's bucket of 200 writes,
//! refilled at 10 a second); ZFS pools keep 4 (one SSH connection per host runs one `zpool`
//! command at a time, so more would only queue on the host).

use std::collections::BTreeMap;

use crate::Kind;
use crate::provider::IntegerRange;

/// The values a per-kind limit may take. Zero would leave the kind's steps waiting forever;
/// above a thousand is a typo rather than a plan (a thousand hooks are a thousand processes,
/// and a thousand ARM writes at once would drain a subscription's bucket of 200 writes five
/// times over).
pub const KIND_PARALLELISM_RANGE: IntegerRange = IntegerRange::new(1, 1_000);

/// The limits set for some kinds; a kind not in the map keeps its provider's.
pub type KindLimits = BTreeMap<Kind, usize>;

/// Why a `KIND=N` setting (from the command line) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindLimitError {
    #[error("`{text}` has no limit: write it as KIND=N, such as hook=16")]
    NoValue { text: String },
    #[error("unknown kind `{kind}` in `{text}`: the kinds are {}", kinds_list())]
    UnknownKind { kind: String, text: String },
    #[error(
        "the limit in `{text}` is not a whole number: write it as KIND=N with N {}",
        KIND_PARALLELISM_RANGE.describe()
    )]
    NotANumber { text: String },
    #[error(
        "the limit in `{text}` is {value}, outside its range {}: a kind needs at least one step at a time, and more than {} is a typo rather than a plan",
        KIND_PARALLELISM_RANGE.describe(),
        KIND_PARALLELISM_RANGE.max
    )]
    OutOfRange { text: String, value: String },
}

fn kinds_list() -> String {
    Kind::ALL
        .iter()
        .map(|kind| kind.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One `KIND=N`, as `--kind-parallelism` takes it: `hook=16`.
pub fn parse_kind_limit(text: &str) -> Result<(Kind, usize), KindLimitError> {
    let Some((kind, value)) = text.split_once('=') else {
        return Err(KindLimitError::NoValue {
            text: text.to_owned(),
        });
    };
    let kind_name = kind.trim();
    let kind = kind_name
        .parse::<Kind>()
        .map_err(|_| KindLimitError::UnknownKind {
            kind: kind_name.to_owned(),
            text: text.to_owned(),
        })?;
    let value = value.trim();
    let number = value
        .parse::<i64>()
        .map_err(|_| KindLimitError::NotANumber {
            text: text.to_owned(),
        })?;
    if !KIND_PARALLELISM_RANGE.contains(number) {
        return Err(KindLimitError::OutOfRange {
            text: text.to_owned(),
            value: value.to_owned(),
        });
    }
    // The range check above keeps the number positive and small.
    Ok((kind, usize::try_from(number).unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_and_a_limit_parse_and_bad_ones_say_why() {
        assert_eq!(parse_kind_limit("hook=16"), Ok((Kind::Hook, 16)));
        assert_eq!(parse_kind_limit(" vm = 1000 "), Ok((Kind::Vm, 1000)));
        let messages: Vec<String> = ["hook", "hok=16", "hook=many", "hook=0", "hook=1001"]
            .iter()
            .map(|text| parse_kind_limit(text).unwrap_err().to_string())
            .collect();
        assert_eq!(
            messages,
            [
                "`hook` has no limit: write it as KIND=N, such as hook=16",
                "unknown kind `hok` in `hok=16`: the kinds are resource_group, vnet, public_ip, vm, disk, aks_cluster, zfs_pool, dns_record, static_ip, hook, check",
                "the limit in `hook=many` is not a whole number: write it as KIND=N with N from 1 to 1000",
                "the limit in `hook=0` is 0, outside its range from 1 to 1000: a kind needs at least one step at a time, and more than 1000 is a typo rather than a plan",
                "the limit in `hook=1001` is 1001, outside its range from 1 to 1000: a kind needs at least one step at a time, and more than 1000 is a typo rather than a plan",
            ]
        );
    }
}
