//! Writing files so that a crash never leaves a half-written file under the real name, and
//! so that a failed write says which file and why in a user's words ("no space left on
//! device"), never the temporary name.
use anyhow::{Context, Result};
use std::fmt;
use std::fs;
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};

/// The temporary name beside `path` that a write goes to before the rename.
pub fn temp_path(path: &Path) -> PathBuf {
    path.with_file_name(format!("{}{}", temp_prefix(path), std::process::id()))
}

/// What every temporary name of `path` starts with (`.NAME.tmp-`, then a process id).
fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.tmp-")
}

/// Removes the temporary files of `path` that earlier processes left (killed mid-write).
/// Only for files that one process at a time writes (a run's checkpoint, under its lock).
pub fn remove_stale_temps(path: &Path) {
    let prefix = temp_prefix(path);
    let own = temp_path(path);
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        let ours = entry.file_name().to_string_lossy().starts_with(&prefix);
        if ours && p != own {
            let _ = fs::remove_file(p);
        }
    }
}

/// A file that could not be written: names it and says why.
#[derive(Debug)]
pub struct WriteError {
    /// The file or folder (its real name, not the temporary one).
    pub path: PathBuf,
    /// What was tried: "write", "create folder", …
    action: &'static str,
    kind: ErrorKind,
    reason: String,
}

impl WriteError {
    /// The error of `action` on `path` that failed with `err`.
    pub fn new(path: &Path, action: &'static str, err: &io::Error) -> Self {
        Self {
            path: path.to_path_buf(),
            action,
            kind: err.kind(),
            reason: reason(err),
        }
    }

    /// The error of a write to `path` that another program (ffmpeg) reported as `kind`.
    pub fn of_kind(path: &Path, kind: ErrorKind) -> Self {
        Self::new(path, "write", &io::Error::from(kind))
    }

    /// Whether the disk takes no more writes (full, over quota, read-only): a next write
    /// there fails too.
    pub fn disk_unusable(&self) -> bool {
        unusable(self.kind)
    }
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} {}: {}",
            self.action,
            self.path.display(),
            self.reason
        )
    }
}

impl std::error::Error for WriteError {}

fn unusable(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::ReadOnlyFilesystem
    )
}

/// Why an I/O step failed, in a user's words: "no space left on device", "read-only file
/// system", … (the system's message without its "(os error N)").
pub fn reason(err: &io::Error) -> String {
    match err.kind() {
        ErrorKind::StorageFull => "no space left on device".into(),
        ErrorKind::QuotaExceeded => "disk quota exceeded".into(),
        ErrorKind::ReadOnlyFilesystem => "read-only file system".into(),
        ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let text = err.to_string();
            let text = match text.find(" (os error") {
                Some(i) => &text[..i],
                None => &text,
            };
            let mut chars = text.chars();
            match chars.next() {
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => text.to_string(),
            }
        }
    }
}

/// Whether an error (anywhere in its chain) means the disk takes no more writes.
pub fn is_disk_unusable(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<WriteError>()
            .is_some_and(WriteError::disk_unusable)
            || e.downcast_ref::<io::Error>()
                .is_some_and(|e| unusable(e.kind()))
    })
}

/// `err` of writing `path`, given that context unless it already names the failed write.
pub fn naming(err: anyhow::Error, path: &Path) -> anyhow::Error {
    if err.chain().any(|e| e.is::<WriteError>()) {
        err
    } else {
        err.context(format!("cannot write {}", path.display()))
    }
}

/// Turns a failed step's error into a [`WriteError`] on `path` when an I/O error caused it.
fn as_write_error(err: anyhow::Error, path: &Path, action: &'static str) -> anyhow::Error {
    if err.chain().any(|e| e.is::<WriteError>()) {
        return err;
    }
    match err.chain().find_map(|e| e.downcast_ref::<io::Error>()) {
        Some(io) => WriteError::new(path, action, io).into(),
        None => err.context(format!("cannot {action} {}", path.display())),
    }
}

/// `fs::create_dir_all`, its failure a [`WriteError`].
pub fn create_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| WriteError::new(path, "create folder", &e).into())
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, then renames it into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes).map_err(Into::into))
}

/// Like [`write_atomic`], with the content produced by `write` into the open temporary file.
/// A failure removes the temporary file and names `path` (never the temporary name).
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut fs::File) -> Result<()>,
) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        write(&mut file)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    match result {
        Ok(()) => {
            sync_folder(path);
            Ok(())
        }
        Err(err) => {
            let _ = fs::remove_file(&tmp);
            Err(as_write_error(err, path, "write"))
        }
    }
}

/// Makes a rename in `path`'s folder durable (a crash of the machine, not only of the
/// process, then finds the new file); file systems that cannot sync folders are left as are.
fn sync_folder(path: &Path) {
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(dir) = fs::File::open(folder) {
            let _ = dir.sync_all();
        }
    }
}

/// An exclusive lock on a file beside a run's files, held while this value lives (released
/// by the system when the process ends, however it ends).
pub struct Lock {
    _file: fs::File,
}

impl Lock {
    /// Takes the lock on `path` (created if needed); `None` when another process holds it.
    pub fn take(path: &Path) -> Result<Option<Self>> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| anyhow::Error::from(WriteError::new(path, "create", &e)))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("{}: cannot lock", path.display()))
            }
        }
    }
}

/// Whether two paths name the same file, however spelled (relative, through a link); paths
/// that cannot be resolved (a file not yet written) compare as absolute paths.
pub fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => matches!((std::path::absolute(a), std::path::absolute(b)), (Ok(a), Ok(b)) if a == b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_words() {
        let full = io::Error::from_raw_os_error(28);
        assert_eq!(reason(&full), "no space left on device");
        let missing = io::Error::from_raw_os_error(2);
        assert_eq!(reason(&missing), "no such file or directory");
        let err: anyhow::Error =
            WriteError::new(Path::new("/x/m.safetensors"), "write", &full).into();
        assert!(is_disk_unusable(&err.context("saving")));
        assert_eq!(
            WriteError::new(Path::new("/x/a.png"), "write", &full).to_string(),
            "cannot write /x/a.png: no space left on device"
        );
    }

    #[test]
    fn a_failed_write_leaves_nothing_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        std::fs::write(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |f| {
            f.write_all(b"partial")?;
            Err(io::Error::from(ErrorKind::StorageFull).into())
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot write {}: no space left on device", path.display())
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temporary_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let stale = dir.path().join(".m.safetensors.tmp-1");
        let other = dir.path().join(".n.safetensors.tmp-1");
        std::fs::write(&stale, b"x").unwrap();
        std::fs::write(&other, b"x").unwrap();
        remove_stale_temps(&path);
        assert!(!stale.exists() && other.exists());
    }
}
