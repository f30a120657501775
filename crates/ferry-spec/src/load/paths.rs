//! Paths into a field's value (`env.KUBECONFIG`, `disks[2]`) and the source spans they lead to,
//! so that a problem deep inside a value points at its own text.

use std::ops::Range;

use ferry_core::Value;
use toml::de::DeValue;

use super::Node;

/// One segment of a path into a value: `env.KUBECONFIG` is two keys, `disks[2]` a key and an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PathSegment {
    Key(String),
    Index(usize),
}

pub(super) fn path_text(path: &[PathSegment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            PathSegment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            PathSegment::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// Reads a [`ferry_core::FieldError`] field path such as `datasets.prod.quota` or `disks[2]`.
pub(super) fn parse_path(text: &str) -> Vec<PathSegment> {
    let mut path = Vec::new();
    for part in text.split('.').filter(|part| !part.is_empty()) {
        let (key, mut indices) = match part.find('[') {
            Some(open) => (&part[..open], &part[open..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            path.push(PathSegment::Key(key.to_owned()));
        }
        while let Some(rest) = indices.strip_prefix('[') {
            let Some(close) = rest.find(']') else { break };
            if let Ok(index) = rest[..close].parse() {
                path.push(PathSegment::Index(index));
            }
            indices = &rest[close + 1..];
        }
    }
    path
}

/// The deepest node along a path: where a problem with that path is shown.
pub(super) fn navigate<'a, 'i>(node: &'a Node<'i>, path: &[PathSegment]) -> &'a Node<'i> {
    let mut current = node;
    for segment in path {
        let next = match (segment, current.get_ref()) {
            (PathSegment::Key(key), DeValue::Table(table)) => table.get(key.as_str()),
            (PathSegment::Index(index), DeValue::Array(items)) => items.get(*index),
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
pub(super) fn inner_span(
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

pub(super) fn collect_strings(
    value: &Value,
    path: &mut Vec<PathSegment>,
    out: &mut Vec<(Vec<PathSegment>, String)>,
) {
    match value {
        Value::String(text) if text.contains("${") => out.push((path.clone(), text.clone())),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                path.push(PathSegment::Index(index));
                collect_strings(item, path, out);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                path.push(PathSegment::Key(key.clone()));
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
