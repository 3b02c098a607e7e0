//! `onnx.qdq_override`: edit scales and zero-points of Q/DQ pairs.

use std::collections::BTreeMap;
use std::sync::Arc;

use quantgraph_nodes::value::{qrange, Cell, ModelValue, OverrideChange, QdqEntry, Report, Table};
use quantgraph_nodes::{params, EvalContext, Inputs, NodeError, Outputs, PortSpec, PortType, TypedKind, Value};

use crate::model::model_value;
use crate::proto::{self, ModelEdit, TensorProto};

/// Model → Model with chosen Q/DQ scales and zero-points changed.
#[derive(Default)]
pub struct QdqOverride;

/// Which nodes of a Q/DQ pair an edit changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Both (they share their scale and zero-point initializers).
    Pair,
    /// Only the QuantizeLinear: it gets its own copy of the parameters.
    Quantize,
    /// Only the DequantizeLinear(s).
    Dequantize,
}

/// One requested edit.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    pub tensor: String,
    /// New scale; `None` keeps it.
    pub scale: Option<f32>,
    /// Multiply the scale by this (when no new scale is given).
    pub factor: Option<f64>,
    pub zero_point: Option<i32>,
    /// The one channel of a per-axis pair to change; `None`: every channel.
    pub channel: Option<usize>,
    pub target: Target,
}

params! {
    /// One row of the `edits` list param, as stored in the graph file.
    pub struct EditRow {
        pub tensor: String = tensor_name("Tensor", "model", false),
        pub scale: f64 = float("Scale (0: keep)", 0.0, 0.0, 1e9).with_step(1e-5, true),
        pub factor: f64 = float("Scale × factor (0: off)", 0.0, 0.0, 1e6).with_step(0.01, true),
        pub zero_point: String = text("Zero-point (empty: keep)", ""),
        pub channel: String = text("Channel (empty: all)", ""),
        pub apply_to: String = choice("Apply to", "pair", &["pair", "Q only", "DQ only"]),
    }
}

params! {
    /// The QDQ Override's params.
    pub struct OverrideParams {
        pub edits: Vec<EditRow> = list("Per-tensor edits", EditRow::specs()),
        pub rule_pattern: String = text("Rule: tensor name pattern", "").with_doc(
            "A regular expression over the float tensor names; empty matches all (when an op type is given).",
        ),
        pub rule_op_type: String = text("Rule: consumer op type", "")
            .with_doc("Only tensors feeding this op type (e.g. Conv, Gemm, Add)."),
        pub rule_factor: f64 = float("Rule: scale factor", 1.0, 1e-6, 1e6).with_step(0.01, true),
    }
}

/// The `edits` rows as edits: 0 and empty mean "keep"; text fields parsed.
fn edits(rows: &[EditRow]) -> Result<Vec<Edit>, NodeError> {
    let mut out = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let tensor = row.tensor.clone();
        if tensor.is_empty() {
            return Err(NodeError::param("edits", format!("edit {}: choose a tensor", i + 1)));
        }
        let scale = (row.scale != 0.0).then_some(row.scale as f32);
        let zero_point = match row.zero_point.trim() {
            "" => None,
            z => Some(z.parse::<i32>().map_err(|_| {
                NodeError::param(
                    "edits",
                    format!("tensor '{tensor}': zero-point must be an integer, found '{}'", row.zero_point),
                )
            })?),
        };
        let factor = (row.factor != 0.0).then_some(row.factor);
        let channel = match row.channel.trim() {
            "" | "all" => None,
            c => Some(c.parse::<usize>().map_err(|_| {
                NodeError::param(
                    "edits",
                    format!(
                        "tensor '{tensor}': channel must be a channel number or empty for all, found '{}'",
                        row.channel
                    ),
                )
            })?),
        };
        let target = match row.apply_to.as_str() {
            "Q only" => Target::Quantize,
            "DQ only" => Target::Dequantize,
            _ => Target::Pair,
        };
        out.push(Edit { tensor, scale, factor, zero_point, channel, target });
    }
    Ok(out)
}

/// Edits arriving on the `edits` input: the report's `edits` table with columns `tensor`,
/// `scale` and `zero_point` (and optionally `channel`); any other column is an error, so a
/// misspelt field is never ignored.
fn wired_edits(report: &Report) -> Result<Vec<Edit>, NodeError> {
    let Some(t) = report.table("edits") else {
        return Err(NodeError::input(
            "edits",
            "expected a report with an 'edits' table (tensor, scale, zero_point), e.g. from a Scale Search",
        ));
    };
    if let Some(c) = t.columns.iter().find(|c| !matches!(c.as_str(), "tensor" | "scale" | "zero_point" | "channel")) {
        return Err(NodeError::input(
            "edits",
            format!("unknown column '{c}' in the edits table (expected tensor, scale, zero_point, channel)"),
        ));
    }
    let col = |name: &str| t.column(name);
    let Some(tc) = col("tensor") else {
        return Err(NodeError::input("edits", "the edits table has no 'tensor' column"));
    };
    let mut out = Vec::new();
    for (i, row) in t.rows.iter().enumerate() {
        let num = |name: &str| col(name).and_then(|c| row.get(c)).and_then(Cell::as_f64);
        let tensor = row.get(tc).map(ToString::to_string).unwrap_or_default();
        if tensor.is_empty() {
            return Err(NodeError::input("edits", format!("row {}: no tensor", i + 1)));
        }
        let zero_point = match num("zero_point") {
            Some(z) if z.fract() != 0.0 || !z.is_finite() => {
                return Err(NodeError::input("edits", format!("tensor '{tensor}': zero-point {z} is not an integer")))
            }
            z => z.map(|z| z as i32),
        };
        let channel = match num("channel") {
            Some(c) if c.fract() != 0.0 || !c.is_finite() || c < 0.0 => {
                return Err(NodeError::input(
                    "edits",
                    format!("tensor '{tensor}': channel {c} is not a channel number"),
                ))
            }
            c => c.map(|c| c as usize),
        };
        let scale = match num("scale") {
            Some(s) if !(s.is_finite() && s > 0.0) => {
                return Err(NodeError::input("edits", format!("tensor '{tensor}': scale must be positive, found {s}")))
            }
            s => s.map(|s| s as f32),
        };
        out.push(Edit { tensor, scale, factor: None, zero_point, channel, target: Target::Pair });
    }
    Ok(out)
}

/// An edit of one node only: it gets its own copies of the scale / zero-point.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitEdit {
    pub node: String,
    pub scale_name: String,
    pub zero_point_name: String,
    pub scales: Option<Vec<f32>>,
    pub zero_points: Option<Vec<i32>>,
}

/// New values per initializer name, with the record of what changed.
#[derive(Default)]
pub struct Plan {
    pub scales: BTreeMap<String, Vec<f32>>,
    pub zero_points: BTreeMap<String, Vec<i32>>,
    pub split: Vec<SplitEdit>,
    pub changes: Vec<OverrideChange>,
}

/// The channels of `e` an edit changes (all, or the one it names), checked.
fn channels(edit: &Edit, e: &QdqEntry, count: usize) -> Result<std::ops::Range<usize>, NodeError> {
    match edit.channel {
        None => Ok(0..count),
        Some(c) if c < count => Ok(c..c + 1),
        Some(c) => Err(NodeError::param(
            "edits",
            format!(
                "tensor '{}': channel {c} does not exist; its {} has {count} channel(s){}",
                edit.tensor,
                e.op_type,
                e.axis.map(|a| format!(" along axis {a}")).unwrap_or_default()
            ),
        )),
    }
}

/// The edit's scales for every channel of `e` (a new value or a factor, for one channel or
/// all), checked: positive, finite, normal. `base` holds what earlier edits (or the rule) made
/// of them: edits apply in order, so a channel's own row after a whole-tensor factor keeps
/// the factor on the other channels.
fn checked_scales(edit: &Edit, e: &QdqEntry, base: Option<&Vec<f32>>) -> Result<Option<Vec<f32>>, NodeError> {
    if edit.scale.is_none() && edit.factor.is_none() {
        return Ok(None);
    }
    let mut out = match base {
        Some(b) => b.clone(),
        None if e.scales.is_empty() => vec![1.0],
        None => e.scales.clone(),
    };
    for c in channels(edit, e, out.len())? {
        let s = match (edit.scale, edit.factor) {
            (Some(s), _) => s,
            (None, Some(f)) => (f64::from(out[c]) * f) as f32,
            (None, None) => out[c],
        };
        if !(s.is_normal() && s > 0.0) {
            return Err(NodeError::param(
                "edits",
                format!("tensor '{}': scale must be positive and finite (a normal float32), found {s:e}", edit.tensor),
            ));
        }
        out[c] = s;
    }
    Ok(Some(out))
}

/// The edit's zero-points for every channel of `e`, checked against the quantized type
/// (on top of `base`, what earlier edits made of them).
fn checked_zero_points(edit: &Edit, e: &QdqEntry, base: Option<&Vec<i32>>) -> Result<Option<Vec<i32>>, NodeError> {
    let Some(z) = edit.zero_point else { return Ok(None) };
    let (qmin, qmax) = qrange(&e.dtype);
    if z < qmin || z > qmax {
        return Err(NodeError::param(
            "edits",
            format!("tensor '{}': zero-point must be in [{qmin}, {qmax}] for {}, found {z}", edit.tensor, e.dtype),
        ));
    }
    let mut out = match base {
        Some(b) => b.clone(),
        None if e.zero_points.is_empty() => vec![0],
        None => e.zero_points.clone(),
    };
    for c in channels(edit, e, out.len())? {
        out[c] = z;
    }
    Ok(Some(out))
}

/// Work out the initializer values for the edits and the bulk rule, validating each.
pub fn plan(
    qdq: &[QdqEntry],
    edits: &[Edit],
    rule: Option<(&regex::Regex, &str, f64)>,
    consumers: &BTreeMap<String, Vec<String>>,
) -> Result<Plan, NodeError> {
    let mut plan = Plan::default();
    // The first entry for each scale initializer (Q and DQ of a pair share it).
    let mut by_scale: BTreeMap<&str, &QdqEntry> = BTreeMap::new();
    for e in qdq {
        by_scale.entry(e.scale_name.as_str()).or_insert(e);
    }
    if let Some((pattern, op_type, factor)) = rule {
        if !(factor.is_finite() && factor > 0.0) {
            return Err(NodeError::param("rule_factor", format!("expected a positive number, found {factor}")));
        }
        for (scale_name, e) in &by_scale {
            let name_hit = pattern.as_str().is_empty() || pattern.is_match(&e.float_tensor);
            let op_hit = op_type.is_empty()
                || consumers.get(&e.float_tensor).is_some_and(|ops| ops.iter().any(|o| o == op_type))
                || qdq.iter().any(|q| {
                    q.scale_name == **scale_name
                        && consumers.get(&q.output).is_some_and(|ops| ops.iter().any(|o| o == op_type))
                });
            if name_hit && op_hit && !(pattern.as_str().is_empty() && op_type.is_empty()) {
                let new: Vec<f32> = e.scales.iter().map(|s| (f64::from(*s) * factor) as f32).collect();
                plan.scales.insert((*scale_name).to_owned(), new);
            }
        }
    }
    let mut edited: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for edit in edits {
        let matching: Vec<&&QdqEntry> = by_scale.values().filter(|e| e.float_tensor == edit.tensor).collect();
        if matching.is_empty() {
            // A pair that shares another tensor's scale initializer is edited through that one.
            if let Some(shared) = qdq.iter().find(|e| e.float_tensor == edit.tensor) {
                let owner = by_scale.get(shared.scale_name.as_str()).map_or("", |o| o.float_tensor.as_str());
                return Err(NodeError::param(
                    "edits",
                    format!(
                        "tensor '{}' shares its scale and zero point ('{}') with '{owner}': edit '{owner}' (it \
                         changes both)",
                        edit.tensor, shared.scale_name
                    ),
                ));
            }
            return Err(NodeError::param(
                "edits",
                format!(
                    "no Q/DQ pair quantizes tensor '{}' (expected a name from the model's Q/DQ table)",
                    edit.tensor
                ),
            ));
        }
        if edit.target != Target::Pair {
            let op = if edit.target == Target::Quantize { "QuantizeLinear" } else { "DequantizeLinear" };
            let nodes: Vec<&QdqEntry> =
                qdq.iter().filter(|e| e.float_tensor == edit.tensor && e.op_type == op).collect();
            if nodes.is_empty() {
                return Err(NodeError::param(
                    "edits",
                    format!("tensor '{}' has no {op} node to edit alone", edit.tensor),
                ));
            }
            for e in nodes {
                // One copy per node, on top of earlier edits of it (split or of the pair).
                let earlier = plan.split.iter().position(|x| x.node == e.node);
                let base_scales = earlier.and_then(|i| plan.split[i].scales.clone()).or_else(|| {
                    edited.contains(&e.scale_name).then(|| plan.scales.get(&e.scale_name).cloned()).flatten()
                });
                let base_zps = earlier
                    .and_then(|i| plan.split[i].zero_points.clone())
                    .or_else(|| plan.zero_points.get(&e.zero_point_name).cloned());
                let scales = checked_scales(edit, e, base_scales.as_ref())?;
                let zero_points = checked_zero_points(edit, e, base_zps.as_ref())?;
                for (field, old, new) in [
                    (
                        "scale",
                        e.scales.first().map(|v| f64::from(*v)),
                        scales.as_ref().and_then(|v| v.first()).map(|v| f64::from(*v)),
                    ),
                    (
                        "zero_point",
                        e.zero_points.first().map(|v| f64::from(*v)),
                        zero_points.as_ref().and_then(|v| v.first()).map(|v| f64::from(*v)),
                    ),
                ] {
                    if let (Some(original), Some(new)) = (old, new) {
                        plan.changes.push(OverrideChange {
                            tensor: e.float_tensor.clone(),
                            node: e.node.clone(),
                            field: field.into(),
                            original,
                            new,
                        });
                    }
                }
                match earlier {
                    Some(i) => {
                        let s = &mut plan.split[i];
                        if scales.is_some() {
                            s.scales = scales;
                        }
                        if zero_points.is_some() {
                            s.zero_points = zero_points;
                        }
                    }
                    None => plan.split.push(SplitEdit {
                        node: e.node.clone(),
                        scale_name: e.scale_name.clone(),
                        zero_point_name: e.zero_point_name.clone(),
                        scales,
                        zero_points,
                    }),
                }
            }
            continue;
        }
        for e in matching {
            // On top of earlier edits of this pair (not of the bulk rule, which an edit replaces).
            let base = edited.contains(&e.scale_name).then(|| plan.scales.get(&e.scale_name)).flatten();
            if let Some(scales) = checked_scales(edit, e, base)? {
                plan.scales.insert(e.scale_name.clone(), scales);
                edited.insert(e.scale_name.clone());
            }
            if let Some(zero_points) = checked_zero_points(edit, e, plan.zero_points.get(&e.zero_point_name))? {
                if e.zero_point_name.is_empty() {
                    return Err(NodeError::param(
                        "edits",
                        format!("tensor '{}': its Q/DQ pair has no zero-point input to edit", edit.tensor),
                    ));
                }
                plan.zero_points.insert(e.zero_point_name.clone(), zero_points);
            }
        }
    }
    for (name, new) in &plan.scales {
        if let Some(e) = by_scale.get(name.as_str()) {
            for (i, (old, new)) in e.scales.iter().zip(new).enumerate() {
                if old != new {
                    plan.changes.push(OverrideChange {
                        tensor: e.float_tensor.clone(),
                        node: e.node.clone(),
                        field: if e.scales.len() > 1 { format!("scale[{i}]") } else { "scale".into() },
                        original: f64::from(*old),
                        new: f64::from(*new),
                    });
                }
            }
        }
    }
    for (name, new) in &plan.zero_points {
        if let Some(e) = qdq.iter().find(|e| &e.zero_point_name == name) {
            for (i, (old, new)) in e.zero_points.iter().zip(new).enumerate() {
                if old != new {
                    plan.changes.push(OverrideChange {
                        tensor: e.float_tensor.clone(),
                        node: e.node.clone(),
                        field: if e.zero_points.len() > 1 { format!("zero_point[{i}]") } else { "zero_point".into() },
                        original: f64::from(*old),
                        new: f64::from(*new),
                    });
                }
            }
        }
    }
    Ok(plan)
}

/// Rebuild the model bytes with the plan's values. The original bytes are not touched.
pub fn apply(bytes: &[u8], plan: &Plan) -> Result<Vec<u8>, String> {
    let mut change = |t: &mut TensorProto| {
        if let Some(s) = plan.scales.get(&t.name) {
            if t.element_count() != s.len() {
                return false;
            }
            t.set_floats(s);
            return true;
        }
        if let Some(z) = plan.zero_points.get(&t.name) {
            if t.element_count() != z.len() {
                return false;
            }
            t.set_ints(z);
            return true;
        }
        false
    };
    // Nodes edited alone get their own copies of the parameters.
    let mut extra_initializers = Vec::new();
    let mut node_inputs: BTreeMap<String, BTreeMap<usize, String>> = BTreeMap::new();
    if !plan.split.is_empty() {
        let model = proto::decode_model(bytes)?;
        let inits: BTreeMap<String, TensorProto> =
            model.graph.map(|g| g.initializer.into_iter().map(|t| (t.name.clone(), t)).collect()).unwrap_or_default();
        for s in &plan.split {
            let mut renames = BTreeMap::new();
            // The node's own copy of an initializer, named after the node.
            let copy = |name: &str, what: &str| -> Result<TensorProto, String> {
                let mut t = inits.get(name).cloned().ok_or_else(|| format!("{what} '{name}' is not an initializer"))?;
                t.name = format!("{name}__{}", s.node);
                Ok(t)
            };
            if let Some(values) = &s.scales {
                let mut t = copy(&s.scale_name, "scale")?;
                t.set_floats(values);
                renames.insert(1, t.name.clone());
                extra_initializers.push(t);
            }
            if let Some(values) = &s.zero_points {
                let mut t = copy(&s.zero_point_name, "zero-point")?;
                t.set_ints(values);
                renames.insert(2, t.name.clone());
                extra_initializers.push(t);
            }
            node_inputs.insert(s.node.clone(), renames);
        }
    }
    proto::edit_model(
        bytes,
        ModelEdit {
            initializer: Some(&mut change),
            extra_outputs: Vec::new(),
            extra_initializers,
            node_inputs,
            extra_nodes: Vec::new(),
            replace_nodes: BTreeMap::new(),
        },
    )
}

fn changes_table(changes: &[OverrideChange]) -> Table {
    Table {
        name: "changes".into(),
        columns: vec!["tensor".into(), "node".into(), "field".into(), "original".into(), "new".into(), "ratio".into()],
        rows: changes
            .iter()
            .map(|c| {
                vec![
                    Cell::Text(c.tensor.clone()),
                    Cell::Text(c.node.clone()),
                    Cell::Text(c.field.clone()),
                    Cell::Num(c.original),
                    Cell::Num(c.new),
                    Cell::Num(if c.original != 0.0 { c.new / c.original } else { f64::NAN }),
                ]
            })
            .collect(),
    }
}

impl TypedKind for QdqOverride {
    type Params = OverrideParams;
    fn id(&self) -> &'static str {
        "onnx.qdq_override"
    }
    fn display_name(&self) -> &'static str {
        "QDQ Override"
    }
    fn category(&self) -> &'static str {
        "Model"
    }
    fn doc(&self) -> &'static str {
        "Changes the scale and/or zero-point of chosen Q/DQ pairs of a QDQ model (or of the \
         scales and zero points a QOperator model's QLinearConv/QLinearAdd/QGemm/… ops take as \
         inputs), per tensor: a new scale or a factor, for every channel of a per-channel pair or \
         for one; both \
         nodes of the pair together (they share their parameters), or only the Quantize or only the \
         Dequantize node (which then gets its own copy), \
         and by a bulk rule: multiply the scales of every tensor whose name matches a pattern \
         and/or that feeds an op type by a factor. Scales must be positive and finite, zero-points \
         inside the quantized type's range, and per-axis shapes are kept. The model's bytes are \
         rebuilt and run by a fresh ONNX Runtime session; the original file is never modified. \
         Output `changes` lists every changed value beside the original."
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("model", PortType::Model), PortSpec::optional("edits", PortType::Table)]
    }
    fn tensor_edits(&self) -> Option<quantgraph_nodes::kind::TensorEdits> {
        Some(quantgraph_nodes::kind::TensorEdits { param: "edits", model_input: "model", model_output: "model" })
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("model", PortType::Model), PortSpec::new("changes", PortType::Table)]
    }
    fn evaluate(&self, ctx: &EvalContext, inputs: &Inputs, params: &OverrideParams) -> Result<Outputs, NodeError> {
        let model = inputs.model("model")?;
        if model.info.qdq.is_empty() {
            return Err(NodeError::input(
                "model",
                format!(
                    "expected a QDQ model, found one with no QuantizeLinear/DequantizeLinear nodes: {}",
                    model.path
                ),
            ));
        }
        // Edits from a wire (a Scale Search) first; the node's own edits after, so they win
        // (field by field: an own edit of the scale alone keeps a wired zero-point).
        let mut edits = match inputs.optional("edits") {
            Some(Value::Table(report)) => wired_edits(report)?,
            Some(_) => return Err(NodeError::input("edits", "expected a table of edits")),
            None => Vec::new(),
        };
        // Wired edits are checked here, so that their errors name the input, not the param.
        if !edits.is_empty() {
            plan(&model.info.qdq, &edits, None, &BTreeMap::new()).map_err(|e| match e {
                NodeError::Param { message, .. } => NodeError::input("edits", message),
                other => other,
            })?;
        }
        edits.extend(self::edits(&params.edits)?);
        let pattern_text = params.rule_pattern.clone();
        let pattern = regex::Regex::new(&pattern_text)
            .map_err(|e| NodeError::param("rule_pattern", format!("not a valid regular expression: {e}")))?;
        let op_type = params.rule_op_type.clone();
        let factor = params.rule_factor;
        let rule = (factor != 1.0 && (!pattern_text.is_empty() || !op_type.is_empty())).then_some((
            &pattern,
            op_type.as_str(),
            factor,
        ));
        let mut consumers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for op in &model.info.nodes {
            for i in &op.inputs {
                consumers.entry(i.clone()).or_default().push(op.op_type.clone());
            }
        }
        let plan = plan(&model.info.qdq, &edits, rule, &consumers)?;
        let out_model = if plan.changes.is_empty() {
            model.clone()
        } else {
            ctx.progress(0.3, "rebuilding the model");
            let bytes = apply(&model.bytes, &plan)
                .map_err(|e| NodeError::failed(format!("rebuilding the model failed: {e}")))?;
            ctx.progress(0.6, "checking the new model with ONNX Runtime");
            let mut value = model_value(&format!("{} (overridden)", model.name), &model.path, bytes, model.threads)?;
            value.changes = model.changes.iter().cloned().chain(plan.changes.iter().cloned()).collect();
            Arc::new(value)
        };
        let changes = Report {
            headline: Some(format!("{} values changed", plan.changes.len())),
            tables: vec![changes_table(&plan.changes)],
            ..Report::default()
        };
        let mut out = Outputs::new();
        out.insert("model".into(), Value::Model(out_model));
        out.insert("changes".into(), Value::Table(Arc::new(changes)));
        Ok(out)
    }
}

/// Write a model value's bytes to a file, atomically (an interrupted export leaves the
/// old file as it was).
pub fn export(model: &ModelValue, path: &std::path::Path) -> std::io::Result<()> {
    quantgraph_nodes::fsio::write_atomic(path, model.bytes.as_ref())
}
