//! Resource kinds and addresses: `vm.nfs` names a resource in a spec, `vm.nfs@g2` one generation of it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A kind of resource that a spec can declare, as written in TOML table headers (`[vm.nfs]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    ResourceGroup,
    Vnet,
    PublicIp,
    Vm,
    Disk,
    AksCluster,
    ZfsPool,
    DnsRecord,
    StaticIp,
    Hook,
    Check,
}

impl Kind {
    /// Every kind, in the order the spec reference documents them.
    pub const ALL: [Kind; 11] = [
        Kind::ResourceGroup,
        Kind::Vnet,
        Kind::PublicIp,
        Kind::Vm,
        Kind::Disk,
        Kind::AksCluster,
        Kind::ZfsPool,
        Kind::DnsRecord,
        Kind::StaticIp,
        Kind::Hook,
        Kind::Check,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ResourceGroup => "resource_group",
            Kind::Vnet => "vnet",
            Kind::PublicIp => "public_ip",
            Kind::Vm => "vm",
            Kind::Disk => "disk",
            Kind::AksCluster => "aks_cluster",
            Kind::ZfsPool => "zfs_pool",
            Kind::DnsRecord => "dns_record",
            Kind::StaticIp => "static_ip",
            Kind::Hook => "hook",
            Kind::Check => "check",
        }
    }

    /// Stateful resources hold data or identity: a failover moves them, it never recreates them,
    /// and deleting one needs an explicit opt-in in the spec and on the command line.
    pub fn is_stateful(self) -> bool {
        matches!(
            self,
            Kind::Disk | Kind::ZfsPool | Kind::DnsRecord | Kind::StaticIp
        )
    }

    /// Stateful kinds that hold data, as opposed to an identity (a DNS name, a static public
    /// IP address): a standby generation may use an identity ahead of any failover, since it
    /// exists outside every generation, but never data, which is the serving generation's.
    pub fn holds_data(self) -> bool {
        matches!(self, Kind::Disk | Kind::ZfsPool)
    }

    /// Replaceable resources are rebuilt from the spec; a failover creates a new generation of
    /// each of them beside the old one. Checks are neither: they hold nothing.
    pub fn is_replaceable(self) -> bool {
        !self.is_stateful() && self != Kind::Check
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a kind name that ferry does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown resource kind `{0}`")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// The logical address of a resource in a spec: its kind and its name, written `kind.name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceAddress {
    pub kind: Kind,
    pub name: String,
}

impl ResourceAddress {
    pub fn new(kind: Kind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
        }
    }

    /// This resource at one generation (replaceable kinds) or with none (stateful kinds, checks).
    pub fn at(&self, generation: Option<Generation>) -> InstanceAddress {
        InstanceAddress {
            address: self.clone(),
            generation,
        }
    }
}

// Addresses are written piece by piece rather than through `write!`: a plan's text writes
// one or more per step, and the formatting machinery (a `pad` per piece) cost more than the
// text itself. Like `write!` with its own arguments, they ignore a width given to them.
impl fmt::Display for ResourceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.as_str())?;
        f.write_str(".")?;
        f.write_str(&self.name)
    }
}

/// The error for text that is not a `kind.name` address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("`{0}` is not a resource address: write it as kind.name, for example vm.nfs")]
    Shape(String),
    #[error(transparent)]
    Kind(#[from] UnknownKind),
    #[error("`{0}` has a bad generation suffix: write it as kind.name@gN, for example vm.nfs@g2")]
    Generation(String),
}

impl FromStr for ResourceAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = s
            .split_once('.')
            .filter(|(kind, name)| !kind.is_empty() && !name.is_empty() && !name.contains('.'))
            .ok_or_else(|| AddressError::Shape(s.to_owned()))?;
        Ok(Self::new(kind.parse()?, name))
    }
}

impl Serialize for ResourceAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResourceAddress {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A generation of the replaceable resources: 1 for the first build, one more for each failover.
pub type Generation = u32;

/// One real instance of a resource: `vm.nfs@g2` is generation 2 of `vm.nfs`, `disk.home0` has
/// no generation because a stateful resource outlives every generation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceAddress {
    pub address: ResourceAddress,
    pub generation: Option<Generation>,
}

impl InstanceAddress {
    pub fn kind(&self) -> Kind {
        self.address.kind
    }

    /// Writes the address (`vm.nfs@g2`) onto `out`, piece by piece (see `ResourceAddress`'s
    /// `Display`): what `Display` and a step's id write.
    pub fn write_onto(&self, out: &mut impl fmt::Write) -> fmt::Result {
        out.write_str(self.address.kind.as_str())?;
        out.write_str(".")?;
        out.write_str(&self.address.name)?;
        if let Some(generation) = self.generation {
            out.write_str("@g")?;
            out.write_str(Decimal::of(generation.into()).as_str())?;
        }
        Ok(())
    }
}

impl fmt::Display for InstanceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_onto(f)
    }
}

/// A number's decimal digits, written without the formatting machinery: addresses and plans
/// write millions of small numbers (generations, step numbers).
#[derive(Debug, Clone, Copy)]
pub struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    pub fn of(number: u64) -> Self {
        let mut digits = [b'0'; 20];
        let mut start = digits.len();
        let mut rest = number;
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                return Self { digits, start };
            }
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(&self.digits[self.start..]).unwrap_or_default()
    }
}

impl FromStr for InstanceAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('@') {
            None => Ok(s.parse::<ResourceAddress>()?.at(None)),
            Some((address, generation)) => {
                let generation = generation
                    .strip_prefix('g')
                    .and_then(|digits| digits.parse::<Generation>().ok())
                    .filter(|generation| *generation > 0)
                    .ok_or_else(|| AddressError::Generation(s.to_owned()))?;
                Ok(address.parse::<ResourceAddress>()?.at(Some(generation)))
            }
        }
    }
}

impl Serialize for InstanceAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InstanceAddress {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_text() {
        for text in ["vm.nfs", "vm.nfs@g2", "disk.home0", "aks_cluster.hub@g10"] {
            let parsed: InstanceAddress = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn bad_addresses_say_how_to_write_them() {
        let errors: Vec<String> = ["vm", "vm.", "virtual_machine.nfs", "vm.nfs@2", "vm.nfs@g0"]
            .into_iter()
            .map(|text| text.parse::<InstanceAddress>().unwrap_err().to_string())
            .collect();
        assert_eq!(
            errors,
            [
                "`vm` is not a resource address: write it as kind.name, for example vm.nfs",
                "`vm.` is not a resource address: write it as kind.name, for example vm.nfs",
                "unknown resource kind `virtual_machine`",
                "`vm.nfs@2` has a bad generation suffix: write it as kind.name@gN, for example vm.nfs@g2",
                "`vm.nfs@g0` has a bad generation suffix: write it as kind.name@gN, for example vm.nfs@g2",
            ]
        );
    }

    #[test]
    fn stateful_and_replaceable_partition_the_kinds_but_checks() {
        for kind in Kind::ALL {
            assert!(!(kind.is_stateful() && kind.is_replaceable()), "{kind}");
            assert_eq!(kind.as_str().parse::<Kind>().unwrap(), kind);
        }
        assert!(!Kind::Check.is_stateful() && !Kind::Check.is_replaceable());
    }
}
