//! The editor window: Bevy + bevy_egui hosting [`quantgraph_ui::Editor`].
//!
//! Everything the user sees is drawn by `quantgraph-ui` (plain egui, tested with
//! egui_kittest); this module is the Bevy shell: the window, its title, close requests
//! (asking about unsaved changes), the recovery file, and `--screenshot` for CI.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bevy::prelude::*;
use bevy::render::view::screenshot::{save_to_disk, Screenshot};
use bevy::window::{PrimaryWindow, WindowCloseRequested};
use bevy_egui::{egui, EguiContexts, EguiPlugin, EguiPrimaryContextPass};
use quantgraph_nodes::NodeRegistry;
use quantgraph_ui::{AfterPrompt, Editor};

/// Options for the editor window.
#[derive(Clone, Default)]
pub struct EditorPlugin {
    /// The graph to open.
    pub file: Option<PathBuf>,
    /// Save a screenshot here once evaluation has settled, then exit (CI).
    pub screenshot: Option<PathBuf>,
    /// When the process started (for the launch-to-first-frame figure).
    pub launched: Option<Instant>,
    /// Open this node's graph window once the graph has evaluated (`--graph-view`).
    pub graph_view: Option<String>,
}

struct EditorState {
    editor: Editor,
    screenshot: Option<PathBuf>,
    idle_frames: u32,
    frames: u64,
    started: Instant,
    shot_taken: bool,
    graph_view: Option<String>,
}

/// Where the recovery file and the recent list live, from the `directories` crate: the
/// platform's state folder (`$XDG_STATE_HOME/quantgraph`, else `~/.local/state/quantgraph` on
/// Linux), else its local data folder (macOS and Windows have no state folder).
pub fn state_dir() -> Option<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "quantgraph")?;
    Some(dirs.state_dir().unwrap_or_else(|| dirs.data_local_dir()).to_path_buf())
}

fn load_recent(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string(dir.join("recent.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Vec<PathBuf>>(&t).ok())
        .unwrap_or_default()
}

impl Plugin for EditorPlugin {
    fn build(&self, app: &mut App) {
        let registry = match crate::registry() {
            Ok(r) => Arc::new(r),
            Err(e) => {
                error!("registering node kinds failed: {e}");
                Arc::new(NodeRegistry::new())
            }
        };
        // Every edit re-evaluates: keep activations at cut points for suffix runs.
        crate::keep_cuts(crate::EDIT_LOOP_CUT_BUDGET);
        let mut editor = Editor::new(registry);
        if let Some(dir) = state_dir() {
            editor.recent = load_recent(&dir);
            editor.recovery_path = Some(dir.join("recovery.qgraph"));
        }
        editor.file_dialog = native_dialog();
        editor.check_recovery();
        if let Some(file) = &self.file {
            editor.open(file);
        }
        app.insert_non_send(EditorState {
            editor,
            screenshot: self.screenshot.clone(),
            idle_frames: 0,
            frames: 0,
            started: self.launched.unwrap_or_else(Instant::now),
            shot_taken: false,
            graph_view: self.graph_view.clone(),
        });
        app.add_plugins(EguiPlugin::default())
            .insert_resource(ClearColor(Color::srgb(0.08, 0.08, 0.09)))
            .add_systems(Startup, setup_camera)
            .add_systems(EguiPrimaryContextPass, editor_ui)
            .add_systems(Update, (close_requests, screenshot_when_settled));
    }
}

/// rfd's native dialogs (through the XDG desktop portal), where a desktop session can
/// answer; elsewhere (Xvfb, CI) `None`, and the editor asks for a typed path instead.
fn native_dialog() -> Option<quantgraph_ui::FileDialog> {
    let desktop = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
        && (std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some());
    if !desktop {
        return None;
    }
    Some(Box::new(|req: &quantgraph_ui::DialogRequest| {
        let mut d = rfd::FileDialog::new();
        if let Some(start) = &req.start {
            let dir = if start.is_dir() { Some(start.as_path()) } else { start.parent() };
            if let Some(dir) = dir.filter(|d| d.is_dir()) {
                d = d.set_directory(dir);
            }
        }
        if !req.extensions.is_empty() {
            let exts: Vec<&str> = req.extensions.iter().map(String::as_str).collect();
            d = d.add_filter(req.extensions.join(", "), &exts);
        }
        Some(if req.directory {
            d.pick_folder()
        } else if req.save {
            d.save_file()
        } else {
            d.pick_file()
        })
    }))
}

fn setup_camera(mut commands: Commands) {
    commands.spawn(Camera2d);
}

fn editor_ui(
    mut contexts: EguiContexts,
    mut state: NonSendMut<EditorState>,
    mut window: Single<&mut Window, With<PrimaryWindow>>,
    mut exit: MessageWriter<AppExit>,
) -> Result {
    let ctx = contexts.ctx_mut()?;
    let mut ui = egui::Ui::new(
        ctx.clone(),
        "quantgraph_root".into(),
        egui::UiBuilder::new().layer_id(egui::LayerId::background()).max_rect(ctx.viewport_rect()),
    );
    state.editor.ui(&mut ui);
    state.frames += 1;
    if state.frames == 1 {
        info!("first frame after {:.2} s (from launch)", state.started.elapsed().as_secs_f64());
    }
    let title = state.editor.title();
    if window.title != title {
        window.title = title;
    }
    if state.editor.quit_requested {
        save_session(&state.editor);
        exit.write(AppExit::Success);
    }
    Ok(())
}

fn save_session(editor: &Editor) {
    if let Some(dir) = state_dir() {
        let _ = std::fs::create_dir_all(&dir);
        let _ = quantgraph_nodes::fsio::write_atomic(
            &dir.join("recent.json"),
            serde_json::to_string(&editor.recent).unwrap_or_default().as_bytes(),
        );
        if !editor.modified {
            let _ = std::fs::remove_file(dir.join("recovery.qgraph"));
        }
    }
}

/// Closing the window asks first when there are unsaved changes.
fn close_requests(mut requests: MessageReader<WindowCloseRequested>, mut state: NonSendMut<EditorState>) {
    for _ in requests.read() {
        state.editor.request(AfterPrompt::Quit);
    }
}

/// `--screenshot`: once nothing has been running for a while, save the window and exit.
fn screenshot_when_settled(
    mut commands: Commands,
    mut state: NonSendMut<EditorState>,
    mut exit: MessageWriter<AppExit>,
) {
    open_graph_view_once(&mut state);
    let Some(path) = state.screenshot.clone() else { return };
    if state.shot_taken {
        state.idle_frames += 1;
        if state.idle_frames > 30 && path.exists() {
            info!("screenshot saved to {}", path.display());
            exit.write(AppExit::Success);
        }
        if state.idle_frames > 600 {
            error!("the screenshot was not written");
            exit.write(AppExit::error());
        }
        return;
    }
    if state.editor.is_busy() {
        state.idle_frames = 0;
        return;
    }
    state.idle_frames += 1;
    if state.idle_frames == 20 {
        let _ = std::fs::remove_file(&path);
        commands.spawn(Screenshot::primary_window()).observe(save_to_disk(path));
        state.shot_taken = true;
        state.idle_frames = 0;
    }
}

/// `--graph-view NODE`: once nothing is running, open that node's graph window (once).
fn open_graph_view_once(state: &mut EditorState) {
    let Some(name) = state.graph_view.clone() else { return };
    if state.editor.is_busy() || state.frames < 5 {
        return;
    }
    let graph = state.editor.graph();
    let node = graph.find_node(&name).or_else(|| {
        name.trim_start_matches('#').parse().ok().map(quantgraph_nodes::NodeId).filter(|id| graph.node(*id).is_some())
    });
    // Results may not have arrived yet: wait for them (a few seconds of frames) before saying so.
    if node.is_some_and(|id| state.editor.outputs(id).is_none()) && state.frames < 600 {
        return;
    }
    state.graph_view = None;
    match node.ok_or_else(|| format!("no node labelled '{name}'")).and_then(|id| state.editor.open_graph_view_of(id)) {
        Ok(()) => info!("graph view of {name} opened"),
        Err(e) => {
            error!("--graph-view {name}: {e}");
            state.editor.message = Some(format!("--graph-view {name}: {e}"));
        }
    }
}

/// Open the editor window (blocks until it closes).
pub fn run(plugin: EditorPlugin) -> AppExit {
    App::new()
        .add_plugins(DefaultPlugins.set(WindowPlugin {
            primary_window: Some(Window { title: "QuantGraph".into(), resolution: (1600, 1000).into(), ..default() }),
            close_when_requested: false,
            ..default()
        }))
        .add_plugins(plugin)
        .run()
}
