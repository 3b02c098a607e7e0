//! The parts of `onnx.proto` QuantGraph reads, as prost messages, and a wire-level
//! editor that changes a model without losing anything it does not understand.
//!
//! Field numbers follow onnx/onnx.proto (IR version 10). Decoding with these messages is
//! lossy (unknown fields are skipped), so they are only used to *read* a model. Edits go
//! through [`edit_model`], which walks the protobuf wire format and copies every field it
//! does not change byte for byte.

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Kept so that a node QuantGraph rewrites (a folded Gemm) keeps its documentation.
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(string, tag = "7")]
    pub domain: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

/// A tensor. Every field of `TensorProto` is declared, so a decoded and re-encoded
/// tensor keeps all its data.
#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(message, optional, tag = "3")]
    pub segment: Option<Segment>,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_data: Vec<Vec<u8>>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
    #[prost(string, tag = "12")]
    pub doc_string: String,
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    #[prost(int32, tag = "14")]
    pub data_location: i32,
    #[prost(message, repeated, tag = "16")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Segment {
    #[prost(int64, tag = "1")]
    pub begin: i64,
    #[prost(int64, tag = "2")]
    pub end: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

pub const FLOAT: i32 = 1;
pub const UINT8: i32 = 2;
pub const INT8: i32 = 3;
pub const UINT16: i32 = 4;
pub const INT16: i32 = 5;
pub const INT32: i32 = 6;
pub const UINT4: i32 = 21;
pub const INT4: i32 = 22;

/// Name of an ONNX element type.
pub fn dtype_name(t: i32) -> &'static str {
    match t {
        1 => "float32",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "float64",
        12 => "uint32",
        13 => "uint64",
        16 => "bfloat16",
        21 => "uint4",
        22 => "int4",
        _ => "other",
    }
}

/// Bytes per element (0 when not a fixed-size type).
pub fn dtype_size(t: i32) -> usize {
    match t {
        2 | 3 | 9 => 1,
        4 | 5 | 10 | 16 => 2,
        1 | 6 | 12 => 4,
        7 | 11 | 13 => 8,
        _ => 0,
    }
}

impl TensorProto {
    pub fn element_count(&self) -> usize {
        self.dims.iter().map(|d| (*d).max(0) as usize).product()
    }

    /// Values as f32 (float tensors).
    pub fn floats(&self) -> Option<Vec<f32>> {
        if self.data_type != FLOAT {
            return None;
        }
        if !self.raw_data.is_empty() {
            return Some(self.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect());
        }
        Some(self.float_data.clone())
    }

    /// Values as i32 of an integer tensor that zero-points can have: int4/uint4 (two per
    /// byte, low nibble first), int8/uint8, int16/uint16, int32. Raw bytes are read at the
    /// type's width; `int32_data` holds one value per entry (packed for 4-bit types).
    pub fn ints(&self) -> Option<Vec<i32>> {
        let raw = &self.raw_data;
        let n = self.element_count();
        let from_raw = !raw.is_empty();
        let nibbles = |bytes: Vec<u8>, signed: bool| -> Vec<i32> {
            bytes
                .iter()
                .flat_map(|b| [b & 0x0f, b >> 4])
                .take(n)
                .map(|v| if signed && v >= 8 { i32::from(v) - 16 } else { i32::from(v) })
                .collect()
        };
        match self.data_type {
            UINT8 if from_raw => Some(raw.iter().map(|b| i32::from(*b)).collect()),
            INT8 if from_raw => Some(raw.iter().map(|b| i32::from(*b as i8)).collect()),
            UINT16 if from_raw => {
                Some(raw.chunks_exact(2).map(|c| i32::from(u16::from_le_bytes([c[0], c[1]]))).collect())
            }
            INT16 if from_raw => {
                Some(raw.chunks_exact(2).map(|c| i32::from(i16::from_le_bytes([c[0], c[1]]))).collect())
            }
            INT32 if from_raw => {
                Some(raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            }
            UINT4 | INT4 if from_raw => Some(nibbles(raw.clone(), self.data_type == INT4)),
            UINT4 | INT4 => Some(nibbles(self.int32_data.iter().map(|v| *v as u8).collect(), self.data_type == INT4)),
            UINT8 | INT8 | UINT16 | INT16 | INT32 => Some(self.int32_data.clone()),
            _ => None,
        }
    }

    /// Replace the values of a float tensor, keeping its storage style.
    pub fn set_floats(&mut self, values: &[f32]) {
        if !self.raw_data.is_empty() || self.float_data.is_empty() {
            self.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.float_data.clear();
        } else {
            self.float_data = values.to_vec();
        }
    }

    /// Replace the values of an integer tensor (the types [`TensorProto::ints`] reads),
    /// keeping its storage style and writing each value at the type's width. Values must
    /// already be inside the type's range (the QDQ Override checks it).
    pub fn set_ints(&mut self, values: &[i32]) {
        let packed = |values: &[i32]| -> Vec<u8> {
            values
                .chunks(2)
                .map(|c| (c[0] as u8 & 0x0f) | ((c.get(1).copied().unwrap_or(0) as u8 & 0x0f) << 4))
                .collect()
        };
        if !self.raw_data.is_empty() || self.int32_data.is_empty() {
            self.raw_data = match self.data_type {
                UINT16 | INT16 => values.iter().flat_map(|v| (*v as u16).to_le_bytes()).collect(),
                INT32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                UINT4 | INT4 => packed(values),
                _ => values.iter().map(|v| *v as u8).collect(),
            };
            self.int32_data.clear();
        } else {
            self.int32_data = match self.data_type {
                UINT4 | INT4 => packed(values).into_iter().map(i32::from).collect(),
                _ => values.to_vec(),
            };
        }
    }

    /// Whether the tensor's data lives in an external file (`data_location == EXTERNAL`).
    pub fn is_external(&self) -> bool {
        self.data_location == 1
    }
}

/// Inline every initializer stored as external data, reading it relative to `model_dir`
/// (the model file's folder), never the working directory. Locations must be relative
/// paths inside `model_dir`; offsets and lengths are checked against the file. Models
/// without external data are returned unchanged. The total read is capped at `max_bytes`.
pub fn inline_external_data(model: &[u8], model_dir: &std::path::Path, max_bytes: u64) -> Result<Vec<u8>, String> {
    let decoded = decode_model(model)?;
    let Some(graph) = &decoded.graph else { return Ok(model.to_vec()) };
    let in_nodes = graph.node.iter().flat_map(|n| &n.attribute).filter_map(|a| a.t.as_ref()).any(|t| t.is_external());
    if in_nodes {
        return Err("a node attribute keeps its tensor in external data; only initializers may (re-save the \
                    model with onnx.save_model(..., save_as_external_data=True) or with all data inside)"
            .into());
    }
    if !graph.initializer.iter().any(TensorProto::is_external) {
        return Ok(model.to_vec());
    }
    let mut error: Option<String> = None;
    let mut total = 0u64;
    let mut change = |t: &mut TensorProto| -> bool {
        if !t.is_external() || error.is_some() {
            return false;
        }
        match read_external(t, model_dir, max_bytes.saturating_sub(total)) {
            Ok(bytes) => {
                total += bytes.len() as u64;
                t.raw_data = bytes;
                t.external_data.clear();
                t.data_location = 0;
                true
            }
            Err(e) => {
                error = Some(format!("initializer '{}': {e}", t.name));
                false
            }
        }
    };
    let out = edit_model(model, ModelEdit { initializer: Some(&mut change), ..ModelEdit::default() })?;
    match error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

fn read_external(t: &TensorProto, dir: &std::path::Path, max_bytes: u64) -> Result<Vec<u8>, String> {
    use std::io::{Read, Seek, SeekFrom};
    let entry = |key: &str| t.external_data.iter().find(|e| e.key == key).map(|e| e.value.clone());
    let Some(location) = entry("location") else {
        return Err("external data without a 'location'".into());
    };
    let rel = std::path::Path::new(&location);
    let inside = rel.components().all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir));
    if location.is_empty() || !inside {
        return Err(format!(
            "external data location '{location}' must be a relative path inside the model's folder {}",
            dir.display()
        ));
    }
    let path = dir.join(rel);
    let parse = |key: &str| -> Result<Option<u64>, String> {
        entry(key)
            .map(|v| v.trim().parse::<u64>().map_err(|_| format!("external data '{key}' is not a number: '{v}'")))
            .transpose()
    };
    let offset = parse("offset")?.unwrap_or(0);
    let size =
        quantgraph_nodes::fsio::check_regular_file(&path, u64::MAX).map_err(|e| format!("{e}: {}", path.display()))?;
    let length = match parse("length")? {
        Some(l) => l,
        None => size.saturating_sub(offset),
    };
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(format!(
            "external data [{offset}, {offset}+{length}) lies outside {} ({size} bytes)",
            path.display()
        ));
    }
    if length > max_bytes {
        return Err(format!("external data of {length} bytes is over the model size limit: {}", path.display()));
    }
    let expected = (t.element_count() as u64).saturating_mul(dtype_size(t.data_type) as u64);
    if dtype_size(t.data_type) > 0 && expected != length {
        return Err(format!("expected {expected} bytes for its shape and type, the external data has {length}"));
    }
    let mut f = std::fs::File::open(&path).map_err(|e| format!("cannot read ({e}): {}", path.display()))?;
    f.seek(SeekFrom::Start(offset)).map_err(|e| format!("{e}: {}", path.display()))?;
    let mut buf = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    f.take(length).read_to_end(&mut buf).map_err(|e| format!("{e}: {}", path.display()))?;
    Ok(buf)
}

/// Decode a model, with a message a user can read when the bytes are not ONNX.
pub fn decode_model(bytes: &[u8]) -> Result<ModelProto, String> {
    let model = ModelProto::decode(bytes).map_err(|e| format!("not an ONNX model (protobuf decode failed: {e})"))?;
    if model.graph.is_none() {
        return Err("not an ONNX model (no graph in the file)".into());
    }
    if model.ir_version <= 0 || model.ir_version > 100 {
        return Err(format!("not an ONNX model (IR version {} is not one ONNX uses)", model.ir_version));
    }
    Ok(model)
}

// ---- wire-level editing ------------------------------------------------------------

/// One top-level field of a protobuf message: its tag, wire type, and raw encoding.
struct Field<'a> {
    number: u32,
    wire_type: u8,
    /// The whole field (key included), as in the input.
    raw: &'a [u8],
    /// For length-delimited fields, the payload.
    payload: &'a [u8],
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&b) = buf.get(*pos) else {
            return Err("truncated varint".into());
        };
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long".into())
}

fn fields(buf: &[u8]) -> Result<Vec<Field<'_>>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let key = read_varint(buf, &mut pos)?;
        let number = (key >> 3) as u32;
        let wire_type = (key & 7) as u8;
        let mut payload: &[u8] = &[];
        match wire_type {
            0 => {
                read_varint(buf, &mut pos)?;
            }
            1 => pos += 8,
            2 => {
                let len = read_varint(buf, &mut pos)? as usize;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len()).ok_or("truncated field")?;
                payload = &buf[pos..end];
                pos = end;
            }
            5 => pos += 4,
            other => return Err(format!("unsupported wire type {other}")),
        }
        if pos > buf.len() {
            return Err("truncated field".into());
        }
        out.push(Field { number, wire_type, raw: &buf[start..pos], payload });
    }
    Ok(out)
}

fn put_len_delimited(out: &mut Vec<u8>, number: u32, payload: &[u8]) {
    prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, out);
    prost::encoding::encode_varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// Changes to make to a model.
#[derive(Default)]
pub struct ModelEdit<'a> {
    /// Called for every initializer; return true if it was changed.
    pub initializer: Option<&'a mut dyn FnMut(&mut TensorProto) -> bool>,
    /// Extra graph outputs to append.
    pub extra_outputs: Vec<ValueInfoProto>,
    /// Initializers to append.
    pub extra_initializers: Vec<TensorProto>,
    /// Inputs to rename, by node name: input index → new tensor name.
    pub node_inputs: std::collections::BTreeMap<String, std::collections::BTreeMap<usize, String>>,
    /// Nodes to add; each is written right after the node that makes its first input (before
    /// the first node when a graph input or initializer does), so the graph stays sorted.
    pub extra_nodes: Vec<NodeProto>,
    /// Nodes to replace, by node name (the replacement is written in its place).
    pub replace_nodes: std::collections::BTreeMap<String, NodeProto>,
}

/// Rename some inputs of an encoded NodeProto, copying every other field byte for byte.
fn rename_inputs(node: &[u8], renames: &std::collections::BTreeMap<usize, String>) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(node.len() + 64);
    let mut index = 0;
    for f in fields(node)? {
        if f.number == 1 && f.wire_type == 2 {
            match renames.get(&index) {
                Some(name) => put_len_delimited(&mut out, 1, name.as_bytes()),
                None => out.extend_from_slice(f.raw),
            }
            index += 1;
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    Ok(out)
}

/// Apply `edit` to the model's bytes. Everything not edited is copied byte for byte.
pub fn edit_model(model: &[u8], mut edit: ModelEdit<'_>) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(model.len() + 1024);
    let mut saw_graph = false;
    for f in fields(model)? {
        if f.number == 7 && f.wire_type == 2 {
            saw_graph = true;
            let graph = edit_graph(f.payload, &mut edit)?;
            put_len_delimited(&mut out, 7, &graph);
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    if !saw_graph {
        return Err("the model has no graph".into());
    }
    Ok(out)
}

fn edit_graph(graph: &[u8], edit: &mut ModelEdit<'_>) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(graph.len() + 1024);
    let mut pending: Vec<&NodeProto> = edit.extra_nodes.iter().collect();
    let mut made: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut first_node = true;
    for f in fields(graph)? {
        if f.number == 1 && f.wire_type == 2 && !pending.is_empty() {
            if first_node {
                // Extra nodes that read what no node makes (graph inputs, initializers).
                let makers: std::collections::BTreeSet<String> = fields(graph)?
                    .into_iter()
                    .filter(|g| g.number == 1 && g.wire_type == 2)
                    .filter_map(|g| NodeProto::decode(g.payload).ok())
                    .flat_map(|n| n.output)
                    .collect();
                pending.retain(|n| {
                    let from_outside = n.input.first().is_none_or(|i| !makers.contains(i));
                    if from_outside {
                        put_len_delimited(&mut out, 1, &n.encode_to_vec());
                    }
                    !from_outside
                });
                first_node = false;
            }
            made.clear();
            made.extend(NodeProto::decode(f.payload).map_err(|e| format!("bad node: {e}"))?.output);
        }
        if f.number == 1 && f.wire_type == 2 && !edit.replace_nodes.is_empty() {
            let name = field_string(f.payload, 3)?;
            if let Some(node) = edit.replace_nodes.get(&name) {
                put_len_delimited(&mut out, 1, &node.encode_to_vec());
                flush_after(&mut out, &mut pending, &mut made);
                continue;
            }
        }
        if f.number == 1 && f.wire_type == 2 && !edit.node_inputs.is_empty() {
            let name = field_string(f.payload, 3)?;
            if let Some(renames) = edit.node_inputs.get(&name) {
                put_len_delimited(&mut out, 1, &rename_inputs(f.payload, renames)?);
                flush_after(&mut out, &mut pending, &mut made);
                continue;
            }
        }
        if f.number == 1 && f.wire_type == 2 && !made.is_empty() {
            out.extend_from_slice(f.raw);
            flush_after(&mut out, &mut pending, &mut made);
            continue;
        }
        match (f.number, f.wire_type, edit.initializer.as_mut()) {
            (5, 2, Some(change)) => {
                let mut t = TensorProto::decode(f.payload).map_err(|e| format!("bad initializer: {e}"))?;
                if change(&mut t) {
                    put_len_delimited(&mut out, 5, &t.encode_to_vec());
                } else {
                    out.extend_from_slice(f.raw);
                }
            }
            _ => out.extend_from_slice(f.raw),
        }
    }
    for n in pending {
        put_len_delimited(&mut out, 1, &n.encode_to_vec());
    }
    for t in &edit.extra_initializers {
        put_len_delimited(&mut out, 5, &t.encode_to_vec());
    }
    for o in &edit.extra_outputs {
        put_len_delimited(&mut out, 12, &o.encode_to_vec());
    }
    Ok(out)
}

/// Write the pending extra nodes that read what the node just written makes.
fn flush_after(out: &mut Vec<u8>, pending: &mut Vec<&NodeProto>, made: &mut std::collections::BTreeSet<String>) {
    pending.retain(|n| {
        let ready = n.input.first().is_some_and(|i| made.contains(i));
        if ready {
            put_len_delimited(out, 1, &n.encode_to_vec());
        }
        !ready
    });
    made.clear();
}

/// One node of a rebuilt graph: an original node (by its index among the graph's nodes, with
/// inputs and outputs renamed by name, everything else copied byte for byte) or a new one.
pub enum NodeOut {
    Original {
        index: usize,
        inputs: std::collections::BTreeMap<String, String>,
        outputs: std::collections::BTreeMap<String, String>,
    },
    New(NodeProto),
}

/// A graph rebuilt around its nodes: the node list replaced whole, initializers added and
/// removed, value infos of tensors that no longer exist dropped.
#[derive(Default)]
pub struct GraphRebuild {
    pub nodes: Vec<NodeOut>,
    pub extra_initializers: Vec<TensorProto>,
    pub removed_initializers: std::collections::BTreeSet<String>,
    pub dropped_value_info: std::collections::BTreeSet<String>,
    /// When set, the graph's inputs (other than initializers listed as inputs) are these.
    pub inputs: Option<Vec<ValueInfoProto>>,
    /// When set, the graph's outputs are these.
    pub outputs: Option<Vec<ValueInfoProto>>,
}

/// Rename inputs (field 1) and outputs (field 2) of an encoded NodeProto by name.
fn rename_tensors(
    node: &[u8],
    inputs: &std::collections::BTreeMap<String, String>,
    outputs: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(node.len() + 64);
    for f in fields(node)? {
        let map = match (f.number, f.wire_type) {
            (1, 2) => Some(inputs),
            (2, 2) => Some(outputs),
            _ => None,
        };
        match map.and_then(|m| m.get(String::from_utf8_lossy(f.payload).as_ref())) {
            Some(name) => put_len_delimited(&mut out, f.number, name.as_bytes()),
            None => out.extend_from_slice(f.raw),
        }
    }
    Ok(out)
}

/// The name of an encoded message whose name is field `number` (nodes: 3, initializers: 8,
/// value infos and graph inputs: 1).
fn field_string(msg: &[u8], number: u32) -> Result<String, String> {
    for f in fields(msg)? {
        if f.number == number && f.wire_type == 2 {
            return Ok(String::from_utf8_lossy(f.payload).into_owned());
        }
    }
    Ok(String::new())
}

/// Rebuild the model's graph as `plan` says. Every other field of the model and the graph is
/// copied byte for byte.
pub fn rebuild_graph(model: &[u8], plan: GraphRebuild) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(model.len() + 4096);
    let mut saw_graph = false;
    for f in fields(model)? {
        if f.number == 7 && f.wire_type == 2 {
            saw_graph = true;
            put_len_delimited(&mut out, 7, &rebuild(f.payload, &plan)?);
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    if !saw_graph {
        return Err("the model has no graph".into());
    }
    Ok(out)
}

fn rebuild(graph: &[u8], plan: &GraphRebuild) -> Result<Vec<u8>, String> {
    let all = fields(graph)?;
    let initializers: std::collections::BTreeSet<String> = all
        .iter()
        .filter(|f| f.number == 5 && f.wire_type == 2)
        .map(|f| field_string(f.payload, 8))
        .collect::<Result<_, _>>()?;
    let originals: Vec<&[u8]> = all.iter().filter(|f| f.number == 1 && f.wire_type == 2).map(|f| f.payload).collect();
    let mut out = Vec::with_capacity(graph.len() + 4096);
    let mut wrote_nodes = false;
    let write_nodes = |out: &mut Vec<u8>| -> Result<(), String> {
        for n in &plan.nodes {
            match n {
                NodeOut::Original { index, inputs, outputs } => {
                    let raw = originals.get(*index).ok_or_else(|| format!("no node {index} in the graph"))?;
                    if inputs.is_empty() && outputs.is_empty() {
                        put_len_delimited(out, 1, raw);
                    } else {
                        put_len_delimited(out, 1, &rename_tensors(raw, inputs, outputs)?);
                    }
                }
                NodeOut::New(node) => put_len_delimited(out, 1, &node.encode_to_vec()),
            }
        }
        Ok(())
    };
    for f in &all {
        match (f.number, f.wire_type) {
            (1, 2) => {
                if !wrote_nodes {
                    write_nodes(&mut out)?;
                    wrote_nodes = true;
                }
            }
            (5, 2) if plan.removed_initializers.contains(&field_string(f.payload, 8)?) => {}
            // An initializer also listed as a graph input (older exporters): the input goes too.
            (11, 2) if plan.removed_initializers.contains(&field_string(f.payload, 1)?) => {}
            (13, 2) if plan.dropped_value_info.contains(&field_string(f.payload, 1)?) => {}
            (11, 2) if plan.inputs.is_some() && !initializers.contains(&field_string(f.payload, 1)?) => {}
            (12, 2) if plan.outputs.is_some() => {}
            _ => out.extend_from_slice(f.raw),
        }
    }
    if !wrote_nodes {
        write_nodes(&mut out)?;
    }
    for (number, list) in [(11, &plan.inputs), (12, &plan.outputs)] {
        for v in list.iter().flatten() {
            put_len_delimited(&mut out, number, &v.encode_to_vec());
        }
    }
    for t in &plan.extra_initializers {
        put_len_delimited(&mut out, 5, &t.encode_to_vec());
    }
    Ok(out)
}

/// Remove the nodes nothing reads (transitively: nodes whose outputs reach no graph output),
/// the initializers only they read and the value infos of the tensors they made. A graph
/// whose nodes carry subgraphs (If, Loop, Scan: their bodies may read outer tensors by name)
/// is returned unchanged.
pub fn prune_dead(model: &[u8]) -> Result<Vec<u8>, String> {
    let m = decode_model(model)?;
    let Some(g) = m.graph.as_ref() else { return Ok(model.to_vec()) };
    if g.node.iter().any(|n| n.attribute.iter().any(|a| a.r#type == 5 || a.r#type == 10)) {
        return Ok(model.to_vec());
    }
    let mut live: std::collections::BTreeSet<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    let mut keep = vec![false; g.node.len()];
    for (i, n) in g.node.iter().enumerate().rev() {
        if n.output.iter().any(|o| live.contains(o.as_str())) {
            keep[i] = true;
            live.extend(n.input.iter().filter(|x| !x.is_empty()).map(String::as_str));
        }
    }
    if keep.iter().all(|k| *k) {
        return Ok(model.to_vec());
    }
    let inputs: std::collections::BTreeSet<&str> = g.input.iter().map(|i| i.name.as_str()).collect();
    let removed_initializers = g
        .initializer
        .iter()
        .filter(|t| !live.contains(t.name.as_str()) && !inputs.contains(t.name.as_str()))
        .map(|t| t.name.clone())
        .collect();
    let dropped_value_info = g
        .node
        .iter()
        .zip(&keep)
        .filter(|(_, k)| !**k)
        .flat_map(|(n, _)| n.output.iter().cloned())
        .filter(|o| !live.contains(o.as_str()))
        .collect();
    let nodes = (0..g.node.len())
        .filter(|i| keep[*i])
        .map(|index| NodeOut::Original { index, inputs: Default::default(), outputs: Default::default() })
        .collect();
    rebuild_graph(model, GraphRebuild { nodes, removed_initializers, dropped_value_info, ..GraphRebuild::default() })
}

/// A graph output declaration for a float tensor of unknown shape.
pub fn float_output(name: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto { tensor_type: Some(TensorTypeProto { elem_type: FLOAT, shape: None }) }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tiny_model() -> Vec<u8> {
        let scale = TensorProto {
            dims: vec![],
            data_type: FLOAT,
            name: "s".into(),
            float_data: vec![0.5],
            ..Default::default()
        };
        let graph = GraphProto {
            name: "g".into(),
            node: vec![NodeProto {
                op_type: "Relu".into(),
                input: vec!["x".into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            initializer: vec![scale],
            input: vec![float_output("x")],
            output: vec![float_output("y")],
            value_info: vec![],
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![],
            producer_name: "t".into(),
            producer_version: String::new(),
            graph: Some(graph),
            metadata_props: Vec::new(),
        }
        .encode_to_vec()
    }

    #[test]
    fn an_empty_edit_copies_the_model_byte_for_byte() {
        let m = tiny_model();
        assert_eq!(edit_model(&m, ModelEdit::default()).unwrap(), m);
    }

    #[test]
    fn initializer_edits_and_extra_outputs_apply() {
        let m = tiny_model();
        let mut change = |t: &mut TensorProto| {
            t.set_floats(&[0.25]);
            true
        };
        let edited = edit_model(
            &m,
            ModelEdit {
                initializer: Some(&mut change),
                extra_outputs: vec![float_output("x")],
                ..ModelEdit::default()
            },
        )
        .unwrap();
        let g = decode_model(&edited).unwrap().graph.unwrap();
        assert_eq!(g.initializer[0].floats(), Some(vec![0.25]));
        assert_eq!(g.output.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), vec!["y", "x"]);
    }

    #[test]
    fn prune_dead_drops_unread_nodes_and_their_weights() {
        let mut m = ModelProto::decode(tiny_model().as_slice()).unwrap();
        let g = m.graph.as_mut().unwrap();
        // x → Add(x, s) → dead (read by nothing), and dead → Neg → deader.
        for (op, ins, out) in [("Add", vec!["x", "s"], "dead"), ("Neg", vec!["dead"], "deader")] {
            g.node.push(NodeProto {
                op_type: op.into(),
                name: out.into(),
                input: ins.into_iter().map(String::from).collect(),
                output: vec![out.into()],
                ..Default::default()
            });
        }
        g.value_info.push(float_output("dead"));
        let pruned = decode_model(&prune_dead(&m.encode_to_vec()).unwrap()).unwrap().graph.unwrap();
        assert_eq!(pruned.node.iter().map(|n| n.op_type.as_str()).collect::<Vec<_>>(), vec!["Relu"]);
        assert!(pruned.initializer.is_empty(), "'s' was read only by the dead Add");
        assert!(pruned.value_info.is_empty());
        // Nothing dead: the bytes are returned as they are.
        assert_eq!(prune_dead(&tiny_model()).unwrap(), tiny_model());
    }

    #[test]
    fn garbage_is_not_a_model() {
        assert!(decode_model(b"hello, this is not onnx").is_err());
        assert!(edit_model(&[0x3a, 0xff], ModelEdit::default()).is_err());
    }
}
