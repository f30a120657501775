//! Whether this plan is a failover: the triggers, the spec's mode, the operator's request and
//! a failover already under way.

use super::*;

pub(super) enum Decision {
    Failover(Failover),
    /// `due`: the readings that call for a failover the spec's manual mode leaves to the
    /// operator.
    Reconcile {
        notes: Vec<String>,
        due: Option<String>,
    },
}

pub(super) fn decide_failover(
    spec: &Spec,
    snapshot: &Snapshot,
    config: &PlanConfig,
) -> Result<Decision, PlanErrors> {
    let active = snapshot.active_generation;
    let unhealthy: Vec<String> = spec
        .failover
        .triggers
        .iter()
        .filter_map(|trigger| {
            let instance = trigger.at(Some(active));
            match snapshot.get(&instance) {
                Some(Observation::Present {
                    health: ferry_core::Health::Unhealthy { reason },
                    ..
                }) => Some(format!("{instance} is unhealthy: {reason}")),
                _ => None,
            }
        })
        .collect();
    let failover = |trigger: String| {
        Decision::Failover(Failover {
            from_generation: active,
            to_generation: active + 1,
            trigger,
        })
    };
    // A failover an earlier apply started is finished whatever the readings say now: part
    // of the service may already have moved (the old VM fenced, disks in the new group), and
    // neither reconciling the old generation nor starting another failover is safe from there.
    if let Some(started) = &snapshot.failover_in_progress
        && started.from_generation == active
    {
        let to = started.to_generation;
        return match config.failover {
            FailoverRequest::Never => Err(PlanErrors(vec![
                PlanError::new(
                    None,
                    format!(
                        "the failover from generation {active} to {to} that an earlier apply started is not finished, and --no-failover would leave it half done"
                    ),
                )
                .help("run the command without --no-failover: the plan finishes that failover"),
            ])),
            FailoverRequest::Force | FailoverRequest::Policy => Ok(Decision::Failover(Failover {
                from_generation: active,
                to_generation: to,
                trigger: finishing(&started.trigger),
            })),
        };
    }
    match config.failover {
        FailoverRequest::Never => Ok(Decision::Reconcile {
            due: None,
            notes: unhealthy
                .into_iter()
                .map(|reading| format!("{reading} (no failover: --no-failover)"))
                .collect(),
        }),
        FailoverRequest::Force if active == 0 => Err(PlanErrors(vec![
            PlanError::new(None, "there is nothing to fail over: no generation was ever built")
                .help("run ferry apply without --failover to build generation 1"),
        ])),
        FailoverRequest::Force if spec.failover.mode == FailoverMode::Off => {
            Err(PlanErrors(vec![
                PlanError::new(None, "the spec's failover mode is off")
                    .help("set mode = \"manual\" or \"automatic\" in [failover] to allow a failover"),
            ]))
        }
        FailoverRequest::Force => Ok(failover(match unhealthy.first() {
            Some(reading) => format!("--failover ({reading})"),
            None => "--failover (a planned failover: every trigger reads healthy)".to_owned(),
        })),
        FailoverRequest::Policy => match (spec.failover.mode, unhealthy.first()) {
            (_, None) => Ok(Decision::Reconcile {
                notes: Vec::new(),
                due: None,
            }),
            (FailoverMode::Automatic, Some(_)) if active > 0 => {
                Ok(failover(unhealthy.join("; ")))
            }
            (FailoverMode::Manual, Some(_)) => Ok(Decision::Reconcile {
                due: Some(unhealthy.join("; ")),
                notes: unhealthy
                    .into_iter()
                    .map(|reading| {
                        format!("{reading}: the failover mode is manual, run `ferry plan --failover` to plan the failover")
                    })
                    .collect(),
            }),
            (_, Some(_)) => Ok(Decision::Reconcile {
                due: None,
                notes: unhealthy
                    .into_iter()
                    .map(|reading| format!("{reading} (the spec's failover mode is off)"))
                    .collect(),
            }),
        },
    }
}

/// The trigger of a plan that finishes an interrupted failover, naming the original trigger
/// once however many applies were interrupted.
pub(super) fn finishing(trigger: &str) -> String {
    const PREFIX: &str = "finishing the failover an earlier apply started: ";
    format!(
        "{PREFIX}{}",
        trigger.strip_prefix(PREFIX).unwrap_or(trigger)
    )
}
