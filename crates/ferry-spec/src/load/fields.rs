//! Reading one value against its schema: TOML to JSON, substitution of variables and the
//! environment, the `${...}` expressions allowed where it sits, its type and its range.

use std::ops::Range;
use std::sync::Arc;

use ferry_core::provider::{FieldSchema, FieldType};
use ferry_core::value::{self, Expression, Segment};
use ferry_core::{Attributes, Kind, ResourceAddress, RuleBook, Value};
use toml::de::{DeTable, DeValue};

use super::paths::{PathSegment, collect_strings, inner_span, navigate, path_text};
use super::{Loader, Node, place};
use crate::error::{Place, Problem, SourceFile, SpecError};
use crate::suggest::did_you_mean;

pub(super) fn found_type(value: &Value, node: &Node<'_>) -> &'static str {
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
fn type_mismatch(field_type: FieldType, value: &Value) -> Option<(Vec<PathSegment>, String)> {
    // Null stands for an integer too large to read, which is reported already.
    if value.is_null() || is_unresolved_variable(value) {
        return None;
    }
    let is_string = |value: &Value| value.is_string() || is_unresolved_variable(value);
    let list_of_strings = |value: &Value| -> Option<(Vec<PathSegment>, String)> {
        let Some(items) = value.as_array() else {
            return Some((Vec::new(), field_type.describe()));
        };
        items
            .iter()
            .position(|item| !is_string(item))
            .map(|index| (vec![PathSegment::Index(index)], "a string".to_owned()))
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
                .map(|(key, _)| (vec![PathSegment::Key(key.clone())], "a string".to_owned()))
        }
        FieldType::Table => (!value.is_object()).then(|| (Vec::new(), field_type.describe())),
    }
}

/// What `${...}` may name where a string sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Allowed {
    /// In a resource: everything.
    Everything,
    /// In `[variables]`: only `${env.X}`.
    EnvironmentOnly,
    /// In the other blocks: variables and the environment, known when the spec loads.
    VariablesAndEnvironment,
}

/// A `${kind.name.output}` found in a resource, to check once every resource is known.
#[derive(Debug)]
pub(super) struct OutputUse {
    pub(super) field: String,
    pub(super) address: ResourceAddress,
    pub(super) output: String,
    pub(super) place: Place,
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
pub(super) struct TableRead<'d, 'i> {
    pub(super) values: Attributes,
    /// The node of each field read, in the table's order (by name): a block's checks point
    /// at them; a resource's are dropped with its part of the document.
    nodes: Vec<(&'d str, &'d Node<'i>)>,
    pub(super) clean: bool,
    pub(super) outputs: Vec<OutputUse>,
}

impl<'d, 'i> TableRead<'d, 'i> {
    /// The node of a field that was read.
    pub(super) fn node(&self, name: &str) -> Option<&'d Node<'i>> {
        self.nodes
            .iter()
            .find(|(field, _)| *field == name)
            .map(|(_, node)| *node)
    }
}

impl Loader<'_> {
    /// TOML to JSON; integers that do not fit in 64 bits are reported.
    pub(super) fn json_of(&mut self, file: &Arc<SourceFile>, node: &Node<'_>) -> Value {
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
        if !value::has_expression(&value) {
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
    pub(super) fn record_secrets(&mut self, value: &Value) {
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
    pub(super) fn check_expressions(
        &mut self,
        file: &Arc<SourceFile>,
        field: &str,
        node: &Node<'_>,
        value: &Value,
        allowed: Allowed,
        within: &str,
    ) -> Vec<OutputUse> {
        // A value with no `${` has no expression to check (most values): no template to read.
        if !value::has_expression(value) {
            return Vec::new();
        }
        let mut strings = Vec::new();
        collect_strings(
            value,
            &mut vec![PathSegment::Key(field.to_owned())],
            &mut strings,
        );
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
            let mut full = vec![PathSegment::Key(schema.name.to_owned())];
            full.extend(path.iter().cloned());
            let at = navigate(node, &path);
            let mut found_value = &value;
            for segment in &path {
                found_value = match segment {
                    PathSegment::Key(key) => &found_value[key.as_str()],
                    PathSegment::Index(index) => &found_value[*index],
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
    pub(super) fn read_table<'d, 'i>(
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
            values: Attributes::with_capacity(table.len()),
            nodes: Vec::with_capacity(table.len()),
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
            read.nodes.push((name, node));
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
}
