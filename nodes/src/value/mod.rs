//! Port types and the values that flow on wires.
//!
//! The payload types here are plain data shared by all plugins (the dataset plugin makes a
//! [`Dataset`], the ONNX plugin reads it), so plugins agree on them without depending on
//! each other. Every payload sits behind an `Arc`: cloning a [`Value`] is cheap.
//!
//! One file per family of payloads, all re-exported here: `data.rs` (tensors, datasets),
//! `model.rs` (models and the Q/DQ table), `activations.rs` (what probes capture),
//! `table.rs` (tables, reports) and `plot.rs` (charts); this file holds the port types and
//! the [`Value`] enum over them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::images::{BatchData, ImageSource, Images};

mod activations;
mod data;
mod maps;
mod model;
mod pending;
mod plot;
mod table;

pub use activations::*;
pub use data::*;
pub use maps::*;
pub use model::*;
pub use pending::*;
pub use plot::*;
pub use table::*;

/// The type of a port. A wire may only join ports of the same type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PortType {
    Scalar,
    Text,
    Tensor,
    Dataset,
    Model,
    Activations,
    Predictions,
    Table,
    Plot,
}

impl PortType {
    pub const ALL: [PortType; 9] = [
        PortType::Scalar,
        PortType::Text,
        PortType::Tensor,
        PortType::Dataset,
        PortType::Model,
        PortType::Activations,
        PortType::Predictions,
        PortType::Table,
        PortType::Plot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PortType::Scalar => "Scalar",
            PortType::Text => "Text",
            PortType::Tensor => "Tensor",
            PortType::Dataset => "Dataset",
            PortType::Model => "Model",
            PortType::Activations => "Activations",
            PortType::Predictions => "Predictions",
            PortType::Table => "Table",
            PortType::Plot => "Plot",
        }
    }

    /// An RGB colour for drawing ports of this type.
    pub fn color_rgb(self) -> [u8; 3] {
        match self {
            PortType::Scalar => [200, 200, 200],
            PortType::Text => [160, 160, 120],
            PortType::Tensor => [90, 170, 255],
            PortType::Dataset => [240, 170, 60],
            PortType::Model => [180, 110, 250],
            PortType::Activations => [70, 200, 160],
            PortType::Predictions => [250, 110, 140],
            PortType::Table => [120, 220, 90],
            PortType::Plot => [250, 220, 80],
        }
    }
}

impl fmt::Display for PortType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value on a wire.
#[derive(Debug, Clone)]
pub enum Value {
    Scalar(f64),
    Text(Arc<str>),
    Tensor(Arc<Tensor>),
    Dataset(Arc<Dataset>),
    Model(Arc<ModelValue>),
    Activations(Arc<Activations>),
    Predictions(Arc<Predictions>),
    Table(Arc<Report>),
    Plot(Arc<PlotSpec>),
}

impl Value {
    pub fn port_type(&self) -> PortType {
        match self {
            Value::Scalar(_) => PortType::Scalar,
            Value::Text(_) => PortType::Text,
            Value::Tensor(_) => PortType::Tensor,
            Value::Dataset(_) => PortType::Dataset,
            Value::Model(_) => PortType::Model,
            Value::Activations(_) => PortType::Activations,
            Value::Predictions(_) => PortType::Predictions,
            Value::Table(_) => PortType::Table,
            Value::Plot(_) => PortType::Plot,
        }
    }

    /// Approximate heap size, for the scheduler's cache budget.
    pub fn size_bytes(&self) -> usize {
        match self {
            Value::Scalar(_) => 8,
            Value::Text(t) => t.len(),
            Value::Tensor(t) => t.size_bytes(),
            Value::Dataset(d) => {
                d.images.size_bytes()
                    + d.labels.len() * 4
                    + d.preview.len() * 3072
                    + d.thumbnails.iter().map(|t| t.rgb.len()).sum::<usize>()
            }
            Value::Model(m) => m.bytes.len() + m.info.nodes.len() * 128,
            Value::Activations(a) => a.tensors.values().map(|t| t.tensor.size_bytes()).sum::<usize>() + 1024,
            Value::Predictions(p) => p.top1.len() * 4 + 64,
            Value::Table(r) => r.tables.iter().map(|t| t.rows.len() * t.columns.len() * 16).sum::<usize>() + 256,
            Value::Plot(p) => {
                p.series.iter().map(|s| s.y.len() * 16).sum::<usize>()
                    + p.maps.as_ref().map_or(0, |m| m.samples.iter().map(|s| (s.a.len() + s.b.len()) * 4).sum())
                    + 256
            }
        }
    }

    /// A one-line description of the value, for node bodies and the CLI.
    pub fn summary(&self) -> String {
        match self {
            Value::Scalar(x) => format!("{x}"),
            Value::Text(t) => t.chars().take(60).collect(),
            Value::Tensor(t) => format!("tensor {:?}", t.shape),
            Value::Dataset(d) => format!("{} images, {} classes", d.len(), d.class_names.len()),
            Value::Model(m) => format!(
                "{} ops, {} params{}",
                m.info.nodes.len(),
                m.info.param_count,
                if m.info.qdq.is_empty() { String::new() } else { format!(", {} Q/DQ", m.info.qdq.len()) }
            ),
            Value::Activations(a) if a.is_pending() => {
                format!("{} tensors (statistics come with the pass of the node reading them)", a.tensors.len())
            }
            Value::Activations(a) => match &a.settled().predictions {
                Some(p) => match p.accuracy() {
                    Some(acc) => format!("{} tensors, top-1 {:.1} %", a.tensors.len(), acc * 100.0),
                    None => format!("{} tensors, {} samples", a.tensors.len(), p.top1.len()),
                },
                None => format!("{} tensors", a.tensors.len()),
            },
            Value::Predictions(p) => format!("{} predictions", p.top1.len()),
            Value::Table(r) => r.headline.clone().unwrap_or_else(|| format!("{} tables", r.tables.len())),
            Value::Plot(p) => format!("{} plot: {}", p.kind.name(), p.title),
        }
    }

    /// A machine-readable rendering for `quantgraph run --json`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Value::Scalar(x) => json!(x),
            Value::Text(t) => json!(t.as_ref()),
            Value::Tensor(t) => json!({"shape": t.shape, "len": t.data.len()}),
            Value::Dataset(d) => json!({"images": d.len(), "classes": d.class_names, "source": d.source}),
            Value::Model(m) => serde_json::to_value(m.info.as_ref()).unwrap_or(serde_json::Value::Null),
            Value::Activations(a) => {
                let a = a.settled();
                json!({
                "model": a.model_name,
                "pending": a.is_pending(),
                "tensors": a.tensors.iter().map(|(k, v)| (k.clone(), serde_json::to_value(&v.stats).unwrap_or_default())).collect::<BTreeMap<_, _>>(),
                "accuracy": a.predictions.as_ref().and_then(|p| p.accuracy()),
                "samples": a.dataset.as_ref().map(|d| d.len()).or_else(|| a.predictions.as_ref().map(|p| p.top1.len())),
                "notes": a.notes,
                })
            }
            Value::Predictions(p) => json!({"top1": p.top1, "accuracy": p.accuracy()}),
            Value::Table(r) => serde_json::to_value(r.as_ref()).unwrap_or_default(),
            Value::Plot(p) => serde_json::to_value(p.as_ref()).unwrap_or_default(),
        }
    }
}
