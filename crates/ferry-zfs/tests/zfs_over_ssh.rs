//! The zfs_pool provider against a real sshd on loopback and the real zfs-fuse: moving a pool
//! between hosts with its data, fencing, and the faults an operator meets.

mod support;

use ferry_core::{Action, Observation, Value};
use serde_json::json;
use support::*;

fn error_text(result: Result<ferry_core::StepOutcome, ferry_core::StepError>) -> String {
    result.expect_err("the step should fail").message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_built_on_host_a_moves_to_host_b_with_every_file_intact() {
    let _zfs = zfs_lock().await;
    let sshd = Sshd::start();
    let disks = Disks::new(4);
    let staging = disks.dir.path().join("export/staging");
    let datasets = json!({
        "staging": {"mountpoint": staging.display().to_string(), "sharenfs": "off", "quota": "200M"}
    });
    let fixture = Fixture::new(&sshd, &disks, json!({ "datasets": datasets }));

    // Nothing there yet: absent, so a first build creates it.
    assert_eq!(fixture.read(1).await, Observation::Absent);
    let mut create_inputs = fixture.spec.fields.clone();
    create_inputs.insert("host".into(), json!("vm.nfs@g1"));
    let created = fixture
        .apply(
            Action::Create,
            serde_json::to_value(&create_inputs).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(created.outputs["health"], json!("ONLINE"));
    // No dataset is shared over NFS (sharenfs is off), so the export is the pool's root.
    assert_eq!(
        created.outputs["nfs_export"],
        json!(format!("127.0.0.1:/{}", disks.pool))
    );
    // Creating again finds it: the step is idempotent.
    fixture
        .apply(
            Action::Create,
            serde_json::to_value(&create_inputs).unwrap(),
        )
        .await
        .unwrap();

    let reading = fixture.read(1).await;
    assert!(reading.is_healthy(), "{reading:?}");
    assert_eq!(reading.attribute("host"), Some(&json!("vm.nfs@g1")));
    assert_eq!(reading.attribute("imported"), Some(&json!(true)));
    // Re-reading after the apply matches the spec: a new plan would have no changes.
    assert_eq!(reading.attribute("datasets"), Some(&datasets));
    assert_eq!(
        reading.attribute("disks"),
        Some(&json!(["disk.d0", "disk.d1", "disk.d2", "disk.d3"]))
    );

    let sums = write_files(&staging);

    fixture
        .apply(Action::Export, json!({"host": "vm.nfs@g1"}))
        .await
        .unwrap();
    // Exporting a pool that is not imported succeeds too.
    fixture
        .apply(Action::Export, json!({"host": "vm.nfs@g1"}))
        .await
        .unwrap();
    disks.move_all_to_b();

    let on_b = fixture.read(2).await;
    assert_eq!(on_b.attribute("imported"), Some(&json!(false)));
    assert_eq!(on_b.attribute("importable"), Some(&json!(true)));
    assert_eq!(
        on_b.attribute("needs_force"),
        Some(&json!(false)),
        "a cleanly exported pool imports without -f"
    );

    let imported = fixture
        .apply(Action::Import, json!({"host": "vm.nfs@g2", "force": false}))
        .await
        .unwrap();
    assert_eq!(imported.outputs["host"], json!("vm.nfs@g2"));
    assert_eq!(read_sums(&staging, &sums), sums);
    // Importing a pool already imported on this host succeeds without a second import.
    fixture
        .apply(Action::Import, json!({"host": "vm.nfs@g2", "force": false}))
        .await
        .unwrap();
    let reading = fixture.read(2).await;
    assert_eq!(reading.attribute("host"), Some(&json!("vm.nfs@g2")));
    let vdevs = reading
        .attribute("vdevs")
        .and_then(Value::as_array)
        .unwrap();
    assert!(vdevs.iter().all(|vdev| {
        vdev["path"]
            .as_str()
            .unwrap()
            .starts_with(&disks.host_b.display().to_string())
    }));

    // Datasets follow the spec: an update changes the quota in place.
    let mut update_inputs = create_inputs.clone();
    update_inputs.insert("host".into(), json!("vm.nfs@g2"));
    update_inputs.insert(
        "datasets".into(),
        json!({"staging": {"mountpoint": staging.display().to_string(), "sharenfs": "off", "quota": "300M"}}),
    );
    fixture
        .apply(
            Action::Update,
            serde_json::to_value(&update_inputs).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        run_ok(
            "zfs",
            &[
                "get",
                "-H",
                "-o",
                "value",
                "quota",
                &format!("{}/staging", disks.pool)
            ]
        )
        .trim(),
        "300M"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_left_imported_by_a_crashed_host_is_imported_only_with_force_after_a_fence() {
    let _zfs = zfs_lock().await;
    let sshd = Sshd::start();
    let disks = Disks::new(2);
    disks.create_on_a(None);
    let sums = write_files(&disks.mountpoint());
    // The host crashed with the pool imported; its disks are attached to host B.
    disks.move_all_to_b();
    let fixture = Fixture::new(&sshd, &disks, json!({}));

    let reading = fixture.read(2).await;
    assert_eq!(reading.attribute("imported_elsewhere"), Some(&json!(true)));
    let refused = error_text(
        fixture
            .apply(Action::Import, json!({"host": "vm.nfs@g2", "force": false}))
            .await,
    );
    // Even with force, ferry does not import while another host holds the pool.
    let refused_forced = error_text(
        fixture
            .apply(Action::Import, json!({"host": "vm.nfs@g2", "force": true}))
            .await,
    );
    insta::assert_snapshot!(disks.redact(&format!("{refused}\n{refused_forced}")));

    // The fence: the old host is deallocated and its ZFS lets go of the pool.
    run_ok("zpool", &["export", "-f", &disks.pool]);
    fixture
        .apply(Action::Import, json!({"host": "vm.nfs@g2", "force": true}))
        .await
        .unwrap();
    assert_eq!(read_sums(&disks.mountpoint(), &sums), sums);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_disks_are_named_and_a_degraded_pool_stops_the_plan() {
    let _zfs = zfs_lock().await;
    let sshd = Sshd::start();

    // A stripe missing a disk cannot be imported: the error names the disk.
    let stripe = Disks::new(2);
    stripe.create_on_a(None);
    run_ok("zpool", &["export", &stripe.pool]);
    stripe.move_to_b(0);
    // lun1 is attached nowhere (its link is gone, its file stays for the cleanup).
    std::fs::remove_file(stripe.host_a.join("lun1")).unwrap();
    let fixture = Fixture::new(&sshd, &stripe, json!({}));
    let unimportable = error_text(
        fixture
            .apply(Action::Import, json!({"host": "vm.nfs@g2", "force": false}))
            .await,
    );
    let reading = fixture.read(2).await;
    assert_eq!(reading.attribute("importable"), Some(&json!(false)));

    // A mirror missing a disk imports DEGRADED: the step fails and says which disk.
    let mirror = Disks::new(2);
    mirror.create_on_a(Some("mirror"));
    run_ok("zpool", &["export", &mirror.pool]);
    mirror.move_to_b(0);
    std::fs::remove_file(mirror.host_a.join("lun1")).unwrap();
    let fixture = Fixture::new(&sshd, &mirror, json!({"layout": "mirror"}));
    let degraded = error_text(
        fixture
            .apply(Action::Import, json!({"host": "vm.nfs@g2", "force": false}))
            .await,
    );
    let reading = fixture.read(2).await;
    assert!(!reading.is_healthy(), "{reading:?}");
    assert_eq!(reading.attribute("health"), Some(&json!("DEGRADED")));
    // The layout is read from the pool's top-level vdevs, so that a change in the spec is
    // refused instead of planning nothing (issue 18).
    assert_eq!(reading.attribute("layout"), Some(&json!("mirror")));

    insta::assert_snapshot!(format!(
        "{}\n{}",
        stripe.redact(&unimportable),
        mirror.redact(&degraded)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_pool_is_absent_and_cannot_be_imported() {
    let _zfs = zfs_lock().await;
    let sshd = Sshd::start();
    let disks = Disks::new(1);
    let fixture = Fixture::new(&sshd, &disks, json!({}));
    assert_eq!(fixture.read(1).await, Observation::Absent);
    // The disk is there but holds no pool.
    let message = error_text(
        fixture
            .apply(Action::Import, json!({"host": "vm.nfs@g1", "force": false}))
            .await,
    );
    insta::assert_snapshot!(disks.redact(&message));
}

/// The remote shell's start-up files print on stdout and stderr before every command (root's
/// `.bashrc` may run `pyenv init`, which complains when two sessions race): ferry reads only
/// what the command printed, so a missing pool is still absent and named as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_hosts_shell_prints_at_start_up_is_not_taken_for_zfss_answer() {
    let _zfs = zfs_lock().await;
    let noise = tempfile::tempdir().unwrap();
    let start_up = noise.path().join("start-up.sh");
    std::fs::write(
        &start_up,
        "echo 'welcome to the NFS host'\n\
         echo \"rm: cannot remove '/root/.pyenv/shims/tmp.x': No such file or directory\" >&2\n",
    )
    .unwrap();
    let sshd = Sshd::start_with(&format!("SetEnv BASH_ENV={}", start_up.display()));
    let disks = Disks::new(1);
    let fixture = Fixture::new(&sshd, &disks, json!({}));
    assert_eq!(fixture.read(1).await, Observation::Absent);
    let message = error_text(
        fixture
            .apply(Action::Import, json!({"host": "vm.nfs@g1", "force": false}))
            .await,
    );
    assert_eq!(
        disks.redact(&message),
        "zfs_pool.[pool]: no pool of that name is imported on vm.nfs@g1 or found in [dir]/host-a; check pool_name and that its disks are attached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_keys_are_verified_and_never_trusted_on_first_use() {
    let _zfs = zfs_lock().await;
    let sshd = Sshd::start();
    let disks = Disks::new(1);
    let other_key = sshd.dir.path().join("other_host_key");
    let other_public_key = generate_key(&other_key);

    // A pinned key that is not the host's: refused, with both fingerprints.
    let pinned = Fixture::new(&sshd, &disks, json!({"host_key": other_public_key}));
    let Observation::Unknown { reason } = pinned.read(1).await else {
        panic!("a host key mismatch must read as unknown");
    };
    let expected = fingerprint(&other_key.with_extension("pub"));
    let presented = fingerprint(&sshd.dir.path().join("host_key.pub"));
    assert!(
        reason.contains(&expected) && reason.contains(&presented),
        "{reason}"
    );
    let step = error_text(
        pinned
            .apply(Action::Import, json!({"host": "vm.nfs@g1", "force": false}))
            .await,
    );
    assert!(
        step.contains(&expected) && step.contains(&presented),
        "{step}"
    );
    let redacted = |text: &str| {
        disks
            .redact(text)
            .replace(&expected, "[expected]")
            .replace(&presented, "[presented]")
            .replace(&sshd.port.to_string(), "[port]")
            .replace(&sshd.dir.path().display().to_string(), "[sshd]")
    };

    // A known_hosts file without the host: refused, not added.
    let empty = sshd.dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let unknown = Fixture::new(
        &sshd,
        &disks,
        json!({"known_hosts": empty.display().to_string()}),
    );
    let Observation::Unknown {
        reason: unknown_reason,
    } = unknown.read(1).await
    else {
        panic!("an unknown host key must read as unknown");
    };
    assert_eq!(std::fs::read_to_string(&empty).unwrap(), "");

    // The right pinned key works.
    let right = Fixture::new(&sshd, &disks, json!({"host_key": sshd.host_public_key}));
    assert_eq!(right.read(1).await, Observation::Absent);

    insta::assert_snapshot!(format!(
        "{}\n{}",
        redacted(&reason),
        redacted(&unknown_reason)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_host_reads_unknown_never_absent() {
    let _zfs = zfs_lock().await;
    let sshd = Sshd::start();
    let disks = Disks::new(1);
    let port = sshd.port;
    let fixture = Fixture::new(&sshd, &disks, json!({}));
    drop(sshd);
    let reading = fixture.read(1).await;
    let Observation::Unknown { reason } = &reading else {
        panic!("expected unknown, got {reading:?}");
    };
    assert!(reason.contains("cannot connect"), "{reason}");
    let step = fixture
        .apply(Action::Import, json!({"host": "vm.nfs@g1", "force": false}))
        .await
        .unwrap_err();
    assert!(
        step.transient,
        "a refused connection is worth a retry: {step:?}"
    );
    insta::assert_snapshot!(disks.redact(reason).replace(&port.to_string(), "[port]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_in_the_middle_of_an_import_never_imports_twice() {
    let _zfs = zfs_lock().await;
    // A `zpool` first on the PATH of this sshd's sessions that, on an import, imports, logs
    // it, then kills the sshd process serving the connection.
    let fault = tempfile::tempdir().unwrap();
    let log = fault.path().join("imports.log");
    let script = format!(
        "#!/bin/sh\n\
         if [ \"$1\" = import ] && [ $# -ge 4 ]; then\n\
           echo \"$*\" >> {log}\n\
           /usr/sbin/zpool \"$@\"; rc=$?\n\
           pid=$$\n\
           while [ \"$pid\" -gt 1 ]; do\n\
             if [ \"$(cat /proc/$pid/comm)\" = sshd ]; then kill -9 \"$pid\"; break; fi\n\
             pid=$(cut -d' ' -f4 /proc/$pid/stat)\n\
           done\n\
           exit $rc\n\
         fi\n\
         exec /usr/sbin/zpool \"$@\"\n",
        log = log.display()
    );
    let wrapper = fault.path().join("zpool");
    std::fs::write(&wrapper, script).unwrap();
    run_ok("chmod", &["+x", wrapper.to_str().unwrap()]);
    let sshd = Sshd::start_with(&format!(
        "SetEnv PATH={}:/usr/sbin:/usr/bin:/sbin:/bin",
        fault.path().display()
    ));
    let disks = Disks::new(2);
    disks.create_on_a(None);
    run_ok("zpool", &["export", &disks.pool]);
    disks.move_all_to_b();
    let fixture = Fixture::new(&sshd, &disks, json!({}));

    // The step either notices the import took effect, or reports a transient error that the
    // engine retries; either way the retry finds the pool imported and does not import again.
    let first = fixture
        .apply(Action::Import, json!({"host": "vm.nfs@g2", "force": false}))
        .await;
    if let Err(error) = &first {
        assert!(error.transient, "{error:?}");
    }
    fixture
        .apply(Action::Import, json!({"host": "vm.nfs@g2", "force": false}))
        .await
        .unwrap();
    let imports = std::fs::read_to_string(&log).unwrap();
    assert_eq!(imports.lines().count(), 1, "{imports}");
    assert_eq!(
        fixture.read(2).await.attribute("imported"),
        Some(&json!(true))
    );
}
