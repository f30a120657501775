//! Attribute values and the `${...}` interpolation language used inside spec strings.
//!
//! Values are JSON values: TOML maps onto them without loss for everything a spec holds, and
//! snapshots, plans and the state file are JSON. An expression that cannot be resolved yet
//! (an output of a resource that a plan creates) stays in the string as `${...}`: a step's
//! inputs are partially evaluated at plan time and finished by the apply engine.

use std::fmt;
use std::ops::Range;

use crate::address::{Generation, Kind, ResourceAddress};

pub use serde_json::Value;

pub use crate::attributes::Attributes;

/// What a `${...}` can refer to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Expression {
    /// `${vm.nfs.private_ip}`: an output of another resource. The planner pins the generation
    /// (`${vm.nfs@g2.private_ip}`) when it leaves an expression for the apply engine to finish.
    Output {
        address: ResourceAddress,
        generation: Option<Generation>,
        output: String,
    },
    /// `${var.NAME}`: a variable from the spec's `[variables]` or `--var NAME=VALUE`.
    Variable(String),
    /// `${env.NAME}`: the environment of the process that loads the spec.
    Environment(String),
    /// `${generation}`: the generation being built, in names of replaceable resources.
    Generation,
    /// `${env.NAME@sha256:1a2b3c4d}`: a secret in a plan. The planner writes it where a value
    /// from the environment was, with the first 8 hex digits of the value's SHA-256 (see
    /// [`crate::secret::Secrets`]); the apply engine puts the value back from the environment
    /// it is given, and refuses when the value no longer has that fingerprint.
    Sealed { name: String, fingerprint: String },
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Piece by piece, as addresses are written (see there).
            Expression::Output {
                address,
                generation,
                output,
            } => {
                fmt::Display::fmt(address, f)?;
                if let Some(generation) = generation {
                    write!(f, "@g{generation}")?;
                }
                f.write_str(".")?;
                f.write_str(output)
            }
            Expression::Variable(name) => {
                f.write_str("var.")?;
                f.write_str(name)
            }
            Expression::Environment(name) => {
                f.write_str("env.")?;
                f.write_str(name)
            }
            Expression::Generation => f.write_str("generation"),
            Expression::Sealed { name, fingerprint } => {
                write!(f, "env.{name}@sha256:{fingerprint}")
            }
        }
    }
}

/// A piece of a string with interpolations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// The expression, and the byte range of the whole `${...}` in the string.
    Expression(Expression, Range<usize>),
}

/// Why the text inside `${...}` is not an expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "`${{` is never closed: end the expression with `}}`, or write `$${{` for a literal `${{`"
    )]
    Unclosed { at: Range<usize> },
    #[error(
        "`${{{text}}}` is not an expression: use kind.name.output, var.NAME, env.NAME or generation"
    )]
    Malformed { text: String, at: Range<usize> },
    #[error("`${{{text}}}` names an unknown resource kind `{kind}`")]
    UnknownKind {
        text: String,
        kind: String,
        at: Range<usize>,
    },
}

impl TemplateError {
    /// Where in the string the offending expression is.
    pub fn range(&self) -> Range<usize> {
        match self {
            TemplateError::Unclosed { at }
            | TemplateError::Malformed { at, .. }
            | TemplateError::UnknownKind { at, .. } => at.clone(),
        }
    }
}

fn is_identifier(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse_expression(text: &str, at: Range<usize>) -> Result<Expression, TemplateError> {
    let text = text.trim();
    let malformed = || TemplateError::Malformed {
        text: text.to_owned(),
        at: at.clone(),
    };
    if text == "generation" {
        return Ok(Expression::Generation);
    }
    let parts: Vec<&str> = text.split('.').collect();
    match parts.as_slice() {
        ["var", name] if is_identifier(name) => Ok(Expression::Variable((*name).to_owned())),
        ["env", name] if is_identifier(name) => Ok(Expression::Environment((*name).to_owned())),
        ["env", sealed] => match sealed.split_once("@sha256:") {
            Some((name, fingerprint))
                if is_identifier(name) && crate::secret::is_fingerprint(fingerprint) =>
            {
                Ok(Expression::Sealed {
                    name: name.to_owned(),
                    fingerprint: fingerprint.to_owned(),
                })
            }
            _ => Err(malformed()),
        },
        [kind, name, output] if is_identifier(output) => {
            let kind: Kind = kind.parse().map_err(|_| TemplateError::UnknownKind {
                text: text.to_owned(),
                kind: (*kind).to_owned(),
                at: at.clone(),
            })?;
            let (name, generation) = match name.split_once("@g") {
                Some((name, digits)) => (
                    name,
                    Some(digits.parse::<Generation>().map_err(|_| malformed())?),
                ),
                None => (*name, None),
            };
            if !is_identifier(name) {
                return Err(malformed());
            }
            Ok(Expression::Output {
                address: ResourceAddress::new(kind, name),
                generation,
                output: (*output).to_owned(),
            })
        }
        _ => Err(malformed()),
    }
}

/// Splits a string into literal text and `${...}` expressions; `$${` is a literal `${`.
pub fn parse_template(text: &str) -> Result<Vec<Segment>, TemplateError> {
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(position) = find_open(rest) {
        if rest[..position].ends_with('$') {
            literal.push_str(&rest[..position - 1]);
            literal.push_str("${");
            rest = &rest[position + 2..];
            offset += position + 2;
            continue;
        }
        literal.push_str(&rest[..position]);
        let start = offset + position;
        let Some(close) = rest[position..].find('}') else {
            return Err(TemplateError::Unclosed {
                at: start..text.len(),
            });
        };
        let end = start + close + 1;
        let expression = parse_expression(&text[start + 2..end - 1], start..end)?;
        if !literal.is_empty() {
            segments.push(Segment::Literal(std::mem::take(&mut literal)));
        }
        segments.push(Segment::Expression(expression, start..end));
        rest = &text[end..];
        offset = end;
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal));
    }
    Ok(segments)
}

/// Where the first `${` of `text` starts.
///
/// Looks for the `$` byte, which the standard library finds with its fast byte search, and
/// then at the byte after it: the searcher of a two-byte `&str` pattern costs more to set up
/// than most of these short strings take to read, and every field of every instance is asked
/// (4 % of a large plan's instructions).
pub fn find_open(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text[from..].find('$') {
        let at = from + found;
        if text.as_bytes().get(at + 1) == Some(&b'{') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Whether `text` holds a `${` (an expression, or an escaped `$${`).
pub fn holds_open(text: &str) -> bool {
    find_open(text).is_some()
}

/// Whether a value holds a `${` anywhere (an expression, or an escaped `$${`): one that does
/// not is the same after [`resolve`] and [`resolve_in_place`], and need not go through them.
pub fn has_expression(value: &Value) -> bool {
    match value {
        Value::String(text) => holds_open(text),
        Value::Array(items) => items.iter().any(has_expression),
        Value::Object(map) => map.values().any(has_expression),
        _ => false,
    }
}

/// Every expression in a value, with the path of the string it sits in (`env.KUBECONFIG`,
/// `values[0]`). Strings that do not parse are skipped: the spec loader reports those.
pub fn expressions(value: &Value) -> Vec<(String, Expression)> {
    let mut found = Vec::new();
    walk_strings(value, String::new(), &mut |path, text| {
        if let Ok(segments) = parse_template(text) {
            for segment in segments {
                if let Segment::Expression(expression, _) = segment {
                    found.push((path.to_owned(), expression));
                }
            }
        }
    });
    found
}

fn walk_strings(value: &Value, path: String, visit: &mut dyn FnMut(&str, &str)) {
    match value {
        Value::String(text) => visit(&path, text),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                walk_strings(item, format!("{path}[{index}]"), visit);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk_strings(item, child, visit);
            }
        }
        _ => {}
    }
}

/// Writes a literal `${` as `$${`, as resolved values keep it until [`finish`].
pub fn escape_literal(text: &str) -> String {
    text.replace("${", "$${")
}

/// Appends `text` with a literal `${` escaped, as [`escape_literal`] does, without a copy of
/// the (usual) text that holds none.
fn push_escaped(out: &mut String, text: &str) {
    if holds_open(text) {
        out.push_str(&escape_literal(text));
    } else {
        out.push_str(text);
    }
}

/// Replaces every expression that `lookup` can answer and leaves the others as `${...}`.
///
/// A string that is exactly one expression takes the looked-up value whole, so a list output
/// stays a list. Literal `${` in the result stays escaped as `$${` until [`finish`].
pub fn resolve(value: &Value, lookup: &dyn Fn(&Expression) -> Option<Value>) -> Value {
    let mut resolved = value.clone();
    resolve_in_place(&mut resolved, &|_| None, lookup);
    resolved
}

/// Resolves `value` where it stands: each expression is first given to `rewrite` (which may
/// pin it: `${vm.nfs.id}` to `${vm.nfs@g2.id}`), and what comes out to `lookup`, as
/// [`resolve`] does; one that `lookup` cannot answer is written back rewritten.
///
/// One pass that reads each string once and touches only strings holding `${`: resolving an
/// instance's fields is done for every instance by the observer and again by the planner, and
/// a rewrite followed by a resolve rebuilt every table and list twice (6 % of a
/// 100,000-resource `ferry plan`).
pub fn resolve_in_place(
    value: &mut Value,
    rewrite: &dyn Fn(&Expression) -> Option<Expression>,
    lookup: &dyn Fn(&Expression) -> Option<Value>,
) {
    match value {
        Value::String(text) if holds_open(text) => {
            let Ok(segments) = parse_template(text) else {
                return;
            };
            let rewritten = |expression: Expression| rewrite(&expression).unwrap_or(expression);
            let mut segments = segments.into_iter().map(|segment| match segment {
                Segment::Expression(expression, at) => {
                    Segment::Expression(rewritten(expression), at)
                }
                literal => literal,
            });
            let first = segments.next();
            let second = segments.next();
            if let (Some(Segment::Expression(expression, _)), None) = (&first, &second)
                && let Some(found) = lookup(expression)
            {
                *value = match found {
                    Value::String(text) => Value::String(escape_literal(&text)),
                    other => other,
                };
                return;
            }
            let mut out = String::with_capacity(text.len());
            for segment in first.into_iter().chain(second).chain(segments) {
                match segment {
                    Segment::Literal(text) => push_escaped(&mut out, &text),
                    Segment::Expression(expression, _) => match lookup(&expression) {
                        Some(Value::String(text)) => push_escaped(&mut out, &text),
                        Some(other) => push_escaped(&mut out, &other.to_string()),
                        None => {
                            out.push_str("${");
                            out.push_str(&expression.to_string());
                            out.push('}');
                        }
                    },
                }
            }
            *text = out;
        }
        Value::Array(items) => {
            for item in items {
                resolve_in_place(item, rewrite, lookup);
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                resolve_in_place(item, rewrite, lookup);
            }
        }
        _ => {}
    }
}

/// The expressions still unresolved in a value, each once, sorted.
pub fn unresolved(value: &Value) -> Vec<Expression> {
    let mut found: Vec<Expression> = expressions(value).into_iter().map(|(_, e)| e).collect();
    found.sort();
    found.dedup();
    found
}

/// Turns a fully resolved value into what a provider receives: `$${` becomes `${` again.
///
/// Returns the first unresolved expression if there is one: a provider never sees one.
pub fn finish(value: &Value) -> Result<Value, Expression> {
    if let Some(first) = unresolved(value).into_iter().next() {
        return Err(first);
    }
    Ok(unescape(value))
}

fn unescape(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(text.replace("$${", "${")),
        Value::Array(items) => Value::Array(items.iter().map(unescape).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| (key.clone(), unescape(item)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn output(address: &str, output: &str) -> Expression {
        let instance: crate::InstanceAddress = address.parse().unwrap();
        Expression::Output {
            address: instance.address,
            generation: instance.generation,
            output: output.to_owned(),
        }
    }

    #[test]
    fn templates_split_into_literals_and_expressions() {
        let segments = parse_template("http://${public_ip.ingress.address}:${var.port}/").unwrap();
        assert_eq!(
            segments,
            vec![
                Segment::Literal("http://".into()),
                Segment::Expression(output("public_ip.ingress", "address"), 7..35),
                Segment::Literal(":".into()),
                Segment::Expression(Expression::Variable("port".into()), 36..47),
                Segment::Literal("/".into()),
            ]
        );
        assert_eq!(
            parse_template("${vm.nfs@g2.id}").unwrap(),
            vec![Segment::Expression(output("vm.nfs@g2", "id"), 0..15)]
        );
        assert_eq!(
            parse_template("${env.API_TOKEN@sha256:1a2b3c4d}").unwrap(),
            vec![Segment::Expression(
                Expression::Sealed {
                    name: "API_TOKEN".into(),
                    fingerprint: "1a2b3c4d".into()
                },
                0..32
            )]
        );
        assert!(parse_template("${env.API_TOKEN@sha256:xyz}").is_err());
        assert_eq!(
            parse_template("cost $${HOME}").unwrap(),
            vec![Segment::Literal("cost ${HOME}".into())]
        );
    }

    #[test]
    fn malformed_templates_say_what_is_allowed() {
        let errors: Vec<String> = ["${vm.nfs", "${vm}", "${virtual.nfs.ip}", "${var.}"]
            .into_iter()
            .map(|text| parse_template(text).unwrap_err().to_string())
            .collect();
        assert_eq!(
            errors,
            [
                "`${` is never closed: end the expression with `}`, or write `$${` for a literal `${`",
                "`${vm}` is not an expression: use kind.name.output, var.NAME, env.NAME or generation",
                "`${virtual.nfs.ip}` names an unknown resource kind `virtual`",
                "`${var.}` is not an expression: use kind.name.output, var.NAME, env.NAME or generation",
            ]
        );
    }

    /// The two passes [`resolve_in_place`] replaced, as they were: a rewrite that rebuilt the
    /// value, then a resolution of the rewritten text. The oracle the one pass must agree with.
    mod two_passes {
        use super::super::*;

        pub fn rewrite(value: &Value, with: &dyn Fn(&Expression) -> Option<Expression>) -> Value {
            match value {
                Value::String(text) => {
                    let Ok(segments) = parse_template(text) else {
                        return value.clone();
                    };
                    if !segments
                        .iter()
                        .any(|segment| matches!(segment, Segment::Expression(..)))
                    {
                        return value.clone();
                    }
                    let mut out = String::new();
                    for segment in segments {
                        match segment {
                            Segment::Literal(text) => out.push_str(&escape_literal(&text)),
                            Segment::Expression(expression, _) => {
                                let expression = with(&expression).unwrap_or(expression);
                                out.push_str(&format!("${{{expression}}}"));
                            }
                        }
                    }
                    Value::String(out)
                }
                Value::Array(items) => {
                    Value::Array(items.iter().map(|item| rewrite(item, with)).collect())
                }
                Value::Object(map) => Value::Object(
                    map.iter()
                        .map(|(key, item)| (key.clone(), rewrite(item, with)))
                        .collect(),
                ),
                other => other.clone(),
            }
        }

        pub fn resolve(value: &Value, lookup: &dyn Fn(&Expression) -> Option<Value>) -> Value {
            match value {
                Value::String(text) => {
                    let Ok(segments) = parse_template(text) else {
                        return value.clone();
                    };
                    if let [Segment::Expression(expression, _)] = segments.as_slice()
                        && let Some(found) = lookup(expression)
                    {
                        return match found {
                            Value::String(text) => Value::String(escape_literal(&text)),
                            other => other,
                        };
                    }
                    let mut out = String::new();
                    for segment in segments {
                        match segment {
                            Segment::Literal(text) => out.push_str(&escape_literal(&text)),
                            Segment::Expression(expression, _) => match lookup(&expression) {
                                Some(Value::String(text)) => out.push_str(&escape_literal(&text)),
                                Some(other) => out.push_str(&escape_literal(&other.to_string())),
                                None => out.push_str(&format!("${{{expression}}}")),
                            },
                        }
                    }
                    Value::String(out)
                }
                Value::Array(items) => {
                    Value::Array(items.iter().map(|item| resolve(item, lookup)).collect())
                }
                Value::Object(map) => Value::Object(
                    map.iter()
                        .map(|(key, item)| (key.clone(), resolve(item, lookup)))
                        .collect(),
                ),
                other => other.clone(),
            }
        }
    }

    #[test]
    fn one_pass_resolves_as_a_rewrite_then_a_resolution() {
        let texts = [
            "plain",
            "",
            "${vm.nfs.ip}",
            "${vm.nfs@g2.ip}",
            "${vm.nfs.ips}",
            "${disk.home.id}",
            "${generation}",
            "ip=${vm.nfs.ip}, disk ${disk.home.id}.",
            "$${vm.nfs.ip} is written, ${vm.nfs.ip} is read",
            "$${not an expression",
            "$$${vm.nfs.ip}",
            "a$${b}${vm.nfs.ip}$${c}",
            "${vm.nfs.ip}${vm.nfs.ips}",
            "${unclosed",
            "${vm.nfs.ip} and ${not valid}",
            "${var.region}-${env.HOME}",
        ];
        let mut values: Vec<Value> = texts.iter().map(|text| json!(text)).collect();
        values.push(json!({"env": {"A": texts[7], "B": [texts[2], 3, texts[8]]}, "n": 4}));
        values.push(json!([texts[4], null, true, {"x": texts[10]}]));
        // Pins every output of `vm.nfs` to g2, as the planner does; `disk` has no generation.
        let pin = |expression: &Expression| match expression {
            Expression::Output {
                address,
                generation: None,
                output,
            } if address.name == "nfs" => Some(Expression::Output {
                address: address.clone(),
                generation: Some(2),
                output: output.clone(),
            }),
            _ => None,
        };
        let lookup = |expression: &Expression| match expression.to_string().as_str() {
            "vm.nfs@g2.ip" => Some(json!("10.0.0.4")),
            "vm.nfs@g2.ips" => Some(json!(["10.0.0.4", "10.0.0.5"])),
            "generation" => Some(json!(2)),
            "var.region" => Some(json!("a${b")),
            _ => None,
        };
        for value in values {
            let expected = two_passes::resolve(&two_passes::rewrite(&value, &pin), &lookup);
            let mut resolved = value.clone();
            resolve_in_place(&mut resolved, &pin, &lookup);
            assert_eq!(resolved, expected, "resolving {value}");
            assert_eq!(
                resolve(&value, &lookup),
                two_passes::resolve(&value, &lookup),
                "resolving {value} without a rewrite"
            );
        }
    }

    #[test]
    fn resolution_is_partial_and_keeps_whole_values() {
        let value = json!({
            "ips": "${vm.nfs.ips}",
            "url": "https://${dns_record.prod.fqdn}/hub?x=$${y}",
            "kept": "${aks_cluster.hub.fqdn}",
        });
        let lookup = |expression: &Expression| match expression.to_string().as_str() {
            "vm.nfs.ips" => Some(json!(["127.0.0.5"])),
            "dns_record.prod.fqdn" => Some(json!("hub.example.org")),
            _ => None,
        };
        let resolved = resolve(&value, &lookup);
        assert_eq!(
            resolved,
            json!({
                "ips": ["127.0.0.5"],
                "url": "https://hub.example.org/hub?x=$${y}",
                "kept": "${aks_cluster.hub.fqdn}",
            })
        );
        assert_eq!(finish(&resolved), Err(output("aks_cluster.hub", "fqdn")));
        let all = resolve(&resolved, &|_| Some(json!("h")));
        assert_eq!(
            finish(&all).unwrap(),
            json!({"ips": ["127.0.0.5"], "url": "https://hub.example.org/hub?x=${y}", "kept": "h"})
        );
    }
}
