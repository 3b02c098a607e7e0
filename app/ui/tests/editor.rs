//! The editor UI driven like a user would (egui_kittest), and its headless evaluation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::{Harness, SnapshotOptions};
use quantgraph_nodes::graph::PortRef;
use quantgraph_nodes::NodeRegistry;
use quantgraph_ui::{Editor, NodeStatus};

fn registry() -> Arc<NodeRegistry> {
    let mut r = NodeRegistry::new();
    quantgraph_dataset::register_nodes(&mut r).unwrap();
    quantgraph_onnx::register_nodes(&mut r).unwrap();
    quantgraph_compare::register_nodes(&mut r).unwrap();
    quantgraph_plot::register_nodes(&mut r).unwrap();
    Arc::new(r)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn harness(mut editor: Editor) -> Harness<'static, Editor> {
    editor.show_timings = false;
    Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, editor: &mut Editor| editor.ui(ui), editor)
}

/// Run frames until the UI is still and no evaluation is in flight.
/// Type into the dataset loader's Mean field, then leave it (Tab), as a user commits text.
fn type_into_mean(h: &mut Harness<'static, Editor>, text: &str) {
    // Text fields in order: Label, Folder, Class list, Labels CSV, Resize to, Center crop, Mean.
    let field = h.get_all_by_role(egui::accesskit::Role::TextInput).nth(6).expect("the Mean text field");
    field.focus();
    field.type_text(text);
    settle(h);
    h.key_press(egui::Key::Tab);
    settle(h);
}

fn settle(h: &mut Harness<'static, Editor>) {
    for _ in 0..50 {
        h.state_mut().wait_idle(Duration::from_secs(30));
        if h.try_run().is_ok() && !h.state().is_busy() {
            return;
        }
    }
    panic!("the editor never settled");
}

fn snapshot_options() -> SnapshotOptions {
    // Deterministic: run times are not drawn in tests (`Editor::show_timings`); a few pixels
    // of slack for anti-aliasing, far below a status dot (~80 px).
    SnapshotOptions::new().output_path(repo().join("tests/snapshots")).max_failed_pixels(8)
}

fn cifar_dir() -> PathBuf {
    std::env::var_os("QUANTGRAPH_CIFAR10").map(PathBuf::from).unwrap_or_else(|| repo().join("../shared/data/cifar10"))
}

#[test]
fn add_from_palette_connect_refuse_undo_and_edit_a_param() {
    let mut h = harness(Editor::new(registry()));
    settle(&mut h);
    // Add two nodes from the palette.
    h.get_by_label("Add node  (Space)").click();
    settle(&mut h);
    h.get_by_label("Dataset Loader").click();
    settle(&mut h);
    h.get_by_label("Add node  (Space)").click();
    settle(&mut h);
    h.get_by_label("Comparator").click();
    settle(&mut h);
    assert_eq!(h.state().graph().len(), 2);
    let ids: Vec<_> = h.state().graph().nodes().map(|n| n.id).collect();
    let (dataset, compare) = (ids[0], ids[1]);
    // A wrong connection is refused, with the reason in the status bar.
    let err = h.state_mut().connect(PortRef::new(dataset, "dataset"), PortRef::new(compare, "a")).unwrap_err();
    assert_eq!(err, "Dataset output cannot feed a Activations input");
    settle(&mut h);
    h.get_by_label_contains("Cannot connect: Dataset output cannot feed a Activations input");
    assert_eq!(h.state().graph().wires().count(), 0);
    // A right one is made…
    h.state_mut().connect(PortRef::new(dataset, "dataset"), PortRef::new(compare, "dataset")).unwrap();
    settle(&mut h);
    assert_eq!(h.state().graph().wires().count(), 1);
    // …and undone with Ctrl+Z, then redone with Ctrl+Shift+Z.
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    settle(&mut h);
    assert_eq!(h.state().graph().wires().count(), 0);
    h.key_press_modifiers(egui::Modifiers::COMMAND | egui::Modifiers::SHIFT, egui::Key::Z);
    settle(&mut h);
    assert_eq!(h.state().graph().wires().count(), 1);
    // Edit a param in the inspector: the dataset loader's mean.
    h.state_mut().selected = Some(dataset);
    settle(&mut h);
    let before = h.state().history.can_undo();
    assert!(before);
    h.get_by_label("Label").hover();
    type_into_mean(&mut h, "0.5");
    let mean = h.state().graph().node(dataset).unwrap().params.get("mean").cloned();
    assert_eq!(mean, Some(serde_json::json!([0.5])));
    h.state_mut().undo();
    settle(&mut h);
    assert_eq!(h.state().graph().node(dataset).unwrap().params.get("mean"), Some(&serde_json::json!([])));
    // Text that is not 1 or 3 numbers is not applied; it stays in the field with the reason
    // after the field loses the focus, and the param keeps its value.
    type_into_mean(&mut h, "0.5, 0.4");
    assert_eq!(h.state().graph().node(dataset).unwrap().params.get("mean"), Some(&serde_json::json!([])));
    assert!(h.query_by_label("not applied: expected none, 1 or 3 numbers, found 2 numbers").is_some());
    assert!(h.query_all_by_value("0.5, 0.4").next().is_some(), "the typed text stays");
    // Another document whose node has the same id and value does not inherit that text.
    let same = h.state().graph().clone();
    h.state_mut().set_graph(same, None);
    h.state_mut().selected = Some(dataset);
    settle(&mut h);
    assert!(h.query_by_label("not applied: expected none, 1 or 3 numbers, found 2 numbers").is_none());
    assert!(h.query_all_by_value("0.5, 0.4").next().is_none(), "the kept text is gone");
    type_into_mean(&mut h, "0.5, 0.4");
    assert!(h.query_all_by_value("0.5, 0.4").next().is_some());
    // A value changed elsewhere replaces the kept text; looking at the node changes nothing
    // (integers from a file stay integers: no edit, no undo step).
    h.state_mut().set_param(dataset, "mean", serde_json::json!([1, 2, 1]));
    settle(&mut h);
    settle(&mut h);
    assert_eq!(h.state().graph().node(dataset).unwrap().params.get("mean"), Some(&serde_json::json!([1, 2, 1])));
    assert!(h.query_all_by_value("1, 2, 1").next().is_some());
    assert!(h.query_by_label("not applied: expected none, 1 or 3 numbers, found 2 numbers").is_none());
}

#[test]
fn delete_copy_paste_and_unsaved_marker() {
    let mut ed = Editor::new(registry());
    let a = ed.add_node("plot.chart", [0.0, 0.0]).unwrap();
    assert!(ed.title().starts_with("*untitled"));
    let text = ed.copy_text(&[a]);
    let pasted = ed.paste_text(&text);
    assert_eq!(pasted.len(), 1);
    assert_eq!(ed.graph().len(), 2);
    ed.delete(&pasted);
    assert_eq!(ed.graph().len(), 1);
    ed.undo();
    assert_eq!(ed.graph().len(), 2);
    // Save, then the title loses its marker; a failed save keeps the document.
    let dir = tempfile_dir();
    let path = dir.join("g.qgraph");
    assert!(ed.save_as(&path));
    assert_eq!(ed.title(), "g.qgraph — QuantGraph");
    assert!(!ed.save_as(&dir.join("no/such/dir/g.qgraph")));
    assert!(ed.message.as_deref().unwrap().starts_with("Could not save"));
    assert_eq!(ed.graph().len(), 2);
    // Opening with unsaved changes asks first.
    ed.set_param(a, "title", "x".into());
    ed.request(quantgraph_ui::AfterPrompt::New);
    assert!(matches!(ed.prompt, Some(quantgraph_ui::Prompt::Unsaved { .. })));
    assert_eq!(ed.graph().len(), 2);
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("qg-ui-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

#[test]
fn autosave_writes_a_recovery_file_and_the_next_start_offers_it() {
    let dir = tempfile_dir();
    let recovery = dir.join("recovery.qgraph");
    let mut ed = Editor::new(registry());
    ed.recovery_path = Some(recovery.clone());
    ed.add_node("plot.chart", [1.0, 2.0]);
    ed.autosave(10.0);
    assert!(!recovery.exists(), "not before 30 s");
    ed.autosave(31.0);
    assert!(recovery.exists());
    let mut next = Editor::new(registry());
    next.recovery_path = Some(recovery.clone());
    next.check_recovery();
    assert!(matches!(next.prompt, Some(quantgraph_ui::Prompt::Recover { .. })));
    let _ = std::fs::remove_dir_all(dir);
}

/// One snapshot per registered kind: its node on the canvas and its inspector.
#[test]
fn every_kind_renders_its_node_and_inspector() {
    let registry = registry();
    let kinds: Vec<String> = registry.kinds().map(|k| k.id().to_owned()).collect();
    let mut failures = Vec::new();
    for kind in kinds {
        let mut ed = Editor::new(registry.clone());
        let id = ed.add_node(&kind, [40.0, 40.0]).unwrap();
        if kind == "dataset.cifar10" {
            // Never dataset images in a committed snapshot: a folder that does not exist.
            ed.set_param(id, "path", "no-such-folder".into());
        }
        ed.selected = Some(id);
        ed.show_timings = false;
        let mut h = Harness::builder()
            .with_size(egui::vec2(1100.0, 700.0))
            .build_ui_state(|ui, editor: &mut Editor| editor.ui(ui), ed);
        settle(&mut h);
        h.state_mut().wait_idle(Duration::from_secs(10));
        settle(&mut h);
        // The inspector shows the kind's doc and every param's label.
        let k = registry.get(&kind).unwrap();
        for p in k.params() {
            if !matches!(p.kind, quantgraph_nodes::ParamKind::List { .. }) {
                assert!(h.query_all_by_label(&p.label).next().is_some(), "{kind}: no widget labelled {}", p.label);
            }
        }
        if let Err(e) = h.try_snapshot_options(format!("kind_{}", kind.replace('.', "_")), &snapshot_options()) {
            failures.push(format!("{kind}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The default graph in the editor, headless: it evaluates, and editing the QDQ override
/// re-runs only the INT8 branch; the plots' data change.
#[test]
fn default_graph_evaluates_and_a_scale_edit_reruns_only_the_int8_branch() {
    let mut ed = Editor::new(registry());
    assert!(ed.open(&repo().join("assets/graphs/default.qgraph")), "{:?}", ed.message);
    let ds = ed.graph().find_node("cifar10_test").unwrap();
    ed.set_param(ds, "path", cifar_dir().to_string_lossy().as_ref().into());
    assert!(ed.wait_idle(Duration::from_secs(120)));
    for (id, s) in &ed.statuses {
        assert!(matches!(s, NodeStatus::Ready { .. }), "{id}: {s:?}");
    }
    let plot = ed.graph().find_node("sqnr_plot").unwrap();
    let before = format!("{:?}", ed.outputs(plot).unwrap().get("plot"));
    ed.scheduler().take_log();
    let over = ed.graph().find_node("override").unwrap();
    ed.set_param(over, "edits", serde_json::json!([{"tensor": "/stage2/Relu_output_0", "scale": 0.5}]));
    assert!(ed.wait_idle(Duration::from_secs(120)));
    let mut ran: Vec<String> =
        ed.scheduler().take_log().iter().map(|l| ed.graph().node(l.node).unwrap().label.clone().unwrap()).collect();
    ran.sort();
    assert_eq!(
        ran,
        ["class_plot", "compare", "confusion_plot", "int8_histogram", "override", "probe_int8", "sqnr_plot"]
    );
    assert_ne!(before, format!("{:?}", ed.outputs(plot).unwrap().get("plot")));
    // Undo brings the old results back from the cache: nothing runs.
    ed.undo();
    assert!(ed.wait_idle(Duration::from_secs(60)));
    assert!(ed.scheduler().take_log().is_empty());
    assert_eq!(before, format!("{:?}", ed.outputs(plot).unwrap().get("plot")));
}

/// Drag a wire from one pin to another with the mouse, as a user would.
fn drag_wire(h: &mut Harness<'static, Editor>, from: egui::Pos2, to: egui::Pos2) {
    h.hover_at(from);
    h.step();
    h.drag_at(from);
    h.step();
    for i in 1..=8 {
        let t = i as f32 / 8.0;
        h.hover_at(from + (to - from) * t);
        h.step();
    }
    h.drop_at(to);
    h.step();
    settle(h);
}

#[test]
fn wires_are_dragged_between_pins_and_a_wrong_one_is_refused() {
    let mut ed = Editor::new(registry());
    let loader = ed.add_node("dataset.cifar10", [0.0, 0.0]).unwrap();
    let probe = ed.add_node("onnx.layer_probe", [420.0, 0.0]).unwrap();
    ed.set_param(loader, "path", "no-such-folder".into());
    let mut h = harness(ed);
    settle(&mut h);
    // Output pins sit just right of their label, input pins just left of theirs.
    // Widget rects are reported in canvas coordinates: map them to the screen. Output pins
    // sit just right of their label, input pins just left of theirs (PinPlacement::Edge).
    let pins = |h: &Harness<'static, Editor>, dx: f32| {
        let t = h.state().canvas_transform;
        let labels: Vec<egui::Rect> = h.query_all_by_label("dataset").map(|n| t.mul_rect(n.rect())).collect();
        let out_label = labels.iter().min_by(|a, b| a.min.x.total_cmp(&b.min.x)).copied().unwrap();
        let in_label = labels.iter().max_by(|a, b| a.min.x.total_cmp(&b.min.x)).copied().unwrap();
        let model_label = t.mul_rect(h.get_by_label("model").rect());
        let out_pin = egui::pos2(out_label.max.x + dx, out_label.center().y);
        let in_pin = |r: egui::Rect| egui::pos2(r.min.x - dx, r.center().y);
        (out_pin, in_pin(in_label), in_pin(model_label))
    };
    let mut connected = false;
    for dx in [15.0, 12.0, 18.0, 9.0] {
        let (out_pin, dataset_pin, _) = pins(&h, dx);
        drag_wire(&mut h, out_pin, dataset_pin);
        if h.state().graph().wires().count() == 1 {
            connected = true;
            // Dataset → Model is refused, with the reason shown.
            let (out_pin, _, model_pin) = pins(&h, dx);
            drag_wire(&mut h, out_pin, model_pin);
            break;
        }
    }
    assert!(connected, "no drag connected the pins");
    let wires: Vec<_> = h.state().graph().wires().collect();
    assert_eq!(wires.len(), 1, "{wires:?}");
    assert_eq!((wires[0].from.node, wires[0].to.node, wires[0].to.port.as_str()), (loader, probe, "dataset"));
    assert_eq!(h.state().message.as_deref(), Some("Cannot connect: Dataset output cannot feed a Model input"));
    h.get_by_label_contains("Dataset output cannot feed a Model input");
    // One undo step removes the wire.
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    settle(&mut h);
    assert_eq!(h.state().graph().wires().count(), 0);
}

/// A flipped sample's per-layer SQNR is drawn over the dataset-wide curve, labelled by layer.
#[test]
fn a_flipped_samples_per_layer_sqnr_is_drawn_against_the_dataset_curve() {
    use quantgraph_nodes::value::{Cell, Report, Table};
    let layers = ["/conv0/Conv_output_0", "/stage1/Relu_output_0", "/stage2/Relu_1_output_0", "logits"];
    let mut t = Table {
        name: "sample_layers".into(),
        columns: ["sample", "source_index", "why", "tensor", "op", "sqnr_db", "dataset_sqnr_db"]
            .iter()
            .map(|c| (*c).into())
            .collect(),
        rows: Vec::new(),
    };
    for (sample, drop) in [(3, 12.0), (8, 2.0)] {
        for (i, l) in layers.iter().enumerate() {
            let dataset = 35.0 - 3.0 * i as f64;
            let own = if i >= 2 { dataset - drop } else { dataset + 0.5 };
            t.rows.push(vec![
                Cell::Int(sample),
                Cell::Int(sample + 100),
                Cell::Text("flip".into()),
                Cell::Text((*l).into()),
                Cell::Text("Conv".into()),
                Cell::Num(own),
                Cell::Num(dataset),
            ]);
        }
    }
    // The comparator's hints: its sample_layers table is the per-sample curve.
    let hints = quantgraph_compare::report_hints();
    // Without the hint, the same table is just a table: the editor does not go by its name.
    let plain = Report { tables: vec![t.clone()], ..Report::default() };
    let mut h = Harness::builder().with_size(egui::vec2(520.0, 260.0)).build_ui(move |ui| {
        quantgraph_ui::views::sample_layers_ui(ui, quantgraph_nodes::NodeId(7), 3, &plain);
    });
    h.run();
    assert!(h.query_by_label_contains("Per-layer").is_none());
    let report = Report { tables: vec![t], hints, ..Report::default() };
    let mut h = Harness::builder().with_size(egui::vec2(520.0, 260.0)).build_ui(move |ui| {
        quantgraph_ui::views::sample_layers_ui(ui, quantgraph_nodes::NodeId(7), 3, &report);
    });
    h.run();
    h.get_by_label("Per-layer SQNR (dB) of sample 3");
    h.get_by_label("this sample");
    h.get_by_label("all samples");
    h.snapshot_options("sample_layers", &snapshot_options());
}

/// Before/after: after a scale edit the comparator's inspector offers the earlier run as a
/// baseline; choosing it shows the accuracy and per-layer deltas (and pinning keeps a run).
#[test]
fn a_comparator_shows_now_against_an_earlier_run() {
    let mut ed = Editor::new(registry());
    assert!(ed.open(&repo().join("assets/graphs/default.qgraph")), "{:?}", ed.message);
    let ds = ed.graph().find_node("cifar10_test").unwrap();
    ed.set_param(ds, "path", cifar_dir().to_string_lossy().as_ref().into());
    ed.set_param(ds, "per_class", 20.into());
    assert!(ed.wait_idle(Duration::from_secs(120)));
    let over = ed.graph().find_node("override").unwrap();
    ed.set_param(over, "edits", serde_json::json!([{"tensor": "/stage3/Relu_1_output_0", "scale": 0.05}]));
    assert!(ed.wait_idle(Duration::from_secs(120)));
    let compare = ed.graph().find_node("compare").unwrap();
    ed.selected = Some(compare);
    let mut h = harness(ed);
    settle(&mut h);
    h.get_by_label("Compare with");
    h.get_by_value("(nothing)").click();
    settle(&mut h);
    let first = h
        .get_all_by_role(egui::accesskit::Role::Button)
        .find(|n| n.accesskit_node().label().is_some_and(|l| l.starts_with("run 1 (")));
    first.expect("the first run is offered as a baseline").click();
    settle(&mut h);
    let headline = h
        .get_all_by_role(egui::accesskit::Role::Label)
        .filter_map(|n| n.accesskit_node().value().or(n.accesskit_node().label()).map(|l| l.to_string()))
        .find(|l| l.starts_with("now vs run 1"))
        .expect("the deltas' headline");
    assert!(headline.contains("largest per-layer change: /stage3/Relu_1_output_0"), "{headline}");
    inspector_snapshot(&mut h, "comparator_before_after", "compare (#7)").unwrap();
    h.get_by_label("Pin this run").click();
    settle(&mut h);
    h.get_by_label("Unpin this run");
}

/// Readable at the default size: on the default graph at 1600×1000, the initial view frames
/// every node inside the canvas, node titles are at least 13 px and body text 11 px tall.
#[test]
fn the_default_graph_is_readable_at_the_default_window_size() {
    let mut ed = Editor::new(registry());
    assert!(ed.open(&repo().join("assets/graphs/default.qgraph")), "{:?}", ed.message);
    let mut h = Harness::builder()
        .with_size(egui::vec2(1600.0, 1000.0))
        .build_ui_state(|ui, editor: &mut Editor| editor.ui(ui), ed);
    for _ in 0..6 {
        h.step();
    }
    let ed = h.state();
    let canvas = ed.canvas_rect();
    let t = ed.canvas_transform;
    assert!(
        quantgraph_ui::canvas::TITLE_SIZE * t.scaling >= 13.0,
        "titles at {} px",
        quantgraph_ui::canvas::TITLE_SIZE * t.scaling
    );
    assert!(
        quantgraph_ui::canvas::DETAIL_SIZE * t.scaling >= 11.0,
        "body text at {} px",
        quantgraph_ui::canvas::DETAIL_SIZE * t.scaling
    );
    // Every node's title is inside the canvas (accesskit bounds are in graph units).
    for label in ["fp32 · ONNX Model", "override · QDQ Override", "confusion_plot · Chart", "sqnr_plot · Chart"] {
        let b = h.get_by_label(label).accesskit_node().bounding_box().unwrap();
        let on_screen =
            t * egui::Rect::from_min_max(egui::pos2(b.x0 as f32, b.y0 as f32), egui::pos2(b.x1 as f32, b.y1 as f32));
        assert!(canvas.contains_rect(on_screen), "{label} at {on_screen:?} is outside the canvas {canvas:?}");
    }
    // No snapshot here: evaluation starts on open, so node states depend on timing (the
    // screenshot was looked at by hand; see also comparator_before_after.png, taken idle).
}

/// Ctrl+F finds a node by label or kind; Enter selects it and brings it to the middle of the
/// canvas.
#[test]
fn ctrl_f_finds_a_node_and_centers_it() {
    let mut ed = Editor::new(registry());
    assert!(ed.open(&repo().join("assets/graphs/default.qgraph")), "{:?}", ed.message);
    let mut h = Harness::builder()
        .with_size(egui::vec2(1600.0, 1000.0))
        .build_ui_state(|ui, editor: &mut Editor| editor.ui(ui), ed);
    for _ in 0..4 {
        h.step();
    }
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::F);
    for _ in 0..3 {
        h.step();
    }
    h.get_by_label("Find node");
    assert_eq!(h.state().find_nodes("histo").len(), 1);
    // The find field has the focus: typing goes there.
    h.event(egui::Event::Text("histo".into()));
    h.step();
    assert_eq!(h.state().find.as_deref(), Some("histo"));
    h.key_press(egui::Key::Enter);
    for _ in 0..3 {
        h.step();
    }
    let ed = h.state();
    let hist = ed.graph().find_node("int8_histogram").unwrap();
    assert_eq!(ed.selected, Some(hist));
    assert!(ed.find.is_none(), "the window closes");
    let b = h.get_by_label("int8_histogram · Tensor Histogram").accesskit_node().bounding_box().unwrap();
    let title = ed.canvas_transform * egui::pos2(b.x0 as f32, b.y0 as f32);
    let canvas = ed.canvas_rect();
    assert!(
        (title.x - canvas.center().x).abs() < 250.0 && (title.y - canvas.center().y).abs() < 250.0,
        "the node's title at {title:?}, the canvas centre at {:?}",
        canvas.center()
    );
}

/// Space opens the palette; typing filters it and Enter adds the first kind listed.
#[test]
fn enter_in_the_palette_adds_the_first_match() {
    let mut h = harness(Editor::new(registry()));
    settle(&mut h);
    h.key_press(egui::Key::Space);
    for _ in 0..3 {
        h.step();
    }
    h.event(egui::Event::Text("comparator".into()));
    h.step();
    h.key_press(egui::Key::Enter);
    for _ in 0..3 {
        h.step();
    }
    let kinds: Vec<String> = h.state().graph().nodes().map(|n| n.kind.clone()).collect();
    assert_eq!(kinds, vec!["compare.comparator".to_owned()]);
    assert!(h.state().palette.is_none());
}

/// The default graph on its first 100 test images, evaluated.
fn default_graph_on_100_images() -> Editor {
    let mut ed = Editor::new(registry());
    assert!(ed.open(&repo().join("assets/graphs/default.qgraph")), "{:?}", ed.message);
    let ds = ed.graph().find_node("cifar10_test").unwrap();
    ed.set_param(ds, "path", cifar_dir().to_string_lossy().as_ref().into());
    ed.set_param(ds, "count", 100.into());
    ed.set_param(ds, "per_class", 0.into());
    assert!(ed.wait_idle(Duration::from_secs(120)));
    ed
}

fn tall_harness(mut editor: Editor) -> Harness<'static, Editor> {
    editor.show_timings = false;
    Harness::builder()
        .with_size(egui::vec2(1600.0, 3200.0))
        .build_ui_state(|ui, editor: &mut Editor| editor.ui(ui), editor)
}

/// Dragging a scale in a model's Q/DQ table writes one edit to the QDQ Override on that
/// model (one undo step) and re-evaluates what reads the override.
#[test]
fn dragging_a_scale_in_the_qdq_table_edits_the_override() {
    let mut ed = default_graph_on_100_images();
    let int8 = ed.graph().find_node("int8").unwrap();
    let over = ed.graph().find_node("override").unwrap();
    let edits_before = ed.graph().node(over).unwrap().params.get("edits").cloned();
    ed.selected = Some(int8);
    let mut h = tall_harness(ed);
    settle(&mut h);
    let tensor = "/Relu_output_0";
    let spin = h
        .query_all_by_label(tensor)
        .find(|n| n.accesskit_node().role() == egui::accesskit::Role::SpinButton)
        .map(|n| n.rect())
        .expect("a drag value for the tensor's scale");

    h.state().scheduler().take_log();
    let from = spin.center();
    h.hover_at(from);
    h.step();
    h.drag_at(from);
    h.step();
    for i in 1..=10 {
        h.hover_at(from + egui::vec2(8.0 * i as f32, 0.0));
        h.step();
    }
    // Live: the override re-runs while the value is still being dragged.
    let mut live = false;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(50));
        h.hover_at(from + egui::vec2(80.0, 0.0));
        h.step();
        let log = h.state().scheduler().execution_log();
        if log.iter().any(|l| h.state().graph().node(l.node).and_then(|n| n.label.as_deref()) == Some("override")) {
            live = true;
            break;
        }
    }
    assert!(live, "the override re-ran during the drag");
    h.drop_at(from + egui::vec2(80.0, 0.0));
    h.step();
    settle(&mut h);
    let ed = h.state_mut();
    let edits = ed.graph().node(over).unwrap().params["edits"].as_array().cloned().unwrap();
    let row = edits.iter().find(|r| r["tensor"] == tensor).expect("an edit row for the dragged tensor");
    let m = ed.outputs(int8).unwrap().get("model").cloned().unwrap();
    let quantgraph_nodes::Value::Model(m) = m else { panic!() };
    let original =
        m.info.qdq.iter().find(|e| e.float_tensor == tensor && e.op_type == "QuantizeLinear").unwrap().scales[0];
    let scale = row["scale"].as_f64().unwrap();
    assert!(scale > f64::from(original) * 1.05, "dragging right raises the scale: {scale} vs {original}");
    let ran: Vec<String> =
        ed.scheduler().take_log().iter().filter_map(|l| ed.graph().node(l.node).unwrap().label.clone()).collect();
    assert!(ran.contains(&"override".to_owned()) && ran.contains(&"compare".to_owned()), "{ran:?}");
    assert!(matches!(ed.statuses.get(&over), Some(NodeStatus::Ready { .. })), "{:?}", ed.statuses.get(&over));
    // The whole drag is one undo step.
    ed.undo();
    assert_eq!(ed.graph().node(over).unwrap().params.get("edits").cloned(), edits_before);
}

/// A model with no QDQ Override after it offers to insert one; it goes between the model and
/// what read it, as one undo step.
#[test]
fn a_qdq_override_is_inserted_to_edit_a_models_scales() {
    let mut ed = Editor::new(registry());
    let m = ed.add_node("onnx.model", [0.0, 0.0]).unwrap();
    ed.set_param(m, "path", repo().join("models/resnet8_int8_qdq.onnx").to_string_lossy().as_ref().into());
    let probe = ed.add_node("onnx.layer_probe", [420.0, 0.0]).unwrap();
    ed.connect(PortRef::new(m, "model"), PortRef::new(probe, "model")).unwrap();
    assert!(ed.wait_idle(Duration::from_secs(60)));
    ed.selected = Some(m);
    let nodes_before = ed.graph().len();
    let mut h = tall_harness(ed);
    settle(&mut h);
    h.get_by_label("Insert a QDQ Override here").click();
    settle(&mut h);
    let ed = h.state_mut();
    assert_eq!(ed.graph().len(), nodes_before + 1);
    let over = ed.graph().nodes().find(|n| n.kind == "onnx.qdq_override").map(|n| n.id).unwrap();
    assert_eq!(ed.graph().source_of(&PortRef::new(over, "model")), Some(&PortRef::new(m, "model")));
    assert_eq!(ed.graph().source_of(&PortRef::new(probe, "model")), Some(&PortRef::new(over, "model")));
    ed.undo();
    assert_eq!(ed.graph().len(), nodes_before);
    assert_eq!(ed.graph().source_of(&PortRef::new(probe, "model")), Some(&PortRef::new(m, "model")));
}

/// In a probe's histogram, dragging the clip range's upper edge left narrows the pair's range:
/// the QDQ Override gets the scale and zero point of the new range, as one undo step.
#[test]
fn dragging_a_clip_edge_in_the_histogram_edits_the_override() {
    let mut ed = default_graph_on_100_images();
    let probe = ed.graph().find_node("probe_int8").unwrap();
    let over = ed.graph().find_node("override").unwrap();
    let edits_before = ed.graph().node(over).unwrap().params.get("edits").cloned();
    let Some(quantgraph_nodes::Value::Activations(a)) = ed.outputs(probe).unwrap().get("activations").cloned() else {
        panic!()
    };
    let t = a.tensors.values().find(|t| t.qdq.is_some()).unwrap().clone();
    let q = t.qdq.clone().unwrap();
    ed.selected = Some(probe);
    let mut h = tall_harness(ed);
    settle(&mut h);
    let id = egui::Id::new(("clip_drag", probe.0, t.name.as_str())).with("screen");
    let [_, x_hi, y] = h.ctx.data(|d| d.get_temp::<[f32; 3]>(id)).expect("the histogram's handles are drawn");
    let from = egui::pos2(x_hi, y);
    h.hover_at(from);
    h.step();
    h.drag_at(from);
    h.step();
    for i in 1..=8 {
        h.hover_at(from - egui::vec2(5.0 * i as f32, 0.0));
        h.step();
    }
    h.drop_at(from - egui::vec2(40.0, 0.0));
    h.step();
    settle(&mut h);
    let ed = h.state_mut();
    let edits = ed.graph().node(over).unwrap().params["edits"].as_array().cloned().unwrap();
    // The override takes the edit (a pair sharing another's scale is edited through that one).
    assert!(matches!(ed.statuses.get(&over), Some(NodeStatus::Ready { .. })), "{:?}", ed.statuses.get(&over));
    let owner = a.model.qdq.iter().find(|e| e.scale_name == q.scale_name).unwrap().float_tensor.clone();
    let row = edits.iter().find(|r| r["tensor"] == owner.as_str()).expect("an edit row for the tensor");
    let scale = row["scale"].as_f64().unwrap();
    assert!(scale > 0.0 && scale < f64::from(q.scales[0]) * 0.97, "a narrower range: {scale} vs {}", q.scales[0]);
    let zp: i32 = row["zero_point"].as_str().unwrap().parse().unwrap();
    let (qmin, qmax) = q.qrange();
    assert!((qmin..=qmax).contains(&zp));
    ed.undo();
    assert_eq!(ed.graph().node(over).unwrap().params.get("edits").cloned(), edits_before);
}

/// A comparator's "Graph view with per-layer error" draws B's model with its ops coloured by
/// per-layer SQNR; clicking an op selects its tensor, which the per-layer table then marks.
#[test]
fn the_graph_view_colours_ops_by_error_and_selects_a_tensor() {
    let mut ed = default_graph_on_100_images();
    ed.selected = ed.graph().find_node("compare");
    let mut h = tall_harness(ed);
    settle(&mut h);
    h.get_by_label("Graph view with per-layer error").click();
    settle(&mut h);
    {
        let view = h.state().graph_view.as_ref().expect("the graph window is open");
        assert_eq!(view.metric, "sqnr_db");
        let coloured = view.layout.ops.iter().filter(|o| view.figures.contains_key(&o.output)).count();
        assert!(coloured >= 9, "ops with a per-layer figure: {coloured}");
        assert!(view.layout.edges.iter().any(|e| e.quantized), "Q/DQ pairs are badges on edges");
        assert!(view.layout.ops.iter().all(|o| o.op_type != "QuantizeLinear" && o.op_type != "DequantizeLinear"));
    }
    // Click the op where it is drawn (the scene's transform maps its box to the screen).
    let rect = h.get_by_label("Conv /stage3/conv1/Conv").rect();
    let t = h.ctx.data(|d| d.get_temp::<egui::emath::TSTransform>(egui::Id::new("qg_graph_transform"))).unwrap();
    let at = t.mul_pos(rect.center());
    h.hover_at(at);
    h.step();
    h.drag_at(at);
    h.step();
    h.drop_at(at);
    h.step();
    settle(&mut h);
    assert_eq!(h.state().selected_tensor.as_deref(), Some("/stage3/Relu_output_0"));
    // The table of per-layer figures marks the selected tensor's row.
    assert!(
        h.query_all_by_label("/stage3/Relu_output_0")
            .any(|n| n.accesskit_node().toggled() == Some(egui::accesskit::Toggled::True)),
        "the per_layer row is marked"
    );
}

/// Shift+F frames the selected node; a click on the minimap centres the view on that point.
#[test]
fn frame_selected_and_the_minimap_move_the_view() {
    let mut ed = Editor::new(registry());
    assert!(ed.open(&repo().join("assets/graphs/default.qgraph")), "{:?}", ed.message);
    ed.stop();
    let probe = ed.graph().find_node("probe_int8").unwrap();
    ed.selected = Some(probe);
    let mut h = harness(ed);
    for _ in 0..5 {
        h.step();
    }
    let zoom_all = h.state().canvas_transform.scaling;
    h.key_press_modifiers(egui::Modifiers::SHIFT, egui::Key::F);
    for _ in 0..3 {
        h.step();
    }
    let ed = h.state();
    let t = ed.canvas_transform;
    let rect = ed.node_rects().into_iter().find(|(id, _)| *id == probe).unwrap().1;
    let centre = t.mul_pos(rect.center());
    let canvas = ed.canvas_rect();
    assert!(t.scaling > zoom_all, "one node is framed closer than all: {} vs {zoom_all}", t.scaling);
    assert!((centre - canvas.center()).length() < 20.0, "the node is centred: {centre:?} vs {:?}", canvas.center());
    // The minimap sits in the canvas's bottom-right corner: clicking its centre moves the view.
    let map_centre = canvas.right_bottom() - egui::vec2(110.0, 75.0);
    h.hover_at(map_centre);
    h.step();
    h.drag_at(map_centre);
    h.step();
    h.drop_at(map_centre);
    for _ in 0..3 {
        h.step();
    }
    let moved = h.state().canvas_transform;
    assert_eq!(moved.scaling, t.scaling, "the minimap keeps the zoom");
    assert_ne!(moved.translation, t.translation, "the view moved");
}

/// G frames the selected node; dragging the frame's title bar moves it and the node inside by
/// the same amount; each is one undo step.
#[test]
fn a_frame_groups_nodes_and_moves_them() {
    let mut ed = Editor::new(registry());
    let a = ed.add_node("onnx.model", [0.0, 0.0]).unwrap();
    let b = ed.add_node("onnx.layer_probe", [600.0, 0.0]).unwrap();
    ed.stop();
    ed.selected = Some(a);
    let mut h = harness(ed);
    for _ in 0..4 {
        h.step();
    }
    h.key_press(egui::Key::G);
    for _ in 0..3 {
        h.step();
    }
    let (frame, pos_a, pos_b) = {
        let ed = h.state();
        assert_eq!(ed.graph().frames.len(), 1);
        let pos = |id| ed.graph().node(id).unwrap().position;
        (ed.graph().frames[0].clone(), pos(a), pos(b))
    };
    let area = quantgraph_ui::frames::rect_of(&frame);
    assert!(area.contains(egui::pos2(pos_a[0], pos_a[1])), "the frame holds the selected node");
    assert!(!area.contains(egui::pos2(pos_b[0], pos_b[1])), "and not the other one");
    // Drag its title bar 60 px right (screen), i.e. 60 / zoom canvas units.
    let t = h.state().canvas_transform;
    let bar = t.mul_pos(area.min + egui::vec2(40.0, quantgraph_ui::frames::TITLE / 2.0));
    h.hover_at(bar);
    h.step();
    h.drag_at(bar);
    h.step();
    for i in 1..=6 {
        h.hover_at(bar + egui::vec2(10.0 * i as f32, 0.0));
        h.step();
    }
    h.drop_at(bar + egui::vec2(60.0, 0.0));
    for _ in 0..3 {
        h.step();
    }
    let ed = h.state_mut();
    let moved = ed.graph().frames[0].rect[0] - frame.rect[0];
    assert!(moved > 10.0, "the frame moved: {moved}");
    let node_moved = ed.graph().node(a).unwrap().position[0] - pos_a[0];
    assert!((node_moved - moved).abs() < 1e-3, "its node moved with it: {node_moved} vs {moved}");
    assert_eq!(ed.graph().node(b).unwrap().position, pos_b, "the node outside stays");
    ed.undo();
    assert_eq!(ed.graph().frames[0], frame, "one undo step undoes the drag");
    ed.undo();
    assert!(ed.graph().frames.is_empty(), "and one more removes the frame");
}

/// Activation maps from the flip drill-down: with a layer selected, clicking a flipped
/// sample and "Activation maps of …" adds one maps node fed by the comparator's probes (one
/// undo step), selects it, and its view shows A, B and |A − B| per channel; the arrow keys
/// step channels and samples.
#[test]
fn a_flipped_samples_activation_maps_open_from_the_drill_down() {
    use quantgraph_nodes::value::Cell;
    let mut ed = default_graph_on_100_images();
    let compare = ed.graph().find_node("compare").unwrap();
    let nodes_before = ed.graph().len();
    let flips = match ed.outputs(compare).unwrap().get("report") {
        Some(quantgraph_nodes::Value::Table(r)) => r.table("flips").unwrap().clone(),
        _ => panic!("no report"),
    };
    assert!(!flips.rows.is_empty(), "100 images give some flips");
    let sample = flips.rows[0][0].as_f64().unwrap() as usize;
    ed.selected = Some(compare);
    ed.select_tensor("/stage2/Relu_1_output_0".into());
    let mut h = tall_harness(ed);
    settle(&mut h);
    let header = format!("flips ({} rows)", flips.rows.len());
    h.get_by_label(&header).click();
    settle(&mut h);
    // The first flip's row, by its A probability, under the flips header.
    let col = flips.column("p_a_pct").unwrap();
    let Cell::Num(p) = flips.rows[0][col] else { panic!("{:?}", flips.rows[0]) };
    let text = quantgraph_ui::views::format_figure("p_a_pct", p, false);
    let below = h.get_by_label(&header).rect().bottom();
    // (By accesskit: the row's last cell is under the inspector's scroll bar.)
    h.query_all_by_label(&text).find(|n| n.rect().top() > below).expect("the flip's row").click_accesskit();
    settle(&mut h);
    h.get_by_label_contains("Activation maps of /stage2/Relu_1_output_0").click();
    settle(&mut h);
    let maps = {
        let ed = h.state();
        assert_eq!(ed.graph().len(), nodes_before + 1);
        let maps = ed.selected.expect("the maps node is selected");
        let n = ed.graph().node(maps).unwrap();
        assert_eq!(n.kind, "compare.activation_maps");
        assert_eq!(n.params["tensor"], "/stage2/Relu_1_output_0");
        assert_eq!(n.params["samples"], format!("{sample}, flips"));
        for (port, probe) in [("a", "probe_fp32"), ("b", "probe_int8")] {
            let src = ed.graph().source_of(&PortRef::new(maps, port)).unwrap();
            assert_eq!(ed.graph().node(src.node).unwrap().label.as_deref(), Some(probe));
        }
        assert!(matches!(ed.statuses.get(&maps), Some(NodeStatus::Ready { .. })), "{:?}", ed.statuses.get(&maps));
        maps
    };
    // The grids and the chosen channel, each for A, B and |A − B|.
    assert_eq!(h.query_all_by_label("|A − B|").count(), 2);
    h.get_by_label("Channel 0 of 32");
    // The clicked flip, then the other flips (it is one of them: listed once).
    let shown = flips.rows.len().min(16);
    assert!(shown >= 2, "{shown}");
    h.get_by_value(&format!("sample {sample} (asked) · 1 of {shown}"));
    h.key_press(egui::Key::ArrowDown);
    settle(&mut h);
    h.get_by_label("Channel 1 of 32");
    h.key_press(egui::Key::ArrowRight);
    settle(&mut h);
    assert!(h.query_by_value(&format!("sample {sample} (asked) · 1 of {shown}")).is_none());
    let second = flips.rows[1][0].as_f64().unwrap() as usize;
    h.get_by_value(&format!("sample {second} (flip) · 2 of {shown}"));
    // Opening it again reuses the node; undo removes what the first click added.
    let ed = h.state_mut();
    assert_eq!(quantgraph_ui::maps_view::open_maps(ed, compare, "/stage3/Relu_output_0", sample), Some(maps));
    assert_eq!(ed.graph().len(), nodes_before + 1);
    ed.undo();
    assert_eq!(ed.graph().node(maps).unwrap().params["tensor"], "/stage2/Relu_1_output_0");
    ed.undo();
    assert!(ed.graph().node(maps).is_none());
    assert_eq!(ed.graph().len(), nodes_before);
}

/// Per-channel weights in the drag table: the channel field starts at "all" (a factor on
/// every channel); dragging it picks one channel, and dragging the scale then writes an edit
/// of that channel alone to the override.
#[test]
fn a_per_channel_weights_single_channel_is_dragged() {
    let mut ed = default_graph_on_100_images();
    let int8 = ed.graph().find_node("int8").unwrap();
    let over = ed.graph().find_node("override").unwrap();
    let model = repo().join("tests/fixtures/foreign/resnet8_perchannel_qdq.onnx");
    ed.set_param(int8, "path", model.to_string_lossy().as_ref().into());
    assert!(ed.wait_idle(Duration::from_secs(120)));
    let Some(quantgraph_nodes::Value::Model(m)) = ed.outputs(int8).unwrap().get("model").cloned() else { panic!() };
    let w = m.info.qdq.iter().find(|e| e.is_weight && e.scales.len() > 4).unwrap().clone();
    ed.selected = Some(int8);
    let mut h = tall_harness(ed);
    settle(&mut h);
    let drag = |h: &mut Harness<'static, Editor>, from: egui::Pos2, dx: f32| {
        h.hover_at(from);
        h.step();
        h.drag_at(from);
        h.step();
        for i in 1..=10 {
            h.hover_at(from + egui::vec2(dx * i as f32 / 10.0, 0.0));
            h.step();
        }
        h.drop_at(from + egui::vec2(dx, 0.0));
        h.step();
        settle(h);
    };
    // The weight's row: its scale field is labelled by the tensor; the channel field is the
    // "all" spin button left of it on the same row.
    let factor = h
        .query_all_by_label(&w.float_tensor)
        .find(|n| n.accesskit_node().role() == egui::accesskit::Role::SpinButton)
        .map(|n| n.rect())
        .expect("the weight's factor field");
    let channel = h
        .query_all_by_value("all")
        .map(|n| n.rect())
        .find(|r| (r.center().y - factor.center().y).abs() < 4.0 && r.right() <= factor.left() + 1.0)
        .expect("the weight's channel field");
    // 0.1 per point: dragging right moves "all" (-1) to a channel (a few, after egui's drag
    // threshold).
    drag(&mut h, channel.center(), 40.0);
    let chosen = h
        .query_all(egui_kittest::kittest::by().role(egui::accesskit::Role::SpinButton))
        .find(|n| (n.rect().center().y - channel.center().y).abs() < 2.0 && n.rect().left() < factor.left())
        .and_then(|n| n.accesskit_node().value().map(|v| v.to_string()))
        .expect("the channel field");
    let k: usize = chosen.strip_prefix("ch ").and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{chosen}"));
    assert!(k >= 1, "{chosen}");
    let scale = h
        .query_all_by_label(&w.float_tensor)
        .find(|n| n.accesskit_node().role() == egui::accesskit::Role::SpinButton)
        .map(|n| n.rect())
        .unwrap();
    drag(&mut h, scale.center(), 60.0);
    let ed = h.state_mut();
    let edits = ed.graph().node(over).unwrap().params["edits"].as_array().cloned().unwrap();
    let rows: Vec<&serde_json::Value> = edits.iter().filter(|r| r["tensor"] == w.float_tensor.as_str()).collect();
    assert_eq!(rows.len(), 1, "{edits:?}");
    assert_eq!(rows[0]["channel"], k.to_string());
    let s = rows[0]["scale"].as_f64().unwrap();
    assert!(s > f64::from(w.scales[k]) * 1.05, "dragging right raises channel {k}'s scale: {s} vs {}", w.scales[k]);
    // The override wrote exactly that channel.
    let Some(quantgraph_nodes::Value::Model(out)) = ed.outputs(over).unwrap().get("model").cloned() else { panic!() };
    let got = out.info.qdq.iter().find(|e| e.node == w.node).unwrap();
    for (c, (g, o)) in got.scales.iter().zip(&w.scales).enumerate() {
        if c == k {
            assert!((f64::from(*g) - s).abs() <= s * 1e-6, "{g} vs {s}");
        } else {
            assert_eq!(g, o, "channel {c} is unchanged");
        }
    }
}

/// A model from another exporter names its tensors differently from A: a per-layer row pairs
/// A's `/stage2/...` with B's TF-style name. Clicking the row selects both names: the graph
/// view (B's model) marks B's op; clicking another op in the graph marks that op's row
/// (keyed by A's name) in the table.
#[test]
fn selection_follows_a_pair_whose_names_differ() {
    let mut ed = default_graph_on_100_images();
    let int8 = ed.graph().find_node("int8").unwrap();
    let model = repo().join("tests/fixtures/foreign/foreign_int8_qdq.onnx");
    ed.set_param(int8, "path", model.to_string_lossy().as_ref().into());
    assert!(ed.wait_idle(Duration::from_secs(120)));
    let compare = ed.graph().find_node("compare").unwrap();
    let t = match ed.outputs(compare).unwrap().get("report") {
        Some(quantgraph_nodes::Value::Table(r)) => r.table("per_layer").unwrap().clone(),
        other => panic!("{other:?}"),
    };
    let (ca, cb) = (t.column("tensor").unwrap(), t.column("b_tensor").unwrap());
    let pairs: Vec<(String, String)> = t
        .rows
        .iter()
        .map(|r| (r[ca].to_string(), r[cb].to_string()))
        .filter(|(a, b)| a != b && a.starts_with("/stage"))
        .collect();
    assert!(pairs.len() >= 2, "{pairs:?}");
    ed.selected = Some(compare);
    let mut h = tall_harness(ed);
    settle(&mut h);
    h.get_by_label("Graph view with per-layer error").click();
    settle(&mut h);
    // The table row (A's name) → B's op in the graph.
    let (a0, b0) = &pairs[0];
    let label = quantgraph_nodes::value::elide_middle(a0, 44);
    h.query_all_by_label(&label)
        .find(|n| n.accesskit_node().toggled().is_some())
        .expect("the per-layer row")
        .click_accesskit();
    settle(&mut h);
    assert!(h.state().is_selected_tensor(a0) && h.state().is_selected_tensor(b0));
    let view = h.state().graph_view.as_ref().unwrap();
    let op = view.layout.ops.iter().find(|o| o.output == view.resolve(b0)).cloned();
    let op = op.unwrap_or_else(|| panic!("B's graph has an op making {b0}"));
    let marked = h
        .query_all_by_label(&format!("{} {}", op.op_type, op.name))
        .any(|n| n.accesskit_node().toggled() == Some(egui::accesskit::Toggled::True));
    assert!(marked, "the graph marks B's op {}", op.name);
    // An op in the graph (B's name) → its row (A's name) in the table.
    let (a1, b1) = &pairs[1];
    let view = h.state().graph_view.as_ref().unwrap();
    let op = view.layout.ops.iter().find(|o| o.output == view.resolve(b1)).cloned().unwrap();
    let rect = h.get_by_label(&format!("{} {}", op.op_type, op.name)).rect();
    let tf = h.ctx.data(|d| d.get_temp::<egui::emath::TSTransform>(egui::Id::new("qg_graph_transform"))).unwrap();
    let at = tf.mul_pos(rect.center());
    h.hover_at(at);
    h.step();
    h.drag_at(at);
    h.step();
    h.drop_at(at);
    h.step();
    settle(&mut h);
    assert_eq!(h.state().selected_tensor.as_deref(), Some(op.output.as_str()));
    assert!(h.state().is_selected_tensor(a1) && h.state().is_selected_tensor(b1));
    let row_marked = h
        .query_all_by_label(&quantgraph_nodes::value::elide_middle(a1, 44))
        .any(|n| n.accesskit_node().toggled() == Some(egui::accesskit::Toggled::True));
    assert!(row_marked, "the per-layer row of {a1} is marked");
}

/// A probe of a model no QDQ Override reads: its histogram offers to insert one (the click is
/// the consent); after it, the clip range has handles that write to the new override.
#[test]
fn a_histogram_without_an_override_offers_to_insert_one() {
    let mut ed = default_graph_on_100_images();
    let (int8, probe) = (ed.graph().find_node("int8").unwrap(), ed.graph().find_node("probe_int8").unwrap());
    let over = ed.graph().find_node("override").unwrap();
    ed.delete(&[over]);
    ed.connect(PortRef::new(int8, "model"), PortRef::new(probe, "model")).unwrap();
    assert!(ed.wait_idle(Duration::from_secs(120)));
    let nodes_before = ed.graph().len();
    ed.selected = Some(probe);
    let mut h = tall_harness(ed);
    settle(&mut h);
    assert!(h.query_by_label_contains("Drag a red edge").is_none(), "no handles without an override");
    h.get_by_label("Insert a QDQ Override to drag the clip range").click();
    settle(&mut h);
    {
        let ed = h.state();
        assert_eq!(ed.graph().len(), nodes_before + 1);
        let new = ed.graph().nodes().find(|n| n.kind == "onnx.qdq_override").map(|n| n.id).unwrap();
        assert_eq!(ed.graph().source_of(&PortRef::new(new, "model")), Some(&PortRef::new(int8, "model")));
        assert_eq!(ed.graph().source_of(&PortRef::new(probe, "model")), Some(&PortRef::new(new, "model")));
    }
    h.get_by_label_contains("Drag a red edge");
    h.state_mut().undo();
    assert_eq!(h.state().graph().len(), nodes_before);
}

/// Twenty generated 32×32 images in CIFAR-10's class folders (never dataset pixels in a
/// committed snapshot): smooth gradients tinted by class. At a fixed path, since the dataset
/// view shows it.
fn generated_images() -> PathBuf {
    let dir = std::path::PathBuf::from("/tmp/quantgraph-snapshot-images");
    let classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
    for (c, class) in classes.iter().enumerate() {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for k in 0..2u32 {
            let img = image::RgbImage::from_fn(32, 32, |x, y| {
                let t = (x * 7 + y * 3 + k * 40 + c as u32 * 25) % 256;
                image::Rgb([t as u8, ((c as u32 * 23 + y * 8) % 256) as u8, (255 - t) as u8])
            });
            img.save(dir.join(class).join(format!("{k}.png"))).unwrap();
        }
    }
    dir
}

/// Evaluated nodes look as they did: the default graph on generated images, each node
/// selected in turn (dataset thumbnails, the Q/DQ table, a probe's histogram with the grid,
/// the comparator's report, and each plot kind on the canvas).
#[test]
fn evaluated_nodes_look_as_they_did() {
    let mut ed = Editor::new(registry());
    assert!(ed.open(&repo().join("assets/graphs/default.qgraph")), "{:?}", ed.message);
    let ds = ed.graph().find_node("cifar10_test").unwrap();
    ed.set_param(ds, "format", "image-folder".into());
    ed.set_param(ds, "path", generated_images().to_string_lossy().as_ref().into());
    ed.set_param(ds, "per_class", 0.into());
    ed.set_param(ds, "count", 0.into());
    // The models from a fixed folder too: the model view shows their path, which must not
    // depend on where the repository is checked out.
    let models = std::path::PathBuf::from("/tmp/quantgraph-snapshot-models");
    std::fs::create_dir_all(&models).unwrap();
    for (label, file) in [("fp32", "resnet8_fp32.onnx"), ("int8", "resnet8_int8_qdq.onnx")] {
        std::fs::copy(repo().join("models").join(file), models.join(file)).unwrap();
        let id = ed.graph().find_node(label).unwrap();
        ed.set_param(id, "path", models.join(file).to_string_lossy().as_ref().into());
    }
    // The plots a little to the right: where nodes overlap, which one is drawn on top
    // depends on the order they were last touched.
    ed.edit(|g, _| {
        for l in ["sqnr_plot", "class_plot", "confusion_plot"] {
            if let Some(n) = g.find_node(l).and_then(|id| g.node_mut(id)) {
                n.position[0] += 80.0;
            }
        }
    });
    // The plot kinds the default graph lacks: a line chart and a sample grid.
    ed.edit(|g, r| {
        let (ds, compare) = (g.find_node("cifar10_test").unwrap(), g.find_node("compare").unwrap());
        let line = g.add_node(r, "plot.chart", [1400.0, 900.0]).unwrap();
        g.node_mut(line).unwrap().label = Some("line_plot".into());
        for (k, v) in [("kind", "line"), ("table", "per_layer"), ("y", "sqnr_db,qdq_err_db"), ("title", "Per-layer")] {
            g.set_param(line, k, v.into()).unwrap();
        }
        g.connect(r, PortRef::new(compare, "report"), PortRef::new(line, "table")).unwrap();
        let grid = g.add_node(r, "plot.samples", [1400.0, 1200.0]).unwrap();
        g.node_mut(grid).unwrap().label = Some("sample_grid".into());
        g.set_param(grid, "max_images", 12.into()).unwrap();
        g.connect(r, PortRef::new(ds, "dataset"), PortRef::new(grid, "dataset")).unwrap();
    });
    assert!(ed.wait_idle(Duration::from_secs(120)));
    let labels = [
        "cifar10_test",
        "int8",
        "probe_int8",
        "compare",
        "class_plot",
        "confusion_plot",
        "int8_histogram",
        "line_plot",
        "sample_grid",
    ];
    let ids: Vec<_> = labels.iter().map(|l| ed.graph().find_node(l).unwrap()).collect();
    for id in &ids {
        assert!(matches!(ed.statuses.get(id), Some(NodeStatus::Ready { .. })), "{id}: {:?}", ed.statuses.get(id));
    }
    // Whether capturing tensors changes the INT8 model's outputs depends on the CPU's
    // integer kernels (ONNX Runtime fuses Q/DQ pairs differently with and without VNNI): the
    // probe says so in a note, so there is a snapshot of each case.
    let probe_int8 = ed.graph().find_node("probe_int8").unwrap();
    let changed = match ed.outputs(probe_int8).and_then(|o| o.get("activations")) {
        Some(quantgraph_nodes::Value::Activations(a)) => a.notes.iter().any(|n| n.starts_with("probing changed")),
        other => panic!("{other:?}"),
    };
    let mut h = harness(ed);
    let mut failures = Vec::new();
    for (label, id) in labels.iter().zip(ids) {
        h.state_mut().selected = Some(id);
        settle(&mut h);
        let name = match (*label, changed) {
            ("probe_int8", false) => "evaluated_probe_int8_unchanged_by_probing".to_owned(),
            _ => format!("evaluated_{label}"),
        };
        if let Err(e) = inspector_snapshot(&mut h, &name, &format!("{label} (#{})", id.0)) {
            failures.push(format!("{label}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A snapshot of the inspector (the panel right of the canvas, from its heading): the
/// canvas's framing settles over frames and can differ by a fraction of a pixel from run to
/// run, which would move every wire; the inspector's content does not move.
fn inspector_snapshot(h: &mut Harness<'static, Editor>, name: &str, heading: &str) -> Result<(), String> {
    let left = h.get_by_label(heading).rect().left() - 8.0;
    let img = h.render()?;
    let x = ((left * h.ctx.pixels_per_point()).max(0.0) as u32).min(img.width() - 1);
    let cropped = image::imageops::crop_imm(&img, x, 0, img.width() - x, img.height()).to_image();
    egui_kittest::try_image_snapshot_options(&cropped, name, &snapshot_options()).map_err(|e| e.to_string())
}

/// Edit rows of one per-channel tensor: a whole-tensor row always goes before its channel
/// rows (rows apply in order, so a channel's own value wins), whichever was edited first.
#[test]
fn a_whole_tensor_edit_goes_before_channel_edits() {
    use quantgraph_ui::qdq_edit::{set_edit_at, Change, Target};
    let registry = registry();
    let mut g = quantgraph_nodes::graph::Graph::new();
    let over = g.add_node(&registry, "onnx.qdq_override", [0.0, 0.0]).unwrap();
    let t = Target { node: over, param: "edits" };
    set_edit_at(&mut g, &t, "w", Some(3), Change::Scale(0.01));
    set_edit_at(&mut g, &t, "w", None, Change::Factor(2.0));
    set_edit_at(&mut g, &t, "w", Some(1), Change::Scale(0.02));
    let rows = g.node(over).unwrap().params["edits"].as_array().cloned().unwrap();
    let channels: Vec<&str> = rows.iter().map(|r| r["channel"].as_str().unwrap()).collect();
    assert_eq!(channels, ["", "3", "1"]);
    // The override's schema takes the rows as written.
    assert!(g.validate(&registry).iter().all(|(_, m)| !m.contains("edits")), "{:?}", g.validate(&registry));
}

/// Export ONNX writes the model and its sidecar beside the graph, replaces an earlier
/// sidecar, never writes onto a file a node reads, and writes nothing when the sidecar
/// cannot be made.
#[test]
fn export_writes_model_and_sidecar_beside_the_graph_and_never_over_a_source() {
    let dir = tempfile_dir();
    let mut ed = Editor::new(registry());
    let m = ed.add_node("onnx.model", [0.0, 0.0]).unwrap();
    assert!(ed.save_as(&dir.join("g.qgraph")));
    std::fs::write(dir.join("source.onnx"), b"the source model").unwrap();
    ed.set_param(m, "path", "source.onnx".into());

    std::fs::write(dir.join("fixed.onnx.json"), b"an earlier export's sidecar").unwrap();
    ed.export_model("fixed", b"model bytes", Ok(b"{\"node\": \"fixed\"}".to_vec()));
    assert!(ed.message.as_deref().unwrap().starts_with("Wrote"), "{:?}", ed.message);
    assert_eq!(std::fs::read(dir.join("fixed.onnx")).unwrap(), b"model bytes");
    assert_eq!(std::fs::read(dir.join("fixed.onnx.json")).unwrap(), b"{\"node\": \"fixed\"}");

    ed.export_model("source", b"model bytes", Ok(b"{}".to_vec()));
    assert!(ed.message.as_deref().unwrap().starts_with("Not exported"), "{:?}", ed.message);
    assert_eq!(std::fs::read(dir.join("source.onnx")).unwrap(), b"the source model");
    assert!(!dir.join("source.onnx.json").exists());

    ed.export_model("other", b"model bytes", Err("no sidecar".into()));
    assert!(ed.message.as_deref().unwrap().contains("no sidecar"), "{:?}", ed.message);
    assert!(!dir.join("other.onnx").exists());
    let _ = std::fs::remove_dir_all(dir);
}
