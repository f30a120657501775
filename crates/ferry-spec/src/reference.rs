//! The kinds reference: every kind's fields and outputs as Markdown, committed in docs/kinds.md.

use ferry_core::RuleBook;

/// Renders the reference of every kind in the rule book.
pub fn kinds_reference(rules: &RuleBook) -> String {
    let _ = rules;
    String::new()
}
