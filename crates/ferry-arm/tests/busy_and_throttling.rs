//! The client against a simulator as strict as Azure about overlapping writes and request
//! rates: a second write on a resource whose write still runs is refused with its type's code
//! (reads are answered), another writer holds a resource for a while and ferry's step
//! operations ride through it, ARM's token buckets answer with their remaining counts and
//! `429 SubscriptionRequestsThrottled`, and the client's pacer keeps below them.

mod support;

use ferry_arm::{
    ArmClient, ArmClientConfig, ArmError, Method, PacingSettings, ResourceId, RetrySettings,
    StepOperations, Url, WriteOptions, api_version,
};
use ferry_sim::{ArmThrottling, Fault, Simulator};
use serde_json::{Value, json};
use support::{create_disk, create_group, group_id, resource_id, start, start_with, vm_body};

fn tags() -> Value {
    json!({"tags": {"owner": "ferry"}})
}

/// The refusal of a write, with its status and code.
fn refusal<T: std::fmt::Debug>(result: Result<T, ArmError>) -> (u16, String, String) {
    match result.unwrap_err() {
        ArmError::Service(error) => (error.status, error.code, error.message),
        other => panic!("expected ARM's refusal, got {other}"),
    }
}

#[tokio::test]
async fn a_write_on_a_vm_or_its_disk_while_the_vm_write_runs_is_refused_and_reads_are_answered() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-busy").await;
    let disk = create_disk(client, "rg-busy", "data0").await;
    let vm = resource_id("rg-busy", "Microsoft.Compute/virtualMachines", "vm");
    // The VM's create never ends, so it holds the VM (and the disk it attaches) for the test.
    world.simulator.inject(Fault::HangOperation {
        method: Some("PUT".to_owned()),
        path_contains: "virtualMachines/vm".to_owned(),
        count: Some(1),
    });
    let started = client
        .put::<_, Value>(
            &vm,
            api_version::COMPUTE,
            &vm_body(json!([{"lun": 0, "createOption": "Attach", "managedDisk": {"id": disk}}])),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert!(started.pending().is_some());

    let concurrent = (
        409,
        "ConflictingConcurrentWriteNotAllowed".to_owned(),
        "The operation was interrupted by a conflicting concurrent write on the same entity. Please retry later.".to_owned(),
    );
    let patched = client
        .patch::<_, Value>(&vm, api_version::COMPUTE, &tags(), &WriteOptions::default())
        .await;
    assert!(patched.as_ref().is_err_and(ArmError::is_busy));
    assert_eq!(refusal(patched), concurrent);
    let deallocated = client
        .post::<Value, Value>(
            &format!("{vm}/deallocate"),
            api_version::COMPUTE,
            None,
            &WriteOptions::default(),
        )
        .await;
    assert_eq!(refusal(deallocated), concurrent);
    // The disk the VM's write attaches is held by it too.
    let disk_patched = client
        .patch::<_, Value>(&disk, api_version::DISKS, &tags(), &WriteOptions::default())
        .await;
    assert_eq!(refusal(disk_patched), concurrent);
    let deleted = client
        .delete(&disk, api_version::DISKS, &WriteOptions::default())
        .await;
    assert_eq!(refusal(deleted), concurrent);
    // Reads are never refused.
    let read: Value = client.get(&vm, api_version::COMPUTE).await.unwrap().value;
    assert_eq!(read["properties"]["provisioningState"], "Creating");
    client
        .get::<Value>(&disk, api_version::DISKS)
        .await
        .unwrap();
    let codes: Vec<Option<String>> = world
        .simulator
        .events()
        .iter()
        .filter(|event| event.outcome == "409")
        .map(|event| event.code.clone())
        .collect();
    assert_eq!(codes.len(), 4, "{codes:?}");

    // A write whose operation ends frees its resource.
    let other = resource_id("rg-busy", "Microsoft.Compute/virtualMachines", "vm-two");
    let _: Value = client
        .put_and_wait(
            &other,
            api_version::COMPUTE,
            &vm_body(json!([])),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let _: Value = client
        .patch_and_wait(
            &other,
            api_version::COMPUTE,
            &tags(),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_write_on_an_aks_cluster_being_created_is_refused_as_aks_refuses_it() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-aks").await;
    let cluster = resource_id(
        "rg-aks",
        "Microsoft.ContainerService/managedClusters",
        "aks",
    );
    world.simulator.inject(Fault::HangOperation {
        method: Some("PUT".to_owned()),
        path_contains: "managedClusters/aks".to_owned(),
        count: Some(1),
    });
    let body = json!({"location": "westeurope", "properties": {"dnsPrefix": "aks"}});
    client
        .put::<_, Value>(
            &cluster,
            api_version::CONTAINER_SERVICE,
            &body,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let again = client
        .put::<_, Value>(
            &cluster,
            api_version::CONTAINER_SERVICE,
            &body,
            &WriteOptions::default(),
        )
        .await;
    assert!(again.as_ref().is_err_and(ArmError::is_busy));
    assert_eq!(
        refusal(again),
        (
            409,
            "OperationNotAllowed".to_owned(),
            "Operation is not allowed: Another operation (Creating) is in progress, please wait for it to finish before starting a new operation. See https://aka.ms/aks-pending-operation for more details".to_owned()
        )
    );
    // Listing credentials is no write.
    client
        .post::<Value, Value>(
            &format!("{cluster}/listClusterUserCredential"),
            api_version::CONTAINER_SERVICE,
            None,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn step_operations_ride_through_another_writer_on_the_vm() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-other").await;
    let vm = resource_id("rg-other", "Microsoft.Compute/virtualMachines", "nfs");
    let _: Value = client
        .put_and_wait(
            &vm,
            api_version::COMPUTE,
            &vm_body(json!([])),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    // A VM extension update starts just before ferry's first write and runs for two Azure
    // minutes (60 ms at the tests' time scale).
    world.simulator.inject(Fault::AnotherWriter {
        resource: "nfs".to_owned(),
        seconds: 120,
        after_seconds: 0,
        at_first_write: true,
    });
    let progress = std::sync::Mutex::new(Vec::new());
    let report = |line: String| progress.lock().unwrap().push(line);
    let operations = StepOperations::new(client, &|_| {}, &report);
    let id = ResourceId::parse(&vm).unwrap();
    let patched: Value = operations.patch(&id, &tags()).await.unwrap();
    assert_eq!(patched["tags"]["owner"], "ferry");
    let patches: Vec<(String, Option<String>)> = world
        .simulator
        .events()
        .into_iter()
        .filter(|event| event.what == "request" && event.method == "PATCH")
        .map(|event| (event.outcome, event.code))
        .collect();
    assert!(patches.len() >= 2, "{patches:?}");
    assert_eq!(
        patches[0],
        (
            "409".to_owned(),
            Some("ConflictingConcurrentWriteNotAllowed".to_owned())
        )
    );
    assert_eq!(patches.last().unwrap().0, "200", "{patches:?}");
    assert!(
        progress.lock().unwrap()[0].contains("waiting for another operation"),
        "{progress:?}"
    );
}

/// A client that neither retries nor paces: it shows ARM's answers as they come.
fn raw_client(simulator: &Simulator) -> ArmClient {
    let mut config = ArmClientConfig::simulator(
        Url::parse(simulator.endpoint()).unwrap(),
        simulator.ca_file().to_path_buf(),
    );
    config.retry = RetrySettings {
        max_retries: 0,
        ..config.retry
    };
    config.pacing.enabled = false;
    ArmClient::new(config).unwrap()
}

#[tokio::test]
async fn arm_throttling_counts_reads_writes_and_deletes_apart_and_says_what_remains() {
    // Three tokens per bucket and one back every 100 s: the fourth read in a row is refused.
    let world =
        start_with(|config| config.throttling = Some(ArmThrottling::uniform(3, 0.01))).await;
    let client = raw_client(&world.simulator);
    let url = client
        .url_for(&group_id("rg-none"), api_version::RESOURCES, &[])
        .unwrap();
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let response = client
            .send(Method::Get, url.clone(), None, &WriteOptions::default())
            .await
            .unwrap();
        assert_eq!(response.status, 404);
        remaining.push((
            response
                .header("x-ms-ratelimit-remaining-subscription-reads")
                .map(str::to_owned),
            response
                .header("x-ms-ratelimit-remaining-subscription-global-reads")
                .map(str::to_owned),
        ));
    }
    let some = |text: &str| Some(text.to_owned());
    assert_eq!(
        remaining,
        [
            (some("2"), some("44")),
            (some("1"), some("43")),
            (some("0"), some("42"))
        ]
    );
    let throttled = client
        .send(Method::Get, url.clone(), None, &WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.header("retry-after"), Some("100"));
    let error: Value = serde_json::from_slice(&throttled.body).unwrap();
    assert_eq!(error["error"]["code"], "SubscriptionRequestsThrottled");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Number of 'read' requests for subscription '00000000-0000-0000-0000-000000000001' actor 'ferry-simulator-client' exceeded. Please try again after '100' seconds"),
        "{message}"
    );
    // Writes and deletes have buckets of their own.
    let written = client
        .send(
            Method::Put,
            url.clone(),
            Some(br#"{"location": "westeurope"}"#.to_vec()),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(written.status, 201);
    assert_eq!(
        written.header("x-ms-ratelimit-remaining-subscription-writes"),
        Some("2")
    );
    let deleted = client
        .send(Method::Delete, url, None, &WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(
        deleted.header("x-ms-ratelimit-remaining-subscription-deletes"),
        Some("2")
    );
    let refused = world
        .simulator
        .events()
        .iter()
        .filter(|event| event.code.as_deref() == Some("SubscriptionRequestsThrottled"))
        .count();
    assert_eq!(refused, 1);
}

#[tokio::test]
async fn the_control_api_turns_azures_limits_on_and_off() {
    let world = start().await;
    let client = raw_client(&world.simulator);
    let url = client
        .url_for(&group_id("rg-none"), api_version::RESOURCES, &[])
        .unwrap();
    let before = client
        .send(Method::Get, url.clone(), None, &WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(
        before.header("x-ms-ratelimit-remaining-subscription-reads"),
        None,
        "off by default"
    );
    let control = Url::parse(&format!(
        "{}/ferry-sim/throttling",
        world.simulator.endpoint()
    ))
    .unwrap();
    let turned_on = client
        .send(
            Method::Put,
            control.clone(),
            Some(br#""azure""#.to_vec()),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(turned_on.status, 204);
    let on = client
        .send(Method::Get, url.clone(), None, &WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(
        on.header("x-ms-ratelimit-remaining-subscription-reads"),
        Some("249")
    );
    assert_eq!(
        on.header("x-ms-ratelimit-remaining-subscription-global-reads"),
        Some("3749")
    );
    let turned_off = client
        .send(Method::Delete, control, None, &WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(turned_off.status, 204);
    let off = client
        .send(Method::Get, url, None, &WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(
        off.header("x-ms-ratelimit-remaining-subscription-reads"),
        None
    );
}

#[tokio::test]
async fn the_pacer_keeps_a_client_below_a_tiny_bucket() {
    // Five tokens, twenty back a second: forty reads in a row need two seconds.
    let world =
        start_with(|config| config.throttling = Some(ArmThrottling::uniform(5, 20.0))).await;
    let mut config = ArmClientConfig::simulator(
        Url::parse(world.simulator.endpoint()).unwrap(),
        world.simulator.ca_file().to_path_buf(),
    );
    config.pacing = PacingSettings {
        reads_per_second: 20.0,
        reserve: 1,
        ..PacingSettings::default()
    };
    let client = ArmClient::new(config).unwrap();
    for _ in 0..40 {
        let answer = client
            .get_if_exists::<Value>(&group_id("rg-none"), api_version::RESOURCES)
            .await
            .unwrap();
        assert!(answer.is_none());
    }
    let report = client.pacing_report();
    eprintln!("pacing with a bucket of 5 and 20/s: {report:?}");
    assert_eq!(report.throttled, 0, "{report:?}");
    assert!(report.delayed > 0, "{report:?}");
    let refused = world
        .simulator
        .events()
        .iter()
        .filter(|event| event.outcome == "429")
        .count();
    assert_eq!(refused, 0);
}

#[tokio::test]
async fn another_writers_write_changes_the_etag_a_conditional_write_read_before_it() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-etag").await;
    let disk = create_disk(client, "rg-etag", "data1").await;
    let before = client
        .get::<Value>(&disk, api_version::DISKS)
        .await
        .unwrap();
    // Someone else writes the disk now, for one Azure hour (1.8 s at the tests' time scale).
    world.simulator.inject(Fault::AnotherWriter {
        resource: disk.clone(),
        seconds: 3600,
        after_seconds: 0,
        at_first_write: false,
    });
    let conditional = WriteOptions {
        if_match: before.etag.clone(),
        ..WriteOptions::default()
    };
    let busy = client
        .patch::<_, Value>(&disk, api_version::DISKS, &tags(), &conditional)
        .await;
    assert_eq!(refusal(busy).1, "ConflictingConcurrentWriteNotAllowed");
    // Once it ended, the ETag read before it no longer matches.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let stale = client
        .patch::<_, Value>(&disk, api_version::DISKS, &tags(), &conditional)
        .await;
    assert!(stale.as_ref().is_err_and(ArmError::is_precondition_failed));
    let after = client
        .get::<Value>(&disk, api_version::DISKS)
        .await
        .unwrap();
    assert_ne!(after.etag, before.etag);
}

#[tokio::test]
async fn the_simulator_counts_the_requests_it_answered_and_throttled() {
    // Two tokens and one back every 100 s: the third read in a row is throttled.
    let world =
        start_with(|config| config.throttling = Some(ArmThrottling::uniform(2, 0.01))).await;
    let client = raw_client(&world.simulator);
    let url = client
        .url_for(&group_id("rg-none"), api_version::RESOURCES, &[])
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let answer = client
            .send(Method::Get, url.clone(), None, &WriteOptions::default())
            .await
            .unwrap();
        statuses.push(answer.status);
    }
    assert_eq!(statuses, [404, 404, 429]);
    let stats = world.simulator.request_stats();
    assert_eq!(
        (stats.requests, stats.reads, stats.throttled),
        (3, 3, 1),
        "{stats:?}"
    );

    // The same through the control API, which itself is not counted; and back to zero.
    let control = Url::parse(&format!("{}/ferry-sim/stats", world.simulator.endpoint())).unwrap();
    let answer = client
        .send(Method::Get, control.clone(), None, &WriteOptions::default())
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(body, json!({"requests": 3, "reads": 3, "throttled": 1}));
    let reset = client
        .send(
            Method::Delete,
            control.clone(),
            None,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(reset.status, 204);
    assert_eq!(world.simulator.request_stats().requests, 0);
}
