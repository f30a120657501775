//! Bad input, generated: arbitrary and mutated bytes for every reader of outside text (the
//! spec loader, ARM's models, error bodies, headers and ids, the ZFS output parsers, and the
//! snapshot, plan, saved-plan, state, world and journal files). None may panic; each returns its
//! typed error. Hostile edits (a number past any range, a line past 65,535 characters) go
//! further: a spec or saved plan that still reads is planned and rendered as `ferry plan` and
//! `ferry show` would (issue 18).
//! Case counts are bounded so that the whole file runs in seconds.

use std::path::{Path, PathBuf};

use ferry_arm::models::{
    AsyncOperationStatus, Disk, ManagedCluster, PublicIpAddress, ResourceGroup, VirtualMachine,
    VirtualNetwork,
};
use ferry_arm::{ArmErrorResponse, PendingOperation, ResourceId};
use ferry_core::Snapshot;
use ferry_plan::SavedPlan;
use ferry_spec::{LoadOptions, load_sources};
use ferry_state::StateFile;
use ferry_world::World;
use proptest::prelude::*;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repository().join(path)).unwrap()
}

/// One edit of a text, as files really get damaged or mistyped.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Truncate(usize),
    Overwrite(usize, Vec<u8>),
    /// The first number at or after the offset becomes one past every range, pushed past
    /// column 65,535 by spaces when the flag says so.
    HugeNumber(usize, &'static str, bool),
    /// A line is repeated onto itself past 65,535 characters.
    LongLine(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(at, bytes)| Edit::Overwrite(at, bytes)),
    ]
}

/// The edits above, and the hostile ones.
fn hostile_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        edit(),
        (
            any::<usize>(),
            prop::sample::select(vec![
                "9223372036854775807",
                "18446744073709551615",
                "-9223372036854775808",
                "-1",
                "0",
            ]),
            any::<bool>(),
        )
            .prop_map(|(at, number, far)| Edit::HugeNumber(at, number, far)),
        any::<usize>().prop_map(Edit::LongLine),
    ]
}

/// Applies `edits` to `text`; the result may well not be UTF-8 any more.
fn mutate(text: &str, edits: &[Edit]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for edit in edits {
        let mut lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        let count = lines.len().max(1);
        match edit {
            Edit::DeleteLine(at) => {
                if !lines.is_empty() {
                    lines.remove(at % count);
                }
                bytes = lines.join(&b'\n');
            }
            Edit::DuplicateLine(at) => {
                if !lines.is_empty() {
                    let line = lines[at % count].clone();
                    lines.insert(at % count, line);
                }
                bytes = lines.join(&b'\n');
            }
            Edit::SwapLines(a, b) => {
                if !lines.is_empty() {
                    lines.swap(a % count, b % count);
                }
                bytes = lines.join(&b'\n');
            }
            Edit::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            Edit::Overwrite(at, new) => {
                let at = at % (bytes.len() + 1);
                let end = (at + new.len()).min(bytes.len());
                bytes.splice(at..end, new.iter().copied());
            }
            Edit::HugeNumber(at, number, far) => {
                let at = at % (bytes.len() + 1);
                if let Some(start) = bytes[at..].iter().position(u8::is_ascii_digit) {
                    let start = at + start;
                    let length = bytes[start..]
                        .iter()
                        .take_while(|byte| byte.is_ascii_digit())
                        .count();
                    let padding = if *far { 70_000 } else { 0 };
                    let replacement = " ".repeat(padding) + number;
                    bytes.splice(start..start + length, replacement.bytes());
                }
            }
            Edit::LongLine(at) => {
                if !lines.is_empty() {
                    let line = &mut lines[at % count];
                    let copy = line.clone();
                    while line.len() <= 70_000 && !copy.is_empty() {
                        line.extend_from_slice(&copy);
                    }
                }
                bytes = lines.join(&b'\n');
            }
        }
    }
    bytes
}

/// Any JSON value, small enough to build quickly.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "\\PC{0,12}".prop_map(serde_json::Value::from),
        prop::sample::select(vec![
            "id",
            "name",
            "properties",
            "status",
            "error",
            "code",
            "Succeeded",
            "Failed",
            "InProgress",
            "/subscriptions/s/resourceGroups/g",
        ])
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "id",
                    "name",
                    "location",
                    "properties",
                    "status",
                    "error",
                    "code",
                    "message",
                    "details",
                    "dataDisks",
                    "storageProfile",
                    "managedDisk",
                    "lun",
                    "provisioningState",
                    "format_version",
                    "observations",
                    "plan",
                    "steps",
                    "x",
                ]),
                inner,
                0..6,
            )
            .prop_map(|map| {
                serde_json::Value::Object(
                    map.into_iter()
                        .map(|(key, value)| (key.to_owned(), value))
                        .collect(),
                )
            }),
        ]
    })
}

/// Every reader of ARM's JSON: errors are typed, never panics.
fn read_arm_json(bytes: &[u8]) {
    let _ = serde_json::from_slice::<ResourceGroup>(bytes);
    let _ = serde_json::from_slice::<VirtualNetwork>(bytes);
    let _ = serde_json::from_slice::<PublicIpAddress>(bytes);
    let _ = serde_json::from_slice::<VirtualMachine>(bytes);
    let _ = serde_json::from_slice::<Disk>(bytes);
    let _ = serde_json::from_slice::<ManagedCluster>(bytes);
    let _ = serde_json::from_slice::<AsyncOperationStatus>(bytes);
    let _ = serde_json::from_slice::<ArmErrorResponse>(bytes);
    let _ = serde_json::from_slice::<PendingOperation>(bytes);
}

/// Every reader of ferry's own files.
fn read_ferry_files(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = serde_json::from_slice::<Snapshot>(bytes);
    let _ = SavedPlan::from_json(&text);
    let _ = StateFile::from_json(&text, Path::new("state.json"));
    let _ = World::from_json(&text, &ferry_providers::rule_book());
    let _ = serde_json::from_slice::<ferry_core::Plan>(bytes);
    let _ = ferry_state::journal::parse_records(&text, Path::new("journal.jsonl"));
}

/// What `ferry plan` does with a spec that loads: plan it against the failover's readings and
/// render every view; what `ferry validate` does with one that does not: render the problems.
fn load_plan_and_render(file: usize, text: String) {
    let root = repository().join("specs/data100");
    let mut sources: Vec<(PathBuf, String)> = SPEC_FILES
        .iter()
        .map(|name| (root.join(name), read(&format!("specs/data100/{name}"))))
        .collect();
    sources[file].1 = text;
    let rules = ferry_providers::rule_book();
    match load_sources(&root, sources, &LoadOptions::default(), &rules) {
        Ok(spec) => {
            let snapshot: Snapshot =
                serde_json::from_str(&read("specs/data100/observed-apiserver-down.json")).unwrap();
            if let Ok(plan) =
                ferry_plan::plan(&spec, &snapshot, &rules, &ferry_plan::PlanConfig::default())
            {
                render_plan(&plan);
            }
        }
        Err(errors) => {
            let _ = errors.render(false);
            let _ = errors.render(true);
        }
    }
}

/// Every view of a plan: text (both colours), JSON, DOT and the timeline.
fn render_plan(plan: &ferry_core::Plan) {
    use ferry_plan::render;
    let _ = render::text(plan, &render::TextOptions { color: false });
    let _ = render::text(plan, &render::TextOptions { color: true });
    let _ = render::json(plan);
    let _ = render::plan_dot(plan);
    let bars = render::estimated_bars(plan);
    let _ = render::timeline_svg(plan, &bars, "fuzz");
}

fn zfs_parsers(text: &str) {
    let _ = ferry_zfs::parse::parse_pool_list("zpool list", text);
    let _ = ferry_zfs::parse::parse_status("zpool status", text);
    let _ = ferry_zfs::parse::parse_import_listing("zpool import", text);
    let _ = ferry_zfs::parse::parse_dataset_list("zfs list", text);
}

const SPEC_FILES: [&str; 4] = ["main.toml", "azure.toml", "service.toml", "storage.toml"];

fn load_data100_with(file: usize, text: String) -> Result<(), String> {
    let root = repository().join("specs/data100");
    let mut sources: Vec<(PathBuf, String)> = SPEC_FILES
        .iter()
        .map(|name| (root.join(name), read(&format!("specs/data100/{name}"))))
        .collect();
    sources[file].1 = text;
    load_sources(
        &root,
        sources,
        &LoadOptions::default(),
        &ferry_providers::rule_book(),
    )
    .map(|_| ())
    .map_err(|errors| errors.render(false))
}

/// A saved plan of the data100 failover, as `ferry plan -o` writes it.
fn saved_failover() -> String {
    let rules = ferry_providers::rule_book();
    let root = repository().join("specs/data100");
    let spec = ferry_spec::load(&root, &LoadOptions::default(), &rules).unwrap();
    let snapshot: Snapshot =
        serde_json::from_str(&read("specs/data100/observed-apiserver-down.json")).unwrap();
    let plan =
        ferry_plan::plan(&spec, &snapshot, &rules, &ferry_plan::PlanConfig::default()).unwrap();
    SavedPlan::new(&spec.deployment.name, plan, &snapshot).to_json()
}

#[test]
fn a_resource_id_ending_at_providers_is_refused_not_a_panic() {
    // Found by the property below: `type_name_pairs` sliced past the end of the segments.
    for text in [
        "/subscriptions/s/resourceGroups/g/providers",
        "/subscriptions/s/resourceGroups/g/providers/",
    ] {
        assert!(ResourceId::parse(text).is_err(), "{text}");
    }
    let id =
        ResourceId::parse("/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute").unwrap();
    assert!(id.type_name_pairs().is_empty());
}

#[test]
fn the_unmutated_inputs_are_read() {
    load_data100_with(0, read("specs/data100/main.toml")).unwrap();
    assert!(SavedPlan::from_json(&saved_failover()).is_ok());
    for captured in [
        "list-online.txt",
        "status-mirror-online.txt",
        "datasets.txt",
    ] {
        let text = read(&format!("crates/ferry-zfs/src/parse/captured/{captured}"));
        assert!(
            ferry_zfs::parse::parse_pool_list("zpool list", &text).is_ok()
                || ferry_zfs::parse::parse_status("zpool status", &text).is_ok()
                || ferry_zfs::parse::parse_dataset_list("zfs list", &text).is_ok(),
            "{captured}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_damaged_data100_file_is_refused_with_rendered_problems(
        file in 0..SPEC_FILES.len(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let original = read(&format!("specs/data100/{}", SPEC_FILES[file]));
        let text = String::from_utf8_lossy(&mutate(&original, &edits)).into_owned();
        if let Err(rendered) = load_data100_with(file, text) {
            prop_assert!(rendered.contains("problem"), "{rendered}");
        }
    }

    #[test]
    fn arm_models_take_any_json_value_without_panicking(value in json_value()) {
        read_arm_json(value.to_string().as_bytes());
    }

    #[test]
    fn arm_models_take_any_bytes_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
        read_arm_json(&bytes);
    }

    #[test]
    fn arm_headers_and_ids_take_any_text_without_panicking(text in "\\PC{0,60}") {
        let _ = ferry_arm::error::parse_retry_after(&text);
        let _ = ResourceId::parse(&text);
        let _ = ResourceId::parse(&format!("/subscriptions/s/resourceGroups/g/providers/{text}"));
    }

    #[test]
    fn zfs_parsers_take_damaged_captures_and_any_text_without_panicking(
        captured in prop::sample::select(vec![
            "datasets.txt", "import-listing-degraded.txt", "import-listing-none.txt",
            "import-listing-online.txt", "import-listing-unavail.txt", "list-degraded.txt",
            "list-online.txt", "status-degraded.txt", "status-mirror-online.txt",
            "status-stripe-online.txt",
        ]),
        edits in prop::collection::vec(edit(), 1..4),
        text in "[ -~\\t\\n]{0,200}",
    ) {
        let original = read(&format!("crates/ferry-zfs/src/parse/captured/{captured}"));
        zfs_parsers(&String::from_utf8_lossy(&mutate(&original, &edits)));
        zfs_parsers(&text);
    }

    #[test]
    fn ferry_files_take_damaged_and_arbitrary_input_without_panicking(
        which in 0..3usize,
        edits in prop::collection::vec(edit(), 1..4),
        value in json_value(),
    ) {
        let original = match which {
            0 => read("specs/data100/observed-healthy.json"),
            1 => read("specs/data100/observed-apiserver-down.json"),
            _ => saved_failover(),
        };
        read_ferry_files(&mutate(&original, &edits));
        read_ferry_files(value.to_string().as_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_hostile_data100_file_is_planned_and_rendered_or_refused_without_panicking(
        file in 0..SPEC_FILES.len(),
        edits in prop::collection::vec(hostile_edit(), 1..3),
    ) {
        let original = read(&format!("specs/data100/{}", SPEC_FILES[file]));
        load_plan_and_render(file, String::from_utf8_lossy(&mutate(&original, &edits)).into_owned());
    }

    #[test]
    fn a_hostile_saved_plan_that_reads_is_shown_without_panicking(
        edits in prop::collection::vec(hostile_edit(), 1..3),
    ) {
        let text = String::from_utf8_lossy(&mutate(&saved_failover(), &edits)).into_owned();
        read_ferry_files(text.as_bytes());
        if let Ok(saved) = SavedPlan::from_json(&text) {
            render_plan(&saved.plan);
        }
    }
}
