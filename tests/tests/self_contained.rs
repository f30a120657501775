//! A clone of the repository is self-contained: no test, source, script or manifest names a
//! path that climbs out of the repository (a `../shared` folder beside it, a sibling checkout),
//! since a user's clone has nothing beside it.

use std::path::{Component, Path, PathBuf};

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

/// Every file that code or tests could read paths from.
fn source_files(folder: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "fixtures" | "snapshots") {
                source_files(&path, found);
            }
        } else if ["rs", "sh", "toml"]
            .iter()
            .any(|extension| name.ends_with(&format!(".{extension}")))
            || name == "run"
        {
            found.push(path);
        }
    }
}

/// The folder a relative path in `file` is taken from, at the shallowest: the crate's folder
/// (`env!("CARGO_MANIFEST_DIR")`, the nearest one with a `Cargo.toml`), else the file's own.
fn base_folder(root: &Path, file: &Path) -> PathBuf {
    let mut folder = file.parent().unwrap();
    while folder != root {
        if folder.join("Cargo.toml").exists() {
            return folder.to_path_buf();
        }
        folder = folder.parent().unwrap();
    }
    file.parent().unwrap().to_path_buf()
}

/// The quoted relative paths in `text` (`"../x"`, `'../x'`, `../x` after a space) that, taken
/// from `file`'s folder or from the crate's folder, end outside `root`.
fn escaping_paths(root: &Path, file: &Path, text: &str) -> Vec<String> {
    let mut escaping = Vec::new();
    for (index, _) in text.match_indices("../") {
        let before = text[..index].chars().last();
        if !matches!(before, Some('"' | '\'' | ' ' | '(' | '=') | None) {
            continue;
        }
        let candidate: String = text[index..]
            .chars()
            .take_while(|character| {
                !character.is_whitespace() && !matches!(character, '"' | '\'' | ')' | '`')
            })
            .collect();
        // `..` components taken from the deepest folder the path could be relative to.
        let ups = Path::new(&candidate)
            .components()
            .take_while(|component| matches!(component, Component::ParentDir))
            .count();
        let depth = base_folder(root, file)
            .strip_prefix(root)
            .unwrap()
            .components()
            .count();
        if ups > depth {
            escaping.push(candidate);
        }
    }
    escaping
}

#[test]
fn nothing_in_the_repository_reads_outside_it() {
    let root = repository_root();
    let mut files = Vec::new();
    for folder in ["crates", "tests", "xtask", "examples", "specs", ".ci"] {
        let folder = root.join(folder);
        if folder.exists() {
            source_files(&folder, &mut files);
        }
    }
    assert!(files.len() > 50, "the walk found only {} files", files.len());
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for path in escaping_paths(&root, file, &text) {
            found.push(format!("{}: {path}", file.strip_prefix(&root).unwrap().display()));
        }
    }
    assert!(
        found.is_empty(),
        "these paths leave the repository (keep what they need inside it):\n{}",
        found.join("\n")
    );
}

#[test]
fn a_path_that_climbs_out_is_found() {
    let root = repository_root();
    let file = root.join("crates/ferry-arm/tests/conformance.rs");
    // Taken from crates/ferry-arm (CARGO_MANIFEST_DIR): three levels up is outside.
    let text = r#"join("../../../shared/arm-examples") and "../../xtask/setup" and "../x""#;
    assert_eq!(
        escaping_paths(&root, &file, text),
        vec!["../../../shared/arm-examples".to_owned()]
    );
    assert!(escaping_paths(&root, &file, "a/../b and x../y").is_empty());
}
