//! BIND stopped in the middle of an apply's DNS update: the update fails with a transient
//! error (the engine retries it) that names the server and never shows the TSIG secret.

mod support;

use std::time::Duration;

use ferry_core::{Action, Attributes};
use ferry_dns::{DnsProviderConfig, DnsRecordProvider};
use serde_json::json;
use support::{Bind, Recorder, ZONE, step};

fn provider(zones: std::collections::BTreeMap<String, Attributes>) -> DnsRecordProvider {
    let mut config = DnsProviderConfig::new("data100", zones, "/nonexistent");
    config.wait_interval = Duration::from_millis(50);
    DnsRecordProvider::new(config).unwrap()
}

fn inputs(values: &[&str]) -> serde_json::Value {
    json!({"zone": ZONE, "name": "hub", "type": "A", "ttl": 60, "values": values})
}

#[tokio::test]
async fn an_update_while_bind_is_down_fails_transiently_without_the_secret() {
    let bind = Bind::start();
    let provider = provider(bind.zones());
    let recorder = Recorder::default();
    let create = step("hub", Action::Create, inputs(&["127.0.0.30"]));
    recorder.apply(&provider, &create).await.unwrap();
    assert_eq!(bind.dig("hub", "A"), vec!["127.0.0.30"]);

    let secret = bind.secret.clone();
    let port = bind.port;
    drop(bind);
    let update = step("hub", Action::Update, inputs(&["127.0.0.31"]));
    let error = recorder.apply(&provider, &update).await.unwrap_err();
    assert!(error.transient, "{error:?}");
    assert!(
        error.message.contains(&port.to_string()),
        "{}",
        error.message
    );
    assert!(!error.message.contains(&secret), "{}", error.message);
}
