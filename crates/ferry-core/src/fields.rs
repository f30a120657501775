//! The attribute names that cross the boundary between a provider and the rest of ferry.
//!
//! A provider writes these names (in its kind's schema, its readings and its `simulate`), and
//! another crate reads them by name: the planner's safety checks, the spec's cross-resource
//! checks, `Observation::is_fenced_host`, or another provider (a pool's host reads its VM's
//! address). With each name in one place, renaming one breaks compilation instead of a check
//! that silently stops matching. A name only its own provider reads stays in that provider.
//!
//! Grouped by the kind that writes them; the names are the same in a spec's fields, a step's
//! inputs and an instance's attributes.

/// The attributes that are gauges: readings that move with the clock while nothing in the world
/// changes (a replica's lag grows by a second every second between rounds). A gauge is left out
/// of an observation's fingerprint, so that a saved plan does not go stale by the minute; what
/// depends on one (readiness, a plan's data lost) reads it afresh. Every gauge a provider reads
/// is listed here.
pub const GAUGES: &[&str] = &[zfs_pool::REPLICA_LAG_SECONDS];

/// Whether the attribute `name` is a gauge ([`GAUGES`]).
pub fn is_gauge(name: &str) -> bool {
    GAUGES.contains(&name)
}

/// The tag every resource of a failover drill carries (`ferry-drill = ID`, in `tags`): what
/// its clean-up lists, and what the simulated world reads to give a drill's instances
/// addresses of their own.
pub const DRILL_TAG: &str = "ferry-drill";

/// `[resource_group.NAME]`.
pub mod resource_group {
    /// The Azure name of the group; the spec checks that it contains `${generation}`.
    pub const NAME: &str = "name";
}

/// `[vm.NAME]`.
pub mod vm {
    /// `running`, `stopped`, `deallocated`...: a deallocated VM is fenced.
    pub const POWER_STATE: &str = "power_state";
    /// The private IP address of its network interface, where a pool's NFS export is served.
    pub const PRIVATE_IP: &str = "private_ip";
    /// Its public IP address, when it has one: where a pool's host is reached over SSH.
    pub const PUBLIC_ADDRESS: &str = "public_address";
    /// The Linux admin user, the SSH user a pool's host is reached as by default.
    pub const ADMIN_USERNAME: &str = "admin_username";
    /// Where the guest sees attached data disks, one `lunN` entry per disk.
    pub const DEVICE_FOLDER: &str = "device_folder";
    /// The [`DEVICE_FOLDER`] of an Azure Linux VM (the udev rules of Azure's images), used
    /// when a VM does not say.
    pub const DEFAULT_DEVICE_FOLDER: &str = "/dev/disk/azure/scsi1";
}

/// `[disk.NAME]`.
pub mod disk {
    /// The Azure name of the managed disk.
    pub const NAME: &str = "name";
    /// The resource group the disk is in; a failover's move changes it.
    pub const RESOURCE_GROUP: &str = "resource_group";
    /// The VM the disk is attached to; a failover's detach and attach change it.
    pub const VM: &str = "vm";
    /// The disk's LUN on its VM, which names its device (`lunN`) in the VM's device folder.
    pub const LUN: &str = "lun";
    /// A failover drill's disk: the production disk it is a copy of (its ARM id), set by
    /// `ferry drill` in the drill's spec; the create snapshots that disk, only reading it, and
    /// makes this disk from the snapshot. It steers the create only: never compared.
    pub const COPY_OF: &str = "copy_of";
}

/// `[zfs_pool.NAME]`.
pub mod zfs_pool {
    /// The VM the pool is imported on.
    pub const HOST: &str = "host";
    /// The pool's name in ZFS, when it is not the resource's name.
    pub const POOL_NAME: &str = "pool_name";
    /// The disks that hold the pool's vdevs.
    pub const DISKS: &str = "disks";
    /// An import's input: import with `zpool import -f`.
    pub const FORCE: &str = "force";
    /// A failover drill's pool: the drill's id, set by `ferry drill` in the drill's spec on a
    /// pool whose every disk is a drill's copy (`disk.copy_of`). Its create imports the copy of
    /// production's pool that it finds on those disks instead of refusing it. Never compared.
    pub const DRILL: &str = "drill";
    /// A hot standby's disks (`[failover] standby = "hot"`): the replica pool's, attached to
    /// the standby generation's host.
    pub const REPLICA_DISKS: &str = "replica_disks";
    /// How often a round of replication runs (a snapshot, then an increment to the replica).
    pub const REPLICA_INTERVAL: &str = "replica_interval";
    /// The most the replica may lag behind before failover readiness is lost: the recovery
    /// point objective.
    pub const REPLICA_MAX_LAG: &str = "replica_max_lag";
    /// A replica instance's input when it is seeded: the host of the primary it copies.
    pub const REPLICATE_FROM: &str = "replicate_from";
    /// A promotion's input: the old primary's host, which still answers, hands the pool over
    /// (its shares stopped, a last increment, then it becomes the replica): nothing is lost.
    pub const HAND_OVER_FROM: &str = "hand_over_from";
    /// Read: `primary` or `replica`, only on a pool in a replication.
    pub const REPLICATION_ROLE: &str = "replication_role";
    /// Read on a replica: seconds since the newest snapshot that reached it was taken, on the
    /// primary's clock.
    pub const REPLICA_LAG_SECONDS: &str = "replica_lag_seconds";

    /// A round of replication every minute, unless the spec says otherwise.
    pub const DEFAULT_REPLICA_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

    /// A pool's replication timing, from its fields: the interval between rounds and the most
    /// the replica may lag (twice the interval unless set). `None` for a pool without
    /// `replica_disks`; a duration the spec's checks refused reads as its default.
    pub fn replica_timing(
        attributes: &crate::Attributes,
    ) -> Option<(std::time::Duration, std::time::Duration)> {
        attributes.get(REPLICA_DISKS)?;
        let duration = |field: &str| {
            attributes
                .get(field)
                .and_then(crate::Value::as_str)
                .and_then(|text| humantime::parse_duration(text.trim()).ok())
        };
        let interval = duration(REPLICA_INTERVAL).unwrap_or(DEFAULT_REPLICA_INTERVAL);
        let max_lag = duration(REPLICA_MAX_LAG).unwrap_or(interval * 2);
        Some((interval, max_lag))
    }

    /// Swaps a hot pool's sides in its resolved fields: `disks` becomes `replica_disks` and the
    /// other way round. The replica instance (`zfs_pool.home@g2`) is on the replica's disks,
    /// and after a hot failover the pool itself serves from them (and its replica, once a
    /// failback made one, is on the pool's own).
    pub fn swap_sides(attributes: &mut crate::Attributes) {
        let replica = attributes.remove(REPLICA_DISKS);
        let disks = attributes.remove(DISKS);
        if let Some(replica) = replica {
            attributes.insert(DISKS.to_owned(), replica);
        }
        if let Some(disks) = disks {
            attributes.insert(REPLICA_DISKS.to_owned(), disks);
        }
    }
}

/// `[dns_record.NAME]`.
pub mod dns_record {
    /// The zone the record is in, one of the spec's `[zones]`.
    pub const ZONE: &str = "zone";
}

/// `[static_ip.NAME]`.
pub mod static_ip {
    /// The Azure resource group that holds it: a plain name, outside every generation.
    pub const RESOURCE_GROUP: &str = "resource_group";
    /// The address itself: the same in every generation, which is the point.
    pub const ADDRESS: &str = "address";
    /// The ARM id of the IP configuration that holds the address (a load balancer's frontend,
    /// a network interface's), or null when it is free.
    pub const HELD_BY: &str = "held_by";
    /// `NAMESPACE/NAME` of the Kubernetes Service that asks for the address in each
    /// generation's cluster: a planned failover deletes it in the old cluster, so that the old
    /// cluster's own controller lets go of the address.
    pub const SERVICE: &str = "service";
    /// A detach's input: the old cluster's kubeconfig, to ask its API server first.
    pub const RELEASE_KUBECONFIG: &str = "release_kubeconfig";
}

/// `[hook.NAME]`.
pub mod hook {
    /// The names of the outputs the command prints, each one of the hook's outputs.
    pub const OUTPUTS: &str = "outputs";
}
