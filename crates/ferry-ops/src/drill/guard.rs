//! A drill's providers: each kind's own, with the safety pass asked again about every step
//! as it starts, with its resolved inputs and what the state recorded of its instance.

use ferry_core::{InstanceAddress, Observation};
use ferry_plan::drill::ProductionIdentities;

/// A drill's provider: the kind's own, with the safety pass asked again about each step's
/// resolved inputs before it starts (an address produced during the drill, which the plan
/// only holds as `${...}`, is known then). A step that would touch production fails, and
/// nothing is sent.
#[derive(Debug)]
pub(crate) struct GuardedProvider {
    pub(crate) inner: std::sync::Arc<dyn ferry_core::Provider>,
    pub(crate) production: std::sync::Arc<ProductionIdentities>,
}

#[async_trait::async_trait]
impl ferry_core::Provider for GuardedProvider {
    fn kind(&self) -> ferry_core::Kind {
        self.inner.kind()
    }

    fn concurrency_limit(&self) -> usize {
        self.inner.concurrency_limit()
    }

    async fn read(&self, context: ferry_core::ReadContext<'_>) -> Observation {
        self.inner.read(context).await
    }

    async fn apply(
        &self,
        step: &ferry_core::Step,
        context: ferry_core::ApplyContext<'_>,
    ) -> Result<ferry_core::StepOutcome, ferry_core::StepError> {
        // Its inputs, and what the state recorded of its instance (the id the provider will
        // act on).
        let mut touched = self.production.touched_by(step, context.inputs);
        if let Some(recorded) = (context.outputs)(&step.address) {
            for violation in self.production.touched_by(step, &recorded) {
                if !touched.contains(&violation) {
                    touched.push(violation);
                }
            }
        }
        if !touched.is_empty() {
            return Err(ferry_core::StepError::permanent(
                ferry_plan::drill::TouchesProduction(touched).to_string(),
            ));
        }
        self.inner.apply(step, context).await
    }

    async fn tend(
        &self,
        instance: &InstanceAddress,
        context: ferry_core::ApplyContext<'_>,
    ) -> Result<Option<String>, ferry_core::StepError> {
        self.inner.tend(instance, context).await
    }

    fn begin_read_round(&self) -> ferry_core::provider::ReadRound {
        self.inner.begin_read_round()
    }
}

/// `providers` with each one guarded against touching `production`.
pub(crate) fn guarded(
    providers: &ferry_core::Providers,
    production: &std::sync::Arc<ProductionIdentities>,
) -> ferry_core::Providers {
    providers
        .kinds()
        .filter_map(|kind| providers.get(kind))
        .fold(ferry_core::Providers::new(), |guarded, inner| {
            guarded.with(std::sync::Arc::new(GuardedProvider {
                inner: inner.clone(),
                production: production.clone(),
            }))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::{Action, Snapshot, StepId};
    use ferry_core::{Attributes, Kind, Provider};

    /// A step whose inputs, resolved as it starts, name an address production holds fails
    /// before its provider is called; the same step with the drill's own address goes through.
    #[tokio::test]
    async fn a_step_whose_resolved_inputs_name_production_never_reaches_its_provider() {
        let mut production = Snapshot::new(1);
        production.resources.insert(
            "public_ip.ingress@g1".parse().unwrap(),
            Observation::present(
                serde_json::from_value(
                    serde_json::json!({"name": "data100-ingress", "address": "127.0.1.177"}),
                )
                .unwrap(),
            ),
        );
        let world = ferry_world::World::new();
        let guarded = GuardedProvider {
            inner: std::sync::Arc::new(ferry_world::MemoryProvider::new(Kind::Hook, &world)),
            production: std::sync::Arc::new(ProductionIdentities::of(&production)),
        };
        let address: InstanceAddress = "hook.prod_hub@g1".parse().unwrap();
        let step = ferry_core::Step {
            id: StepId::new(&address, Action::Run),
            address,
            action: Action::Run,
            reason: String::new(),
            after: Vec::new(),
            estimate_seconds: 1,
            changes: Default::default(),
            inputs: serde_json::from_value(
                serde_json::json!({"env": {"INGRESS_IP": "${public_ip.ingress.address}"}}),
            )
            .unwrap(),
            warning: None,
        };
        let run = |ingress: &str| {
            let inputs: Attributes = serde_json::from_value(
                serde_json::json!({"env": {"INGRESS_IP": ingress, "FERRY_DRILL": "1"}}),
            )
            .unwrap();
            let guarded = &guarded;
            let step = &step;
            async move {
                guarded
                    .apply(
                        step,
                        ferry_core::ApplyContext {
                            inputs: &inputs,
                            outputs: &|_| None,
                            progress: &|_| {},
                            resume_token: None,
                            record_resume_token: &|_| {},
                        },
                    )
                    .await
            }
        };
        let refused = run("127.0.1.177").await.unwrap_err();
        assert!(!refused.transient);
        assert!(
            refused
                .message
                .contains("hook.prod_hub@g1:run: its env names 127.0.1.177, which is production's (public_ip.ingress@g1)"),
            "{}",
            refused.message
        );
        assert!(world.calls().is_empty(), "the provider was called");
        run("127.0.1.222").await.unwrap();
        assert_eq!(world.calls().len(), 1);

        // A step whose instance the state recorded as production's (a public IP of
        // production's name) is refused whatever its inputs say.
        let ip: InstanceAddress = "public_ip.ingress@g1".parse().unwrap();
        let ip_step = ferry_core::Step {
            id: StepId::new(&ip, Action::Update),
            address: ip.clone(),
            action: Action::Update,
            inputs: Attributes::new(),
            ..step.clone()
        };
        let recorded: Attributes = serde_json::from_value(
            serde_json::json!({"name": "data100-ingress", "address": "127.0.1.177"}),
        )
        .unwrap();
        let outputs = |instance: &InstanceAddress| (instance == &ip).then(|| recorded.clone());
        let refused = guarded
            .apply(
                &ip_step,
                ferry_core::ApplyContext {
                    inputs: &Attributes::new(),
                    outputs: &outputs,
                    progress: &|_| {},
                    resume_token: None,
                    record_resume_token: &|_| {},
                },
            )
            .await
            .unwrap_err();
        assert!(
            refused.message.contains(
                "public_ip.ingress@g1:update: the public_ip named data100-ingress is production's (public_ip.ingress@g1)"
            ),
            "{}",
            refused.message
        );
        assert_eq!(world.calls().len(), 1);
    }
}
