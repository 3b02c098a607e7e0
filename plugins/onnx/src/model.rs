//! `onnx.model`: load an ONNX file.

use std::path::Path;
use std::sync::Arc;

use quantgraph_nodes::fsio::ReadError;
use quantgraph_nodes::kind::{file_identity, resolve_path, single};
use quantgraph_nodes::value::ModelValue;
use quantgraph_nodes::{params, EvalContext, Inputs, NodeError, Outputs, PortSpec, PortType, TypedKind, Value};

use crate::{info, proto, runtime};

/// Loads an ONNX model file.
#[derive(Default)]
pub struct OnnxModel;

/// Make a [`ModelValue`] from bytes: decode, describe, and check that ONNX Runtime
/// accepts it. `origin` names the file in messages.
pub fn model_value(name: &str, origin: &str, bytes: Vec<u8>, threads: usize) -> Result<ModelValue, NodeError> {
    let model = proto::decode_model(&bytes).map_err(|e| NodeError::file(e, origin))?;
    let info = info::model_info(&model);
    if info.inputs.is_empty() {
        return Err(NodeError::file("the model has no inputs", origin));
    }
    runtime::session(&bytes, threads).map_err(|e| match e {
        NodeError::Failed(msg) => NodeError::file(msg, origin),
        other => other,
    })?;
    Ok(ModelValue {
        name: name.to_owned(),
        path: origin.to_owned(),
        bytes: Arc::new(bytes),
        info: Arc::new(info),
        threads,
        changes: Vec::new(),
    })
}

params! {
    /// The ONNX Model's params.
    pub struct ModelParams {
        pub path: String = path("ONNX file", "", &["onnx"], false)
            .with_doc("Relative paths are relative to the graph file."),
        pub threads: usize = int("Threads", 0, 0, 256)
            .with_doc("Intra-op threads for ONNX Runtime (0: its default)."),
        pub max_size_mib: u64 = int("Size limit (MiB)", 2048, 1, 1 << 20).with_doc(
            "Models (with their external data) larger than this are refused instead of read into memory.",
        ),
    }
}

impl TypedKind for OnnxModel {
    type Params = ModelParams;
    fn id(&self) -> &'static str {
        "onnx.model"
    }
    fn display_name(&self) -> &'static str {
        "ONNX Model"
    }
    fn category(&self) -> &'static str {
        "Model"
    }
    fn doc(&self) -> &'static str {
        "Loads an ONNX model file and describes it: inputs and outputs, every operator, the \
         initializers, the parameter count and, for a QDQ model, the table of every \
         QuantizeLinear/DequantizeLinear with its scale, zero-point, type and the float tensor it \
         quantizes. The file is never modified."
    }
    fn inputs(&self) -> Vec<PortSpec> {
        Vec::new()
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("model", PortType::Model)]
    }
    fn evaluate(&self, ctx: &EvalContext, _: &Inputs, params: &ModelParams) -> Result<Outputs, NodeError> {
        let path_param = params.path.clone();
        if path_param.is_empty() {
            return Err(NodeError::param("path", "choose an ONNX file"));
        }
        let path = ctx.resolve_path(&path_param);
        let limit = params.max_size_mib * (1 << 20);
        let bytes = quantgraph_nodes::fsio::read_regular_file(&path, limit).map_err(|e| match e {
            ReadError::TooLarge(..) => {
                NodeError::param("max_size_mib", format!("the model is too large: {e}: {}", path.display()))
            }
            other => NodeError::file(format!("the model: {other}"), &path),
        })?;
        // External weights are read from the model's own folder, never the working directory.
        let dir = quantgraph_nodes::fsio::parent_dir(&path);
        let bytes = proto::inline_external_data(&bytes, &dir, limit.saturating_sub(bytes.len() as u64))
            .map_err(|e| NodeError::file(e, &path))?;
        ctx.progress(0.5, "checking the model with ONNX Runtime");
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let value = model_value(&name, &path.display().to_string(), bytes, params.threads)?;
        Ok(single("model", Value::Model(Arc::new(value))))
    }
    fn external_identity(&self, params: &ModelParams, base_dir: Option<&Path>) -> Option<String> {
        Some(file_identity(&resolve_path(base_dir, &params.path)))
    }
}
