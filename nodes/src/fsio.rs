//! Files a user sees are written atomically, and files named in a graph are read safely.
//!
//! * [`write_atomic`]: a temporary file in the target's folder (created by the `tempfile`
//!   crate with `O_EXCL`, so a symlink planted at the temporary name is never followed),
//!   written, flushed, given the original file's permissions, renamed over the target
//!   (`persist`), and the folder is synced so the rename itself survives a crash. An
//!   interrupted write leaves the old file as it was.
//! * [`read_regular_file`]: refuses anything that is not a regular file (a FIFO would block
//!   forever, `/dev/zero` would grow until memory runs out) and anything over a size limit.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The folder a file lives in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Flush a folder's entries to disk (after a rename into it). Best effort where the
/// platform cannot open folders.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
    }
    Ok(())
}

/// Write `bytes` to `path` atomically: readers see the old content or the new, never half.
/// An existing file keeps its permissions; a new one is readable by all (0644 on Unix).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent_dir(path);
    let name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    let mut tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".tmp").tempfile_in(&dir)?;
    tmp.write_all(bytes)?;
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => tmp.as_file().set_permissions(meta.permissions())?,
        // A new file: readable by others like any file the user's tools write (the temporary
        // file is created private, 0600).
        #[cfg(unix)]
        Err(_) => {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
        _ => {}
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(&dir)
}

/// Why a file named in a graph could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Missing, unreadable, or failed while reading.
    Io(String),
    /// A folder, a device, a FIFO or a socket.
    NotARegularFile(String),
    /// Larger than the limit: `(size, limit)` in bytes.
    TooLarge(u64, u64),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "cannot read ({e})"),
            Self::NotARegularFile(what) => write!(f, "expected a regular file, found {what}"),
            Self::TooLarge(size, limit) => write!(
                f,
                "the file is {} but the limit is {} (raise the limit if this file is really wanted)",
                human_bytes(*size),
                human_bytes(*limit)
            ),
        }
    }
}

/// `1.5 GiB`, `12.0 MiB`, `300 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a folder"
    } else {
        "something that is not a file"
    }
}

/// Check that `path` is a regular file no larger than `max_bytes`; its size.
pub fn check_regular_file(path: &Path, max_bytes: u64) -> Result<u64, ReadError> {
    let meta = std::fs::metadata(path).map_err(|e| ReadError::Io(e.to_string()))?;
    if !meta.is_file() {
        return Err(ReadError::NotARegularFile(kind_of(&meta).into()));
    }
    if meta.len() > max_bytes {
        return Err(ReadError::TooLarge(meta.len(), max_bytes));
    }
    Ok(meta.len())
}

/// Read a regular file of at most `max_bytes` (checked before opening, and again while
/// reading, in case the file grows).
pub fn read_regular_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ReadError> {
    let size = check_regular_file(path, max_bytes)?;
    let file = std::fs::File::open(path).map_err(|e| ReadError::Io(e.to_string()))?;
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(max_bytes.saturating_add(1)).read_to_end(&mut out).map_err(|e| ReadError::Io(e.to_string()))?;
    if out.len() as u64 > max_bytes {
        return Err(ReadError::TooLarge(out.len() as u64, max_bytes));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_keeps_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"one").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
            write_atomic(&p, b"two").unwrap();
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
        }
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.txt")]);
    }

    #[test]
    fn special_and_large_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read_regular_file(dir.path(), 10), Err(ReadError::NotARegularFile(_))));
        #[cfg(unix)]
        assert_eq!(
            read_regular_file(Path::new("/dev/zero"), 10),
            Err(ReadError::NotARegularFile("a character device".into()))
        );
        let p = dir.path().join("big");
        std::fs::write(&p, vec![0u8; 100]).unwrap();
        assert_eq!(read_regular_file(&p, 99), Err(ReadError::TooLarge(100, 99)));
        assert_eq!(read_regular_file(&p, 100).unwrap().len(), 100);
        assert!(read_regular_file(&dir.path().join("missing"), 10).unwrap_err().to_string().starts_with("cannot read"));
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo").arg(&p).status();
        if !status.is_ok_and(|s| s.success()) {
            return; // no mkfifo on this system
        }
        assert_eq!(read_regular_file(&p, 10), Err(ReadError::NotARegularFile("a FIFO (named pipe)".into())));
    }
}
