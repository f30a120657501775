//! The data100 deployment against these servers: the `--var` settings that point its spec at
//! them, and the users' files a failover must carry, with checksums taken by `sha256sum`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Bind, DemoCa, ServerError, SshAccess, create_folder, need, run, write};

/// SHA-256 of each file, by `sha256sum`: a check made by a tool that is not ferry.
pub fn checksums(files: &[PathBuf]) -> Result<BTreeMap<PathBuf, String>, ServerError> {
    let mut sums = BTreeMap::new();
    if files.is_empty() {
        return Ok(sums);
    }
    let sha256sum = need("sha256sum", "coreutils")?;
    let output = run("sha256sum", Command::new(sha256sum).args(files))?;
    for line in output.lines() {
        if let Some((sum, path)) = line.split_once("  ") {
            sums.insert(PathBuf::from(path), sum.to_owned());
        }
    }
    Ok(sums)
}

/// Writes `count` files of varied content and size below `folder` (a user's home
/// directory), and returns their paths.
pub fn write_home_files(
    folder: &Path,
    user: &str,
    count: usize,
) -> Result<Vec<PathBuf>, ServerError> {
    let home = folder.join(user);
    create_folder("files", &home)?;
    let mut paths = Vec::new();
    for index in 0..count {
        let path = home.join(format!("notebook-{index}.ipynb"));
        // Varied sizes, some spanning several ZFS records, so that a bad move shows.
        let line = format!(
            "{{\"cell\": {index}, \"user\": \"{user}\", \"source\": \"print({index} * 7)\"}}\n"
        );
        let text = line.repeat(1 + index * 997 % 5000);
        write("files", &path, &text)?;
        paths.push(path);
    }
    Ok(paths)
}

/// The `--var` settings that point the data100 spec at these servers: the hub stand-in
/// (`hooks/demo-hub.sh` in `spec_folder`, absolute, since ferry-hook starts a relative program
/// from ferry's own folder), sshd's port, keys and known_hosts, BIND and its TSIG key, and
/// the demo CA for the TLS check.
pub fn data100_variables(
    spec_folder: &Path,
    sshd: &SshAccess,
    bind: &Bind,
    ca: &DemoCa,
) -> Vec<String> {
    vec![
        format!(
            "hub_deployer={}",
            spec_folder.join("hooks/demo-hub.sh").display()
        ),
        format!("admin_ssh_key={}", sshd.user_public_key),
        "nfs_ssh_user=root".into(),
        format!("nfs_ssh_port={}", sshd.port),
        format!("nfs_known_hosts={}", sshd.known_hosts.display()),
        format!("nfs_ssh_key_file={}", sshd.user_key.display()),
        format!("dns_server={}", bind.server()),
        format!("tsig_key_file={}", bind.key_file.display()),
        format!("tls_ca_file={}", ca.ca_file.display()),
        // No NFS server here: zfs-fuse cannot export, and the hub stand-in reads the mounted
        // datasets directly.
        "nfs_share=off".into(),
    ]
}
