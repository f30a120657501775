//! Two real ZFS hosts, so that a double import would be real: a pool imported on host A (its
//! own zfs-fuse daemon, sshd and host id) is moved by ferry to host B (another daemon, sshd and
//! host id) that sees the same disks, as two VMs would see a shared disk. ferry never imports
//! it on B while A holds it: the planner refuses a plan whose import does not wait for A's
//! fence, and ferry's provider refuses the import on B that ZFS says the pool's last host may
//! still be using. Once A is fenced, ferry imports on B with `-f`, and every file is intact.
//!
//! How the hosts are built (`zfs_hosts/mod.rs`): each is started by `unshare --mount
//! --propagation private --uts`, with its own `/etc` overlay (its `/etc/hostid`, which
//! `gethostid()` reads in both the daemon and `zpool`), its own `/var/lib/zfs` (where Debian's
//! zfs-fuse keeps its `zpool.cache`), its own `/var/run/zfs` socket and `/var/lock/zfs` lock,
//! its own hostname, its daemon, and its sshd on
//! an address of its own (127.42.0.1 and .2, one port). No network namespace: which daemon an
//! SSH session's `zpool` reaches is decided by the mount namespace the sshd runs in, and
//! keeping the machine's loopback lets ferry and the test reach both hosts with no veth or
//! routing to set up. Neither host is the machine's shared zfs-fuse daemon, whose pools other
//! tests use at the same time: that daemon is never asked anything here, so no lock is needed,
//! and host A can crash for real.
//!
//! The fence: host A crashes (`kill -9` of its daemon and its sshd), as a VM that is
//! deallocated or powered off. Nothing more is written by A, but A never exported the pool, so
//! its labels still name A's host id as an active user: ZFS on B asks for `-f`, and ferry's
//! plan gives it only after the fence. An export on A would not be a fence: it is the clean
//! path, after which ZFS imports without `-f` (`crates/ferry-zfs/tests/zfs_over_ssh.rs` covers
//! it).
//!
//! Where the pool is imported is asked of each daemon with its own `zpool list` and `zpool
//! history`, never through ferry's code.

mod zfs_hosts;

use ferry_core::provider::{FieldError, FieldSchema, OutputSchema};
use ferry_core::{
    Action, ChangeClass, FailoverContext, Kind, KindRules, Observation, ResourceSpec, Snapshot,
    StepDraft, Value,
};
use ferry_plan::PlanConfig;
use ferry_zfs::ZfsPoolRules;
use serde_json::json;
use zfs_hosts::*;

/// `zfs_pool`'s real rules, but a failover that forgets the fence of the old host: what the
/// planner's safety check is there to catch.
#[derive(Debug)]
struct RulesWithoutTheFence;

impl KindRules for RulesWithoutTheFence {
    fn kind(&self) -> Kind {
        ZfsPoolRules.kind()
    }
    fn description(&self) -> &'static str {
        ZfsPoolRules.description()
    }
    fn fields(&self) -> &'static [FieldSchema] {
        ZfsPoolRules.fields()
    }
    fn outputs(&self) -> &'static [OutputSchema] {
        ZfsPoolRules.outputs()
    }
    fn validate(&self, spec: &ResourceSpec) -> Vec<FieldError> {
        ZfsPoolRules.validate(spec)
    }
    fn classify_change(&self, attribute: &str, before: &Value, after: &Value) -> ChangeClass {
        ZfsPoolRules.classify_change(attribute, before, after)
    }
    fn estimate_seconds(&self, action: Action, spec: &ResourceSpec) -> u64 {
        ZfsPoolRules.estimate_seconds(action, spec)
    }
    fn is_observed(&self, field: &str) -> bool {
        ZfsPoolRules.is_observed(field)
    }
    fn failover(&self, context: &FailoverContext<'_>) -> Result<Vec<StepDraft>, String> {
        let drafts = ZfsPoolRules.failover(context)?;
        Ok(drafts
            .into_iter()
            .filter(|draft| draft.action != Action::Fence)
            .map(|mut draft| {
                // The import waits only for the export and the new host, not for the fence
                // (nor for the disks' attaches, which follow it).
                draft.after.retain(|id| {
                    id.0.ends_with(":export")
                        || (id.0.starts_with("vm.") && id.0.ends_with(":create"))
                });
                draft.before.retain(|id| !id.0.ends_with(":fence"));
                draft
            })
            .collect())
    }
}

/// Plans the data100 failover with the pool's reading taken from host A: the real rules and
/// the rules that forget the fence. Returns the first plan's ancestors of the pool's import
/// and the second plan's refusal.
fn plan_the_failover(host_a_reading: &Observation) -> (Vec<String>, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/data100");
    let rules = ferry_providers::rule_book();
    let spec = ferry_spec::load(&root, &ferry_spec::LoadOptions::default(), &rules)
        .unwrap_or_else(|errors| panic!("{}", errors.render(false)));
    let mut snapshot: Snapshot = serde_json::from_str(
        &std::fs::read_to_string(root.join("observed-apiserver-down.json")).unwrap(),
    )
    .unwrap();
    // data100's pool has other disks and datasets than this test's: what the planner needs to
    // know from host A is where the pool is imported, and that is what A's ZFS said.
    let pool: ferry_core::InstanceAddress = "zfs_pool.home".parse().unwrap();
    let Some(Observation::Present { attributes, .. }) = snapshot.resources.get_mut(&pool) else {
        panic!("data100's snapshot reads the pool as present");
    };
    for name in ["host", "imported"] {
        attributes.insert(name.into(), host_a_reading.attribute(name).unwrap().clone());
    }

    let plan = ferry_plan::plan(&spec, &snapshot, &rules, &PlanConfig::default())
        .unwrap_or_else(|errors| panic!("{errors}"));
    let steps: std::collections::HashMap<&str, &ferry_core::Step> = plan
        .steps
        .iter()
        .map(|step| (step.id.0.as_str(), step))
        .collect();
    let mut ancestors = Vec::new();
    let mut stack = vec!["zfs_pool.home:import"];
    while let Some(id) = stack.pop() {
        for before in &steps[id].after {
            if !ancestors.contains(&before.0) {
                ancestors.push(before.0.clone());
                stack.push(before.0.as_str());
            }
        }
    }

    let without_the_fence = ferry_providers::rule_book().with(Box::new(RulesWithoutTheFence));
    let refusal =
        match ferry_plan::plan(&spec, &snapshot, &without_the_fence, &PlanConfig::default()) {
            Ok(plan) => panic!(
                "a plan whose import does not wait for a fence of host A was made:\n{}",
                ferry_plan::render::text(&plan, &Default::default())
            ),
            Err(errors) => errors.to_string(),
        };
    (ancestors, refusal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_held_by_a_live_host_is_imported_on_another_only_after_that_host_is_fenced() {
    let mut hosts = TwoHosts::start(2);
    hosts.create_pool_on_a();
    let sums = write_files(&hosts.a.path(&hosts.mountpoint()));
    let fixture = fixture(&hosts);
    assert_eq!(hosts.holders(), ["ferry-host-a"]);

    // Host A answers and holds the pool.
    let on_a = fixture.read(1).await;
    assert!(on_a.is_healthy(), "{on_a:?}");
    assert_eq!(on_a.attribute("host"), Some(&json!("vm.nfs@g1")));
    assert_eq!(on_a.attribute("imported"), Some(&json!(true)));

    // (1) The planner: the failover's import on B waits for the fence of A (and for A's
    // export, since A answers); a plan that does not is refused by the safety check.
    let (ancestors, refusal) = plan_the_failover(&on_a);
    assert!(
        ancestors.contains(&"vm.nfs@g1:fence".to_owned())
            && ancestors.contains(&"zfs_pool.home:export".to_owned()),
        "{ancestors:?}"
    );
    assert!(
        refusal.contains(
            "zfs_pool.home: the import does not wait for a fence of vm.nfs@g1, which may still hold the pool"
        ),
        "{refusal}"
    );

    // (2) ferry's provider on B: ZFS lists the pool as last used by another system, so the
    // reading says it needs -f, and an import without -f is refused.
    let on_b = fixture.read(2).await;
    assert_eq!(on_b.attribute("imported"), Some(&json!(false)), "{on_b:?}");
    assert_eq!(on_b.attribute("importable"), Some(&json!(true)), "{on_b:?}");
    assert_eq!(
        on_b.attribute("needs_force"),
        Some(&json!(true)),
        "{on_b:?}"
    );
    let refused = fixture
        .apply(Action::Import, json!({"host": "vm.nfs@g2", "force": false}))
        .await
        .expect_err("an import on B while A holds the pool must be refused")
        .message;
    assert!(
        refused.contains("ferry-host-a") && refused.contains("0xa0a0a0"),
        "the refusal names the host that holds the pool: {refused}"
    );
    insta::assert_snapshot!(hosts.redact(&refused));
    // (4) Each daemon, asked itself: A holds the pool, B never imported it.
    assert_eq!(hosts.holders(), ["ferry-host-a"]);
    assert_eq!(hosts.b.history(&hosts.pool), None);

    // (3) The fence: host A crashes. ZFS on B still asks for -f (A never exported), the plan
    // now gives it (A is fenced), and ferry imports on B with every file intact.
    hosts.a.crash();
    assert_eq!(hosts.holders(), Vec::<&str>::new());
    // B reads the pool exactly as it did while A held it: on separate hosts, what ZFS shows B
    // cannot tell a live holder from a crashed one, so only the fence makes -f safe.
    assert_eq!(fixture.read(2).await, on_b);
    // As the plan gives it: A, fenced, is asked first and does not answer.
    let import = json!({"host": "vm.nfs@g2", "force": true, "fenced_hosts": ["vm.nfs@g1"]});
    let imported = fixture.apply(Action::Import, import.clone()).await.unwrap();
    assert_eq!(imported.outputs["host"], json!("vm.nfs@g2"));
    assert_eq!(imported.outputs["health"], json!("ONLINE"));
    assert_eq!(read_sums(&hosts.b.path(&hosts.mountpoint()), &sums), sums);
    // A retry of the step finds the pool imported and imports nothing.
    fixture.apply(Action::Import, import).await.unwrap();

    // (4) B's own history: exactly one import, with -f, after A was gone.
    assert_eq!(hosts.holders(), ["ferry-host-b"]);
    let history = hosts.b.history(&hosts.pool).unwrap();
    let imports: Vec<&str> = history
        .lines()
        .filter(|line| line.contains("zpool import"))
        .collect();
    assert_eq!(imports.len(), 1, "{history}");
    assert!(
        imports[0].ends_with(&format!(
            "zpool import -d {} -f {}",
            hosts.devices.display(),
            hosts.pool
        )),
        "{history}"
    );
}

/// A fence that did not take effect (ARM reads the old VM as deallocated while it still runs)
/// must not become a double import. ZFS on B cannot tell a live holder from a crashed one: it
/// lists the pool as importable with `-f` either way (and hosts cloned with one host id would
/// not even need `-f`). So before importing, ferry asks every host the plan fenced whether it
/// still holds the pool; A answers that it does, and the forced import is refused. Without
/// that question (as before), B imported the pool while A held it: both daemons listed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_import_is_refused_while_a_fenced_host_still_answers_with_the_pool_imported() {
    let hosts = TwoHosts::start(1);
    hosts.create_pool_on_a();
    let fixture = fixture(&hosts);
    assert_eq!(hosts.holders(), ["ferry-host-a"]);

    let refused = fixture
        .apply(
            Action::Import,
            json!({"host": "vm.nfs@g2", "force": true, "fenced_hosts": ["vm.nfs@g1"]}),
        )
        .await
        .expect_err("a forced import while A still holds the pool must be refused")
        .message;
    insta::assert_snapshot!(
        hosts.redact(&refused),
        @"zfs_pool.[pool]: refused to import on vm.nfs@g2 although the plan fenced the other hosts: the pool is still imported by another host (vm.nfs@g1 still answers over SSH and lists it imported); make sure the fence took effect (the old VM deallocated), then apply again"
    );
    // Each daemon, asked itself: A still holds the pool, B never imported it.
    assert_eq!(hosts.holders(), ["ferry-host-a"]);
    assert_eq!(hosts.b.history(&hosts.pool), None);
}
