//! Pairing and per-layer metrics on hand-made activations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use quantgraph_compare::pairing::{pair, RELU_REMOVED_BEFORE};
use quantgraph_compare::Comparator;
use quantgraph_nodes::value::{
    Activations, InitializerInfo, ModelInfo, OpInfo, Predictions, ProbedTensor, QdqEntry, Tensor, TensorRole,
    TensorStats, Value,
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
            digest: 0,
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
        pending: None,
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

/// Another exporter's names and op order: nothing pairs by name or position, so ops pair by
/// dataflow (the k-th Conv of A is not the k-th Conv of B), and what cannot be paired is
/// listed with why.
#[test]
fn tensors_pair_by_dataflow_when_names_and_order_differ() {
    let x = vec![1.0f32, 2.0, 3.0];
    // A: conv → relu → {main conv, shortcut conv} → add.
    let a = acts(
        vec![
            op("Conv", &["in", "w1"], &["conv_a"]),
            op("Relu", &["conv_a"], &["relu_a"]),
            op("Conv", &["relu_a", "w_main"], &["main_a"]),
            op("Conv", &["relu_a", "w_short"], &["short_a"]),
            op("Add", &["main_a", "short_a"], &["add_a"]),
            op("Sigmoid", &["add_a"], &["sig_a"]),
        ],
        vec![
            tensor("conv_a", x.clone(), None),
            tensor("relu_a", x.clone(), None),
            tensor("main_a", x.clone(), None),
            tensor("short_a", x.clone(), None),
            tensor("add_a", x.clone(), None),
            tensor("sig_a", x.clone(), None),
        ],
        vec![0, 1, 1],
    );
    let mut a = (*a).clone();
    let mut ma = (*a.model).clone();
    ma.initializers = vec![init("w1", &[4, 3, 3, 3]), init("w_main", &[4, 4, 3, 3]), init("w_short", &[4, 4, 1, 1])];
    a.model = Arc::new(ma);
    // B: unfolded BatchNorm, Q/DQ pairs, the shortcut listed first with its Add inputs
    // swapped, other names, and a Tanh where A has a Sigmoid.
    let b = acts(
        vec![
            op("Conv", &["in", "k1"], &["t1"]),
            op("BatchNormalization", &["t1", "g", "be", "mu", "var"], &["t1_bn"]),
            op("Relu", &["t1_bn"], &["t1_relu"]),
            op("QuantizeLinear", &["t1_relu", "s", "z"], &["t1_q"]),
            op("DequantizeLinear", &["t1_q", "s", "z"], &["t1_dq"]),
            op("Conv", &["t1_dq", "k_short"], &["s1"]),
            op("Conv", &["t1_dq", "k_main"], &["m1"]),
            op("Add", &["s1", "m1"], &["sum"]),
            op("Tanh", &["sum"], &["th"]),
        ],
        vec![
            tensor("t1", x.clone(), None),
            tensor("t1_relu", x.clone(), None),
            tensor("t1_dq", x.clone(), None),
            tensor("s1", x.clone(), None),
            tensor("m1", x.clone(), None),
            tensor("sum", x.clone(), None),
            tensor("th", x, None),
        ],
        vec![0, 1, 1],
    );
    let mut b = (*b).clone();
    let mut mb = (*b.model).clone();
    mb.initializers = ["g", "be", "mu", "var", "s", "z"].iter().map(|n| init(n, &[4])).collect();
    mb.initializers.extend([init("k1", &[4, 3, 3, 3]), init("k_main", &[4, 4, 3, 3]), init("k_short", &[4, 4, 1, 1])]);
    b.model = Arc::new(mb);
    let p = pair(&a, &b);
    let got: Vec<(&str, &str, Option<&str>, &str)> =
        p.pairs.iter().map(|x| (x.a.as_str(), x.b.as_str(), x.b_pre.as_deref(), x.how.as_str())).collect();
    assert_eq!(
        got,
        [
            ("relu_a", "t1_dq", Some("t1_relu"), "dataflow"),
            ("main_a", "m1", None, "dataflow"),
            ("short_a", "s1", None, "dataflow"),
            ("add_a", "sum", None, "dataflow"),
        ]
    );
    assert_eq!(p.unpaired_a_names(), ["sig_a"]);
    assert!(p.unpaired_a[0].reason.contains("no Sigmoid"), "{:?}", p.unpaired_a);
    assert_eq!(p.unpaired_b_names(), ["th"]);
}

/// Two Convs reading the same tensor with weights of the same shape cannot be told apart
/// by dataflow: both stay unpaired, with that reason, rather than being guessed.
#[test]
fn ambiguous_ops_stay_unpaired() {
    let x = vec![1.0f32, 2.0, 3.0];
    let model = |names: [&str; 2]| {
        let mut m = (*acts(
            vec![op("Conv", &["in", "w1"], &[names[0]]), op("Conv", &["in", "w2"], &[names[1]])],
            vec![tensor(names[0], x.clone(), None), tensor(names[1], x.clone(), None)],
            vec![0, 1, 1],
        ))
        .clone();
        let mut info = (*m.model).clone();
        info.initializers = vec![init("w1", &[4, 3, 3, 3]), init("w2", &[4, 3, 3, 3])];
        m.model = Arc::new(info);
        m
    };
    let p = pair(&model(["a1", "a2"]), &model(["b1", "b2"]));
    assert!(p.pairs.is_empty(), "{p:?}");
    assert_eq!(p.unpaired_a_names(), ["a1", "a2"]);
    assert!(p.unpaired_a.iter().all(|u| u.reason.contains("ambiguous")), "{:?}", p.unpaired_a);
}

/// A pair whose values are not the same quantity is rejected on the first batch, with the
/// reason; an NCHW/NHWC difference is undone, not rejected.
#[test]
fn verification_rejects_unrelated_values_and_undoes_channels_last() {
    use quantgraph_compare::pairing::{verify, Layout, Verdict};
    // A per sample [C=2, H=1, W=3]; B the same values channels-last [1, 3, 2].
    let a: Vec<f32> = vec![1.0, 2.0, 3.0, -4.0, 5.0, -6.0];
    let b: Vec<f32> = vec![1.0, -4.0, 2.0, 5.0, 3.0, -6.0];
    match verify(&[2, 1, 3], &a, &[1, 3, 2], &b) {
        Verdict::Verified { layout, cosine } => {
            assert_eq!(layout, Layout::BChannelsLast);
            assert!((cosine - 1.0).abs() < 1e-12);
        }
        v => panic!("{v:?}"),
    }
    assert_eq!(Layout::BChannelsLast.to_a(&[2, 1, 3], &b), a);
    let unrelated: Vec<f32> = vec![3.0, -1.0, -2.0, 2.0, 1.0, 4.0];
    match verify(&[2, 1, 3], &a, &[2, 1, 3], &unrelated) {
        Verdict::Rejected(why) => assert!(why.contains("failed verification"), "{why}"),
        v => panic!("{v:?}"),
    }
    assert!(matches!(verify(&[6], &a, &[5], &a[..5]), Verdict::Rejected(w) if w.contains("shapes differ")));
}

/// In the comparator, a rejected pair is not measured and not in the headline: it is in
/// the unpaired table with the reason.
#[test]
fn comparator_lists_rejected_pairs_instead_of_measuring_them() {
    let a = acts(
        vec![op("Conv", &["in"], &["c"]), op("Sigmoid", &["c"], &["s"])],
        vec![tensor("c", vec![1.0, 2.0, 3.0], None), tensor("s", vec![1.0, 2.0, 3.0], None)],
        vec![0, 1, 1],
    );
    let b = acts(
        vec![op("Conv", &["in"], &["c2"]), op("Sigmoid", &["c2"], &["s2"])],
        vec![tensor("c2", vec![1.1, 2.0, 2.9], None), tensor("s2", vec![-3.0, 2.0, -1.0], None)],
        vec![0, 1, 1],
    );
    let mut inputs = Inputs::default();
    inputs.0.insert("a".into(), Value::Activations(a));
    inputs.0.insert("b".into(), Value::Activations(b));
    let out = Comparator.evaluate(&EvalContext::detached(None), &inputs, &Params::new()).unwrap();
    let Some(Value::Table(r)) = out.get("report") else { panic!() };
    let t = r.table("per_layer").unwrap();
    let rows: Vec<String> = t.rows.iter().map(|row| row[0].to_string()).collect();
    assert_eq!(rows, ["c"]);
    let u = r.table("unpaired").unwrap();
    let s_row = u.rows.iter().find(|row| row[1].to_string() == "s").unwrap();
    assert!(s_row[2].to_string().contains("failed verification"), "{s_row:?}");
    let c_sqnr = t.rows[0][t.column("sqnr_db").unwrap()].as_f64().unwrap();
    assert_eq!(r.summary["min_sqnr_db"], c_sqnr, "the headline uses the verified pair only");
}

fn init(name: &str, dims: &[i64]) -> InitializerInfo {
    InitializerInfo { name: name.into(), dtype: "float".into(), dims: dims.to_vec(), size_bytes: 0 }
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

/// A pairs its Relu output; B has the same Conv and no Relu, and nothing in B's quantization
/// does the Relu's clipping: not the same quantity, so unpaired with the reason (comparing
/// post-Relu with pre-Relu values would pass a cosine check when most values are positive).
#[test]
fn an_activation_on_one_side_only_is_not_paired() {
    let x = vec![1.0f32, 2.0, -0.1];
    let a = acts(
        vec![op("Conv", &["in"], &["c"]), op("Relu", &["c"], &["r"])],
        vec![tensor("c", x.clone(), None), tensor("r", vec![1.0, 2.0, 0.0], None)],
        vec![0, 1, 1],
    );
    let b = acts(vec![op("Conv", &["in"], &["c2"])], vec![tensor("c2", x, None)], vec![0, 1, 1]);
    let p = pair(&a, &b);
    assert!(p.pairs.iter().all(|x| x.a != "r"), "{p:?}");
    let u = p.unpaired_a.iter().find(|u| u.tensor == "r").expect("r is unpaired");
    assert!(u.reason.contains("applies a Relu/Clip"), "{}", u.reason);
}
