//! Every problem a user can write into a spec, with the exact message ferry shows for it.
//!
//! Each test hands a few files to [`check`] and snapshots the rendering: the message, the file,
//! line and column, the underlined text and the help line. Read the diff when one changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferry_spec::{LoadOptions, load_sources};

/// A small valid spec that tests extend or break.
const BASE: &str = r#"[deployment]
name = "demo"
location = "westeurope"

[resource_group.main]
name = "demo-g${generation}"

[vnet.main]
name = "demo-vnet"
resource_group = "resource_group.main"
address_space = ["10.0.0.0/16"]

[vm.nfs]
name = "demo-nfs"
resource_group = "resource_group.main"
vnet = "vnet.main"
size = "Standard_E8s_v5"
ssh_public_key = "ssh-ed25519 AAAA demo"
"#;

fn options(variables: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        variables: variables
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        environment: BTreeMap::from([("FERRY_TSIG_SECRET".to_owned(), "c2VjcmV0".to_owned())]),
    }
}

/// Loads the files and renders what went wrong; "ok" when nothing did.
fn check_with(files: &[(&str, &str)], options: &LoadOptions) -> String {
    let files: Vec<(PathBuf, String)> = files
        .iter()
        .map(|(name, text)| (PathBuf::from(name), text.to_string()))
        .collect();
    match load_sources(
        Path::new("spec"),
        files,
        options,
        &ferry_providers::rule_book(),
    ) {
        Ok(_) => "ok".to_owned(),
        Err(errors) => errors.render(false),
    }
}

fn check(files: &[(&str, &str)]) -> String {
    check_with(files, &options(&[]))
}

#[test]
fn the_base_spec_is_valid() {
    assert_eq!(check(&[("main.toml", BASE)]), "ok");
}

#[test]
fn syntax_errors_are_all_reported_and_other_files_still_checked() {
    insta::assert_snapshot!(check(&[
        ("main.toml", BASE),
        ("twice.toml", "[hook.a]\nshell = \"a\"\nshell = \"b\"\n"),
        (
            "broken.toml",
            "[disk.home0]\nname = \"home0\nsize_gb = = 12\n\n[disk.home1\nname = \"home1\"\n",
        ),
        (
            "other.toml",
            "[public_ip.ingress]\nname = \"ip\"\nresource_group = \"resource_group.main\"\nsku = 3\n"
        ),
    ]));
}

#[test]
fn unknown_blocks_kinds_and_keys_suggest_the_closest() {
    insta::assert_snapshot!(check(&[
        ("main.toml", BASE),
        (
            "more.toml",
            r#"[failovr]
mode = "off"

[virtual_machine.nfs]
name = "x"

[vms.other]
name = "x"

[settings]
color = true

[disk.home0]
name = "home0"
resource_group = "resource_group.main"
size_gb = 100
lnu = 3
flavour = "x"

[state]
backend = "local"
pth = ".ferry"
"#,
        ),
    ]));
}

#[test]
fn wrong_types_missing_fields_and_bad_tables() {
    insta::assert_snapshot!(check(&[
        ("main.toml", BASE),
        (
            "more.toml",
            r#"[disk.home0]
name = "home0"
resource_group = "resource_group.main"
size_gb = "big"
lun = 1.5
vm = "vm.nfs"

[disk.Home1]
name = "home1"

[public_ip]
ingress = 3

[zfs_pool.home]
host = "vm.nfs"
disks = ["disk.home0", 7]
datasets = "staging"

[aks_cluster.hub]
name = "hub"

[check.when]
type = "http"
url = "https://example.org"
interval_seconds = 2024-01-01T00:00:00Z
"#,
        ),
    ]));
}

#[test]
fn duplicate_names_across_files_point_at_both() {
    insta::assert_snapshot!(check(&[
        ("main.toml", BASE),
        (
            "again.toml",
            "[vm.nfs]\nname = \"other\"\n\n[deployment]\nname = \"again\"\nlocation = \"x\"\n\n[variables]\nsize = 1\n",
        ),
        ("third.toml", "[variables]\nsize = 2\n"),
    ]));
}

#[test]
fn references_must_name_existing_resources_of_the_right_kind() {
    insta::assert_snapshot!(check(&[
        ("main.toml", BASE),
        (
            "more.toml",
            r#"[disk.home0]
name = "home0"
resource_group = "resource_group.main"
size_gb = 100
vm = "vm.nfz"
lun = 0

[disk.home1]
name = "home1"
resource_group = "vnet.main"
size_gb = 100
vm = "nfs"
lun = 1

[zfs_pool.home]
host = "vm.nfs"
disks = ["disk.home0", "disk.home2"]
depends_on = ["hook.setup", "vm.nfs"]
"#,
        ),
    ]));
}

#[test]
fn interpolations_must_name_existing_resources_and_outputs() {
    insta::assert_snapshot!(check(&[
        ("main.toml", BASE),
        (
            "hooks.toml",
            r#"[public_ip.ingress]
name = "ingress"
resource_group = "resource_group.main"

[hook.deploy]
command = ["deploy", "${public_ip.ingres.address}", "--ip=${public_ip.ingress.adress}"]
outputs = ["url"]

[hook.after]
shell = "echo ${hook.deploy.url} ${hook.deploy.urls} ${vm.nfs.private_ip}"
env = { A = "${vm.nfs.nothing}", B = "${check.ready.status}", C = "${disk.home.id}" }

[check.ready]
type = "http"
url = "${hook.deploy.url"
expect_status = 200

[hook.odd]
command = ["x", "${vm.nfs}", "${virtual.nfs.ip}", "$${literal} is fine"]
"#,
        ),
    ]));
}

#[test]
fn cycles_name_every_resource_in_order() {
    insta::assert_snapshot!(check(&[
        ("main.toml", BASE),
        (
            "cycle.toml",
            r#"[hook.a]
command = ["a", "${hook.b.exit_code}"]

[hook.b]
command = ["b"]
depends_on = ["hook.c"]

[hook.c]
shell = "c"
env = { A = "${hook.a.exit_code}" }

[hook.self]
command = ["s"]
depends_on = ["hook.self"]
"#,
        ),
    ]));
}

#[test]
fn kind_validation_points_at_the_offending_value() {
    insta::assert_snapshot!(check(&[
        ("main.toml", BASE),
        (
            "more.toml",
            r#"[vm.web]
name = "_web"
resource_group = "resource_group.main"
vnet = "vnet.main"
size = "Standard_E8s_v6"
ssh_public_key = "not a key"

[disk.home0]
name = "home 0"
resource_group = "resource_group.main"
size_gb = 100000

[zfs_pool.home]
host = "vm.nfs"
disks = []

[zfs_pool.home.datasets]
prod = { mountpoint = "/export/prod", quota = "3T", colour = "blue" }

[hook.nothing]
retry = true

[vnet.second]
name = "second"
resource_group = "resource_group.main"
address_space = ["10.1.0.0/16", "10.2.0.0"]
"#,
        ),
    ]));
}

#[test]
fn undefined_variables_and_environment() {
    insta::assert_snapshot!(check(&[
        ("main.toml", BASE),
        (
            "more.toml",
            r#"[variables]
domain = "example.org"
home = "${env.HOME_FOLDER}"
nested = "${var.domain}"

[hook.deploy]
command = ["deploy", "hub.${var.domian}", "${var.region}"]
env = { TOKEN = "${env.DEPLOY_TOKEN}", SECRET = "${env.FERRY_TSIG_SECRET}" }
"#,
        ),
    ]));
}

#[test]
fn failover_policy_zones_luns_and_destroy() {
    insta::assert_snapshot!(check(&[
        ("main.toml", &BASE.replace("demo-g${generation}", "demo-rg"),),
        (
            "policy.toml",
            r#"[failover]
mode = "automatic"
triggers = ["disk.home0", "aks_cluster.hub", "vm.nfs", "nfs"]

[zones."example.org"]
backend = "rfc2136"
server = "127.0.0.1:53"
tsig_key_name = "ferry"
tsig_secret_env = "FERRY_TSIG_SECRET"

[zones."example.com"]
backend = "rfc2136"
server = "127.0.0.1:53"
tsig_key_name = "ferry"
tsig_algorithm = "sha256"

[zones."example.net"]
backend = "route53"

[dns_record.hub]
zone = "exmaple.org"
name = "hub"
type = "A"
values = ["127.0.0.1"]

[disk.home0]
name = "home0"
resource_group = "resource_group.main"
size_gb = 100
vm = "vm.nfs"
lun = 0
ensure = "absent"

[disk.home1]
name = "home1"
resource_group = "resource_group.main"
size_gb = 100
vm = "vm.nfs"
lun = 1

[disk.home2]
name = "home2"
resource_group = "resource_group.main"
size_gb = 100
vm = "vm.nfs"
lun = 1

[disk.home3]
name = "home3"
resource_group = "resource_group.main"
size_gb = 100
ensure = "gone"

[hook.old]
command = ["x"]
allow_destroy = true
"#,
        ),
    ]));
}

#[test]
fn failover_off_allows_fixed_group_names_and_a_destroy_with_both_keys() {
    let spec = BASE.replace("demo-g${generation}", "demo-rg");
    assert_eq!(
        check(&[
            ("main.toml", &spec),
            (
                "more.toml",
                "[failover]\nmode = \"off\"\n\n[disk.old]\nname = \"old\"\nresource_group = \"resource_group.main\"\nsize_gb = 8\nensure = \"absent\"\nallow_destroy = true\n",
            ),
        ]),
        "ok"
    );
}

#[test]
fn var_overrides_must_be_declared() {
    insta::assert_snapshot!(check_with(
        &[
            ("main.toml", BASE),
            (
                "vars.toml",
                "[variables]\ndomain = \"example.org\"\nreplicas = 2\n"
            ),
        ],
        &options(&[("domian", "x"), ("zone", "y"), ("domain", "example.com")]),
    ));
}

#[test]
fn var_overrides_are_substituted_whole_or_inside_strings() {
    let files = [
        (
            "main.toml",
            BASE.replace("\"Standard_E8s_v5\"", "\"${var.size}\""),
        ),
        (
            "vars.toml",
            "[variables]\nsize = \"Standard_B2s\"\ndisk_size = 100\n\n[disk.d]\nname = \"d-${var.size}\"\nresource_group = \"resource_group.main\"\nsize_gb = \"${var.disk_size}\"\n".to_owned(),
        ),
    ];
    let files: Vec<(PathBuf, String)> = files
        .into_iter()
        .map(|(name, text)| (PathBuf::from(name), text))
        .collect();
    let spec = load_sources(
        Path::new("spec"),
        files,
        &options(&[("size", "Standard_D4s_v5"), ("disk_size", "200")]),
        &ferry_providers::rule_book(),
    )
    .map_err(|errors| errors.render(false))
    .unwrap();
    let vm = &spec.resources[&"vm.nfs".parse().unwrap()];
    assert_eq!(vm.str_field("size"), Some("Standard_D4s_v5"));
    let disk = &spec.resources[&"disk.d".parse().unwrap()];
    assert_eq!(disk.field("size_gb"), Some(&serde_json::json!(200)));
    assert_eq!(disk.str_field("name"), Some("d-Standard_D4s_v5"));
    assert_eq!(spec.variables["disk_size"], serde_json::json!(200));
}

#[test]
fn blocks_are_checked_too() {
    insta::assert_snapshot!(check(&[(
        "main.toml",
        r#"[deployment]
name = 5
region = "westeurope"

[failover]
mode = "sometimes"

[state]
backend = "azure_blob"
account = "ferrystate"

[zones]
"example.org" = "rfc2136"

[resource_group.main]
name = "rg-${generation}-${vm.nfs.name}"
"#,
    )]));
}

#[test]
fn limits_name_kinds_and_stay_in_range() {
    insta::assert_snapshot!(check(&[(
        "main.toml",
        r#"[deployment]
name = "demo"
location = "westeurope"

[limits]
hook = 0
vm = 1001
hok = 16
fleet = 3
disk = "many"
zfs_pool = 2
"#,
    )]));
}

#[test]
fn limits_are_read_per_kind_and_leave_the_others_to_their_providers() {
    let files = vec![(
        PathBuf::from("main.toml"),
        format!("{BASE}\n[limits]\nhook = 16\nvm = 1\n"),
    )];
    let spec = load_sources(
        Path::new("spec"),
        files,
        &options(&[]),
        &ferry_providers::rule_book(),
    )
    .unwrap();
    assert_eq!(
        spec.limits,
        BTreeMap::from([(ferry_core::Kind::Vm, 1), (ferry_core::Kind::Hook, 16)])
    );
    let without = load_sources(
        Path::new("spec"),
        vec![(PathBuf::from("main.toml"), BASE.to_owned())],
        &options(&[]),
        &ferry_providers::rule_book(),
    )
    .unwrap();
    assert!(without.limits.is_empty());
}

#[test]
fn a_spec_without_a_deployment_says_so() {
    insta::assert_snapshot!(check(&[("main.toml", "# nothing yet\n")]));
}

#[test]
fn odd_shapes_and_meta_keys_of_the_wrong_type() {
    insta::assert_snapshot!(check(&[
        (
            "main.toml",
            &BASE.replace("name = \"demo\"", "name = \"demo-${vm.nfs.id}\"")
        ),
        (
            "odd.toml",
            r#"variables = 3
public_ip = "ingress"

[[check.ready]]
type = "http"

[disk.home0]
name = "home0"
resource_group = "resource_group.main"
size_gb = 99999999999999999999
depends_on = "vm.nfs"
allow_destroy = "yes"
ensure = false

[disk.home1]
name = "home1"
resource_group = "resource_group.main"
size_gb = 10
depends_on = [3, "vm..nfs"]

[zones."example.org"]
server = "127.0.0.1:53"

[zones."example.com"]
backend = "azure"
"#,
        ),
    ]));
}

#[test]
fn loading_a_folder_reads_its_toml_files_in_name_order() {
    let folder = tempfile::tempdir().unwrap();
    let rules = ferry_providers::rule_book();
    let empty = ferry_spec::load(folder.path(), &options(&[]), &rules).unwrap_err();
    assert_eq!(
        empty
            .render(false)
            .replace(&folder.path().display().to_string(), "FOLDER"),
        "  × FOLDER holds no .toml files\n  help: point ferry at a folder of spec files, such as specs/data100\nerror: 1 problem in the spec\n"
    );
    std::fs::write(folder.path().join("b.toml"), "[vm.nfs]\nname = \"again\"\n").unwrap();
    std::fs::write(folder.path().join("a.toml"), BASE).unwrap();
    std::fs::write(folder.path().join("notes.txt"), "[not toml").unwrap();
    let errors = ferry_spec::load(folder.path(), &options(&[]), &rules).unwrap_err();
    let duplicate = errors.iter().next().unwrap();
    assert_eq!(
        duplicate.location().unwrap(),
        format!("{}:1:1", folder.path().join("b.toml").display())
    );
    std::fs::remove_file(folder.path().join("b.toml")).unwrap();
    let spec = ferry_spec::load(&folder.path().join("a.toml"), &options(&[]), &rules).unwrap();
    assert_eq!(spec.root, folder.path());
    assert_eq!(
        spec.location_of(&"vm.nfs".parse().unwrap()).unwrap(),
        format!("{}:13:1", folder.path().join("a.toml").display())
    );
    let missing =
        ferry_spec::load(&folder.path().join("none.toml"), &options(&[]), &rules).unwrap_err();
    assert!(missing.render(false).contains("cannot read"));
}

#[test]
fn values_from_the_environment_never_show_in_errors_and_hooks_never_get_ferrys_credentials() {
    let mut options = options(&[]);
    options.environment.insert(
        "HUB_URL".to_owned(),
        "ftp://hub-secret-host.example.org".to_owned(),
    );
    let rendered = check_with(
        &[
            ("main.toml", BASE),
            (
                "hooks.toml",
                r#"[check.hub]
type = "http"
url = "${env.HUB_URL}"

[hook.deploy]
command = ["deploy"]
pass_env = ["HTTPS_PROXY", "AZURE_CLIENT_SECRET", "FERRY_ARM_TOKEN", "A=B"]

[hook.copied_from_a_plan]
command = ["deploy"]
env = { TOKEN = "${env.HUB_URL@sha256:1a2b3c4d}" }
"#,
            ),
        ],
        &options,
    );
    assert!(!rendered.contains("hub-secret-host"), "{rendered}");
    insta::assert_snapshot!(rendered);
}

#[test]
fn a_watch_quorum_needs_a_shared_state_and_stays_within_its_range() {
    let local = format!("{BASE}\n[watch]\nquorum = 2\n");
    let too_many = format!("{BASE}\n[watch]\nquorum = 10\n");
    insta::assert_snapshot!(format!(
        "{}\n{}",
        check(&[("main.toml", &local)]),
        check(&[("main.toml", &too_many)])
    ));
    let shared = format!(
        "{BASE}\n[state]\nbackend = \"azure_blob\"\naccount = \"ferrystate\"\ncontainer = \"ferry\"\nblob = \"demo/state.json\"\n\n[watch]\nquorum = 3\n"
    );
    let spec = load_sources(
        Path::new("spec"),
        vec![(PathBuf::from("main.toml"), shared)],
        &options(&[]),
        &ferry_providers::rule_book(),
    )
    .unwrap_or_else(|errors| panic!("{}", errors.render(false)));
    assert_eq!(spec.watch.quorum, 3);
    let without = load_sources(
        Path::new("spec"),
        vec![(PathBuf::from("main.toml"), BASE.to_owned())],
        &options(&[]),
        &ferry_providers::rule_book(),
    )
    .unwrap_or_else(|errors| panic!("{}", errors.render(false)));
    assert_eq!(without.watch.quorum, 1, "the leader alone by default");
}

/// A hook marked `standby = true` runs in the standby generation, before the data is there:
/// one that needs the pool (directly, or through a hook that is not a standby's) is refused at
/// the field, whatever `[failover] standby` says, so that turning the spec warm later holds no
/// surprise; and the standby's own choice is checked like the failover mode.
#[test]
fn a_standby_hook_may_need_only_what_the_standby_builds() {
    let spec = format!(
        r#"{BASE}
[failover]
standby = "tepid"

[disk.d0]
name = "d0"
resource_group = "resource_group.main"
size_gb = 10
vm = "vm.nfs"
lun = 0

[zfs_pool.home]
pool_name = "home"
host = "vm.nfs"
disks = ["disk.d0"]
ssh_user = "azureuser"
known_hosts = "~/.ssh/known_hosts"

[hook.idle]
command = ["deploy", "--idle"]
env = {{ HOST = "${{vm.nfs.private_ip}}" }}
standby = true

[hook.mount]
command = ["deploy", "--mount", "${{zfs_pool.home.nfs_export}}"]
standby = true

[hook.active]
command = ["deploy", "--activate"]
depends_on = ["zfs_pool.home"]

[hook.after_active]
command = ["deploy", "--after"]
depends_on = ["hook.active", "hook.idle"]
standby = true
"#
    );
    insta::assert_snapshot!(check(&[("main.toml", &spec)]));
}

/// A hot standby keeps a replica of every pool on disks of its own: each mistake in how the
/// replica is written is refused at its field, with the fix.
#[test]
fn a_hot_standbys_replica_is_checked_across_resources() {
    let disks = |prefix: &str, size: u32, vm: &str| -> String {
        (0..2)
            .map(|index| {
                format!(
                    "[disk.{prefix}{index}]\nname = \"{prefix}{index}\"\nresource_group = \"resource_group.main\"\nsize_gb = {size}\nvm = \"{vm}\"\nlun = {}\n\n",
                    index + if prefix == "d" { 0 } else { 2 }
                )
            })
            .collect()
    };
    let pool = |replica: &str| {
        format!(
            "[zfs_pool.home]\npool_name = \"home\"\nhost = \"vm.nfs\"\ndisks = [\"disk.d0\", \"disk.d1\"]\nssh_user = \"azureuser\"\n{replica}\n"
        )
    };
    let other_vm = r#"
[vm.other]
name = "demo-other"
resource_group = "resource_group.main"
vnet = "vnet.main"
size = "Standard_E8s_v5"
ssh_public_key = "ssh-ed25519 AAAA demo"
"#;
    let hot = "[failover]\nstandby = \"hot\"\n\n";
    let warm = "[failover]\nstandby = \"warm\"\n\n";
    let cases = [
        (
            "a hot standby, and a pool with no replica",
            format!("{BASE}{hot}{}{}", disks("d", 10, "vm.nfs"), pool("")),
        ),
        (
            "a replica, and a warm standby",
            format!(
                "{BASE}{warm}{}{}{}",
                disks("d", 10, "vm.nfs"),
                disks("r", 10, "vm.nfs"),
                pool("replica_disks = [\"disk.r0\", \"disk.r1\"]")
            ),
        ),
        (
            "replica disks that are smaller, on another VM, or the pool's own",
            format!(
                "{BASE}{other_vm}{hot}{}{}{}",
                disks("d", 10, "vm.nfs"),
                disks("r", 5, "vm.other"),
                pool("replica_disks = [\"disk.r0\", \"disk.d1\"]")
            ),
        ),
        (
            "a count, an interval and a lag that do not fit",
            format!(
                "{BASE}{hot}{}{}{}",
                disks("d", 10, "vm.nfs"),
                disks("r", 10, "vm.nfs"),
                pool(
                    "replica_disks = [\"disk.r0\"]\nreplica_interval = \"5s\"\nreplica_max_lag = \"soon\""
                )
            ),
        ),
        (
            "a lag shorter than the interval, and timing without a replica",
            format!(
                "{BASE}{hot}{}{}{}[zfs_pool.scratch]\nhost = \"vm.nfs\"\ndisks = [\"disk.s0\"]\nreplica_interval = \"1m\"\n\n[disk.s0]\nname = \"s0\"\nresource_group = \"resource_group.main\"\nsize_gb = 10\nvm = \"vm.nfs\"\nlun = 5\n",
                disks("d", 10, "vm.nfs"),
                disks("r", 10, "vm.nfs"),
                pool(
                    "replica_disks = [\"disk.r0\", \"disk.r1\"]\nreplica_interval = \"2m\"\nreplica_max_lag = \"1m\""
                )
            ),
        ),
        (
            "a replica, and failover off",
            format!(
                "{BASE}[failover]\nmode = \"off\"\nstandby = \"hot\"\n\n{}{}{}",
                disks("d", 10, "vm.nfs"),
                disks("r", 10, "vm.nfs"),
                pool("replica_disks = [\"disk.r0\", \"disk.r1\"]")
            ),
        ),
        (
            "a hot standby written right",
            format!(
                "{BASE}{hot}{}{}{}",
                disks("d", 10, "vm.nfs"),
                disks("r", 20, "vm.nfs"),
                pool(
                    "replica_disks = [\"disk.r0\", \"disk.r1\"]\nreplica_interval = \"30s\"\nreplica_max_lag = \"1m\""
                )
            ),
        ),
    ];
    let shown: Vec<String> = cases
        .iter()
        .map(|(case, spec)| format!("## {case}\n{}", check(&[("main.toml", spec)])))
        .collect();
    insta::assert_snapshot!(shown.join("\n"));
}
