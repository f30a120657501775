//! `ferry_ops::watch::Watcher` on the simulated world, delivering Alertmanager bodies to a real
//! receiver on 127.0.0.1: a failure of the active generation fires one critical alert with the
//! failover plan's figures, a second watcher (a restart) fires it with the same fingerprint,
//! and the return to healthy resolves it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_ops::watch::{WatchConfig, Watcher};
use ferry_ops::{Deployment, WorldSource};
use ferry_spec::LoadOptions;
use ferry_testkit::webhook_receiver::{Answer, WebhookReceiver};
use ferry_watch::{Destination, RetryPolicy, WebhookFormat};

/// data100 copied to a scratch folder, opened on a simulated world there, and built.
async fn built_data100(folder: &Path) -> Deployment {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    ferry_testkit::copy_spec_folder(&repository.join("specs/data100"), &folder.join("data100"));
    let deployment = Deployment::load(
        &folder.join("data100"),
        &LoadOptions::default(),
        WorldSource::Simulated {
            path: folder.join("world.json"),
            new: true,
            time_scale: 0.0,
        },
    )
    .unwrap();
    ferry_testkit::drill_harness::build(&deployment).await;
    deployment
}

/// Marks (or clears) the active generation's API server as unhealthy in the world file.
fn set_api_server_unhealthy(world: &Path, unhealthy: bool) {
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(world).unwrap()).unwrap();
    value["unhealthy"] = if unhealthy {
        serde_json::json!({"aks_cluster.hub@g1": "GET /readyz timed out after 5s"})
    } else {
        serde_json::json!({})
    };
    std::fs::write(world, value.to_string()).unwrap();
}

fn config(receiver: &WebhookReceiver, plan: PathBuf) -> WatchConfig {
    WatchConfig {
        hold: Duration::ZERO,
        destinations: vec![Destination::Webhook {
            url: receiver.url(),
            format: WebhookFormat::Alertmanager,
        }],
        plan_on_failure: Some(plan),
        retry: RetryPolicy {
            first_backoff: Duration::from_millis(10),
            ..RetryPolicy::default()
        },
        ..WatchConfig::default()
    }
}

#[tokio::test]
async fn a_failed_active_generation_fires_critical_once_with_a_stable_fingerprint_then_resolves() {
    let folder = tempfile::tempdir().unwrap();
    let deployment = built_data100(folder.path()).await;
    let world = folder.path().join("world.json");
    let plan = folder.path().join("failover.plan");
    // The receiver fails the first delivery once: the watcher retries it.
    let receiver = WebhookReceiver::start(vec![Answer::status(503)]);
    let mut watcher = Watcher::new(&deployment, config(&receiver, plan.clone()));

    let round = watcher.round().await.unwrap();
    assert!(
        round.alerts.is_empty() && round.readiness.is_none(),
        "{round:?}"
    );
    assert!(receiver.received().is_empty(), "a healthy start is silent");

    set_api_server_unhealthy(&world, true);
    let round = watcher.round().await.unwrap();
    assert_eq!(round.alerts.len(), 1, "{round:?}");
    assert_eq!(round.delivery_events.len(), 1, "{round:?}");
    assert!(round.delivery_failures.is_empty(), "{round:?}");
    assert_eq!(round.plan_written.as_deref(), Some(plan.as_path()));
    let firing = receiver.wait_for_accepted(1);
    assert_eq!(firing.len(), 1, "{firing:?}");
    let alert = &firing[0]["alerts"][0];
    assert_eq!(firing[0]["status"], "firing");
    assert_eq!(alert["labels"]["alertname"], "FerryResourceUnhealthy");
    assert_eq!(alert["labels"]["deployment"], "data100");
    assert_eq!(alert["labels"]["generation"], "1");
    assert_eq!(alert["labels"]["severity"], "critical", "a failover is due");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    let annotations = &alert["annotations"];
    assert_eq!(annotations["plan_written"], plan.display().to_string());
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    assert_eq!(
        annotations["plan_steps"],
        saved["plan"]["steps"].as_array().unwrap().len().to_string()
    );
    assert_eq!(
        annotations["recovery_seconds"],
        saved["plan"]["recovery_seconds"].to_string()
    );

    // A second watcher (ferry watch restarted) fires the same condition with the same
    // fingerprint and group key, so that the receiver takes it as the same alert.
    let mut restarted = Watcher::new(&deployment, config(&receiver, plan.clone()));
    let round = restarted.round().await.unwrap();
    assert_eq!(round.alerts.len(), 1, "{round:?}");
    let again = receiver.wait_for_accepted(2);
    assert_eq!(again[1]["alerts"][0]["fingerprint"], alert["fingerprint"]);
    assert_eq!(again[1]["groupKey"], firing[0]["groupKey"]);

    set_api_server_unhealthy(&world, false);
    let round = watcher.round().await.unwrap();
    assert_eq!(round.alerts.len(), 1, "{round:?}");
    let resolved = receiver.wait_for_accepted(3);
    let resolved = &resolved[2];
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["fingerprint"], alert["fingerprint"]);
    assert_eq!(resolved["alerts"][0]["startsAt"], alert["startsAt"]);
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(
        resolved["alerts"][0]["labels"]["severity"], "critical",
        "resolved with the severity it fired with"
    );
    // Nothing else was sent: one 503, then three deliveries.
    assert_eq!(receiver.received().len(), 4);
}
