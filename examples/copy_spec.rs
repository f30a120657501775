//! Shared by the examples: a scratch copy of specs/data100, so that the state an example
//! writes (its `.ferry` folder) never lands in the repository.

use std::path::{Path, PathBuf};

/// Copies specs/data100 into `folder` and returns the copy's path.
pub fn data100_in(folder: &Path) -> std::io::Result<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/data100");
    let target = folder.join("data100");
    copy_dir(&source, &target)?;
    Ok(target)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        // Following links: the warm variant's files are links to the cold spec's.
        if std::fs::metadata(entry.path())?.is_dir() {
            if entry.file_name() != ".ferry" {
                copy_dir(&entry.path(), &target)?;
            }
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
