//! Helpers over the JSON bodies the world stores and answers: ARM's merge patch, the
//! `properties` object, server-owned fields kept from before, and the timestamps ARM writes.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// Merges a JSON merge patch (RFC 7396) into `target`, as ARM's PATCH does.
pub(super) fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

pub(super) fn properties_mut(body: &mut Value) -> &mut Map<String, Value> {
    if !body.get("properties").is_some_and(Value::is_object) {
        body["properties"] = json!({});
    }
    body["properties"]
        .as_object_mut()
        .expect("just made an object")
}

/// The time now as ARM writes it in `startTime` and `timeCreated`: RFC 3339 in UTC, to the
/// second (`2025-06-01T11:59:59Z`).
pub(super) fn iso_time_now() -> String {
    rfc3339_seconds(SystemTime::now())
}

/// A clock set before 1970 reads as 1970's first second (humantime refuses earlier times).
fn rfc3339_seconds(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time.max(UNIX_EPOCH)).to_string()
}

/// Keeps `properties.{field}` of the previous body when a write omits it: the fields ARM owns
/// survive a PUT that does not send them.
pub(super) fn keep_previous(body: &mut Value, previous: &Value, field: &str) {
    if let Some(value) = previous
        .get("properties")
        .and_then(|properties| properties.get(field))
        && body
            .get("properties")
            .and_then(|properties| properties.get(field))
            .is_none()
    {
        properties_mut(body).insert(field.to_owned(), value.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_in_utc_to_the_second() {
        for (time, text) in [
            (UNIX_EPOCH, "1970-01-01T00:00:00Z"),
            (UNIX_EPOCH - Duration::from_secs(1), "1970-01-01T00:00:00Z"),
            (
                UNIX_EPOCH + Duration::from_millis(1_999),
                "1970-01-01T00:00:01Z",
            ),
            (
                UNIX_EPOCH + Duration::from_secs(951_782_400),
                "2000-02-29T00:00:00Z",
            ),
            (
                UNIX_EPOCH + Duration::from_secs(1_748_779_199),
                "2025-06-01T11:59:59Z",
            ),
            (
                UNIX_EPOCH + Duration::from_secs(4_107_542_399),
                "2100-02-28T23:59:59Z",
            ),
        ] {
            assert_eq!(rfc3339_seconds(time), text);
        }
    }
}
