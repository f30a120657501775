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
}

/// `[dns_record.NAME]`.
pub mod dns_record {
    /// The zone the record is in, one of the spec's `[zones]`.
    pub const ZONE: &str = "zone";
}

/// `[hook.NAME]`.
pub mod hook {
    /// The names of the outputs the command prints, each one of the hook's outputs.
    pub const OUTPUTS: &str = "outputs";
}
