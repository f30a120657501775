//! A spec of 10,000 resources loads, with every edge found: no quadratic work, no deep
//! recursion. The timing is printed for a look, not asserted; the benchmark lives elsewhere.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ferry_spec::{LoadOptions, load_sources};

fn large_spec(vms: usize) -> String {
    let mut text = String::from(
        "[deployment]\nname = \"large\"\nlocation = \"westeurope\"\n\n[variables]\nkey = \"ssh-ed25519 AAAA large\"\n\n[resource_group.main]\nname = \"large-g${generation}\"\n\n[vnet.main]\nname = \"large-vnet\"\nresource_group = \"resource_group.main\"\naddress_space = [\"10.0.0.0/16\"]\n",
    );
    for vm in 0..vms {
        let _ = write!(
            text,
            "\n[vm.n{vm}]\nname = \"nfs-{vm}\"\nresource_group = \"resource_group.main\"\nvnet = \"vnet.main\"\nsize = \"Standard_E8s_v5\"\nssh_public_key = \"${{var.key}}\"\n"
        );
        for lun in 0..2 {
            let _ = write!(
                text,
                "\n[disk.d{vm}-{lun}]\nname = \"disk-{vm}-{lun}\"\nresource_group = \"resource_group.main\"\nsize_gb = 128\nvm = \"vm.n{vm}\"\nlun = {lun}\n"
            );
        }
        let _ = write!(
            text,
            "\n[hook.h{vm}]\ncommand = [\"deploy\", \"${{vm.n{vm}.private_ip}}\"]\ndepends_on = [\"disk.d{vm}-0\"{previous}]\n",
            previous = if vm > 0 {
                format!(", \"hook.h{}\"", vm - 1)
            } else {
                String::new()
            }
        );
        let _ = write!(
            text,
            "\n[zfs_pool.p{vm}]\nhost = \"vm.n{vm}\"\ndisks = [\"disk.d{vm}-0\", \"disk.d{vm}-1\"]\n"
        );
    }
    text
}

#[test]
fn ten_thousand_resources_load() {
    let text = large_spec(2_000);
    let started = Instant::now();
    let spec = load_sources(
        Path::new("large"),
        vec![(PathBuf::from("large.toml"), text)],
        &LoadOptions {
            variables: BTreeMap::new(),
            environment: BTreeMap::new(),
        },
        &ferry_providers::rule_book(),
    )
    .map_err(|errors| errors.render(false))
    .unwrap();
    println!(
        "loaded {} resources in {:?}",
        spec.resources.len(),
        started.elapsed()
    );
    assert_eq!(spec.resources.len(), 10_002);
    let last_hook = "hook.h1999".parse().unwrap();
    assert_eq!(spec.dependencies(&last_hook).len(), 3);
}
