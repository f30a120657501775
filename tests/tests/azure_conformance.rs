//! Conformance with Azure's own API definitions: every request ferry sends during the Azure
//! failover on the ARM simulator, and every answer the simulator gives, checked against the
//! OpenAPI files of exactly the api-versions ferry uses (`crates/ferry-arm/tests/fixtures/
//! openapi`, copied verbatim from Azure/azure-rest-api-specs). Hand-written rules drift; these
//! files are what Azure's SDKs are generated from.
//!
//! A request whose operation is in no copied file is counted as not covered and listed, never
//! failed. The checker itself is tested first, on exchanges made by hand.

mod openapi;
mod support;

use std::collections::{BTreeMap, BTreeSet};

use ferry_apply::{ApplyConfig, ApplyControl, Store};
use ferry_core::{Plan, Providers, RuleBook, Snapshot};
use ferry_observe::ObserveConfig;
use ferry_plan::PlanConfig;
use ferry_sim::{Exchange, Fault};
use ferry_spec::Spec;
use ferry_state::StateFile;
use openapi::{Definitions, Verdict, definitions_folder, path_shape};
use serde_json::{Value, json};

/// Mismatches known today, each owned by another part of issue 14 that is being fixed now:
/// a problem of the operation (first) containing the text (second) is expected, for the
/// reason given. Each must still happen: when one is fixed, this test says so and its line
/// goes.
/// Mismatches known and owned elsewhere: (operation, text of the problem, why). Empty now; an
/// entry that stops happening fails the test, so that the list never outlives its cause.
const EXPECTED: &[(&str, &str, &str)] = &[];

fn expected(problem: &str) -> bool {
    EXPECTED
        .iter()
        .any(|(operation, text, _)| problem.starts_with(operation) && problem.contains(text))
}

// ---- the checker, on exchanges made by hand ----------------------------------------------

const DISK: &str = "/subscriptions/sub/resourceGroups/group/providers/Microsoft.Compute/disks/data";
const GROUP: &str = "/subscriptions/sub/resourcegroups/group";

fn exchange(
    method: &str,
    path: &str,
    api_version: &str,
    request_body: Option<Value>,
    status: u16,
    response_body: Option<Value>,
) -> Exchange {
    Exchange {
        method: method.to_owned(),
        path: path.to_owned(),
        api_version: Some(api_version.to_owned()),
        request_body,
        status,
        response_body,
    }
}

/// A disk as Azure answers it.
fn disk_answer() -> Value {
    json!({
        "id": DISK, "name": "data", "type": "Microsoft.Compute/disks", "location": "westeurope",
        "sku": {"name": "Premium_LRS", "tier": "Premium"},
        "properties": {
            "creationData": {"createOption": "Empty"}, "diskSizeGB": 64,
            "provisioningState": "Succeeded", "timeCreated": "2026-01-02T03:04:05.0000000+00:00",
            "diskState": "Unattached", "uniqueId": "00000001-0000-4000-8000-000000000001",
        },
    })
}

/// A disk as a client sends it.
fn disk_request() -> Value {
    json!({
        "location": "westeurope", "sku": {"name": "Premium_LRS"},
        "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 64},
    })
}

/// The verdict on `exchange`, rendered one line per finding.
fn check(exchange: Exchange) -> String {
    let mut definitions = Definitions::load(&definitions_folder());
    match definitions.check(&exchange) {
        Verdict::NotCovered { reason } => format!("not covered: {reason}"),
        Verdict::Checked {
            operation,
            problems,
            read_only_sent,
            left_open,
        } => {
            let mut lines = vec![format!("checked as {operation}")];
            lines.extend(
                left_open
                    .into_iter()
                    .map(|file| format!("left open: {file}")),
            );
            lines.extend(problems);
            lines.extend(
                read_only_sent
                    .into_iter()
                    .map(|pointer| format!("read-only sent: {pointer}")),
            );
            lines.join("\n")
        }
    }
}

#[test]
fn a_conforming_disk_write_passes() {
    let put = exchange(
        "PUT",
        DISK,
        "2025-01-02",
        Some(disk_request()),
        200,
        Some(disk_answer()),
    );
    assert_eq!(check(put), "checked as Disks_CreateOrUpdate");
}

#[test]
fn a_property_the_definition_does_not_have_fails_with_the_operation_and_pointer() {
    let mut body = disk_request();
    body["properties"]["diskSizeGb"] = json!(64);
    let put = exchange(
        "PUT",
        DISK,
        "2025-01-02",
        Some(body),
        200,
        Some(disk_answer()),
    );
    assert_eq!(
        check(put),
        format!(
            "checked as Disks_CreateOrUpdate\n\
             Disks_CreateOrUpdate (PUT {DISK}) request body at /properties: \
             Additional properties are not allowed ('diskSizeGb' was unexpected)"
        )
    );
}

#[test]
fn a_property_of_an_all_of_parent_is_known_and_a_missing_required_one_fails() {
    // `location` and `tags` come from the common `Resource` through `allOf`.
    let mut body = disk_request();
    body["tags"] = json!({"owner": "ferry"});
    body.as_object_mut().unwrap().remove("location");
    let put = exchange(
        "PUT",
        DISK,
        "2025-01-02",
        Some(body),
        200,
        Some(disk_answer()),
    );
    assert_eq!(
        check(put),
        format!(
            "checked as Disks_CreateOrUpdate\n\
             Disks_CreateOrUpdate (PUT {DISK}) request body at /: \"location\" is a required property"
        )
    );
}

#[test]
fn a_read_only_property_in_a_request_is_allowed_and_reported() {
    let mut body = disk_request();
    body["properties"]["provisioningState"] = json!("Succeeded");
    body["id"] = json!(DISK);
    let put = exchange(
        "PUT",
        DISK,
        "2025-01-02",
        Some(body),
        200,
        Some(disk_answer()),
    );
    assert_eq!(
        check(put),
        "checked as Disks_CreateOrUpdate\n\
         read-only sent: /id\n\
         read-only sent: /properties/provisioningState"
    );
}

#[test]
fn an_open_enum_takes_any_string_and_a_closed_one_does_not() {
    // `DiskStorageAccountTypes` is `modelAsString: true`; `OperatingSystemTypes` is not.
    let mut body = disk_request();
    body["sku"]["name"] = json!("Future_LRS");
    body["properties"]["osType"] = json!("Plan9");
    let put = exchange(
        "PUT",
        DISK,
        "2025-01-02",
        Some(body),
        200,
        Some(disk_answer()),
    );
    assert_eq!(
        check(put),
        format!(
            "checked as Disks_CreateOrUpdate\n\
             Disks_CreateOrUpdate (PUT {DISK}) request body at /properties/osType: \
             \"Plan9\" is not one of \"Windows\" or \"Linux\""
        )
    );
}

#[test]
fn an_answer_missing_a_required_property_or_with_a_wrong_type_fails() {
    let get = exchange(
        "GET",
        GROUP,
        "2025-04-01",
        None,
        200,
        Some(json!({"id": GROUP, "name": "group", "properties": {"provisioningState": 1}})),
    );
    assert_eq!(
        check(get),
        format!(
            "checked as ResourceGroups_Get\n\
             ResourceGroups_Get (GET {GROUP}) response 200 body at /properties/provisioningState: \
             1 is not of type \"string\"\n\
             ResourceGroups_Get (GET {GROUP}) response 200 body at /: \"location\" is a required property"
        )
    );
}

#[test]
fn a_status_the_definition_does_not_declare_fails() {
    let put = exchange(
        "PUT",
        DISK,
        "2025-01-02",
        Some(disk_request()),
        201,
        Some(disk_answer()),
    );
    assert_eq!(
        check(put),
        format!(
            "checked as Disks_CreateOrUpdate\n\
             Disks_CreateOrUpdate (PUT {DISK}): answered 201, the definition declares only 200, 202"
        )
    );
}

#[test]
fn an_error_is_checked_against_the_default_answer_when_there_is_one() {
    let error = json!({"error": {"code": "ResourceGroupNotFound", "message": "gone"}});
    let get = exchange("GET", GROUP, "2025-04-01", None, 404, Some(error.clone()));
    assert_eq!(check(get), "checked as ResourceGroups_Get");
    let wrong = json!({"error": {"code": "ResourceGroupNotFound", "text": "gone"}});
    let get = exchange("GET", GROUP, "2025-04-01", None, 404, Some(wrong));
    assert_eq!(
        check(get),
        format!(
            "checked as ResourceGroups_Get\n\
             ResourceGroups_Get (GET {GROUP}) response 404 body at /error: \
             Additional properties are not allowed ('text' was unexpected)"
        )
    );
}

#[test]
fn a_wrong_api_version_and_a_body_where_none_is_declared_fail() {
    let delete = exchange(
        "DELETE",
        DISK,
        "2025-04-01",
        None,
        202,
        Some(json!({"status": "InProgress"})),
    );
    assert_eq!(
        check(delete),
        format!(
            "checked as Disks_Delete\n\
             Disks_Delete (DELETE {DISK}): sent api-version \"2025-04-01\", the definition \
             (specification/compute/resource-manager/Microsoft.Compute/DiskRP/stable/2025-01-02/disk.json) is for 2025-01-02\n\
             Disks_Delete (DELETE {DISK}): answered 202 with a body, the definition declares none"
        )
    );
}

#[test]
fn a_vm_answer_is_checked_through_models_in_other_files() {
    // `VirtualMachine` (virtualMachine.json) takes `Resource` from compute's common-types and
    // `StorageProfile` and `DataDisk` from computeRPCommon.json.
    let vm =
        "/subscriptions/sub/resourceGroups/group/providers/Microsoft.Compute/virtualMachines/vm";
    let answer = json!({
        "id": vm, "name": "vm", "type": "Microsoft.Compute/virtualMachines", "location": "westeurope",
        "properties": {"storageProfile": {"dataDisks": [
            {"lun": 0, "createOption": "Attach", "managedDisk": {"id": DISK}, "attached": true},
        ]}},
    });
    let get = exchange("GET", vm, "2025-04-01", None, 200, Some(answer));
    assert_eq!(
        check(get),
        format!(
            "checked as VirtualMachines_Get\n\
             VirtualMachines_Get (GET {vm}) response 200 body at /properties/storageProfile/dataDisks/0: \
             Additional properties are not allowed ('attached' was unexpected)"
        )
    );
}

#[test]
fn an_operation_in_no_copied_file_is_not_covered() {
    let poll = exchange(
        "GET",
        "/subscriptions/sub/providers/Microsoft.Simulator/locations/local/operations/1",
        "2025-01-02",
        None,
        200,
        Some(json!({"status": "Succeeded"})),
    );
    assert_eq!(
        check(poll),
        "not covered: no copied definition has this operation"
    );
}

#[test]
fn paths_not_covered_are_listed_by_shape() {
    assert_eq!(
        path_shape(
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/v/start"
        ),
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{}/start"
    );
    assert_eq!(
        path_shape("/subscriptions/s/providers/Microsoft.Simulator/operations/1"),
        "/subscriptions/{}/providers/Microsoft.Simulator/operations/{}"
    );
}

// ---- the simulator's record ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_keeps_exchanges_only_once_asked() {
    let folder = tempfile::tempdir().unwrap();
    let simulator = ferry_sim::start(ferry_sim::SimulatorConfig::for_tests(folder.path().into()))
        .await
        .unwrap();
    let client = ferry_arm::ArmClient::new(ferry_arm::ArmClientConfig::simulator(
        ferry_arm::Url::parse(simulator.endpoint()).unwrap(),
        simulator.ca_file().to_path_buf(),
    ))
    .unwrap();
    let group = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/recorded";
    let absent: Option<ferry_arm::Fetched<Value>> =
        client.get_if_exists(group, "2025-04-01").await.unwrap();
    assert!(absent.is_none());
    assert_eq!(
        simulator.exchanges(),
        Vec::<Exchange>::new(),
        "off by default"
    );

    simulator.record_exchanges();
    let _: Value = client
        .put_and_wait(
            group,
            "2025-04-01",
            &json!({"location": "westeurope"}),
            &ferry_arm::WriteOptions::default(),
        )
        .await
        .unwrap();
    let exchanges = simulator.exchanges();
    let put = &exchanges[0];
    assert_eq!(
        (
            put.method.as_str(),
            put.path.as_str(),
            put.api_version.as_deref()
        ),
        ("PUT", group, Some("2025-04-01"))
    );
    assert_eq!(put.request_body, Some(json!({"location": "westeurope"})));
    assert_eq!(put.status, 201);
    assert_eq!(
        put.response_body
            .as_ref()
            .and_then(|body| body.get("location")),
        Some(&json!("westeurope"))
    );
}

// ---- the failover -------------------------------------------------------------------------

async fn observe(spec: &Spec, rules: &RuleBook, store: &Store, providers: &Providers) -> Snapshot {
    ferry_observe::observe(
        spec,
        rules,
        &store.state,
        providers,
        &ObserveConfig::default(),
    )
    .await
    .unwrap()
}

fn plan(spec: &Spec, rules: &RuleBook, snapshot: &Snapshot) -> Plan {
    ferry_plan::plan(spec, snapshot, rules, &PlanConfig::default())
        .unwrap_or_else(|errors| panic!("{errors}"))
}

async fn apply(plan: &Plan, providers: &Providers, store: &mut Store) {
    let report = ferry_apply::apply(
        plan,
        providers,
        &ApplyConfig::default(),
        store,
        &ApplyControl::new(),
        &|_| {},
    )
    .await
    .unwrap();
    assert!(report.succeeded(), "{}", report.counts().describe());
}

/// What the whole run found.
#[derive(Default)]
struct Findings {
    /// Operation id to how many exchanges were checked against it.
    covered: BTreeMap<String, usize>,
    /// Path shape (with the reason) to how many exchanges were not covered.
    not_covered: BTreeMap<String, usize>,
    problems: Vec<String>,
    read_only_sent: BTreeSet<String>,
    /// Operation id to the files not copied whose models it left open.
    left_open: BTreeMap<String, BTreeSet<String>>,
}

impl Findings {
    fn summary(&self, definitions: &Definitions, exchanges: usize) -> String {
        let mut lines = vec![format!(
            "{exchanges} exchanges; {} operations of {} in the copied files checked; {} models \
             turned into JSON Schema; {} mismatches",
            self.covered.len(),
            definitions.operations().len(),
            definitions.models_checked(),
            self.problems.len()
        )];
        lines.extend(
            self.covered
                .iter()
                .map(|(operation, count)| format!("  checked {operation}: {count}")),
        );
        lines.extend(
            self.not_covered
                .iter()
                .map(|(shape, count)| format!("  not covered {shape}: {count}")),
        );
        lines.extend(self.left_open.iter().map(|(operation, files)| {
            format!(
                "  {operation}: models left open, their files not copied: {}",
                files.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        }));
        lines.extend(
            self.read_only_sent
                .iter()
                .map(|sent| format!("  read-only property sent (allowed): {sent}")),
        );
        lines.extend(
            self.problems
                .iter()
                .map(|problem| format!("  MISMATCH {problem}")),
        );
        lines.join("\n")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_failover_conforms_to_azures_api_definitions() {
    let folder = tempfile::tempdir().unwrap();
    let support::AzureWorld {
        spec,
        rules,
        simulator,
        providers,
    } = support::azure_world(folder.path(), "state").await;
    simulator.record_exchanges();
    let mut store = Store::in_memory(StateFile::default());

    // Generation 1, then its API server stops answering, then the failover to generation 2.
    let first = plan(
        &spec,
        &rules,
        &observe(&spec, &rules, &store, &providers).await,
    );
    apply(&first, &providers, &mut store).await;
    let healthy = observe(&spec, &rules, &store, &providers).await;
    let hub = healthy.get(&"aks_cluster.hub@g1".parse().unwrap()).unwrap();
    let cluster = hub.attribute("id").unwrap().as_str().unwrap().to_owned();
    simulator.inject(Fault::ApiServerDown {
        cluster,
        mode: ferry_sim::ApiServerDownMode::Refuse,
    });
    let failover = plan(
        &spec,
        &rules,
        &observe(&spec, &rules, &store, &providers).await,
    );
    assert_eq!(failover.failover.as_ref().map(|f| f.to_generation), Some(2));
    apply(&failover, &providers, &mut store).await;
    observe(&spec, &rules, &store, &providers).await;

    let exchanges = simulator.exchanges();
    let mut definitions = Definitions::load(&definitions_folder());
    let mut findings = Findings::default();
    for exchange in &exchanges {
        match definitions.check(exchange) {
            Verdict::NotCovered { reason } => {
                let shape = format!(
                    "{} {} ({reason})",
                    exchange.method,
                    path_shape(&exchange.path)
                );
                *findings.not_covered.entry(shape).or_default() += 1;
            }
            Verdict::Checked {
                operation,
                problems,
                read_only_sent,
                left_open,
            } => {
                if !left_open.is_empty() {
                    findings
                        .left_open
                        .entry(operation.clone())
                        .or_default()
                        .extend(left_open);
                }
                *findings.covered.entry(operation.clone()).or_default() += 1;
                findings.problems.extend(problems);
                findings.read_only_sent.extend(
                    read_only_sent
                        .into_iter()
                        .map(|pointer| format!("{operation} {pointer}")),
                );
            }
        }
    }
    let summary = findings.summary(&definitions, exchanges.len());
    println!("{summary}");

    assert!(
        !findings.covered.is_empty(),
        "no exchange was checked: {summary}"
    );
    let unexpected: Vec<&String> = findings
        .problems
        .iter()
        .filter(|problem| !expected(problem))
        .collect();
    assert!(
        unexpected.is_empty(),
        "mismatches with Azure's API definitions:\n{}\n\n{summary}",
        unexpected
            .iter()
            .map(|problem| problem.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (operation, text, why) in EXPECTED {
        assert!(
            findings
                .problems
                .iter()
                .any(|problem| problem.starts_with(operation) && problem.contains(text)),
            "the expected mismatch of {operation} {text:?} ({why}) no longer happens: remove \
             it from EXPECTED"
        );
    }
}
