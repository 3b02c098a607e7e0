//! Questions to the user and files: unsaved-changes prompts, file dialogs, writing beside the graph.

use super::*;

impl Editor {
    pub(crate) fn ask_path(&mut self, save: bool) {
        let start = self.path.clone();
        if let Some(dialog) = self.file_dialog.as_mut() {
            let request =
                DialogRequest { save, directory: false, extensions: vec!["qgraph".into()], start: start.clone() };
            if let Some(answer) = dialog(&request) {
                if let Some(p) = answer {
                    if save {
                        self.save_as(&p);
                    } else {
                        self.open(&p);
                    }
                }
                return;
            }
        }
        let text = start.map(|p| p.display().to_string()).unwrap_or_default();
        self.prompt = Some(Prompt::Path { save, text });
    }

    /// New / Open / Quit, asking first when there are unsaved changes.
    pub fn request(&mut self, action: AfterPrompt) {
        if self.modified {
            self.prompt = Some(Prompt::Unsaved { then: action });
        } else {
            self.perform(action);
        }
    }

    pub(crate) fn perform(&mut self, action: AfterPrompt) {
        match action {
            AfterPrompt::New => self.set_graph(Graph::new(), None),
            AfterPrompt::Open(Some(p)) => {
                self.open(&p);
            }
            AfterPrompt::Open(None) => self.ask_path(false),
            AfterPrompt::Quit => self.quit_requested = true,
        }
    }

    pub(crate) fn prompt_ui(&mut self, ui: &mut egui::Ui) {
        let Some(prompt) = self.prompt.clone() else { return };
        let mut next = Some(prompt.clone());
        egui::Modal::new(egui::Id::new("qg_prompt")).show(ui.ctx(), |ui| match &prompt {
            Prompt::Path { save, text } => {
                ui.heading(if *save { "Save graph as" } else { "Open graph" });
                let mut t = text.clone();
                let r =
                    ui.add(egui::TextEdit::singleline(&mut t).hint_text("path/to/graph.qgraph").desired_width(420.0));
                r.request_focus();
                let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                ui.horizontal(|ui| {
                    if ui.button(if *save { "Save" } else { "Open" }).clicked() || enter {
                        let p = PathBuf::from(&t);
                        let ok = if *save { self.save_as(&p) } else { self.open(&p) };
                        next = if ok { None } else { Some(Prompt::Path { save: *save, text: t.clone() }) };
                    } else if ui.button("Cancel").clicked() {
                        next = None;
                    } else {
                        next = Some(Prompt::Path { save: *save, text: t.clone() });
                    }
                });
                if let Some(m) = &self.message {
                    ui.label(m);
                }
            }
            Prompt::Unsaved { then } => {
                ui.heading("Unsaved changes");
                ui.label(format!(
                    "{} has changes that are not saved.",
                    self.path.as_ref().map(|p| p.display().to_string()).unwrap_or("This graph".into())
                ));
                ui.horizontal(|ui| {
                    if ui.button("Save").clicked() {
                        next = None;
                        if self.save() {
                            self.perform(then.clone());
                        }
                    }
                    if ui.button("Discard changes").clicked() {
                        next = None;
                        self.modified = false;
                        self.perform(then.clone());
                    }
                    if ui.button("Cancel").clicked() {
                        next = None;
                    }
                });
            }
            Prompt::Recover { path } => {
                ui.heading("Restore unsaved work?");
                ui.label(format!("QuantGraph did not close cleanly. A recovery file was found:\n{}", path.display()));
                ui.horizontal(|ui| {
                    if ui.button("Restore").clicked() {
                        next = None;
                        if let Ok((g, _)) = file::load(path, &self.registry) {
                            self.set_graph(g, None);
                            self.modified = true;
                        }
                    }
                    if ui.button("Discard").clicked() {
                        next = None;
                        let _ = std::fs::remove_file(path);
                    }
                });
            }
        });
        if self.prompt.as_ref() == Some(&prompt) || matches!(prompt, Prompt::Path { .. }) {
            self.prompt = next;
        }
    }

    /// Write an export (plot PNG, table CSV, model) into the graph file's folder and say so.
    pub fn write_beside_graph(&mut self, file_name: &str, bytes: Result<Vec<u8>, String>) {
        let name: String =
            file_name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        let path = self.graph.base_dir.clone().unwrap_or_default().join(name);
        self.message = Some(match bytes.map(|b| quantgraph_nodes::fsio::write_atomic(&path, &b)) {
            Ok(Ok(())) => format!("Wrote {}", path.display()),
            Ok(Err(e)) => format!("Could not write {}: {e}", path.display()),
            Err(e) => format!("Could not export {}: {e}", path.display()),
        });
    }

    /// Export a model `node` made (`bytes`) as `<stem>.onnx` beside the graph file, with its
    /// sidecar (`sidecar`, how it was made) as `<stem>.onnx.json`, as `quantgraph export`
    /// does: never onto a file some node of the graph reads, an earlier sidecar removed
    /// before the model is written (a failure in between leaves no sidecar that describes
    /// another model), both written atomically. The outcome goes to the status line.
    pub fn export_model(&mut self, stem: &str, bytes: &[u8], sidecar: Result<Vec<u8>, String>) {
        let name: String = format!("{stem}.onnx")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
            .collect();
        let dir = self.graph.base_dir.clone().unwrap_or_default();
        let path = dir.join(&name);
        let side = quantgraph_nodes::provenance::sidecar_path(&path);
        let reader = [&path, &side]
            .into_iter()
            .find_map(|f| quantgraph_nodes::provenance::reader_of(&self.graph, &self.registry, f));
        if let Some((reader, param, source)) = reader {
            self.message = Some(format!(
                "Not exported: {} is the file that {} reads ('{param}'). Give the node another label to export \
                 under another name",
                source.display(),
                self.graph.display_name(&self.registry, reader),
            ));
            return;
        }
        let sidecar = match sidecar {
            Ok(b) => b,
            Err(e) => {
                self.message = Some(format!("Could not export {}: {e}", path.display()));
                return;
            }
        };
        if side.exists() {
            if let Err(e) = std::fs::remove_file(&side) {
                self.message = Some(format!("Could not replace {}: {e}", side.display()));
                return;
            }
        }
        if let Err(e) = quantgraph_nodes::fsio::write_atomic(&path, bytes) {
            self.message = Some(format!("Could not write {}: {e}", path.display()));
            return;
        }
        self.message = Some(match quantgraph_nodes::fsio::write_atomic(&side, &sidecar) {
            Ok(()) => format!("Wrote {} and how it was made to {}", path.display(), side.display()),
            Err(e) => format!("Wrote {}, but could not write {}: {e}", path.display(), side.display()),
        });
    }

    /// Pick a file or folder for a path param with the native dialog.
    pub fn browse(&mut self, b: BrowseRequest) {
        let current = self
            .graph
            .node(b.node)
            .and_then(|n| n.params.get(&b.param))
            .and_then(|v| v.as_str())
            .map(|p| quantgraph_nodes::kind::resolve_path(self.graph.base_dir.as_deref(), p));
        let Some(dialog) = self.file_dialog.as_mut() else {
            self.message = Some(
                "No native file dialog here: type the path (relative paths are relative to the graph file)".into(),
            );
            return;
        };
        let request =
            DialogRequest { save: false, directory: b.directory, extensions: b.extensions.clone(), start: current };
        match dialog(&request) {
            Some(Some(p)) => self.set_param(b.node, &b.param, serde_json::Value::String(p.display().to_string())),
            Some(None) => {}
            None => self.message = Some("No native file dialog here: type the path".into()),
        }
    }
}
