//! Suffix runs (#8): after an edit downstream of a cut tensor, the probe and the comparator's
//! streams run only the model's suffix from that tensor's kept values, and get what a full
//! run gets; model A, not edited, does not run at all (its paired tensors were kept). In its
//! own test binary: the budgets are process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use quantgraph_nodes::graph::Graph;
use quantgraph_nodes::value::Activations;
use quantgraph_nodes::{file, EvalContext, Scheduler, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cifar_dir() -> PathBuf {
    std::env::var_os("QUANTGRAPH_CIFAR10").map(PathBuf::from).unwrap_or_else(|| repo().join("../shared/data/cifar10"))
}

fn activations(e: &quantgraph_nodes::Evaluation, g: &Graph, label: &str) -> Arc<Activations> {
    match e.outputs(g.find_node(label).unwrap()).and_then(|o| o.get("activations")) {
        Some(Value::Activations(a)) => a.clone(),
        other => panic!("{label}: {other:?}"),
    }
}

/// Every batch of `names` from a stream, concatenated per name, and how the stream ran
/// (`Some("ran k of n ops, from …")` for a suffix run).
fn stream_all(a: &Activations, names: &[String]) -> (Vec<Vec<f32>>, Option<String>) {
    let ctx = EvalContext::detached(None);
    let mut it = a.stream.as_ref().unwrap().0.open(names, 32).unwrap();
    let mut out = vec![Vec::new(); names.len()];
    while let Some(b) = it.next_batch(&ctx).unwrap() {
        for (o, n) in out.iter_mut().zip(names) {
            o.extend_from_slice(&b.tensors[n].1);
        }
    }
    (out, it.describe())
}

/// Largest |x − y| relative to the largest |y|.
fn rel_diff(x: &[f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len());
    let scale = y.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max) / scale
}

#[test]
fn after_a_last_stage_edit_only_the_suffix_runs_and_gives_the_full_runs_values() {
    quantgraph_app::keep_cuts(quantgraph_app::EDIT_LOOP_CUT_BUDGET);
    quantgraph_app::clear_reuse_caches();
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let (mut g, _) = file::load(&repo().join("assets/graphs/default.qgraph"), &registry).unwrap();
    let ds = g.find_node("cifar10_test").unwrap();
    g.set_param(ds, "path", cifar_dir().to_string_lossy().as_ref().into()).unwrap();
    g.set_param(ds, "per_class", 0.into()).unwrap();
    g.set_param(ds, "count", 96.into()).unwrap();
    let compare = g.find_node("compare").unwrap();
    let s = Scheduler::new(registry.clone());
    s.evaluate(&g, &[compare]);
    let over = g.find_node("override").unwrap();
    g.set_param(over, "edits", serde_json::json!([{"tensor": "/stage3/Relu_1_output_0", "scale": 0.05}])).unwrap();
    let e = s.evaluate(&g, &[compare]);
    let b = activations(&e, &g, "probe_int8");
    let note = b.notes.iter().find(|n| n.starts_with("ran ")).unwrap_or_else(|| panic!("no suffix run: {:?}", b.notes));
    let words: Vec<&str> = note.split_whitespace().collect();
    let (k, m): (usize, usize) = (words[1].parse().unwrap(), words[3].parse().unwrap());
    assert!(k * 4 < m, "a last-stage edit runs a small suffix: {note}");
    let incremental = match e.outputs(compare).and_then(|o| o.get("report")) {
        Some(Value::Table(r)) => r.clone(),
        other => panic!("{other:?}"),
    };
    // Model A (FP32) did not run at all: its tensors of the pairs the edit reached were kept
    // by the first pass.
    let a_note = incremental.notes.iter().find(|n| n.starts_with("model A ")).unwrap_or_else(|| {
        panic!("no note on how model A ran: {:?}", incremental.notes);
    });
    assert!(a_note.ends_with("the model did not run"), "{a_note}");

    // Activation maps of a cut tensor of A (its kept values are all A needs): drawn.
    let maps = g.add_node(&registry, "compare.activation_maps", [0.0, 0.0]).unwrap();
    for (probe, port) in [("probe_fp32", "a"), ("probe_int8", "b")] {
        let p = g.find_node(probe).unwrap();
        g.connect(
            &registry,
            quantgraph_nodes::graph::PortRef::new(p, "activations"),
            quantgraph_nodes::graph::PortRef::new(maps, port),
        )
        .unwrap();
    }
    g.set_param(maps, "tensor", "/stage2/Relu_1_output_0".into()).unwrap();
    g.set_param(maps, "samples", "0, 1".into()).unwrap();
    let em = s.evaluate(&g, &[maps]);
    assert!(
        matches!(em.outputs(maps).and_then(|o| o.get("maps")), Some(Value::Plot(_))),
        "{:?}",
        em.outcomes.get(&maps)
    );
    g.remove_node(maps);

    // The edited tensor and the logits, streamed from the suffix and then from a full run.
    let names: Vec<String> = ["/stage3/Relu_1_output_0_DequantizeLinear_Output", "logits"]
        .iter()
        .map(|t| (*t).to_owned())
        .filter(|t| b.tensors.contains_key(t))
        .collect();
    assert_eq!(names.len(), 2, "{:?}", b.tensors.keys().collect::<Vec<_>>());
    let (suffix, how) = stream_all(&b, &names);
    let how = how.expect("the stream ran the whole model, not a suffix");
    assert!(how.starts_with("ran ") && how.contains("from '"), "{how}");
    quantgraph_app::keep_cuts(0);
    let (full, how) = stream_all(&b, &names);
    assert_eq!(how, None, "without kept cuts the stream runs the whole model");
    for ((n, x), y) in names.iter().zip(&suffix).zip(&full) {
        let d = rel_diff(x, y);
        assert!(d <= 1e-6, "{n}: suffix and full runs differ by {d:e} (relative)");
    }

    // The whole report equals a fresh evaluation without cuts or reuse.
    quantgraph_app::clear_reuse_caches();
    let fresh_e = Scheduler::new(registry).evaluate(&g, &[compare]);
    let Some(Value::Table(fresh)) = fresh_e.outputs(compare).and_then(|o| o.get("report")).cloned() else { panic!() };
    assert!(!activations(&fresh_e, &g, "probe_int8").notes.iter().any(|n| n.starts_with("ran ")));
    let (t1, t2) = (incremental.table("per_layer").unwrap(), fresh.table("per_layer").unwrap());
    assert_eq!(t1.rows.len(), t2.rows.len());
    for (r1, r2) in t1.rows.iter().zip(&t2.rows) {
        for ((c1, c2), col) in r1.iter().zip(r2).zip(&t1.columns) {
            match (c1.as_f64(), c2.as_f64()) {
                (Some(x), Some(y)) if col.ends_with("_db") => assert!((x - y).abs() <= 1e-4, "{col}: {r1:?} vs {r2:?}"),
                (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-5 * y.abs().max(1e-12), "{col}: {r1:?} vs {r2:?}"),
                _ => assert_eq!(c1.to_string(), c2.to_string()),
            }
        }
    }
    for (k, v) in &fresh.summary {
        let tol = if k.ends_with("_db") { 1e-4 } else { 1e-9 };
        assert!((incremental.summary[k] - v).abs() <= tol, "{k}: {} vs {v}", incremental.summary[k]);
    }
}
