//! The loader: TOML documents to a validated [`Spec`], collecting every problem on the way.
//!
//! It works in passes over documents parsed with spans: gather the blocks and resource tables
//! of every file, settle the variables, read and type-check each table against its schema,
//! then check what crosses resources (references, outputs, zones, LUNs, cycles). Every pass
//! keeps going after a problem, so one run reports them all.
//!
//! This file holds the passes' order and what they share; `schemas` the blocks' schemas,
//! `paths` paths into a value and the spans they point at, `fields` reading a value against
//! its schema, `blocks` the non-resource blocks, `resources` the resource tables, `check`
//! what crosses resources, and `pieces` how a large file is parsed a run of tables at a time.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_core::secret::Secrets;
use ferry_core::{Kind, ResourceAddress, RuleBook, Value};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{Place, Problem, SourceFile, SpecError, SpecErrors};
use crate::suggest::did_you_mean;
use crate::{FailoverMode, LoadOptions, Origin, Spec};

use resources::Read;
use schemas::BLOCKS;

mod blocks;
mod check;
mod fields;
mod paths;
mod pieces;
mod resources;
mod schemas;

type Node<'i> = Spanned<DeValue<'i>>;

/// A top-level entry: a block, a variable or a zone, with the file it came from.
struct Entry<'d, 'i> {
    file: Arc<SourceFile>,
    key: Range<usize>,
    node: &'d Node<'i>,
}

struct Loader<'a> {
    rules: &'a RuleBook,
    environment: &'a BTreeMap<String, String>,
    variables: BTreeMap<String, Value>,
    /// Every value substituted for a `${env.NAME}`: secrets by default.
    secrets: Secrets,
    errors: Vec<SpecError>,
    /// The spec's files, by index.
    files: &'a [Arc<SourceFile>],
    /// Files parsed again, each once, for the spans of the problems found after their
    /// documents were dropped ([`Loader::field_place`]): a spec without problems parses once.
    reparsed: HashMap<usize, Spanned<DeTable<'a>>>,
}

fn place(file: &Arc<SourceFile>, span: Range<usize>) -> Place {
    Place {
        file: Arc::clone(file),
        span,
    }
}

/// How the loader parses the files: in pieces where that gives exactly the whole file's
/// document ([`pieces`]), or every file whole, as it does again when a piece had a syntax error.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parsing {
    InPieces,
    Whole,
}

/// A file's head (in pieces) or whole document (whole), and its resource pieces still to parse.
struct Parsed<'t> {
    file: Arc<SourceFile>,
    document: Spanned<DeTable<'t>>,
    broken: bool,
    pieces: Vec<Range<usize>>,
}

/// A piece had a syntax error: load again with every file parsed whole.
#[derive(Debug, PartialEq, Eq)]
struct ParseWhole;

pub(crate) fn load(
    root: &Path,
    files: Vec<(PathBuf, String)>,
    options: &LoadOptions,
    rules: &RuleBook,
) -> Result<Spec, SpecErrors> {
    let files: Vec<Arc<SourceFile>> = files
        .into_iter()
        .enumerate()
        .map(|(index, (path, text))| SourceFile::new(index, path.display().to_string(), text))
        .collect();
    let mut parsing = Parsing::InPieces;
    loop {
        match load_files(root, &files, options, rules, parsing) {
            Ok(loaded) => return loaded,
            Err(ParseWhole) => parsing = Parsing::Whole,
        }
    }
}

fn load_files(
    root: &Path,
    files: &[Arc<SourceFile>],
    options: &LoadOptions,
    rules: &RuleBook,
    parsing: Parsing,
) -> Result<Result<Spec, SpecErrors>, ParseWhole> {
    let mut loader = Loader {
        rules,
        environment: &options.environment,
        variables: BTreeMap::new(),
        secrets: Secrets::new(),
        errors: Vec::new(),
        files,
        reparsed: HashMap::new(),
    };
    let mut documents = Vec::new();
    for file in files {
        let cut = match parsing {
            Parsing::InPieces => pieces::cut(&file.text, rules),
            Parsing::Whole => None,
        };
        let (document, pieces) = match cut {
            Some(cut) => {
                let (head, errors) = DeTable::parse_recoverable(&file.text[cut.head]);
                if !errors.is_empty() {
                    return Err(ParseWhole);
                }
                if pieces::head_holds_resources(head.get_ref(), rules) {
                    (DeTable::parse_recoverable(&file.text), Vec::new())
                } else {
                    ((head, errors), cut.pieces)
                }
            }
            None => (DeTable::parse_recoverable(&file.text), Vec::new()),
        };
        let (document, syntax_errors) = document;
        let broken = !syntax_errors.is_empty();
        loader.syntax_errors(file, syntax_errors);
        documents.push(Parsed {
            file: Arc::clone(file),
            document,
            broken,
            pieces,
        });
    }

    // Gather every block, variable and zone, across files; resource tables are read after
    // them, since their fields may use the variables.
    let mut blocks: BTreeMap<&str, Entry> = BTreeMap::new();
    let mut variable_entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut zone_entries: BTreeMap<String, Entry> = BTreeMap::new();
    for Parsed {
        file,
        document,
        broken,
        ..
    } in &documents
    {
        for (key, node) in document.get_ref() {
            let name: &str = key.get_ref();
            let entry = Entry {
                file: Arc::clone(file),
                key: key.span(),
                node,
            };
            match name {
                "deployment" | "failover" | "state" | "limits" | "watch" => {
                    let block = BLOCKS
                        .into_iter()
                        .find(|block| *block == name)
                        .unwrap_or("deployment");
                    loader.insert_once(&mut blocks, block, entry, &format!("[{name}]"));
                }
                "variables" | "zones" => {
                    let Some(table) = loader.table_of(&entry, &format!("[{name}]")) else {
                        continue;
                    };
                    for (item_key, item_node) in table {
                        let item = Entry {
                            file: Arc::clone(file),
                            key: item_key.span(),
                            node: item_node,
                        };
                        let item_name = item_key.get_ref().to_string();
                        let (target, what) = if name == "variables" {
                            (&mut variable_entries, format!("variable `{item_name}`"))
                        } else {
                            (&mut zone_entries, format!("zone `{item_name}`"))
                        };
                        loader.insert_once(target, item_name, item, &what);
                    }
                }
                _ => match name.parse::<Kind>() {
                    // Read below, once the variables are known.
                    Ok(kind) if rules.get(kind).is_some() => {}
                    // Recovery after a syntax error can turn a broken header's keys into
                    // top-level ones: reporting those would only repeat the syntax error.
                    _ if *broken => {}
                    _ => loader.unknown_top_level(name, &entry),
                },
            }
        }
    }

    loader.read_variables(&variable_entries, options);
    let deployment = loader.read_deployment(blocks.get("deployment"));
    let (mut failover, trigger_nodes) = loader.read_failover(blocks.get("failover"));
    let state = loader.read_state(blocks.get("state"), root);
    let limits = loader.read_limits(blocks.get("limits"));
    let watch = loader.read_watch(blocks.get("watch"), &state);
    let zones = loader.read_zones(&zone_entries);
    drop((blocks, variable_entries, zone_entries));

    // Each resource table is read as soon as it is taken out of its document, and its part of
    // the document dropped right after: a document with spans costs about 2 KiB a resource
    // (a map per table), more than the resource itself, and a large spec's documents no longer
    // wait, whole, for the checks across resources. Those checks find the spans they report
    // on again from the file's text, when there is something to report (`Loader::field_place`).
    let mut read: BTreeMap<ResourceAddress, Read> = BTreeMap::new();
    for Parsed {
        file,
        document,
        broken,
        pieces,
    } in documents
    {
        for (key, node) in document.into_inner() {
            let kind = match key.get_ref().parse::<Kind>() {
                Ok(kind) if rules.get(kind).is_some() => kind,
                _ => continue,
            };
            loader.read_kind(kind, &file, node, broken, &mut read);
        }
        pieces::parse_each(&file.text, &pieces, |document| {
            // Every key of a piece is a kind with rules: `pieces::cut` let no other header in.
            for (key, node) in document {
                let kind = match key.get_ref().parse::<Kind>() {
                    Ok(kind) if rules.get(kind).is_some() => kind,
                    _ => continue,
                };
                loader.read_kind(kind, &file, node, broken, &mut read);
            }
        })?;
    }

    let dependencies = loader.check_across(&read, &zones, &mut failover, &trigger_nodes);

    if !loader.errors.is_empty() {
        let mut errors = loader.errors;
        errors.sort_by_key(SpecError::sort_key);
        // A message may quote a value from the environment (a URL that is not one): it shows
        // as redacted, like everywhere else.
        for error in &mut errors {
            error.mask(&loader.secrets);
        }
        return Ok(Err(SpecErrors::new(errors)));
    }
    let standby = if failover.standby != crate::Standby::Cold && failover.mode != FailoverMode::Off
    {
        let mut standby: std::collections::BTreeSet<ResourceAddress> =
            crate::standby_closure(&dependencies, |address| {
                read.get(address)
                    .is_some_and(|resource| crate::standby_eligible(&resource.spec))
            })
            .into_iter()
            .filter(|(_, inside)| *inside)
            .map(|(address, _)| address)
            .collect();
        // A hot standby holds the replicas' disks too: stateful, but the standby's own.
        if failover.standby == crate::Standby::Hot {
            standby.extend(
                read.values()
                    .flat_map(|resource| crate::replica_disks(&resource.spec)),
            );
        }
        standby
    } else {
        std::collections::BTreeSet::new()
    };
    // Built from sorted vectors rather than entry by entry: a map filled in order by `insert`
    // leaves each node it splits half empty, and these maps live as long as the spec.
    let mut resources = Vec::with_capacity(read.len());
    let mut origins = Vec::with_capacity(read.len());
    for (address, resource) in read {
        origins.push((
            address.clone(),
            Origin {
                file: resource.file,
                header: resource.header,
            },
        ));
        resources.push((address, resource.spec));
    }
    let resources = BTreeMap::from_iter(resources);
    let origins = BTreeMap::from_iter(origins);
    Ok(Ok(Spec {
        root: root.to_path_buf(),
        deployment,
        failover,
        state,
        limits,
        watch,
        variables: loader.variables,
        secrets: loader.secrets,
        zones,
        resources,
        origins,
        dependencies,
        standby,
    }))
}

impl<'a> Loader<'a> {
    fn push(&mut self, error: SpecError) {
        self.errors.push(error);
    }

    fn syntax_errors(&mut self, file: &Arc<SourceFile>, errors: Vec<toml::de::Error>) {
        for error in errors {
            let span = error.span().unwrap_or(0..0);
            let help = if error.message() == "duplicate key" {
                "a key or table is defined once: remove or rename one of the two"
            } else {
                "fix the TOML syntax here; see https://toml.io for the format"
            };
            self.push(
                SpecError::new(
                    Problem::Syntax {
                        message: error.message().replace('\n', ", "),
                    },
                    Some(place(file, span)),
                )
                .help(help),
            );
        }
    }

    /// Keeps the first definition of a name and reports any later one, pointing at both.
    fn insert_once<'d, 'i, K: Ord>(
        &mut self,
        map: &mut BTreeMap<K, Entry<'d, 'i>>,
        key: K,
        entry: Entry<'d, 'i>,
        what: &str,
    ) {
        if let Some(first) = map.get(&key) {
            let first_place = place(&first.file, first.key.clone());
            self.push(
                SpecError::new(
                    Problem::Duplicate {
                        what: what.to_owned(),
                    },
                    Some(place(&entry.file, entry.key.clone())),
                )
                .label("defined again here")
                .help("keep one definition: remove or rename the other")
                .note(Problem::FirstDefinedHere, first_place),
            );
            return;
        }
        map.insert(key, entry);
    }

    fn table_of<'d, 'i>(&mut self, entry: &Entry<'d, 'i>, what: &str) -> Option<&'d DeTable<'i>> {
        match entry.node.get_ref() {
            DeValue::Table(table) => Some(table),
            _ => {
                self.push(
                    SpecError::new(
                        Problem::NotATable {
                            what: what.to_owned(),
                        },
                        Some(place(&entry.file, entry.node.span())),
                    )
                    .help(format!(
                        "write it as a table: {what} on a line of its own, then its keys"
                    )),
                );
                None
            }
        }
    }

    fn unknown_top_level(&mut self, name: &str, entry: &Entry) {
        let kinds: Vec<&str> = self.rules.kinds().map(Kind::as_str).collect();
        let suggestion = did_you_mean(name, BLOCKS.into_iter().chain(kinds.iter().copied()));
        let suggests_kind = crate::suggest::closest(name, kinds.iter().copied()).is_some();
        // `[something.name]` has the shape of a resource: call it a kind.
        let shaped_like_resources = matches!(entry.node.get_ref(), DeValue::Table(table)
            if !table.is_empty() && table.values().all(|value| matches!(value.get_ref(), DeValue::Table(_))));
        let (problem, fallback) = if suggests_kind || shaped_like_resources {
            (
                Problem::UnknownKind {
                    name: name.to_owned(),
                },
                format!("the resource kinds are: {}", kinds.join(", ")),
            )
        } else {
            (
                Problem::UnknownBlock {
                    name: name.to_owned(),
                },
                format!(
                    "the blocks are {}; resources are written [KIND.NAME]",
                    BLOCKS.join(", ")
                ),
            )
        };
        self.push(
            SpecError::new(problem, Some(place(&entry.file, entry.key.clone())))
                .help(suggestion.unwrap_or(fallback)),
        );
    }
}
