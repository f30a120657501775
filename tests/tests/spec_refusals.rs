//! What `ferry validate` refuses so that it cannot fail later, during a failover (issue 18):
//! numbers outside their real range, storage that ZFS or Azure cannot build, DNS records that
//! are not what they seem, and stateful identities that would change with the generation.
//!
//! Each test snapshots the rendering, as `errors.rs` does: the message, the file, line and
//! column, the underlined text and the help line that says what to do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferry_spec::{LoadOptions, load_sources};

/// A small valid spec with a pool on two disks and a zone, which the tests extend or break.
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

[zones."example.org"]
backend = "rfc2136"
server = "127.0.0.1:53"
tsig_key_name = "ferry"
tsig_secret_env = "FERRY_TSIG_SECRET"
"#;

fn check(files: &[(&str, &str)]) -> String {
    let files: Vec<(PathBuf, String)> = files
        .iter()
        .map(|(name, text)| (PathBuf::from(name), text.to_string()))
        .collect();
    let options = LoadOptions {
        variables: BTreeMap::new(),
        environment: BTreeMap::from([("FERRY_TSIG_SECRET".to_owned(), "c2VjcmV0".to_owned())]),
    };
    match load_sources(
        Path::new("spec"),
        files,
        &options,
        &ferry_providers::rule_book(),
    ) {
        Ok(_) => "ok".to_owned(),
        Err(errors) => errors.render(false),
    }
}

#[test]
fn the_base_spec_is_valid() {
    assert_eq!(check(&[("main.toml", BASE)]), "ok");
}

/// Issue 18: `timeout_seconds = 9223372036854775807` validated, then panicked at apply
/// (`Instant + Duration`) and left the lock behind. Every integer field has a real range.
#[test]
fn every_number_outside_its_range_is_refused_with_the_range() {
    insta::assert_snapshot!(check(&[
        ("main.toml", BASE),
        (
            "numbers.toml",
            r#"[hook.deploy]
shell = "true"
timeout_seconds = 9223372036854775807
estimate_seconds = 18446744073709551615

[check.ready]
type = "tls"
host = "hub.example.org"
port = 0
min_days_valid = -1
interval_seconds = 0
timeout_seconds = 604801

[check.status]
type = "http"
url = "https://hub.example.org"
expect_status = 1000

[disk.home0]
name = "home0"
resource_group = "resource_group.main"
size_gb = 2
vm = "vm.nfs"
lun = 64

[disk.home1]
name = "home1"
resource_group = "resource_group.main"
size_gb = 40000

[zfs_pool.home]
host = "vm.nfs"
disks = ["disk.home0"]
ssh_port = 65536

[dns_record.hub]
zone = "example.org"
name = "hub"
type = "A"
ttl = 0
values = ["10.0.0.1"]

[aks_cluster.hub]
name = "hub"
resource_group = "resource_group.main"
dns_prefix = "hub"
node_count = 0
"#,
        ),
    ]));
}

/// Issue 18: a spec error on a line longer than 65,535 characters panicked inside miette's
/// renderer. The line is cut around the offending text; the message and place stay whole.
#[test]
fn an_error_on_a_line_longer_than_65535_characters_is_rendered() {
    let long = format!(
        "[hook.a]\nshell = \"true\"\nenv = {{ A = \"{}\", B = 3 }}\n",
        "x".repeat(70_000)
    );
    let rendered = check(&[("main.toml", BASE), ("long.toml", &long)]);
    assert!(rendered.contains("long.toml:3:"), "{rendered}");
    assert!(rendered.contains("`env.B` must be a string"), "{rendered}");
    assert!(rendered.len() < 10_000, "{} characters", rendered.len());
    insta::assert_snapshot!(rendered);
}

/// A record's name is relative to its zone; a CNAME is alone and below the apex; an address
/// record holds addresses.
#[test]
fn dns_records_that_are_not_what_they_seem_are_refused() {
    insta::assert_snapshot!(check(&[
        ("main.toml", BASE),
        (
            "dns.toml",
            r#"[dns_record.dotted]
zone = "example.org"
name = "hub."
type = "A"
values = ["10.0.0.1"]

[dns_record.repeated]
zone = "example.org"
name = "hub.example.org"
type = "A"
values = ["10.0.0.1"]

[dns_record.apex]
zone = "example.org"
name = "@"
type = "CNAME"
values = ["hub.example.org.", "other.example.org."]

[dns_record.address]
zone = "example.org"
name = "v6"
type = "AAAA"
values = ["10.0.0.1"]
"#,
        ),
    ]));
}

/// Issue 18, 5(a): a disk named with `${generation}` validated and built generation 1; the
/// failover's plan then failed ("changing name would replace a stateful resource"). Every
/// field that identifies a stateful resource is refused when it changes with the generation,
/// directly or through a replaceable resource's output; a disk's vm and resource group, a
/// pool's host, are meant to move and stay allowed.
#[test]
fn a_stateful_identity_that_changes_with_the_generation_is_refused() {
    insta::assert_snapshot!(check(&[
        ("main.toml", BASE),
        (
            "stateful.toml",
            r#"[disk.home0]
name = "home0-g${generation}"
resource_group = "resource_group.main"
size_gb = 100
vm = "vm.nfs"
lun = 0

[zfs_pool.home]
pool_name = "home${generation}"
host = "vm.nfs"
disks = ["disk.home0"]

[dns_record.hub]
zone = "example.org"
name = "${vm.nfs.name}"
type = "A"
values = ["10.0.0.1"]
"#,
        ),
    ]));
}

/// Storage the spec says and ZFS or Azure cannot build: a disk in two pools, a pool whose host
/// is not its disks' VM, a pool disk on no VM, a mirror of one disk, two pools of one name on
/// one host.
#[test]
fn pools_that_zfs_cannot_build_are_refused() {
    insta::assert_snapshot!(check(&[
        ("main.toml", BASE),
        (
            "storage.toml",
            r#"[vm.other]
name = "demo-other"
resource_group = "resource_group.main"
vnet = "vnet.main"
size = "Standard_E8s_v5"
ssh_public_key = "ssh-ed25519 AAAA demo"

[disk.home0]
name = "home0"
resource_group = "resource_group.main"
size_gb = 100
vm = "vm.nfs"
lun = 0

[disk.home1]
name = "home1"
resource_group = "resource_group.main"
size_gb = 100
vm = "vm.other"
lun = 0

[disk.loose]
name = "loose"
resource_group = "resource_group.main"
size_gb = 100

[zfs_pool.home]
pool_name = "data"
host = "vm.nfs"
disks = ["disk.home0", "disk.home1", "disk.loose"]

[zfs_pool.again]
pool_name = "data"
host = "vm.nfs"
disks = ["disk.home0"]
layout = "mirror"
"#,
        ),
    ]));
}
