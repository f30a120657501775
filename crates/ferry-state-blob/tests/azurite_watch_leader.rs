//! The election of the acting `ferry watch` (`WatchLeader`) against a real Azurite over HTTPS:
//! one leads, the other follows and names it; only the leader writes the record of alerts; a
//! leader that gives up hands the record to the next; verdicts of every watcher are read back;
//! an unreachable service is an error that names the blob.

// Shared with azurite_state.rs, which uses the rest of it.
#[allow(dead_code)]
mod azurite;

use std::time::Duration;

use azurite::azurite;
use ferry_state_blob::{BlobStateConfig, Turn, WatchLeader};

fn leader(container: &str, name: &str, local: &std::path::Path) -> WatchLeader {
    let server = azurite();
    // The container exists before anyone leads.
    server.backend(container, "data100/state.json", local);
    WatchLeader::new(server.config(container, "data100/state.json", local), name).unwrap()
}

#[test]
fn one_leads_the_other_follows_and_the_record_passes_to_the_next_leader() {
    let local = tempfile::tempdir().unwrap();
    let first = leader("election", "watcher-one", local.path());
    let second = leader("election", "watcher-two", local.path());
    assert!(
        first
            .place()
            .ends_with("/election/data100/state.json.watch-leader")
    );

    assert_eq!(
        first.take_turn().unwrap(),
        Turn::Leading {
            taken_now: true,
            record: None
        }
    );
    assert_eq!(
        second.take_turn().unwrap(),
        Turn::Following {
            leader: "watcher-one".to_owned()
        }
    );
    // Keeping the lead is not taking it again.
    assert_eq!(
        first.take_turn().unwrap(),
        Turn::Leading {
            taken_now: false,
            record: None
        }
    );
    first.write_record(b"alerted: firing".to_vec()).unwrap();
    // Writing the record keeps the lease (Put Blob with the lease id).
    assert_eq!(
        second.take_turn().unwrap(),
        Turn::Following {
            leader: "watcher-one".to_owned()
        }
    );
    let refused = second.write_record(b"not mine".to_vec()).unwrap_err();
    assert_eq!(refused.doing, "write");
    assert_eq!(refused.reason, "this watcher does not lead");

    first.resign();
    assert_eq!(
        second.take_turn().unwrap(),
        Turn::Leading {
            taken_now: true,
            record: Some(b"alerted: firing".to_vec())
        },
        "the new leader reads what the first alerted, as it takes the lead"
    );
    assert_eq!(
        first.take_turn().unwrap(),
        Turn::Following {
            leader: "watcher-two".to_owned()
        }
    );
}

#[test]
fn every_watchers_verdict_is_read_back_and_a_removed_one_is_gone() {
    let local = tempfile::tempdir().unwrap();
    let first = leader("verdicts", "root@host-a (pid 1)", local.path());
    let second = leader("verdicts", "root@host-b (pid 2)", local.path());
    first.write_verdict(b"one".to_vec()).unwrap();
    second.write_verdict(b"two".to_vec()).unwrap();
    // Written again: still one verdict per watcher.
    second.write_verdict(b"two again".to_vec()).unwrap();
    let mut verdicts = first.read_verdicts().unwrap();
    verdicts.sort();
    assert_eq!(verdicts, [b"one".to_vec(), b"two again".to_vec()]);
    second.remove_verdict();
    assert_eq!(first.read_verdicts().unwrap(), [b"one".to_vec()]);
}

#[test]
fn an_unreachable_service_is_an_error_naming_the_leader_blob() {
    let local = tempfile::tempdir().unwrap();
    let nothing_listens = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = azurite().config("unreachable", "data100/state.json", local.path());
    config.container_url = url::Url::parse(&format!(
        "https://{nothing_listens}/devstoreaccount1/unreachable"
    ))
    .unwrap();
    config.retry_for = Duration::from_millis(300);
    config.lease = BlobStateConfig::LONGEST_LEASE;
    let leader = WatchLeader::new(config, "watcher-one").unwrap();
    let error = leader.take_turn().unwrap_err().to_string();
    assert!(
        error.starts_with(&format!(
            "cannot create the watch leader blob https://{nothing_listens}/devstoreaccount1/unreachable/data100/state.json.watch-leader: the storage service cannot be reached ("
        )),
        "{error}"
    );
}
