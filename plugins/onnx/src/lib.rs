//! # quantgraph-onnx
//!
//! Node kinds backed by ONNX Runtime (through `ort`, loading the library at run time):
//!
//! * `onnx.model` ([`model::OnnxModel`]) — load and describe an ONNX file, with its Q/DQ table.
//! * `onnx.qdq_override` ([`qdq_override::QdqOverride`]) — edit Q/DQ scales and zero-points.
//! * `onnx.layer_probe` ([`probe::LayerProbe`]) — run a model on a dataset, capture tensors.
//! * `onnx.sensitivity` ([`sensitivity::Sensitivity`]) — per-layer sensitivity sweep, mixed-precision model.
//! * `onnx.scale_search` ([`scale_search::ScaleSearch`]) — clip-range search per activation pair.
//! * `onnx.calibrate` ([`calibrate::Calibrate`]) — FP32 model + images → QDQ model (MinMax, Percentile,
//!   Entropy, MSE), the way ONNX Runtime's `quantize_static` places Q/DQ pairs ([`quantize`]).
//!
//! [`proto`] reads ONNX protobufs and edits them without losing unknown fields;
//! [`runtime`] finds and loads the ONNX Runtime library.

pub mod calibrate;
pub mod cuts;
pub mod info;
pub mod model;
pub mod prefix;
pub mod probe;
pub mod proto;
pub mod qdq_override;
pub mod quantize;
pub mod reuse;
pub mod runtime;
pub mod scale_search;
pub mod sensitivity;

use quantgraph_nodes::NodeRegistry;

/// Register this plugin's node kinds.
pub fn register_nodes(registry: &mut NodeRegistry) -> quantgraph_nodes::Result<()> {
    registry.register::<model::OnnxModel>()?;
    registry.register::<qdq_override::QdqOverride>()?;
    registry.register::<probe::LayerProbe>()?;
    registry.register::<sensitivity::Sensitivity>()?;
    registry.register::<scale_search::ScaleSearch>()?;
    registry.register::<calibrate::Calibrate>()?;
    Ok(())
}
