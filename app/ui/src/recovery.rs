//! The recovery file: autosave while there are unsaved changes, and the offer to restore it.

use super::*;

impl Editor {
    /// Write the recovery file every [`AUTOSAVE_SECS`] while there are unsaved changes.
    pub fn autosave(&mut self, now_secs: f64) {
        let Some(path) = self.recovery_path.clone() else { return };
        if !self.modified || now_secs - self.last_autosave_secs < AUTOSAVE_SECS {
            return;
        }
        self.last_autosave_secs = now_secs;
        let mut copy = self.graph.clone();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = file::save(&mut copy, &self.registry, &path) {
            self.message = Some(format!("Autosave failed: {e}"));
        }
    }

    /// At start: offer to restore a recovery file left by a crash.
    pub fn check_recovery(&mut self) {
        if let Some(p) = &self.recovery_path {
            if p.is_file() {
                self.prompt = Some(Prompt::Recover { path: p.clone() });
            }
        }
    }
}
