//! docs/kinds.md is rendered from the kinds' schemas; this test keeps the committed copy current.

use std::path::Path;

#[test]
fn docs_kinds_md_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/kinds.md");
    let rendered = ferry_spec::kinds_reference(&ferry_providers::rule_book());
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "docs/kinds.md is out of date with the kinds' schemas: refresh it with `UPDATE_DOCS=1 cargo test -p ferry-tests --test spec_kinds_reference`, then commit it"
    );
}
