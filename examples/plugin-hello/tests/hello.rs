//! The plugin's kind reaches every part of QuantGraph through the one-line binary: the
//! CLI's `nodes`, `check`, `run`, and a saved graph file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use quantgraph_nodes::graph::{Graph, PortRef};
use quantgraph_plugin_hello::topk_correct;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_quantgraph-hello"))
}

#[test]
fn topk_counts_ties_for_the_label() {
    let scores = [0.1, 0.5, 0.4, /* */ 0.3, 0.3, 0.4, /* */ 0.9, 0.05, 0.05];
    assert_eq!(topk_correct(&scores, 3, &[2, 1, 2], 1), 0);
    assert_eq!(topk_correct(&scores, 3, &[2, 1, 2], 2), 3);
    // Row 1: labels 0 and 1 tie at 0.3 behind 0.4: both are in the top 2.
    assert_eq!(topk_correct(&scores[3..6], 3, &[0], 2), 1);
    assert_eq!(topk_correct(&scores, 3, &[1, 0, 0], 1), 2);
}

#[test]
fn the_kind_is_in_nodes_check_run_and_the_saved_graph() {
    let out = bin().args(["nodes", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let kinds: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(kinds.to_string().contains("hello.topk"), "{kinds}");

    // A graph with the plugin's node, saved by the engine with the plugin's registry.
    let mut registry = quantgraph_app::registry().unwrap();
    quantgraph_plugin_hello::register_nodes(&mut registry).unwrap();
    let cifar = std::env::var_os("QUANTGRAPH_CIFAR10")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data/cifar10"));
    let mut g = Graph::new();
    let ds = g.add_node(&registry, "dataset.cifar10", [0.0, 0.0]).unwrap();
    g.set_param(ds, "path", cifar.to_string_lossy().as_ref().into()).unwrap();
    g.set_param(ds, "count", 20.into()).unwrap();
    let model = g.add_node(&registry, "onnx.model", [0.0, 0.0]).unwrap();
    let fp32 = repo().join("models/resnet8_fp32.onnx");
    g.set_param(model, "path", fp32.to_string_lossy().as_ref().into()).unwrap();
    let probe = g.add_node(&registry, "onnx.layer_probe", [0.0, 0.0]).unwrap();
    g.set_param(probe, "capture", "outputs".into()).unwrap();
    let topk = g.add_node(&registry, "hello.topk", [0.0, 0.0]).unwrap();
    g.connect(&registry, PortRef::new(model, "model"), PortRef::new(probe, "model")).unwrap();
    g.connect(&registry, PortRef::new(ds, "dataset"), PortRef::new(probe, "dataset")).unwrap();
    g.connect(&registry, PortRef::new(probe, "activations"), PortRef::new(topk, "activations")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hello.qgraph");
    quantgraph_nodes::file::save(&mut g, &registry, &file).unwrap();
    assert!(std::fs::read_to_string(&file).unwrap().contains("\"hello.topk\""));

    let out = bin().arg("check").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let out = bin().arg("run").arg(&file).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let top5 = json.to_string();
    assert!(top5.contains("top5_accuracy"), "{top5}");
}
