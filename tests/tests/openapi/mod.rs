//! Azure's own API definitions as the judge of an ARM exchange: the OpenAPI (Swagger 2.0)
//! files copied verbatim into `crates/ferry-arm/tests/fixtures/openapi` (source and license
//! in its README) are read, each request is matched to its operation by method and path
//! template, and its body, its answer's status and the answer's body are checked.
//!
//! The Swagger models become JSON Schema here (`convert`), and the `jsonschema` crate does the
//! validating. The conversion follows what Azure puts on the wire:
//! - `$ref`s are followed across files by their relative paths;
//! - `allOf` is flattened into one object, and an object that lists its properties refuses
//!   any other (`additionalProperties: false`) unless the definition says otherwise;
//!   `x-ms-client-flatten` only changes SDKs, not the JSON, and is ignored;
//! - `required`, types, `x-nullable` and enums are kept, but an `x-ms-enum` with
//!   `modelAsString: true` accepts any string, as Azure's SDKs do;
//! - the formats cheap to check are kept: `int32` as bounds, `date-time`, `uri`, `uuid`;
//! - in a request, a `readOnly` property is allowed (Azure ignores it) and reported; in an
//!   answer, `required` holds like everywhere else;
//! - a model in a file that was not copied is left open (any value): the exchange is still
//!   checked, and the verdict names the files whose models it could not check.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use ferry_sim::Exchange;
use serde_json::{Map, Value, json};

/// Where the copied definition files are, mirroring their paths in Azure/azure-rest-api-specs.
pub fn definitions_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/ferry-arm/tests/fixtures/openapi")
}

/// A place in the definitions: a file (relative to the folder) and a JSON pointer in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Place {
    file: String,
    pointer: String,
}

/// One segment of a path template.
#[derive(Debug, Clone)]
enum Segment {
    /// Compared ignoring case, as ARM does.
    Literal(String),
    Parameter,
}

/// One operation of a definition file.
#[derive(Debug, Clone)]
pub struct Operation {
    pub id: String,
    pub file: String,
    pub api_version: String,
    pub method: String,
    segments: Vec<Segment>,
    /// The body parameter's schema, and whether the body is required.
    body: Option<(Place, bool)>,
    /// Status (`"200"`, `"default"`) to the place of its schema, if it declares one.
    responses: BTreeMap<String, Option<Place>>,
}

impl Operation {
    fn literal_count(&self) -> usize {
        self.segments
            .iter()
            .filter(|segment| matches!(segment, Segment::Literal(_)))
            .count()
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        self.method.eq_ignore_ascii_case(method)
            && parts.len() == self.segments.len()
            && parts
                .iter()
                .zip(&self.segments)
                .all(|(part, segment)| match segment {
                    Segment::Literal(literal) => part.eq_ignore_ascii_case(literal),
                    Segment::Parameter => !part.is_empty(),
                })
    }
}

/// Which side of an exchange a body is on: the rules for `readOnly` differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    Request,
    Response,
}

/// What the check of one exchange found.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// No copied definition has this operation, or its model needs a file not copied.
    NotCovered { reason: String },
    Checked {
        operation: String,
        /// Each mismatch, naming the operation, the JSON pointer and what is wrong.
        problems: Vec<String>,
        /// JSON pointers of the `readOnly` properties the request sent (Azure ignores them).
        read_only_sent: Vec<String>,
        /// Files not copied whose models were left open (unchecked) in this exchange.
        left_open: BTreeSet<String>,
    },
}

/// A `$ref` into a file that was not copied.
#[derive(Debug)]
struct NotCopied(String);

/// The copied definitions, their operations, and the JSON Schemas made from them so far.
pub struct Definitions {
    files: HashMap<String, Value>,
    operations: Vec<Operation>,
    /// Each schema compiled so far, with the files not copied whose models it leaves open.
    schemas: HashMap<(Place, Side), (jsonschema::Validator, BTreeSet<String>)>,
    /// Every model (definition) turned into JSON Schema so far.
    models: BTreeSet<Place>,
}

/// Generic templates (`/{resourceId}`, `{parentResourcePath}`, `/{scope}/...`) match every
/// path and say nothing about a type's model: an exchange is checked against its own type's
/// operation or not at all.
const GENERIC_PARAMETERS: [&str; 3] = ["{resourceId}", "{parentResourcePath}", "{scope}"];

impl Definitions {
    /// Reads every definition file under `folder`.
    pub fn load(folder: &Path) -> Self {
        let mut files = HashMap::new();
        let mut pending = vec![folder.to_path_buf()];
        while let Some(current) = pending.pop() {
            for entry in std::fs::read_dir(&current)
                .unwrap_or_else(|error| panic!("reading {}: {error}", current.display()))
            {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else if path
                    .extension()
                    .is_some_and(|extension| extension == "json")
                {
                    let relative = path
                        .strip_prefix(folder)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    let text = std::fs::read_to_string(&path).unwrap();
                    let document: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|error| panic!("{relative} is not JSON: {error}"));
                    files.insert(relative, document);
                }
            }
        }
        let mut definitions = Definitions {
            files,
            operations: Vec::new(),
            schemas: HashMap::new(),
            models: BTreeSet::new(),
        };
        definitions.operations = definitions.read_operations();
        definitions
    }

    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// How many models (definitions) were turned into JSON Schema so far.
    pub fn models_checked(&self) -> usize {
        self.models.len()
    }

    fn read_operations(&self) -> Vec<Operation> {
        let mut operations = Vec::new();
        let mut names: Vec<&String> = self.files.keys().collect();
        names.sort();
        for file in names {
            let document = &self.files[file];
            let Some(paths) = document.get("paths").and_then(Value::as_object) else {
                continue;
            };
            let api_version = document
                .pointer("/info/version")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            for (template, item) in paths {
                if GENERIC_PARAMETERS
                    .iter()
                    .any(|generic| template.contains(generic))
                {
                    continue;
                }
                let segments: Vec<Segment> = template
                    .trim_matches('/')
                    .split('/')
                    .map(|part| {
                        if part.starts_with('{') && part.ends_with('}') {
                            Segment::Parameter
                        } else {
                            Segment::Literal(part.to_owned())
                        }
                    })
                    .collect();
                let shared_parameters = item.get("parameters").cloned().unwrap_or(json!([]));
                let shared_pointer = format!("/paths/{}/parameters", escape_pointer(template));
                for method in ["get", "put", "patch", "post", "delete", "head"] {
                    let Some(operation) = item.get(method) else {
                        continue;
                    };
                    let operation_pointer = format!("/paths/{}/{method}", escape_pointer(template));
                    let mut body = None;
                    let parameters = shared_parameters
                        .as_array()
                        .into_iter()
                        .flatten()
                        .enumerate()
                        .map(|(index, parameter)| (parameter, format!("{shared_pointer}/{index}")))
                        .chain(
                            operation
                                .get("parameters")
                                .and_then(Value::as_array)
                                .into_iter()
                                .flatten()
                                .enumerate()
                                .map(|(index, parameter)| {
                                    (parameter, format!("{operation_pointer}/parameters/{index}"))
                                }),
                        );
                    for (parameter, pointer) in parameters {
                        // A parameter `$ref` into a file not copied is a path or query
                        // parameter in every definition ferry uses: only bodies matter here.
                        let Ok((place, parameter)) = self.follow(file, parameter, pointer.clone())
                        else {
                            continue;
                        };
                        if parameter.get("in").and_then(Value::as_str) == Some("body") {
                            let required = parameter
                                .get("required")
                                .and_then(Value::as_bool)
                                .unwrap_or(false);
                            body = Some((
                                Place {
                                    file: place.file,
                                    pointer: format!("{}/schema", place.pointer),
                                },
                                required,
                            ));
                        }
                    }
                    let mut responses = BTreeMap::new();
                    for (status, response) in operation
                        .get("responses")
                        .and_then(Value::as_object)
                        .into_iter()
                        .flatten()
                    {
                        let pointer = format!("{operation_pointer}/responses/{status}");
                        let schema = match self.follow(file, response, pointer) {
                            Ok((place, response)) => response.get("schema").map(|_| Place {
                                file: place.file,
                                pointer: format!("{}/schema", place.pointer),
                            }),
                            Err(_) => None,
                        };
                        responses.insert(status.clone(), schema);
                    }
                    operations.push(Operation {
                        id: operation
                            .get("operationId")
                            .and_then(Value::as_str)
                            .unwrap_or("(no operationId)")
                            .to_owned(),
                        file: file.clone(),
                        api_version: api_version.clone(),
                        method: method.to_ascii_uppercase(),
                        segments: segments.clone(),
                        body,
                        responses,
                    });
                }
            }
        }
        operations
    }

    /// The operation an exchange calls: the matching template with the most literal segments.
    pub fn operation_for(&self, method: &str, path: &str) -> Option<&Operation> {
        self.operations
            .iter()
            .filter(|operation| operation.matches(method, path))
            .max_by_key(|operation| operation.literal_count())
    }

    /// Checks one exchange against its operation.
    pub fn check(&mut self, exchange: &Exchange) -> Verdict {
        let Some(operation) = self
            .operation_for(&exchange.method, &exchange.path)
            .cloned()
        else {
            return Verdict::NotCovered {
                reason: "no copied definition has this operation".to_owned(),
            };
        };
        let name = format!("{} ({} {})", operation.id, exchange.method, exchange.path);
        let mut problems = Vec::new();
        let mut read_only_sent = Vec::new();
        let mut left_open = BTreeSet::new();
        if exchange.api_version.as_deref() != Some(operation.api_version.as_str()) {
            problems.push(format!(
                "{name}: sent api-version {:?}, the definition ({}) is for {}",
                exchange.api_version.as_deref().unwrap_or("(none)"),
                operation.file,
                operation.api_version
            ));
        }
        match (&operation.body, &exchange.request_body) {
            (Some((place, _)), Some(body)) => {
                match self.validate(place, Side::Request, body) {
                    Ok((found, open)) => {
                        problems.extend(
                            found
                                .into_iter()
                                .map(|problem| format!("{name} request body {problem}")),
                        );
                        left_open.extend(open);
                    }
                    Err(NotCopied(file)) => {
                        return Verdict::NotCovered {
                            reason: format!("{} needs {file}, which was not copied", operation.id),
                        };
                    }
                }
                if let Ok(schema) = self.node(place) {
                    let schema = schema.clone();
                    self.read_only_properties(&place.file, &schema, body, "", &mut read_only_sent);
                }
            }
            (Some((_, true)), None) => problems.push(format!(
                "{name}: sent no request body, the definition requires one"
            )),
            (None, Some(_)) => problems.push(format!(
                "{name}: sent a request body, the definition takes none"
            )),
            _ => {}
        }
        let status = exchange.status.to_string();
        let declared = operation.responses.get(&status).cloned().or_else(|| {
            (exchange.status >= 400)
                .then(|| operation.responses.get("default").cloned())
                .flatten()
        });
        match declared {
            None if exchange.status < 400 => problems.push(format!(
                "{name}: answered {status}, the definition declares only {}",
                operation
                    .responses
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            // An error the definition gives no shape for (DiskRP declares no `default`).
            None => {}
            Some(None) if exchange.response_body.is_some() => problems.push(format!(
                "{name}: answered {status} with a body, the definition declares none"
            )),
            Some(None) => {}
            Some(Some(place)) => match &exchange.response_body {
                None => problems.push(format!(
                    "{name}: answered {status} without a body, the definition declares one"
                )),
                Some(body) => match self.validate(&place, Side::Response, body) {
                    Ok((found, open)) => {
                        problems.extend(
                            found
                                .into_iter()
                                .map(|problem| format!("{name} response {status} body {problem}")),
                        );
                        left_open.extend(open);
                    }
                    Err(NotCopied(file)) => {
                        return Verdict::NotCovered {
                            reason: format!("{} needs {file}, which was not copied", operation.id),
                        };
                    }
                },
            },
        }
        Verdict::Checked {
            operation: operation.id,
            problems,
            read_only_sent,
            left_open,
        }
    }

    /// The mismatches of `body` with the schema at `place`, each as `at POINTER: WHAT`, and
    /// the files not copied whose models were left open.
    fn validate(
        &mut self,
        place: &Place,
        side: Side,
        body: &Value,
    ) -> Result<(Vec<String>, BTreeSet<String>), NotCopied> {
        let key = (place.clone(), side);
        if !self.schemas.contains_key(&key) {
            let (schema, open) = self.json_schema(place, side)?;
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .should_validate_formats(true)
                .build(&schema)
                .unwrap_or_else(|error| {
                    panic!("the JSON Schema made from {place:?} does not compile: {error}")
                });
            self.schemas.insert(key.clone(), (validator, open));
        }
        let (validator, open) = &self.schemas[&key];
        let problems = validator
            .iter_errors(body)
            .map(|error| {
                let pointer = error.instance_path().to_string();
                let pointer = if pointer.is_empty() {
                    "/".to_owned()
                } else {
                    pointer
                };
                format!("at {pointer}: {error}")
            })
            .collect();
        Ok((problems, open.clone()))
    }

    // ---- reading the files ----------------------------------------------------------------

    /// The node at `place`. A place missing from a copied file (the stored copies of two
    /// files can be of different commits) is treated like a file not copied, and named.
    fn node(&self, place: &Place) -> Result<&Value, NotCopied> {
        let document = self
            .files
            .get(&place.file)
            .ok_or_else(|| NotCopied(place.file.clone()))?;
        document.pointer(&place.pointer).ok_or_else(|| {
            NotCopied(format!(
                "{}#{} (not in the copy)",
                place.file, place.pointer
            ))
        })
    }

    /// Follows `node`'s `$ref`s (found in `file` at `pointer`) to the node they name.
    fn follow<'a>(
        &'a self,
        file: &str,
        node: &'a Value,
        pointer: String,
    ) -> Result<(Place, &'a Value), NotCopied> {
        let mut place = Place {
            file: file.to_owned(),
            pointer,
        };
        let mut node = node;
        while let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            place = self.resolve(&place.file, reference);
            node = self.node(&place)?;
        }
        Ok((place, node))
    }

    /// The place a `$ref` written in `file` names.
    fn resolve(&self, file: &str, reference: &str) -> Place {
        let (target, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        if target.is_empty() {
            return Place {
                file: file.to_owned(),
                pointer: pointer.to_owned(),
            };
        }
        let mut parts: Vec<&str> = file.split('/').collect();
        parts.pop();
        for part in target.split('/') {
            match part {
                "." | "" => {}
                ".." => {
                    parts.pop();
                }
                part => parts.push(part),
            }
        }
        Place {
            file: parts.join("/"),
            pointer: pointer.to_owned(),
        }
    }

    // ---- Swagger to JSON Schema -----------------------------------------------------------

    /// The whole JSON Schema for the Swagger schema at `place`: the schema itself with every
    /// model it reaches under `$defs`.
    fn json_schema(
        &mut self,
        place: &Place,
        side: Side,
    ) -> Result<(Value, BTreeSet<String>), NotCopied> {
        let mut converter = Converter {
            definitions: self,
            side,
            keys: BTreeMap::new(),
            pending: Vec::new(),
            left_open: BTreeSet::new(),
        };
        let root = converter.node(place)?.clone();
        let mut schema = converter.convert(&place.file, &root)?;
        let mut converted = Map::new();
        while let Some((key, model)) = converter.pending.pop() {
            let node = converter.node(&model)?.clone();
            let model_schema = converter.convert(&model.file, &node)?;
            converted.insert(key, model_schema);
        }
        let left_open = converter.left_open;
        let models: Vec<Place> = converter.keys.into_keys().collect();
        self.models.extend(models);
        if let Value::Object(object) = &mut schema {
            object.insert("$defs".to_owned(), Value::Object(converted));
        }
        Ok((schema, left_open))
    }

    /// Pointers of the `readOnly` properties in a request body, found by walking the body and
    /// the Swagger schema together.
    fn read_only_properties(
        &self,
        file: &str,
        schema: &Value,
        body: &Value,
        pointer: &str,
        found: &mut Vec<String>,
    ) {
        let Ok((place, schema)) = self.follow(file, schema, String::new()) else {
            return;
        };
        match body {
            Value::Object(members) => {
                let shape = flatten(self, &place.file, schema);
                for (name, value) in members {
                    let inner = format!("{pointer}/{}", escape_pointer(name));
                    if let Some((property_file, property)) = shape.properties.get(name) {
                        if is_read_only(self, property_file, property) {
                            found.push(inner);
                        } else {
                            self.read_only_properties(
                                property_file,
                                property,
                                value,
                                &inner,
                                found,
                            );
                        }
                    } else if let Some((additional_file, Value::Object(additional))) =
                        &shape.additional
                    {
                        self.read_only_properties(
                            additional_file,
                            &Value::Object(additional.clone()),
                            value,
                            &inner,
                            found,
                        );
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (index, item) in items.iter().enumerate() {
                        self.read_only_properties(
                            &place.file,
                            item_schema,
                            item,
                            &format!("{pointer}/{index}"),
                            found,
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

/// An object model with its `allOf` merged in: each property with the file its schema is in.
struct Shape {
    properties: BTreeMap<String, (String, Value)>,
    required: BTreeSet<String>,
    /// The declared `additionalProperties`, with the file it is in.
    additional: Option<(String, Value)>,
    /// Files not copied that hold models of its `allOf`: their properties are unknown.
    not_copied: BTreeSet<String>,
}

/// Merges a model's own properties with those of every model in its `allOf`.
fn flatten(definitions: &Definitions, file: &str, node: &Value) -> Shape {
    let mut shape = Shape {
        properties: BTreeMap::new(),
        required: BTreeSet::new(),
        additional: None,
        not_copied: BTreeSet::new(),
    };
    for member in node
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (place, member) = match definitions.follow(file, member, String::new()) {
            Ok(found) => found,
            Err(NotCopied(missing)) => {
                shape.not_copied.insert(missing);
                continue;
            }
        };
        let inner = flatten(definitions, &place.file, member);
        shape.properties.extend(inner.properties);
        shape.required.extend(inner.required);
        shape.not_copied.extend(inner.not_copied);
        if inner.additional.is_some() {
            shape.additional = inner.additional;
        }
    }
    for (name, property) in node
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        shape
            .properties
            .insert(name.clone(), (file.to_owned(), property.clone()));
    }
    shape.required.extend(
        node.get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned),
    );
    if let Some(additional) = node.get("additionalProperties") {
        shape.additional = Some((file.to_owned(), additional.clone()));
    }
    shape
}

/// Whether a property is `readOnly`, on itself or on the model its `$ref` names.
fn is_read_only(definitions: &Definitions, file: &str, property: &Value) -> bool {
    if property.get("readOnly").and_then(Value::as_bool) == Some(true) {
        return true;
    }
    definitions
        .follow(file, property, String::new())
        .is_ok_and(|(_, target)| target.get("readOnly").and_then(Value::as_bool) == Some(true))
}

/// `/` and `~` escaped for a JSON pointer.
fn escape_pointer(text: &str) -> String {
    text.replace('~', "~0").replace('/', "~1")
}

/// One conversion to JSON Schema: the models it reached, each under a `$defs` key.
struct Converter<'a> {
    definitions: &'a Definitions,
    side: Side,
    keys: BTreeMap<Place, String>,
    pending: Vec<(String, Place)>,
    /// Files not copied whose models were left open.
    left_open: BTreeSet<String>,
}

impl Converter<'_> {
    fn node(&self, place: &Place) -> Result<&Value, NotCopied> {
        self.definitions.node(place)
    }

    /// The `$defs` key of a model, queueing its conversion the first time.
    fn key_for(&mut self, place: Place) -> String {
        if let Some(key) = self.keys.get(&place) {
            return key.clone();
        }
        let key = format!("model{}", self.keys.len());
        self.keys.insert(place.clone(), key.clone());
        self.pending.push((key.clone(), place));
        key
    }

    fn convert(&mut self, file: &str, node: &Value) -> Result<Value, NotCopied> {
        if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            let place = self.definitions.resolve(file, reference);
            if let Err(NotCopied(missing)) = self.node(&place) {
                self.left_open.insert(missing);
                return Ok(json!({}));
            }
            let key = self.key_for(place);
            return Ok(json!({"$ref": format!("#/$defs/{key}")}));
        }
        let declared_type = node.get("type").and_then(Value::as_str);
        let is_object = node.get("properties").is_some()
            || node.get("allOf").is_some()
            || declared_type == Some("object");
        let mut schema = Map::new();
        if is_object {
            let shape = flatten(self.definitions, file, node);
            self.left_open.extend(shape.not_copied.iter().cloned());
            schema.insert("type".to_owned(), json!("object"));
            let mut properties = Map::new();
            let mut required: Vec<String> = shape.required.iter().cloned().collect();
            for (name, (property_file, property)) in &shape.properties {
                let read_only = is_read_only(self.definitions, property_file, property);
                if read_only && self.side == Side::Request {
                    // Azure ignores what a request sends for a read-only property.
                    properties.insert(name.clone(), json!({}));
                    required.retain(|wanted| wanted != name);
                } else {
                    properties.insert(name.clone(), self.convert(property_file, property)?);
                }
            }
            schema.insert("properties".to_owned(), Value::Object(properties));
            if !required.is_empty() {
                schema.insert("required".to_owned(), json!(required));
            }
            match &shape.additional {
                Some((_, Value::Bool(allowed))) => {
                    schema.insert("additionalProperties".to_owned(), json!(allowed));
                }
                Some((additional_file, additional)) => {
                    let additional = self.convert(additional_file, additional)?;
                    schema.insert("additionalProperties".to_owned(), additional);
                }
                None if !shape.properties.is_empty() && shape.not_copied.is_empty() => {
                    schema.insert("additionalProperties".to_owned(), json!(false));
                }
                None => {}
            }
        } else if let Some(kind) = declared_type {
            schema.insert("type".to_owned(), json!(kind));
            if kind == "array"
                && let Some(items) = node.get("items")
            {
                schema.insert("items".to_owned(), self.convert(file, items)?);
            }
            let open_enum = node
                .pointer("/x-ms-enum/modelAsString")
                .and_then(Value::as_bool)
                == Some(true);
            if let Some(values) = node.get("enum")
                && !open_enum
            {
                schema.insert("enum".to_owned(), values.clone());
            }
            for keyword in [
                "minimum",
                "maximum",
                "exclusiveMinimum",
                "exclusiveMaximum",
                "minLength",
                "maxLength",
                "pattern",
                "minItems",
                "maxItems",
                "uniqueItems",
            ] {
                if let Some(value) = node.get(keyword) {
                    schema.insert(keyword.to_owned(), value.clone());
                }
            }
            match node.get("format").and_then(Value::as_str) {
                Some("int32") => {
                    schema
                        .entry("minimum")
                        .or_insert(json!(i64::from(i32::MIN)));
                    schema
                        .entry("maximum")
                        .or_insert(json!(i64::from(i32::MAX)));
                }
                Some(format @ ("date-time" | "uri" | "uuid")) => {
                    schema.insert("format".to_owned(), json!(format));
                }
                _ => {}
            }
        }
        if node.get("x-nullable").and_then(Value::as_bool) == Some(true)
            && let Some(kind) = schema.get("type").cloned()
        {
            schema.insert("type".to_owned(), json!([kind, "null"]));
        }
        Ok(Value::Object(schema))
    }
}

/// A path with its names and ids blanked, to list what was not covered by kind of request:
/// `/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Simulator/operations/{}`.
pub fn path_shape(path: &str) -> String {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut shaped = Vec::new();
    let mut index = 0;
    while index < parts.len() {
        let part = parts[index];
        shaped.push(part.to_owned());
        let lower = part.to_ascii_lowercase();
        if lower == "providers" && index + 1 < parts.len() {
            shaped.push(parts[index + 1].to_owned());
            index += 2;
            // Then type and name pairs; a last odd segment is an action.
            while index < parts.len() {
                shaped.push(parts[index].to_owned());
                if index + 1 < parts.len() {
                    shaped.push("{}".to_owned());
                }
                index += 2;
            }
            break;
        }
        if index + 1 < parts.len() {
            shaped.push("{}".to_owned());
        }
        index += 2;
    }
    format!("/{}", shaped.join("/"))
}
