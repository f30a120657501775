//! Checks that cross resources: references, outputs, `depends_on`, each kind's own validation,
//! the failover policy, DNS zones, LUNs, the two-key destroy opt-in, and cycles.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use ferry_core::fields;
use ferry_core::provider::{FieldType, OnChange};
use ferry_core::value::{self, Expression, Segment};
use ferry_core::{Attributes, Ensure, Kind, ResourceAddress, Value};
use toml::de::{DeTable, DeValue};

use super::paths::{PathSegment, navigate, parse_path};
use super::resources::Read;
use super::schemas::META_KEYS;
use super::{Loader, place};
use crate::error::{Place, Problem, SpecError};
use crate::suggest::did_you_mean;
use crate::{Dependency, DependencyVia, FailoverMode, FailoverPolicy, graph};

/// The names of the resources of one kind, for "did you mean".
fn names_of(read: &BTreeMap<ResourceAddress, Read>, kind: Kind) -> impl Iterator<Item = &str> {
    read.range(ResourceAddress::new(kind, "")..)
        .take_while(move |(address, _)| address.kind == kind)
        .map(|(address, _)| address.name.as_str())
}

/// "did you mean `vm.nfs`?" among the resources of the address's kind, or how to declare it.
fn missing_help(read: &BTreeMap<ResourceAddress, Read>, address: &ResourceAddress) -> String {
    did_you_mean(&address.name, names_of(read, address.kind))
        .map(|_| {
            let name = crate::suggest::closest(&address.name, names_of(read, address.kind))
                .unwrap_or_default();
            format!("did you mean `{}.{name}`?", address.kind)
        })
        .unwrap_or_else(|| format!("declare it as [{address}], or fix the name"))
}

/// How to write an address, or the address of a resource with that very name.
pub(super) fn address_help(read: &BTreeMap<ResourceAddress, Read>, text: &str) -> String {
    match read.keys().find(|address| address.name == text) {
        Some(address) => format!("did you mean `{address}`?"),
        None => "write it as kind.name, such as vm.nfs".to_owned(),
    }
}

/// The resources in address order, as `read` holds them. A resource's position here is its
/// node in the dependency graph, and finding it by binary search costs fewer comparisons of
/// addresses than the map's lookup (names share long prefixes, a comparison is a `memcmp`).
struct Positions<'r> {
    resources: Vec<(&'r ResourceAddress, &'r Read)>,
}

impl<'r> Positions<'r> {
    fn new(read: &'r BTreeMap<ResourceAddress, Read>) -> Self {
        Self {
            resources: read.iter().collect(),
        }
    }

    fn find(&self, address: &ResourceAddress) -> Option<usize> {
        self.resources
            .binary_search_by(|(candidate, _)| (*candidate).cmp(address))
            .ok()
    }
}

/// One edge of the dependency graph, with where it is written.
struct Edge {
    /// The target's position in [`Positions`].
    to: usize,
    written: Written,
}

/// Where an edge is written: a place, or a reference field whose place is looked up only if
/// the edge is reported (on a cycle), since that reads the file again.
enum Written {
    At(Place),
    Reference {
        field: &'static str,
        index: Option<usize>,
    },
}

impl Loader<'_> {
    pub(super) fn check_across(
        &mut self,
        read: &BTreeMap<ResourceAddress, Read>,
        zones: &BTreeMap<String, Attributes>,
        failover: &mut FailoverPolicy,
        triggers: &[(String, Place)],
    ) -> BTreeMap<ResourceAddress, Vec<Dependency>> {
        // In address order, collected into a map at the end: filled by `insert`, its nodes
        // would be half empty, and it lives as long as the spec.
        let mut dependencies = Vec::with_capacity(read.len());
        let positions = Positions::new(read);
        // Each resource's edges, by its position.
        let mut edges: Vec<Vec<Edge>> = Vec::with_capacity(read.len());
        let mut luns: HashMap<(&str, i64), &ResourceAddress> = HashMap::new();
        for (address, resource) in read {
            let mut found = Vec::new();
            let mut resource_edges = Vec::new();
            self.check_references(read, &positions, resource, &mut found, &mut resource_edges);
            self.check_outputs(read, &positions, resource, &mut found, &mut resource_edges);
            for (target, at) in &resource.depends_on {
                if let Some(to) = positions.find(target) {
                    found.push(Dependency {
                        address: target.clone(),
                        via: DependencyVia::DependsOn,
                    });
                    resource_edges.push(Edge {
                        to,
                        written: Written::At(at.clone()),
                    });
                } else {
                    self.push(
                        SpecError::new(
                            Problem::UnknownResource {
                                address: target.to_string(),
                            },
                            Some(at.clone()),
                        )
                        .help(missing_help(read, target)),
                    );
                }
            }
            // A resource has a handful of dependencies: a linear scan beats hashing clones.
            let mut unique: Vec<Dependency> = Vec::with_capacity(found.len());
            for dependency in found {
                if !unique.contains(&dependency) {
                    unique.push(dependency);
                }
            }
            let found = unique;
            dependencies.push((address.clone(), found));
            edges.push(resource_edges);

            self.check_kind_rules(resource);
            self.check_stateful_identity(resource);
            self.check_destroy(resource);
            self.check_zone(resource, zones);
            self.check_lun(resource, read, &mut luns);
            if failover.mode != FailoverMode::Off {
                self.check_generation(resource);
            }
        }
        self.check_triggers(read, failover, triggers);
        self.check_pools(read, failover);
        self.check_cycles(&positions, &edges);
        let dependencies = BTreeMap::from_iter(dependencies);
        self.check_standby_hooks(read, &dependencies);
        dependencies
    }

    /// A hook marked `standby = true` runs in the standby generation, before any data is
    /// there: everything it needs must be built there too. Checked whatever `[failover]
    /// standby` says, so that a spec turned warm later holds no surprise for the failover.
    fn check_standby_hooks(
        &mut self,
        read: &BTreeMap<ResourceAddress, Read>,
        dependencies: &BTreeMap<ResourceAddress, Vec<Dependency>>,
    ) {
        let eligible = |address: &ResourceAddress| {
            read.get(address)
                .is_some_and(|resource| crate::standby_eligible(&resource.spec))
        };
        // Most specs mark no hook: they pay nothing for this check (100,000 resources load).
        if !read
            .iter()
            .any(|(address, _)| address.kind == Kind::Hook && eligible(address))
        {
            return;
        }
        let settled = crate::standby_closure(dependencies, eligible);
        for (address, resource) in read {
            if address.kind != Kind::Hook
                || !eligible(address)
                || settled.get(address).is_none_or(|inside| *inside)
            {
                continue;
            }
            // The first dependency outside the standby, and why it is outside.
            let Some(outside) =
                dependencies
                    .get(address)
                    .into_iter()
                    .flatten()
                    .find(|dependency| {
                        settled.get(&dependency.address) == Some(&false)
                            && !crate::is_identity(dependency.address.kind)
                    })
            else {
                continue;
            };
            let kind = outside.address.kind;
            let why = if kind.is_stateful() {
                "it holds the data, which a failover moves there".to_owned()
            } else if kind == Kind::Check {
                "a check is waited for in the serving generation only".to_owned()
            } else if kind == Kind::Hook && !eligible(&outside.address) {
                "it is a hook without standby = true".to_owned()
            } else {
                "it needs, in turn, something the standby does not have".to_owned()
            };
            let at = self.field_place(resource, crate::STANDBY_FIELD);
            self.push(
                SpecError::new(
                    Problem::StandbyNeedsData {
                        address: address.to_string(),
                        dependency: outside.address.to_string(),
                        why,
                    },
                    Some(at),
                )
                .help("a standby hook runs ahead of the failover, with no data present: give it only what the standby builds (the cluster's kubeconfig, the VM's address), put what needs the data in a hook without standby = true that runs at the failover, or remove standby = true"),
            );
        }
    }

    /// Where a field of a resource is written (`lun`, `disks[2]`, `env.KUBECONFIG`): the
    /// deepest part of the path the table holds, or the table's header when it holds no such
    /// field. The resource's part of the document is gone by now: its file is parsed again,
    /// once, which only a spec with a problem to report pays for.
    fn field_place(&mut self, resource: &Read, field: &str) -> Place {
        let path = parse_path(field);
        let span = match path.first() {
            // The kind's fields and the keys every resource may hold: an unknown key was
            // reported as such, and is no place for another problem.
            Some(PathSegment::Key(key))
                if resource.spec.fields.contains_key(key.as_str())
                    || META_KEYS.contains(&key.as_str()) =>
            {
                self.span_in_table(resource, &path)
            }
            _ => None,
        };
        place(
            &resource.file,
            span.unwrap_or_else(|| resource.header.clone()),
        )
    }

    /// The span of the deepest node along `path` in a resource's table, from its file parsed
    /// again; `None` when the table has not the path's first key.
    fn span_in_table(&mut self, resource: &Read, path: &[PathSegment]) -> Option<Range<usize>> {
        let files = self.files;
        let index = resource.file.index;
        let document = self
            .reparsed
            .entry(index)
            .or_insert_with(|| DeTable::parse_recoverable(&files[index].text).0);
        let address = &resource.spec.address;
        let DeValue::Table(kind) = document.get_ref().get(address.kind.as_str())?.get_ref() else {
            return None;
        };
        let DeValue::Table(table) = kind.get(address.name.as_str())?.get_ref() else {
            return None;
        };
        let (PathSegment::Key(first), rest) = path.split_first()? else {
            return None;
        };
        Some(navigate(table.get(first.as_str())?, rest).span())
    }

    fn check_references(
        &mut self,
        read: &BTreeMap<ResourceAddress, Read>,
        positions: &Positions,
        resource: &Read,
        found: &mut Vec<Dependency>,
        edges: &mut Vec<Edge>,
    ) {
        let Some(rules) = self.rules.get(resource.spec.address.kind) else {
            return;
        };
        for field in rules.fields() {
            let (kind, list) = match field.field_type {
                FieldType::Reference(kind) => (kind, false),
                FieldType::ReferenceList(kind) => (kind, true),
                _ => continue,
            };
            let Some(value) = resource.spec.fields.get(field.name) else {
                continue;
            };
            let items: Vec<(Option<usize>, &Value)> = if list {
                value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .map(|(index, item)| (Some(index), item))
                    .collect()
            } else {
                vec![(None, value)]
            };
            for (index, item) in items {
                // Mistyped values are reported by the type check already.
                let Some(text) = item.as_str() else { continue };
                let path = || match index {
                    Some(index) => format!("{}[{index}]", field.name),
                    None => field.name.to_owned(),
                };
                let target = match text.parse::<ResourceAddress>() {
                    Ok(target) => target,
                    Err(_) => {
                        let named = ResourceAddress::new(kind, text);
                        let help = if read.contains_key(&named) {
                            format!("did you mean `{named}`?")
                        } else {
                            format!(
                                "`{}` names a {kind}: write it as \"{kind}.NAME\"",
                                field.name
                            )
                        };
                        let at = self.field_place(resource, &path());
                        self.push(
                            SpecError::new(
                                Problem::BadAddress {
                                    text: text.to_owned(),
                                },
                                Some(at),
                            )
                            .help(help),
                        );
                        continue;
                    }
                };
                if target.kind != kind {
                    let same_name = ResourceAddress::new(kind, target.name.clone());
                    let help = if read.contains_key(&same_name) {
                        format!("did you mean `{same_name}`?")
                    } else {
                        format!("name a {kind} here, such as \"{kind}.NAME\"")
                    };
                    let at = self.field_place(resource, &path());
                    self.push(
                        SpecError::new(
                            Problem::WrongKind {
                                field: path(),
                                expected: kind.to_string(),
                                address: target.to_string(),
                                found: target.kind.to_string(),
                            },
                            Some(at),
                        )
                        .help(help),
                    );
                    continue;
                }
                let Some(to) = positions.find(&target) else {
                    let at = self.field_place(resource, &path());
                    self.push(
                        SpecError::new(
                            Problem::UnknownResource {
                                address: target.to_string(),
                            },
                            Some(at),
                        )
                        .help(missing_help(read, &target)),
                    );
                    continue;
                };
                found.push(Dependency {
                    address: target,
                    via: DependencyVia::Reference { field: field.name },
                });
                edges.push(Edge {
                    to,
                    written: Written::Reference {
                        field: field.name,
                        index,
                    },
                });
            }
        }
    }

    fn check_outputs(
        &mut self,
        read: &BTreeMap<ResourceAddress, Read>,
        positions: &Positions,
        resource: &Read,
        found: &mut Vec<Dependency>,
        edges: &mut Vec<Edge>,
    ) {
        for used in &resource.outputs {
            let Some(to) = positions.find(&used.address) else {
                self.push(
                    SpecError::new(
                        Problem::UnknownResource {
                            address: used.address.to_string(),
                        },
                        Some(used.place.clone()),
                    )
                    .help(missing_help(read, &used.address)),
                );
                continue;
            };
            let target = positions.resources[to].1;
            let kind = used.address.kind;
            let mut outputs: Vec<&str> = self
                .rules
                .get(kind)
                .map(|rules| rules.outputs().iter().map(|output| output.name).collect())
                .unwrap_or_default();
            // A hook's own outputs are the names its `outputs` field lists.
            if kind == Kind::Hook {
                outputs.extend(
                    target
                        .spec
                        .fields
                        .get(fields::hook::OUTPUTS)
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str),
                );
            }
            // Recovery after a syntax error may have dropped the hook's `outputs`.
            let known = outputs.contains(&used.output.as_str()) || target.broken;
            if !known {
                let help = did_you_mean(&used.output, outputs.iter().copied()).unwrap_or_else(|| {
                    match (outputs.is_empty(), kind) {
                        (_, Kind::Hook) => format!(
                            "list it in {}'s outputs = [...], and print it in the JSON object on the command's last line",
                            used.address
                        ),
                        (true, _) => format!("a {kind} has no outputs"),
                        (false, _) => format!("the outputs of a {kind} are: {}", outputs.join(", ")),
                    }
                });
                self.push(
                    SpecError::new(
                        Problem::UnknownOutput {
                            address: used.address.to_string(),
                            output: used.output.clone(),
                        },
                        Some(used.place.clone()),
                    )
                    .help(help),
                );
                continue;
            }
            found.push(Dependency {
                address: used.address.clone(),
                via: DependencyVia::Interpolation {
                    field: used.field.clone(),
                    output: used.output.clone(),
                },
            });
            edges.push(Edge {
                to,
                written: Written::At(used.place.clone()),
            });
        }
    }

    /// The kind's own rules, on resources whose fields are complete and well-typed: on others
    /// they would mostly repeat what the type check said.
    fn check_kind_rules(&mut self, resource: &Read) {
        if !resource.clean {
            return;
        }
        let Some(rules) = self.rules.get(resource.spec.address.kind) else {
            return;
        };
        for error in rules.validate(&resource.spec) {
            let at = self.field_place(resource, &error.field);
            self.push(
                SpecError::new(
                    Problem::Invalid {
                        address: resource.spec.address.to_string(),
                        message: error.message,
                    },
                    Some(at),
                )
                .maybe_help(error.help),
            );
        }
    }

    /// A stateful resource is moved by a failover, never recreated: a field that identifies it
    /// (one whose change would replace it) must read the same in every generation. Found here
    /// rather than by the failover's plan, when it is too late (issue 18).
    fn check_stateful_identity(&mut self, resource: &Read) {
        let spec = &resource.spec;
        if !spec.address.kind.is_stateful() {
            return;
        }
        let Some(rules) = self.rules.get(spec.address.kind) else {
            return;
        };
        for field in rules.fields() {
            let (OnChange::Replace(why) | OnChange::Refuse(why)) = field.on_change else {
                continue;
            };
            let Some(text) = spec
                .str_field(field.name)
                .filter(|text| text.contains("${"))
            else {
                continue;
            };
            let Ok(segments) = value::parse_template(text) else {
                continue;
            };
            let through = segments.iter().find_map(|segment| match segment {
                Segment::Expression(Expression::Generation, _) => Some("${generation}".to_owned()),
                Segment::Expression(
                    Expression::Output {
                        address, output, ..
                    },
                    _,
                ) if address.kind.is_replaceable() => Some(format!(
                    "${{{address}.{output}}}, an output of a replaceable resource"
                )),
                _ => None,
            });
            let Some(through) = through else { continue };
            let at = self.field_place(resource, field.name);
            self.push(
                SpecError::new(
                    Problem::IdentityChangesWithGeneration {
                        address: spec.address.to_string(),
                        field: field.name.to_owned(),
                        through,
                    },
                    Some(at),
                )
                .help(format!(
                    "a failover moves a stateful resource to the new generation and never recreates it ({why}), so the plan would fail when it is needed: write a fixed {}, the same in every generation",
                    field.name
                )),
            );
        }
    }

    /// What a pool's disks and host must agree on, across resources: each disk in one pool
    /// (on one side of it: the pool's own or its hot standby's replica), attached to a VM, the
    /// pool's host; one pool of a name on a host; a replica exactly when the standby is hot,
    /// with disks at least as large as the pool's.
    fn check_pools(&mut self, read: &BTreeMap<ResourceAddress, Read>, failover: &FailoverPolicy) {
        let hot = failover.standby == crate::Standby::Hot && failover.mode != FailoverMode::Off;
        let mut owners: BTreeMap<&str, &ResourceAddress> = BTreeMap::new();
        let mut names: BTreeMap<(&str, String), &ResourceAddress> = BTreeMap::new();
        let pools = read
            .range(ResourceAddress::new(Kind::ZfsPool, "")..)
            .take_while(|(address, _)| address.kind == Kind::ZfsPool);
        for (address, pool) in pools {
            if pool.spec.ensure == Ensure::Absent {
                continue;
            }
            let host = pool.spec.str_field(fields::zfs_pool::HOST);
            let pool_name = pool
                .spec
                .str_field(fields::zfs_pool::POOL_NAME)
                .unwrap_or(&address.name)
                .to_owned();
            if let Some(host) = host {
                if let Some(first) = names.get(&(host, pool_name.clone())) {
                    let at = self.field_place(pool, fields::zfs_pool::POOL_NAME);
                    self.push(
                        SpecError::new(
                            Problem::Invalid {
                                address: address.to_string(),
                                message: format!(
                                    "{first} is a pool named `{pool_name}` on {host} too"
                                ),
                            },
                            Some(at),
                        )
                        .help("ZFS names a pool once per host: give one of them another pool_name"),
                    );
                } else {
                    names.insert((host, pool_name), address);
                }
            }
            self.check_pool_side(read, address, pool, fields::zfs_pool::DISKS, &mut owners);
            self.check_pool_side(
                read,
                address,
                pool,
                fields::zfs_pool::REPLICA_DISKS,
                &mut owners,
            );
            self.check_replica(read, address, pool, hot, &failover.standby);
        }
    }

    /// One side of a pool (`disks`, or a hot standby's `replica_disks`): each disk in no other
    /// pool or side, and attached to the pool's host resource.
    fn check_pool_side<'r>(
        &mut self,
        read: &'r BTreeMap<ResourceAddress, Read>,
        address: &'r ResourceAddress,
        pool: &'r Read,
        side: &str,
        owners: &mut BTreeMap<&'r str, &'r ResourceAddress>,
    ) {
        let host = pool.spec.str_field(fields::zfs_pool::HOST);
        let disks = pool.spec.field(side).and_then(Value::as_array);
        for (index, disk) in disks.into_iter().flatten().enumerate() {
            let Some(text) = disk.as_str() else { continue };
            let field = format!("{side}[{index}]");
            if let Some(first) = owners.get(text) {
                let at = self.field_place(pool, &field);
                let message = if *first == address {
                    format!(
                        "{text} is listed twice in {address}: a disk holds the pool or its replica, once"
                    )
                } else {
                    format!("{text} is in {first} already")
                };
                self.push(
                    SpecError::new(
                        Problem::Invalid {
                            address: address.to_string(),
                            message,
                        },
                        Some(at),
                    )
                    .help(if side == fields::zfs_pool::DISKS {
                        "a disk holds vdevs of one pool: remove it from one of the two"
                    } else {
                        "a disk holds vdevs of one pool, or of its replica: remove it from one of the two"
                    }),
                );
                continue;
            }
            owners.insert(text, address);
            let Some(disk) = text.parse().ok().and_then(|target| read.get(&target)) else {
                continue;
            };
            let at = self.field_place(pool, &field);
            match (disk.spec.str_field(fields::disk::VM), host) {
                (None, _) => self.push(
                    SpecError::new(
                        Problem::Invalid {
                            address: address.to_string(),
                            message: format!("{text} is attached to no vm, so the pool's host cannot see it"),
                        },
                        Some(at),
                    )
                    .help(format!(
                        "attach it to the pool's host: add vm = \"{}\" and a lun to [{text}]",
                        host.unwrap_or("vm.NAME")
                    )),
                ),
                // A vm that does not exist is reported as such already.
                (Some(vm), Some(host))
                    if vm != host
                        && vm
                            .parse::<ResourceAddress>()
                            .is_ok_and(|vm| read.contains_key(&vm)) => self.push(
                    SpecError::new(
                        Problem::Invalid {
                            address: address.to_string(),
                            message: format!("{text} is attached to {vm}, but the pool's host is {host}"),
                        },
                        Some(at),
                    )
                    .help(if side == fields::zfs_pool::DISKS {
                        format!(
                            "a pool is imported where its disks are: set vm = \"{host}\" in [{text}], or host = \"{vm}\" here"
                        )
                    } else {
                        format!(
                            "a replica is kept on the standby generation's instance of the pool's host: set vm = \"{host}\" in [{text}]"
                        )
                    }),
                ),
                _ => {}
            }
        }
    }

    /// A hot standby keeps a replica of every pool, and only a hot standby does: the replica's
    /// disks, sorted by size, each at least as large as the pool's, so that any layout fits.
    fn check_replica(
        &mut self,
        read: &BTreeMap<ResourceAddress, Read>,
        address: &ResourceAddress,
        pool: &Read,
        hot: bool,
        standby: &crate::Standby,
    ) {
        let replica = pool
            .spec
            .field(fields::zfs_pool::REPLICA_DISKS)
            .and_then(Value::as_array);
        match (hot, replica) {
            (true, None) => {
                let at = self.field_place(pool, fields::zfs_pool::REPLICA_DISKS);
                self.push(
                    SpecError::new(
                        Problem::Invalid {
                            address: address.to_string(),
                            message: "[failover] standby is hot, but the pool has no replica_disks: a hot failover promotes a replica and moves no disk".to_owned(),
                        },
                        Some(at),
                    )
                    .help("list the standby's disks in replica_disks (as many as disks, each attached to the same host resource), or set standby = \"warm\""),
                );
            }
            (false, Some(_)) => {
                let at = self.field_place(pool, fields::zfs_pool::REPLICA_DISKS);
                self.push(
                    SpecError::new(
                        Problem::Invalid {
                            address: address.to_string(),
                            message: if *standby == crate::Standby::Hot {
                                "replica_disks keeps a hot standby's replica, but [failover] mode is off: nothing fails over, and no standby is kept".to_owned()
                            } else {
                                format!(
                                    "replica_disks keeps a hot standby's replica, but [failover] standby is {}",
                                    standby.as_str()
                                )
                            },
                        },
                        Some(at),
                    )
                    .help(if *standby == crate::Standby::Hot {
                        "set mode = \"manual\" or \"automatic\" in [failover], or remove replica_disks"
                    } else {
                        "set standby = \"hot\" in [failover], or remove replica_disks"
                    }),
                );
            }
            (true, Some(replica)) => {
                let sizes = |disks: Option<&Vec<Value>>| -> Option<Vec<i64>> {
                    let mut sizes = disks?
                        .iter()
                        .map(|disk| {
                            let disk = read.get(&disk.as_str()?.parse().ok()?)?;
                            disk.spec.field("size_gb").and_then(Value::as_i64)
                        })
                        .collect::<Option<Vec<i64>>>()?;
                    sizes.sort_unstable();
                    Some(sizes)
                };
                let pool_sizes = sizes(
                    pool.spec
                        .field(fields::zfs_pool::DISKS)
                        .and_then(Value::as_array),
                );
                let replica_sizes = sizes(Some(replica));
                if let (Some(pool_sizes), Some(replica_sizes)) = (pool_sizes, replica_sizes)
                    && pool_sizes.len() == replica_sizes.len()
                    && pool_sizes
                        .iter()
                        .zip(&replica_sizes)
                        .any(|(pool, replica)| replica < pool)
                {
                    let at = self.field_place(pool, fields::zfs_pool::REPLICA_DISKS);
                    let list = |sizes: &[i64]| {
                        sizes
                            .iter()
                            .map(|size| format!("{size} GB"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    self.push(
                        SpecError::new(
                            Problem::Invalid {
                                address: address.to_string(),
                                message: format!(
                                    "the replica's disks ({}) are smaller than the pool's ({}): the replica could not hold the pool",
                                    list(&replica_sizes),
                                    list(&pool_sizes)
                                ),
                            },
                            Some(at),
                        )
                        .help("give each replica disk at least the size_gb of its counterpart among disks"),
                    );
                }
            }
            (false, None) => {}
        }
    }

    fn check_destroy(&mut self, resource: &Read) {
        let spec = &resource.spec;
        let kind = spec.address.kind;
        if kind.is_stateful() && spec.ensure == Ensure::Absent && !spec.allow_destroy {
            let at = self.field_place(resource, "ensure");
            self.push(
                SpecError::new(
                    Problem::DestroyNeedsOptIn {
                        address: spec.address.to_string(),
                    },
                    Some(at),
                )
                .help("deleting a stateful resource takes two opt-ins: add allow_destroy = true to it, and pass --allow-destroy to ferry apply"),
            );
        }
        if !kind.is_stateful() && resource.allow_destroy_written {
            let at = self.field_place(resource, "allow_destroy");
            self.push(
                SpecError::new(
                    Problem::UselessAllowDestroy {
                        address: spec.address.to_string(),
                        kind: kind.to_string(),
                    },
                    Some(at),
                )
                .help("remove it: ensure = \"absent\" deletes a resource that a failover can rebuild without any opt-in"),
            );
        }
    }

    fn check_zone(&mut self, resource: &Read, zones: &BTreeMap<String, Attributes>) {
        if resource.spec.address.kind != Kind::DnsRecord {
            return;
        }
        let Some(zone) = resource.spec.str_field(fields::dns_record::ZONE) else {
            return;
        };
        if zone.contains("${") || zones.contains_key(zone) {
            return;
        }
        let help = did_you_mean(zone, zones.keys().map(String::as_str)).unwrap_or_else(|| {
            format!("declare it as [zones.\"{zone}\"] with its backend (azure or rfc2136)")
        });
        let at = self.field_place(resource, fields::dns_record::ZONE);
        self.push(
            SpecError::new(
                Problem::UndeclaredZone {
                    zone: zone.to_owned(),
                },
                Some(at),
            )
            .help(help),
        );
    }

    fn check_lun<'r>(
        &mut self,
        resource: &'r Read,
        read: &BTreeMap<ResourceAddress, Read>,
        luns: &mut HashMap<(&'r str, i64), &'r ResourceAddress>,
    ) {
        let spec = &resource.spec;
        if spec.address.kind != Kind::Disk || spec.ensure == Ensure::Absent {
            return;
        }
        let (Some(vm), Some(lun)) = (
            spec.str_field(fields::disk::VM),
            spec.field(fields::disk::LUN).and_then(Value::as_i64),
        ) else {
            return;
        };
        let Some(first) = luns.get(&(vm, lun)) else {
            luns.insert((vm, lun), &spec.address);
            return;
        };
        let at = self.field_place(resource, fields::disk::LUN);
        let mut error = SpecError::new(
            Problem::SharedLun {
                vm: vm.to_owned(),
                lun,
            },
            Some(at),
        )
        .label(format!("{} is at lun {lun}", spec.address))
        .help("give each disk on a vm its own lun, 0 to 63");
        if let Some(first_resource) = read.get(*first) {
            let first_place = self.field_place(first_resource, fields::disk::LUN);
            error = error.note(
                Problem::Note {
                    message: format!("{first} is at lun {lun} too"),
                },
                first_place,
            );
        }
        self.push(error);
    }

    fn check_generation(&mut self, resource: &Read) {
        let spec = &resource.spec;
        if spec.address.kind != Kind::ResourceGroup {
            return;
        }
        let Some(name) = spec.str_field(fields::resource_group::NAME) else {
            return;
        };
        if name.contains("${generation}") {
            return;
        }
        let at = self.field_place(resource, fields::resource_group::NAME);
        self.push(
            SpecError::new(
                Problem::GenerationMissing {
                    address: spec.address.to_string(),
                },
                Some(at),
            )
            .help(format!(
                "a failover builds the new generation's resources in a new resource group beside the old one, so each generation needs its own name: write name = \"{name}-g${{generation}}\", or set mode = \"off\" in [failover]"
            )),
        );
    }

    fn check_triggers(
        &mut self,
        read: &BTreeMap<ResourceAddress, Read>,
        failover: &mut FailoverPolicy,
        triggers: &[(String, Place)],
    ) {
        for (text, at) in triggers {
            let address = match text.parse::<ResourceAddress>() {
                Ok(address) => address,
                Err(_) => {
                    self.push(
                        SpecError::new(
                            Problem::BadAddress { text: text.clone() },
                            Some(at.clone()),
                        )
                        .help(address_help(read, text)),
                    );
                    continue;
                }
            };
            if !read.contains_key(&address) {
                self.push(
                    SpecError::new(
                        Problem::UnknownResource {
                            address: address.to_string(),
                        },
                        Some(at.clone()),
                    )
                    .help(missing_help(read, &address)),
                );
                continue;
            }
            if !address.kind.is_replaceable() {
                self.push(
                    SpecError::new(
                        Problem::BadTrigger {
                            address: address.to_string(),
                        },
                        Some(at.clone()),
                    )
                    .help("a trigger is a replaceable resource whose bad health calls for a new generation, such as aks_cluster.hub; stateful resources and checks are moved or waited for, not rebuilt"),
                );
                continue;
            }
            failover.triggers.push(address);
        }
    }

    fn check_cycles(&mut self, positions: &Positions, edges: &[Vec<Edge>]) {
        let adjacency: Vec<Vec<usize>> = edges
            .iter()
            .map(|edges| edges.iter().map(|edge| edge.to).collect())
            .collect();
        for component in graph::cyclic_components(&adjacency) {
            let cycle = graph::cycle_through(&component, &adjacency);
            let path: Vec<String> = cycle
                .iter()
                .map(|node| positions.resources[*node].0.to_string())
                .collect();
            let (from, from_resource) = positions.resources[cycle[0]];
            let to = positions.resources[cycle[1]].0;
            let Some(edge) = edges[cycle[0]].iter().find(|edge| edge.to == cycle[1]) else {
                continue;
            };
            let at = match &edge.written {
                Written::At(at) => at.clone(),
                Written::Reference { field, index } => {
                    let field = match index {
                        Some(index) => format!("{field}[{index}]"),
                        None => (*field).to_owned(),
                    };
                    self.field_place(from_resource, &field)
                }
            };
            self.push(
                SpecError::new(
                    Problem::Cycle {
                        path: path.join(" -> "),
                    },
                    Some(at),
                )
                .label(format!("{from} depends on {to} here"))
                .help("resources cannot depend on each other in a circle: remove one of these references or depends_on entries"),
            );
        }
    }
}
