//! The model drawn as a graph: ops as boxes laid out in layers top to bottom (Sugiyama's
//! method, from the `rust-sugiyama` crate), QuantizeLinear/DequantizeLinear pairs collapsed
//! into a "Q" badge on the edge they wrap, weights as a badge on their op. Pan with a drag,
//! zoom with the wheel (an `egui::Scene`). With per-layer figures (a comparator's `per_layer`
//! table), ops are coloured by the chosen metric, with a legend; hovering shows the figures,
//! clicking an op selects its tensor in the editor's tables and histograms.

use std::collections::{BTreeMap, HashMap};

use quantgraph_nodes::value::{ModelInfo, Table};

/// One op box.
#[derive(Debug, Clone)]
pub struct Op {
    pub name: String,
    pub op_type: String,
    /// The tensor it makes (first output), the one per-layer figures are keyed by.
    pub output: String,
    /// Quantized weights and constants it reads.
    pub weights: usize,
    pub pos: egui::Pos2,
    pub size: egui::Vec2,
}

/// One edge: from op to op, through a Q/DQ pair or not.
#[derive(Debug, Clone)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub quantized: bool,
}

/// A laid-out model graph.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub ops: Vec<Op>,
    pub edges: Vec<Edge>,
    pub size: egui::Vec2,
}

const BOX: egui::Vec2 = egui::vec2(150.0, 40.0);

/// The graph of `info` with Q/DQ nodes looked through, laid out top to bottom.
pub fn layout(info: &ModelInfo) -> Layout {
    let is_qdq = |op: &str| op == "QuantizeLinear" || op == "DequantizeLinear";
    // Q/DQ outputs resolve to what they read.
    let mut alias: HashMap<&str, &str> = HashMap::new();
    for n in info.nodes.iter().filter(|n| is_qdq(&n.op_type)) {
        if let (Some(i), Some(o)) = (n.inputs.first(), n.outputs.first()) {
            alias.insert(o.as_str(), i.as_str());
        }
    }
    let inits: std::collections::HashSet<&str> = info.initializers.iter().map(|i| i.name.as_str()).collect();
    let mut ops: Vec<Op> = Vec::new();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    // Graph inputs are boxes too.
    for i in &info.inputs {
        producer.insert(i.name.as_str(), ops.len());
        ops.push(Op {
            name: i.name.clone(),
            op_type: "input".into(),
            output: i.name.clone(),
            weights: 0,
            pos: egui::Pos2::ZERO,
            size: BOX,
        });
    }
    let real: Vec<&quantgraph_nodes::value::OpInfo> = info.nodes.iter().filter(|n| !is_qdq(&n.op_type)).collect();
    for n in &real {
        for o in &n.outputs {
            producer.insert(o.as_str(), ops.len());
        }
        ops.push(Op {
            name: n.name.clone(),
            op_type: n.op_type.clone(),
            output: n.outputs.first().cloned().unwrap_or_default(),
            weights: 0,
            pos: egui::Pos2::ZERO,
            size: BOX,
        });
    }
    let mut edges: Vec<Edge> = Vec::new();
    let first = info.inputs.len();
    for (k, n) in real.iter().enumerate() {
        for input in n.inputs.iter().filter(|i| !i.is_empty()) {
            let mut t = input.as_str();
            let mut quantized = false;
            for _ in 0..8 {
                match alias.get(t) {
                    Some(next) => {
                        t = next;
                        quantized = true;
                    }
                    None => break,
                }
            }
            match producer.get(t) {
                Some(&from) if from != first + k => edges.push(Edge { from, to: first + k, quantized }),
                Some(_) => {}
                None if inits.contains(t) => ops[first + k].weights += 1,
                None => {}
            }
        }
    }
    edges.sort_by_key(|e| (e.from, e.to));
    edges.dedup_by_key(|e| (e.from, e.to));
    place(&mut ops, &edges)
        .map(|size| Layout { ops: ops.clone(), edges: edges.clone(), size })
        .unwrap_or_else(|| Layout { size: BOX, ..Layout::default() })
}

/// Positions from the layered layout; disjoint parts side by side. Returns the total size.
fn place(ops: &mut [Op], edges: &[Edge]) -> Option<egui::Vec2> {
    if ops.is_empty() {
        return None;
    }
    let vertices: Vec<(u32, (f64, f64))> =
        ops.iter().enumerate().map(|(i, o)| (i as u32, (f64::from(o.size.x), f64::from(o.size.y)))).collect();
    let pairs: Vec<(u32, u32)> = edges.iter().map(|e| (e.from as u32, e.to as u32)).collect();
    let config = rust_sugiyama::configure::Config { vertex_spacing: 30.0, ..Default::default() };
    let parts = rust_sugiyama::from_vertices_and_edges(&vertices, &pairs, &config);
    let mut x0 = 0.0f32;
    let mut height = 0.0f32;
    for (coords, w, h) in parts {
        let min_x = coords.iter().map(|(_, (x, _))| *x as f32).fold(f32::INFINITY, f32::min);
        let min_y = coords.iter().map(|(_, (_, y))| *y as f32).fold(f32::INFINITY, f32::min);
        for (id, (x, y)) in coords {
            if let Some(op) = ops.get_mut(id) {
                // The crate's y grows with the layer; scaled so layers have room for edges.
                op.pos = egui::pos2(x0 + (x as f32 - min_x), (y as f32 - min_y) * 1.6);
            }
        }
        let part_w = ops.iter().map(|o| o.pos.x + o.size.x).fold(x0, f32::max) - x0;
        x0 += part_w.max(w as f32) + 60.0;
        height = height.max(h as f32 * 1.6);
    }
    let max_y = ops.iter().map(|o| o.pos.y + o.size.y).fold(height, f32::max);
    Some(egui::vec2(x0, max_y))
}

/// Per-layer figures by tensor: `metric` and every numeric column, from a `per_layer` table
/// (keyed by `b_tensor` when present, the model drawn being B's, else by `tensor`).
pub fn figures(t: &Table, key_column: &str) -> BTreeMap<String, Vec<(String, f64)>> {
    let Some(k) = t.column(key_column) else { return BTreeMap::new() };
    t.rows
        .iter()
        .map(|r| {
            let vals = t
                .columns
                .iter()
                .zip(r)
                .filter_map(|(c, v)| v.as_f64().filter(|x| x.is_finite()).map(|x| (c.clone(), x)))
                .collect();
            (r[k].to_string(), vals)
        })
        .collect()
}

/// Red (worst) to green (best) over `[lo, hi]` of a metric where larger is better.
pub fn color_for(v: f64, lo: f64, hi: f64, larger_is_better: bool) -> egui::Color32 {
    let mut t = if hi > lo { ((v - lo) / (hi - lo)).clamp(0.0, 1.0) } else { 0.5 } as f32;
    if !larger_is_better {
        t = 1.0 - t;
    }
    let (r, g) = (1.0 - t, t);
    egui::Color32::from_rgb((60.0 + 180.0 * r) as u8, (60.0 + 160.0 * g) as u8, 70)
}

/// An open graph window: which node it is for, the laid-out model, the figures and view.
pub struct Open {
    pub node: quantgraph_nodes::graph::NodeId,
    pub title: String,
    pub layout: std::sync::Arc<Layout>,
    pub figures: BTreeMap<String, Vec<(String, f64)>>,
    pub metric: String,
    pub scene_rect: egui::Rect,
    /// Q/DQ outputs → what they read, to key figures by the op a pair wraps.
    alias: HashMap<String, String>,
    /// The report the figures come from (output port, and the report they were read from),
    /// so they follow re-evaluations (a dragged scale).
    pub source: Option<(String, usize)>,
}

impl Open {
    pub fn new(
        node: quantgraph_nodes::graph::NodeId,
        title: String,
        info: &ModelInfo,
        figures: BTreeMap<String, Vec<(String, f64)>>,
    ) -> Open {
        let layout = std::sync::Arc::new(layout(info));
        // Figures of a Q/DQ pair's output (B's post-DQ value) belong to the op it wraps.
        let alias: HashMap<String, String> = info
            .nodes
            .iter()
            .filter(|n| n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear")
            .filter_map(|n| Some((n.outputs.first()?.clone(), n.inputs.first()?.clone())))
            .collect();
        let scene_rect = egui::Rect::from_min_size(egui::Pos2::ZERO, layout.size);
        let mut open = Open {
            node,
            title,
            layout,
            figures: BTreeMap::new(),
            metric: String::new(),
            scene_rect,
            alias,
            source: None,
        };
        open.set_figures(figures);
        open.metric = ["sqnr_db", "qdq_err_db", "mse"]
            .iter()
            .find(|m| open.figures.values().any(|f| metric_of(f, m).is_some()))
            .map_or_else(String::new, |m| (*m).to_owned());
        open
    }

    /// New figures (keyed by the ops' tensors through Q/DQ pairs).
    /// Keys are tensors (a Q/DQ pair's output stands for the tensor it wraps) or op names (a
    /// per-layer sweep's `layer`); figures for the same op are merged.
    pub fn set_figures(&mut self, figures: BTreeMap<String, Vec<(String, f64)>>) {
        let by_name: HashMap<&str, &str> =
            self.layout.ops.iter().map(|o| (o.name.as_str(), o.output.as_str())).collect();
        let outputs: std::collections::HashSet<&str> = self.layout.ops.iter().map(|o| o.output.as_str()).collect();
        let mut out: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
        for (k, v) in figures {
            let t = self.resolve(&k);
            let t = match by_name.get(t.as_str()) {
                Some(o) if !outputs.contains(t.as_str()) => (*o).to_owned(),
                _ => t,
            };
            let slot = out.entry(t).or_default();
            for (c, x) in v {
                if !slot.iter().any(|(d, _)| *d == c) {
                    slot.push((c, x));
                }
            }
        }
        self.figures = out;
    }

    /// The tensor an op box stands for: a Q/DQ pair's output is the tensor it wraps.
    pub fn resolve(&self, name: &str) -> String {
        let mut t = name.to_owned();
        for _ in 0..8 {
            match self.alias.get(&t) {
                Some(next) => t = next.clone(),
                None => break,
            }
        }
        t
    }

    /// The numeric columns the ops can be coloured by.
    pub fn metrics(&self) -> Vec<String> {
        let mut m: Vec<String> = self.figures.values().flat_map(|f| f.iter().map(|(c, _)| c.clone())).collect();
        m.sort();
        m.dedup();
        m
    }
}

/// What the view shows and the user chose.
pub struct ViewInput<'a> {
    pub layout: &'a Layout,
    pub figures: &'a BTreeMap<String, Vec<(String, f64)>>,
    pub metric: &'a str,
    /// The selected tensor's names (any of them marks its op).
    pub selected: &'a [String],
}

/// Draw the graph in `ui` (pan/zoom). Returns the output tensor of a clicked op.
pub fn show(ui: &mut egui::Ui, scene_rect: &mut egui::Rect, v: &ViewInput<'_>) -> Option<String> {
    let scale = MetricScale::of(v.figures, v.metric);
    let mut clicked = None;
    egui::Scene::new().zoom_range(0.05..=4.0).show(ui, scene_rect, |ui| {
        // Where the scene is on screen (the editor's tests click ops through it).
        if let Some(t) = ui.ctx().layer_transform_to_global(ui.layer_id()) {
            ui.ctx().data_mut(|d| d.insert_temp(egui::Id::new("qg_graph_transform"), t));
        }
        let painter = ui.painter().clone();
        let stroke = egui::Stroke::new(1.5, egui::Color32::from_gray(140));
        for e in &v.layout.edges {
            let (a, b) = (&v.layout.ops[e.from], &v.layout.ops[e.to]);
            let from = a.pos + egui::vec2(a.size.x / 2.0, a.size.y);
            let to = b.pos + egui::vec2(b.size.x / 2.0, 0.0);
            painter.line_segment([from, to], stroke);
            if e.quantized {
                let mid = from + (to - from) * 0.5;
                painter.circle_filled(mid, 7.0, egui::Color32::from_rgb(90, 120, 200));
                painter.text(
                    mid,
                    egui::Align2::CENTER_CENTER,
                    "Q",
                    egui::FontId::proportional(9.0),
                    egui::Color32::WHITE,
                );
            }
        }
        for (i, op) in v.layout.ops.iter().enumerate() {
            let rect = egui::Rect::from_min_size(op.pos, op.size);
            let figure = v.figures.get(&op.output);
            let value = figure.and_then(|f| metric_of(f, v.metric));
            let fill = match value {
                Some(x) => scale.color(x),
                None => egui::Color32::from_gray(55),
            };
            let selected = v.selected.contains(&op.output);
            let response = ui.interact(rect, ui.id().with(("graph_op", i)), egui::Sense::click());
            let label = format!("{} {}", op.op_type, op.name);
            response.widget_info(|| egui::WidgetInfo::selected(egui::WidgetType::Button, true, selected, &label));
            painter.rect_filled(rect, 6.0, fill);
            painter.rect_stroke(
                rect,
                6.0,
                if selected || response.hovered() {
                    egui::Stroke::new(2.5, egui::Color32::WHITE)
                } else {
                    egui::Stroke::new(1.0, egui::Color32::from_gray(20))
                },
                egui::StrokeKind::Inside,
            );
            let title = match value {
                Some(x) => format!("{} · {x:.2}", op.op_type),
                None => op.op_type.clone(),
            };
            painter.text(
                rect.center_top() + egui::vec2(0.0, 4.0),
                egui::Align2::CENTER_TOP,
                title,
                egui::FontId::proportional(13.0),
                egui::Color32::WHITE,
            );
            painter.text(
                rect.center_bottom() - egui::vec2(0.0, 4.0),
                egui::Align2::CENTER_BOTTOM,
                quantgraph_nodes::value::elide_middle(&op.name, 22),
                egui::FontId::proportional(10.0),
                egui::Color32::from_gray(220),
            );
            if op.weights > 0 {
                let badge = rect.right_top() + egui::vec2(-2.0, 2.0);
                painter.circle_filled(badge, 7.0, egui::Color32::from_rgb(200, 150, 60));
                painter.text(
                    badge,
                    egui::Align2::CENTER_CENTER,
                    "W",
                    egui::FontId::proportional(9.0),
                    egui::Color32::BLACK,
                );
            }
            let response = response.on_hover_ui(|ui| {
                ui.label(egui::RichText::new(format!("{} {}", op.op_type, op.name)).strong());
                ui.label(format!("makes {}", op.output));
                if op.weights > 0 {
                    ui.label(format!("{} weight(s)", op.weights));
                }
                for (c, x) in figure.map(Vec::as_slice).unwrap_or_default() {
                    ui.label(format!("{c}: {}", crate::views::format_figure(c, *x, false)));
                }
            });
            if response.clicked() {
                clicked = Some(op.output.clone());
            }
        }
    });
    clicked
}

/// A legend for the colour scale of `metric`.
pub fn legend(ui: &mut egui::Ui, figures: &BTreeMap<String, Vec<(String, f64)>>, metric: &str) {
    let scale = MetricScale::of(figures, metric);
    if scale.lo > scale.hi {
        ui.label(egui::RichText::new("no per-layer figures: ops are not coloured").weak());
        return;
    }
    ui.horizontal(|ui| {
        ui.label(format!("{metric}:"));
        for k in 0..=4 {
            let v = scale.lo + (scale.hi - scale.lo) * f64::from(k) / 4.0;
            let (rect, _) = ui.allocate_exact_size(egui::vec2(18.0, 12.0), egui::Sense::hover());
            ui.painter().rect_filled(rect, 2.0, scale.color(v));
            ui.label(crate::views::format_figure(metric, v, false));
        }
        ui.label(
            egui::RichText::new(if scale.larger_is_better { "(larger is better)" } else { "(smaller is better)" })
                .weak(),
        );
    });
}

/// A figure of one op by column name.
fn metric_of(figure: &[(String, f64)], metric: &str) -> Option<f64> {
    figure.iter().find(|(c, _)| c == metric).map(|(_, x)| *x)
}

/// The colour scale of a metric over every op: its range, and which end is good (dB and
/// cosine: larger). Empty (`lo > hi`) when no op has the metric.
struct MetricScale {
    lo: f64,
    hi: f64,
    larger_is_better: bool,
}

impl MetricScale {
    fn of(figures: &BTreeMap<String, Vec<(String, f64)>>, metric: &str) -> MetricScale {
        let (lo, hi) = figures
            .values()
            .filter_map(|f| metric_of(f, metric))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
        // Decibels, cosine and "only this layer quantized" accuracies are better larger; errors
        // and a sweep's all-but gains (how much keeping the layer in float recovers) are worse.
        let larger_is_better = metric.ends_with("_db") || metric == "cosine" || metric.starts_with("only_");
        MetricScale { lo, hi, larger_is_better }
    }
    fn color(&self, v: f64) -> egui::Color32 {
        color_for(v, self.lo, self.hi, self.larger_is_better)
    }
}

impl crate::Editor {
    /// The model graph window (Graph view button of a model, probe or comparator).
    pub(crate) fn graph_window_ui(&mut self, ui: &mut egui::Ui) {
        let Some(mut view) = self.graph_view.take() else { return };
        // The figures follow the report as it is re-evaluated (a dragged scale).
        if let Some((port, seen)) = view.source.clone() {
            if let Some(quantgraph_nodes::Value::Table(r)) =
                self.outputs.get(&view.node).and_then(|o| o.get(&port)).cloned()
            {
                let at = std::ptr::from_ref(r.as_ref()) as usize;
                if at != seen {
                    if let Some((t, key)) = crate::views::layer_table(&r) {
                        // As when it was opened: with other nodes' tables of layers (a sweep's).
                        let layout = view.layout.clone();
                        let names: std::collections::HashSet<&str> =
                            layout.ops.iter().map(|o| o.name.as_str()).collect();
                        let figures = crate::views::layer_figures(self, view.node, t, key, &names);
                        view.set_figures(figures);
                    }
                    view.source = Some((port, at));
                }
            }
        }
        let mut open = true;
        let mut clicked = None;
        let selected: Vec<String> = self.selected_names().iter().map(|n| view.resolve(n)).collect();
        // Tall: model graphs are drawn top to bottom, so height is what makes ops readable.
        let screen = ui.ctx().content_rect();
        egui::Window::new(format!("Graph: {}", view.title))
            .id(egui::Id::new("qg_graph_view"))
            .open(&mut open)
            .default_pos(screen.left_top() + egui::vec2(16.0, 30.0))
            .default_size([(screen.width() * 0.45).clamp(420.0, 900.0), (screen.height() - 90.0).max(400.0)])
            .resizable(true)
            .show(ui.ctx(), |ui| {
                ui.horizontal(|ui| {
                    let metrics = view.metrics();
                    if !metrics.is_empty() {
                        ui.label("Colour by");
                        egui::ComboBox::from_id_salt("qg_graph_metric").selected_text(&view.metric).show_ui(ui, |ui| {
                            for m in &metrics {
                                ui.selectable_value(&mut view.metric, m.clone(), m);
                            }
                        });
                    }
                    if ui.button("Fit").clicked() {
                        view.scene_rect = egui::Rect::from_min_size(egui::Pos2::ZERO, view.layout.size);
                    }
                    ui.label(
                        egui::RichText::new(format!(
                            "{} ops · drag to pan, wheel to zoom, click an op to select its tensor",
                            view.layout.ops.len()
                        ))
                        .weak(),
                    );
                });
                legend(ui, &view.figures, &view.metric);
                let input = ViewInput {
                    layout: &view.layout,
                    figures: &view.figures,
                    metric: &view.metric,
                    selected: &selected,
                };
                let mut rect = view.scene_rect;
                clicked = show(ui, &mut rect, &input);
                view.scene_rect = rect;
            });
        if let Some(t) = clicked {
            self.message = Some(format!("Selected tensor {t}"));
            let aliases = self.per_layer_partners(view.node, &t, |n| view.resolve(n));
            self.select_tensor_as(t, aliases);
        }
        if open && self.graph.node(view.node).is_some() {
            self.graph_view = Some(view);
        }
    }
}

impl crate::Editor {
    /// The other names of `tensor` in `node`'s per-layer tables (a comparator's row pairing
    /// A's tensor with B's, where B's post-DQ name `resolve`s to the op's tensor): what else
    /// selecting it selects.
    fn per_layer_partners(
        &self,
        node: quantgraph_nodes::graph::NodeId,
        tensor: &str,
        resolve: impl Fn(&str) -> String,
    ) -> Vec<String> {
        let Some(outputs) = self.outputs(node) else { return Vec::new() };
        let mut out = Vec::new();
        for v in outputs.values() {
            let quantgraph_nodes::Value::Table(r) = v else { continue };
            let Some((t, _)) = crate::views::layer_table(r) else { continue };
            for row in &t.rows {
                let names = crate::views::row_tensor_names(t, row);
                if names.iter().any(|n| n == tensor || resolve(n) == tensor) {
                    out.extend(names.into_iter().filter(|n| n != tensor && !n.is_empty()));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Open the graph window of `node`'s per-layer report (a comparator's), as its "Graph
    /// view with per-layer error" button does, and select the node.
    pub fn open_graph_view_of(&mut self, node: quantgraph_nodes::graph::NodeId) -> Result<(), String> {
        let outputs = self.outputs(node).cloned().ok_or("the node has no results yet")?;
        let (port, report) = outputs
            .iter()
            .find_map(|(port, v)| match v {
                quantgraph_nodes::Value::Table(r) if crate::views::layer_table(r).is_some() => {
                    Some((port.clone(), r.clone()))
                }
                _ => None,
            })
            .ok_or("the node gives no per-layer table")?;
        self.selected = Some(node);
        crate::views::open_graph_view(self, node, &port, &report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quantgraph_nodes::value::{OpInfo, TensorInfo};

    fn op(name: &str, op_type: &str, inputs: &[&str], outputs: &[&str]) -> OpInfo {
        OpInfo {
            name: name.into(),
            op_type: op_type.into(),
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            outputs: outputs.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// Q/DQ pairs are looked through (the edge is marked quantized), weights become badges,
    /// and every op lies below the ops it reads.
    #[test]
    fn qdq_pairs_collapse_into_edges_and_layers_go_down() {
        let info = ModelInfo {
            inputs: vec![TensorInfo { name: "x".into(), dtype: "float32".into(), dims: vec![] }],
            nodes: vec![
                op("conv", "Conv", &["x", "w_dq"], &["c"]),
                op("w_dq", "DequantizeLinear", &["w_q", "s", "z"], &["w_dq"]),
                op("q", "QuantizeLinear", &["c", "s", "z"], &["c_q"]),
                op("dq", "DequantizeLinear", &["c_q", "s", "z"], &["c_dq"]),
                op("relu", "Relu", &["c_dq"], &["r"]),
                op("add", "Add", &["r", "x"], &["y"]),
            ],
            initializers: ["w_q", "s", "z"]
                .iter()
                .map(|n| quantgraph_nodes::value::InitializerInfo {
                    name: (*n).into(),
                    dtype: "int8".into(),
                    dims: vec![],
                    size_bytes: 1,
                })
                .collect(),
            ..ModelInfo::default()
        };
        let l = layout(&info);
        let names: Vec<&str> = l.ops.iter().map(|o| o.op_type.as_str()).collect();
        assert_eq!(names, ["input", "Conv", "Relu", "Add"]);
        let conv = &l.ops[1];
        assert_eq!(conv.weights, 1, "the dequantized weight is a badge");
        let edge = |a: usize, b: usize| l.edges.iter().find(|e| e.from == a && e.to == b);
        assert!(edge(1, 2).unwrap().quantized, "Conv → Relu goes through a Q/DQ pair");
        assert!(!edge(0, 1).unwrap().quantized);
        assert!(edge(0, 3).is_some() && edge(2, 3).is_some());
        for e in &l.edges {
            assert!(l.ops[e.to].pos.y > l.ops[e.from].pos.y, "{:?} is not below {:?}", l.ops[e.to], l.ops[e.from]);
        }

        // Figures keyed by B's post-DQ tensor (a comparator's) and by op name (a sensitivity
        // sweep's `layer`) land on the same op, merged; unknown keys stay apart.
        let figures: BTreeMap<String, Vec<(String, f64)>> = [
            ("c_dq".to_owned(), vec![("sqnr_db".to_owned(), 20.0)]),
            ("conv".to_owned(), vec![("all_but_gain_pt".to_owned(), 0.4)]),
            ("elsewhere".to_owned(), vec![("sqnr_db".to_owned(), 1.0)]),
        ]
        .into_iter()
        .collect();
        let open = Open::new(quantgraph_nodes::NodeId(1), "t".into(), &info, figures);
        assert_eq!(
            open.figures.get("c"),
            Some(&vec![("sqnr_db".to_owned(), 20.0), ("all_but_gain_pt".to_owned(), 0.4)])
        );
        assert_eq!(open.metrics(), ["all_but_gain_pt", "sqnr_db"]);
        assert!(open.figures.contains_key("elsewhere"));
        // A sweep's gain is worse when larger; an "only this layer" accuracy better.
        assert!(!MetricScale::of(&open.figures, "all_but_gain_pt").larger_is_better);
        assert!(MetricScale::of(&open.figures, "only_acc_pct").larger_is_better);
    }
}
