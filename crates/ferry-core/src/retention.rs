//! How long the generation a failover leaves is kept: the evidence for the postmortem and a
//! fallback, at the price of what it keeps running.
//!
//! The spec's `[failover] retire_old` and the flag `--retire-old` say when; a plan lists what
//! it keeps ([`KeptGeneration`]) and what that costs ([`crate::KindRules::upkeep`]); a later
//! apply retires it. A fenced VM stays fenced whatever the retention: keeping a generation
//! never plans a step on it.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::address::{Generation, InstanceAddress};
use crate::time::{format_time, parse_time};

/// When the generation a failover leaves is retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetireOld {
    /// In the failover's own apply, once the new generation serves; an old generation kept
    /// earlier is retired by the next apply.
    #[default]
    Now,
    /// Kept this long after its failover finished; the first apply after that retires it.
    After(Duration),
    /// Kept until an apply is run with `--retire-old now`.
    WhenAsked,
}

/// The words [`RetireOld`] is written with, for help texts and errors.
pub const RETIRE_OLD_CHOICES: &str =
    "now, when-asked, or a duration such as 24h or 7days (kept that long after the failover)";

/// Why a `retire_old` value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a retention: use {RETIRE_OLD_CHOICES}")]
pub struct RetireOldError {
    pub value: String,
}

impl FromStr for RetireOld {
    type Err = RetireOldError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || RetireOldError {
            value: text.to_owned(),
        };
        match text.trim() {
            "now" => Ok(Self::Now),
            "when-asked" => Ok(Self::WhenAsked),
            other => match humantime::parse_duration(other) {
                Ok(duration) if duration.is_zero() => Ok(Self::Now),
                Ok(duration) => Ok(Self::After(duration)),
                Err(_) => Err(error()),
            },
        }
    }
}

impl fmt::Display for RetireOld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Now => f.write_str("now"),
            Self::WhenAsked => f.write_str("when-asked"),
            Self::After(duration) => f.write_str(&retention_duration(*duration)),
        }
    }
}

/// When a generation that no longer serves goes, as `retire_old` says: `None` when it is
/// retired now. `stood_down` is when it stopped serving (from the state), `leaving_now` whether
/// the plan at hand is the failover away from it, `now` the time of the plan (without it, a
/// retention that ends at a time has not ended).
pub fn kept_until(
    retire_old: RetireOld,
    stood_down: Option<&str>,
    leaving_now: bool,
    now: Option<SystemTime>,
) -> Option<KeptUntil> {
    match retire_old {
        RetireOld::Now => None,
        RetireOld::WhenAsked => Some(KeptUntil::Asked),
        RetireOld::After(duration) => {
            let seconds = duration.as_secs();
            if leaving_now {
                return Some(KeptUntil::AfterThisFailover { seconds });
            }
            let Some(until) = retention_end(stood_down, duration) else {
                return Some(KeptUntil::UnknownStart { seconds });
            };
            match now {
                Some(now) if now >= until => None,
                _ => Some(KeptUntil::Time {
                    at: format_time(until),
                }),
            }
        }
    }
}

/// When a retention of `duration` from `stood_down` ends: `None` when the start is unknown or
/// unreadable, or the end is past what the clock holds (it never ends).
pub fn retention_end(stood_down: Option<&str>, duration: Duration) -> Option<SystemTime> {
    parse_time(stood_down?)?.checked_add(duration)
}

/// A retention's length as people write it: `24h`, `7d`, else humantime's `1day 1h 30m`.
pub fn retention_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match (seconds % 86_400, seconds % 3_600) {
        (0, _) if seconds >= 3 * 86_400 => format!("{}d", seconds / 86_400),
        (_, 0) if seconds > 0 => format!("{}h", seconds / 3_600),
        _ => humantime::format_duration(duration).to_string(),
    }
}

/// A generation that no longer serves and that this plan keeps rather than retires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptGeneration {
    pub generation: Generation,
    pub until: KeptUntil,
    /// Its instances that still exist, in address order.
    pub instances: Vec<KeptInstance>,
}

/// When a kept generation goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "when", rename_all = "snake_case")]
pub enum KeptUntil {
    /// This long after the failover this plan makes has finished.
    AfterThisFailover { seconds: u64 },
    /// At this time (RFC 3339): the first apply after it retires the generation.
    Time { at: String },
    /// When an apply is run with `--retire-old now`.
    Asked,
    /// The retention is a duration, but when its failover finished is not known (the state
    /// that recorded it was lost): kept until asked.
    UnknownStart { seconds: u64 },
}

/// One instance of a kept generation, and what it keeps costing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptInstance {
    pub address: InstanceAddress,
    /// What keeps running and billing (`3 nodes of Standard_D4s_v5`), from its reading; `None`
    /// when it costs nothing worth naming (a resource group, a hook's record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upkeep: Option<String>,
}

/// The generation after the serving one, built ahead and kept ready by a warm standby
/// (`[failover] standby = "warm"`), with what keeping it costs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandbyGeneration {
    pub generation: Generation,
    /// Its instances once this plan is applied, in address order.
    pub instances: Vec<KeptInstance>,
}

impl KeptGeneration {
    /// The instances that still cost something.
    pub fn costly(&self) -> impl Iterator<Item = &KeptInstance> {
        self.instances
            .iter()
            .filter(|instance| instance.upkeep.is_some())
    }
}

impl fmt::Display for KeptUntil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let duration = |seconds: u64| retention_duration(Duration::from_secs(seconds));
        match self {
            Self::AfterThisFailover { seconds } => write!(
                f,
                "retired by the first apply {} after this failover",
                duration(*seconds)
            ),
            Self::Time { at } => write!(f, "retired by the first apply after {at}"),
            Self::Asked => f.write_str("retired by `ferry apply --retire-old now`"),
            Self::UnknownStart { seconds } => write!(
                f,
                "to be kept {} after its failover, whose end the state does not record: retired by `ferry apply --retire-old now`",
                duration(*seconds)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retentions_read_as_written_and_print_back() {
        for (text, expected) in [
            ("now", RetireOld::Now),
            ("when-asked", RetireOld::WhenAsked),
            ("24h", RetireOld::After(Duration::from_secs(86_400))),
            ("7days", RetireOld::After(Duration::from_secs(7 * 86_400))),
            ("0s", RetireOld::Now),
        ] {
            assert_eq!(text.parse::<RetireOld>(), Ok(expected), "{text}");
        }
        for (seconds, shown) in [
            (90_000, "25h"),
            (86_400, "24h"),
            (7 * 86_400, "7d"),
            (5_400, "1h 30m"),
        ] {
            assert_eq!(
                RetireOld::After(Duration::from_secs(seconds)).to_string(),
                shown
            );
        }
        let error = "tomorrow".parse::<RetireOld>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "`tomorrow` is not a retention: use now, when-asked, or a duration such as 24h or 7days (kept that long after the failover)"
        );
    }
}
