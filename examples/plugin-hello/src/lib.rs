//! # quantgraph-plugin-hello
//!
//! An example plugin crate, outside QuantGraph's own plugin list: it depends only on
//! `quantgraph-nodes` and exposes `register_nodes`. `hello.topk` computes top-k accuracy
//! from a Layer Probe's kept model outputs and the dataset's labels.

use std::sync::Arc;

use quantgraph_nodes::value::{Cell, Report, Table, TensorRole};
use quantgraph_nodes::{
    params, EvalContext, Inputs, NodeError, NodeRegistry, Outputs, PortSpec, PortType, TypedKind, Value,
};

/// Register this plugin's node kinds.
pub fn register_nodes(registry: &mut NodeRegistry) -> quantgraph_nodes::Result<()> {
    registry.register::<TopK>()
}

/// Activations → Table: the share of samples whose label is among the k highest scores.
#[derive(Default)]
pub struct TopK;

/// Top-k correct count of `scores` (`rows × classes`, row-major) against `labels`.
pub fn topk_correct(scores: &[f32], classes: usize, labels: &[u32], k: usize) -> usize {
    if classes == 0 {
        return 0;
    }
    scores
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(row, label)| {
            let Some(own) = row.get(**label as usize) else { return false };
            // Rank of the label's score: how many classes score strictly higher.
            row.iter().filter(|s| *s > own).count() < k
        })
        .count()
}

params! {
    /// Top-k's params: k.
    pub struct TopKParams {
        pub k: usize = int("k", 5, 1, 1000),
    }
}

impl TypedKind for TopK {
    type Params = TopKParams;
    fn id(&self) -> &'static str {
        "hello.topk"
    }
    fn display_name(&self) -> &'static str {
        "Top-k Accuracy"
    }
    fn category(&self) -> &'static str {
        "Analysis"
    }
    fn doc(&self) -> &'static str {
        "Top-k accuracy of a probed classifier: the share of samples whose label is among the k \
         highest-scoring classes (ties count for the label). An example of a plugin crate \
         (examples/plugin-hello)."
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("activations", PortType::Activations)]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("report", PortType::Table)]
    }
    fn evaluate(&self, _ctx: &EvalContext, inputs: &Inputs, params: &TopKParams) -> Result<Outputs, NodeError> {
        let k = params.k;
        let acts = inputs.activations("activations")?;
        let Some(labels) = acts.predictions.as_ref().and_then(|p| p.labels.clone()) else {
            return Err(NodeError::input("activations", "expected a probe of a labelled dataset, found no labels"));
        };
        let Some(out) = acts.tensors.values().find(|t| t.role == TensorRole::Output) else {
            return Err(NodeError::input("activations", "the probe captured no model output"));
        };
        let classes = out.tensor.item_len();
        if out.tensor.data.len() != classes * labels.len() {
            return Err(NodeError::input(
                "activations",
                format!(
                    "expected the model's scores for all {} samples, found {} values (the probe keeps outputs only \
                     when they are small enough)",
                    labels.len(),
                    out.tensor.data.len()
                ),
            ));
        }
        let correct = topk_correct(&out.tensor.data, classes, &labels, k);
        let n = labels.len().max(1);
        let mut report = Report {
            headline: Some(format!(
                "top-{k} accuracy {:.2} % ({correct} of {})",
                100.0 * correct as f64 / n as f64,
                labels.len()
            )),
            ..Report::default()
        };
        report.summary.insert(format!("top{k}_accuracy"), correct as f64 / n as f64);
        report.tables.push(Table {
            name: "topk".into(),
            columns: vec!["k".into(), "correct".into(), "samples".into()],
            rows: vec![vec![Cell::Int(k as i64), Cell::Int(correct as i64), Cell::Int(labels.len() as i64)]],
        });
        Ok(quantgraph_nodes::kind::single("report", Value::Table(Arc::new(report))))
    }
}
