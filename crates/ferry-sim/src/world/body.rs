//! Helpers over the JSON bodies the world stores and answers: ARM's merge patch, the
//! `properties` object, server-owned fields kept from before, and the timestamps ARM writes.

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

pub(super) fn iso_time_now() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|duration| duration.as_secs() as i64)
        .unwrap_or_default();
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        (second_of_day / 60) % 60,
        second_of_day % 60
    )
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
