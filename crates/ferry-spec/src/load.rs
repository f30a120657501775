//! The loader: TOML documents to a validated [`Spec`], collecting every problem on the way.
//!
//! It works in passes over documents parsed with spans: gather the blocks and resource tables
//! of every file, settle the variables, read and type-check each table against its schema,
//! then check what crosses resources (references, outputs, zones, LUNs, cycles). Every pass
//! keeps going after a problem, so one run reports them all.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_core::provider::{FieldSchema, FieldType, OnChange};
use ferry_core::secret::Secrets;
use ferry_core::value::{self, Expression, Segment};
use ferry_core::{Attributes, Ensure, Kind, ResourceAddress, ResourceSpec, RuleBook, Value};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{Place, Problem, SourceFile, SpecError, SpecErrors};
use crate::suggest::did_you_mean;
use crate::{Deployment, FailoverMode, FailoverPolicy, LoadOptions, Origin, Spec, StateConfig};

mod check;

/// The top-level tables that are not resource kinds.
const BLOCKS: [&str; 5] = ["deployment", "failover", "state", "variables", "zones"];

/// Keys every resource table may hold besides its kind's fields.
const META_KEYS: [&str; 3] = ["depends_on", "allow_destroy", "ensure"];

const fn text(
    name: &'static str,
    required: bool,
    default: Option<&'static str>,
    description: &'static str,
) -> FieldSchema {
    FieldSchema {
        name,
        field_type: FieldType::String,
        required,
        default,
        description,
        on_change: OnChange::InPlace,
    }
}

const DEPLOYMENT: &[FieldSchema] = &[
    text("name", true, None, "the deployment's name"),
    text("subscription", false, None, "the Azure subscription id"),
    text(
        "location",
        true,
        None,
        "the Azure region of every resource, such as westeurope",
    ),
];

const FAILOVER: &[FieldSchema] = &[
    text("mode", false, Some("manual"), "off, manual or automatic"),
    FieldSchema {
        name: "triggers",
        field_type: FieldType::StringList,
        required: false,
        default: None,
        description: "replaceable resources whose bad health starts a failover",
        on_change: OnChange::InPlace,
    },
];

const STATE_LOCAL: &[FieldSchema] = &[
    text("backend", false, Some("local"), "local or azure_blob"),
    text(
        "path",
        false,
        Some(".ferry"),
        "the state folder, relative to the spec's folder",
    ),
];

const STATE_AZURE_BLOB: &[FieldSchema] = &[
    text("backend", false, Some("local"), "local or azure_blob"),
    text("account", true, None, "the storage account"),
    text("container", true, None, "the blob container"),
    text("blob", true, None, "the blob that holds the state"),
    text(
        "endpoint",
        false,
        None,
        "the container's account endpoint, for Azurite or a sovereign cloud (default https://ACCOUNT.blob.core.windows.net)",
    ),
    text(
        "sas_url_env",
        false,
        None,
        "an environment variable holding a container SAS URL, used instead of an Entra ID token",
    ),
    text(
        "ca_file",
        false,
        None,
        "a PEM file of extra CA certificates to trust, relative to the spec's folder",
    ),
];

const ZONE_AZURE: &[FieldSchema] = &[
    text("backend", true, None, "azure or rfc2136"),
    text(
        "resource_group",
        true,
        None,
        "the resource group of the Azure DNS zone",
    ),
    text(
        "subscription",
        false,
        None,
        "the subscription of the zone, when it is not the deployment's",
    ),
];

const ZONE_RFC2136: &[FieldSchema] = &[
    text("backend", true, None, "azure or rfc2136"),
    text(
        "server",
        true,
        None,
        "the primary server as address:port, such as 127.0.0.1:53",
    ),
    text("tsig_key_name", true, None, "the name of the TSIG key"),
    text(
        "tsig_algorithm",
        false,
        Some("hmac-sha256"),
        "the TSIG algorithm, such as hmac-sha256",
    ),
    text(
        "tsig_secret_env",
        false,
        None,
        "the environment variable that holds the TSIG secret",
    ),
    text(
        "tsig_secret_file",
        false,
        None,
        "the file that holds the TSIG secret",
    ),
];

const TSIG_ALGORITHMS: &[&str] = &[
    "hmac-md5",
    "hmac-sha1",
    "hmac-sha224",
    "hmac-sha256",
    "hmac-sha384",
    "hmac-sha512",
];

type Node<'i> = Spanned<DeValue<'i>>;

/// One step of a path into a value: `env.KUBECONFIG` is two keys, `disks[2]` a key and an index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

fn path_text(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// Reads a [`ferry_core::FieldError`] field path such as `datasets.prod.quota` or `disks[2]`.
fn parse_path(text: &str) -> Vec<Step> {
    let mut path = Vec::new();
    for part in text.split('.').filter(|part| !part.is_empty()) {
        let (key, mut indices) = match part.find('[') {
            Some(open) => (&part[..open], &part[open..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            path.push(Step::Key(key.to_owned()));
        }
        while let Some(rest) = indices.strip_prefix('[') {
            let Some(close) = rest.find(']') else { break };
            if let Ok(index) = rest[..close].parse() {
                path.push(Step::Index(index));
            }
            indices = &rest[close + 1..];
        }
    }
    path
}

/// The deepest node along a path: where a problem with that path is shown.
fn navigate<'a, 'i>(node: &'a Node<'i>, path: &[Step]) -> &'a Node<'i> {
    let mut current = node;
    for step in path {
        let next = match (step, current.get_ref()) {
            (Step::Key(key), DeValue::Table(table)) => table.get(key.as_str()),
            (Step::Index(index), DeValue::Array(items)) => items.get(*index),
            _ => None,
        };
        match next {
            Some(next) => current = next,
            None => break,
        }
    }
    current
}

/// The span of `snippet` (the `range` of the string `decoded`) inside the TOML string whose
/// token is at `token`; the whole token when the string was written with escapes that move
/// the text around.
fn inner_span(
    source: &str,
    token: Range<usize>,
    decoded: &str,
    range: Range<usize>,
) -> Range<usize> {
    let Some(raw) = source.get(token.clone()) else {
        return token;
    };
    let delimiter = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
        3
    } else if raw.starts_with(['"', '\'']) {
        1
    } else {
        return token;
    };
    // A token that is not a whole quoted string (damaged input: unterminated, or cut inside
    // a character) has no body to point into.
    if raw.len() < 2 * delimiter || !raw.ends_with(&raw[..delimiter]) {
        return token;
    }
    let mut body_start = token.start + delimiter;
    let Some(mut body) = raw.get(delimiter..raw.len() - delimiter) else {
        return token;
    };
    if delimiter == 3 {
        for newline in ["\r\n", "\n"] {
            if let Some(rest) = body.strip_prefix(newline) {
                body = rest;
                body_start += newline.len();
                break;
            }
        }
    }
    let Some(snippet) = decoded.get(range.clone()) else {
        return token;
    };
    if body == decoded {
        return body_start + range.start..body_start + range.end;
    }
    match body.find(snippet) {
        Some(position) => body_start + position..body_start + position + snippet.len(),
        None => token,
    }
}

fn found_type(value: &Value, node: &Node<'_>) -> &'static str {
    if matches!(node.get_ref(), DeValue::Datetime(_)) {
        return "a date-time";
    }
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(number) if number.is_f64() => "a decimal number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

/// A string that is nothing but one `${var.X}` or `${env.X}` that could not be resolved: its
/// problem is already reported, so its type is not checked too.
fn is_unresolved_variable(value: &Value) -> bool {
    let Some(text) = value.as_str().filter(|text| text.contains("${")) else {
        return false;
    };
    matches!(
        value::parse_template(text).as_deref(),
        Ok([Segment::Expression(
            Expression::Variable(_) | Expression::Environment(_),
            _
        )])
    )
}

/// Where a value does not have its field's type: the path below the field, and what is there.
fn type_mismatch(field_type: FieldType, value: &Value) -> Option<(Vec<Step>, String)> {
    // Null stands for an integer too large to read, which is reported already.
    if value.is_null() || is_unresolved_variable(value) {
        return None;
    }
    let is_string = |value: &Value| value.is_string() || is_unresolved_variable(value);
    let list_of_strings = |value: &Value| -> Option<(Vec<Step>, String)> {
        let Some(items) = value.as_array() else {
            return Some((Vec::new(), field_type.describe()));
        };
        items
            .iter()
            .position(|item| !is_string(item))
            .map(|index| (vec![Step::Index(index)], "a string".to_owned()))
    };
    match field_type {
        FieldType::String | FieldType::Reference(_) => {
            (!value.is_string()).then(|| (Vec::new(), field_type.describe()))
        }
        FieldType::Integer(_) => {
            (!(value.is_i64() || value.is_u64())).then(|| (Vec::new(), field_type.describe()))
        }
        FieldType::Boolean => (!value.is_boolean()).then(|| (Vec::new(), field_type.describe())),
        FieldType::StringList | FieldType::ReferenceList(_) => list_of_strings(value),
        FieldType::StringMap => {
            let Some(map) = value.as_object() else {
                return Some((Vec::new(), field_type.describe()));
            };
            map.iter()
                .find(|(_, item)| !is_string(item))
                .map(|(key, _)| (vec![Step::Key(key.clone())], "a string".to_owned()))
        }
        FieldType::Table => (!value.is_object()).then(|| (Vec::new(), field_type.describe())),
    }
}

fn is_resource_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// What `${...}` may name where a string sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Allowed {
    /// In a resource: everything.
    Everything,
    /// In `[variables]`: only `${env.X}`.
    EnvironmentOnly,
    /// In the other blocks: variables and the environment, known when the spec loads.
    VariablesAndEnvironment,
}

/// A `${kind.name.output}` found in a resource, to check once every resource is known.
#[derive(Debug)]
struct OutputUse {
    field: String,
    address: ResourceAddress,
    output: String,
    place: Place,
}

/// A resource table, as gathered from its file.
struct Gathered<'d, 'i> {
    file: Arc<SourceFile>,
    node: &'d Node<'i>,
    /// Recovery after a syntax error may have dropped some of its lines.
    broken: bool,
}

/// A resource after its own table is read.
struct Read<'d, 'i> {
    spec: ResourceSpec,
    gathered: Gathered<'d, 'i>,
    /// Its own fields are well-typed and complete: the kind's validation may run.
    clean: bool,
    outputs: Vec<OutputUse>,
    depends_on: Vec<(ResourceAddress, Place)>,
    field_nodes: BTreeMap<&'d str, &'d Node<'i>>,
    meta_nodes: BTreeMap<&'static str, &'d Node<'i>>,
}

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
}

fn place(file: &Arc<SourceFile>, span: Range<usize>) -> Place {
    Place {
        file: Arc::clone(file),
        span,
    }
}

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
    let mut loader = Loader {
        rules,
        environment: &options.environment,
        variables: BTreeMap::new(),
        secrets: Secrets::new(),
        errors: Vec::new(),
    };
    let mut documents = Vec::new();
    for file in &files {
        let (document, syntax_errors) = DeTable::parse_recoverable(&file.text);
        let broken = !syntax_errors.is_empty();
        for error in syntax_errors {
            let span = error.span().unwrap_or(0..0);
            let help = if error.message() == "duplicate key" {
                "a key or table is defined once: remove or rename one of the two"
            } else {
                "fix the TOML syntax here; see https://toml.io for the format"
            };
            loader.errors.push(
                SpecError::new(
                    Problem::Syntax {
                        message: error.message().replace('\n', ", "),
                    },
                    Some(place(file, span)),
                )
                .help(help),
            );
        }
        documents.push((Arc::clone(file), document, broken));
    }

    // Gather every block and resource table, across files.
    let mut blocks: BTreeMap<&str, Entry> = BTreeMap::new();
    let mut variable_entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut zone_entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut gathered: BTreeMap<ResourceAddress, Gathered> = BTreeMap::new();
    for (file, document, broken) in &documents {
        for (key, node) in document.get_ref() {
            let name: &str = key.get_ref();
            let entry = Entry {
                file: Arc::clone(file),
                key: key.span(),
                node,
            };
            match name {
                "deployment" | "failover" | "state" => {
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
                    Ok(kind) if rules.get(kind).is_some() => {
                        loader.gather_kind(kind, &entry, *broken, &mut gathered);
                    }
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
    let zones = loader.read_zones(&zone_entries);

    let mut read: BTreeMap<ResourceAddress, Read> = BTreeMap::new();
    for (address, gathered) in gathered {
        let resource = loader.read_resource(address.clone(), gathered);
        read.insert(address, resource);
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
        return Err(SpecErrors::new(errors));
    }
    let mut resources = BTreeMap::new();
    let mut origins = BTreeMap::new();
    for (address, resource) in read {
        origins.insert(
            address.clone(),
            Origin {
                file: resource.gathered.file,
                header: resource.gathered.node.span(),
            },
        );
        resources.insert(address, resource.spec);
    }
    Ok(Spec {
        root: root.to_path_buf(),
        deployment,
        failover,
        state,
        variables: loader.variables,
        secrets: loader.secrets,
        zones,
        resources,
        origins,
        dependencies,
    })
}

impl<'a> Loader<'a> {
    fn push(&mut self, error: SpecError) {
        self.errors.push(error);
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

    fn gather_kind<'d, 'i>(
        &mut self,
        kind: Kind,
        entry: &Entry<'d, 'i>,
        broken: bool,
        gathered: &mut BTreeMap<ResourceAddress, Gathered<'d, 'i>>,
    ) {
        let DeValue::Table(table) = entry.node.get_ref() else {
            self.push(
                SpecError::new(
                    Problem::NotATable {
                        what: format!("`{kind}`"),
                    },
                    Some(place(&entry.file, entry.node.span())),
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
                        Some(place(&entry.file, name_key.span())),
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
                        Some(place(&entry.file, node.span())),
                    )
                    .help(format!(
                        "write [{address}] on a line of its own, then its fields"
                    )),
                );
                continue;
            }
            if let Some(first) = gathered.get(&address) {
                let first_place = place(&first.file, first.node.span());
                self.push(
                    SpecError::new(
                        Problem::Duplicate {
                            what: address.to_string(),
                        },
                        Some(place(&entry.file, node.span())),
                    )
                    .label("defined again here")
                    .help("each resource is defined once: remove this one or give it another name")
                    .note(Problem::FirstDefinedHere, first_place),
                );
                continue;
            }
            gathered.insert(
                address,
                Gathered {
                    file: Arc::clone(&entry.file),
                    node,
                    broken,
                },
            );
        }
    }

    /// TOML to JSON; integers that do not fit in 64 bits are reported.
    fn json_of(&mut self, file: &Arc<SourceFile>, node: &Node<'_>) -> Value {
        match node.get_ref() {
            DeValue::String(text) => Value::String(text.to_string()),
            DeValue::Integer(integer) => {
                match i64::from_str_radix(integer.as_str(), integer.radix()) {
                    Ok(number) => Value::from(number),
                    Err(_) => match u64::from_str_radix(integer.as_str(), integer.radix()) {
                        Ok(number) => Value::from(number),
                        Err(_) => {
                            self.push(
                                SpecError::new(
                                    Problem::Syntax {
                                        message: "integer out of range".to_owned(),
                                    },
                                    Some(place(file, node.span())),
                                )
                                .help("use an integer that fits in 64 bits"),
                            );
                            Value::Null
                        }
                    },
                }
            }
            DeValue::Float(float) => float
                .as_str()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Value::String(float.as_str().to_owned()), Value::Number),
            DeValue::Boolean(flag) => Value::Bool(*flag),
            DeValue::Datetime(datetime) => Value::String(datetime.to_string()),
            DeValue::Array(items) => {
                Value::Array(items.iter().map(|item| self.json_of(file, item)).collect())
            }
            DeValue::Table(table) => Value::Object(
                table
                    .iter()
                    .map(|(key, item)| (key.get_ref().to_string(), self.json_of(file, item)))
                    .collect(),
            ),
        }
    }

    /// Substitutes variables and the environment in one field's value.
    fn substitute(&mut self, value: Value) -> Value {
        // Most values hold no `${`: keep them as they are rather than copy them.
        if !has_expression(&value) {
            return value;
        }
        self.record_secrets(&value);
        let variables = &self.variables;
        let environment = self.environment;
        value::resolve(&value, &|expression| match expression {
            Expression::Variable(name) => variables.get(name).cloned(),
            Expression::Environment(name) => environment.get(name).cloned().map(Value::String),
            _ => None,
        })
    }

    /// Records the value of every `${env.NAME}` in `value` that the environment has.
    fn record_secrets(&mut self, value: &Value) {
        for (_, expression) in value::expressions(value) {
            if let Expression::Environment(name) = expression
                && let Some(text) = self.environment.get(&name)
            {
                self.secrets.insert(name, text.clone());
            }
        }
    }

    /// Checks every `${...}` in a substituted value: malformed ones, variables and environment
    /// variables that are not there, and expressions not allowed where they sit. Returns the
    /// resource outputs it refers to.
    fn check_expressions(
        &mut self,
        file: &Arc<SourceFile>,
        field: &str,
        node: &Node<'_>,
        value: &Value,
        allowed: Allowed,
        within: &str,
    ) -> Vec<OutputUse> {
        let mut strings = Vec::new();
        collect_strings(value, &mut vec![Step::Key(field.to_owned())], &mut strings);
        let mut outputs = Vec::new();
        for (path, text) in strings {
            let string_node = navigate(node, &path[1..]);
            let decoded = match string_node.get_ref() {
                DeValue::String(_) => text.as_str(),
                _ => "",
            };
            let span_of = |range: Range<usize>| {
                if decoded.is_empty() {
                    string_node.span()
                } else {
                    inner_span(&file.text, string_node.span(), decoded, range)
                }
            };
            let segments = match value::parse_template(&text) {
                Ok(segments) => segments,
                Err(error) => {
                    let help = template_help(&error, self.rules);
                    self.push(
                        SpecError::new(
                            Problem::Template {
                                message: error.to_string(),
                            },
                            Some(place(file, span_of(error.range()))),
                        )
                        .help(help),
                    );
                    continue;
                }
            };
            for segment in segments {
                let Segment::Expression(expression, range) = segment else {
                    continue;
                };
                let at = place(file, span_of(range));
                match (&expression, allowed) {
                    (
                        Expression::Variable(name),
                        Allowed::Everything | Allowed::VariablesAndEnvironment,
                    ) => {
                        let help = did_you_mean(name, self.variables.keys().map(String::as_str))
                            .unwrap_or_else(|| {
                                format!("declare it in [variables], such as {name} = \"...\"; --var {name}=VALUE can then override it")
                            });
                        self.push(
                            SpecError::new(
                                Problem::UndefinedVariable { name: name.clone() },
                                Some(at),
                            )
                            .help(help),
                        );
                    }
                    (Expression::Environment(name), _) => {
                        self.push(
                            SpecError::new(
                                Problem::UnsetEnvironment { name: name.clone() },
                                Some(at),
                            )
                            .help(format!("set {name} in the environment ferry runs in")),
                        );
                    }
                    (
                        Expression::Output {
                            address, output, ..
                        },
                        Allowed::Everything,
                    ) => {
                        outputs.push(OutputUse {
                            field: path_text(&path),
                            address: address.clone(),
                            output: output.clone(),
                            place: at,
                        });
                    }
                    (Expression::Generation, Allowed::Everything) => {}
                    (Expression::Sealed { name, .. }, _) => {
                        self.push(
                            SpecError::new(
                                Problem::Template {
                                    message: format!(
                                        "`${{{expression}}}` is how a plan shows a secret, not something a spec holds"
                                    ),
                                },
                                Some(at),
                            )
                            .help(format!("write ${{env.{name}}}")),
                        );
                    }
                    (_, _) => {
                        let help = match allowed {
                            Allowed::EnvironmentOnly => {
                                "a variable's value may use ${env.NAME} only"
                            }
                            _ => {
                                "only ${var.NAME} and ${env.NAME} are known when the spec loads; resource outputs belong in resources"
                            }
                        };
                        self.push(
                            SpecError::new(
                                Problem::ExpressionInBlock {
                                    expression: expression.to_string(),
                                    block: within.to_owned(),
                                },
                                Some(at),
                            )
                            .help(help),
                        );
                    }
                }
            }
        }
        outputs
    }

    /// Reads one field against its schema: converts, substitutes, checks expressions and the
    /// type. Returns the value (even when mistyped, to keep checking) and whether it is clean.
    fn read_field(
        &mut self,
        file: &Arc<SourceFile>,
        schema: &FieldSchema,
        node: &Node<'_>,
        allowed: Allowed,
        within: &str,
        outputs: &mut Vec<OutputUse>,
    ) -> (Value, bool) {
        let errors_before = self.errors.len();
        let raw = self.json_of(file, node);
        let value = self.substitute(raw);
        outputs.extend(self.check_expressions(file, schema.name, node, &value, allowed, within));
        let mismatch = type_mismatch(schema.field_type, &value);
        let well_typed = mismatch.is_none();
        if let Some((path, expected)) = mismatch {
            let mut full = vec![Step::Key(schema.name.to_owned())];
            full.extend(path.iter().cloned());
            let at = navigate(node, &path);
            let mut found_value = &value;
            for step in &path {
                found_value = match step {
                    Step::Key(key) => &found_value[key.as_str()],
                    Step::Index(index) => &found_value[*index],
                };
            }
            self.push(
                SpecError::new(
                    Problem::WrongType {
                        what: format!("`{}`", path_text(&full)),
                        expected,
                        found: found_type(found_value, at).to_owned(),
                    },
                    Some(place(file, at.span())),
                )
                .help(format!("{}: {}", schema.name, schema.description)),
            );
        }
        // A value out of range is still well-typed: the kind's own validation may run on it.
        let clean = self.errors.len() == errors_before;
        // Recovery after a syntax error makes up values with an empty span: not the user's.
        if let FieldType::Integer(range) = schema.field_type
            && well_typed
            && let Some(number) = value.as_number()
            && !number.as_i64().is_some_and(|number| range.contains(number))
            && !node.span().is_empty()
        {
            self.push(
                SpecError::new(
                    Problem::OutOfRange {
                        what: format!("`{}`", schema.name),
                        value: number.to_string(),
                        range: range.describe(),
                    },
                    Some(place(file, node.span())),
                )
                .help(format!(
                    "write {} = N with N {}: {}",
                    schema.name,
                    range.describe(),
                    schema.description
                )),
            );
        }
        (value, clean)
    }

    /// Reads a table's keys against a schema, reporting unknown keys and missing required
    /// fields; `extra` keys are left to the caller.
    #[allow(clippy::too_many_arguments)]
    fn read_table<'d, 'i>(
        &mut self,
        file: &Arc<SourceFile>,
        header: Range<usize>,
        table: &'d DeTable<'i>,
        schema: &[FieldSchema],
        extra: &[&str],
        allowed: Allowed,
        within: &str,
        report_missing: bool,
    ) -> TableRead<'d, 'i> {
        let mut read = TableRead {
            values: Attributes::new(),
            nodes: BTreeMap::new(),
            clean: true,
            outputs: Vec::new(),
        };
        for (key, node) in table {
            let name: &str = key.get_ref();
            if extra.contains(&name) {
                continue;
            }
            let Some(field) = schema.iter().find(|field| field.name == name) else {
                let known = schema
                    .iter()
                    .map(|field| field.name)
                    .chain(extra.iter().copied());
                let help = did_you_mean(name, known).unwrap_or_else(|| {
                    let names: Vec<&str> = schema.iter().map(|field| field.name).collect();
                    format!("the keys of {within} are: {}", names.join(", "))
                });
                self.push(
                    SpecError::new(
                        Problem::UnknownKey {
                            key: name.to_owned(),
                            within: within.to_owned(),
                        },
                        Some(place(file, key.span())),
                    )
                    .help(help),
                );
                read.clean = false;
                continue;
            };
            let (value, clean) =
                self.read_field(file, field, node, allowed, within, &mut read.outputs);
            read.clean &= clean;
            read.values.insert(name.to_owned(), value);
            read.nodes.insert(name, node);
        }
        for field in schema.iter().filter(|field| field.required) {
            if !read.values.contains_key(field.name) && report_missing {
                self.push(
                    SpecError::new(
                        Problem::MissingField {
                            within: within.to_owned(),
                            field: field.name.to_owned(),
                        },
                        Some(place(file, header.clone())),
                    )
                    .help(format!("add {} = ...: {}", field.name, field.description)),
                );
                read.clean = false;
            }
        }
        read
    }

    fn read_variables(&mut self, entries: &BTreeMap<String, Entry>, options: &LoadOptions) {
        for (name, entry) in entries {
            let raw = self.json_of(&entry.file, entry.node);
            self.record_secrets(&raw);
            // Variables see the environment only: no order among variables to get wrong.
            let environment = self.environment;
            let value = value::resolve(&raw, &|expression| match expression {
                Expression::Environment(name) => environment.get(name).cloned().map(Value::String),
                _ => None,
            });
            self.check_expressions(
                &entry.file,
                name,
                entry.node,
                &value,
                Allowed::EnvironmentOnly,
                "[variables]",
            );
            self.variables.insert(name.clone(), value);
        }
        for (name, text) in &options.variables {
            let Some(declared) = self.variables.get(name) else {
                let help = did_you_mean(name, self.variables.keys().map(String::as_str))
                    .unwrap_or_else(|| {
                        format!(
                            "declare it in [variables] with a default, such as {name} = \"...\""
                        )
                    });
                self.push(
                    SpecError::new(Problem::UndeclaredVariable { name: name.clone() }, None)
                        .help(help),
                );
                continue;
            };
            // A --var keeps the declared type when the text reads as one.
            let value = match declared {
                Value::Number(_) => text
                    .parse::<i64>()
                    .map_or_else(|_| Value::String(text.clone()), Value::from),
                Value::Bool(_) => text
                    .parse::<bool>()
                    .map_or_else(|_| Value::String(text.clone()), Value::Bool),
                _ => Value::String(text.clone()),
            };
            self.variables.insert(name.clone(), value);
        }
    }

    fn read_block<'d, 'i>(
        &mut self,
        entry: &Entry<'d, 'i>,
        schema: &[FieldSchema],
        within: &str,
    ) -> Option<TableRead<'d, 'i>> {
        let table = self.table_of(entry, within)?;
        Some(self.read_table(
            &entry.file,
            entry.node.span(),
            table,
            schema,
            &[],
            Allowed::VariablesAndEnvironment,
            within,
            true,
        ))
    }

    fn read_deployment(&mut self, entry: Option<&Entry>) -> Deployment {
        let Some(entry) = entry else {
            self.push(
                SpecError::new(
                    Problem::MissingBlock {
                        block: "deployment".to_owned(),
                    },
                    None,
                )
                .help("add [deployment] with name = \"...\" and location = \"...\""),
            );
            return Deployment {
                name: String::new(),
                subscription: None,
                location: String::new(),
            };
        };
        let read = self.read_block(entry, DEPLOYMENT, "[deployment]");
        let values = read.map(|read| read.values).unwrap_or_default();
        let text = |key: &str| values.get(key).and_then(Value::as_str).map(str::to_owned);
        Deployment {
            name: text("name").unwrap_or_default(),
            subscription: text("subscription"),
            location: text("location").unwrap_or_default(),
        }
    }

    /// `[failover]`, with the trigger strings' nodes kept to check them once resources are known.
    fn read_failover<'d, 'i>(
        &mut self,
        entry: Option<&Entry<'d, 'i>>,
    ) -> (FailoverPolicy, Vec<(String, Place)>) {
        let mut policy = FailoverPolicy {
            mode: FailoverMode::Manual,
            triggers: Vec::new(),
        };
        let Some(entry) = entry else {
            return (policy, Vec::new());
        };
        let Some(read) = self.read_block(entry, FAILOVER, "[failover]") else {
            return (policy, Vec::new());
        };
        if let (Some(mode), Some(node)) = (
            read.values.get("mode").and_then(Value::as_str),
            read.nodes.get("mode"),
        ) {
            policy.mode = match mode {
                "off" => FailoverMode::Off,
                "manual" => FailoverMode::Manual,
                "automatic" => FailoverMode::Automatic,
                other => {
                    self.push(
                        SpecError::new(
                            Problem::BadChoice {
                                what: "failover mode".to_owned(),
                                value: other.to_owned(),
                            },
                            Some(place(&entry.file, node.span())),
                        )
                        .help("use one of: off, manual, automatic"),
                    );
                    FailoverMode::Manual
                }
            };
        }
        let mut triggers = Vec::new();
        if let (Some(items), Some(node)) = (
            read.values.get("triggers").and_then(Value::as_array),
            read.nodes.get("triggers"),
        ) {
            for (index, item) in items.iter().enumerate() {
                if let Some(text) = item.as_str() {
                    let at = navigate(node, &[Step::Index(index)]);
                    triggers.push((text.to_owned(), place(&entry.file, at.span())));
                }
            }
        }
        (policy, triggers)
    }

    fn read_state(&mut self, entry: Option<&Entry>, root: &Path) -> StateConfig {
        let local = |path: &str| StateConfig::Local {
            path: root.join(path),
        };
        let Some(entry) = entry else {
            return local(".ferry");
        };
        let Some(backend) = self.backend(entry, "[state]", &["local", "azure_blob"], "local")
        else {
            return local(".ferry");
        };
        let schema = if backend == "azure_blob" {
            STATE_AZURE_BLOB
        } else {
            STATE_LOCAL
        };
        let Some(read) = self.read_block(entry, schema, "[state]") else {
            return local(".ferry");
        };
        let text = |key: &str| {
            read.values
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        if backend == "azure_blob" {
            let optional = |key: &str| {
                read.values
                    .get(key)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            StateConfig::AzureBlob {
                account: text("account"),
                container: text("container"),
                blob: text("blob"),
                endpoint: optional("endpoint"),
                sas_url_env: optional("sas_url_env"),
                ca_file: optional("ca_file").map(|path| root.join(path)),
            }
        } else {
            local(
                read.values
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or(".ferry"),
            )
        }
    }

    /// The `backend` of a block, checked against the choices; `None` when it is not usable.
    fn backend(
        &mut self,
        entry: &Entry,
        within: &str,
        choices: &[&str],
        default: &str,
    ) -> Option<String> {
        let DeValue::Table(table) = entry.node.get_ref() else {
            return Some(default.to_owned());
        };
        let Some(node) = table.get("backend") else {
            return Some(default.to_owned());
        };
        let Some(backend) = node.get_ref().as_str() else {
            return Some(default.to_owned());
        };
        if choices.contains(&backend) {
            return Some(backend.to_owned());
        }
        let help = did_you_mean(backend, choices.iter().copied())
            .unwrap_or_else(|| format!("use one of: {}", choices.join(", ")));
        self.push(
            SpecError::new(
                Problem::BadChoice {
                    what: format!("backend for {within}"),
                    value: backend.to_owned(),
                },
                Some(place(&entry.file, node.span())),
            )
            .help(help),
        );
        None
    }

    fn read_zones(&mut self, entries: &BTreeMap<String, Entry>) -> BTreeMap<String, Attributes> {
        let mut zones = BTreeMap::new();
        for (name, entry) in entries {
            let within = format!("[zones.\"{name}\"]");
            let has_backend = matches!(entry.node.get_ref(), DeValue::Table(table) if table.contains_key("backend"));
            let (schema, is_rfc2136) = match self.backend(entry, &within, &["azure", "rfc2136"], "")
            {
                Some(backend) if backend == "azure" => (ZONE_AZURE, false),
                Some(backend) if backend == "rfc2136" => (ZONE_RFC2136, true),
                // Without a backend the other keys have no schema to be checked against.
                Some(_) if !has_backend => {
                    self.push(
                        SpecError::new(
                            Problem::MissingField {
                                within: within.clone(),
                                field: "backend".to_owned(),
                            },
                            Some(place(&entry.file, entry.node.span())),
                        )
                        .help("add backend = \"azure\" (Azure DNS) or backend = \"rfc2136\" (a DNS server with dynamic updates)"),
                    );
                    continue;
                }
                _ => continue,
            };
            let Some(read) = self.read_block(entry, schema, &within) else {
                continue;
            };
            if is_rfc2136 {
                let secrets = ["tsig_secret_env", "tsig_secret_file"]
                    .iter()
                    .filter(|key| read.values.contains_key(**key))
                    .count();
                if secrets != 1 {
                    self.push(
                        SpecError::new(
                            Problem::Invalid {
                                address: within.clone(),
                                message: "an rfc2136 zone needs exactly one of tsig_secret_env and tsig_secret_file".to_owned(),
                            },
                            Some(place(&entry.file, entry.key.clone())),
                        )
                        .help("name where the TSIG secret is: tsig_secret_env = \"VARIABLE\" or tsig_secret_file = \"path\""),
                    );
                }
                if let (Some(algorithm), Some(node)) = (
                    read.values.get("tsig_algorithm").and_then(Value::as_str),
                    read.nodes.get("tsig_algorithm"),
                ) && !TSIG_ALGORITHMS.contains(&algorithm)
                {
                    self.push(
                        SpecError::new(
                            Problem::BadChoice {
                                what: "TSIG algorithm".to_owned(),
                                value: algorithm.to_owned(),
                            },
                            Some(place(&entry.file, node.span())),
                        )
                        .help(format!("use one of: {}", TSIG_ALGORITHMS.join(", "))),
                    );
                }
            }
            zones.insert(name.clone(), read.values);
        }
        zones
    }

    fn read_resource<'d, 'i>(
        &mut self,
        address: ResourceAddress,
        gathered: Gathered<'d, 'i>,
    ) -> Read<'d, 'i> {
        let mut spec = ResourceSpec::new(address.clone());
        // Gathering kept only tables of kinds with rules; this stays total all the same.
        let DeValue::Table(table) = gathered.node.get_ref() else {
            return Read {
                spec,
                gathered,
                clean: false,
                outputs: Vec::new(),
                depends_on: Vec::new(),
                field_nodes: BTreeMap::new(),
                meta_nodes: BTreeMap::new(),
            };
        };
        let fields = self
            .rules
            .get(address.kind)
            .map_or(&[][..], |rules| rules.fields());
        let file = Arc::clone(&gathered.file);
        let within = address.to_string();
        let read = self.read_table(
            &file,
            gathered.node.span(),
            table,
            fields,
            &META_KEYS,
            Allowed::Everything,
            &within,
            !gathered.broken,
        );
        let mut clean = read.clean;
        let mut depends_on = Vec::new();
        let mut meta_nodes = BTreeMap::new();
        for meta in META_KEYS {
            let Some(node) = table.get(meta) else {
                continue;
            };
            meta_nodes.insert(meta, node);
            let at = place(&file, node.span());
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
            let value = self.json_of(&file, node);
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
                        let item_place = place(&file, navigate(node, &[Step::Index(index)]).span());
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
                                            navigate(node, &[Step::Index(index)]),
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
        let broken = gathered.broken;
        spec.fields = read.values;
        spec.depends_on = depends_on
            .iter()
            .map(|(target, _)| target.clone())
            .collect();
        Read {
            spec,
            gathered,
            clean: clean && !broken,
            outputs: read.outputs,
            depends_on,
            field_nodes: read.nodes,
            meta_nodes,
        }
    }
}

/// What to do about a malformed `${...}`.
fn template_help(error: &value::TemplateError, rules: &RuleBook) -> String {
    match error {
        value::TemplateError::Unclosed { .. } => {
            "close it with `}`, or write `$${` for a literal `${`".to_owned()
        }
        value::TemplateError::UnknownKind { kind, .. } => {
            let kinds: Vec<&str> = rules.kinds().map(Kind::as_str).collect();
            did_you_mean(kind, kinds.iter().copied())
                .unwrap_or_else(|| format!("the resource kinds are: {}", kinds.join(", ")))
        }
        _ => "write ${kind.name.output}, ${var.NAME}, ${env.NAME} or ${generation}".to_owned(),
    }
}

/// What [`Loader::read_table`] found.
struct TableRead<'d, 'i> {
    values: Attributes,
    nodes: BTreeMap<&'d str, &'d Node<'i>>,
    clean: bool,
    outputs: Vec<OutputUse>,
}

fn has_expression(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains("${"),
        Value::Array(items) => items.iter().any(has_expression),
        Value::Object(map) => map.values().any(has_expression),
        _ => false,
    }
}

fn collect_strings(value: &Value, path: &mut Vec<Step>, out: &mut Vec<(Vec<Step>, String)>) {
    match value {
        Value::String(text) if text.contains("${") => out.push((path.clone(), text.clone())),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                path.push(Step::Index(index));
                collect_strings(item, path, out);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                path.push(Step::Key(key.clone()));
                collect_strings(item, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::inner_span;

    #[test]
    fn a_span_inside_a_string_points_into_its_body() {
        let source = r#"name = "${var.domain}""#;
        assert_eq!(inner_span(source, 7..22, "${var.domain}", 2..12), 10..20);
    }

    /// Found by `tests/tests/bad_input.rs`: a random byte turned a string into an unterminated
    /// one whose last character is several bytes long; the whole token is the answer.
    #[test]
    fn a_damaged_string_token_gives_the_whole_token_never_a_panic() {
        let source = "name = \"${var.domainp\u{fffd}";
        let token = 7..source.len();
        assert_eq!(
            inner_span(source, token.clone(), "${var.domainp", 2..12),
            token
        );
        assert_eq!(inner_span("x = \"\u{fffd}", 4..8, "", 0..0), 4..8);
    }
}
