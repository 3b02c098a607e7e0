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
pub const INT32: i32 = 6;

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

    /// Values as i32 (int8/uint8/int32 tensors).
    pub fn ints(&self) -> Option<Vec<i32>> {
        match self.data_type {
            UINT8 if !self.raw_data.is_empty() => Some(self.raw_data.iter().map(|b| i32::from(*b)).collect()),
            INT8 if !self.raw_data.is_empty() => Some(self.raw_data.iter().map(|b| i32::from(*b as i8)).collect()),
            INT32 if !self.raw_data.is_empty() => {
                Some(self.raw_data.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            }
            UINT8 | INT8 | INT32 => Some(self.int32_data.clone()),
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

    /// Replace the values of an int8/uint8 tensor, keeping its storage style.
    pub fn set_ints(&mut self, values: &[i32]) {
        if !self.raw_data.is_empty() || self.int32_data.is_empty() {
            self.raw_data = values.iter().map(|v| *v as u8).collect();
            self.int32_data.clear();
        } else {
            self.int32_data = values.to_vec();
        }
    }
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

/// The name (field 3) of an encoded NodeProto.
fn node_name(node: &[u8]) -> Result<String, String> {
    for f in fields(node)? {
        if f.number == 3 && f.wire_type == 2 {
            return Ok(String::from_utf8_lossy(f.payload).into_owned());
        }
    }
    Ok(String::new())
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
    for f in fields(graph)? {
        if f.number == 1 && f.wire_type == 2 && !edit.node_inputs.is_empty() {
            let name = node_name(f.payload)?;
            if let Some(renames) = edit.node_inputs.get(&name) {
                put_len_delimited(&mut out, 1, &rename_inputs(f.payload, renames)?);
                continue;
            }
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
    for t in &edit.extra_initializers {
        put_len_delimited(&mut out, 5, &t.encode_to_vec());
    }
    for o in &edit.extra_outputs {
        put_len_delimited(&mut out, 12, &o.encode_to_vec());
    }
    Ok(out)
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
    fn garbage_is_not_a_model() {
        assert!(decode_model(b"hello, this is not onnx").is_err());
        assert!(edit_model(&[0x3a, 0xff], ModelEdit::default()).is_err());
    }
}
