//! # quantgraph-plot
//!
//! * `plot.chart` ([`Chart`]) — a table column (or several) as a bar or line chart, or a
//!   whole table as a heatmap.
//! * `plot.histogram` ([`TensorHistogram`]) — a probed tensor's histogram, with the clip
//!   range and grid of its Q/DQ pair marked.
//!
//! The editor draws [`PlotSpec`]s with egui_plot; [`render_png`] draws them for headless
//! runs (`quantgraph run --out DIR`) and PNG export, [`plot_csv`] exports their data.

mod render;

use std::sync::Arc;

use quantgraph_nodes::kind::single;
use quantgraph_nodes::value::{Cell, PlotKind, PlotSpec, Series, Value as V};
use quantgraph_nodes::{
    params, EvalContext, Inputs, NodeError, NodeRegistry, Outputs, PortSpec, PortType, TypedKind, Value,
};

pub use render::render_png;

/// Register this plugin's node kinds.
pub fn register_nodes(registry: &mut NodeRegistry) -> quantgraph_nodes::Result<()> {
    registry.register::<Chart>()?;
    registry.register::<TensorHistogram>()?;
    registry.register::<SampleGrid>()?;
    Ok(())
}

/// A plot's data as CSV: one row per point (or heatmap cell); fields are quoted by the
/// `csv` crate (series and category names may hold commas).
pub fn plot_csv(p: &PlotSpec) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut ok = true;
    match p.kind {
        PlotKind::Heatmap => {
            ok &= w.write_record(["row", "column", "value"]).is_ok();
            let cols = p.x_categories.len().max(1);
            for (i, v) in p.cells.iter().enumerate() {
                let r = p.y_categories.get(i / cols).cloned().unwrap_or_default();
                let c = p.x_categories.get(i % cols).cloned().unwrap_or_default();
                ok &= w.write_record([r, c, v.to_string()]).is_ok();
            }
        }
        PlotKind::FeatureMaps => {
            ok &= w.write_record(["sample", "channel", "y", "x", "a", "b"]).is_ok();
            if let Some(m) = &p.maps {
                let plane = m.plane().max(1);
                for s in &m.samples {
                    for (i, (a, b)) in s.a.iter().zip(&s.b).enumerate() {
                        let (c, at) = (i / plane, i % plane);
                        let (y, x) = (at / m.width.max(1), at % m.width.max(1));
                        ok &= w
                            .write_record(
                                [s.index, c, y, x]
                                    .map(|v| v.to_string())
                                    .into_iter()
                                    .chain([a.to_string(), b.to_string()]),
                            )
                            .is_ok();
                    }
                }
            }
        }
        _ => {
            ok &= w.write_record(["series", "x", "label", "y"]).is_ok();
            for s in &p.series {
                for (x, y) in s.x.iter().zip(&s.y) {
                    let label = p.x_categories.get(*x as usize).cloned().unwrap_or_default();
                    ok &= w.write_record([s.name.clone(), x.to_string(), label, y.to_string()]).is_ok();
                }
            }
        }
    }
    match (ok, w.into_inner()) {
        (true, Ok(bytes)) => String::from_utf8(bytes).unwrap_or_default(),
        _ => String::new(),
    }
}

/// Table → chart.
#[derive(Default)]
pub struct Chart;

params! {
    /// The Chart's params.
    pub struct ChartParams {
        pub title: String = text("Title", ""),
        pub kind: String = choice("Chart", "bar", &["bar", "line", "heatmap"]),
        pub table: String = text("Table", "per_layer"),
        pub x: String = text("Label column", "tensor"),
        pub y: String = text("Value columns (comma-separated)", "sqnr_db"),
        pub filter: String = text("Only rows whose label contains", ""),
        pub reference: String = text("Reference lines (summary values, comma-separated)", "").with_doc(
            "Names of the report's summary values drawn as horizontal lines, e.g. the sweep's \
             accuracy_fp32_pct,accuracy_int8_pct.",
        ),
    }
}

impl TypedKind for Chart {
    type Params = ChartParams;
    fn id(&self) -> &'static str {
        "plot.chart"
    }
    fn display_name(&self) -> &'static str {
        "Chart"
    }
    fn category(&self) -> &'static str {
        "Plot"
    }
    fn doc(&self) -> &'static str {
        "Draws one table of its input: as bars or lines (category labels from column `x`, one \
         series per column listed in `y`), or as a heatmap of every numeric cell (e.g. a \
         confusion matrix). Hover shows values in the editor; `quantgraph run --out` writes it as \
         PNG and CSV."
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("table", PortType::Table)]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("plot", PortType::Plot)]
    }
    fn evaluate(&self, _: &EvalContext, inputs: &Inputs, params: &ChartParams) -> Result<Outputs, NodeError> {
        let report = inputs.table("table")?;
        let name = params.table.clone();
        let Some(table) = report.table(&name).or_else(|| if name.is_empty() { report.tables.first() } else { None })
        else {
            let names: Vec<&str> = report.tables.iter().map(|t| t.name.as_str()).collect();
            return Err(NodeError::param("table", format!("expected one of {}, found '{name}'", names.join(", "))));
        };
        let kind = params.kind.clone();
        let mut title = params.title.clone();
        if title.is_empty() {
            title = table.name.replace('_', " ");
        }
        let filter = params.filter.clone();
        if kind == "heatmap" {
            let mut p = PlotSpec::new(PlotKind::Heatmap, title);
            p.x_categories = table.columns.iter().skip(1).cloned().collect();
            for row in &table.rows {
                p.y_categories.push(row.first().map(ToString::to_string).unwrap_or_default());
                for c in row.iter().skip(1) {
                    p.cells.push(c.as_f64().unwrap_or(f64::NAN));
                }
            }
            p.x_label = table.columns.first().cloned().unwrap_or_default();
            return Ok(single("plot", Value::Plot(Arc::new(p))));
        }
        let x_col = params.x.clone();
        let Some(xi) = table.column(&x_col) else {
            return Err(NodeError::param(
                "x",
                format!("expected a column of '{}' ({}), found '{x_col}'", table.name, table.columns.join(", ")),
            ));
        };
        let rows: Vec<&Vec<Cell>> = table
            .rows
            .iter()
            .filter(|row| filter.is_empty() || row.get(xi).is_some_and(|c| c.to_string().contains(&filter)))
            .collect();
        let mut p = PlotSpec::new(if kind == "line" { PlotKind::Line } else { PlotKind::Bar }, title);
        p.x_label = x_col.clone();
        p.x_categories = rows.iter().map(|row| row.get(xi).map(ToString::to_string).unwrap_or_default()).collect();
        for y in params.y.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some(yi) = table.column(y) else {
                return Err(NodeError::param(
                    "y",
                    format!("expected columns of '{}' ({}), found '{y}'", table.name, table.columns.join(", ")),
                ));
            };
            p.series.push(Series {
                name: y.to_owned(),
                x: (0..rows.len()).map(|i| i as f64).collect(),
                y: rows.iter().map(|row| row.get(yi).and_then(Cell::as_f64).unwrap_or(f64::NAN)).collect(),
            });
        }
        p.y_label = p.series.iter().map(|s| s.name.clone()).collect::<Vec<_>>().join(", ");
        for key in params.reference.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some(v) = report.summary.get(key) else {
                let keys: Vec<&str> = report.summary.keys().map(String::as_str).collect();
                return Err(NodeError::param(
                    "reference",
                    format!("expected summary values of the report ({}), found '{key}'", keys.join(", ")),
                ));
            };
            p.levels.push((*v, key.to_owned()));
        }
        Ok(single("plot", Value::Plot(Arc::new(p))))
    }
}

/// A probed tensor's histogram.
#[derive(Default)]
pub struct TensorHistogram;

params! {
    /// The Tensor Histogram's params.
    pub struct HistogramParams {
        pub tensor: String = tensor_name("Tensor", "activations", false),
    }
}

impl TypedKind for TensorHistogram {
    type Params = HistogramParams;
    fn id(&self) -> &'static str {
        "plot.histogram"
    }
    fn display_name(&self) -> &'static str {
        "Tensor Histogram"
    }
    fn category(&self) -> &'static str {
        "Plot"
    }
    fn doc(&self) -> &'static str {
        "Histogram of one probed tensor over all samples, with the representable range \
         [(qmin−zp)·s, (qmax−zp)·s] of its Q/DQ pair marked, so clipping and rounding can be told \
         apart at a glance."
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("activations", PortType::Activations)]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("plot", PortType::Plot)]
    }
    fn evaluate(&self, _: &EvalContext, inputs: &Inputs, params: &HistogramParams) -> Result<Outputs, NodeError> {
        let acts = inputs.activations("activations")?;
        let name = params.tensor.clone();
        let t = if name.is_empty() {
            acts.tensors.values().find(|t| t.qdq.is_some()).or_else(|| acts.tensors.values().next())
        } else {
            acts.tensors.get(&name)
        };
        let Some(t) = t else {
            return Err(NodeError::param("tensor", format!("the probe captured no tensor '{name}'")));
        };
        let h = &t.stats.histogram;
        let width = (h.hi - h.lo) / h.counts.len().max(1) as f32;
        let mut p = PlotSpec::new(PlotKind::Histogram, format!("{} ({})", t.name, acts.model_name));
        p.x_label = "value".into();
        p.y_label = "count".into();
        p.series.push(Series {
            name: t.name.clone(),
            x: (0..h.counts.len()).map(|i| f64::from(h.lo + (i as f32 + 0.5) * width)).collect(),
            y: h.counts.iter().map(|c| *c as f64).collect(),
        });
        if let Some(q) = &t.qdq {
            if let Some((lo, hi)) = q.real_range() {
                p.markers.push((f64::from(lo), format!("clip low {lo:.4}")));
                p.markers.push((f64::from(hi), format!("clip high {hi:.4}")));
            }
        }
        Ok(single("plot", Value::Plot(Arc::new(p))))
    }
}

/// Dataset (+ comparator report) → an image grid of samples.
#[derive(Default)]
pub struct SampleGrid;

params! {
    /// The Sample Grid's params.
    pub struct SampleGridParams {
        pub max_images: usize = int("Images at most", 32, 1, 1024),
    }
}

impl TypedKind for SampleGrid {
    type Params = SampleGridParams;
    fn id(&self) -> &'static str {
        "plot.samples"
    }
    fn display_name(&self) -> &'static str {
        "Sample Grid"
    }
    fn category(&self) -> &'static str {
        "Plot"
    }
    fn doc(&self) -> &'static str {
        "An image grid of dataset samples with their labels. With a comparator's report connected, \
         shows the samples whose top-1 prediction flips between A and B, captioned with the label \
         and both predictions."
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("dataset", PortType::Dataset), PortSpec::optional("report", PortType::Table)]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("plot", PortType::Plot)]
    }
    fn evaluate(&self, _: &EvalContext, inputs: &Inputs, params: &SampleGridParams) -> Result<Outputs, NodeError> {
        let max = params.max_images;
        let d = inputs.dataset("dataset")?;
        let mut p = PlotSpec::new(PlotKind::ImageGrid, "samples");
        let class = |l: u32| d.class_names.get(l as usize).cloned().unwrap_or_else(|| l.to_string());
        match inputs.optional("report") {
            Some(V::Table(report)) => {
                let Some(flips) = report.table("flips") else {
                    return Err(NodeError::input("report", "expected a comparator report with a 'flips' table"));
                };
                p.title = format!("{} samples whose prediction flips", flips.rows.len());
                let col = |n: &str| flips.column(n);
                for row in flips.rows.iter().take(max) {
                    let Some(i) = col("sample").and_then(|c| row.get(c)).and_then(Cell::as_f64).map(|x| x as usize)
                    else {
                        continue;
                    };
                    let Some(img) = d.thumbnail(i) else { continue };
                    let text = |n: &str| col(n).and_then(|c| row.get(c)).map(ToString::to_string).unwrap_or_default();
                    p.images.push((img, format!("{}: A {} / B {}", text("label"), text("a"), text("b"))));
                }
            }
            _ => {
                p.title = format!("first {} of {} samples", max.min(d.len()), d.len());
                for img in (0..max.min(d.len())).filter_map(|i| d.thumbnail(i)) {
                    let caption = class(img.label);
                    p.images.push((img, caption));
                }
            }
        }
        Ok(single("plot", Value::Plot(Arc::new(p))))
    }
}
