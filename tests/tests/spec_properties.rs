//! Laws of the loader: printing a loaded spec back to TOML and loading it again gives the same
//! spec, and no input at all, however broken, makes it panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferry_spec::{FailoverMode, LoadOptions, Spec, StateConfig, load_sources};
use proptest::prelude::*;

fn options() -> LoadOptions {
    LoadOptions {
        variables: BTreeMap::new(),
        environment: BTreeMap::from([("HOME_FOLDER".to_owned(), "/home/x".to_owned())]),
    }
}

fn load_one(text: &str) -> Result<Spec, String> {
    load_at(Path::new("spec"), text)
}

fn load_at(root: &Path, text: &str) -> Result<Spec, String> {
    load_sources(
        root,
        vec![(PathBuf::from("spec.toml"), text.to_owned())],
        &options(),
        &ferry_providers::rule_book(),
    )
    .map_err(|errors| errors.render(false))
}

fn toml_value(value: &serde_json::Value) -> toml::Value {
    toml::Value::try_from(value).unwrap()
}

/// Prints a spec as TOML: the resolved fields, so that no variable is needed to read it back.
fn print(spec: &Spec) -> String {
    let mut root = toml::Table::new();
    let mut deployment = toml::Table::new();
    deployment.insert("name".into(), spec.deployment.name.clone().into());
    deployment.insert("location".into(), spec.deployment.location.clone().into());
    if let Some(subscription) = &spec.deployment.subscription {
        deployment.insert("subscription".into(), subscription.clone().into());
    }
    root.insert("deployment".into(), deployment.into());
    let mut failover = toml::Table::new();
    let mode = match spec.failover.mode {
        FailoverMode::Off => "off",
        FailoverMode::Manual => "manual",
        FailoverMode::Automatic => "automatic",
    };
    failover.insert("mode".into(), mode.into());
    let triggers: Vec<toml::Value> = spec
        .failover
        .triggers
        .iter()
        .map(|trigger| trigger.to_string().into())
        .collect();
    failover.insert("triggers".into(), triggers.into());
    root.insert("failover".into(), failover.into());
    if let StateConfig::AzureBlob {
        account,
        container,
        blob,
        endpoint,
        sas_url_env,
        ca_file,
    } = &spec.state
    {
        let mut state = toml::Table::new();
        state.insert("backend".into(), "azure_blob".into());
        state.insert("account".into(), account.clone().into());
        state.insert("container".into(), container.clone().into());
        state.insert("blob".into(), blob.clone().into());
        if let Some(endpoint) = endpoint {
            state.insert("endpoint".into(), endpoint.clone().into());
        }
        if let Some(variable) = sas_url_env {
            state.insert("sas_url_env".into(), variable.clone().into());
        }
        if let Some(path) = ca_file {
            // Absolute once loaded, and an absolute path joined to the spec's folder stays so.
            state.insert("ca_file".into(), path.display().to_string().into());
        }
        root.insert("state".into(), state.into());
    }
    let variables: toml::Table = spec
        .variables
        .iter()
        .map(|(name, value)| (name.clone(), toml_value(value)))
        .collect();
    root.insert("variables".into(), variables.into());
    let zones: toml::Table = spec
        .zones
        .iter()
        .map(|(name, zone)| {
            let zone: toml::Table = zone
                .iter()
                .map(|(key, value)| (key.clone(), toml_value(value)))
                .collect();
            (name.clone(), zone.into())
        })
        .collect();
    root.insert("zones".into(), zones.into());
    for (address, resource) in &spec.resources {
        let mut table: toml::Table = resource
            .fields
            .iter()
            .map(|(key, value)| (key.clone(), toml_value(value)))
            .collect();
        if !resource.depends_on.is_empty() {
            let depends_on: Vec<toml::Value> = resource
                .depends_on
                .iter()
                .map(|target| target.to_string().into())
                .collect();
            table.insert("depends_on".into(), depends_on.into());
        }
        if resource.allow_destroy {
            table.insert("allow_destroy".into(), true.into());
        }
        if resource.ensure == ferry_core::Ensure::Absent {
            table.insert("ensure".into(), "absent".into());
        }
        let kind = root
            .entry(address.kind.as_str())
            .or_insert_with(|| toml::Table::new().into());
        if let toml::Value::Table(kind) = kind {
            kind.insert(address.name.clone(), table.into());
        }
    }
    toml::to_string(&root).unwrap()
}

fn assert_same(first: &Spec, second: &Spec) {
    assert_eq!(first.deployment, second.deployment);
    assert_eq!(first.failover, second.failover);
    assert_eq!(first.state, second.state);
    assert_eq!(first.variables, second.variables);
    assert_eq!(first.zones, second.zones);
    assert_eq!(first.resources, second.resources);
    for address in first.resources.keys() {
        assert_eq!(first.dependencies(address), second.dependencies(address));
    }
}

#[test]
fn data100_round_trips_through_toml() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/data100");
    let first = ferry_spec::load(&folder, &options(), &ferry_providers::rule_book())
        .map_err(|errors| errors.render(false))
        .unwrap();
    let printed = print(&first);
    let second = load_at(&folder, &printed).unwrap();
    assert_same(&first, &second);
}

/// Text for a hook argument: anything printable, with `$`, braces and quotes, but never an
/// expression (`${`), which would have to name something real.
fn argument() -> impl Strategy<Value = String> {
    "[ -~é€\\n\\t]{0,24}".prop_map(|text| text.replace("${", "$ {"))
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,10}"
}

/// A valid spec: a resource group, disks with sizes, and hooks with arbitrary arguments, some
/// reading another hook's exit code or a variable.
fn generated_spec() -> impl Strategy<Value = String> {
    (
        prop::collection::btree_map(name(), (4i64..32_768, prop::option::of(0i64..63)), 0..5),
        prop::collection::btree_map(name(), prop::collection::vec(argument(), 1..4), 1..5),
        argument(),
        prop::bool::ANY,
    )
        .prop_map(|(disks, hooks, variable, automatic)| {
            let mut root = toml::Table::new();
            root.insert(
                "deployment".into(),
                toml::toml! { name = "generated"
                location = "westeurope" }
                .into(),
            );
            let mode = if automatic { "automatic" } else { "off" };
            let mut failover = toml::Table::new();
            failover.insert("mode".into(), mode.into());
            root.insert("failover".into(), failover.into());
            let mut variables = toml::Table::new();
            variables.insert("text".into(), variable.into());
            variables.insert("home".into(), "${env.HOME_FOLDER}/data".into());
            root.insert("variables".into(), variables.into());
            let mut group = toml::Table::new();
            group.insert("name".into(), "rg-g${generation}".into());
            let mut groups = toml::Table::new();
            groups.insert("main".into(), group.into());
            root.insert("resource_group".into(), groups.into());
            let mut disk_tables = toml::Table::new();
            for (name, (size, _)) in &disks {
                let mut disk = toml::Table::new();
                disk.insert("name".into(), format!("d{name}0").into());
                disk.insert("resource_group".into(), "resource_group.main".into());
                disk.insert("size_gb".into(), (*size).into());
                disk_tables.insert(name.clone(), disk.into());
            }
            root.insert("disk".into(), disk_tables.into());
            let mut hook_tables = toml::Table::new();
            let names: Vec<&String> = hooks.keys().collect();
            for (index, (name, arguments)) in hooks.iter().enumerate() {
                let mut command: Vec<toml::Value> =
                    arguments.iter().map(|text| text.clone().into()).collect();
                command.push("${var.text}".into());
                command.push("at ${var.home} with $${literal}".into());
                // Each hook may read the previous one's exit code: a chain, never a cycle.
                if index > 0 {
                    command.push(format!("${{hook.{}.exit_code}}", names[index - 1]).into());
                }
                let mut hook = toml::Table::new();
                hook.insert("command".into(), command.into());
                if let Some(disk) = disks.keys().next() {
                    hook.insert("depends_on".into(), vec![format!("disk.{disk}")].into());
                }
                hook_tables.insert(name.clone(), hook.into());
            }
            root.insert("hook".into(), hook_tables.into());
            toml::to_string(&root).unwrap()
        })
}

/// Small edits of the data100 spec: the kind of broken input a user really writes.
fn mutated_data100() -> impl Strategy<Value = String> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/data100");
    let text: String = ["main.toml", "azure.toml", "service.toml", "storage.toml"]
        .iter()
        .map(|file| std::fs::read_to_string(folder.join(file)).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let length = text.len();
    prop::collection::vec((0..length, "[ -~\\n]{0,3}", 0usize..4), 1..4).prop_map(move |edits| {
        let mut edited = text.clone();
        for (at, insert, remove) in edits {
            let mut at = at.min(edited.len());
            while !edited.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + remove).min(edited.len());
            while !edited.is_char_boundary(end) {
                end += 1;
            }
            edited.replace_range(at..end, &insert);
        }
        edited
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn generated_specs_round_trip(text in generated_spec()) {
        let first = load_one(&text).map_err(|errors| TestCaseError::fail(format!("{errors}\n{text}")))?;
        let printed = print(&first);
        let second = load_one(&printed).map_err(|errors| TestCaseError::fail(format!("{errors}\n{printed}")))?;
        assert_same(&first, &second);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let _ = load_one(&text);
    }

    #[test]
    fn edited_data100_never_panics_and_renders(text in mutated_data100()) {
        if let Err(errors) = load_one(&text) {
            prop_assert!(errors.contains("problem"));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = load_one(&String::from_utf8_lossy(&bytes));
    }
}
