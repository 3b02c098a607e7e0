//! Pairing and per-layer metrics on hand-made activations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use quantgraph_compare::pairing::{pair, RELU_REMOVED_BEFORE};
use quantgraph_compare::Comparator;
use quantgraph_nodes::value::{
    Activations, ModelInfo, OpInfo, Predictions, ProbedTensor, QdqEntry, Tensor, TensorRole, TensorStats, Value,
};
use quantgraph_nodes::{EvalContext, Inputs, NodeKind, Params};

fn op(op_type: &str, inputs: &[&str], outputs: &[&str]) -> OpInfo {
    OpInfo {
        name: outputs[0].into(),
        op_type: op_type.into(),
        inputs: inputs.iter().map(|s| (*s).into()).collect(),
        outputs: outputs.iter().map(|s| (*s).into()).collect(),
    }
}

fn tensor(name: &str, data: Vec<f32>, qdq: Option<QdqEntry>) -> (String, ProbedTensor) {
    let n = data.len();
    (
        name.into(),
        ProbedTensor {
            name: name.into(),
            role: TensorRole::Activation,
            tensor: Tensor::new(vec![1, n], data),
            stats: TensorStats::default(),
            qdq,
        },
    )
}

fn qdq(scale: f32) -> QdqEntry {
    QdqEntry {
        node: "q".into(),
        op_type: "DequantizeLinear".into(),
        input: "c_QuantizeLinear_Output".into(),
        output: "c_DequantizeLinear_Output".into(),
        scale_name: "c_scale".into(),
        zero_point_name: "c_zero_point".into(),
        scales: vec![scale],
        zero_points: vec![0],
        dtype: "uint8".into(),
        axis: None,
        float_tensor: "c".into(),
        is_weight: false,
    }
}

fn acts(model: Vec<OpInfo>, tensors: Vec<(String, ProbedTensor)>, top1: Vec<u32>) -> Arc<Activations> {
    Arc::new(Activations {
        model_name: "m".into(),
        model: Arc::new(ModelInfo { nodes: model, ..ModelInfo::default() }),
        tensors: tensors.into_iter().collect::<BTreeMap<_, _>>(),
        predictions: Some(Predictions {
            labels: Some(vec![0, 1, 1]),
            top1,
            class_names: vec!["a".into(), "b".into()],
            output_shape: vec![2],
        }),
        dataset: None,
        notes: Vec::new(),
        stream: None,
    })
}

/// An exporter that keeps the conv's output name: A has Conv → c → Relu → r; B has
/// Conv → c → Q/DQ (range from 0) and no Relu.
fn relu_removed_keeping_conv_name() -> (Arc<Activations>, Arc<Activations>) {
    let pre = vec![-1.0f32, 0.5, 1.0, -0.25, 2.0];
    let relu: Vec<f32> = pre.iter().map(|x| x.max(0.0)).collect();
    let post: Vec<f32> = relu.iter().map(|x| (x / 0.1).round() * 0.1).collect();
    let a = acts(
        vec![op("Conv", &["x"], &["c"]), op("Relu", &["c"], &["r"])],
        vec![tensor("c", pre.clone(), None), tensor("r", relu, None)],
        vec![0, 1, 0],
    );
    let b = acts(
        vec![
            op("Conv", &["x"], &["c"]),
            op("QuantizeLinear", &["c"], &["c_QuantizeLinear_Output"]),
            op("DequantizeLinear", &["c_QuantizeLinear_Output"], &["c_DequantizeLinear_Output"]),
        ],
        vec![tensor("c", pre, Some(qdq(0.1))), tensor("c_DequantizeLinear_Output", post, Some(qdq(0.1)))],
        vec![0, 1, 1],
    );
    (a, b)
}

#[test]
fn a_removed_relu_is_paired_with_the_float_relu_output() {
    let (a, b) = relu_removed_keeping_conv_name();
    let p = pair(&a, &b);
    assert_eq!(p.pairs.len(), 1, "{p:?}");
    let x = &p.pairs[0];
    assert_eq!((x.a.as_str(), x.b.as_str(), x.b_pre.as_deref()), ("r", "c_DequantizeLinear_Output", Some("c")));
    assert_eq!(x.how, RELU_REMOVED_BEFORE);
    assert_eq!(x.ort_a.as_deref(), Some("c"));
    assert!(p.unpaired_a.is_empty() && p.unpaired_b.is_empty(), "{p:?}");
}

#[test]
fn comparator_reports_corrected_and_ort_figures_and_classification() {
    let (a, b) = relu_removed_keeping_conv_name();
    let mut inputs = Inputs::default();
    inputs.0.insert("a".into(), Value::Activations(a));
    inputs.0.insert("b".into(), Value::Activations(b));
    let out = Comparator.evaluate(&EvalContext::detached(None), &inputs, &Params::new()).unwrap();
    let Some(Value::Table(r)) = out.get("report") else { panic!() };
    assert_eq!(r.summary["correct_a"], 2.0);
    assert_eq!(r.summary["correct_b"], 3.0);
    assert!((r.summary["agreement"] - 2.0 / 3.0).abs() < 1e-12);
    let flips = r.table("flips").unwrap();
    assert_eq!(flips.rows.len(), 1);
    let t = r.table("per_layer").unwrap();
    let row = &t.rows[0];
    let get = |c: &str| row[t.column(c).unwrap()].as_f64();
    // relu = [0, .5, 1, 0, 2]; post = [0, .5, 1, 0, 2] exactly on the 0.1 grid → exact.
    assert!(get("sqnr_db").unwrap() > 300.0);
    assert!(get("qdq_err_db").unwrap() > 300.0, "rounding only: exact here");
    // ORT's pairing: pre-Relu c vs post: the negative values count as error.
    let ort = get("ort_sqnr_db").unwrap();
    let norm2: f64 = [1.0f64, 0.25, 1.0, 0.0625, 4.0].iter().sum();
    let err2: f64 = [1.0f64, 0.0625].iter().sum();
    assert!((ort - 10.0 * (norm2 / err2).log10()).abs() < 1e-6, "{ort}");
    assert!((get("ort_qdq_err_db").unwrap() - ort).abs() < 1e-9);
    let confusion = r.table("confusion_b").unwrap();
    assert_eq!(confusion.rows[1][2].as_f64(), Some(2.0));
}

/// Another exporter's names: nothing pairs by name, so tensors pair by graph structure, and
/// what cannot be paired is listed.
#[test]
fn tensors_pair_by_graph_structure_when_names_differ() {
    let x = vec![1.0f32, 2.0, 3.0];
    let a = acts(
        vec![
            op("Conv", &["in"], &["conv_a"]),
            op("Relu", &["conv_a"], &["relu_a"]),
            op("Conv", &["relu_a"], &["conv2_a"]),
            op("Add", &["conv2_a", "relu_a"], &["add_a"]),
        ],
        vec![
            tensor("conv_a", x.clone(), None),
            tensor("relu_a", x.clone(), None),
            tensor("conv2_a", x.clone(), None),
            tensor("add_a", x.clone(), None),
        ],
        vec![0, 1, 1],
    );
    let b = acts(
        vec![
            op("Conv", &["in"], &["t1"]),
            op("QuantizeLinear", &["t1"], &["t1_q"]),
            op("DequantizeLinear", &["t1_q"], &["t1_dq"]),
            op("Conv", &["t1_dq"], &["t2"]),
            op("Mul", &["t2"], &["t3"]),
        ],
        vec![
            tensor("t1", x.clone(), None),
            tensor("t1_dq", x.clone(), None),
            tensor("t2", x.clone(), None),
            tensor("t3", x, None),
        ],
        vec![0, 1, 1],
    );
    let p = pair(&a, &b);
    let got: Vec<(&str, &str, &str)> = p.pairs.iter().map(|x| (x.a.as_str(), x.b.as_str(), x.how.as_str())).collect();
    assert_eq!(got, [("conv_a", "t1_dq", "graph structure (Conv #1)"), ("conv2_a", "t2", "graph structure (Conv #2)")]);
    assert_eq!(p.pairs[0].b_pre.as_deref(), Some("t1"));
    assert_eq!(p.unpaired_a, ["relu_a", "add_a"]);
    assert_eq!(p.unpaired_b, ["t3"]);
}

fn with_output(shape: Vec<usize>, top1: Vec<u32>) -> Arc<Activations> {
    let mut a = (*acts(vec![op("Add", &["x"], &["y"])], vec![tensor("y", vec![1.0, 2.0, 3.0], None)], top1)).clone();
    if let Some(p) = a.predictions.as_mut() {
        p.output_shape = shape;
    }
    Arc::new(a)
}

fn compare(a: Arc<Activations>, b: Arc<Activations>, mode: &str) -> quantgraph_nodes::value::Report {
    let mut inputs = Inputs::default();
    inputs.0.insert("a".into(), Value::Activations(a));
    inputs.0.insert("b".into(), Value::Activations(b));
    let mut p = Params::new();
    p.insert("classification".into(), mode.into());
    let out = Comparator.evaluate(&EvalContext::detached(None), &inputs, &p).unwrap();
    let Some(Value::Table(r)) = out.get("report") else { panic!() };
    (**r).clone()
}

/// A model whose output is not one score per class gets per-layer figures and a reason,
/// not an accuracy (and never a confusion matrix sized by the largest predicted index).
#[test]
fn non_classifier_outputs_get_no_accuracy_and_say_why() {
    // An image-to-image model: 3×32×32 values per sample; argmax indices up to 3071.
    let a = with_output(vec![3, 32, 32], vec![3071, 5, 0]);
    let b = with_output(vec![3, 32, 32], vec![3070, 5, 0]);
    assert_eq!(a.predictions.as_ref().unwrap().accuracy(), None, "a probe of it shows no top-1 either");
    let r = compare(a, b, "auto");
    assert!(!r.summary.contains_key("accuracy_a") && !r.summary.contains_key("agreement"), "{:?}", r.summary);
    let drill = r.tables.iter().find(|t| t.name == "sample_layers").unwrap();
    assert!(drill.rows.iter().all(|row| row[2].to_string() != "flip"), "argmax 'flips' of a non-classifier");
    assert!(r.notes.iter().any(|n| n.contains("output has shape [3, 32, 32] per sample, not [C]")), "{:?}", r.notes);
    assert!(r.tables.iter().all(|t| !t.name.starts_with("confusion")));
    assert!(r.tables.iter().any(|t| t.name == "per_layer" && !t.rows.is_empty()));

    // 100,000 scores per sample against a 2-class dataset: not this dataset's classifier.
    let wide = || with_output(vec![100_000], vec![99_999, 1, 1]);
    let r = compare(wide(), wide(), "auto");
    assert!(
        r.notes.iter().any(|n| n.contains("100000 values per sample but the dataset has 2 classes")),
        "{:?}",
        r.notes
    );
    // Forced: accuracy, but no 100k × 100k confusion matrix.
    let r = compare(wide(), wide(), "always");
    assert_eq!(r.summary.get("agreement"), Some(&1.0));
    assert!(r.tables.iter().all(|t| !t.name.starts_with("confusion")));
    assert!(r.notes.iter().any(|n| n.contains("confusion matrices skipped: 100000 classes")), "{:?}", r.notes);
    // Turned off.
    let r = compare(with_output(vec![2], vec![0, 1, 1]), with_output(vec![2], vec![0, 1, 1]), "never");
    assert!(!r.summary.contains_key("agreement"));
    // A real 2-class output: classification as before.
    let r = compare(with_output(vec![2], vec![0, 1, 1]), with_output(vec![2], vec![0, 1, 0]), "auto");
    assert_eq!(r.summary.get("accuracy_b"), Some(&(2.0 / 3.0)));
    assert!(r.tables.iter().any(|t| t.name == "confusion_a"));
}
