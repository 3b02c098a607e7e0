//! Models and what an inspector reads from them: ops, tensors, initializers, the Q/DQ table.

use super::*;

/// Shape and type of a model input/output or initializer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: String,
    /// Each dimension: a size, or a symbolic name ("N") for a dynamic one.
    pub dims: Vec<String>,
}

/// One operator of an ONNX graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpInfo {
    pub name: String,
    pub op_type: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// An initializer (weight) of an ONNX graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitializerInfo {
    pub name: String,
    pub dtype: String,
    pub dims: Vec<i64>,
    pub size_bytes: usize,
}

/// One QuantizeLinear or DequantizeLinear node and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QdqEntry {
    /// Node name.
    pub node: String,
    /// `QuantizeLinear` or `DequantizeLinear`.
    pub op_type: String,
    /// The node's data input (float for Q, quantized for DQ).
    pub input: String,
    /// The node's output.
    pub output: String,
    /// Name of the scale tensor (initializer).
    pub scale_name: String,
    pub zero_point_name: String,
    pub scales: Vec<f32>,
    pub zero_points: Vec<i32>,
    /// `int8`, `uint8`, ...
    pub dtype: String,
    /// Quantization axis for per-axis parameters.
    pub axis: Option<i64>,
    /// The float tensor this pair quantizes (the Q input, or for a weight DQ the
    /// original weight name without `_quantized`).
    pub float_tensor: String,
    /// True when the quantized data is an initializer (a weight).
    pub is_weight: bool,
}

impl QdqEntry {
    /// `(qmin, qmax)` of the quantized type.
    pub fn qrange(&self) -> (i32, i32) {
        qrange(&self.dtype)
    }
    /// The representable real range `[(qmin−zp)·s, (qmax−zp)·s]` of the first channel.
    pub fn real_range(&self) -> Option<(f32, f32)> {
        self.channel_range(0)
    }
    /// The representable real range of channel `c` of a per-axis pair (the one range of a
    /// per-tensor pair for any `c`).
    pub fn channel_range(&self, c: usize) -> Option<(f32, f32)> {
        let (qmin, qmax) = self.qrange();
        let s = *self.scales.get(c).or(self.scales.first())?;
        let zp = *self.zero_points.get(c).or(self.zero_points.first()).unwrap_or(&0);
        Some(((qmin - zp) as f32 * s, (qmax - zp) as f32 * s))
    }
}

/// `(qmin, qmax)` of a quantized type name.
pub fn qrange(dtype: &str) -> (i32, i32) {
    match dtype {
        "uint8" => (0, 255),
        "int16" => (-32768, 32767),
        "uint16" => (0, 65535),
        "int4" => (-8, 7),
        "uint4" => (0, 15),
        "int32" => (i32::MIN, i32::MAX),
        _ => (-128, 127),
    }
}

/// What an inspector needs to know about an ONNX model.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelInfo {
    pub opset: i64,
    pub producer: String,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    pub nodes: Vec<OpInfo>,
    pub initializers: Vec<InitializerInfo>,
    pub param_count: u64,
    pub qdq: Vec<QdqEntry>,
    /// Type and shape of every tensor the model declares (inputs, outputs, value_info).
    #[serde(default)]
    pub tensors: BTreeMap<String, TensorInfo>,
}

impl ModelInfo {
    /// The Q/DQ parameter table: one row per QuantizeLinear/DequantizeLinear node and per
    /// quantized input, weight and output of a QOperator op; per-axis parameters as their
    /// count and range (every channel: [`ModelInfo::qdq_channel_table`]).
    pub fn qdq_table(&self) -> Table {
        let short = |op: &str| match op {
            "QuantizeLinear" => "Q".to_owned(),
            "DequantizeLinear" => "DQ".to_owned(),
            other => other.to_owned(),
        };
        Table {
            name: "qdq".into(),
            columns: [
                "float tensor",
                "op",
                "node",
                "dtype",
                "channels",
                "scale",
                "zero point",
                "axis",
                "range lo",
                "range hi",
                "weight",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
            rows: self
                .qdq
                .iter()
                .map(|e| {
                    let (lo, hi) = e.real_range().unwrap_or((f32::NAN, f32::NAN));
                    let (smin, smax) =
                        e.scales.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), s| (a.min(*s), b.max(*s)));
                    let (zmin, zmax) =
                        e.zero_points.iter().fold((i32::MAX, i32::MIN), |(a, b), z| (a.min(*z), b.max(*z)));
                    vec![
                        Cell::Text(e.float_tensor.clone()),
                        Cell::Text(short(&e.op_type)),
                        Cell::Text(e.node.clone()),
                        Cell::Text(e.dtype.clone()),
                        Cell::Int(e.scales.len() as i64),
                        if e.scales.len() == 1 {
                            Cell::Num(f64::from(e.scales[0]))
                        } else {
                            Cell::Text(format!("{smin:.4e} … {smax:.4e}"))
                        },
                        if e.zero_points.len() == 1 || zmin == zmax {
                            Cell::Int(i64::from(e.zero_points.first().copied().unwrap_or(0)))
                        } else {
                            Cell::Text(format!("{zmin} … {zmax}"))
                        },
                        Cell::Text(e.axis.map(|a| a.to_string()).unwrap_or_default()),
                        Cell::Num(f64::from(lo)),
                        Cell::Num(f64::from(hi)),
                        Cell::Text(if e.is_weight { "yes".into() } else { String::new() }),
                    ]
                })
                .collect(),
        }
    }

    /// Every channel of one per-axis Q/DQ entry: scale, zero point and representable range.
    pub fn qdq_channel_table(e: &QdqEntry) -> Table {
        let (qmin, qmax) = e.qrange();
        Table {
            name: format!("channels of {}", e.float_tensor),
            columns: ["channel", "scale", "zero point", "range lo", "range hi"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            rows: e
                .scales
                .iter()
                .enumerate()
                .map(|(c, s)| {
                    let z = e.zero_points.get(c).or(e.zero_points.first()).copied().unwrap_or(0);
                    vec![
                        Cell::Int(c as i64),
                        Cell::Num(f64::from(*s)),
                        Cell::Int(i64::from(z)),
                        Cell::Num(f64::from((qmin - z) as f32 * s)),
                        Cell::Num(f64::from((qmax - z) as f32 * s)),
                    ]
                })
                .collect(),
        }
    }
}

/// A change made by a QDQ override, shown beside the original.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverrideChange {
    pub tensor: String,
    pub node: String,
    pub field: String,
    pub original: f64,
    pub new: f64,
}

/// A loaded ONNX model: its bytes (what a session is made from) and its description.
#[derive(Clone, PartialEq)]
pub struct ModelValue {
    pub name: String,
    pub path: String,
    pub bytes: Arc<Vec<u8>>,
    pub info: Arc<ModelInfo>,
    /// Intra-op threads for sessions made from this model.
    pub threads: usize,
    /// Edits made by QDQ overrides upstream (empty for a model read from a file).
    pub changes: Vec<OverrideChange>,
}

impl fmt::Debug for ModelValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelValue")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("size_bytes", &self.bytes.len())
            .field("ops", &self.info.nodes.len())
            .field("qdq", &self.info.qdq.len())
            .field("changes", &self.changes)
            .finish()
    }
}
