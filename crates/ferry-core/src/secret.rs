//! Secrets: a wrapper that keeps one secret out of plans, logs and error messages, and the
//! secrets a spec read from the environment, which ferry seals in plans and masks in output.
//!
//! A value from the environment (`${env.NAME}`) is a secret by default. The planner replaces
//! it in every step's inputs and changes by a sealed reference, `${env.NAME@sha256:1a2b3c4d}`
//! (the variable's name and the first 8 hex digits of the value's SHA-256), so that a plan,
//! its JSON and a saved plan never hold it; the apply engine puts the value back from the
//! environment it is given, and refuses when the value no longer has that fingerprint. People
//! see `[redacted env.NAME sha256:1a2b3c4d]`: enough to tell that it changed, nothing to
//! recover it from.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::value::{Segment, Value, escape_literal};

/// A secret value (a client secret, a TSIG key, a private key's passphrase).
///
/// `Debug` and `Display` print `[redacted]`; the only way to the text is [`Secret::expose`],
/// which makes every use easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first 8 hex digits of the value's SHA-256.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How many hex digits of the SHA-256 a fingerprint keeps: enough to see a change, too few to
/// confirm a guess of a strong secret.
pub const FINGERPRINT_DIGITS: usize = 8;

/// A secret shorter than this is masked in free text (a hook's output, an error) and inside
/// longer strings only when it is the whole string: masking every `1` in a hook's output would
/// hide everything and protect nothing.
pub const SHORTEST_MASKED: usize = 4;

/// The first [`FINGERPRINT_DIGITS`] hex digits of the SHA-256 of `value`.
pub fn fingerprint(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .take(FINGERPRINT_DIGITS / 2)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether `text` has the shape of a [`fingerprint`].
pub fn is_fingerprint(text: &str) -> bool {
    text.len() == FINGERPRINT_DIGITS
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// How people see a secret: `[redacted env.NAME sha256:1a2b3c4d]`.
pub fn redacted(name: &str, fingerprint: &str) -> String {
    format!("[redacted env.{name} sha256:{fingerprint}]")
}

/// The sealed reference that stands for a secret in a plan: `${env.NAME@sha256:1a2b3c4d}`.
pub fn sealed(name: &str, fingerprint: &str) -> String {
    format!("${{env.{name}@sha256:{fingerprint}}}")
}

/// Every sealed reference in `text` that is not escaped as `$${`: its byte range, name and
/// fingerprint.
fn sealed_references(text: &str) -> Vec<(std::ops::Range<usize>, &str, &str)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(position) = text[from..].find("${env.") {
        let start = from + position;
        from = start + 2;
        if text[..start].ends_with('$') {
            continue;
        }
        let Some(length) = text[start..].find('}') else {
            break;
        };
        let inside = &text[start + "${env.".len()..start + length];
        if let Some((name, fingerprint)) = inside.split_once("@sha256:")
            && !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && is_fingerprint(fingerprint)
        {
            found.push((start..start + length + 1, name, fingerprint));
            from = start + length + 1;
        }
    }
    found
}

/// `text` with every sealed reference shown as people see a secret, or `None` when it has none.
pub fn display_sealed(text: &str) -> Option<String> {
    let references = sealed_references(text);
    if references.is_empty() {
        return None;
    }
    let mut shown = String::new();
    let mut at = 0;
    for (range, name, fingerprint) in references {
        shown.push_str(&text[at..range.start]);
        shown.push_str(&redacted(name, fingerprint));
        at = range.end;
    }
    shown.push_str(&text[at..]);
    Some(shown)
}

/// Why a sealed reference cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(
        "the plan needs the secret in the environment variable {name} (sha256:{fingerprint}), and it is not set: set it as it was when the plan was made, or plan again"
    )]
    Unset { name: String, fingerprint: String },
    #[error(
        "the environment variable {name} changed since the plan was made (sha256:{planned} then, sha256:{now} now): plan again to see what the new value changes"
    )]
    Changed {
        name: String,
        planned: String,
        now: String,
    },
}

/// The secrets a spec read from the environment, by variable name.
///
/// `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    by_name: BTreeMap<String, Secret>,
    /// (text, name, fingerprint), longest text first, so that a secret holding another is
    /// sealed whole.
    longest_first: Vec<(String, String, String)>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.by_name.keys()).finish()
    }
}

impl Secrets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the environment variable `name` holds `value`. An empty value is no
    /// secret and is not recorded.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        if value.is_empty() {
            return;
        }
        self.longest_first.retain(|(_, known, _)| *known != name);
        self.longest_first
            .push((value.clone(), name.clone(), fingerprint(&value)));
        self.longest_first
            .sort_by(|left, right| right.0.len().cmp(&left.0.len()).then(left.1.cmp(&right.1)));
        self.by_name.insert(name, Secret::new(value));
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.by_name.get(name)
    }

    /// The names of the environment variables, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Adds every secret of `other`.
    pub fn extend(&mut self, other: &Secrets) {
        for (name, secret) in &other.by_name {
            self.insert(name.clone(), secret.expose());
        }
    }

    /// The value a sealed reference stands for, when the environment still holds it.
    pub fn open(&self, name: &str, planned: &str) -> Result<&Secret, SealError> {
        match self.by_name.get(name) {
            None => Err(SealError::Unset {
                name: name.to_owned(),
                fingerprint: planned.to_owned(),
            }),
            Some(secret) if secret.fingerprint() != planned => Err(SealError::Changed {
                name: name.to_owned(),
                planned: planned.to_owned(),
                now: secret.fingerprint(),
            }),
            Some(secret) => Ok(secret),
        }
    }

    /// Replaces each secret in `text` by `replacement(name, fingerprint)`; `escaped` says that
    /// `text` keeps a literal `${` as `$${` (a plan's values), so a secret is looked for in
    /// that form. A secret is replaced where it is the whole text, or anywhere when it has at
    /// least [`SHORTEST_MASKED`] characters (`whole_only` keeps it to the first).
    fn replace(
        &self,
        text: &str,
        escaped: bool,
        whole_only_when_short: bool,
        replacement: &dyn Fn(&str, &str) -> String,
    ) -> Option<String> {
        if self.longest_first.is_empty() {
            return None;
        }
        let searched: Vec<(String, &str, &str)> = self
            .longest_first
            .iter()
            .map(|(value, name, fingerprint)| {
                let value = if escaped {
                    escape_literal(value)
                } else {
                    value.clone()
                };
                (value, name.as_str(), fingerprint.as_str())
            })
            .collect();
        if let Some((_, name, fingerprint)) = searched.iter().find(|(value, ..)| value == text) {
            return Some(replacement(name, fingerprint));
        }
        let long: Vec<&(String, &str, &str)> = searched
            .iter()
            .filter(|(value, ..)| {
                value.chars().count() >= SHORTEST_MASKED || !whole_only_when_short
            })
            .collect();
        if !long.iter().any(|(value, ..)| text.contains(value.as_str())) {
            return None;
        }
        // One pass, longest first at each place, so that a replacement is never searched again.
        let mut out = String::new();
        let mut at = 0;
        while at < text.len() {
            match long
                .iter()
                .find(|(value, ..)| text[at..].starts_with(value.as_str()))
            {
                Some((value, name, fingerprint)) => {
                    out.push_str(&replacement(name, fingerprint));
                    at += value.len();
                }
                None => {
                    let next = text[at..].chars().next().map_or(1, char::len_utf8);
                    out.push_str(&text[at..at + next]);
                    at += next;
                }
            }
        }
        Some(out)
    }

    /// Free text (a hook's output line, an error message) with every secret shown as
    /// `[redacted env.NAME sha256:…]`.
    pub fn mask(&self, text: &str) -> String {
        // In free text even a whole line equal to a short secret stays: only long ones are masked.
        if self
            .longest_first
            .iter()
            .all(|(value, ..)| value.chars().count() < SHORTEST_MASKED)
        {
            return text.to_owned();
        }
        let long = Secrets {
            by_name: BTreeMap::new(),
            longest_first: self
                .longest_first
                .iter()
                .filter(|(value, ..)| value.chars().count() >= SHORTEST_MASKED)
                .cloned()
                .collect(),
        };
        long.replace(text, false, true, &redacted)
            .unwrap_or_else(|| text.to_owned())
    }

    /// A plan's value (literal `${` kept as `$${`) with every secret replaced by its sealed
    /// reference, which the apply engine resolves.
    pub fn seal(&self, value: &Value) -> Value {
        self.map_strings(value, &|text| {
            // Only literal text is sealed: an expression left for the engine (`${hook.a@g2.url}`)
            // stays whole even when a secret is part of its text.
            let segments = match crate::value::parse_template(text) {
                Ok(segments)
                    if segments
                        .iter()
                        .any(|segment| matches!(segment, Segment::Expression(..))) =>
                {
                    segments
                }
                _ => return self.replace(text, true, true, &sealed),
            };
            let mut out = String::new();
            let mut changed = false;
            for segment in segments {
                match segment {
                    Segment::Literal(literal) => {
                        let literal = escape_literal(&literal);
                        match self.replace(&literal, true, true, &sealed) {
                            Some(replaced) => {
                                changed = true;
                                out.push_str(&replaced);
                            }
                            None => out.push_str(&literal),
                        }
                    }
                    Segment::Expression(expression, _) => {
                        out.push_str("${");
                        out.push_str(&expression.to_string());
                        out.push('}');
                    }
                }
            }
            changed.then_some(out)
        })
    }

    /// A plain value (an output, a reading) with every secret replaced by its sealed reference.
    pub fn seal_raw(&self, value: &Value) -> Value {
        self.map_strings(value, &|text| self.replace(text, false, true, &sealed))
    }

    /// A plain value with every sealed reference whose secret still has its fingerprint
    /// replaced by the secret; the others stay sealed (a reading of an older value).
    pub fn unseal_raw(&self, value: &Value) -> Value {
        self.map_strings(value, &|text| {
            let references = sealed_references(text);
            if references.is_empty() {
                return None;
            }
            let mut out = String::new();
            let mut at = 0;
            for (range, name, fingerprint) in references {
                out.push_str(&text[at..range.start]);
                match self.open(name, fingerprint) {
                    Ok(secret) => out.push_str(secret.expose()),
                    Err(_) => out.push_str(&text[range.clone()]),
                }
                at = range.end;
            }
            out.push_str(&text[at..]);
            Some(out)
        })
    }

    /// A plan with every secret sealed: in each step's inputs (which the engine resolves) and
    /// changes (both sides of a diff), and shown redacted in its reasons, warnings and notes.
    /// Planning compares plain values; this is what leaves the planner.
    pub fn seal_plan(&self, plan: &mut crate::Plan) {
        if self.is_empty() {
            return;
        }
        for step in &mut plan.steps {
            for value in step.inputs.values_mut() {
                *value = self.seal(value);
            }
            // A creation's changes are read from its inputs, sealed just above.
            for change in step.changes.listed_mut().into_iter().flatten() {
                for side in [&mut change.before, &mut change.after]
                    .into_iter()
                    .flatten()
                {
                    *side = self.seal(side);
                }
            }
            step.reason = self.mask_whole(&step.reason);
            if let Some(warning) = &mut step.warning {
                *warning = self.mask_whole(warning);
            }
        }
        for note in &mut plan.notes {
            *note = self.mask_whole(note);
        }
        // A reading's reason may quote a value from the spec (a URL a check could not reach).
        for unknown in &mut plan.unknown {
            unknown.reason = self.mask_whole(&unknown.reason);
        }
        for warning in &mut plan.warnings {
            warning.reason = self.mask_whole(&warning.reason);
        }
        if let Some(due) = &mut plan.failover_due {
            *due = self.mask_whole(due);
        }
    }

    /// Free text a plan holds, masked even where a short secret is the whole text.
    fn mask_whole(&self, text: &str) -> String {
        self.replace(text, false, true, &redacted)
            .unwrap_or_else(|| text.to_owned())
    }

    /// A snapshot whose readings hold sealed references (a hook's remembered inputs, sealed
    /// by the engine) with each opened while its secret still has its fingerprint, so that
    /// the planner compares plain values; a reading of an older value stays sealed.
    pub fn unseal_snapshot(&self, snapshot: &crate::Snapshot) -> crate::Snapshot {
        let mut unsealed = snapshot.clone();
        if self.is_empty() {
            return unsealed;
        }
        for observation in unsealed.resources.values_mut() {
            if let crate::Observation::Present { attributes, .. } = observation {
                for value in attributes.values_mut() {
                    *value = self.unseal_raw(value);
                }
            }
        }
        unsealed
    }

    fn map_strings(&self, value: &Value, change: &dyn Fn(&str) -> Option<String>) -> Value {
        if self.is_empty() {
            return value.clone();
        }
        match value {
            Value::String(text) => change(text).map_or_else(|| value.clone(), Value::String),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| self.map_strings(item, change))
                    .collect(),
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(key, item)| (key.clone(), self.map_strings(item, change)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "[redacted] [redacted]");
        assert_eq!(secret.expose(), "hunter2");
        let mut secrets = Secrets::new();
        secrets.insert("API_TOKEN", "hunter2");
        assert_eq!(format!("{secrets:?}"), "{\"API_TOKEN\"}");
    }

    fn secrets() -> Secrets {
        let mut secrets = Secrets::new();
        secrets.insert("API_TOKEN", "s3cr3t-token");
        secrets.insert("LONGER", "s3cr3t-token-2");
        secrets.insert("SHORT", "ab");
        secrets
    }

    #[test]
    fn values_are_sealed_longest_first_and_unsealed_while_their_fingerprint_holds() {
        let secrets = secrets();
        let token = fingerprint("s3cr3t-token");
        let value = json!({
            "env": {"A": "s3cr3t-token", "B": "Bearer s3cr3t-token-2", "C": "ab", "D": "tab"},
            "literal": "$${HOME} s3cr3t-token",
            "count": 2,
        });
        let sealed_value = secrets.seal(&value);
        assert_eq!(
            sealed_value,
            json!({
                "env": {
                    "A": format!("${{env.API_TOKEN@sha256:{token}}}"),
                    "B": format!("Bearer ${{env.LONGER@sha256:{}}}", fingerprint("s3cr3t-token-2")),
                    "C": format!("${{env.SHORT@sha256:{}}}", fingerprint("ab")),
                    "D": "tab",
                },
                "literal": format!("$${{HOME}} ${{env.API_TOKEN@sha256:{token}}}"),
                "count": 2,
            })
        );
        let raw = json!({"B": sealed_value["env"]["B"], "A": sealed_value["env"]["A"]});
        assert_eq!(
            secrets.unseal_raw(&raw),
            json!({"B": "Bearer s3cr3t-token-2", "A": "s3cr3t-token"})
        );
        let mut changed = Secrets::new();
        changed.insert("API_TOKEN", "another");
        assert_eq!(changed.unseal_raw(&raw)["A"], raw["A"]);
        assert_eq!(
            display_sealed(sealed_value["env"]["B"].as_str().unwrap()).unwrap(),
            format!(
                "Bearer [redacted env.LONGER sha256:{}]",
                fingerprint("s3cr3t-token-2")
            )
        );
    }

    #[test]
    fn a_plans_reasons_notes_and_readings_are_masked() {
        let mut plan: crate::Plan = serde_json::from_value(json!({
            "format_version": "1",
            "steps": [{
                "id": "hook.a@g1:run", "address": "hook.a@g1", "action": "run",
                "reason": "changed: s3cr3t-token", "after": [], "estimate_seconds": 1,
                "warning": "s3cr3t-token"
            }],
            "critical_path": [],
            "estimated_seconds": 1,
            "summary": {},
            "notes": ["note s3cr3t-token"],
            "unknown": [{"address": "check.a", "reason": "GET https://s3cr3t-token@hub failed"}],
            "warnings": [{"address": "vm.a@g1", "reason": "s3cr3t-token down"}],
            "failover_due": "ab"
        }))
        .unwrap();
        secrets().seal_plan(&mut plan);
        let text = serde_json::to_string(&plan).unwrap();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert_eq!(
            plan.failover_due.unwrap(),
            redacted("SHORT", &fingerprint("ab"))
        );
    }

    #[test]
    fn an_expression_left_for_the_engine_is_never_sealed_inside() {
        let mut secrets = Secrets::new();
        secrets.insert("WORD", "hook");
        let value = json!("${hook.a@g2.url}/hook?x=$${y}");
        assert_eq!(
            secrets.seal(&value),
            json!(format!(
                "${{hook.a@g2.url}}/${{env.WORD@sha256:{}}}?x=$${{y}}",
                fingerprint("hook")
            ))
        );
    }

    #[test]
    fn free_text_is_masked_but_not_for_short_secrets() {
        let secrets = secrets();
        assert_eq!(
            secrets.mask("token s3cr3t-token-2 and s3cr3t-token, ab"),
            format!(
                "token [redacted env.LONGER sha256:{}] and [redacted env.API_TOKEN sha256:{}], ab",
                fingerprint("s3cr3t-token-2"),
                fingerprint("s3cr3t-token")
            )
        );
    }

    #[test]
    fn a_sealed_reference_opens_only_with_the_value_it_was_made_from() {
        let secrets = secrets();
        let planned = fingerprint("s3cr3t-token");
        assert_eq!(
            secrets.open("API_TOKEN", &planned).unwrap().expose(),
            "s3cr3t-token"
        );
        let errors = [
            secrets.open("API_TOKEN", "00000000").unwrap_err(),
            secrets.open("MISSING", &planned).unwrap_err(),
        ];
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(messages[0].starts_with("the environment variable API_TOKEN changed since the plan was made (sha256:00000000 then, sha256:"), "{}", messages[0]);
        assert!(
            messages[1]
                .starts_with("the plan needs the secret in the environment variable MISSING"),
            "{}",
            messages[1]
        );
        assert!(!messages.iter().any(|message| message.contains("s3cr3t")));
    }
}
