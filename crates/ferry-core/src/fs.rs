//! Replacing a file whole: the one file-writing helper of ferry, for every crate.
//!
//! A crash or power cut at any moment leaves either the old content or the new, never a mix,
//! an empty file or a half-written one. The state, lock renewals, saved plans, the simulated
//! world and an AKS cluster's kubeconfig are all written through [`write_atomically`]; the few
//! writes that must differ (a lock created exclusively, a journal appended to, a locked file
//! rewritten in place) say why where they are.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How [`write_atomically`] creates the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// The file's permission bits, given when it is created, so that it is never readable
    /// more widely even for a moment (the umask can only narrow them). `None` gives the usual
    /// 0o666 less the umask.
    pub mode: Option<u32>,
}

impl WriteOptions {
    /// Only the owner may read and write the file: for credentials such as a kubeconfig.
    pub const OWNER_ONLY: WriteOptions = WriteOptions { mode: Some(0o600) };
}

/// Replaces the file at `path` with `bytes`, atomically and durably.
///
/// The bytes go to a new temporary file beside `path` (created exclusively, with
/// `options.mode`), which is fsynced, renamed over `path`, and then the directory is
/// fsynced so that the rename itself survives a power cut. On an error the temporary file is
/// removed and `path` is left as it was, unless only the directory's fsync failed, after the
/// rename. The directory must exist.
pub fn write_atomically(path: &Path, bytes: &[u8], options: &WriteOptions) -> io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let temporary = temporary_path(directory, &file_name.to_string_lossy());
    let result = (|| {
        let mut file = create_new(&temporary, options)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, path)?;
        sync_directory(directory)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

/// Makes a directory's entries durable: a file created or renamed in it survives a power
/// cut only once its directory is synced too (POSIX leaves it to the caller).
pub fn sync_directory(directory: &Path) -> io::Result<()> {
    File::open(directory)?.sync_all()
}

/// A temporary file's path beside the target. The pid keeps two processes that race (which
/// their locks should prevent) apart, the counter two writers in one process.
fn temporary_path(directory: &Path, file_name: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    directory.join(format!(".{file_name}.{}.{count}.tmp", std::process::id()))
}

/// Creates `path` exclusively: never a file (or a link) that was already there, whose
/// permissions could be wider than `options.mode` or which another process could hold open.
/// A leftover of a crashed process that had the same pid is removed first.
fn create_new(path: &Path, options: &WriteOptions) -> io::Result<File> {
    let open = || {
        let mut open_options = OpenOptions::new();
        open_options.write(true).create_new(true);
        if let Some(mode) = options.mode {
            open_options.mode(mode);
        }
        open_options.open(path)
    };
    match open() {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(path)?;
            open()
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn names(folder: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_file_is_written_then_replaced_whole_and_no_temporary_file_stays() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("state.json");
        write_atomically(&path, b"first", &WriteOptions::default()).unwrap();
        write_atomically(&path, b"second", &WriteOptions::default()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(names(folder.path()), ["state.json"]);
    }

    #[test]
    fn an_owner_only_file_is_created_0600_even_over_a_wider_one() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("kubeconfig");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomically(&path, b"secret", &WriteOptions::OWNER_ONLY).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"secret");
    }

    #[test]
    fn a_leftover_temporary_file_is_replaced_not_written_into() {
        let folder = tempfile::tempdir().unwrap();
        let leftover = folder.path().join("left.tmp");
        fs::write(&leftover, "a crashed writer's bytes, readable by all").unwrap();
        fs::set_permissions(&leftover, fs::Permissions::from_mode(0o644)).unwrap();
        let file = create_new(&leftover, &WriteOptions::OWNER_ONLY).unwrap();
        let mode = file.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(file.metadata().unwrap().len(), 0);
    }

    #[test]
    fn a_write_that_fails_leaves_the_old_file_and_no_temporary_file() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("plan.json");
        fs::write(&path, "old").unwrap();
        // A directory where the file should be: the rename fails.
        let blocked = folder.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("inside"), "keeps the directory non-empty").unwrap();
        let error = write_atomically(&blocked, b"new", &WriteOptions::default()).unwrap_err();
        assert_ne!(error.kind(), io::ErrorKind::NotFound, "{error}");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(names(folder.path()), ["blocked", "plan.json"]);
    }

    #[test]
    fn a_missing_folder_is_an_error_not_created() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("absent").join("file");
        let error = write_atomically(&path, b"x", &WriteOptions::default()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(!folder.path().join("absent").exists());
    }
}
