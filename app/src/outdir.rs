//! `quantgraph run --out DIR`: results appear whole or not at all.
//!
//! The files are written into a temporary folder beside DIR (created before the
//! evaluation starts, which also proves the location is writable); `manifest.json`, listing
//! every file, is written last; then the folder is renamed into place. A rerun replaces a
//! previous results folder as a whole (no new JSON beside old PNGs), and a folder that
//! holds anything else is refused rather than mixed into.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The file that marks a complete QuantGraph results folder; written last.
pub const MANIFEST: &str = "manifest.json";

/// A results folder being written.
pub struct Staging {
    target: PathBuf,
    tmp: tempfile::TempDir,
    files: std::cell::RefCell<Vec<(String, u64)>>,
}

impl Staging {
    /// Check that `target` can receive results and make the temporary folder beside it.
    pub fn prepare(target: &Path) -> anyhow::Result<Self> {
        if target.exists() {
            if !target.is_dir() {
                bail!("--out {}: expected a folder, found a file", target.display());
            }
            let mut entries =
                std::fs::read_dir(target).with_context(|| format!("--out {}: cannot read it", target.display()))?;
            let empty = entries.next().is_none();
            if !empty && !target.join(MANIFEST).is_file() {
                bail!(
                    "--out {}: the folder exists and is not a QuantGraph results folder (no {MANIFEST}); \
                     choose another folder or empty it",
                    target.display()
                );
            }
        }
        let name = target.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        let parent = quantgraph_nodes::fsio::parent_dir(target);
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("--out {}: cannot create its folder", target.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.partial-"))
            .tempdir_in(&parent)
            .with_context(|| format!("--out {}: {} is not writable", target.display(), parent.display()))?;
        Ok(Self { target: target.to_path_buf(), tmp, files: Default::default() })
    }

    /// Write one file of the results (a plain name, no folders).
    pub fn write(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        if name.contains('/') || name.contains('\\') || name == MANIFEST || name.starts_with('.') {
            bail!("refusing to write '{name}' into a results folder");
        }
        let path = self.tmp.path().join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {name} for {}", self.target.display()))?;
        self.files.borrow_mut().push((name.to_owned(), bytes.len() as u64));
        Ok(())
    }

    /// Write the manifest, flush, and move the folder into place (replacing an earlier
    /// results folder as a whole).
    pub fn commit(self) -> anyhow::Result<()> {
        let files: Vec<serde_json::Value> =
            self.files.borrow().iter().map(|(name, size)| serde_json::json!({ "file": name, "bytes": size })).collect();
        let manifest = serde_json::json!({ "format": "quantgraph-results", "complete": true, "files": files });
        std::fs::write(self.tmp.path().join(MANIFEST), serde_json::to_string_pretty(&manifest)?)
            .with_context(|| format!("writing {MANIFEST} for {}", self.target.display()))?;
        for entry in std::fs::read_dir(self.tmp.path())? {
            std::fs::File::open(entry?.path())?.sync_all()?;
        }
        quantgraph_nodes::fsio::sync_dir(self.tmp.path())?;
        let parent = quantgraph_nodes::fsio::parent_dir(&self.target);
        let tmp = self.tmp.keep();
        let result = (|| -> anyhow::Result<()> {
            if self.target.exists() {
                let old = tempfile::Builder::new().prefix(".previous-results-").tempdir_in(&parent)?.keep();
                std::fs::remove_dir(&old)?;
                std::fs::rename(&self.target, &old)
                    .with_context(|| format!("moving the previous {} aside", self.target.display()))?;
                std::fs::rename(&tmp, &self.target)
                    .with_context(|| format!("moving the results into {}", self.target.display()))?;
                let _ = std::fs::remove_dir_all(&old);
            } else {
                std::fs::rename(&tmp, &self.target)
                    .with_context(|| format!("moving the results into {}", self.target.display()))?;
            }
            quantgraph_nodes::fsio::sync_dir(&parent)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn results_replace_an_earlier_folder_whole_and_foreign_folders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let s = Staging::prepare(&out).unwrap();
        s.write("a.csv", b"1").unwrap();
        s.write("old.png", b"x").unwrap();
        // Nothing is visible before the commit.
        assert!(!out.exists());
        s.commit().unwrap();
        assert!(out.join(MANIFEST).is_file() && out.join("old.png").is_file());
        let s = Staging::prepare(&out).unwrap();
        s.write("a.csv", b"2").unwrap();
        s.commit().unwrap();
        assert_eq!(std::fs::read(out.join("a.csv")).unwrap(), b"2");
        assert!(!out.join("old.png").exists(), "a rerun must not keep files of the earlier run");
        // Only the results folder is left beside it: no partial or previous folders.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out")]);

        let foreign = dir.path().join("mine");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join("thesis.tex"), b"...").unwrap();
        let err = Staging::prepare(&foreign).err().unwrap().to_string();
        assert!(err.contains("not a QuantGraph results folder"), "{err}");
        // An abandoned staging folder (a killed run) leaves the target untouched.
        let s = Staging::prepare(&out).unwrap();
        s.write("a.csv", b"3").unwrap();
        drop(s);
        assert_eq!(std::fs::read(out.join("a.csv")).unwrap(), b"2");
    }
}
