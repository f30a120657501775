//! The parsers on output captured from Debian's zfs-fuse (pool version 23), and on text they
//! must refuse with an error that names the command.

use super::*;

fn rows(vdevs: &[VdevRow]) -> Vec<String> {
    vdevs
        .iter()
        .map(|row| {
            format!(
                "{}{} {} [{}]",
                "  ".repeat(row.depth.saturating_sub(1)),
                row.name,
                row.state,
                row.note
            )
        })
        .collect()
}

#[test]
fn pool_lists_give_name_and_health() {
    let online = parse_pool_list("zpool list", include_str!("captured/list-online.txt")).unwrap();
    assert_eq!(
        online,
        [PoolListEntry {
            name: "capt".into(),
            health: "ONLINE".into()
        }]
    );
    let degraded =
        parse_pool_list("zpool list", include_str!("captured/list-degraded.txt")).unwrap();
    assert_eq!(degraded[0].health, "DEGRADED");
    assert_eq!(parse_pool_list("zpool list", "").unwrap(), []);
}

#[test]
fn status_of_a_stripe_lists_its_devices() {
    let status = parse_status(
        "zpool status capt",
        include_str!("captured/status-stripe-online.txt"),
    )
    .unwrap();
    assert_eq!(
        (status.name.as_str(), status.state.as_str()),
        ("capt", "ONLINE")
    );
    assert_eq!(
        rows(&status.vdevs),
        ["/tmp/zcap/A/lun0 ONLINE []", "/tmp/zcap/A/lun1 ONLINE []"]
    );
}

#[test]
fn status_of_a_mirror_nests_devices_and_keeps_notes() {
    let status = parse_status(
        "zpool status mir",
        include_str!("captured/status-mirror-online.txt"),
    )
    .unwrap();
    assert_eq!(
        rows(&status.vdevs),
        [
            "mirror-0 ONLINE []",
            "  /tmp/zcap/A/lun2 ONLINE []",
            "  /tmp/zcap/A/lun3 ONLINE [84K resilvered]"
        ]
    );
    assert_eq!(status.devices().count(), 2);
}

#[test]
fn status_of_a_degraded_pool_names_the_missing_device_by_its_old_path() {
    let status = parse_status(
        "zpool status mir",
        include_str!("captured/status-degraded.txt"),
    )
    .unwrap();
    assert_eq!(status.state, "DEGRADED");
    let missing: Vec<&str> = status
        .devices()
        .filter(|row| row.state != "ONLINE")
        .map(VdevRow::path)
        .collect();
    assert_eq!(missing, ["/tmp/zcap/A/lun3"]);
}

#[test]
fn import_listings_say_whether_a_pool_can_be_imported() {
    let online = parse_import_listing(
        "zpool import -d /tmp/zcap/A",
        include_str!("captured/import-listing-online.txt"),
    )
    .unwrap();
    assert_eq!(online.len(), 1);
    assert_eq!(
        (online[0].name.as_str(), online[0].can_import()),
        ("mir", true)
    );
    assert_eq!(online[0].id, "9585598908956293533");

    let degraded = parse_import_listing(
        "zpool import -d /tmp/zcap/A",
        include_str!("captured/import-listing-degraded.txt"),
    )
    .unwrap();
    assert_eq!(degraded[0].state, "DEGRADED");
    assert!(degraded[0].can_import());
    assert_eq!(
        rows(&degraded[0].vdevs),
        [
            "mirror-0 DEGRADED []",
            "  /tmp/zcap/A/lun2 ONLINE []",
            "  14274398130268855245 UNAVAIL [cannot open]"
        ]
    );

    let unavailable = parse_import_listing(
        "zpool import -d /tmp/zcap/A",
        include_str!("captured/import-listing-unavail.txt"),
    )
    .unwrap();
    assert!(!unavailable[0].can_import());
    assert_eq!(unavailable[0].note, "missing device");
    assert_eq!(
        unavailable[0].action,
        "The pool cannot be imported. Attach the missing devices and try again."
    );
    assert_eq!(rows(&unavailable[0].vdevs), ["/tmp/zcap/A/lun0 ONLINE []"]);

    assert_eq!(
        parse_import_listing(
            "zpool import -d /x",
            include_str!("captured/import-listing-none.txt")
        )
        .unwrap(),
        []
    );
}

#[test]
fn an_import_listing_may_hold_two_pools_of_one_name_told_apart_by_id_and_devices() {
    // Two exported pools named alike, each on its own disk (captured from zfs-fuse, where
    // `zpool import -d /tmp/zcap/A capt` then refuses: "more than one matching pool").
    let listed = parse_import_listing(
        "zpool import -d /tmp/zcap/A",
        include_str!("captured/import-listing-two-alike.txt"),
    )
    .unwrap();
    let seen: Vec<(String, String, Vec<String>)> = listed
        .iter()
        .map(|pool| (pool.name.clone(), pool.id.clone(), rows(&pool.vdevs)))
        .collect();
    assert_eq!(
        seen,
        [
            (
                "capt".to_owned(),
                "10244186389227753337".to_owned(),
                vec!["/tmp/zcap/A/lun0 ONLINE []".to_owned()]
            ),
            (
                "capt".to_owned(),
                "16485097325795866973".to_owned(),
                vec!["/tmp/zcap/A/lun1 ONLINE []".to_owned()]
            ),
        ]
    );
}

#[test]
fn dataset_lists_keep_zfs_notation() {
    let row = |name: &str, mountpoint: &str, quota: &str, readonly: &str, role: &str| DatasetRow {
        name: name.into(),
        mountpoint: mountpoint.into(),
        sharenfs: "off".into(),
        quota: quota.into(),
        readonly: readonly.into(),
        role: role.into(),
    };
    let datasets = parse_dataset_list("zfs list", include_str!("captured/datasets.txt")).unwrap();
    assert_eq!(
        datasets,
        [
            row("capt", "/tmp/zcap/mnt", "none", "off", "-"),
            row("capt/st", "/tmp/zcap/mnt/st", "100M", "off", "-"),
        ]
    );
    // A replica's: read-only, and its role inherited by every dataset.
    let datasets =
        parse_dataset_list("zfs list", include_str!("captured/datasets-replica.txt")).unwrap();
    assert_eq!(
        datasets,
        [
            row("capt", "/tmp/zcap/mnt", "none", "on", "replica"),
            row("capt/st", "/tmp/zcap/mnt/st", "100M", "on", "replica"),
        ]
    );
}

#[test]
fn unexpected_output_is_an_error_naming_the_command() {
    let errors: Vec<String> = [
        parse_pool_list("zpool list -H -o name,health home", "home ONLINE\n").map(|_| ()),
        parse_pool_list("zpool list -H -o name,health home", "home\tSLEEPY\n").map(|_| ()),
        parse_status("zpool status home", "no pools available\n").map(|_| ()),
        parse_status("zpool status home", "  pool: home\n state: ONLINE\n").map(|_| ()),
        parse_status(
            "zpool status home",
            "  pool: home\n state: ONLINE\nconfig:\n\n\tNAME STATE\n\tother ONLINE 0 0 0\n",
        )
        .map(|_| ()),
        parse_import_listing("zpool import -d /d", "something else entirely\n").map(|_| ()),
        parse_import_listing("zpool import -d /d", "  pool: home\n   id: 1\n").map(|_| ()),
        parse_dataset_list("zfs list", "home\t/home\n").map(|_| ()),
    ]
    .into_iter()
    .map(|result| result.unwrap_err().to_string())
    .collect();
    insta::assert_snapshot!(errors.join("\n"));
}

#[test]
fn no_text_makes_a_parser_panic() {
    // Truncations of real output at every byte: any result is fine, a panic is not.
    for text in [
        include_str!("captured/status-degraded.txt"),
        include_str!("captured/import-listing-degraded.txt"),
        include_str!("captured/datasets.txt"),
    ] {
        for end in (0..text.len()).filter(|end| text.is_char_boundary(*end)) {
            let part = &text[..end];
            let _ = parse_status("zpool status", part);
            let _ = parse_import_listing("zpool import", part);
            let _ = parse_dataset_list("zfs list", part);
            let _ = parse_pool_list("zpool list", part);
        }
    }
}
