//! A clone of the repository is self-contained: no test, source, script or manifest names a
//! path that climbs out of the repository (a folder beside it, a sibling checkout),
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

/// Where `path` ends when taken from `base`, without touching the filesystem; `None` when it
/// climbs above the filesystem's root.
fn join_lexically(base: &Path, path: &str) -> Option<PathBuf> {
    let mut joined = base.to_path_buf();
    for component in Path::new(path).components() {
        match component {
            Component::ParentDir if !joined.pop() => return None,
            Component::ParentDir => {}
            Component::Normal(part) => joined.push(part),
            _ => {}
        }
    }
    Some(joined)
}

/// The quoted relative paths in `text` (`"../x"`, `'../x'`, `../x` after a space) that leave
/// `root` when taken from a folder they could be relative to (the crate's, as with
/// `env!("CARGO_MANIFEST_DIR")`, or the file's own, as with `#[path]`), unless from one of
/// those folders they name something that exists inside the repository.
fn escaping_paths(root: &Path, file: &Path, text: &str) -> Vec<String> {
    let bases = [
        base_folder(root, file),
        file.parent().unwrap().to_path_buf(),
    ];
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
        let targets: Vec<Option<PathBuf>> = bases
            .iter()
            .map(|base| join_lexically(base, &candidate))
            .collect();
        let leaves = targets.iter().any(|target| {
            target
                .as_ref()
                .is_none_or(|target| !target.starts_with(root))
        });
        let names_something_inside = targets
            .iter()
            .flatten()
            .any(|target| target.starts_with(root) && target.exists());
        if leaves && !names_something_inside {
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
    assert!(
        files.len() > 50,
        "the walk found only {} files",
        files.len()
    );
    let mut found = Vec::new();
    for file in &files {
        // This file holds such paths on purpose, as the cases below.
        if file.ends_with("tests/tests/self_contained.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for path in escaping_paths(&root, file, &text) {
            found.push(format!(
                "{}: {path}",
                file.strip_prefix(&root).unwrap().display()
            ));
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
    // Taken from crates/ferry-arm (CARGO_MANIFEST_DIR), three levels up is outside, and from
    // the file's folder it names nothing; `../../../xtask/setup` exists from the file's folder.
    let text = r#"join("../../../elsewhere/arm-examples") and "../../../xtask/setup" and "../x""#;
    assert_eq!(
        escaping_paths(&root, &file, text),
        vec!["../../../elsewhere/arm-examples".to_owned()]
    );
    assert!(escaping_paths(&root, &file, "a/../b and x../y").is_empty());
    // From crates/ferry-disk it would climb out, but from the file's folder it names a file of
    // the repository, as a `#[path]` attribute takes it.
    let support = root.join("crates/ferry-disk/tests/support/mod.rs");
    let text = r#"#[path = "../../../ferry-testkit/src/provider_harness.rs"]"#;
    assert!(escaping_paths(&root, &support, text).is_empty());
}
