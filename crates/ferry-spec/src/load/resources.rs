//! Resource tables: gathering `[KIND.NAME]` tables across files, then reading each against its
//! kind's schema and the keys every resource may hold (`depends_on`, `allow_destroy`, `ensure`).

use std::collections::{BTreeMap, btree_map};
use std::ops::Range;
use std::sync::Arc;

use ferry_core::{Ensure, Kind, ResourceAddress, ResourceSpec};
use toml::de::DeValue;

use super::fields::{Allowed, OutputUse, found_type};
use super::paths::{PathSegment, navigate};
use super::schemas::META_KEYS;
use super::{Loader, Node, place};
use crate::error::{Place, Problem, SourceFile, SpecError};

fn is_resource_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A resource after its own table is read. Its part of the document is dropped by then: what
/// the checks across resources need of it is here, and the spans they report on are found
/// again in the file's text ([`Loader::field_place`]).
pub(super) struct Read {
    pub(super) spec: ResourceSpec,
    pub(super) file: Arc<SourceFile>,
    /// The table's header (`[vm.nfs]`), or the inline table.
    pub(super) header: Range<usize>,
    /// Recovery after a syntax error may have dropped some of its lines.
    pub(super) broken: bool,
    /// Its own fields are well-typed and complete: the kind's validation may run.
    pub(super) clean: bool,
    pub(super) outputs: Vec<OutputUse>,
    pub(super) depends_on: Vec<(ResourceAddress, Place)>,
    /// Whether `allow_destroy` is written, whatever its value.
    pub(super) allow_destroy_written: bool,
}

impl Loader<'_> {
    /// Reads every resource of a kind's table (`[vm.*]`) in turn, taking each out of the
    /// document so that its part is dropped once it is read. A name defined again in a later
    /// file is reported, and the first definition kept.
    pub(super) fn read_kind(
        &mut self,
        kind: Kind,
        file: &Arc<SourceFile>,
        node: Node<'_>,
        broken: bool,
        read: &mut BTreeMap<ResourceAddress, Read>,
    ) {
        let span = node.span();
        let DeValue::Table(table) = node.into_inner() else {
            self.push(
                SpecError::new(
                    Problem::NotATable {
                        what: format!("`{kind}`"),
                    },
                    Some(place(file, span)),
                )
                .help(format!("declare each resource as a table: [{kind}.NAME]")),
            );
            return;
        };
        for (name_key, node) in table {
            let name: &str = name_key.get_ref();
            let address = ResourceAddress::new(kind, name);
            if !is_resource_name(name) {
                self.push(
                    SpecError::new(
                        Problem::BadResourceName {
                            name: name.to_owned(),
                        },
                        Some(place(file, name_key.span())),
                    )
                    .help("a resource name starts with a lower-case letter, followed by lower-case letters, digits, `_` or `-`"),
                );
                continue;
            }
            if !matches!(node.get_ref(), DeValue::Table(_)) {
                self.push(
                    SpecError::new(
                        Problem::NotATable {
                            what: address.to_string(),
                        },
                        Some(place(file, node.span())),
                    )
                    .help(format!(
                        "write [{address}] on a line of its own, then its fields"
                    )),
                );
                continue;
            }
            // One search of the map, whether the name is new or not.
            let vacant = match read.entry(address) {
                btree_map::Entry::Vacant(vacant) => vacant,
                btree_map::Entry::Occupied(first) => {
                    let (address, first) = (first.key(), first.get());
                    let first_place = place(&first.file, first.header.clone());
                    self.push(
                        SpecError::new(
                            Problem::Duplicate {
                                what: address.to_string(),
                            },
                        Some(place(file, node.span())),
                    )
                        .label("defined again here")
                        .help("each resource is defined once: remove this one or give it another name")
                        .note(Problem::FirstDefinedHere, first_place),
                    );
                    continue;
                }
            };
            let resource = self.read_resource(vacant.key().clone(), file, &node, broken);
            vacant.insert(resource);
        }
    }

    fn read_resource(
        &mut self,
        address: ResourceAddress,
        file: &Arc<SourceFile>,
        node: &Node<'_>,
        broken: bool,
    ) -> Read {
        let mut spec = ResourceSpec::new(address.clone());
        // Gathering kept only tables of kinds with rules; this stays total all the same.
        let header = node.span();
        let DeValue::Table(table) = node.get_ref() else {
            return Read {
                spec,
                file: Arc::clone(file),
                header,
                broken,
                clean: false,
                outputs: Vec::new(),
                depends_on: Vec::new(),
                allow_destroy_written: false,
            };
        };
        let fields = self
            .rules
            .get(address.kind)
            .map_or(&[][..], |rules| rules.fields());
        // As `to_string` writes it, without the formatting machinery: a resource pays this once.
        let kind = address.kind.as_str();
        let mut within = String::with_capacity(kind.len() + 1 + address.name.len());
        within.push_str(kind);
        within.push('.');
        within.push_str(&address.name);
        let read = self.read_table(
            file,
            header.clone(),
            table,
            fields,
            &META_KEYS,
            Allowed::Everything,
            &within,
            !broken,
        );
        let mut clean = read.clean;
        let mut depends_on = Vec::new();
        let allow_destroy_written = table.contains_key("allow_destroy");
        for meta in META_KEYS {
            let Some(node) = table.get(meta) else {
                continue;
            };
            let at = place(file, node.span());
            let wrong_type = |expected: &str, found: &str| {
                SpecError::new(
                    Problem::WrongType {
                        what: format!("`{meta}`"),
                        expected: expected.to_owned(),
                        found: found.to_owned(),
                    },
                    Some(at.clone()),
                )
            };
            let value = self.json_of(file, node);
            let found = found_type(&value, node);
            match meta {
                "depends_on" => {
                    let Some(items) = value.as_array() else {
                        self.push(
                            wrong_type("a list of resource addresses", found)
                                .help("write depends_on = [\"kind.name\", ...]"),
                        );
                        clean = false;
                        continue;
                    };
                    for (index, item) in items.iter().enumerate() {
                        let item_place =
                            place(file, navigate(node, &[PathSegment::Index(index)]).span());
                        match item.as_str().map(str::parse::<ResourceAddress>) {
                            Some(Ok(target)) => depends_on.push((target, item_place)),
                            Some(Err(_)) => self.push(
                                SpecError::new(
                                    Problem::BadAddress {
                                        text: item.as_str().unwrap_or_default().to_owned(),
                                    },
                                    Some(item_place),
                                )
                                .help("write it as kind.name, such as hook.staging_hub"),
                            ),
                            None => self.push(
                                SpecError::new(
                                    Problem::WrongType {
                                        what: format!("`depends_on[{index}]`"),
                                        expected: "a resource address".to_owned(),
                                        found: found_type(
                                            item,
                                            navigate(node, &[PathSegment::Index(index)]),
                                        )
                                        .to_owned(),
                                    },
                                    Some(item_place),
                                )
                                .help("write it as \"kind.name\", such as \"hook.staging_hub\""),
                            ),
                        }
                    }
                }
                "allow_destroy" => match value.as_bool() {
                    Some(flag) => spec.allow_destroy = flag,
                    None => {
                        self.push(
                            wrong_type("a boolean", found).help("write allow_destroy = true"),
                        );
                        clean = false;
                    }
                },
                _ => match value.as_str() {
                    Some("present") => spec.ensure = Ensure::Present,
                    Some("absent") => spec.ensure = Ensure::Absent,
                    Some(other) => {
                        self.push(
                            SpecError::new(
                                Problem::BadChoice {
                                    what: "ensure".to_owned(),
                                    value: other.to_owned(),
                                },
                                Some(at),
                            )
                            .help("use \"present\" or \"absent\""),
                        );
                        clean = false;
                    }
                    None => {
                        self.push(
                            wrong_type("a string", found).help("use \"present\" or \"absent\""),
                        );
                        clean = false;
                    }
                },
            }
        }
        spec.fields = read.values;
        spec.depends_on = depends_on
            .iter()
            .map(|(target, _)| target.clone())
            .collect();
        Read {
            spec,
            file: Arc::clone(file),
            header,
            broken,
            clean: clean && !broken,
            outputs: read.outputs,
            depends_on,
            allow_destroy_written,
        }
    }
}
