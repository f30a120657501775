//! What a resource's `provisioningState` says about its health, the same way for every kind.

use ferry_core::Health;
use serde_json::Value;

/// The health ARM's `properties.provisioningState` gives a resource, before anything its
/// provider checks itself (an API server's answer, a VM's power state):
/// - `Creating`: a create still under way, which an earlier apply started and did not see
///   finish; the planner creates it again ([`Health::Creating`]), so nothing that needs it
///   starts before it exists.
/// - `Failed`: built wrong ([`Health::Failed`]); the planner rebuilds a replaceable one.
/// - anything else, or none: healthy as far as ARM can say.
///
/// Network resources have no `Creating` (their enum is Succeeded, Updating, Deleting,
/// Failed): a virtual network or public IP being created reads `Updating`, which cannot be
/// told from an update and stays healthy here.
pub fn health_of(body: &Value) -> Health {
    let state = body
        .pointer("/properties/provisioningState")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if state.eq_ignore_ascii_case("creating") {
        Health::Creating {
            reason: "ARM reports provisioningState Creating".to_owned(),
        }
    } else if state.eq_ignore_ascii_case("failed") {
        Health::Failed {
            reason: "ARM reports provisioningState Failed".to_owned(),
        }
    } else {
        Health::Healthy
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn creating_and_failed_are_told_apart_from_everything_else() {
        let of = |state: &str| health_of(&json!({"properties": {"provisioningState": state}}));
        assert!(matches!(of("Creating"), Health::Creating { .. }));
        assert!(matches!(of("creating"), Health::Creating { .. }));
        assert!(matches!(of("Failed"), Health::Failed { .. }));
        for healthy in ["Succeeded", "Updating", "Deleting", ""] {
            assert_eq!(of(healthy), Health::Healthy, "{healthy}");
        }
        assert_eq!(health_of(&json!({"name": "x"})), Health::Healthy);
    }
}
