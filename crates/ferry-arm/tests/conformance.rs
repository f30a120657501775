//! Conformance with the official ARM examples in `../shared/arm-examples`: every body parses
//! into ferry's models and serialises back without losing a field, and the simulator accepts
//! every example request and answers with a body of the example's shape.

mod support;

use std::path::PathBuf;

use ferry_arm::models::*;
use ferry_arm::{Method, Url, WriteOptions};
use serde_json::Value;

fn examples_folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/arm-examples")
}

/// Each example with its method and URL template, read from the README beside them.
fn examples() -> Vec<(String, String, String, Value)> {
    let folder = examples_folder();
    let readme = std::fs::read_to_string(folder.join("README.md"))
        .expect("the shared examples are beside the repository");
    let mut found = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        if let Some(name) = line
            .strip_prefix("### `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            current = Some(name.to_owned());
        }
        if let (Some(file), Some(rest)) = (&current, line.strip_prefix("- Operation: ")) {
            let method = rest.split("**").nth(1).unwrap_or_default().to_owned();
            let template = rest.split('`').nth(3).unwrap_or_default().to_owned();
            let text = std::fs::read_to_string(folder.join(file)).unwrap();
            found.push((
                file.clone(),
                method,
                template,
                serde_json::from_str(&text).unwrap(),
            ));
            current = None;
        }
    }
    found
}

/// Parses into `T` and back, and asserts nothing was lost or changed.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
    file: &str,
    what: &str,
    value: &Value,
) {
    let parsed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|error| panic!("{file} {what}: {error}"));
    let back = serde_json::to_value(&parsed).unwrap();
    assert_eq!(&back, value, "{file} {what} changed in a round trip");
}

fn check_body(file: &str, what: &str, body: &Value) {
    let name = file.rsplit('/').next().unwrap_or_default();
    match file.split('/').next().unwrap_or_default() {
        "compute-disks" => round_trip::<Disk>(file, what, body),
        "compute-virtualmachines" if name.contains("InstanceView") => {
            round_trip::<VirtualMachineInstanceView>(file, what, body)
        }
        "compute-virtualmachines" if name.contains("AttachDetach") => {
            if what != "request" {
                round_trip::<StorageProfile>(file, what, body)
            }
        }
        "compute-virtualmachines" => round_trip::<VirtualMachine>(file, what, body),
        "containerservice" if name.contains("List") => {
            round_trip::<ListPage<ManagedCluster>>(file, what, body)
        }
        "containerservice" => round_trip::<ManagedCluster>(file, what, body),
        "dns" if name.contains("Zone") => round_trip::<DnsZone>(file, what, body),
        "dns" if name.contains("List") => round_trip::<ListPage<RecordSet>>(file, what, body),
        "dns" => round_trip::<RecordSet>(file, what, body),
        "network" if name.starts_with("NetworkInterface") => {
            round_trip::<NetworkInterface>(file, what, body)
        }
        "network" if name.starts_with("PublicIp") => {
            round_trip::<PublicIpAddress>(file, what, body)
        }
        "network" => round_trip::<VirtualNetwork>(file, what, body),
        "resources" => round_trip::<ResourceGroup>(file, what, body),
        other => panic!("no model for examples in {other}"),
    }
}

/// The request body: the one object among the parameters.
fn request_body(example: &Value) -> Option<Value> {
    example["parameters"]
        .as_object()?
        .values()
        .find(|value| value.is_object())
        .cloned()
}

#[test]
fn every_example_body_round_trips_through_the_models() {
    let examples = examples();
    assert!(
        examples.len() >= 29,
        "found only {} examples",
        examples.len()
    );
    for (file, _, _, example) in &examples {
        if let Some(body) = request_body(example) {
            check_body(file, "request", &body);
        }
        for (status, response) in example["responses"].as_object().unwrap() {
            if let Some(body) = response.get("body") {
                check_body(file, &format!("response {status}"), body);
            }
        }
    }
}

fn url_path(template: &str, parameters: &Value) -> String {
    let mut path = template.to_owned();
    for (name, value) in parameters.as_object().unwrap() {
        if let Some(text) = value.as_str() {
            path = path.replace(&format!("{{{name}}}"), text);
        }
    }
    // Some examples fill a parameter with a placeholder such as `{subscription-id}`.
    path.replace(['{', '}'], "")
}

fn ids_in(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(text)
            if text
                .to_ascii_lowercase()
                .contains("/providers/microsoft.compute/disks/") =>
        {
            found.push(text.clone())
        }
        Value::Array(items) => items.iter().for_each(|item| ids_in(item, found)),
        Value::Object(map) => map.values().for_each(|item| ids_in(item, found)),
        _ => {}
    }
}

#[tokio::test]
async fn the_simulator_accepts_every_example_request() {
    for (file, method, template, example) in examples() {
        // A world per example: examples reuse names and disks that would otherwise collide.
        let world = support::start().await;
        let client = &world.client;
        let parameters = &example["parameters"];
        let path = url_path(&template, parameters);
        assert!(!path.contains('{'), "{file}: unfilled template {path}");
        let group = path.split('/').take(5).collect::<Vec<_>>().join("/");
        world
            .simulator
            .seed(&group, serde_json::json!({"location": "westus"}))
            .unwrap();
        let body = request_body(&example);
        // Disks a request refers to exist first, unattached, as they would on Azure.
        let mut disks = Vec::new();
        if let Some(body) = &body {
            ids_in(body, &mut disks);
        }
        if method != "PUT" {
            ids_in(&example["responses"]["200"]["body"], &mut disks);
        }
        disks.retain(|id| !id.eq_ignore_ascii_case(&path));
        for disk in disks {
            let _ = world.simulator.seed(
                &disk,
                serde_json::json!({"location": "westus", "properties": {"diskSizeGB": 8}}),
            );
        }
        // Reads, changes and deletes need the resource: seed it from the example's own answer.
        let resource_path = if method == "POST" || path.ends_with("/instanceView") {
            path.rsplit_once('/').unwrap().0.to_owned()
        } else {
            path.clone()
        };
        let is_collection = file.contains("List");
        if method != "PUT" && !is_collection {
            let seed = if file.contains("instanceView")
                || file.contains("InstanceView")
                || method == "POST"
            {
                serde_json::json!({"location": "westus"})
            } else {
                example["responses"]["200"]["body"].clone()
            };
            let seed = if seed.is_object() {
                seed
            } else {
                serde_json::json!({"location": "westus"})
            };
            let mut seed = seed;
            seed.as_object_mut()
                .unwrap()
                .entry("location")
                .or_insert(serde_json::json!("westus"));
            if let Some(zone) = resource_path.to_ascii_lowercase().find("/dnszones/") {
                let zone_end = resource_path[zone + 10..]
                    .find('/')
                    .map_or(resource_path.len(), |end| zone + 10 + end);
                world
                    .simulator
                    .seed(
                        &resource_path[..zone_end],
                        serde_json::json!({"location": "global"}),
                    )
                    .unwrap();
            }
            world
                .simulator
                .seed(&resource_path, seed)
                .unwrap_or_else(|error| panic!("{file}: {error}"));
        }
        if is_collection && path.to_ascii_lowercase().contains("/dnszones/") {
            let zone = path.rsplit_once('/').unwrap().0;
            world
                .simulator
                .seed(zone, serde_json::json!({"location": "global"}))
                .unwrap();
            world
                .simulator
                .seed(
                    &format!("{zone}/A/record1"),
                    serde_json::json!({"properties": {"TTL": 3600}}),
                )
                .unwrap();
        }
        if path.to_ascii_lowercase().contains("/dnszones/")
            && method == "PUT"
            && file.contains("Recordset")
        {
            let zone = path.rsplitn(3, '/').nth(2).unwrap();
            world
                .simulator
                .seed(zone, serde_json::json!({"location": "global"}))
                .unwrap();
        }
        let mut url = Url::parse(&format!("{}{path}", world.simulator.endpoint()))
            .unwrap_or_else(|error| panic!("{file}: {path}: {error}"));
        for (name, value) in parameters.as_object().unwrap() {
            let in_template = template.contains(&format!("{{{name}}}"));
            if !in_template && !value.is_object() {
                let text = value
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| value.to_string());
                url.query_pairs_mut().append_pair(name, &text);
            }
        }
        let method = match method.as_str() {
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "POST" => Method::Post,
            _ => Method::Get,
        };
        let response = client
            .send(
                method,
                url,
                body.map(|body| serde_json::to_vec(&body).unwrap()),
                &WriteOptions::default(),
            )
            .await
            .unwrap_or_else(|error| panic!("{file}: {error}"));
        let status = response.status;
        assert!(
            (200..300).contains(&status),
            "{file}: answered {status}: {}",
            String::from_utf8_lossy(&response.body)
        );
        let expected = example["responses"]
            .get(status.to_string())
            .and_then(|answer| answer.get("body"));
        if let (Some(expected), Some(actual)) = (expected, response.json_if_any::<Value>().unwrap())
        {
            let expected_keys: Vec<&String> = expected
                .as_object()
                .map(|map| map.keys().collect())
                .unwrap_or_default();
            for key in ["id", "name", "type", "properties", "value", "location"] {
                if expected_keys.iter().any(|expected| *expected == key) {
                    assert!(
                        actual.get(key).is_some(),
                        "{file}: the simulator's {status} answer lacks `{key}`"
                    );
                }
            }
            if let (Some(expected), Some(actual)) = (
                expected.get("properties").and_then(Value::as_object),
                actual.get("properties"),
            ) && let Some(request_properties) =
                request_body(&example).and_then(|body| body.get("properties").cloned())
            {
                for key in expected
                    .keys()
                    .filter(|key| request_properties.get(key.as_str()).is_some())
                {
                    assert!(
                        actual.get(key).is_some(),
                        "{file}: the simulator's answer lacks properties.{key}"
                    );
                }
            }
        }
    }
}
