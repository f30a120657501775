//! Synthetic specs of any size, for property tests and benchmarks.

use std::fmt::Write;

/// A spec of about `resources` resources: groups of a resource group, a virtual network, a
/// VM, disks attached to it, and hooks that use their outputs, the shape of data100 repeated.
/// `seed` varies the shape (how many disks, which hooks depend on which).
pub fn spec_text(resources: usize, seed: u64) -> String {
    let mut random = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move |bound: u64| {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random % bound.max(1)
    };
    let mut text = String::from(
        "[deployment]\nname = \"synthetic\"\nlocation = \"westeurope\"\n\n[failover]\nmode = \"manual\"\n\n",
    );
    let mut made = 0;
    let mut group = 0;
    while made < resources {
        let _ = write!(
            text,
            "[resource_group.g{group}]\nname = \"synthetic-{group}-g${{generation}}\"\n\n\
             [vnet.n{group}]\nname = \"vnet-{group}\"\nresource_group = \"resource_group.g{group}\"\naddress_space = [\"10.{}.0.0/16\"]\n\n\
             [vm.v{group}]\nname = \"vm-{group}\"\nresource_group = \"resource_group.g{group}\"\nvnet = \"vnet.n{group}\"\nsize = \"Standard_D4s_v5\"\nssh_public_key = \"ssh-ed25519 AAAA test\"\n\n",
            group % 250
        );
        made += 3;
        let disks = 1 + next(4);
        for disk in 0..disks {
            let _ = write!(
                text,
                "[disk.d{group}_{disk}]\nname = \"disk-{group}-{disk}\"\nresource_group = \"resource_group.g{group}\"\nsize_gb = {}\nvm = \"vm.v{group}\"\nlun = {disk}\n\n",
                64 * (1 + next(8))
            );
            made += 1;
        }
        let depends = if group > 0 && next(2) == 0 {
            format!("depends_on = [\"hook.h{}\"]\n", next(group as u64))
        } else {
            String::new()
        };
        let _ = write!(
            text,
            "[hook.h{group}]\ncommand = [\"deploy\", \"{group}\"]\nenv = {{ VM = \"${{vm.v{group}.private_ip}}\", DISK = \"${{disk.d{group}_0.id}}\" }}\n{depends}\n"
        );
        made += 1;
        group += 1;
    }
    text
}
