//! # quantgraph-ui — the editor's UI as plain egui functions
//!
//! No Bevy here: the Bevy app (`quantgraph-app`) hosts [`Editor::ui`] in a window, and the
//! tests drive it with `egui_kittest`. Node kinds reach the UI only through the registry:
//! nothing here matches on a particular kind.
//!
//! * [`Editor`] — the document (graph, file, undo history), evaluation (scheduler, node
//!   states, outputs) and the whole window: menu bar, canvas, inspector, status bar.
//! * `canvas` — the egui-snarl canvas ([`canvas::CanvasViewer`]).
//! * `inspector` — params drawn from each kind's schema.
//! * `views` — values: dataset thumbnails, model and Q/DQ tables, histograms with the
//!   quantization grid, report tables, plots.

pub mod canvas;
pub mod frames;
pub mod graph_view;
pub mod history;
pub mod inspector;
pub mod maps_view;
mod navigation;
mod prompts;
pub mod qdq_edit;
mod recovery;
pub mod snapshots;
pub mod views;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use egui_snarl::ui::{SnarlStyle, SnarlWidget};
use egui_snarl::Snarl;
use quantgraph_nodes::graph::{NodeId, PortRef, Wire};
use quantgraph_nodes::scheduler::{Event, RunHandle};
use quantgraph_nodes::{file, Graph, NodeRegistry, Outputs, Scheduler};

pub use history::History;

/// What the UI knows about a node's evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeStatus {
    /// Edited, not evaluated yet.
    Dirty,
    Queued,
    Running {
        fraction: f32,
        message: String,
    },
    Ready {
        cached: bool,
        duration: Option<Duration>,
    },
    Failed(String),
    Blocked(NodeId),
    Cancelled,
}

impl NodeStatus {
    pub fn label(&self) -> String {
        self.label_with(true)
    }

    /// The label, with or without the run time ("done in 0.21 s" or "done"; tests and
    /// snapshots leave times, and whether a result was cached, out so that they are the same
    /// on every run).
    pub fn label_with(&self, timings: bool) -> String {
        match self {
            // Whether a result came from the cache depends on how edits were batched.
            NodeStatus::Ready { .. } if !timings => "done".into(),
            NodeStatus::Dirty => "dirty".into(),
            NodeStatus::Queued => "queued".into(),
            NodeStatus::Running { fraction, .. } => format!("running {:.0} %", fraction * 100.0),
            NodeStatus::Ready { cached: true, .. } => "cached".into(),
            NodeStatus::Ready { duration: Some(d), .. } => format!("done in {:.2} s", d.as_secs_f64()),
            NodeStatus::Ready { .. } => "done".into(),
            NodeStatus::Failed(_) => "failed".into(),
            NodeStatus::Blocked(by) => format!("blocked by {by}"),
            NodeStatus::Cancelled => "cancelled".into(),
        }
    }

    pub fn color(&self) -> egui::Color32 {
        match self {
            NodeStatus::Dirty => egui::Color32::from_rgb(200, 170, 60),
            NodeStatus::Queued => egui::Color32::from_rgb(150, 150, 200),
            NodeStatus::Running { .. } => egui::Color32::from_rgb(90, 160, 255),
            NodeStatus::Ready { .. } => egui::Color32::from_rgb(90, 190, 110),
            NodeStatus::Failed(_) => egui::Color32::from_rgb(230, 70, 70),
            NodeStatus::Blocked(_) => egui::Color32::from_rgb(200, 120, 80),
            NodeStatus::Cancelled => egui::Color32::GRAY,
        }
    }
}

/// A question the editor is asking (modal).
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Type a path to open or save as (used when no native dialog is available).
    Path { save: bool, text: String },
    /// Unsaved changes: what to do before `then`.
    Unsaved { then: AfterPrompt },
    /// A recovery file from a session that did not close cleanly.
    Recover { path: PathBuf },
}

/// What to do once a prompt about unsaved changes is answered.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterPrompt {
    New,
    Open(Option<PathBuf>),
    Quit,
}

/// What a native file dialog is asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct DialogRequest {
    pub save: bool,
    pub directory: bool,
    /// File extensions to offer (without dots); empty: graph files.
    pub extensions: Vec<String>,
    pub start: Option<PathBuf>,
}

/// A native file dialog, provided by the host app (rfd). Returns `None` when no native
/// dialog is available here (the editor then asks for a typed path), `Some(None)` when the
/// user cancelled.
pub type FileDialog = Box<dyn FnMut(&DialogRequest) -> Option<Option<PathBuf>>>;

/// A "Browse…" click on a path param, handled after the inspector is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct BrowseRequest {
    pub node: NodeId,
    pub param: String,
    pub directory: bool,
    pub extensions: Vec<String>,
}

/// The open palette of node kinds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Palette {
    pub query: String,
    /// Where the new node goes (graph coordinates).
    pub pos: [f32; 2],
}

/// Textures kept for thumbnails, flips and activation maps before they are all dropped.
const MAX_TEXTURES: usize = 512;

/// The editor: document, evaluation, and window.
pub struct Editor {
    pub registry: Arc<NodeRegistry>,
    graph: Graph,
    /// The graph as of the last completed edit (what undo steps are made from).
    committed: Graph,
    pub history: History,
    snarl: Snarl<NodeId>,
    snarl_ids: BTreeMap<NodeId, egui_snarl::NodeId>,
    scheduler: Scheduler,
    run: Option<RunHandle>,
    pub statuses: BTreeMap<NodeId, NodeStatus>,
    outputs: BTreeMap<NodeId, Arc<Outputs>>,
    pub selected: Option<NodeId>,
    pub path: Option<PathBuf>,
    /// Edited since the last save.
    pub modified: bool,
    /// The last message for the user (a refused connection, a save error, …).
    pub message: Option<String>,
    pub palette: Option<Palette>,
    /// The Find node window's query (Ctrl+F), when open.
    pub find: Option<String>,
    /// Center the canvas on this node next frame.
    pub(crate) center_on: Option<NodeId>,
    /// Center the canvas on this point (graph units) next frame (a click on the minimap).
    pub(crate) center_at: Option<egui::Pos2>,
    /// The canvas's node selection as of the last frame.
    snarl_selection: Vec<egui_snarl::NodeId>,
    /// The frame (group box) being edited in the inspector, by index.
    pub selected_frame: Option<usize>,
    /// Fit these nodes in the canvas next frame (Shift+F: frame selected).
    pub(crate) frame_nodes: Option<Vec<NodeId>>,
    pub prompt: Option<Prompt>,
    pub recent: Vec<PathBuf>,
    pub file_dialog: Option<FileDialog>,
    /// Where the recovery file is written (None: no autosave).
    pub recovery_path: Option<PathBuf>,
    last_autosave_secs: f64,
    /// The open model graph window, if any.
    pub graph_view: Option<graph_view::Open>,
    /// The tensor the user picked last (in the graph view or a table): selected in tables
    /// and shown in histograms.
    pub selected_tensor: Option<String>,
    /// The selected tensor's names in other models (see [`Editor::select_tensor_as`]).
    pub selected_aliases: Vec<String>,
    /// Counts tensor selections, so each one is applied once (also a re-selection).
    pub selection_serial: u64,
    /// Counts documents set (new, open, recovery), so that widget state keyed by it (text
    /// a param field keeps) does not carry over to another graph.
    pub document_serial: u64,
    /// The graph last evaluated while the pointer was down (a drag in progress), and when.
    live: Option<(Graph, f64)>,
    textures: HashMap<String, egui::TextureHandle>,
    /// Set when the user asked to quit and it is safe to.
    pub quit_requested: bool,
    /// Show run times in node states and the cache's size in the status bar (off in tests:
    /// they change from run to run, and snapshots must not).
    pub show_timings: bool,
    pub(crate) views: views::ViewState,
    /// Earlier reports of each node, for before/after.
    pub(crate) snapshots: snapshots::Snapshots,
    /// Fit the canvas to all nodes on the next frame (F, and after opening).
    pub frame_requested: bool,
    /// Keep the whole graph framed (set by a frame request, cleared when the user pans or
    /// zooms).
    pub(crate) auto_fit: bool,
    /// Each node's size on the canvas (graph units), as last drawn: the union of its
    /// header, pins and body, plus the frame's margins.
    pub(crate) node_sizes: BTreeMap<NodeId, egui::Vec2>,
    node_extent: BTreeMap<NodeId, (u64, egui::Rect)>,
    pub(crate) canvas_rect: egui::Rect,
    /// The canvas's graph → screen transform, as of the last frame.
    pub canvas_transform: egui::emath::TSTransform,
}

/// Seconds between re-evaluations while a value is being dragged.
pub const LIVE_SECS: f64 = 0.3;

/// Seconds between autosaves to the recovery file.
pub const AUTOSAVE_SECS: f64 = 30.0;

impl Editor {
    pub fn new(registry: Arc<NodeRegistry>) -> Self {
        let scheduler = Scheduler::new(registry.clone());
        Self {
            registry,
            graph: Graph::new(),
            committed: Graph::new(),
            history: History::default(),
            snarl: Snarl::new(),
            snarl_ids: BTreeMap::new(),
            scheduler,
            run: None,
            statuses: BTreeMap::new(),
            outputs: BTreeMap::new(),
            selected: None,
            path: None,
            modified: false,
            message: None,
            palette: None,
            find: None,
            center_on: None,
            center_at: None,
            frame_nodes: None,
            selected_frame: None,
            snarl_selection: Vec::new(),
            prompt: None,
            recent: Vec::new(),
            file_dialog: None,
            recovery_path: None,
            last_autosave_secs: 0.0,
            live: None,
            graph_view: None,
            selected_tensor: None,
            selected_aliases: Vec::new(),
            show_timings: true,
            selection_serial: 0,
            document_serial: 0,
            textures: HashMap::new(),
            quit_requested: false,
            views: views::ViewState::default(),
            snapshots: snapshots::Snapshots::default(),
            frame_requested: true,
            auto_fit: false,
            node_sizes: BTreeMap::new(),
            node_extent: BTreeMap::new(),
            canvas_rect: egui::Rect::NOTHING,
            canvas_transform: egui::emath::TSTransform::IDENTITY,
        }
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// The outputs of a node's latest evaluation.
    pub fn outputs(&self, node: NodeId) -> Option<&Arc<Outputs>> {
        self.outputs.get(&node)
    }

    /// Window title: file name, and a marker when there are unsaved changes.
    pub fn title(&self) -> String {
        let name = self
            .path
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "untitled".into());
        format!("{}{name} — QuantGraph", if self.modified { "*" } else { "" })
    }

    // ---- document -------------------------------------------------------------------

    /// Replace the document (file open, new, recovery). Clears undo history.
    pub fn set_graph(&mut self, graph: Graph, path: Option<PathBuf>) {
        self.graph = graph;
        self.committed = self.graph.clone();
        self.history.clear();
        self.document_serial += 1;
        self.path = path;
        self.modified = false;
        self.selected = self.graph.view.as_ref().and_then(|v| v.selected).filter(|id| self.graph.node(*id).is_some());
        self.frame_requested = true;
        self.statuses.clear();
        self.outputs.clear();
        self.rebuild_snarl();
        self.evaluate();
    }

    /// Open a graph file. Errors go to the status message, and the current graph stays.
    pub fn open(&mut self, path: &Path) -> bool {
        match file::load(path, &self.registry) {
            Ok((graph, report)) => {
                self.set_graph(graph, Some(path.to_path_buf()));
                self.message = (!report.warnings.is_empty()).then(|| report.warnings.join("; "));
                self.remember_recent(path);
                true
            }
            Err(e) => {
                self.message = Some(format!("Could not open: {e}"));
                false
            }
        }
    }

    /// Save to `path` (atomic). Errors go to the status message.
    pub fn save_as(&mut self, path: &Path) -> bool {
        match file::save(&mut self.graph, &self.registry, path) {
            Ok(()) => {
                self.committed.base_dir = self.graph.base_dir.clone();
                self.path = Some(path.to_path_buf());
                self.modified = false;
                self.message = Some(format!("Saved {}", path.display()));
                self.remember_recent(path);
                if let Some(r) = &self.recovery_path {
                    let _ = std::fs::remove_file(r);
                }
                true
            }
            Err(e) => {
                self.message = Some(format!("Could not save: {e}"));
                false
            }
        }
    }

    pub fn save(&mut self) -> bool {
        match self.path.clone() {
            Some(p) => self.save_as(&p),
            None => {
                self.ask_path(true);
                false
            }
        }
    }

    fn remember_recent(&mut self, path: &Path) {
        self.recent.retain(|p| p != path);
        self.recent.insert(0, path.to_path_buf());
        self.recent.truncate(10);
    }

    /// Apply an edit to the graph as one undo step, and re-evaluate.
    pub fn edit(&mut self, f: impl FnOnce(&mut Graph, &NodeRegistry)) {
        f(&mut self.graph, &self.registry);
        self.commit();
        self.rebuild_snarl();
    }

    /// Set one param (one undo step).
    pub fn set_param(&mut self, node: NodeId, name: &str, value: serde_json::Value) {
        self.edit(|g, _| {
            let _ = g.set_param(node, name, value);
        });
    }

    /// Add a node of a kind at a position (one undo step). Returns its id.
    pub fn add_node(&mut self, kind: &str, pos: [f32; 2]) -> Option<NodeId> {
        let mut added = None;
        let mut error = None;
        self.edit(|g, r| match g.add_node(r, kind, pos) {
            Ok(id) => added = Some(id),
            Err(e) => error = Some(e.to_string()),
        });
        if let Some(e) = error {
            self.message = Some(e);
        }
        self.selected = added.or(self.selected);
        added
    }

    /// Connect two ports (one undo step). A refusal is returned and shown.
    pub fn connect(&mut self, from: PortRef, to: PortRef) -> Result<(), String> {
        if let Err(e) = self.graph.can_connect(&self.registry, &from, &to) {
            self.message = Some(format!("Cannot connect: {e}"));
            return Err(e.to_string());
        }
        self.edit(|g, r| {
            let _ = g.connect(r, from, to);
        });
        Ok(())
    }

    /// Delete nodes (one undo step).
    pub fn delete(&mut self, nodes: &[NodeId]) {
        if nodes.is_empty() {
            return;
        }
        self.edit(|g, _| {
            for n in nodes {
                g.remove_node(*n);
            }
        });
        if self.selected.is_some_and(|s| nodes.contains(&s)) {
            self.selected = None;
        }
    }

    /// The selected nodes as graph-file JSON (what Copy puts on the clipboard).
    pub fn copy_text(&self, nodes: &[NodeId]) -> String {
        let mut sub = Graph::new();
        for n in nodes {
            if let Some(node) = self.graph.node(*n) {
                let _ = sub.insert_node(node.clone());
            }
        }
        for w in self.graph.wires() {
            if nodes.contains(&w.from.node) && nodes.contains(&w.to.node) {
                sub.insert_wire_unchecked(w);
            }
        }
        sub.base_dir = self.graph.base_dir.clone();
        file::to_string(&sub, &self.registry, self.graph.base_dir.as_deref())
    }

    /// Paste graph-file JSON: the nodes get fresh ids and are offset (one undo step).
    pub fn paste_text(&mut self, text: &str) -> Vec<NodeId> {
        let base = self.graph.base_dir.clone().unwrap_or_default();
        let (sub, _) = match file::from_str(text, &base.join("clipboard.qgraph"), &self.registry) {
            Ok(r) => r,
            Err(e) => {
                self.message = Some(format!("The clipboard holds no QuantGraph nodes ({e})"));
                return Vec::new();
            }
        };
        let mut map = BTreeMap::new();
        let mut added = Vec::new();
        self.edit(|g, _| {
            for n in sub.nodes() {
                let mut node = n.clone();
                let id = g.fresh_id();
                map.insert(node.id, id);
                node.id = id;
                node.position = [node.position[0] + 40.0, node.position[1] + 40.0];
                if g.insert_node(node).is_ok() {
                    added.push(id);
                }
            }
            for w in sub.wires() {
                if let (Some(f), Some(t)) = (map.get(&w.from.node), map.get(&w.to.node)) {
                    g.insert_wire_unchecked(Wire {
                        from: PortRef::new(*f, &w.from.port),
                        to: PortRef::new(*t, &w.to.port),
                    });
                }
            }
        });
        added
    }

    pub fn duplicate(&mut self, nodes: &[NodeId]) -> Vec<NodeId> {
        let text = self.copy_text(nodes);
        self.paste_text(&text)
    }

    pub fn undo(&mut self) {
        if let Some(prev) = self.history.undo(self.graph.clone()) {
            self.restore(prev);
        }
    }

    pub fn redo(&mut self) {
        if let Some(next) = self.history.redo(self.graph.clone()) {
            self.restore(next);
        }
    }

    fn restore(&mut self, graph: Graph) {
        self.graph = graph;
        self.committed = self.graph.clone();
        self.modified = true;
        if self.selected.is_some_and(|s| self.graph.node(s).is_none()) {
            self.selected = None;
        }
        self.rebuild_snarl();
        self.evaluate();
    }

    /// Record the current graph as one undo step if it changed, and re-evaluate.
    fn commit(&mut self) {
        if self.graph == self.committed {
            return;
        }
        let before = std::mem::replace(&mut self.committed, self.graph.clone());
        let evaluates = !same_but_positions(&before, &self.graph);
        self.history.push(before);
        self.modified = true;
        if evaluates {
            self.evaluate();
        }
    }

    // ---- evaluation -----------------------------------------------------------------

    /// Ask for every sink to be brought up to date (supersedes running work).
    pub fn evaluate(&mut self) {
        let handle = self.scheduler.request(&self.graph, &[]);
        for (id, key) in handle.keys() {
            if !self.scheduler.is_cached(*key) {
                self.statuses.insert(*id, NodeStatus::Dirty);
            }
        }
        self.statuses.retain(|id, _| self.graph.node(*id).is_some());
        self.outputs.retain(|id, _| handle.keys().contains_key(id));
        self.run = Some(handle);
    }

    /// Stop everything running (Esc, the Stop button).
    pub fn stop(&mut self) {
        self.scheduler.cancel();
    }

    /// Run failed nodes again.
    pub fn retry_failed(&mut self) {
        self.scheduler.forget_errors();
        self.evaluate();
    }

    /// Take in the scheduler's events. Returns true while work is in flight.
    pub fn poll(&mut self) -> bool {
        let Some(run) = &self.run else { return false };
        let mut busy = true;
        let mut finished_any = false;
        for event in run.try_events() {
            match event {
                Event::Queued { node } => {
                    self.statuses.insert(node, NodeStatus::Queued);
                }
                Event::Started { node } => {
                    self.statuses.insert(node, NodeStatus::Running { fraction: 0.0, message: String::new() });
                }
                Event::Progress { node, fraction, message } => {
                    self.statuses.insert(node, NodeStatus::Running { fraction, message });
                }
                Event::Finished { node, duration, outputs } => {
                    finished_any = true;
                    self.statuses.insert(node, NodeStatus::Ready { cached: false, duration: Some(duration) });
                    self.snapshots.record(node, &outputs);
                    self.outputs.insert(node, outputs);
                }
                Event::Cached { node, outputs } => {
                    let duration = match self.statuses.get(&node) {
                        Some(NodeStatus::Ready { duration, .. }) => *duration,
                        _ => None,
                    };
                    self.statuses.insert(node, NodeStatus::Ready { cached: true, duration });
                    self.snapshots.record(node, &outputs);
                    self.outputs.insert(node, outputs);
                }
                Event::Failed { node, error } => {
                    self.statuses.insert(node, NodeStatus::Failed(error.to_string()));
                    self.outputs.remove(&node);
                }
                Event::Blocked { node, by } => {
                    self.statuses.insert(node, NodeStatus::Blocked(by));
                    self.outputs.remove(&node);
                }
                Event::Cancelled { node } => {
                    self.statuses.insert(node, NodeStatus::Cancelled);
                }
                Event::Done | Event::Superseded => busy = false,
            }
        }
        // Probes whose pass a comparator ran within its own: their finished values (once a
        // node has finished: only then can a pass have ended).
        if finished_any {
            for o in self.outputs.values_mut() {
                *o = quantgraph_nodes::scheduler::settled(o);
            }
        }
        if !busy {
            self.run = None;
        }
        busy
    }

    /// Wait (up to `timeout`) until the current evaluation settles. For tests and tools.
    pub fn wait_idle(&mut self, timeout: Duration) -> bool {
        let start = std::time::Instant::now();
        while self.poll() {
            if start.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    pub fn is_busy(&self) -> bool {
        self.run.is_some()
    }

    /// A node's one-line result, for its body on the canvas.
    pub fn summary(&self, node: NodeId) -> Option<String> {
        let outputs = self.outputs.get(&node)?;
        let parts: Vec<String> = outputs.values().map(|v| v.summary()).collect();
        Some(parts.join(" · "))
    }

    // ---- canvas model -----------------------------------------------------------------

    /// Rebuild the canvas from the graph (after load, undo, paste, …).
    pub fn rebuild_snarl(&mut self) {
        let mut snarl = Snarl::new();
        let mut ids = BTreeMap::new();
        for node in self.graph.nodes() {
            let sid = snarl.insert_node(egui::pos2(node.position[0], node.position[1]), node.id);
            ids.insert(node.id, sid);
        }
        for w in self.graph.wires() {
            let (Some(out_ports), Some(in_ports)) = (
                self.graph.output_ports(&self.registry, w.from.node),
                self.graph.input_ports(&self.registry, w.to.node),
            ) else {
                continue;
            };
            let (Some(o), Some(i)) = (
                out_ports.iter().position(|p| p.name == w.from.port),
                in_ports.iter().position(|p| p.name == w.to.port),
            ) else {
                continue;
            };
            if let (Some(f), Some(t)) = (ids.get(&w.from.node), ids.get(&w.to.node)) {
                snarl.connect(egui_snarl::OutPinId { node: *f, output: o }, egui_snarl::InPinId { node: *t, input: i });
            }
        }
        self.snarl = snarl;
        self.snarl_ids = ids;
    }

    /// Where the canvas was drawn last frame (screen points).
    pub fn canvas_rect(&self) -> egui::Rect {
        self.canvas_rect
    }

    /// Record part of what a node drew this frame (header, a pin, the body): the parts of one
    /// frame (`pass`) make its extent.
    pub(crate) fn measure_node(&mut self, node: NodeId, rect: egui::Rect, pass: u64) {
        let extent = self.node_extent.entry(node).or_insert((pass, rect));
        *extent = if extent.0 == pass { (pass, extent.1.union(rect)) } else { (pass, rect) };
        self.node_sizes.insert(node, extent.1.size() + egui::vec2(20.0, 16.0));
    }

    /// A texture made by `make` only when `key` is not cached yet (for images decoded on
    /// demand, which must not be decoded every frame).
    fn texture_with(
        &mut self,
        ctx: &egui::Context,
        key: &str,
        make: impl FnOnce() -> Option<quantgraph_nodes::value::PreviewImage>,
    ) -> Option<egui::TextureHandle> {
        if let Some(t) = self.textures.get(key) {
            return Some(t.clone());
        }
        let image = make()?;
        Some(self.texture(ctx, key, &image))
    }

    fn texture(
        &mut self,
        ctx: &egui::Context,
        key: &str,
        image: &quantgraph_nodes::value::PreviewImage,
    ) -> egui::TextureHandle {
        if let Some(t) = self.textures.get(key) {
            return t.clone();
        }
        // Bounded: old keys (earlier results' pictures) go; what is on screen is made again.
        if self.textures.len() >= MAX_TEXTURES {
            self.textures.clear();
        }
        let img = egui::ColorImage::from_rgb([image.width as usize, image.height as usize], &image.rgb);
        let t = ctx.load_texture(key, img, egui::TextureOptions::NEAREST);
        self.textures.insert(key.to_owned(), t.clone());
        t
    }

    // ---- the window ---------------------------------------------------------------------

    /// Draw the whole editor into `ui` (the window's root) and handle its input.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        if self.poll() {
            ui.ctx().request_repaint_after(Duration::from_millis(50));
        }
        self.shortcuts(ui);
        egui::Panel::top("qg_menu").show(ui, |ui| self.menu_ui(ui));
        egui::Panel::bottom("qg_status").show(ui, |ui| self.status_ui(ui));
        egui::Panel::right("qg_inspector").resizable(true).default_size(440.0).show(ui, |ui| {
            let width = ui.available_width();
            egui::ScrollArea::both().auto_shrink([false, false]).show(ui, |ui| {
                ui.set_max_width(width);
                inspector::inspector_ui(self, ui);
            });
        });
        egui::CentralPanel::default().show(ui, |ui| self.canvas_ui(ui));
        if let Some(Some(browse)) =
            ui.ctx().data_mut(|d| d.remove_temp::<Option<BrowseRequest>>(egui::Id::new("qg_browse")))
        {
            self.browse(browse);
        }
        self.palette_window_ui(ui);
        self.find_window_ui(ui);
        self.graph_window_ui(ui);
        self.prompt_ui(ui);
        // One undo step per gesture: commit once the pointer is up and no text is being typed.
        let pointer_down = ui.input(|i| i.pointer.any_down());
        let typing = ui.ctx().egui_wants_keyboard_input();
        if !pointer_down && !typing {
            self.commit();
            self.live = None;
        } else if pointer_down && !same_but_positions(&self.committed, &self.graph) {
            // A drag (a scale, a slider) re-evaluates as it goes, at most every LIVE_SECS;
            // the scheduler supersedes the older request, and the release commits once.
            let now = ui.input(|i| i.time);
            let due = self.live.as_ref().is_none_or(|(g, at)| *g != self.graph && now - at >= LIVE_SECS);
            if due {
                self.live = Some((self.graph.clone(), now));
                self.evaluate();
            }
        }
        self.autosave(ui.input(|i| i.time));
    }

    fn shortcuts(&mut self, ui: &mut egui::Ui) {
        use egui::{Key, KeyboardShortcut, Modifiers};
        let typing = ui.ctx().egui_wants_keyboard_input();
        let hit = |m: Modifiers, k: Key| ui.input_mut(|i| i.consume_shortcut(&KeyboardShortcut::new(m, k)));
        let cmd_shift = Modifiers::COMMAND | Modifiers::SHIFT;
        if hit(cmd_shift, Key::Z) || hit(Modifiers::COMMAND, Key::Y) {
            self.redo();
        } else if hit(Modifiers::COMMAND, Key::Z) {
            self.undo();
        }
        if hit(cmd_shift, Key::S) {
            self.ask_path(true);
        } else if hit(Modifiers::COMMAND, Key::S) {
            self.save();
        }
        if hit(Modifiers::COMMAND, Key::O) {
            self.request(AfterPrompt::Open(None));
        }
        if hit(Modifiers::COMMAND, Key::N) {
            self.request(AfterPrompt::New);
        }
        if hit(Modifiers::COMMAND, Key::F) {
            self.find = Some(String::new());
        }
        if typing {
            return;
        }
        let selection = self.selection(ui);
        if hit(Modifiers::COMMAND, Key::C) {
            ui.ctx().copy_text(self.copy_text(&selection));
        }
        if hit(Modifiers::COMMAND, Key::D) {
            self.duplicate(&selection);
        }
        let pasted = ui.input(|i| {
            i.events.iter().find_map(|e| if let egui::Event::Paste(s) = e { Some(s.clone()) } else { None })
        });
        if let Some(text) = pasted {
            self.paste_text(&text);
        }
        if hit(Modifiers::NONE, Key::Delete) || hit(Modifiers::NONE, Key::Backspace) {
            self.delete(&selection);
        }
        if hit(Modifiers::NONE, Key::Escape) {
            if self.palette.is_some() || self.find.is_some() {
                self.palette = None;
                self.find = None;
            } else {
                self.stop();
            }
        }
        if hit(Modifiers::NONE, Key::G) && !selection.is_empty() {
            self.group_in_frame(&selection);
        }
        if hit(Modifiers::SHIFT, Key::F) {
            if !selection.is_empty() {
                self.frame_nodes = Some(selection.clone());
            }
        } else if hit(Modifiers::NONE, Key::F) {
            self.frame_requested = true;
        }
        if hit(Modifiers::NONE, Key::Space) {
            self.palette = Some(Palette { query: String::new(), pos: self.free_position() });
        }
    }

    /// Nodes selected on the canvas (or the inspector's node).
    pub fn selection(&self, ui: &egui::Ui) -> Vec<NodeId> {
        let ids = egui_snarl::ui::get_selected_nodes(canvas::canvas_id(), ui.ctx());
        let mut out: Vec<NodeId> = ids.into_iter().filter_map(|sid| self.snarl.get_node(sid).copied()).collect();
        if out.is_empty() {
            out.extend(self.selected);
        }
        out
    }

    /// A spot right of every node, for a new node.
    pub fn free_position(&self) -> [f32; 2] {
        let x = self.graph.nodes().map(|n| n.position[0]).fold(0.0f32, f32::max);
        [x + 260.0, 40.0]
    }

    fn menu_ui(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("New  (Ctrl+N)").clicked() {
                    self.request(AfterPrompt::New);
                }
                if ui.button("Open…  (Ctrl+O)").clicked() {
                    self.request(AfterPrompt::Open(None));
                }
                ui.menu_button("Open recent", |ui| {
                    if self.recent.is_empty() {
                        ui.label("(none)");
                    }
                    for p in self.recent.clone() {
                        if ui.button(p.display().to_string()).clicked() {
                            self.request(AfterPrompt::Open(Some(p)));
                        }
                    }
                });
                if ui.button("Save  (Ctrl+S)").clicked() {
                    self.save();
                }
                if ui.button("Save As…  (Ctrl+Shift+S)").clicked() {
                    self.ask_path(true);
                }
                ui.separator();
                if ui.button("Quit").clicked() {
                    self.request(AfterPrompt::Quit);
                }
            });
            ui.menu_button("Edit", |ui| {
                if ui.add_enabled(self.history.can_undo(), egui::Button::new("Undo  (Ctrl+Z)")).clicked() {
                    self.undo();
                }
                if ui.add_enabled(self.history.can_redo(), egui::Button::new("Redo  (Ctrl+Shift+Z)")).clicked() {
                    self.redo();
                }
                ui.separator();
                let selection = self.selection(ui);
                if ui.button("Copy  (Ctrl+C)").clicked() {
                    ui.ctx().copy_text(self.copy_text(&selection));
                }
                if ui.button("Duplicate  (Ctrl+D)").clicked() {
                    self.duplicate(&selection);
                }
                if ui.button("Delete  (Del)").clicked() {
                    self.delete(&selection);
                }
                if ui.add_enabled(!selection.is_empty(), egui::Button::new("Group in a frame  (G)")).clicked() {
                    self.group_in_frame(&selection);
                }
            });
            if ui.button("Frame all  (F)").clicked() {
                self.frame_requested = true;
            }
            let selection = self.selection(ui);
            if ui.add_enabled(!selection.is_empty(), egui::Button::new("Frame selected  (Shift+F)")).clicked() {
                self.frame_nodes = Some(selection);
            }
            if ui.button("Add node  (Space)").clicked() {
                self.palette = Some(Palette { query: String::new(), pos: self.free_position() });
            }
            if self.is_busy() {
                if ui.button("⏹ Stop  (Esc)").clicked() {
                    self.stop();
                }
            } else if ui.button("⟳ Retry failed").clicked() {
                self.retry_failed();
            }
            ui.separator();
            ui.label(self.title());
        });
    }

    fn status_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let running =
                self.statuses.values().filter(|s| matches!(s, NodeStatus::Running { .. } | NodeStatus::Queued)).count();
            let failed = self.statuses.values().filter(|s| matches!(s, NodeStatus::Failed(_))).count();
            if running > 0 {
                ui.spinner();
                ui.label(format!("{running} node(s) running"));
            } else {
                ui.label("idle");
            }
            if failed > 0 {
                ui.colored_label(NodeStatus::Failed(String::new()).color(), format!("{failed} failed"));
            }
            if self.show_timings {
                ui.label(format!("cache {:.1} MiB", self.scheduler.cache_bytes() as f64 / (1024.0 * 1024.0)));
            }
            if let Some(m) = &self.message {
                ui.separator();
                ui.label(m);
            }
        });
    }

    fn canvas_ui(&mut self, ui: &mut egui::Ui) {
        self.canvas_rect = ui.available_rect_before_wrap();
        self.frames_ui(ui);
        let mut snarl = std::mem::take(&mut self.snarl);
        let mut viewer = canvas::CanvasViewer { editor: self, added: Vec::new() };
        SnarlWidget::new().id(canvas::canvas_id()).style(canvas_style()).show(&mut snarl, &mut viewer, ui);
        self.snarl = snarl;
        self.frame_boxes_ui(ui);
        // Node moves → graph positions.
        for (sid, pos, node) in self.snarl.nodes_pos_ids() {
            if let Some(n) = self.graph.node_mut(*node) {
                let p = [pos.x, pos.y];
                if n.position != p {
                    n.position = p;
                }
            }
            self.snarl_ids.insert(*node, sid);
        }
        let selected = egui_snarl::ui::get_selected_nodes(canvas::canvas_id(), ui.ctx());
        // A new canvas selection selects its node (and leaves a frame being edited).
        if selected != self.snarl_selection {
            if let Some(first) = selected.first().and_then(|s| self.snarl.get_node(*s)) {
                self.selected = Some(*first);
                self.selected_frame = None;
            }
            self.snarl_selection = selected;
        }
        self.minimap_ui(ui);
    }
}

fn same_but_positions(a: &Graph, b: &Graph) -> bool {
    a.len() == b.len()
        && a.wires().eq(b.wires())
        && a.nodes()
            .zip(b.nodes())
            .all(|(x, y)| x.id == y.id && x.kind == y.kind && x.params == y.params && x.kind_version == y.kind_version)
}

fn canvas_style() -> SnarlStyle {
    let mut s = SnarlStyle::new();
    s.collapsible = Some(true);
    s.pin_placement = Some(egui_snarl::ui::PinPlacement::Edge);
    s
}
