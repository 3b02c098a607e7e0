//! Views of values: dataset thumbnails, model structure and Q/DQ table, probed tensors with
//! histograms and the quantization grid, report tables, plots.

use std::collections::HashMap;

use egui_plot::{
    AxisHints, Bar, BarChart, GridInput, GridMark, HLine, Legend, Line, Plot, PlotPoint, PlotPoints, VLine,
};
use quantgraph_nodes::graph::{NodeId, PortRef};
use quantgraph_nodes::value::{
    Activations, Cell, Dataset, ModelValue, PlotKind, PlotSpec, ProbedTensor, QdqEntry, Report, Table,
};
use quantgraph_nodes::Value;

use crate::Editor;

/// Per-table UI state: sort column and direction, and a filter.
#[derive(Default)]
pub struct ViewState {
    pub sort: HashMap<String, (usize, bool)>,
    pub filter: HashMap<String, String>,
    /// Chosen tensor in an activations view, by node.
    pub tensor: HashMap<u64, String>,
    /// Chosen flipped sample, by node.
    pub sample: HashMap<u64, usize>,
    /// The editor's tensor selection (its serial) as last applied to each activations view.
    pub applied_selection: HashMap<u64, u64>,
    /// The channel edited in a model's Q/DQ drag table, by (node, tensor); `None`: all.
    pub channel: HashMap<(u64, String), Option<usize>>,
    /// Sample and channel shown by each activation-maps view.
    pub maps: HashMap<u64, crate::maps_view::MapsCursor>,
}

/// Draw a value.
pub fn value_ui(editor: &mut Editor, ui: &mut egui::Ui, node: NodeId, port: &str, value: &Value) {
    match value {
        Value::Scalar(x) => {
            ui.monospace(format!("{x}"));
        }
        Value::Text(t) => {
            ui.label(t.as_ref());
        }
        Value::Tensor(t) => {
            ui.label(format!("shape {:?}", t.shape));
        }
        Value::Dataset(d) => dataset_ui(editor, ui, node, d),
        Value::Model(m) => model_ui(editor, ui, node, port, m),
        Value::Activations(a) => activations_ui(editor, ui, node, a),
        Value::Predictions(p) => {
            ui.label(format!("{} predictions, accuracy {:?}", p.top1.len(), p.accuracy()));
        }
        Value::Table(r) => report_ui(editor, ui, node, port, r),
        Value::Plot(p) if p.kind == PlotKind::ImageGrid => {
            ui.label(egui::RichText::new(&p.title).strong());
            ui.horizontal_wrapped(|ui| {
                for (i, (img, caption)) in p.images.iter().enumerate() {
                    let tex = editor.texture(ui.ctx(), &format!("grid{}-{}-{}", node.0, i, img.index), img);
                    ui.vertical(|ui| {
                        ui.image((tex.id(), egui::vec2(64.0, 64.0))).on_hover_text(format!("#{} {caption}", img.index));
                        ui.label(egui::RichText::new(caption).small());
                    });
                }
            });
        }
        Value::Plot(p) => {
            if p.kind == PlotKind::FeatureMaps {
                crate::maps_view::maps_ui(editor, ui, node, p);
            } else {
                plot_ui(ui, p, egui::Id::new(("inspector_plot", node.0, port)), 320.0, false);
            }
            ui.horizontal(|ui| {
                if ui.button("Copy data as CSV").clicked() {
                    ui.ctx().copy_text(quantgraph_plot::plot_csv(p));
                }
                if ui.button("Export PNG").on_hover_text("Written beside the graph file").clicked() {
                    let stem =
                        editor.graph.node(node).and_then(|n| n.label.clone()).unwrap_or(format!("plot{}", node.0));
                    editor.write_beside_graph(&format!("{stem}.png"), quantgraph_plot::render_png(p, 1280, 720));
                }
            });
        }
    }
}

fn dataset_ui(editor: &mut Editor, ui: &mut egui::Ui, node: NodeId, d: &Dataset) {
    ui.label(format!("{} images · {} classes · {}", d.len(), d.class_names.len(), d.preprocessing));
    ui.label(egui::RichText::new(&d.source).weak().small());
    if let Some((before, after)) = &d.before_after {
        ui.horizontal(|ui| {
            for (name, img) in [("before", before), ("after", after)] {
                let sum: u64 = img.rgb.iter().map(|b| u64::from(*b)).sum();
                let tex =
                    editor.texture(ui.ctx(), &format!("ds{}-{name}-{}x{}-{sum}", node.0, img.width, img.height), img);
                ui.vertical(|ui| {
                    let scale = 120.0 / img.width.max(img.height).max(1) as f32;
                    ui.image((tex.id(), egui::vec2(img.width as f32 * scale, img.height as f32 * scale)));
                    ui.label(egui::RichText::new(format!("{name}: {}×{}", img.width, img.height)).small());
                });
            }
        })
        .response
        .on_hover_text("The first image as read, and after resizing and cropping (before normalization).");
    }
    ui.horizontal_wrapped(|ui| {
        for (i, p) in d.preview.iter().enumerate() {
            let tex = editor.texture(ui.ctx(), &format!("ds{}-{}-{}", node.0, i, p.index), p);
            let class = d.class_names.get(p.label as usize).cloned().unwrap_or_default();
            ui.vertical(|ui| {
                ui.image((tex.id(), egui::vec2(48.0, 48.0))).on_hover_text(format!("#{} {class}", p.index));
                ui.label(egui::RichText::new(class).small());
            });
        }
    });
}

fn model_ui(editor: &mut Editor, ui: &mut egui::Ui, node: NodeId, port: &str, m: &ModelValue) {
    let info = &m.info;
    ui.label(format!("{} · opset {} · {} · {} parameters", m.path, info.opset, info.producer, info.param_count));
    for i in &info.inputs {
        ui.label(format!("input  {}: {} [{}]", i.name, i.dtype, i.dims.join(", ")));
    }
    for o in &info.outputs {
        ui.label(format!("output {}: {} [{}]", o.name, o.dtype, o.dims.join(", ")));
    }
    egui::CollapsingHeader::new(format!("Network ({} ops)", info.nodes.len())).id_salt(("net", node.0)).show(
        ui,
        |ui| {
            let inits: HashMap<&str, &quantgraph_nodes::value::InitializerInfo> =
                info.initializers.iter().map(|i| (i.name.as_str(), i)).collect();
            egui::ScrollArea::vertical().max_height(300.0).id_salt(("netscroll", node.0)).show(ui, |ui| {
                for op in &info.nodes {
                    let params: i64 = op
                        .inputs
                        .iter()
                        .filter_map(|i| inits.get(i.as_str()))
                        .map(|i| i.dims.iter().product::<i64>())
                        .sum();
                    egui::CollapsingHeader::new(format!(
                        "{} {}{}",
                        op.op_type,
                        op.name,
                        if params > 0 { format!(" · {params} params") } else { String::new() }
                    ))
                    .id_salt(("op", node.0, op.name.as_str(), op.outputs.first().map(String::as_str).unwrap_or("")))
                    .show(ui, |ui| {
                        let shaped = |names: &[String]| {
                            names
                                .iter()
                                .map(|n| match info.tensors.get(n) {
                                    Some(t) if !t.dims.is_empty() => format!("{n} [{}]", t.dims.join(", ")),
                                    _ => match inits.get(n.as_str()) {
                                        Some(i) => format!("{n} {:?} (weight)", i.dims),
                                        None => n.clone(),
                                    },
                                })
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        ui.label(format!("in: {}", shaped(&op.inputs)));
                        ui.label(format!("out: {}", shaped(&op.outputs)));
                    });
                }
            });
        },
    );
    if !info.qdq.is_empty() {
        let table = qdq_table(m);
        egui::CollapsingHeader::new(format!("Q/DQ parameters ({})", info.qdq.len()))
            .id_salt(("qdq", node.0))
            .default_open(true)
            .show(ui, |ui| {
                table_ui(editor, ui, &format!("qdq{}", node.0), &table, 260.0);
                // Per-axis parameters, every channel on request.
                let per_axis: Vec<&QdqEntry> = info.qdq.iter().filter(|e| e.scales.len() > 1).collect();
                if !per_axis.is_empty() {
                    egui::CollapsingHeader::new(format!("Per-channel scales ({} tensors)", per_axis.len()))
                        .id_salt(("qdq_channels", node.0))
                        .show(ui, |ui| {
                            for (i, e) in per_axis.into_iter().enumerate() {
                                egui::CollapsingHeader::new(format!(
                                    "{} · {} · {} channels",
                                    e.float_tensor,
                                    e.op_type,
                                    e.scales.len()
                                ))
                                .id_salt(("qdq_channel", node.0, i))
                                .show(ui, |ui| {
                                    let t = quantgraph_nodes::value::ModelInfo::qdq_channel_table(e);
                                    table_ui(editor, ui, &format!("qdqch{}_{i}", node.0), &t, 200.0);
                                });
                            }
                        });
                }
            });
    }
    if ui.button("Graph view").on_hover_text("This model drawn as a graph (Q/DQ pairs as badges on edges)").clicked() {
        let title = editor.graph.display_name(&editor.registry, node);
        editor.graph_view = Some(crate::graph_view::Open::new(node, title, &m.info, Default::default()));
    }
    crate::qdq_edit::qdq_edit_ui(editor, ui, node, port, m);
    ui.horizontal(|ui| {
        if !m.changes.is_empty() {
            ui.label(format!("{} values changed by overrides upstream", m.changes.len()));
        }
        if ui
            .button("Export ONNX")
            .on_hover_text("Write this model beside the graph file (the source file is never modified)")
            .clicked()
        {
            let stem =
                editor.graph.node(node).and_then(|n| n.label.clone()).unwrap_or_else(|| format!("model{}", node.0));
            // How it was made, beside it (what `quantgraph export` writes too).
            let outputs = editor.outputs(node).cloned().unwrap_or_default();
            let graph_file = editor.path.as_ref().map(|p| p.to_string_lossy().into_owned());
            // What the graph's probes of this model measured: those done on the model as it is
            // now (a probe still running, or dirty after an edit, holds an older result).
            let readers = quantgraph_nodes::provenance::measuring_readers(&editor.graph, &editor.registry, node);
            let measured = quantgraph_nodes::provenance::measured(&editor.graph, &editor.registry, &readers, &|r| {
                matches!(editor.statuses.get(&r), Some(crate::NodeStatus::Ready { .. }))
                    .then(|| editor.outputs(r).map(|o| o.as_ref().clone()))
                    .flatten()
            });
            let sidecar = quantgraph_nodes::provenance::sidecar(
                &editor.graph,
                &editor.registry,
                node,
                &outputs,
                graph_file.as_deref(),
                measured,
            );
            editor.export_model(
                &stem,
                m.bytes.as_ref(),
                serde_json::to_string_pretty(&sidecar).map(String::into_bytes).map_err(|e| e.to_string()),
            );
        }
    });
}

/// The Q/DQ parameter table of a model.
pub fn qdq_table(m: &ModelValue) -> Table {
    m.info.qdq_table()
}

fn activations_ui(editor: &mut Editor, ui: &mut egui::Ui, node: NodeId, a: &Activations) {
    if let Some(p) = &a.predictions {
        match p.accuracy() {
            Some(acc) => ui.label(format!(
                "{} samples · top-1 {:.2} % ({} correct)",
                p.top1.len(),
                acc * 100.0,
                p.correct().unwrap_or(0)
            )),
            None => ui.label(format!("{} samples", p.top1.len())),
        };
    }
    for n in &a.notes {
        ui.colored_label(egui::Color32::from_rgb(230, 170, 60), n);
    }
    let names: Vec<String> = a.tensors.keys().cloned().collect();
    let mut chosen = editor
        .views
        .tensor
        .get(&node.0)
        .cloned()
        .filter(|t| a.tensors.contains_key(t))
        .or_else(|| a.tensors.values().find(|t| t.qdq.is_some()).map(|t| t.name.clone()))
        .or_else(|| names.first().cloned())
        .unwrap_or_default();
    // A tensor picked elsewhere (the graph view, a table) is shown once here.
    if let Some(sel) = editor.selected_names().into_iter().find(|t| a.tensors.contains_key(t)) {
        if editor.views.applied_selection.get(&node.0) != Some(&editor.selection_serial) {
            editor.views.applied_selection.insert(node.0, editor.selection_serial);
            chosen = sel;
        }
    }
    ui.horizontal(|ui| {
        if ui.button("Graph view").on_hover_text("The probed model drawn as a graph").clicked() {
            let title = format!("{} (probed model)", editor.graph.display_name(&editor.registry, node));
            editor.graph_view = Some(crate::graph_view::Open::new(node, title, &a.model, Default::default()));
        }
    });
    egui::ComboBox::from_id_salt(("tensor", node.0)).selected_text(&chosen).width(280.0).show_ui(ui, |ui| {
        for n in &names {
            ui.selectable_value(&mut chosen, n.clone(), n);
        }
    });
    editor.views.tensor.insert(node.0, chosen.clone());
    if let Some(t) = a.tensors.get(&chosen) {
        tensor_ui(editor, ui, node, t, &a.model.qdq);
    }
}

/// Statistics and a histogram of one tensor, with its Q/DQ clip range and grid. When the
/// tensor's pair can be edited (a node taking tensor edits reads the probed model), the clip
/// range's two edges are handles: dragging one sets the pair's scale and zero point (the grid
/// follows), written as the Q/DQ table's drag values write them.
pub fn tensor_ui(editor: &mut Editor, ui: &mut egui::Ui, node: NodeId, t: &ProbedTensor, qdq: &[QdqEntry]) {
    let s = &t.stats;
    ui.label(format!(
        "shape {:?} · min {:.4} · max {:.4} · mean {:.4} · std {:.4} · {} values",
        t.tensor.shape, s.min, s.max, s.mean, s.std, s.count
    ));
    let h = &s.histogram;
    let n = h.counts.len().max(1);
    let width = f64::from(h.hi - h.lo) / n as f64;
    let bars: Vec<Bar> = h
        .counts
        .iter()
        .enumerate()
        .map(|(i, c)| Bar::new(f64::from(h.lo) + (i as f64 + 0.5) * width, *c as f64).width(width * 0.95))
        .collect();
    // A per-channel pair: the user picks which channel's range is drawn.
    let channels = t.qdq.as_ref().map_or(1, |q| q.scales.len().max(1));
    let mut channel = 0usize;
    if channels > 1 {
        let id = egui::Id::new(("hist_channel", node.0, t.name.as_str()));
        channel = ui.data(|d| d.get_temp::<usize>(id)).unwrap_or(0).min(channels - 1);
        ui.horizontal(|ui| {
            ui.label(format!("per-channel Q/DQ: range of channel (0–{})", channels - 1));
            ui.add(egui::DragValue::new(&mut channel).range(0..=channels - 1));
        });
        ui.data_mut(|d| d.insert_temp(id, channel));
    }
    // Handles: pairs whose model an edit node reads (per-channel: the chosen channel).
    let target = if t.qdq.is_some() { probed_model_target(editor, node) } else { None };
    let edit_channel = (channels > 1).then_some(channel);
    let drag_id = egui::Id::new(("clip_drag", node.0, t.name.as_str()));
    // A drag whose release was not seen here (the view was hidden) is over.
    if !ui.input(|i| i.pointer.any_down()) {
        ui.data_mut(|d| d.remove::<(u8, f32, f32)>(drag_id));
    }
    let dragged: Option<(u8, f32, f32)> = ui.data(|d| d.get_temp(drag_id));
    let range = match dragged {
        Some((_, lo, hi)) if target.is_some() => Some((lo, hi)),
        _ => t.qdq.as_ref().and_then(|q| q.channel_range(channel)),
    };
    let params = |q: &QdqEntry, lo: f32, hi: f32| -> (f32, i32) {
        let (qmin, qmax) = q.qrange();
        let scale = ((hi - lo) / (qmax - qmin) as f32).max(f32::MIN_POSITIVE);
        let zp = ((qmin as f32 - lo / scale).round_ties_even() as i32).clamp(qmin, qmax);
        (scale, zp)
    };
    // The scale and zero point shown: of the range being dragged, else the pair's own.
    let shown = t.qdq.as_ref().map(|q| match (dragged, range) {
        (Some(_), Some((lo, hi))) if target.is_some() => params(q, lo, hi),
        _ => (
            q.scales.get(channel).copied().unwrap_or(0.0),
            q.zero_points.get(channel).or(q.zero_points.first()).copied().unwrap_or(0),
        ),
    });
    if let (Some(q), Some((scale, zp))) = (&t.qdq, shown) {
        let (lo, hi) = range.unwrap_or((0.0, 0.0));
        let clipped_note = if s.min < lo || s.max > hi { " · values outside are clipped" } else { "" };
        ui.label(format!(
            "Q/DQ {} · scale {scale:.6} · zero point {zp} · range [{lo:.4}, {hi:.4}]{clipped_note}{}",
            q.dtype,
            if channels > 1 { format!(" (channel {channel} of {channels})") } else { String::new() }
        ));
        if target.is_some() {
            let owner = crate::qdq_edit::owner(qdq, q);
            let shared = if owner == q.float_tensor { String::new() } else { format!(" (it is {owner}'s pair too)") };
            let which = if channels > 1 { format!(" of channel {channel}") } else { String::new() };
            ui.label(egui::RichText::new(format!("Drag a red edge to set the clip range{which}{shared}.")).weak());
        } else if let Some(from) = unedited_model_source(editor, node) {
            // No edit node reads this model: offer one (the click is the user's consent).
            if ui
                .button("Insert a QDQ Override to drag the clip range")
                .on_hover_text("Adds one after the model this probe reads; the probe then reads the edited model")
                .clicked()
                && crate::qdq_edit::insert_edit_node(editor, from.node, &from.port).is_some()
            {
                editor.message = Some("Inserted a QDQ Override: drag a red edge to edit the range".into());
            }
        }
    }
    let mut plot = Plot::new(("hist", node.0, t.name.as_str())).height(220.0).legend(Legend::default());
    if target.is_some() {
        plot = plot.allow_drag(false);
    }
    let mut change: Option<(u8, f32, f32)> = None;
    let mut released = false;
    plot.show(ui, |p| {
        p.bar_chart(BarChart::new("count", bars));
        let (Some((lo, hi)), Some(q), Some((scale, zp))) = (range, &t.qdq, shown) else { return };
        p.vline(VLine::new("clip range", f64::from(lo)).color(egui::Color32::RED).width(2.0));
        p.vline(VLine::new("clip range", f64::from(hi)).color(egui::Color32::RED).width(2.0));
        // The quantization grid, when its lines are not too dense to see.
        let (step, zp) = (f64::from(scale), f64::from(zp));
        let levels = if step > 0.0 { (f64::from(h.hi - h.lo) / step) as usize } else { usize::MAX };
        if levels <= 64 {
            let (qmin, qmax) = q.qrange();
            for k in qmin..=qmax {
                let x = (f64::from(k) - zp) * step;
                if x >= f64::from(h.lo) && x <= f64::from(h.hi) {
                    p.vline(VLine::new("grid", x).color(egui::Color32::from_rgba_unmultiplied(120, 120, 120, 90)));
                }
            }
        }
        if target.is_none() {
            return;
        }
        // Where the handles are on screen (also read by the editor's tests).
        let xs = [
            p.screen_from_plot(PlotPoint::new(f64::from(lo), 0.0)).x,
            p.screen_from_plot(PlotPoint::new(f64::from(hi), 0.0)).x,
        ];
        let mid_y = p.response().rect.center().y;
        p.ctx().data_mut(|d| d.insert_temp(drag_id.with("screen"), [xs[0], xs[1], mid_y]));
        let r = p.response().clone();
        let pointer = r.interact_pointer_pos().or(r.hover_pos());
        if r.drag_started() {
            if let Some(pos) = pointer {
                let (d0, d1) = ((pos.x - xs[0]).abs(), (pos.x - xs[1]).abs());
                if d0.min(d1) <= 12.0 {
                    change = Some((u8::from(d1 < d0), lo, hi));
                }
            }
        } else if r.dragged() {
            if let (Some((edge, _, _)), Some(c)) = (dragged, p.pointer_coordinate()) {
                let x = c.x as f32;
                // The range keeps 0 inside it, as every Q/DQ range does.
                let (lo, hi) =
                    if edge == 0 { (x.min(0.0).min(hi - 1e-6), hi) } else { (lo, x.max(0.0).max(lo + 1e-6)) };
                change = Some((edge, lo, hi));
            }
        }
        released = r.drag_stopped();
    });
    if let (Some((edge, lo, hi)), Some(target), Some(q)) = (change, &target, &t.qdq) {
        ui.data_mut(|d| d.insert_temp(drag_id, (edge, lo, hi)));
        if dragged.is_some() {
            let (scale, zp) = params(q, lo, hi);
            let tensor = crate::qdq_edit::owner(qdq, q).to_owned();
            for change in
                [crate::qdq_edit::Change::Scale(f64::from(scale)), crate::qdq_edit::Change::ZeroPoint(i64::from(zp))]
            {
                crate::qdq_edit::set_edit_at(&mut editor.graph, target, &tensor, edit_channel, change);
            }
        }
    }
    if released {
        ui.data_mut(|d| d.remove::<(u8, f32, f32)>(drag_id));
    }
}

/// The model port a probe reads, when no node taking tensor edits reads it.
fn unedited_model_source(editor: &Editor, node: NodeId) -> Option<PortRef> {
    let wires: Vec<PortRef> = editor.graph.wires().filter(|w| w.to.node == node).map(|w| w.from).collect();
    wires.into_iter().find(|from| {
        matches!(editor.outputs(from.node).and_then(|o| o.get(&from.port)), Some(Value::Model(_)))
            && crate::qdq_edit::edit_target(editor, from.node, &from.port).is_none()
    })
}

/// The model whose tensors a per-layer table names (its `b_tensor` column): of the
/// activations feeding `node`, the one whose model makes most of them.
fn compared_model(
    editor: &Editor,
    node: NodeId,
    per_layer: &Table,
    tensor_column: &str,
) -> Option<std::sync::Arc<quantgraph_nodes::value::ModelInfo>> {
    let col = per_layer.column(tensor_column)?;
    // Names of tensors or of ops (a sweep's layers).
    let names: std::collections::HashSet<String> = per_layer.rows.iter().map(|r| r[col].to_string()).collect();
    let wires: Vec<PortRef> = editor.graph.wires().filter(|w| w.to.node == node).map(|w| w.from).collect();
    wires
        .iter()
        .filter_map(|from| match editor.outputs(from.node).and_then(|o| o.get(&from.port)) {
            Some(Value::Activations(a)) => Some(a.model.clone()),
            Some(Value::Model(m)) => Some(m.info.clone()),
            _ => None,
        })
        .max_by_key(|m| {
            m.nodes.iter().filter(|n| names.contains(&n.name) || n.outputs.iter().any(|o| names.contains(o))).count()
        })
}

/// A report's table of layers (as its hints say) and the column naming the drawn model's
/// tensors.
pub fn layer_table(r: &Report) -> Option<(&Table, &str)> {
    let h = r.hints.layers.as_ref()?;
    Some((r.table(&h.table)?, h.tensor_column.as_str()))
}

/// The figures a graph view colours ops by: `node`'s table of layers, and the tables of
/// layers of other nodes keyed by op name (a sensitivity sweep's) for the ops of the drawn
/// model (`op_names`).
pub(crate) fn layer_figures(
    editor: &Editor,
    node: NodeId,
    table: &Table,
    key: &str,
    op_names: &std::collections::HashSet<&str>,
) -> std::collections::BTreeMap<String, Vec<(String, f64)>> {
    let mut figures = crate::graph_view::figures(table, key);
    for id in editor.graph.nodes().map(|n| n.id).filter(|id| *id != node) {
        let Some(outputs) = editor.outputs(id) else { continue };
        for v in outputs.values() {
            let Value::Table(other) = v else { continue };
            let Some((t, key)) = layer_table(other) else { continue };
            for (k, vals) in crate::graph_view::figures(t, key) {
                if op_names.contains(k.as_str()) {
                    figures.entry(k).or_default().extend(vals);
                }
            }
        }
    }
    figures
}

/// Open the graph window on the model a report's per-layer table measures (B's), its ops
/// coloured by the table's figures.
pub fn open_graph_view(editor: &mut Editor, node: NodeId, port: &str, r: &Report) -> Result<(), String> {
    let (per_layer, key) = layer_table(r).ok_or("this report has no table of layers")?;
    let info = compared_model(editor, node, per_layer, key)
        .ok_or("The compared models are not available: evaluate the probes first")?;
    let op_names: std::collections::HashSet<&str> = info.nodes.iter().map(|n| n.name.as_str()).collect();
    let figures = layer_figures(editor, node, per_layer, key, &op_names);
    let title = format!("{} (per-layer error)", editor.graph.display_name(&editor.registry, node));
    let mut open = crate::graph_view::Open::new(node, title, &info, figures);
    open.source = Some((port.to_owned(), std::ptr::from_ref(r) as usize));
    editor.graph_view = Some(open);
    Ok(())
}

/// The edit target of the model a probe (or any node) reads: the first input whose value is a
/// model, and the node that takes tensor edits on it.
fn probed_model_target(editor: &Editor, node: NodeId) -> Option<crate::qdq_edit::Target> {
    let wires: Vec<PortRef> = editor.graph.wires().filter(|w| w.to.node == node).map(|w| w.from).collect();
    // Only when the probed model is the edit node's own output: an override elsewhere on the
    // model's port would not change what this probe shows.
    wires.iter().find_map(|from| match editor.outputs(from.node).and_then(|o| o.get(&from.port)) {
        Some(Value::Model(_)) => {
            crate::qdq_edit::edit_target(editor, from.node, &from.port).filter(|t| t.node == from.node)
        }
        _ => None,
    })
}

fn report_ui(editor: &mut Editor, ui: &mut egui::Ui, node: NodeId, port: &str, r: &Report) {
    if let Some(h) = &r.headline {
        ui.label(egui::RichText::new(h).strong());
    }
    before_after_ui(editor, ui, node, port, r);
    if !r.summary.is_empty() {
        egui::Grid::new(("summary", node.0, port)).show(ui, |ui| {
            for (k, v) in &r.summary {
                ui.label(k);
                ui.monospace(format_figure(k, *v, true));
                ui.end_row();
            }
        });
    }
    for n in &r.notes {
        ui.label(egui::RichText::new(n).weak().small());
    }
    if layer_table(r).is_some()
        && ui
            .button("Graph view with per-layer error")
            .on_hover_text("B's model drawn as a graph, each op coloured by its per-layer figure")
            .clicked()
    {
        if let Err(e) = open_graph_view(editor, node, port, r) {
            editor.message = Some(e);
        }
    }
    for t in &r.tables {
        egui::CollapsingHeader::new(format!("{} ({} rows)", t.name, t.rows.len()))
            .id_salt(("table", node.0, port, t.name.as_str()))
            .default_open(r.hints.open.contains(&t.name))
            .show(ui, |ui| {
                let clicked = table_ui(editor, ui, &format!("{}-{port}-{}", node.0, t.name), t, 260.0);
                // Rows that are samples: a click shows the sample.
                if let Some(col) = r.hints.samples.iter().find(|s| s.table == t.name).and_then(|s| t.column(&s.column))
                {
                    if let Some(row) = clicked {
                        editor.views.sample.insert(node.0, row);
                    }
                    sample_ui(editor, ui, node, t, col, r);
                }
            });
    }
}

/// Now vs an earlier run of the same report: choose the baseline among the kept snapshots,
/// pin the current one, and see the deltas (summary, and per layer with a chart).
fn before_after_ui(editor: &mut Editor, ui: &mut egui::Ui, node: NodeId, port: &str, r: &Report) {
    let Some(history) = editor.snapshots.get(node, port) else { return };
    if history.items.len() < 2 && !history.now().is_some_and(|s| s.pinned) {
        return;
    }
    let now_id = history.now().map(|s| s.id);
    let choices: Vec<(usize, String)> = history
        .items
        .iter()
        .filter(|s| Some(s.id) != now_id)
        .map(|s| (s.id, if s.pinned { format!("{} · pinned", s.name) } else { s.name.clone() }))
        .collect();
    let mut baseline = history.baseline;
    let pinned_now = history.now().is_some_and(|s| s.pinned);
    let mut toggle_pin = false;
    ui.horizontal(|ui| {
        ui.label("Compare with");
        let shown = baseline
            .and_then(|id| choices.iter().find(|(i, _)| *i == id))
            .map_or("(nothing)".to_owned(), |(_, n)| n.clone());
        egui::ComboBox::from_id_salt(("baseline", node.0, port)).selected_text(shown).show_ui(ui, |ui| {
            ui.selectable_value(&mut baseline, None, "(nothing)");
            for (id, name) in choices.iter().rev() {
                ui.selectable_value(&mut baseline, Some(*id), name);
            }
        });
        let pin = if pinned_now { "Unpin this run" } else { "Pin this run" };
        if ui.button(pin).on_hover_text("Pinned runs are kept; otherwise the last 10 are.").clicked() {
            toggle_pin = true;
        }
    });
    if let Some(h) = editor.snapshots.get_mut(node, port) {
        h.baseline = baseline;
        if toggle_pin {
            h.toggle_pin_now();
        }
    }
    let Some(base) = editor.snapshots.get(node, port).and_then(|h| h.baseline()).cloned() else { return };
    let d = quantgraph_nodes::diff::diff(&base.report, r);
    // The UI font has no arrow glyph.
    let headline = d.headline.clone().unwrap_or_default().replace('→', "->");
    ui.label(egui::RichText::new(format!("now vs {}: {headline}", base.name)).strong());
    egui::CollapsingHeader::new(format!("Now vs {}", base.name))
        .id_salt(("diff", node.0, port))
        .default_open(true)
        .show(ui, |ui| {
            if let Some(t) = d.table("per_layer").filter(|t| !t.rows.is_empty()) {
                let col = |name: &str| t.column(name);
                if let (Some(b), Some(a)) = (col("sqnr_db_before"), col("sqnr_db_after")) {
                    let points = |c: usize| -> PlotPoints {
                        t.rows
                            .iter()
                            .enumerate()
                            .filter_map(|(i, row)| Some([i as f64, row.get(c)?.as_f64()?]))
                            .collect()
                    };
                    let labels: Vec<String> = t.rows.iter().map(|row| short_name(&row[0].to_string())).collect();
                    Plot::new(("diff_plot", node.0, port))
                        .height(160.0)
                        .legend(Legend::default())
                        .x_axis_formatter(move |mark, _| {
                            let i = mark.value.round();
                            if (mark.value - i).abs() < 1e-6 && i >= 0.0 {
                                labels.get(i as usize).cloned().unwrap_or_default()
                            } else {
                                String::new()
                            }
                        })
                        .show(ui, |pu| {
                            pu.line(
                                Line::new(format!("SQNR dB, {}", base.name), points(b))
                                    .style(egui_plot::LineStyle::dashed_loose()),
                            );
                            pu.line(Line::new("SQNR dB, now", points(a)).width(2.0));
                        });
                }
                table_ui(editor, ui, &format!("{}-{port}-diff-layers", node.0), t, 220.0);
            }
            if let Some(t) = d.table("summary") {
                table_ui(editor, ui, &format!("{}-{port}-diff-summary", node.0), t, 160.0);
            }
        });
}

/// The dataset a node's samples come from: a dataset wired into it, else the one its
/// activations were probed on; with the node that made it (for texture keys).
fn samples_dataset(editor: &Editor, node: NodeId) -> Option<(NodeId, std::sync::Arc<Dataset>)> {
    let wires: Vec<PortRef> = editor.graph.wires().filter(|w| w.to.node == node).map(|w| w.from).collect();
    let direct = wires.iter().find_map(|from| match editor.outputs(from.node).and_then(|o| o.get(&from.port)) {
        Some(Value::Dataset(d)) => Some((from.node, d.clone())),
        _ => None,
    });
    direct.or_else(|| {
        wires.iter().find_map(|from| match editor.outputs(from.node).and_then(|o| o.get(&from.port)) {
            Some(Value::Activations(a)) => a.dataset.clone().map(|d| (from.node, d)),
            _ => None,
        })
    })
}

/// The sample last clicked in a table of samples: its image, the row's figures (a flip's
/// predictions and probabilities), its per-layer curve against the dataset's, and activation
/// maps of the selected tensor.
fn sample_ui(editor: &mut Editor, ui: &mut egui::Ui, node: NodeId, t: &Table, col: usize, r: &Report) {
    let Some(row) = editor.views.sample.get(&node.0).copied() else {
        ui.label(egui::RichText::new("Click a row to see its image.").weak().small());
        return;
    };
    let Some(sample) = t.rows.get(row).and_then(|r| r.get(col)).and_then(Cell::as_f64).map(|s| s as usize) else {
        return;
    };
    let Some((src_node, d)) = samples_dataset(editor, node) else { return };
    // Keyed by what the picture is (the dataset's files and the sample's index in them), so
    // another selection, seed or folder never shows a stale picture.
    let key = format!(
        "flip{}-{}-{:?}-{}-{}",
        src_node.0,
        sample,
        d.source_indices.get(sample),
        d.source,
        match &d.images {
            quantgraph_nodes::value::Images::Stream(s) => s.identity(),
            quantgraph_nodes::value::Images::Dense(t) => format!("{:?}", t.shape),
        }
    );
    let Some(tex) = editor.texture_with(ui.ctx(), &key, || d.thumbnail(sample)) else { return };
    ui.horizontal(|ui| {
        ui.image((tex.id(), egui::vec2(96.0, 96.0)));
        if let Some(r) = t.rows.get(row) {
            ui.label(r.iter().zip(&t.columns).map(|(c, h)| format!("{h}: {c}")).collect::<Vec<_>>().join("\n"));
        }
    });
    sample_layers_ui(ui, node, sample, r);
    match editor.selected_tensor.clone() {
        Some(tensor) => {
            let text = format!("Activation maps of {}", quantgraph_nodes::value::elide_middle(&tensor, 40));
            if ui
                .button(text)
                .on_hover_text(format!(
                    "{tensor}: A, B and |A − B| per channel for sample {sample} and the other flipped samples"
                ))
                .clicked()
            {
                crate::maps_view::open_maps(editor, node, &tensor, sample);
            }
        }
        None => {
            ui.label(
                egui::RichText::new("Select a layer (a per-layer row or the graph view) to see its activation maps.")
                    .weak()
                    .small(),
            );
        }
    }
}

/// One sample's per-layer figure (from the table the report's `sample_curve` hint names, a
/// comparator's SQNR) drawn over the dataset-wide one: where the lines part is where this
/// sample diverges.
pub fn sample_layers_ui(ui: &mut egui::Ui, node: NodeId, sample: usize, r: &Report) {
    let Some(curve) = &r.hints.sample_curve else { return };
    let Some(t) = r.table(&curve.table) else { return };
    let col = |name: &str| t.column(name);
    let (Some(cs), Some(ct), Some(cq), Some(cd)) =
        (col(&curve.sample), col(&curve.layer), col(&curve.value), col(&curve.reference))
    else {
        return;
    };
    let rows: Vec<&Vec<Cell>> =
        t.rows.iter().filter(|row| row.get(cs).and_then(Cell::as_f64) == Some(sample as f64)).collect();
    if rows.is_empty() {
        ui.label(egui::RichText::new("No per-layer figures for this sample.").weak().small());
        return;
    }
    let names: Vec<String> = rows.iter().map(|row| row.get(ct).map(Cell::to_string).unwrap_or_default()).collect();
    let points = |c: usize| -> PlotPoints {
        rows.iter().enumerate().filter_map(|(i, row)| Some([i as f64, row.get(c)?.as_f64()?])).collect()
    };
    ui.label(egui::RichText::new(format!("Per-layer {} of sample {sample}", curve.label)).strong());
    let labels = names.clone();
    Plot::new(("sample_layers", node.0, sample))
        .height(180.0)
        .legend(Legend::default())
        .x_axis_formatter(move |mark, _| {
            let i = mark.value.round();
            if (mark.value - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).map(|n| short_name(n)).unwrap_or_default()
            } else {
                String::new()
            }
        })
        .show(ui, |pu| {
            pu.line(Line::new("this sample", points(cq)).width(2.0));
            pu.line(Line::new("all samples", points(cd)).style(egui_plot::LineStyle::dashed_loose()));
        });
}

/// The last two path segments of a tensor name, for axis labels (`stage3/Relu_1`).
fn short_name(name: &str) -> String {
    let trimmed = name.trim_end_matches("_output_0").trim_start_matches('/');
    let parts: Vec<&str> = trimmed.rsplitn(3, '/').collect();
    match parts.as_slice() {
        [last, parent, ..] => format!("{parent}/{last}"),
        _ => trimmed.to_owned(),
    }
}

/// Longest text shown in a table cell; longer names are elided in the middle (full on hover).
const NAME_CHARS: usize = 44;

/// A figure for display, by what its name says it is: accuracies and agreements (fractions)
/// as percentages with 2 decimals (in a summary; a table column keeps the fraction with 4),
/// decibels with 2 decimals, counts as integers, p-values with 3 significant digits, and
/// anything else with 4 decimals (scientific when very large or small).
pub fn format_figure(name: &str, x: f64, summary: bool) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "—".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let is_fraction = name.starts_with("accuracy") || name.starts_with("agreement");
    if is_fraction && summary {
        return format!("{:.2} %", x * 100.0);
    }
    if name.ends_with("_db") || name.contains("_db_") {
        return if summary { format!("{x:.2} dB") } else { format!("{x:.2}") };
    }
    let is_count = ["samples", "count", "correct", "flips", "groups", "images", "elements"]
        .iter()
        .any(|w| name.starts_with(w) || name.ends_with(w) || name.contains(&format!("{w}_")));
    if is_count && x.fract() == 0.0 {
        return format!("{x:.0}");
    }
    if name.ends_with("_p") || name == "p" || name.starts_with("p_") {
        return if x != 0.0 && x.abs() < 1e-3 { format!("{x:.2e}") } else { format!("{x:.3}") };
    }
    if x != 0.0 && (x.abs() >= 1e5 || x.abs() < 1e-3) {
        format!("{x:.4e}")
    } else {
        format!("{x:.4}")
    }
}

/// A sortable, filterable table. Returns the (original) index of a clicked row.
pub fn table_ui(editor: &mut Editor, ui: &mut egui::Ui, key: &str, t: &Table, max_height: f32) -> Option<usize> {
    let mut clicked = None;
    let mut filter = editor.views.filter.get(key).cloned().unwrap_or_default();
    ui.horizontal(|ui| {
        ui.add(egui::TextEdit::singleline(&mut filter).hint_text("filter rows").desired_width(160.0));
        if ui.button("Copy CSV").clicked() {
            ui.ctx().copy_text(t.to_csv());
        }
        if ui.button("Save CSV").on_hover_text("Written beside the graph file").clicked() {
            editor.write_beside_graph(&format!("{key}.csv"), Ok(t.to_csv().into_bytes()));
        }
    });
    editor.views.filter.insert(key.to_owned(), filter.clone());
    let (sort_col, ascending) = editor.views.sort.get(key).copied().unwrap_or((usize::MAX, true));
    let mut order: Vec<usize> = (0..t.rows.len())
        .filter(|&i| filter.is_empty() || t.rows[i].iter().any(|c| c.to_string().contains(&filter)))
        .collect();
    if sort_col != usize::MAX {
        order.sort_by(|&a, &b| {
            let (x, y) = (t.rows[a].get(sort_col), t.rows[b].get(sort_col));
            let ord = match (x.and_then(Cell::as_f64), y.and_then(Cell::as_f64)) {
                (Some(p), Some(q)) => p.partial_cmp(&q).unwrap_or(std::cmp::Ordering::Equal),
                _ => x.map(ToString::to_string).cmp(&y.map(ToString::to_string)),
            };
            if ascending {
                ord
            } else {
                ord.reverse()
            }
        });
    }
    egui::ScrollArea::both().max_height(max_height).id_salt(("tablescroll", key)).show(ui, |ui| {
        egui::Grid::new(("tablegrid", key)).striped(true).show(ui, |ui| {
            for (ci, c) in t.columns.iter().enumerate() {
                let arrow = if ci == sort_col {
                    if ascending {
                        " ▲"
                    } else {
                        " ▼"
                    }
                } else {
                    ""
                };
                if ui.button(egui::RichText::new(format!("{c}{arrow}")).strong()).clicked() {
                    let next = if ci == sort_col { (ci, !ascending) } else { (ci, true) };
                    editor.views.sort.insert(key.to_owned(), next);
                }
            }
            ui.end_row();
            // A row is marked when any of its tensor names is selected, and a click selects
            // them all (A's and B's names differ for models from other exporters).
            let first_names_tensor = t.columns.first().is_some_and(|c| c.ends_with("tensor"));
            for &i in &order {
                let names = row_tensor_names(t, &t.rows[i]);
                let row_selected = first_names_tensor && names.iter().any(|n| editor.is_selected_tensor(n));
                for (ci, c) in t.rows[i].iter().enumerate() {
                    let column = t.columns.get(ci).map_or("", String::as_str);
                    let (text, full) = match c {
                        Cell::Num(x) => (format_figure(column, *x, false), None),
                        Cell::Int(x) => (x.to_string(), None),
                        Cell::Text(s) if s.chars().count() > NAME_CHARS => {
                            (quantgraph_nodes::value::elide_middle(s, NAME_CHARS), Some(s))
                        }
                        Cell::Text(s) => (s.clone(), None),
                    };
                    let r = ui.selectable_label(ci == 0 && row_selected, text);
                    let r = match full {
                        Some(full) => r.on_hover_text(full),
                        None => r,
                    };
                    if r.clicked() {
                        clicked = Some(i);
                        if first_names_tensor {
                            let mut names = names.clone();
                            let first = names.remove(0);
                            names.retain(|n| *n != first && !n.is_empty());
                            editor.select_tensor_as(first, names);
                        }
                    }
                }
                ui.end_row();
            }
        });
    });
    clicked
}

/// The tensor names in a table row: its columns named `…tensor` (`tensor`, `b_tensor`).
pub fn row_tensor_names(t: &Table, row: &[Cell]) -> Vec<String> {
    t.columns.iter().zip(row).filter(|(c, _)| c.ends_with("tensor")).map(|(_, v)| v.to_string()).collect()
}

/// Horizontal reference lines with their values in the legend.
fn draw_levels(pu: &mut egui_plot::PlotUi<'_>, levels: &[(f64, String)]) {
    for (k, (y, label)) in levels.iter().enumerate() {
        let color = if k == 0 { egui::Color32::from_gray(40) } else { egui::Color32::from_gray(120) };
        pu.hline(HLine::new(format!("{label} {y:.2}"), *y).color(color).width(1.5));
    }
}

/// The category an axis mark stands for: marks on whole numbers ≥ 0 (categories sit at
/// 0, 1, 2, …), none between them.
fn category_at(value: f64) -> Option<usize> {
    let i = value.round();
    ((value - i).abs() < 1e-6 && i >= 0.0).then_some(i as usize)
}

/// Draw a plot spec with egui_plot (hover shows values; zoom and pan unless `small`).
pub fn plot_ui(ui: &mut egui::Ui, p: &PlotSpec, id: egui::Id, height: f32, small: bool) {
    let cats = p.x_categories.clone();
    let mut plot = Plot::new(id)
        .height(height)
        .allow_zoom(!small)
        .allow_drag(!small)
        .allow_scroll(!small)
        .show_axes([!small, !small]);
    if !small {
        plot = plot.legend(Legend::default());
    }
    if !cats.is_empty() {
        plot = plot.x_axis_formatter(move |mark, _| {
            category_at(mark.value).and_then(|i| cats.get(i)).cloned().unwrap_or_default()
        });
    }
    if p.kind == PlotKind::Heatmap && !small {
        // Cells centred on whole numbers (drawn from -0.5): a mark and a name for each row and
        // column (egui_plot leaves out names that would overlap); rows top to bottom.
        let marks = |n: usize| {
            move |input: GridInput| -> Vec<GridMark> {
                (0..n)
                    .map(|i| i as f64)
                    .filter(|v| (input.bounds.0..=input.bounds.1).contains(v))
                    .map(|value| GridMark { value, step_size: 1.0 })
                    .collect()
            }
        };
        let rows = p.y_categories.clone();
        let width = rows.iter().map(|r| r.chars().count()).max().unwrap_or(0);
        // Column names cut to what a cell's width holds (about 7 points a character), so
        // that narrow cells still show "air", "aut", … rather than nothing.
        let names = p.x_categories.clone();
        let cell = (ui.available_width() - 7.0 * width as f32 - 24.0) / names.len().max(1) as f32;
        let fit = ((cell / 7.5).floor() as usize).max(1);
        let (rows_desc, columns_desc) = p.heatmap_axes();
        let x_axis = AxisHints::new_x().label(columns_desc).label_spacing(egui::Rangef::new(6.0, 10.0)).formatter(
            move |mark, _| {
                category_at(mark.value)
                    .and_then(|i| names.get(i))
                    .map(|n| n.chars().take(fit).collect())
                    .unwrap_or_default()
            },
        );
        plot = plot
            .custom_x_axes(vec![x_axis])
            .x_grid_spacer(marks(p.x_categories.len()))
            .y_grid_spacer(marks(rows.len()))
            .y_axis_min_width(7.0 * width as f32)
            .y_axis_label(rows_desc)
            .y_axis_formatter(move |mark, _| {
                category_at(mark.value)
                    .and_then(|i| rows.len().checked_sub(1 + i))
                    .map(|r| rows[r].clone())
                    .unwrap_or_default()
            });
    }
    if !small {
        ui.label(egui::RichText::new(&p.title).strong());
    }
    if let Some(m) = p.maps.as_ref().filter(|_| p.kind == PlotKind::FeatureMaps) {
        // Drawn by the inspector's maps view; a node shows what it holds.
        ui.label(format!(
            "{} samples · {} channels of {}×{} · select the node to see them",
            m.samples.len(),
            m.channels,
            m.height,
            m.width
        ));
        return;
    }
    plot.show(ui, |pu| match p.kind {
        PlotKind::Bar | PlotKind::Histogram => {
            let groups = p.series.len().max(1) as f64;
            for (si, s) in p.series.iter().enumerate() {
                let w = if p.kind == PlotKind::Histogram {
                    s.x.get(1).zip(s.x.first()).map(|(b, a)| b - a).unwrap_or(1.0)
                } else {
                    0.8 / groups
                };
                let offset = if p.kind == PlotKind::Histogram { 0.0 } else { -0.4 + w * (si as f64 + 0.5) };
                let bars: Vec<Bar> =
                    s.x.iter()
                        .zip(&s.y)
                        .filter(|(_, y)| y.is_finite())
                        .map(|(x, y)| {
                            let name = p.x_categories.get(*x as usize).cloned().unwrap_or_else(|| format!("{x:.4}"));
                            Bar::new(x + offset, *y).width(w * 0.95).name(name)
                        })
                        .collect();
                pu.bar_chart(BarChart::new(s.name.clone(), bars));
            }
            for (x, label) in &p.markers {
                pu.vline(VLine::new(label.clone(), *x).color(egui::Color32::RED));
            }
            draw_levels(pu, &p.levels);
        }
        PlotKind::Line => {
            for s in &p.series {
                let pts: Vec<[f64; 2]> = s.x.iter().zip(&s.y).map(|(x, y)| [*x, *y]).collect();
                pu.line(Line::new(s.name.clone(), PlotPoints::from(pts)));
            }
            draw_levels(pu, &p.levels);
        }
        PlotKind::Heatmap => {
            let cols = p.x_categories.len().max(1);
            if p.cells.len().is_multiple_of(cols) && !p.cells.is_empty() {
                // Rows top to bottom.
                let rows = p.cells.len() / cols;
                let mut flipped = Vec::with_capacity(p.cells.len());
                for r in (0..rows).rev() {
                    flipped.extend_from_slice(&p.cells[r * cols..(r + 1) * cols]);
                }
                // Counts as counts ("2", not "2.0"), so that narrow cells stay readable.
                let label =
                    |v: f64| if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { format!("{v:.2}") };
                pu.heatmap(
                    egui_plot::Heatmap::new(flipped, cols)
                        .show_labels(!small)
                        .formatter(Box::new(label))
                        .at(PlotPoint::new(-0.5, -0.5)),
                );
            }
        }
        PlotKind::FeatureMaps => {}
        PlotKind::ImageGrid => {
            pu.text(egui_plot::Text::new(
                "images",
                egui_plot::PlotPoint::new(0.0, 0.0),
                format!("{} images", p.images.len()),
            ));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_formatted_by_what_they_are() {
        assert_eq!(format_figure("accuracy_b", 0.817, true), "81.70 %");
        assert_eq!(format_figure("min_sqnr_db", 23.79648869723696, true), "23.80 dB");
        assert_eq!(format_figure("sqnr_db", 23.79648869723696, false), "23.80");
        assert_eq!(format_figure("correct_a", 818.0, true), "818");
        assert_eq!(format_figure("samples", 1000.0, false), "1000");
        assert_eq!(format_figure("mcnemar_p", 1.0, true), "1.000");
        assert_eq!(format_figure("mcnemar_p", 0.00001234, true), "1.23e-5");
        assert_eq!(format_figure("mse", 0.000123456, false), "1.2346e-4");
        assert_eq!(format_figure("cosine", 0.99876543, false), "0.9988");
        assert_eq!(format_figure("x", f64::NAN, false), "—");
        assert_eq!(
            quantgraph_nodes::value::elide_middle("/stage3/conv2/Conv_output_0_DequantizeLinear_Output", 24),
            "/stage3/con…inear_Output"
        );
    }
}
