//! The `dns_record` provider against Azure DNS, served by the in-process ARM simulator: every
//! record type created, updated and deleted, ownership in the record set's metadata, a
//! record changed behind ferry's back refused with 412 rather than overwritten, and a
//! missing zone never read as an absent record. What ARM holds is checked with plain GETs,
//! not through the provider.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ferry_arm::{ArmClient, ArmClientConfig, Url, WriteOptions, api_version};
use ferry_core::{Action, Attributes, Observation, Provider, ReadContext, ResourceSpec};
use ferry_dns::{
    AzureDnsAccess, AzureDnsBackend, AzureDnsConfig, BackendError, Change, DnsBackend,
    DnsProviderConfig, DnsRecordProvider, Reading, RecordKey,
};
use ferry_sim::{Simulator, SimulatorConfig};
use serde_json::{Value, json};
use support::{Recorder, step};

const SUBSCRIPTION: &str = "00000000-0000-0000-0000-0000000000d5";
const GROUP: &str = "rg-dns";
const ZONE: &str = "ferry.test";

/// A simulator holding the zone, and a client for it.
struct Azure {
    simulator: Simulator,
    client: ArmClient,
    _folder: tempfile::TempDir,
}

fn zone_path() -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.Network/dnsZones/{ZONE}"
    )
}

fn record_path(name: &str, record_type: &str) -> String {
    format!("{}/{record_type}/{name}", zone_path())
}

async fn start() -> Azure {
    let folder = tempfile::tempdir().unwrap();
    let simulator = ferry_sim::start(SimulatorConfig::for_tests(folder.path().join("sim")))
        .await
        .unwrap();
    let client = ArmClient::new(ArmClientConfig::simulator(
        Url::parse(simulator.endpoint()).unwrap(),
        simulator.ca_file().to_path_buf(),
    ))
    .unwrap();
    let _: Value = client
        .put_and_wait(
            &format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}"),
            api_version::RESOURCES,
            &json!({"location": "westeurope"}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let _: Value = client
        .put_and_wait(
            &zone_path(),
            api_version::DNS,
            &json!({"location": "global"}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    Azure {
        simulator,
        client,
        _folder: folder,
    }
}

impl Azure {
    fn zones(&self) -> BTreeMap<String, Attributes> {
        let settings: Attributes =
            serde_json::from_value(json!({"backend": "azure", "resource_group": GROUP})).unwrap();
        BTreeMap::from([(ZONE.to_owned(), settings)])
    }

    fn provider_for(&self, deployment: &str) -> DnsRecordProvider {
        let mut config = DnsProviderConfig::new(deployment, self.zones(), "/nonexistent");
        config.wait_interval = Duration::from_millis(50);
        // The zone names no subscription: it is the deployment's.
        config.azure = Some(AzureDnsAccess {
            client: self.client.clone(),
            subscription: Some(SUBSCRIPTION.to_owned()),
        });
        DnsRecordProvider::new(config).unwrap()
    }

    fn provider(&self) -> DnsRecordProvider {
        self.provider_for("data100")
    }

    fn backend(&self) -> AzureDnsBackend {
        let config =
            AzureDnsConfig::from_attributes(ZONE, &self.zones()[ZONE], Some(SUBSCRIPTION)).unwrap();
        AzureDnsBackend::new(self.client.clone(), config)
    }

    /// The record set as ARM holds it, or `None`.
    async fn get(&self, name: &str, record_type: &str) -> Option<Value> {
        self.client
            .get_if_exists::<Value>(&record_path(name, record_type), api_version::DNS)
            .await
            .unwrap()
            .map(|fetched| fetched.value)
    }

    /// Writes a record set as someone other than ferry would.
    async fn put(&self, name: &str, record_type: &str, properties: Value) {
        let _: Value = self
            .client
            .put_and_wait(
                &record_path(name, record_type),
                api_version::DNS,
                &json!({"properties": properties}),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
    }
}

async fn read(provider: &DnsRecordProvider, name: &str, fields: Value) -> Observation {
    let spec = ResourceSpec::new(format!("dns_record.{name}").parse().unwrap());
    let instance = spec.address.at(None);
    let fields: Attributes = serde_json::from_value(fields).unwrap();
    provider
        .read(ReadContext {
            spec: &spec,
            instance: &instance,
            fields: &fields,
            remembered: None,
            outputs: &|_| None,
        })
        .await
}

fn inputs(name: &str, record_type: &str, ttl: u32, values: &[&str]) -> Value {
    json!({"zone": ZONE, "name": name, "type": record_type, "ttl": ttl, "values": values})
}

/// The values of a record set as ARM holds it, in ARM's own shape.
fn arm_values(body: &Value, record_type: &str) -> Value {
    let properties = &body["properties"];
    match record_type {
        "A" => json!(
            properties["ARecords"]
                .as_array()
                .unwrap()
                .iter()
                .map(|record| record["ipv4Address"].clone())
                .collect::<Vec<_>>()
        ),
        "AAAA" => json!(
            properties["AAAARecords"]
                .as_array()
                .unwrap()
                .iter()
                .map(|record| record["ipv6Address"].clone())
                .collect::<Vec<_>>()
        ),
        "CNAME" => json!([properties["CNAMERecord"]["cname"].clone()]),
        _ => json!(
            properties["TXTRecords"]
                .as_array()
                .unwrap()
                .iter()
                .map(|record| record["value"].clone())
                .collect::<Vec<_>>()
        ),
    }
}

struct Case<'a> {
    name: &'a str,
    record_type: &'a str,
    first: &'a [&'a str],
    second: &'a [&'a str],
    arm_first: Value,
    arm_second: Value,
}

async fn round_trip(azure: &Azure, provider: &DnsRecordProvider, case: Case<'_>) {
    let Case {
        name,
        record_type,
        first,
        second,
        arm_first,
        arm_second,
    } = case;
    let recorder = Recorder::default();
    let resource = if name == "@" { "apex" } else { name };
    let create = step(
        resource,
        Action::Create,
        inputs(name, record_type, 300, first),
    );
    let outcome = recorder.apply(provider, &create).await.unwrap();
    let fqdn = if name == "@" {
        ZONE.to_owned()
    } else {
        format!("{name}.{ZONE}")
    };
    assert_eq!(outcome.outputs["fqdn"], json!(fqdn));
    let body = azure.get(name, record_type).await.unwrap();
    assert_eq!(arm_values(&body, record_type), arm_first, "{record_type}");
    assert_eq!(body["properties"]["TTL"], json!(300));
    assert_eq!(
        body["properties"]["metadata"],
        json!({"ferry-deployment": "data100"})
    );
    assert!(
        recorder
            .lines()
            .iter()
            .any(|line| line.starts_with(&format!("{fqdn} {record_type}: azure dns answers"))),
        "{:?}",
        recorder.lines()
    );

    let observed = read(provider, resource, inputs(name, record_type, 300, first)).await;
    assert!(observed.is_healthy(), "{observed:?}");
    assert_eq!(observed.attribute("values"), Some(&json!(first)));
    assert_eq!(observed.attribute("managed"), Some(&json!(true)));

    let update = step(
        resource,
        Action::Update,
        inputs(name, record_type, 120, second),
    );
    recorder.apply(provider, &update).await.unwrap();
    let body = azure.get(name, record_type).await.unwrap();
    assert_eq!(arm_values(&body, record_type), arm_second, "{record_type}");
    assert_eq!(body["properties"]["TTL"], json!(120));

    let delete = step(resource, Action::Delete, json!({}));
    recorder.apply(provider, &delete).await.unwrap();
    assert_eq!(azure.get(name, record_type).await, None);
    let observed = read(provider, resource, inputs(name, record_type, 120, second)).await;
    assert_eq!(observed, Observation::Absent);
}

#[tokio::test]
async fn creates_updates_and_deletes_every_record_type() {
    let azure = start().await;
    let provider = azure.provider();
    round_trip(
        &azure,
        &provider,
        Case {
            name: "hub",
            record_type: "A",
            first: &["127.0.0.10", "127.0.0.11"],
            second: &["127.0.0.12"],
            arm_first: json!(["127.0.0.10", "127.0.0.11"]),
            arm_second: json!(["127.0.0.12"]),
        },
    )
    .await;
    round_trip(
        &azure,
        &provider,
        Case {
            name: "hub6",
            record_type: "AAAA",
            first: &["2001:db8::1"],
            second: &["2001:db8::2", "2001:db8::3"],
            arm_first: json!(["2001:db8::1"]),
            arm_second: json!(["2001:db8::2", "2001:db8::3"]),
        },
    )
    .await;
    round_trip(
        &azure,
        &provider,
        Case {
            name: "www",
            record_type: "CNAME",
            first: &["hub.ferry.test"],
            second: &["staging.example.org"],
            arm_first: json!(["hub.ferry.test"]),
            arm_second: json!(["staging.example.org"]),
        },
    )
    .await;
    let long = "k=".to_owned() + &"x".repeat(300);
    round_trip(
        &azure,
        &provider,
        Case {
            name: "@",
            record_type: "TXT",
            first: &["v=spf1 -all", "hello world"],
            second: &[&long],
            arm_first: json!([["v=spf1 -all"], ["hello world"]]),
            arm_second: json!([[&long[..255], &long[255..]]]),
        },
    )
    .await;
}

#[tokio::test]
async fn applying_twice_changes_nothing_the_second_time() {
    let azure = start().await;
    let provider = azure.provider();
    let recorder = Recorder::default();
    let create = step(
        "twice",
        Action::Create,
        inputs("twice", "A", 300, &["127.0.0.20"]),
    );
    recorder.apply(&provider, &create).await.unwrap();
    let etag = azure.get("twice", "A").await.unwrap()["etag"].clone();
    recorder.apply(&provider, &create).await.unwrap();
    assert!(
        recorder
            .lines()
            .iter()
            .any(|line| line == "twice.ferry.test A: already 127.0.0.20"),
        "{:?}",
        recorder.lines()
    );
    assert_eq!(azure.get("twice", "A").await.unwrap()["etag"], etag);
}

#[tokio::test]
async fn a_record_ferry_does_not_own_is_left_alone_until_taken_over() {
    let azure = start().await;
    let provider = azure.provider();
    let recorder = Recorder::default();
    azure
        .put(
            "legacy",
            "A",
            json!({"TTL": 3600, "metadata": {"team": "web"}, "ARecords": [{"ipv4Address": "192.0.2.99"}]}),
        )
        .await;
    let fields = inputs("legacy", "A", 300, &["127.0.0.40"]);

    let observed = read(&provider, "legacy", fields.clone()).await;
    assert!(
        observed.is_present() && !observed.is_healthy(),
        "{observed:?}"
    );
    assert_eq!(observed.attribute("values"), Some(&json!(["192.0.2.99"])));
    assert_eq!(observed.attribute("managed"), Some(&json!(false)));

    let update = step("legacy", Action::Update, fields.clone());
    let refused = recorder.apply(&provider, &update).await.unwrap_err();
    assert!(!refused.transient);
    let delete = step("legacy", Action::Delete, fields.clone());
    let not_deleted = recorder.apply(&provider, &delete).await.unwrap_err();
    insta::assert_snapshot!(format!("{}\n{}", refused.message, not_deleted.message));
    let body = azure.get("legacy", "A").await.unwrap();
    assert_eq!(arm_values(&body, "A"), json!(["192.0.2.99"]));
    assert_eq!(body["properties"]["metadata"], json!({"team": "web"}));

    let mut take_over = fields.clone();
    take_over["take_over"] = json!(true);
    let update = step("legacy", Action::Update, take_over);
    recorder.apply(&provider, &update).await.unwrap();
    let body = azure.get("legacy", "A").await.unwrap();
    assert_eq!(arm_values(&body, "A"), json!(["127.0.0.40"]));
    // Taking over adds ferry's key and keeps the metadata that was there.
    assert_eq!(
        body["properties"]["metadata"],
        json!({"ferry-deployment": "data100", "team": "web"})
    );
    assert!(read(&provider, "legacy", fields).await.is_healthy());
}

#[tokio::test]
async fn another_deployments_record_is_refused() {
    let azure = start().await;
    let ours = azure.provider();
    let theirs = azure.provider_for("other");
    let recorder = Recorder::default();
    let create = step(
        "shared",
        Action::Create,
        inputs("shared", "A", 300, &["127.0.0.50"]),
    );
    recorder.apply(&theirs, &create).await.unwrap();
    let stolen = step(
        "shared",
        Action::Create,
        inputs("shared", "A", 300, &["127.0.0.51"]),
    );
    let error = recorder.apply(&ours, &stolen).await.unwrap_err();
    insta::assert_snapshot!(error.message);
    let body = azure.get("shared", "A").await.unwrap();
    assert_eq!(arm_values(&body, "A"), json!(["127.0.0.50"]));
    assert_eq!(
        body["properties"]["metadata"],
        json!({"ferry-deployment": "other"})
    );
}

/// The Azure backend, with someone else writing the record set once, after the provider's
/// read and just before its write: the race that ETags exist for.
#[derive(Debug)]
struct ChangedBehindFerrysBack {
    inner: AzureDnsBackend,
    client: ArmClient,
    path: String,
    body: Value,
    done: AtomicBool,
}

#[async_trait]
impl DnsBackend for ChangedBehindFerrysBack {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn authority(&self) -> &'static str {
        self.inner.authority()
    }

    async fn read(&self, key: &RecordKey) -> Result<Reading, BackendError> {
        self.inner.read(key).await
    }

    async fn write(&self, key: &RecordKey, change: &Change) -> Result<(), BackendError> {
        if !self.done.swap(true, Ordering::SeqCst) {
            let _: Value = self
                .client
                .put_and_wait(
                    &self.path,
                    api_version::DNS,
                    &self.body,
                    &WriteOptions::default(),
                )
                .await
                .unwrap();
        }
        self.inner.write(key, change).await
    }
}

impl Azure {
    fn racing_provider(
        &self,
        name: &str,
        record_type: &str,
        properties: Value,
    ) -> DnsRecordProvider {
        let backend = ChangedBehindFerrysBack {
            inner: self.backend(),
            client: self.client.clone(),
            path: record_path(name, record_type),
            body: json!({"properties": properties}),
            done: AtomicBool::new(false),
        };
        self.provider().with_backend(ZONE, Arc::new(backend))
    }
}

#[tokio::test]
async fn a_record_changed_between_read_and_write_is_refused_with_412_never_overwritten() {
    let azure = start().await;
    let recorder = Recorder::default();
    let fields = inputs("race", "A", 300, &["127.0.0.60"]);
    recorder
        .apply(&azure.provider(), &step("race", Action::Create, fields))
        .await
        .unwrap();
    let someone_else = json!({"TTL": 60, "metadata": {"ferry-deployment": "data100"}, "ARecords": [{"ipv4Address": "192.0.2.61"}]});

    // An update: If-Match with the ETag of ferry's read.
    let racing = azure.racing_provider("race", "A", someone_else.clone());
    let update = step(
        "race",
        Action::Update,
        inputs("race", "A", 300, &["127.0.0.62"]),
    );
    let refused_update = recorder.apply(&racing, &update).await.unwrap_err();
    assert!(!refused_update.transient, "a retry would overwrite");
    let body = azure.get("race", "A").await.unwrap();
    assert_eq!(arm_values(&body, "A"), json!(["192.0.2.61"]));

    // A delete: the same.
    let racing = azure.racing_provider("race", "A", someone_else.clone());
    let delete = step(
        "race",
        Action::Delete,
        inputs("race", "A", 300, &["127.0.0.62"]),
    );
    let refused_delete = recorder.apply(&racing, &delete).await.unwrap_err();
    assert_eq!(
        arm_values(&azure.get("race", "A").await.unwrap(), "A"),
        json!(["192.0.2.61"])
    );

    // A create: If-None-Match: *, so a record set that appeared after the read is kept.
    let racing = azure.racing_provider(
        "fresh",
        "A",
        json!({"TTL": 60, "ARecords": [{"ipv4Address": "192.0.2.63"}]}),
    );
    let create = step(
        "fresh",
        Action::Create,
        inputs("fresh", "A", 300, &["127.0.0.64"]),
    );
    let refused_create = recorder.apply(&racing, &create).await.unwrap_err();
    let body = azure.get("fresh", "A").await.unwrap();
    assert_eq!(arm_values(&body, "A"), json!(["192.0.2.63"]));
    assert_eq!(body["properties"].get("metadata"), None);

    insta::assert_snapshot!(
        [
            refused_update.message,
            refused_delete.message,
            refused_create.message
        ]
        .join("\n")
    );
}

#[tokio::test]
async fn a_missing_zone_reads_as_unknown_not_as_an_absent_record() {
    let azure = start().await;
    let mut zones = azure.zones();
    let mut settings = zones.remove(ZONE).unwrap();
    settings.insert("resource_group".to_owned(), json!("rg-elsewhere"));
    zones.insert(ZONE.to_owned(), settings);
    let mut config = DnsProviderConfig::new("data100", zones, "/nonexistent");
    config.azure = Some(AzureDnsAccess {
        client: azure.client.clone(),
        subscription: Some(SUBSCRIPTION.to_owned()),
    });
    let provider = DnsRecordProvider::new(config).unwrap();
    let observed = read(&provider, "hub", inputs("hub", "A", 300, &["127.0.0.1"])).await;
    let Observation::Unknown { reason } = observed else {
        panic!("expected unknown, got {observed:?}")
    };

    // Without an Azure connection, an Azure zone's records are unknown too, and say why.
    let unconnected =
        DnsRecordProvider::new(DnsProviderConfig::new("data100", azure.zones(), "/")).unwrap();
    let Observation::Unknown { reason: no_client } =
        read(&unconnected, "hub", inputs("hub", "A", 300, &["127.0.0.1"])).await
    else {
        panic!("expected unknown")
    };
    // A zone with no resource group is refused when the provider is set up.
    let mut bad_zones = azure.zones();
    bad_zones.get_mut(ZONE).unwrap().remove("resource_group");
    let mut config = DnsProviderConfig::new("data100", bad_zones, "/");
    config.azure = Some(AzureDnsAccess {
        client: azure.client.clone(),
        subscription: None,
    });
    let setup = DnsRecordProvider::new(config).unwrap_err();
    insta::assert_snapshot!(
        [reason, no_client, setup.to_string()]
            .join("\n")
            .replace(azure.simulator.endpoint(), "https://SIMULATOR")
    );
}
