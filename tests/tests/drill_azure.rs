//! A failover drill of data100 on the in-process ARM simulator (issue 17), through
//! `ferry_ops::Deployment::drill`: the real Azure providers build the drill's own resource
//! group, network, cluster, VM and public IPs, the disk provider copies production's disks
//! from one restore point of production's VM (the four disks of its pool at one moment), the
//! pool, records, hooks and checks are in a memory world of the drill's
//! own; then the clean-up deletes it all. The simulator's record shows no request but a read
//! to anything of production's group, and the drill's group is gone at the end. A warm
//! standby's drill is staged: its failover fences, detaches, moves and attaches the drill's
//! copies, between the drill's own groups.

mod support;

use ferry_apply::ApplyControl;
use ferry_arm::{AzureDeployment, AzureSettings, Url};
use ferry_core::{Kind, Providers};
use ferry_ops::{Deployment, DrillMode, DrillRequest, TaggedLists, WorldSource};
use ferry_testkit::drill_harness::{build, drill_request};
use ferry_world::{MemoryProvider, World};
use std::path::Path;
use std::sync::Arc;

/// Providers for `spec` on `simulator`: the real Azure ones, the rest in `world`.
fn providers(
    spec: &ferry_spec::Spec,
    simulator: &ferry_sim::Simulator,
    folder: &Path,
    operations: &str,
    world: &World,
) -> Providers {
    let mut settings = AzureSettings::simulator(
        Url::parse(simulator.endpoint()).unwrap(),
        simulator.ca_file().to_path_buf(),
        folder.join(operations),
    );
    settings.subscription = spec.deployment.subscription.clone();
    settings.device_root = Some(folder.join("sim"));
    let azure = Arc::new(AzureDeployment::new(settings, spec.resources.values()).unwrap());
    ferry_providers::with_azure_providers(Providers::new(), &azure)
        .with(Arc::new(MemoryProvider::new(Kind::ZfsPool, world)))
        .with(Arc::new(MemoryProvider::new(Kind::DnsRecord, world)))
        .with(Arc::new(MemoryProvider::new(Kind::Hook, world)))
        .with(Arc::new(MemoryProvider::new(Kind::Check, world)))
}

/// Where the drill of `spec` lists what carries its tag on `simulator`.
fn tagged_lists(spec: &ferry_spec::Spec, simulator: &ferry_sim::Simulator) -> TaggedLists {
    TaggedLists {
        client: ferry_arm::ArmClient::new(ferry_arm::ArmClientConfig::simulator(
            Url::parse(simulator.endpoint()).unwrap(),
            simulator.ca_file().to_path_buf(),
        ))
        .unwrap(),
        subscription: spec.deployment.subscription.clone().unwrap(),
    }
}

/// A drill of `specs/data100/{variant}` on a simulator of its own, production built first:
/// the drill's report, and the simulator's record since the drill started.
async fn drill_on_the_simulator(
    variant: &str,
) -> (ferry_ops::DrillReport, Vec<ferry_sim::SimEvent>) {
    let folder = tempfile::tempdir().unwrap();
    let simulator = ferry_sim::start(ferry_sim::SimulatorConfig::for_tests(
        folder.path().join("sim"),
    ))
    .await
    .unwrap();
    let rules = ferry_providers::rule_book();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../specs/data100")
        .join(variant);
    let mut spec = ferry_spec::load(&root, &ferry_spec::LoadOptions::default(), &rules)
        .unwrap_or_else(|errors| panic!("{}", errors.render(false)));
    spec.state = ferry_spec::StateConfig::Local {
        path: folder.path().join("state"),
    };
    let lists = tagged_lists(&spec, &simulator);
    let production_world = World::simulating(&rules);
    let production_providers = providers(
        &spec,
        &simulator,
        folder.path(),
        "operations",
        &production_world,
    );
    let production = Deployment::open(
        spec,
        rules,
        &root,
        WorldSource::Providers(production_providers),
    )
    .unwrap();
    build(&production).await;
    let mark = simulator.events().len();
    let control = ApplyControl::new();
    let drill_world = World::simulating(&ferry_providers::rule_book());
    let build_drill = |drill_spec: &ferry_spec::Spec| {
        providers(
            drill_spec,
            &simulator,
            folder.path(),
            "drill-operations",
            &drill_world,
        )
    };
    let drilled = production
        .drill(DrillRequest {
            drill_providers: Some(&build_drill),
            tagged_lists: Some(lists.clone()),
            ..drill_request(DrillMode::Run { keep: false }, variant, &control)
        })
        .await
        .unwrap();
    let events = simulator.events().into_iter().skip(mark).collect();
    (drilled, events)
}

/// A warm standby's drill on the simulator: the drill's copy of production and its standby
/// built, then its failover (fence, detach, move, attach) of the drill's copies through the
/// real Azure providers, as strict as Azure; production's group sees reads only, the drill's
/// groups are deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_standbys_drill_on_the_arm_simulator_moves_only_the_drills_copies() {
    let (drilled, events) = drill_on_the_simulator("warm").await;
    let failed: Vec<String> = drilled
        .steps
        .iter()
        .filter(|step| step.outcome != "done")
        .map(|step| format!("{}: {}", step.id, step.outcome))
        .collect();
    assert_eq!(failed, Vec::<String>::new());
    assert!(drilled.stage.is_some());
    assert!(drilled.ok(), "{drilled:#?}");
    let step_ids: Vec<String> = drilled
        .steps
        .iter()
        .map(|step| step.id.to_string())
        .collect();
    for wanted in [
        "vm.nfs@g1:fence",
        "disk.home0:detach",
        "disk.home0:move",
        "disk.home0:attach",
    ] {
        assert!(
            step_ids.contains(&wanted.to_owned()),
            "{wanted}: {step_ids:?}"
        );
    }
    let production_writes: Vec<String> = events
        .iter()
        .filter(|event| event.what == "request" && event.method != "GET")
        .filter(|event| {
            let path = event.path.to_ascii_lowercase();
            path.contains("/resourcegroups/data100-g1/")
                || path.contains("/resourcegroups/data100-g2/")
        })
        .map(|event| format!("{} {}", event.method, event.path))
        .collect();
    assert_eq!(production_writes, Vec::<String>::new());
    // The moves were the drill's copies', between the drill's groups.
    assert!(events.iter().any(|event| {
        event.what == "request"
            && event.method == "POST"
            && event
                .path
                .contains("/resourceGroups/data100-g1-drill/moveResources")
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_on_the_arm_simulator_copies_production_touches_nothing_of_it_and_leaves_nothing() {
    let folder = tempfile::tempdir().unwrap();
    let support::AzureWorld {
        mut spec,
        rules,
        simulator,
        providers: production_providers,
    } = support::azure_world(folder.path(), "operations").await;
    spec.state = ferry_spec::StateConfig::Local {
        path: folder.path().join("state"),
    };
    let lists = tagged_lists(&spec, &simulator);
    let spec_path = spec.root.clone();
    let production = Deployment::open(
        spec,
        rules,
        &spec_path,
        WorldSource::Providers(production_providers),
    )
    .unwrap();
    build(&production).await;
    let mark = simulator.events().len();

    let control = ApplyControl::new();
    let drill_world = World::simulating(&ferry_providers::rule_book());
    let build_drill = |drill_spec: &ferry_spec::Spec| {
        providers(
            drill_spec,
            &simulator,
            folder.path(),
            "drill-operations",
            &drill_world,
        )
    };
    let drilled = production
        .drill(DrillRequest {
            drill_providers: Some(&build_drill),
            tagged_lists: Some(lists.clone()),
            ..drill_request(DrillMode::Run { keep: false }, "azure-1", &control)
        })
        .await
        .unwrap();
    let failed: Vec<String> = drilled
        .steps
        .iter()
        .filter(|step| step.outcome != "done")
        .map(|step| format!("{}: {}", step.id, step.outcome))
        .collect();
    assert_eq!(failed, Vec::<String>::new());
    let cleanup = drilled.cleanup.as_ref().unwrap();
    assert_eq!(cleanup.failures, Vec::<String>::new());
    assert_eq!(cleanup.leftovers, Vec::new());
    // ARM's lists of the subscription: nothing carries the drill's tag. The plan deleted
    // every instance; the restore point collection, which no reading shows, went first by
    // its tag.
    assert_eq!(cleanup.tagged_leftovers, Some(Vec::new()));
    let collection = format!(
        "/subscriptions/{}/resourceGroups/data100-g1-drill/providers/Microsoft.Compute/restorePointCollections/rpc-azure-1-data100-nfs-g1",
        lists.subscription
    );
    assert_eq!(cleanup.restore_points, [collection]);
    assert_eq!(cleanup.deleted_by_tag, Vec::<String>::new());
    assert_eq!(drilled.production_changes, Vec::<String>::new());
    assert!(drilled.ok());

    // Production's group saw reads only; the drill's is gone, its restore point with it.
    let events = simulator.events();
    let production_writes: Vec<String> = events
        .iter()
        .skip(mark)
        .filter(|event| event.what == "request" && event.method != "GET")
        .filter(|event| {
            event
                .path
                .to_ascii_lowercase()
                .contains("/resourcegroups/data100-g1/")
        })
        .map(|event| format!("{} {}", event.method, event.path))
        .collect();
    assert_eq!(production_writes, Vec::<String>::new());
    // One restore point for the four disks, no snapshot.
    let made: Vec<&str> = events
        .iter()
        .skip(mark)
        .filter(|event| event.what == "request" && event.method == "PUT")
        .filter_map(|event| {
            event
                .path
                .split_once("/resourceGroups/data100-g1-drill/providers/")
        })
        .map(|(_, path)| path)
        .filter(|path| path.contains("/snapshots/") || path.contains("/restorePoints/"))
        .collect();
    assert_eq!(
        made,
        [
            "Microsoft.Compute/restorePointCollections/rpc-azure-1-data100-nfs-g1/restorePoints/rp-azure-1"
        ]
    );
    let group_deleted = events.iter().skip(mark).any(|event| {
        event.what == "request"
            && event.method == "DELETE"
            && event.path.ends_with("/resourceGroups/data100-g1-drill")
    });
    assert!(group_deleted);

    // What the drill's state never recorded is found by its tag: a group of the drill's
    // (created before a kill, its journal entry never written) holding a copy and a restore
    // point of production's VM (a kill between the restore point and the disks), and a disk
    // and its snapshot outside every group of the drill. `--clean` deletes them, the group
    // with what it holds, and ARM's lists prove nothing is left; an untagged group beside
    // them, and production, are left alone.
    let client = &lists.client;
    let group = |name: &str| {
        format!(
            "/subscriptions/{}/resourceGroups/{name}",
            lists.subscription
        )
    };
    let put = |id: String, body: serde_json::Value| async move {
        let api = ferry_arm::api_version::for_type(
            &ferry_arm::ResourceId::parse(&id).unwrap().resource_type(),
        );
        let _: serde_json::Value = client
            .put_and_wait(&id, api, &body, &ferry_arm::WriteOptions::default())
            .await
            .unwrap();
    };
    let tags = serde_json::json!({"ferry-drill": "azure-1"});
    put(
        group("data100-g1-drill"),
        serde_json::json!({"location": "westeurope", "tags": tags}),
    )
    .await;
    put(
        group("elsewhere"),
        serde_json::json!({"location": "westeurope"}),
    )
    .await;
    let disk = |group_name: &str, name: &str| {
        format!(
            "{}/providers/Microsoft.Compute/disks/{name}",
            group(group_name)
        )
    };
    let empty_disk = serde_json::json!({"location": "westeurope", "tags": tags, "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 8}});
    put(disk("data100-g1-drill", "orphan"), empty_disk.clone()).await;
    put(disk("elsewhere", "stray"), empty_disk).await;
    let snapshot = format!(
        "{}/providers/Microsoft.Compute/snapshots/stray",
        group("elsewhere")
    );
    put(
        snapshot.clone(),
        serde_json::json!({"location": "westeurope", "tags": tags, "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": disk("elsewhere", "stray")}, "incremental": true}}),
    )
    .await;
    let left_collection = format!(
        "{}/providers/Microsoft.Compute/restorePointCollections/rpc-azure-1-data100-nfs-g1",
        group("data100-g1-drill")
    );
    put(
        left_collection.clone(),
        serde_json::json!({"location": "westeurope", "tags": tags, "properties": {"source": {"id": format!("{}/providers/Microsoft.Compute/virtualMachines/data100-nfs-g1", group("data100-g1"))}}}),
    )
    .await;
    put(
        format!("{left_collection}/restorePoints/rp-azure-1"),
        serde_json::json!({"properties": {"consistencyMode": "CrashConsistent"}}),
    )
    .await;
    let mark = simulator.events().len();
    let cleaned = production
        .drill(DrillRequest {
            drill_providers: Some(&build_drill),
            tagged_lists: Some(lists.clone()),
            ..drill_request(DrillMode::Clean, "azure-1", &control)
        })
        .await
        .unwrap();
    let cleanup = cleaned.cleanup.as_ref().unwrap();
    assert_eq!(cleanup.failures, Vec::<String>::new());
    assert_eq!(cleanup.tagged_leftovers, Some(Vec::new()));
    let found_by_tag: Vec<String> = cleanup
        .deleted_by_tag
        .iter()
        .map(|id| id.rsplit_once("/resourceGroups/").unwrap().1.to_owned())
        .collect();
    assert!(
        found_by_tag.contains(&"elsewhere/providers/Microsoft.Compute/disks/stray".to_owned())
            && found_by_tag
                .contains(&"elsewhere/providers/Microsoft.Compute/snapshots/stray".to_owned()),
        "{found_by_tag:?}"
    );
    // The restore point left behind is the drill's own, said apart from the strays.
    assert_eq!(
        cleanup.restore_points,
        std::slice::from_ref(&left_collection)
    );
    assert!(cleaned.ok(), "{cleaned:#?}");
    let written: Vec<String> = simulator
        .events()
        .iter()
        .skip(mark)
        .filter(|event| event.what == "request" && event.method != "GET")
        .map(|event| format!("{} {}", event.method, event.path))
        .collect();
    assert!(
        written.iter().all(|write| !write
            .to_ascii_lowercase()
            .contains("/resourcegroups/data100-g1/")
            && !write.ends_with("/resourceGroups/elsewhere")),
        "{written:#?}"
    );
    assert!(
        client
            .read::<serde_json::Value>(&ferry_arm::ResourceId::parse(&group("elsewhere")).unwrap())
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        client
            .read::<serde_json::Value>(&ferry_arm::ResourceId::parse(&left_collection).unwrap())
            .await
            .unwrap()
            .is_none()
    );

    // A production disk carrying the drill's tag (a hand put it there) is never deleted: the
    // clean-up fails naming it as production's, once, and ARM's lists still show it.
    let production_disk = disk("data100-g1", "data100-home0");
    let mut body: serde_json::Value = client
        .get(&production_disk, ferry_arm::api_version::DISKS)
        .await
        .unwrap()
        .value;
    body["tags"]["ferry-drill"] = serde_json::json!("azure-1");
    put(production_disk.clone(), body).await;
    let mark = simulator.events().len();
    let refused = production
        .drill(DrillRequest {
            drill_providers: Some(&build_drill),
            tagged_lists: Some(lists.clone()),
            ..drill_request(DrillMode::Clean, "azure-1", &control)
        })
        .await
        .unwrap();
    assert!(!refused.ok());
    let cleanup = refused.cleanup.as_ref().unwrap();
    assert_eq!(
        cleanup.failures,
        [format!(
            "{production_disk} carries the drill's tag ferry-drill=azure-1 but is production's (disk.home0): left alone; remove the tag or the resource by hand"
        )]
    );
    assert_eq!(
        cleanup
            .tagged_leftovers
            .as_ref()
            .unwrap()
            .iter()
            .map(|id| id.to_ascii_lowercase())
            .collect::<Vec<_>>(),
        [production_disk.to_ascii_lowercase()]
    );
    let written = simulator
        .events()
        .iter()
        .skip(mark)
        .filter(|event| event.what == "request" && event.method != "GET")
        .count();
    assert_eq!(written, 0);

    // A drill group of a generation the drill's state never recorded, which its readings do
    // not reach, holding a copy: `--clean` without an id finds the drill by the group's tag
    // and name, and removes it whole.
    let lost_tags = serde_json::json!({"ferry-drill": "lost-1"});
    put(
        group("data100-g7-drill"),
        serde_json::json!({"location": "westeurope", "tags": lost_tags}),
    )
    .await;
    put(
        disk("data100-g7-drill", "home0-copy"),
        serde_json::json!({"location": "westeurope", "tags": lost_tags, "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 8}}),
    )
    .await;
    let found = production
        .drill(DrillRequest {
            id: None,
            drill_providers: Some(&build_drill),
            tagged_lists: Some(lists.clone()),
            ..drill_request(DrillMode::Clean, "unused", &control)
        })
        .await
        .unwrap();
    assert_eq!(found.id.as_str(), "lost-1");
    let cleanup = found.cleanup.as_ref().unwrap();
    assert_eq!(cleanup.failures, Vec::<String>::new());
    assert_eq!(cleanup.tagged_leftovers, Some(Vec::new()));
    assert_eq!(
        cleanup.deleted_by_tag.len(),
        2,
        "{:?}",
        cleanup.deleted_by_tag
    );
    assert!(
        client
            .read::<serde_json::Value>(
                &ferry_arm::ResourceId::parse(&group("data100-g7-drill")).unwrap()
            )
            .await
            .unwrap()
            .is_none()
    );
}

/// The drill's disk provider with production written between its copies: its copy steps run
/// one at a time, and after each, every disk of production's pool is written with the next
/// moment's bytes. Copies of one moment all show the moment before the first copy; one
/// snapshot per disk would show a different moment on each.
#[derive(Debug)]
struct WritesBetweenCopies {
    inner: Arc<dyn ferry_core::Provider>,
    production_devices: Vec<std::path::PathBuf>,
    copies_done: tokio::sync::Mutex<u32>,
}

#[async_trait::async_trait]
impl ferry_core::Provider for WritesBetweenCopies {
    fn kind(&self) -> Kind {
        self.inner.kind()
    }

    fn concurrency_limit(&self) -> usize {
        self.inner.concurrency_limit()
    }

    async fn read(&self, context: ferry_core::ReadContext<'_>) -> ferry_core::Observation {
        self.inner.read(context).await
    }

    async fn apply(
        &self,
        step: &ferry_core::Step,
        context: ferry_core::ApplyContext<'_>,
    ) -> Result<ferry_core::StepOutcome, ferry_core::StepError> {
        let is_copy = step.action == ferry_core::Action::Create
            && context
                .inputs
                .get(ferry_core::fields::disk::COPY_OF)
                .is_some();
        if !is_copy {
            return self.inner.apply(step, context).await;
        }
        let mut copies_done = self.copies_done.lock().await;
        let outcome = self.inner.apply(step, context).await;
        *copies_done += 1;
        let moment = format!("moment {copies_done}");
        for device in &self.production_devices {
            ferry_testkit::provider_harness::write_at(device, moment.as_bytes());
        }
        outcome
    }

    fn begin_read_round(&self) -> ferry_core::provider::ReadRound {
        self.inner.begin_read_round()
    }
}

/// The four disks of production's pool, written to between the drill's copies, come back
/// in the drill as copies of one moment: the restore point's, taken before the first copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drills_copies_of_the_pools_four_disks_are_of_one_moment() {
    let folder = tempfile::tempdir().unwrap();
    let support::AzureWorld {
        mut spec,
        rules,
        simulator,
        providers: production_providers,
    } = support::azure_world(folder.path(), "operations").await;
    spec.state = ferry_spec::StateConfig::Local {
        path: folder.path().join("state"),
    };
    let lists = tagged_lists(&spec, &simulator);
    let spec_path = spec.root.clone();
    let production = Deployment::open(
        spec,
        rules,
        &spec_path,
        WorldSource::Providers(production_providers),
    )
    .unwrap();
    build(&production).await;
    let devices = |vm: &str| -> Vec<std::path::PathBuf> {
        (0..4)
            .map(|lun| simulator.attachment_directory(vm).join(format!("lun{lun}")))
            .collect()
    };
    let production_devices = devices("data100-nfs-g1");
    for device in &production_devices {
        ferry_testkit::provider_harness::write_at(device, b"moment 0");
    }

    let control = ApplyControl::new();
    let drill_world = World::simulating(&ferry_providers::rule_book());
    let build_drill = |drill_spec: &ferry_spec::Spec| {
        let providers = providers(
            drill_spec,
            &simulator,
            folder.path(),
            "drill-operations",
            &drill_world,
        );
        let disks = providers.get(Kind::Disk).unwrap().clone();
        providers.with(Arc::new(WritesBetweenCopies {
            inner: disks,
            production_devices: production_devices.clone(),
            copies_done: tokio::sync::Mutex::new(0),
        }))
    };
    let drilled = production
        .drill(DrillRequest {
            drill_providers: Some(&build_drill),
            tagged_lists: Some(lists.clone()),
            ..drill_request(DrillMode::Run { keep: true }, "moment-1", &control)
        })
        .await
        .unwrap();
    assert!(drilled.ok(), "{drilled:#?}");
    // Production was written after each of the four copies...
    for device in &production_devices {
        assert_eq!(
            ferry_testkit::provider_harness::read_at(device, 8),
            b"moment 4"
        );
    }
    // ...and every copy on the drill's VM holds the moment before the first.
    let copies: Vec<String> = devices("data100-nfs-g1-drill")
        .iter()
        .map(|device| {
            String::from_utf8_lossy(&ferry_testkit::provider_harness::read_at(device, 8))
                .into_owned()
        })
        .collect();
    assert_eq!(copies, ["moment 0"; 4]);

    let cleaned = production
        .drill(DrillRequest {
            drill_providers: Some(&build_drill),
            tagged_lists: Some(lists.clone()),
            ..drill_request(DrillMode::Clean, "moment-1", &control)
        })
        .await
        .unwrap();
    assert!(cleaned.ok(), "{cleaned:#?}");
    assert_eq!(
        cleaned.cleanup.as_ref().unwrap().tagged_leftovers,
        Some(Vec::new())
    );
}
