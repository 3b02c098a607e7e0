//! Drag the numbers: a model's Q/DQ parameters as drag values that write to the node taking
//! tensor edits on that model (a kind whose [`NodeKind::tensor_edits`] says where, e.g. the
//! QDQ Override). The editor never names a kind: it asks the registry which kinds take edits.
//!
//! A drag changes the edit row in place; the editor re-evaluates while the pointer is down
//! (throttled) and records one undo step when it is released.
//!
//! [`NodeKind::tensor_edits`]: quantgraph_nodes::NodeKind::tensor_edits

use quantgraph_nodes::graph::{Graph, NodeId, PortRef};
use quantgraph_nodes::kind::TensorEdits;
use quantgraph_nodes::value::{ModelValue, QdqEntry};
use serde_json::{json, Map, Value as Json};

use crate::Editor;

/// Where edits of the model on a port go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub node: NodeId,
    pub param: &'static str,
}

fn edits_of(editor: &Editor, node: NodeId) -> Option<TensorEdits> {
    let kind = editor.graph.node(node)?.kind.clone();
    editor.registry.get(&kind)?.tensor_edits()
}

/// The node that takes edits for the model on `(node, port)`: the node itself when it takes
/// tensor edits and `port` is its edited model, else the first node fed by that port that
/// takes them.
pub fn edit_target(editor: &Editor, node: NodeId, port: &str) -> Option<Target> {
    if let Some(te) = edits_of(editor, node).filter(|te| te.model_output == port) {
        return Some(Target { node, param: te.param });
    }
    let from = PortRef::new(node, port);
    editor.graph.wires().filter(|w| w.from == from).find_map(|w| {
        edits_of(editor, w.to.node)
            .filter(|te| te.model_input == w.to.port)
            .map(|te| Target { node: w.to.node, param: te.param })
    })
}

/// Insert a node of the first registered kind that takes tensor edits after `(node, port)`:
/// it reads the model there, and what read that port reads its edited model. One undo step.
pub fn insert_edit_node(editor: &mut Editor, node: NodeId, port: &str) -> Option<NodeId> {
    let kind = editor.registry.kinds().find(|k| k.tensor_edits().is_some())?.clone();
    let te = kind.tensor_edits()?;
    let mut added = None;
    let mut error = None;
    editor.edit(|g, r| {
        let Some(pos) = g.node(node).map(|n| [n.position[0] + 60.0, n.position[1] + 160.0]) else { return };
        let id = match g.add_node(r, kind.id(), pos) {
            Ok(id) => id,
            Err(e) => {
                error = Some(e.to_string());
                return;
            }
        };
        let from = PortRef::new(node, port);
        let readers: Vec<PortRef> = g.wires().filter(|w| w.from == from).map(|w| w.to).collect();
        if let Err(e) = g.connect(r, from, PortRef::new(id, te.model_input)) {
            error = Some(e.to_string());
            return;
        }
        for to in readers {
            if let Err(e) = g.connect(r, PortRef::new(id, te.model_output), to) {
                error = Some(e.to_string());
            }
        }
        added = Some(id);
    });
    if let Some(e) = error {
        editor.message = Some(format!("Could not insert the edit node: {e}"));
    }
    added
}

fn rows(graph: &Graph, t: &Target) -> Vec<Json> {
    graph.node(t.node).and_then(|n| n.params.get(t.param)).and_then(Json::as_array).cloned().unwrap_or_default()
}

/// The row of `tensor` for `channel` (`None`: every channel), Q and DQ together.
fn is_row_at(row: &Json, tensor: &str, channel: Option<usize>) -> bool {
    // As the QDQ Override reads `channel`: absent, null, empty or "all" mean every channel.
    let row_channel = match row.get("channel") {
        None | Some(Json::Null) => Some(None),
        Some(Json::String(c)) if c.trim().is_empty() || c.trim() == "all" => Some(None),
        Some(Json::String(c)) => c.trim().parse::<usize>().ok().map(Some),
        Some(Json::Number(n)) => n.as_u64().map(|c| Some(c as usize)),
        Some(_) => None,
    };
    row.get("tensor").and_then(Json::as_str) == Some(tensor)
        && row_channel == Some(channel)
        && row.get("apply_to").and_then(Json::as_str).is_none_or(|a| a == "pair")
}

/// The whole-tensor edit row of `tensor`, if there is one.
pub fn edit_row(graph: &Graph, t: &Target, tensor: &str) -> Option<Map<String, Json>> {
    edit_row_at(graph, t, tensor, None)
}

/// The edit row of `tensor` for `channel` (`None`: the whole-tensor row), if there is one.
pub fn edit_row_at(graph: &Graph, t: &Target, tensor: &str, channel: Option<usize>) -> Option<Map<String, Json>> {
    rows(graph, t).into_iter().find(|r| is_row_at(r, tensor, channel)).and_then(|r| r.as_object().cloned())
}

/// Whether any row edits `tensor` (whole or one channel).
fn has_rows(graph: &Graph, t: &Target, tensor: &str) -> bool {
    rows(graph, t).iter().any(|r| r.get("tensor").and_then(Json::as_str) == Some(tensor))
}

/// What a drag changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    Scale(f64),
    ZeroPoint(i64),
    Factor(f64),
}

/// Write one change into `tensor`'s whole-tensor row (made when missing), in place: the
/// editor's per-gesture commit makes it one undo step.
pub fn set_edit(graph: &mut Graph, t: &Target, tensor: &str, change: Change) {
    set_edit_at(graph, t, tensor, None, change);
}

/// Write one change into `tensor`'s row for `channel` (`None`: every channel; made when
/// missing, after the whole-tensor row so the channel's own value wins), in place.
pub fn set_edit_at(graph: &mut Graph, t: &Target, tensor: &str, channel: Option<usize>, change: Change) {
    let mut list = rows(graph, t);
    let at = match list.iter().position(|r| is_row_at(r, tensor, channel)) {
        Some(i) => i,
        None => {
            let ch = channel.map(|c| c.to_string()).unwrap_or_default();
            let row = json!({"tensor": tensor, "scale": 0.0, "factor": 0.0, "zero_point": "", "channel": ch, "apply_to": "pair"});
            // Rows apply in order: a whole-tensor row goes before the tensor's channel rows,
            // so a channel's own value wins whichever was edited first.
            let first_channel_row = list
                .iter()
                .position(|r| r.get("tensor").and_then(Json::as_str) == Some(tensor) && !is_row_at(r, tensor, None));
            match (channel, first_channel_row) {
                (None, Some(i)) => {
                    list.insert(i, row);
                    i
                }
                _ => {
                    list.push(row);
                    list.len() - 1
                }
            }
        }
    };
    if let Some(row) = list[at].as_object_mut() {
        match change {
            Change::Scale(s) => {
                row.insert("scale".into(), json!(s));
                row.insert("factor".into(), json!(0.0));
            }
            Change::ZeroPoint(z) => {
                row.insert("zero_point".into(), json!(z.to_string()));
            }
            Change::Factor(f) => {
                row.insert("factor".into(), json!(f));
                row.insert("scale".into(), json!(0.0));
            }
        }
    }
    if let Some(n) = graph.node_mut(t.node) {
        n.params.insert(t.param.to_owned(), Json::Array(list));
    }
}

/// Remove `tensor`'s row for `channel` (`None`: the whole-tensor row), in place.
pub fn clear_edit(graph: &mut Graph, t: &Target, tensor: &str, channel: Option<usize>) {
    let list: Vec<Json> = rows(graph, t).into_iter().filter(|r| !is_row_at(r, tensor, channel)).collect();
    if let Some(n) = graph.node_mut(t.node) {
        n.params.insert(t.param.to_owned(), Json::Array(list));
    }
}

/// The tensor whose name edits `e`'s parameters: pairs that share a scale initializer (a
/// Flatten's pair reusing the GlobalAveragePool's) are edited through the first of them.
pub fn owner<'a>(qdq: &'a [QdqEntry], e: &'a QdqEntry) -> &'a str {
    qdq.iter().find(|o| o.scale_name == e.scale_name).map_or(e.float_tensor.as_str(), |o| o.float_tensor.as_str())
}

/// The pairs a user edits, one row per scale initializer: activation QuantizeLinears in graph
/// order, then weight (and bias) DequantizeLinears.
fn editable(m: &ModelValue) -> Vec<&QdqEntry> {
    let mut seen = std::collections::BTreeSet::new();
    let qdq = &m.info.qdq;
    let activations = qdq.iter().filter(|e| e.op_type == "QuantizeLinear" && !e.is_weight);
    let weights = qdq.iter().filter(|e| e.is_weight && e.op_type == "DequantizeLinear");
    activations
        .chain(weights)
        .filter(|e| owner(qdq, e) == e.float_tensor)
        .filter(|e| seen.insert(e.float_tensor.clone()))
        .collect()
}

/// The drag-value table of a model's Q/DQ parameters.
pub fn qdq_edit_ui(editor: &mut Editor, ui: &mut egui::Ui, node: NodeId, port: &str, m: &ModelValue) {
    let entries = editable(m);
    if entries.is_empty() {
        return;
    }
    egui::CollapsingHeader::new("Edit scales and zero points")
        .id_salt(("qdq_edit", node.0, port))
        .default_open(true)
        .show(ui, |ui| {
            let Some(target) = edit_target(editor, node, port) else {
                ui.label("Scales are edited through a QDQ Override on this model's output.");
                if ui
                    .button("Insert a QDQ Override here")
                    .on_hover_text("Adds one after this port; what read this model reads the edited one")
                    .clicked()
                {
                    if let Some(id) = insert_edit_node(editor, node, port) {
                        editor.message = Some("Inserted a QDQ Override: drag a scale to edit it".into());
                        editor.selected = Some(editor.selected.unwrap_or(id));
                    }
                }
                return;
            };
            let target_name = editor.graph.display_name(&editor.registry, target.node);
            ui.label(
                egui::RichText::new(format!(
                    "Drag a value (or click to type): it is written to '{target_name}'. One undo step per drag."
                ))
                .weak(),
            );
            // Activations and weights apart, each scrolling on its own.
            let (acts, weights): (Vec<&QdqEntry>, Vec<&QdqEntry>) = entries.iter().partition(|e| !e.is_weight);
            for (name, list) in [("activations", acts), ("weights", weights)] {
                if list.is_empty() {
                    continue;
                }
                ui.label(egui::RichText::new(format!("{} {name}", list.len())).strong());
                egui::ScrollArea::vertical().max_height(280.0).id_salt(("qdq_edit_scroll", node.0, port, name)).show(
                    ui,
                    |ui| {
                        egui::Grid::new(("qdq_edit_grid", node.0, port, name)).striped(true).num_columns(4).show(
                            ui,
                            |ui| {
                                let scale = if name == "weights" { "scale (channel)" } else { "scale" };
                                for h in ["tensor", scale, "zero point", ""] {
                                    ui.label(egui::RichText::new(h).strong());
                                }
                                ui.end_row();
                                for e in list {
                                    row_ui(editor, ui, node, &target, e);
                                    ui.end_row();
                                }
                            },
                        );
                    },
                );
            }
        });
}

fn row_ui(editor: &mut Editor, ui: &mut egui::Ui, node: NodeId, target: &Target, e: &QdqEntry) {
    let tensor = e.float_tensor.as_str();
    let name = quantgraph_nodes::value::elide_middle(tensor, 34);
    let edited = has_rows(&editor.graph, target, tensor);
    let label = ui.label(if edited { egui::RichText::new(format!("{name} ✎")).strong() } else { name.into() });
    label.clone().on_hover_text(format!(
        "{tensor} ({}, {})",
        if e.is_weight { "weight" } else { "activation" },
        e.dtype
    ));
    let channels = e.scales.len();
    // Per-channel pairs: every channel (a factor on each scale) or the chosen one.
    let key = (node.0, tensor.to_owned());
    let mut channel = if channels > 1 { editor.views.channel.get(&key).copied().flatten() } else { None };
    let mut change = None;
    ui.horizontal(|ui| {
        if channels > 1 {
            let mut ch: i64 = channel.map_or(-1, |c| c as i64);
            let r = ui
                .add(
                    egui::DragValue::new(&mut ch)
                        .speed(0.1)
                        .range(-1..=channels as i64 - 1)
                        .custom_formatter(|v, _| if v < 0.0 { "all".into() } else { format!("ch {v}") })
                        .custom_parser(|t| {
                            let t = t.trim().trim_start_matches("ch").trim();
                            if t == "all" || t.is_empty() {
                                Some(-1.0)
                            } else {
                                t.parse::<f64>().ok()
                            }
                        }),
                )
                .on_hover_text(format!("which of {tensor}'s {channels} channels to edit (all: a factor on each)"));
            if r.changed() {
                channel = usize::try_from(ch).ok();
                editor.views.channel.insert(key.clone(), channel);
            }
        }
        let row = edit_row_at(&editor.graph, target, tensor, channel);
        if channels > 1 && channel.is_none() {
            let mut factor =
                row.as_ref().and_then(|r| r.get("factor")).and_then(Json::as_f64).filter(|f| *f > 0.0).unwrap_or(1.0);
            let r = ui
                .add(egui::DragValue::new(&mut factor).speed(0.005).range(1e-4..=1e4).prefix("× ").max_decimals(4))
                .labelled_by(label.id)
                .on_hover_text(format!("every channel's scale of {tensor} ({channels} channels) times this"));
            if r.changed() {
                change = Some(Change::Factor(factor));
            }
        } else {
            let c = channel.unwrap_or(0);
            let from_row = row.as_ref().and_then(|r| r.get("scale")).and_then(Json::as_f64).filter(|s| *s > 0.0);
            // Without its own row, a channel shows what the whole-tensor row makes of it.
            let whole = channel.and_then(|_| edit_row_at(&editor.graph, target, tensor, None));
            let composed = |original: f64| match &whole {
                Some(w) => match (
                    w.get("scale").and_then(Json::as_f64).filter(|s| *s > 0.0),
                    w.get("factor").and_then(Json::as_f64).filter(|f| *f > 0.0),
                ) {
                    (Some(s), _) => s,
                    (None, Some(f)) => original * f,
                    _ => original,
                },
                None => original,
            };
            let mut scale = from_row.unwrap_or_else(|| composed(f64::from(e.scales.get(c).copied().unwrap_or(1.0))));
            let speed = (scale * 0.005).max(1e-9);
            let what = match channel {
                Some(c) => format!("scale of {tensor}, channel {c}"),
                None => format!("scale of {tensor}"),
            };
            let r = ui
                .add(egui::DragValue::new(&mut scale).speed(speed).range(1e-12..=1e9).max_decimals(8).min_decimals(5))
                .labelled_by(label.id)
                .on_hover_text(what);
            if r.changed() {
                change = Some(Change::Scale(scale));
            }
        }
    });
    let row = edit_row_at(&editor.graph, target, tensor, channel);
    if channels > 1 && channel.is_none() {
        ui.label(egui::RichText::new(format!("{channels} ch.")).weak());
    } else {
        let c = channel.unwrap_or(0);
        let (qmin, qmax) = e.qrange();
        let from_row = row
            .as_ref()
            .and_then(|r| r.get("zero_point"))
            .and_then(Json::as_str)
            .and_then(|s| s.trim().parse::<i64>().ok());
        let mut zp = from_row.unwrap_or(i64::from(e.zero_points.get(c).copied().unwrap_or(0)));
        let r = ui
            .add(egui::DragValue::new(&mut zp).speed(0.2).range(i64::from(qmin)..=i64::from(qmax)))
            .on_hover_text(format!("zero point of {tensor} ({qmin}…{qmax})"));
        if r.changed() {
            change = Some(Change::ZeroPoint(zp));
        }
    }
    if row.is_some() {
        let what = match channel {
            Some(c) => format!("Remove the edit of channel {c}"),
            None => "Remove this tensor's edit".to_owned(),
        };
        if ui.small_button("reset").on_hover_text(what).clicked() {
            clear_edit(&mut editor.graph, target, tensor, channel);
        }
    } else {
        ui.label("");
    }
    if let Some(c) = change {
        set_edit_at(&mut editor.graph, target, tensor, channel, c);
    }
}
