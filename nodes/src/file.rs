//! `.qgraph` files: JSON, params by name, atomic and deterministic saves.
//!
//! * Loading checks the format and version, gives line and column for malformed JSON,
//!   applies registered kind migrations, and keeps nodes of unknown kinds as placeholders
//!   (their params and wires are written back unchanged).
//! * Saving writes nodes sorted by id, wires sorted by their input end, params sorted by
//!   name, to a temporary file that is flushed and renamed over the target: the same
//!   graph always gives the same bytes, and a crash never leaves half a file.
//! * Path params are stored relative to the graph file's folder.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::graph::{Frame, Graph, Node, NodeId, ViewState, Wire};
use crate::param::ParamKind;
use crate::registry::NodeRegistry;

/// The `format` field of every graph file.
pub const FORMAT: &str = "quantgraph";
/// The file format version this build writes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct GraphFile {
    format: String,
    format_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    notes: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    view: Option<ViewState>,
    nodes: Vec<Node>,
    wires: Vec<Wire>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    frames: Vec<Frame>,
}

/// What loading noticed: placeholders, migrations, warnings.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LoadReport {
    /// Nodes whose kind is unknown to this build.
    pub placeholders: Vec<NodeId>,
    /// Nodes migrated, with the version they were migrated from.
    pub migrated: Vec<(NodeId, u32)>,
    pub warnings: Vec<String>,
}

/// Parse a graph file's text. `path` is only used in messages and as the base folder.
pub fn from_str(text: &str, path: &Path, registry: &NodeRegistry) -> Result<(Graph, LoadReport)> {
    let file: GraphFile = serde_json::from_str(text).map_err(|e| Error::Parse {
        line: e.line(),
        column: e.column(),
        message: e.to_string().split(" at line ").next().unwrap_or_default().to_owned(),
        path: path.to_path_buf(),
    })?;
    let invalid = |message: String| Error::Invalid { message, path: path.to_path_buf() };
    if file.format != FORMAT {
        return Err(invalid(format!("expected format \"{FORMAT}\", found \"{}\"", file.format)));
    }
    if file.format_version > FORMAT_VERSION {
        return Err(invalid(format!(
            "format version {} was written by a newer QuantGraph (this build reads up to {FORMAT_VERSION})",
            file.format_version
        )));
    }
    let mut graph = Graph::new();
    graph.notes = file.notes;
    graph.view = file.view;
    // Frames with non-finite or negative geometry are dropped (with a warning below).
    let frames_read = file.frames.len();
    graph.frames = file
        .frames
        .into_iter()
        .filter(|f| f.rect.iter().all(|v| v.is_finite()) && f.rect[2] > 0.0 && f.rect[3] > 0.0)
        .collect();
    let frames_dropped = frames_read - graph.frames.len();
    graph.base_dir = path.parent().map(Path::to_path_buf);
    let mut report = LoadReport::default();
    if frames_dropped > 0 {
        report.warnings.push(format!("{frames_dropped} frame(s) with a non-finite or empty rectangle were dropped"));
    }
    for mut node in file.nodes {
        let id = node.id;
        match registry.get(&node.kind) {
            None => {
                report.placeholders.push(id);
                report
                    .warnings
                    .push(format!("node {id}: unknown kind '{}' kept as a placeholder with its params", node.kind));
            }
            Some(kind) if node.kind_version > kind.version() => report.warnings.push(format!(
                "node {id}: '{}' version {} is newer than this build's {}; kept unchanged",
                node.kind,
                node.kind_version,
                kind.version()
            )),
            Some(kind) if node.kind_version < kind.version() => {
                let from = node.kind_version;
                let migrations = kind.migrations();
                let mut params = node.params.clone();
                let mut version = from;
                while version < kind.version() {
                    let Some(m) = migrations.iter().find(|m| m.from_version == version) else {
                        break;
                    };
                    if let Err(e) = (m.apply)(&mut params) {
                        report.warnings.push(format!("node {id}: migration from version {version} failed: {e}"));
                        break;
                    }
                    version += 1;
                }
                if version == kind.version() {
                    node.params = params;
                    node.kind_version = version;
                    report.migrated.push((id, from));
                } else {
                    report.warnings.push(format!(
                        "node {id}: no migration of '{}' from version {version}; params kept as they were",
                        node.kind
                    ));
                }
            }
            Some(_) => {}
        }
        graph.insert_node(node).map_err(|_| invalid(format!("node id {} is used twice", id.0)))?;
    }
    for (i, wire) in file.wires.into_iter().enumerate() {
        for end in [&wire.from, &wire.to] {
            if graph.node(end.node).is_none() {
                return Err(invalid(format!("wire {i} names node {}, which the file does not have", end.node.0)));
            }
        }
        let to = wire.to.clone();
        if graph.insert_wire_unchecked(wire).is_some() {
            return Err(invalid(format!("input '{}' of node {} has two wires", to.port, to.node.0)));
        }
    }
    Ok((graph, report))
}

/// The largest graph file read (a 1,000-node graph is about 320 KiB).
pub const MAX_GRAPH_FILE_BYTES: u64 = 64 << 20;

/// Read a graph file (a regular file of at most [`MAX_GRAPH_FILE_BYTES`]).
pub fn load(path: &Path, registry: &NodeRegistry) -> Result<(Graph, LoadReport)> {
    let bytes = crate::fsio::read_regular_file(path, MAX_GRAPH_FILE_BYTES)
        .map_err(|e| Error::Invalid { message: format!("graph file: {e}"), path: path.to_path_buf() })?;
    let text = String::from_utf8(bytes).map_err(|e| Error::Invalid {
        message: format!("expected UTF-8 JSON text, found invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
        path: path.to_path_buf(),
    })?;
    from_str(&text, path, registry)
}

/// A finite coordinate (JSON has no NaN or infinity: `serde_json` would write `null`,
/// and the file would not load).
fn finite(x: f32) -> f32 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

/// The file text for a graph saved into folder `target_dir` (path params are made
/// relative to it). Deterministic: the same graph gives the same bytes.
pub fn to_string(graph: &Graph, registry: &NodeRegistry, target_dir: Option<&Path>) -> String {
    let nodes = graph
        .nodes()
        .map(|n| {
            let mut n = n.clone();
            n.position = n.position.map(finite);
            if let (Some(kind), Some(dir)) = (registry.get(&n.kind), target_dir) {
                for spec in kind.params() {
                    if let ParamKind::Path { .. } = spec.kind {
                        if let Some(serde_json::Value::String(p)) = n.params.get(&spec.name) {
                            let rebased = rebase_path(p, graph.base_dir.as_deref(), dir);
                            n.params.insert(spec.name.clone(), serde_json::Value::String(rebased));
                        }
                    }
                }
            }
            n
        })
        .collect();
    let file = GraphFile {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        notes: graph.notes.clone(),
        view: graph.view.clone().map(|v| ViewState {
            offset: v.offset.map(finite),
            zoom: if v.zoom.is_finite() && v.zoom > 0.0 { v.zoom } else { 1.0 },
            selected: v.selected,
        }),
        nodes,
        wires: graph.wires().collect(),
        frames: graph.frames.clone(),
    };
    let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
    text.push('\n');
    text
}

/// Save atomically ([`crate::fsio::write_atomic`]: a temporary file beside the target,
/// flushed, renamed over it, the folder synced; the file keeps its permissions).
/// On success the graph's base folder becomes the file's folder.
pub fn save(graph: &mut Graph, registry: &NodeRegistry, path: &Path) -> Result<()> {
    let dir = crate::fsio::parent_dir(path);
    let abs_dir = std::path::absolute(&dir).unwrap_or(dir.clone());
    let text = to_string(graph, registry, Some(&abs_dir));
    crate::fsio::write_atomic(path, text.as_bytes()).map_err(|source| Error::Io {
        action: "saving the graph file",
        path: path.to_path_buf(),
        source,
    })?;
    graph.base_dir = Some(abs_dir);
    Ok(())
}

/// Lexically normalise a path (remove `.` and resolve `..` where possible).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A path param as it should be written into a file in `target_dir`: relative to it.
fn rebase_path(value: &str, base_dir: Option<&Path>, target_dir: &Path) -> String {
    if value.is_empty() || value.starts_with('$') {
        return value.to_owned();
    }
    let p = Path::new(value);
    if p.is_relative() {
        match base_dir {
            Some(base) if normalize(base) == normalize(target_dir) => return value.to_owned(),
            Some(_) | None => {}
        }
    }
    let absolute = match (p.is_absolute(), base_dir) {
        (true, _) => p.to_path_buf(),
        (false, Some(base)) => base.join(p),
        (false, None) => std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf()),
    };
    let absolute = normalize(&absolute);
    match pathdiff::diff_paths(&absolute, normalize(target_dir)) {
        Some(rel) => rel.to_string_lossy().replace('\\', "/"),
        None => absolute.to_string_lossy().into_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rebase_keeps_relative_paths_in_the_same_folder() {
        assert_eq!(rebase_path("../m.onnx", Some(Path::new("/a/b")), Path::new("/a/b")), "../m.onnx");
        assert_eq!(rebase_path("../m.onnx", Some(Path::new("/a/b")), Path::new("/a/c/d")), "../../m.onnx");
        assert_eq!(rebase_path("/a/m.onnx", None, Path::new("/a/g")), "../m.onnx");
        assert_eq!(rebase_path("", None, Path::new("/a/g")), "");
    }
}
