//! The kinds reference: every kind's fields and outputs as Markdown, committed in docs/kinds.md.
//!
//! It is rendered from the same schemas the loader checks, so the documentation cannot drift
//! from what ferry accepts; a test fails when the committed file is out of date.

use std::fmt::Write;

use ferry_core::provider::{FieldSchema, OnChange};
use ferry_core::{Kind, RuleBook};

/// Markdown table cells cannot hold a `|` or a line break.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn requirement(field: &FieldSchema) -> String {
    match (field.required, field.default) {
        (true, _) => "required".to_owned(),
        (false, Some(default)) => format!("default: {default}"),
        (false, None) => "optional".to_owned(),
    }
}

fn on_change(field: &FieldSchema) -> String {
    match field.on_change {
        OnChange::InPlace => "in place".to_owned(),
        OnChange::Replace(why) => format!("replaces: {why}"),
        OnChange::Refuse(why) => format!("refused: {why}"),
    }
}

fn sort_of(kind: Kind) -> &'static str {
    if kind.is_stateful() {
        "Stateful: a failover moves it, never recreates it; deleting it needs `allow_destroy = true` and `--allow-destroy`."
    } else if kind.is_replaceable() {
        "Replaceable: a failover builds a new generation of it beside the old one."
    } else {
        "Neither replaceable nor stateful: it holds nothing, and is waited for."
    }
}

/// Renders the reference of every kind in the rule book, in the order of [`Kind::ALL`].
pub fn kinds_reference(rules: &RuleBook) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail, so the results of `writeln!` are ignored throughout.
    let _ = writeln!(out, "# Resource kinds");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "<!-- Generated from the kinds' schemas by ferry_spec::kinds_reference; do not edit by hand. Refresh with: UPDATE_DOCS=1 cargo test -p ferry-spec --test kinds_reference -->"
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Each resource is a table `[KIND.NAME]`; its name starts with a lower-case letter, followed by lower-case letters, digits, `_` or `-`."
    );
    let _ = writeln!(
        out,
        "Strings may hold `${{kind.name.output}}` (another resource's output), `${{var.NAME}}`, `${{env.NAME}}` and `${{generation}}`; `$${{` is a literal `${{`."
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "Every kind also takes these keys:");
    let _ = writeln!(out);
    let _ = writeln!(out, "| Key | Type | Default | Description |");
    let _ = writeln!(out, "|---|---|---|---|");
    let _ = writeln!(
        out,
        "| `depends_on` | a list of resource addresses | none | resources that must be in place first, beyond those its fields reference |"
    );
    let _ = writeln!(
        out,
        "| `ensure` | `\"present\"` or `\"absent\"` | `\"present\"` | whether the resource should exist |"
    );
    let _ = writeln!(
        out,
        "| `allow_destroy` | a boolean | false | stateful kinds only: half of the two-key opt-in for deleting it (the other is `--allow-destroy`) |"
    );
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|kind| rules.get(*kind).is_some())
        .collect();
    for kind in kinds {
        let Some(kind_rules) = rules.get(kind) else {
            continue;
        };
        let _ = writeln!(out);
        let _ = writeln!(out, "## `{kind}`");
        let _ = writeln!(out);
        let _ = writeln!(out, "{}.", kind_rules.description());
        let _ = writeln!(out, "{}", sort_of(kind));
        let _ = writeln!(out);
        let _ = writeln!(out, "| Field | Type | Required | A change | Description |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for field in kind_rules.fields() {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                field.name,
                cell(&field.field_type.describe()),
                cell(&requirement(field)),
                cell(&on_change(field)),
                cell(field.description),
            );
        }
        let _ = writeln!(out);
        let outputs = kind_rules.outputs();
        if outputs.is_empty() {
            let _ = writeln!(out, "Outputs: none.");
            continue;
        }
        let _ = writeln!(out, "Outputs, as `${{{kind}.NAME.OUTPUT}}`:");
        let _ = writeln!(out);
        for output in outputs {
            let _ = writeln!(out, "- `{}`: {}", output.name, output.description);
        }
    }
    out
}
