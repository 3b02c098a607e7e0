//! Graph files: round trips, migrations, placeholders, malformed input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use quantgraph_nodes::file;
use quantgraph_nodes::graph::{Graph, PortRef};
use quantgraph_nodes::scheduler::NodeOutcome;
use quantgraph_nodes::{Error, NodeError, NodeId, Scheduler};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn sample_graph() -> Graph {
    let r = registry();
    let mut g = Graph::new();
    let c1 = konst(&mut g, &r, 1.25);
    let c2 = konst(&mut g, &r, -3.0);
    let a = add(&mut g, &r, c1, Some(c2));
    g.node_mut(a).unwrap().label = Some("sum".into());
    g.node_mut(a).unwrap().position = [123.5, -7.25];
    g.notes = "free text notes\nwith two lines".into();
    g
}

#[test]
fn save_load_save_is_byte_identical() {
    let r = registry();
    let dir = tempfile::tempdir().unwrap();
    let p1 = dir.path().join("a.qgraph");
    let p2 = dir.path().join("b.qgraph");
    let mut g = sample_graph();
    file::save(&mut g, &r, &p1).unwrap();
    let (mut loaded, report) = file::load(&p1, &r).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(loaded.nodes().collect::<Vec<_>>(), g.nodes().collect::<Vec<_>>());
    assert_eq!(loaded.wires().collect::<Vec<_>>(), g.wires().collect::<Vec<_>>());
    file::save(&mut loaded, &r, &p2).unwrap();
    assert_eq!(std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());
    // Saving the same graph twice gives the same bytes, and leaves no temporary file.
    file::save(&mut g, &r, &p1).unwrap();
    assert_eq!(std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn params_are_stored_by_name() {
    let r = registry();
    let text = file::to_string(&sample_graph(), &r, None);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["nodes"][0]["params"]["value"], 1.25);
    assert_eq!(json["nodes"][0]["kind"], "test.const");
    assert_eq!(json["nodes"][0]["kind_version"], 2);
    assert_eq!(json["wires"][0]["to"]["port"], "a");
}

#[test]
fn old_kind_versions_are_migrated() {
    let r = registry();
    let (g, report) = file::load(&fixture("old_const_v1.qgraph"), &r).unwrap();
    assert_eq!(report.migrated, vec![(NodeId(1), 1)]);
    let node = g.node(NodeId(1)).unwrap();
    assert_eq!(node.kind_version, 2);
    assert_eq!(node.params.get("value"), Some(&serde_json::json!(4.5)));
    assert!(!node.params.contains_key("v"));
    let e = Scheduler::new(r).evaluate(&g, &[]);
    assert_eq!(scalar(&e, NodeId(2)), 5.5);
}

#[test]
fn unknown_kinds_load_as_placeholders_and_save_back_unchanged() {
    let r = registry();
    let path = fixture("unknown_kind.qgraph");
    let (mut g, report) = file::load(&path, &r).unwrap();
    assert_eq!(report.placeholders, vec![NodeId(2)]);
    assert!(report.warnings[0].contains("vendor.fancy_quantizer"));
    // The rest of the graph evaluates; the placeholder and its dependents report why not.
    let e = Scheduler::new(r.clone()).evaluate(&g, &[]);
    assert_eq!(e.error(NodeId(2)), Some(&NodeError::UnknownKind("vendor.fancy_quantizer".into())));
    assert!(matches!(e.outcomes[&NodeId(3)], NodeOutcome::Blocked { by: NodeId(2) }));
    assert_eq!(scalar(&e, NodeId(4)), 3.0);
    // Saved back byte for byte.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.qgraph");
    file::save(&mut g, &r, &out).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), std::fs::read_to_string(&path).unwrap());
}

#[test]
fn malformed_files_say_where_and_what() {
    let r = registry();
    let p = Path::new("/tmp/x.qgraph");
    let err = file::from_str("{\n  \"format\": \"quantgraph\",\n  \"format_version\": 1,\n  \"nodes\": [}\n", p, &r)
        .unwrap_err();
    match &err {
        Error::Parse { line, column, .. } => assert_eq!((*line, *column), (4, 13)),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().ends_with("/tmp/x.qgraph"), "{err}");
    let err = file::from_str(r#"{"format":"quantgraph","format_version":1,"nodes":[{"id":1}],"wires":[]}"#, p, &r)
        .unwrap_err();
    assert!(err.to_string().contains("missing field `kind`"), "{err}");
    let err = file::from_str(r#"{"format":"quantgraph","format_version":9,"nodes":[],"wires":[]}"#, p, &r).unwrap_err();
    assert!(err.to_string().contains("newer QuantGraph"), "{err}");
    let err = file::from_str(r#"{"format":"other","format_version":1,"nodes":[],"wires":[]}"#, p, &r).unwrap_err();
    assert!(err.to_string().contains("expected format \"quantgraph\", found \"other\""), "{err}");
    let dup = r#"{"format":"quantgraph","format_version":1,"nodes":[
        {"id":1,"kind":"test.const","kind_version":2,"position":[0,0]},
        {"id":1,"kind":"test.const","kind_version":2,"position":[0,0]}],"wires":[]}"#;
    assert!(file::from_str(dup, p, &r).unwrap_err().to_string().contains("node id 1 is used twice"));
    let dangling = r#"{"format":"quantgraph","format_version":1,"nodes":[
        {"id":1,"kind":"test.const","kind_version":2,"position":[0,0]}],
        "wires":[{"from":{"node":1,"port":"out"},"to":{"node":5,"port":"a"}}]}"#;
    assert!(file::from_str(dangling, p, &r).unwrap_err().to_string().contains("names node 5"));
}

#[test]
fn paths_are_stored_relative_to_the_graph_file() {
    let r = registry();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("graphs/sub")).unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let data = dir.path().join("data/blob.bin");
    std::fs::write(&data, b"12345").unwrap();
    let mut g = Graph::new();
    let f = g.add_node(&r, "test.file", [0.0, 0.0]).unwrap();
    g.set_param(f, "path", data.to_string_lossy().as_ref().into()).unwrap();
    let p = dir.path().join("graphs/g.qgraph");
    file::save(&mut g, &r, &p).unwrap();
    let (mut loaded, _) = file::load(&p, &r).unwrap();
    assert_eq!(loaded.node(f).unwrap().params["path"], "../data/blob.bin");
    assert_eq!(scalar(&Scheduler::new(r.clone()).evaluate(&loaded, &[]), f), 5.0);
    // Save As into another folder rebases the relative path.
    let p2 = dir.path().join("graphs/sub/g2.qgraph");
    file::save(&mut loaded, &r, &p2).unwrap();
    let (moved, _) = file::load(&p2, &r).unwrap();
    assert_eq!(moved.node(f).unwrap().params["path"], "../../data/blob.bin");
    assert_eq!(scalar(&Scheduler::new(r).evaluate(&moved, &[]), f), 5.0);
}

#[test]
fn connecting_refuses_type_mismatch_and_cycles_with_a_reason() {
    let r = registry();
    let mut g = Graph::new();
    let c = konst(&mut g, &r, 1.0);
    let a = add(&mut g, &r, c, None);
    let b = add(&mut g, &r, a, None);
    let err = g.connect(&r, PortRef::new(b, "out"), PortRef::new(a, "b")).unwrap_err();
    assert_eq!(err.to_string(), "connecting Add (#3) to Add (#2) would make a cycle");
    let err = g.connect(&r, PortRef::new(c, "nope"), PortRef::new(a, "b")).unwrap_err();
    assert_eq!(err.to_string(), "Constant (#1) has no output 'nope'");
    // An input takes one wire: connecting again replaces the old wire.
    let c2 = konst(&mut g, &r, 2.0);
    let old = g.connect(&r, PortRef::new(c2, "out"), PortRef::new(a, "a")).unwrap();
    assert_eq!(old.map(|w| w.from.node), Some(c));
    assert_eq!(g.inputs_of(a), vec![("a".to_string(), PortRef::new(c2, "out"))]);
}

/// Mutated and truncated graph files (`QUANTGRAPH_FUZZ_CASES`, 6,000 by default): the
/// loader never panics, and whatever loads can be validated, edited, saved and loaded again.
#[test]
fn fuzzed_files_never_panic() {
    let r = registry();
    let seeds = [
        file::to_string(&sample_graph(), &r, None),
        std::fs::read_to_string(fixture("unknown_kind.qgraph")).unwrap(),
        std::fs::read_to_string(fixture("old_const_v1.qgraph")).unwrap(),
    ];
    let mut m = quantgraph_nodes::fuzz::Mutator::new(
        0x9e3779b97f4a7c15,
        &[b"{", b"}", b"[", b"]", b"\"", b",", b":", b"null", b"\"test.add\"", b"\"id\":"],
    );
    let path = Path::new("fuzz.qgraph");
    let mut loaded_ok = 0;
    for i in 0..quantgraph_nodes::fuzz::cases(6000) {
        let bytes = m.mutate(seeds[i % seeds.len()].as_bytes());
        let text = String::from_utf8_lossy(&bytes);
        if let Ok((mut g, _)) = file::from_str(&text, path, &r) {
            loaded_ok += 1;
            let _ = g.validate(&r);
            let _ = g.topo_order();
            let id = g.add_node(&r, "test.const", [f32::NAN, f32::INFINITY]).unwrap();
            assert!(g.node(id).is_some());
            let saved = file::to_string(&g, &r, None);
            assert!(file::from_str(&saved, path, &r).is_ok(), "case {i}: a saved graph must load again");
        }
    }
    assert!(loaded_ok > 0);
}

/// Ids are read from files: u64::MAX must not overflow (it panicked in debug builds).
#[test]
fn extreme_node_ids_do_not_overflow() {
    let r = registry();
    let text = r#"{"format":"quantgraph","format_version":1,"nodes":[
        {"id":18446744073709551615,"kind":"test.const","kind_version":1,"position":[0,0],"params":{}},
        {"id":1,"kind":"test.const","kind_version":1,"position":[0,0],"params":{}}],"wires":[]}"#;
    let (mut g, _) = file::from_str(text, Path::new("x.qgraph"), &r).unwrap();
    let a = g.add_node(&r, "test.const", [0.0, 0.0]).unwrap();
    let b = g.add_node(&r, "test.const", [0.0, 0.0]).unwrap();
    assert_eq!((a, b), (NodeId(2), NodeId(3)));
    assert_eq!(g.len(), 4);
}

/// NaN or infinite positions (a broken view transform) are saved as finite numbers, so
/// the file loads again.
#[test]
fn non_finite_positions_are_saved_as_numbers() {
    let r = registry();
    let mut g = sample_graph();
    let id = g.nodes().next().unwrap().id;
    g.node_mut(id).unwrap().position = [f32::NAN, f32::NEG_INFINITY];
    g.view = Some(quantgraph_nodes::graph::ViewState { offset: [f32::INFINITY, 1.0], zoom: f32::NAN, selected: None });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.qgraph");
    file::save(&mut g, &r, &path).unwrap();
    let (back, _) = file::load(&path, &r).unwrap();
    assert_eq!(back.node(id).unwrap().position, [0.0, 0.0]);
    assert_eq!(back.view.as_ref().map(|v| (v.offset, v.zoom)), Some(([0.0, 1.0], 1.0)));
}

/// Labels shared by several nodes are refused by name, with the candidates.
#[test]
fn ambiguous_labels_are_refused_with_the_candidates() {
    let r = registry();
    let mut g = Graph::new();
    let a = konst(&mut g, &r, 1.0);
    let b = konst(&mut g, &r, 2.0);
    for id in [a, b] {
        g.node_mut(id).unwrap().label = Some("c".into());
    }
    assert_eq!(g.find_node("c"), None);
    let err = g.resolve_node("c").unwrap_err();
    assert!(err.contains("2 nodes are labelled 'c' (#1, #2)"), "{err}");
    assert_eq!(g.resolve_node("#2"), Ok(b));
    assert_eq!(g.duplicate_labels().get("c"), Some(&vec![a, b]));
}

/// Frames (titled boxes behind nodes) are saved and read back; one with a non-finite or
/// empty rectangle is dropped with a warning, not loaded as garbage.
#[test]
fn frames_are_saved_and_bad_ones_dropped() {
    use quantgraph_nodes::graph::Frame;
    let r = registry();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.qgraph");
    let mut g = sample_graph();
    g.frames.push(Frame { title: "inputs, stage 1".into(), color: [70, 110, 170], rect: [-20.0, -50.0, 400.5, 300.0] });
    file::save(&mut g, &r, &p).unwrap();
    let (loaded, report) = file::load(&p, &r).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(loaded.frames, g.frames);
    // A graph without frames writes no "frames" key (older files stay byte-identical).
    let mut plain = sample_graph();
    file::save(&mut plain, &r, &p).unwrap();
    assert!(!std::fs::read_to_string(&p).unwrap().contains("\"frames\""));
    // A hand-edited file with a broken frame.
    let text = std::fs::read_to_string(&p).unwrap().replacen(
        "\"wires\"",
        "\"frames\": [{\"title\": \"bad\", \"color\": [1, 2, 3], \"rect\": [0, 0, -5, 10]}, \
         {\"title\": \"ok\", \"color\": [1, 2, 3], \"rect\": [0, 0, 5, 10]}],\n  \"wires\"",
        1,
    );
    std::fs::write(&p, text).unwrap();
    let (loaded, report) = file::load(&p, &r).unwrap();
    assert_eq!(loaded.frames.iter().map(|f| f.title.as_str()).collect::<Vec<_>>(), ["ok"]);
    assert!(report.warnings.iter().any(|w| w.contains("1 frame(s)")), "{:?}", report.warnings);
}
