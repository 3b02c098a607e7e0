//! The `quantgraph` command line, end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn qg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_quantgraph"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn nodes_lists_every_registered_kind_with_ports_params_and_docs() {
    let out = qg().arg("nodes").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for id in [
        "dataset.cifar10",
        "onnx.model",
        "onnx.qdq_override",
        "onnx.layer_probe",
        "compare.comparator",
        "plot.chart",
        "plot.histogram",
        "plot.samples",
    ] {
        assert!(text.contains(&format!("{id} (v")), "{id} missing from:\n{text}");
    }
    assert!(text.contains("in  dataset: Dataset (optional)"));
    assert!(text.contains("param rule_factor = 1.0"));
    let json = qg().args(["nodes", "--json"]).output().unwrap();
    let kinds: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let registry = quantgraph_app::registry().unwrap();
    assert_eq!(kinds.as_array().unwrap().len(), registry.len());
}

#[test]
fn check_accepts_the_bundled_graphs_and_reports_problems_with_a_nonzero_exit() {
    let out = qg().args(["check", "assets/graphs/default.qgraph"]).current_dir(repo()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.qgraph");
    std::fs::write(
        &bad,
        r#"{"format":"quantgraph","format_version":1,"nodes":[
            {"id":1,"kind":"onnx.model","kind_version":1,"position":[0,0],"params":{"path":"m.onnx","threads":-3}},
            {"id":2,"kind":"onnx.layer_probe","kind_version":1,"position":[0,0],"params":{}},
            {"id":3,"kind":"dataset.cifar10","kind_version":1,"position":[0,0],"params":{}},
            {"id":4,"kind":"no.such_kind","kind_version":1,"position":[0,0],"params":{}}],
           "wires":[{"from":{"node":3,"port":"dataset"},"to":{"node":2,"port":"model"}}]}"#,
    )
    .unwrap();
    let out = qg().arg("check").arg(&bad).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!out.status.success());
    assert!(text.contains("parameter 'threads': expected an integer in [0, 256], found -3"), "{text}");
    assert!(text.contains("input 'dataset': not connected"), "{text}");
    assert!(text.contains("input 'model': Dataset output cannot feed a Model input"), "{text}");
    assert!(text.contains("unknown node kind 'no.such_kind'"), "{text}");
}

#[test]
fn malformed_graph_files_give_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.qgraph");
    std::fs::write(&bad, "{\n  \"format\": \"quantgraph\",\n  \"nodes\": [,]\n}\n").unwrap();
    let out = qg().arg("check").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("malformed graph file at line 3, column 13"), "{err}");
    assert!(err.contains("broken.qgraph"), "{err}");
}

/// A graph over the tiny fixture models and a generated image folder: run it headless,
/// with `--set`, `--json` and `--out`.
#[test]
fn run_evaluates_every_sink_and_writes_json_csv_and_png() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    for (c, class) in ["cats", "dogs"].iter().enumerate() {
        std::fs::create_dir_all(images.join(class)).unwrap();
        for i in 0..3u8 {
            let img = image::RgbImage::from_fn(32, 32, |x, y| {
                image::Rgb([x as u8 * 8, y as u8 * 8, (c as u8) * 100 + i * 20])
            });
            img.save(images.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    let fixtures = repo().join("tests/fixtures/tiny");
    let graph = std::fs::read_to_string(repo().join("assets/graphs/default.qgraph")).unwrap();
    let path = dir.path().join("g.qgraph");
    std::fs::write(&path, graph).unwrap();
    let out_dir = dir.path().join("out");
    let out = qg()
        .arg("run")
        .arg(&path)
        .args(["--set", &format!("fp32.path={}", fixtures.join("tiny_fp32.onnx").display())])
        .args(["--set", &format!("int8.path={}", fixtures.join("tiny_qdq.onnx").display())])
        .args(["--set", &format!("cifar10_test.path={}", images.display())])
        .args([
            "--set",
            "cifar10_test.format=image-folder",
            "--set",
            "cifar10_test.per_class=0",
            "--set",
            "cifar10_test.count=0",
            // Two image classes, ten model outputs: accuracy only when asked for.
            "--set",
            "compare.classification=always",
        ])
        .arg("--json")
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &json["nodes"]["7"]["outputs"]["report"];
    assert_eq!(report["summary"]["samples"], 6.0);
    assert!(report["summary"]["accuracy_a"].is_number());
    let per_layer = report["tables"].as_array().unwrap().iter().find(|t| t["name"] == "per_layer").unwrap();
    assert!(per_layer["rows"].as_array().unwrap().len() >= 4);
    for f in ["results.json", "sqnr_plot.plot.png", "confusion_plot.plot.png", "compare.report.per_layer.csv"] {
        assert!(out_dir.join(f).is_file(), "{f} not written");
    }
    // The PNGs decode and show a chart, not a blank canvas.
    for f in ["sqnr_plot.plot.png", "confusion_plot.plot.png"] {
        let img = image::open(out_dir.join(f)).unwrap().to_rgb8();
        assert!(img.width() >= 320 && img.height() >= 200, "{f}: {}×{}", img.width(), img.height());
        let background = *img.get_pixel(0, 0);
        let drawn = img.pixels().filter(|p| **p != background).count();
        assert!(drawn > (img.width() * img.height() / 100) as usize, "{f}: only {drawn} pixels drawn");
    }
}

#[test]
fn a_missing_model_fails_on_its_node_and_the_rest_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images/only");
    std::fs::create_dir_all(&images).unwrap();
    image::RgbImage::from_pixel(32, 32, image::Rgb([1, 2, 3])).save(images.join("a.png")).unwrap();
    let path = dir.path().join("g.qgraph");
    std::fs::copy(repo().join("assets/graphs/default.qgraph"), &path).unwrap();
    let tiny = repo().join("tests/fixtures/tiny/tiny_qdq.onnx");
    let out = qg()
        .arg("run")
        .arg(&path)
        .args(["--set", "fp32.path=does/not/exist.onnx"])
        .args(["--set", &format!("int8.path={}", tiny.display())])
        .args(["--set", &format!("cifar10_test.path={}", dir.path().join("images").display())])
        .args(["--set", "cifar10_test.format=image-folder", "--set", "cifar10_test.per_class=0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let missing = Path::new(dir.path()).join("does/not/exist.onnx");
    assert!(
        text.contains(&format!(
            "fp32 (#2) [failed: the model: cannot read (No such file or directory (os error 2)): {}]",
            missing.display()
        )),
        "{text}"
    );
    assert!(text.contains("probe_fp32 (#5) [blocked by fp32 (#2)]"), "{text}");
    assert!(text.contains("probe_int8 (#6) [ok]"), "{text}");
    assert!(text.contains("int8_histogram (#11) [ok]"), "{text}");
}

#[test]
fn export_writes_the_overridden_model_and_leaves_the_source_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("edited.onnx");
    let source = repo().join("models/resnet8_int8_qdq.onnx");
    let before = std::fs::read(&source).unwrap();
    let status = qg()
        .args(["export", "assets/graphs/default.qgraph", "override"])
        .arg(&out)
        .args(["--set", r#"override.edits=[{"tensor":"/stage3/Relu_output_0","scale":0.125}]"#])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let written = std::fs::read(&out).unwrap();
    assert_ne!(written, before);
    assert_eq!(std::fs::read(&source).unwrap(), before);
    // The written model loads, with the new scale.
    let graph = dir.path().join("g.qgraph");
    std::fs::write(&graph, format!(r#"{{"format":"quantgraph","format_version":1,"nodes":[{{"id":1,"kind":"onnx.model","kind_version":1,"label":"m","position":[0,0],"params":{{"path":"{}"}}}}],"wires":[]}}"#, out.display())).unwrap();
    let r = qg().arg("run").arg(&graph).arg("--json").output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let qdq = json["nodes"]["1"]["outputs"]["model"]["qdq"].as_array().unwrap();
    let entry = qdq.iter().find(|e| e["float_tensor"] == "/stage3/Relu_output_0").unwrap();
    assert_eq!(entry["scales"][0], 0.125);
}

#[test]
fn a_missing_onnx_runtime_library_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let graph = dir.path().join("g.qgraph");
    let model = repo().join("tests/fixtures/tiny/tiny_fp32.onnx");
    std::fs::write(&graph, format!(r#"{{"format":"quantgraph","format_version":1,"nodes":[{{"id":1,"kind":"onnx.model","kind_version":1,"position":[0,0],"params":{{"path":"{}"}}}}],"wires":[]}}"#, model.display())).unwrap();
    let out =
        qg().arg("run").arg(&graph).env("ORT_DYLIB_PATH", dir.path().join("nope/libonnxruntime.so")).output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("ONNX Runtime 1.31.1 was not found. Run `scripts/ensure-ort.sh`"), "{text}");
    assert!(text.contains("or set ORT_DYLIB_PATH"), "{text}");
}

/// A copy of the default graph over the tiny fixture models and a generated image folder.
fn tiny_setup(dir: &Path) -> (PathBuf, Vec<String>) {
    let images = dir.join("images");
    for (c, class) in ["cats", "dogs"].iter().enumerate() {
        std::fs::create_dir_all(images.join(class)).unwrap();
        for i in 0..2u8 {
            image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8 * 8, y as u8 * 8, (c as u8) * 100 + i * 20]))
                .save(images.join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let fixtures = repo().join("tests/fixtures/tiny");
    let path = dir.join("g.qgraph");
    std::fs::copy(repo().join("assets/graphs/default.qgraph"), &path).unwrap();
    let sets = vec![
        format!("fp32.path={}", fixtures.join("tiny_fp32.onnx").display()),
        format!("int8.path={}", fixtures.join("tiny_qdq.onnx").display()),
        format!("cifar10_test.path={}", images.display()),
        "cifar10_test.format=image-folder".into(),
        "cifar10_test.per_class=0".into(),
        "cifar10_test.count=0".into(),
        "compare.classification=always".into(),
    ];
    (path, sets)
}

fn run_tiny(dir: &Path, extra: &[&str]) -> std::process::Output {
    let (path, sets) = tiny_setup(dir);
    let mut cmd = qg();
    cmd.arg("run").arg(&path);
    for s in &sets {
        cmd.args(["--set", s]);
    }
    cmd.args(extra).output().unwrap()
}

#[test]
fn misspelled_fields_non_finite_values_and_ambiguous_labels_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_tiny(dir.path(), &["--set", r#"override.edits=[{"tensor":"relu1","sacle":0.5}]"#]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unknown field 'sacle' (expected one of tensor, scale, factor, zero_point, channel, apply_to)"),
        "{stderr}"
    );

    let out = run_tiny(dir.path(), &["--set", "cifar10_test.mean=NaN"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("--set cifar10_test.mean=NaN: parameter 'mean': expected finite numbers, found 'NaN'"),
        "{text}"
    );
    let out = run_tiny(dir.path(), &["--set", "cifar10_test.mean=0.5,0.5"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("parameter 'mean': expected none, 1 or 3 numbers, found 2 numbers"), "{text}");

    // Numbers are given comma-separated (or as a JSON list).
    let out = run_tiny(dir.path(), &["--set", "cifar10_test.mean=0.5", "--set", "cifar10_test.std=[0.5, 0.5, 0.5]"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Two nodes labelled alike: refused by label, with the candidates; `check` warns.
    let (path, _) = tiny_setup(dir.path());
    let text = std::fs::read_to_string(&path).unwrap().replace("\"label\": \"fp32\"", "\"label\": \"int8\"");
    std::fs::write(&path, text).unwrap();
    let out = qg().arg("run").arg(&path).args(["--set", "int8.threads=1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("2 nodes are labelled 'int8' (#2, #3)"), "{stderr}");
    let out = qg().arg("check").arg(&path).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: 2 nodes are labelled 'int8'"));
}

#[test]
fn run_refuses_what_check_refuses_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cycle.qgraph");
    std::fs::write(
        &path,
        r#"{"format":"quantgraph","format_version":1,"nodes":[
            {"id":1,"kind":"onnx.qdq_override","kind_version":1,"position":[0,0],"params":{}},
            {"id":2,"kind":"onnx.qdq_override","kind_version":1,"position":[0,0],"params":{}}],
           "wires":[{"from":{"node":1,"port":"model"},"to":{"node":2,"port":"model"}},
                    {"from":{"node":2,"port":"model"},"to":{"node":1,"port":"model"}}]}"#,
    )
    .unwrap();
    let out = qg().arg("run").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("the graph has a cycle"), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains('▶'), "nothing may run");
}

#[test]
fn out_dirs_are_checked_first_and_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    // Not writable (its parent is a file): refused before the evaluation starts.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let out = run_tiny(dir.path(), &["--out", blocker.join("out").to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--out") && !stderr.contains('▶'), "{stderr}");
    // A folder with other content is never mixed into.
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), b"keep").unwrap();
    let out = run_tiny(dir.path(), &["--out", mine.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 1);
    // Written whole, with a manifest; a rerun replaces it as a whole.
    let results = dir.path().join("results");
    let out = run_tiny(dir.path(), &["--out", results.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join("manifest.json")).unwrap()).unwrap();
    let files = manifest["files"].as_array().unwrap();
    assert!(files.iter().any(|f| f["file"] == "results.json"));
    for f in files {
        assert!(results.join(f["file"].as_str().unwrap()).is_file());
    }
    std::fs::write(results.join("stale.png"), b"old").unwrap();
    let out = run_tiny(dir.path(), &["--out", results.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(!results.join("stale.png").exists());
}

#[test]
fn export_refuses_to_overwrite_its_source_and_writes_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.onnx");
    std::fs::copy(repo().join("tests/fixtures/tiny/tiny_qdq.onnx"), &model).unwrap();
    let graph = dir.path().join("g.qgraph");
    std::fs::write(
        &graph,
        r#"{"format":"quantgraph","format_version":1,"nodes":[
            {"id":1,"kind":"onnx.model","kind_version":1,"label":"m","position":[0,0],"params":{"path":"m.onnx"}},
            {"id":2,"kind":"onnx.qdq_override","kind_version":1,"label":"o","position":[0,0],"params":{"edits":[{"tensor":"relu1","scale":0.5}]}}],
           "wires":[{"from":{"node":1,"port":"model"},"to":{"node":2,"port":"model"}}]}"#,
    )
    .unwrap();
    let before = std::fs::read(&model).unwrap();
    let out = qg().arg("export").arg(&graph).arg("o").arg(&model).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("would overwrite the source"), "{:?}", out);
    assert_eq!(std::fs::read(&model).unwrap(), before);
    // An export that fails (bad edit) leaves an existing target as it was.
    let target = dir.path().join("edited.onnx");
    std::fs::write(&target, b"previous export").unwrap();
    let out = qg()
        .arg("export")
        .arg(&graph)
        .arg("o")
        .arg(&target)
        .args(["--set", r#"o.edits=[{"tensor":"nope","scale":0.5}]"#])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&target).unwrap(), b"previous export");
    let out = qg().arg("export").arg(&graph).arg("o").arg(&target).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(std::fs::read(&target).unwrap(), b"previous export");
    // The sidecar says how it was made: the graph, the node and its upstream params, what
    // changed.
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("edited.onnx.json")).unwrap()).unwrap();
    assert_eq!(sidecar["node"]["label"], "o");
    assert!(sidecar["graph_file"].as_str().unwrap().ends_with("g.qgraph"));
    let kinds: Vec<&str> = sidecar["graph"].as_array().unwrap().iter().map(|n| n["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["onnx.qdq_override", "onnx.model"]);
    assert_eq!(sidecar["graph"][0]["params"]["edits"][0]["tensor"], "relu1");
    let changes = &sidecar["results"]["model"]["changes"];
    assert_eq!(changes[0]["tensor"], "relu1");
    assert_eq!(changes[0]["new"].as_f64(), Some(0.5));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// ONNX Runtime's telemetry is off: a run writes nothing into the user's home.
#[test]
fn a_run_writes_nothing_under_home() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let (path, sets) = tiny_setup(dir.path());
    let mut cmd = qg();
    cmd.arg("run").arg(&path).env("HOME", home.path()).env_remove("XDG_CACHE_HOME").env_remove("XDG_STATE_HOME");
    for s in &sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut found = Vec::new();
    let mut stack = vec![home.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            found.push(p.clone());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    assert!(found.is_empty(), "a run created {found:?}");
}

/// `--then` re-evaluates in the same process: only what depends on the edit runs, and the
/// JSON lists each evaluation's wall time and the nodes it ran.
#[test]
fn then_edits_re_evaluate_incrementally_and_report_what_ran() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_tiny(
        dir.path(),
        &["--json", "--then", r#"override.edits=[{"tensor":"relu1","scale":0.5}]"#, "--then", "override.edits=[]"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let evals = json["evaluations"].as_array().unwrap();
    assert_eq!(evals.len(), 3);
    let ran = |i: usize| -> Vec<String> {
        evals[i]["ran"].as_array().unwrap().iter().map(|r| r["node"].as_str().unwrap().to_owned()).collect()
    };
    assert!(ran(0).iter().any(|n| n.starts_with("fp32 ")), "{:?}", ran(0));
    let second = ran(1);
    assert!(second.iter().any(|n| n.starts_with("override ")), "{second:?}");
    assert!(second.iter().any(|n| n.starts_with("probe_int8 ")), "{second:?}");
    assert!(second.iter().any(|n| n.starts_with("compare ")), "{second:?}");
    for upstream in ["fp32 ", "probe_fp32 ", "cifar10_test ", "int8 "] {
        assert!(!second.iter().any(|n| n.starts_with(upstream)), "{upstream} re-ran: {second:?}");
    }
    assert!(evals[1]["wall_secs"].as_f64().unwrap() > 0.0);
    assert_eq!(evals[1]["edit"], r#"override.edits=[{"tensor":"relu1","scale":0.5}]"#);
    // Back to no edits: the earlier results are still cached, so nothing but the override runs.
    let third = ran(2);
    assert!(!third.iter().any(|n| n.starts_with("probe_int8 ")), "{third:?}");
}

/// Probe version 1 kept `keep` samples; such files load, migrated, and run.
#[test]
fn old_probe_params_with_keep_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let (path, sets) = tiny_setup(dir.path());
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "\"kind\": \"onnx.layer_probe\",\n      \"kind_version\": 2,",
        "\"kind\": \"onnx.layer_probe\",\n      \"kind_version\": 1,",
    );
    // `keep` 2, fewer than the 4 samples: honouring it would show as 2 below.
    let text = text.replace("\"capture\": \"all\",", "\"capture\": \"all\",\n        \"keep\": 2,");
    assert!(text.contains("\"keep\": 2") && text.contains("\"kind_version\": 1"));
    std::fs::write(&path, text).unwrap();
    let out = qg().arg("check").arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let mut cmd = qg();
    cmd.arg("run").arg(&path).arg("--json");
    for s in &sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let table = json["nodes"]["7"]["outputs"]["report"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "per_layer")
        .unwrap()
        .clone();
    let col = table["columns"].as_array().unwrap().iter().position(|c| c == "samples").unwrap();
    let samples = table["rows"][0][col].clone();
    assert_eq!(samples, 4, "per-layer figures cover every sample, not `keep`");
}

/// `-v` turns on the CLI's log (tracing on standard error); RUST_LOG takes precedence.
#[test]
fn verbose_flag_logs_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = run_tiny(dir.path(), &[]);
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("graph loaded"));
    let loud = run_tiny(dir.path(), &["-vv"]);
    let stderr = String::from_utf8_lossy(&loud.stderr);
    assert!(stderr.contains("graph loaded") && stderr.contains("evaluated"), "{stderr}");
}

/// `run --shard K/N` evaluates a slice of the dataset with mergeable partial results;
/// `merge` of damaged or hand-made parts (nodes, outputs or reports that are not objects, a
/// top-level array) fails with a message naming the file, and never crashes.
#[test]
fn merge_of_damaged_parts_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 5] = [
        (r#"{"shard":"0/2","nodes":{"7":"oops"}}"#, r#"{"shard":"1/2","nodes":{"7":"oops"}}"#),
        (r#"{"shard":"0/2","nodes":{"7":{"outputs":[]}}}"#, r#"{"shard":"1/2","nodes":{"7":{"outputs":5}}}"#),
        (
            r#"{"shard":"0/2","nodes":{"7":{"outputs":{"report":5}}}}"#,
            r#"{"shard":"1/2","nodes":{"7":{"outputs":{"report":{"partial":"x"}}}}}"#,
        ),
        (r#"["0/2"]"#, r#"["1/2"]"#),
        (r#"{"shard":"0/2","nodes":7}"#, r#"{"shard":"1/2","nodes":[]}"#),
    ];
    for (k, (p0, p1)) in cases.iter().enumerate() {
        let (a, b) = (dir.path().join(format!("p0-{k}.json")), dir.path().join(format!("p1-{k}.json")));
        std::fs::write(&a, p0).unwrap();
        std::fs::write(&b, p1).unwrap();
        let merged = dir.path().join(format!("m{k}.json"));
        let out = qg().arg("merge").arg(&merged).arg(&a).arg(&b).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "case {k}: {err}");
        assert!(!err.contains("panicked"), "case {k}: {err}");
        assert!(err.contains(".json"), "case {k}: the message names a file: {err}");
        assert!(!merged.exists(), "case {k}: nothing written");
    }
}

/// `merge` of all N gives what one run over the whole slice gives (to float rounding: sums
/// are added in another order), in any order of the parts; a missing shard is an error.
#[test]
fn shards_merged_equal_a_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let graph = repo().join("assets/graphs/default.qgraph");
    let cifar = std::env::var_os("QUANTGRAPH_CIFAR10")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data/cifar10"));
    let base = |cmd: &mut std::process::Command| {
        cmd.arg("run").arg(&graph).arg("--json").args(["--set", &format!("cifar10_test.path={}", cifar.display())]);
        cmd.args(["--set", "cifar10_test.count=120", "--set", "cifar10_test.per_class=0"]);
    };
    let mut single = qg();
    base(&mut single);
    let out = single.args(["--set", "compare.partials=true"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let single: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut parts = Vec::new();
    for k in [2, 0, 3, 1] {
        let mut cmd = qg();
        base(&mut cmd);
        let out = cmd.args(["--shard", &format!("{k}/4")]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let part = dir.path().join(format!("part{k}.json"));
        std::fs::write(&part, &out.stdout).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["nodes"]["7"]["outputs"]["report"]["summary"]["samples"], 30.0, "a quarter of 120");
        parts.push(part);
    }
    let merged_path = dir.path().join("merged.json");
    let out = qg().arg("merge").arg(&merged_path).args(&parts).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let merged: serde_json::Value = serde_json::from_slice(&std::fs::read(&merged_path).unwrap()).unwrap();
    let (a, b) = (&single["nodes"]["7"]["outputs"]["report"], &merged["nodes"]["7"]["outputs"]["report"]);
    let close = |x: &serde_json::Value, y: &serde_json::Value| match (x.as_f64(), y.as_f64()) {
        (Some(p), Some(q)) => (p - q).abs() <= 1e-9 * p.abs().max(1.0),
        _ => x == y,
    };
    for (k, v) in a["summary"].as_object().unwrap() {
        assert!(close(v, &b["summary"][k]), "{k}: {v} vs {}", b["summary"][k]);
    }
    for t in a["tables"].as_array().unwrap() {
        let u = b["tables"].as_array().unwrap().iter().find(|u| u["name"] == t["name"]).unwrap();
        assert_eq!(t["columns"], u["columns"]);
        let rows = (t["rows"].as_array().unwrap(), u["rows"].as_array().unwrap());
        assert_eq!(rows.0.len(), rows.1.len(), "{}", t["name"]);
        for (r, s) in rows.0.iter().zip(rows.1) {
            for (c, (x, y)) in r.as_array().unwrap().iter().zip(s.as_array().unwrap()).enumerate() {
                if t["columns"][c] == "check_cosine" {
                    continue; // each shard verifies on its own first batch; merged: the smallest
                }
                assert!(close(x, y), "{} {}: {x} vs {y}", t["name"], t["columns"][c]);
            }
        }
    }
    // Probes: every tensor's count, range and histogram (bin for bin) as one run gives them.
    for probe in ["5", "6"] {
        let (a, b) =
            (&single["nodes"][probe]["outputs"]["activations"], &merged["nodes"][probe]["outputs"]["activations"]);
        assert_eq!((&a["samples"], &b["samples"]), (&120.into(), &120.into()));
        assert!(close(&a["accuracy"], &b["accuracy"]), "{} vs {}", a["accuracy"], b["accuracy"]);
        let tensors = a["tensors"].as_object().unwrap();
        assert!(tensors.len() > 10, "probe {probe} captured {} tensors", tensors.len());
        for (name, s) in tensors {
            let m = &b["tensors"][name];
            for k in ["count", "min", "max", "histogram", "non_finite"] {
                assert_eq!(s[k], m[k], "probe {probe}, '{name}': {k}");
            }
            for k in ["mean", "std"] {
                assert!(close(&s[k], &m[k]), "probe {probe}, '{name}': {k} {} vs {}", s[k], m[k]);
            }
        }
        let bins = tensors.values().map(|s| s["histogram"]["counts"].as_array().unwrap().len());
        assert!(bins.clone().all(|n| (64..=128).contains(&n)), "{:?}", bins.collect::<Vec<_>>());
    }
    // A part whose probe cannot be merged (here: no sample count, as an older QuantGraph
    // wrote): that probe is left out with the reason, everything else is merged.
    let mut old: serde_json::Value = serde_json::from_slice(&std::fs::read(&parts[1]).unwrap()).unwrap();
    old["nodes"]["5"]["outputs"]["activations"].as_object_mut().unwrap().remove("samples");
    let old_part = dir.path().join("old0.json");
    std::fs::write(&old_part, serde_json::to_vec(&old).unwrap()).unwrap();
    let mixed = [parts[0].clone(), old_part, parts[2].clone(), parts[3].clone()];
    let out = qg().arg("merge").arg(dir.path().join("m.json")).args(&mixed).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("probe_fp32 (node 5) is not merged:") && stderr.contains("no sample count"), "{stderr}");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("m.json")).unwrap()).unwrap();
    assert_eq!(m["not_merged"][0]["node"], "5");
    assert!(m["nodes"]["5"].is_null() && m["nodes"]["6"]["outputs"]["activations"]["samples"] == 120);
    assert_eq!(m["nodes"]["7"]["outputs"]["report"]["summary"]["samples"], 120.0);
    // Three of four shards: refused, saying which are expected.
    let out = qg().arg("merge").arg(dir.path().join("m3.json")).args(&parts[..3]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expected the shards 0/4"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `quantgraph diff` prints the accuracy and per-layer deltas of two `run --json` results
/// (as JSON with --json) and says what is wrong with files that are not such results.
#[test]
fn diff_prints_before_after_deltas_of_two_runs() {
    let dir = tempfile::tempdir().unwrap();
    let run = |acc: f64, sqnr: [f64; 2]| {
        serde_json::json!({"nodes": {"7": {"kind": "compare.comparator", "label": "compare", "outputs": {"report": {
            "headline": "x", "summary": {"accuracy_b": acc, "agreement": 0.9, "min_sqnr_db": sqnr[1]},
            "tables": [{"name": "per_layer", "columns": ["tensor", "sqnr_db"],
                        "rows": [["conv1", sqnr[0]], ["conv2", sqnr[1]]]}]}}}}})
    };
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    std::fs::write(&a, run(0.80, [30.0, 20.0]).to_string()).unwrap();
    std::fs::write(&b, run(0.815, [30.0, 23.5]).to_string()).unwrap();
    let out = qg().arg("diff").arg(&a).arg(&b).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("accuracy_b   80.00 % → 81.50 % (+1.50 pt)"), "{text}");
    assert!(text.contains("largest per-layer change: conv2 +3.50 dB"), "{text}");
    let conv2 = text.lines().find(|l| l.trim_start().starts_with("conv2")).unwrap();
    assert!(conv2.contains("20.00") && conv2.contains("23.50") && conv2.contains("+3.50"), "{conv2}");
    let out = qg().arg("diff").arg(&a).arg(&b).arg("--json").output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = json["compare"]["tables"][1]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    // Not a run's JSON.
    std::fs::write(&b, "{\"hello\": 1}").unwrap();
    let out = qg().arg("diff").arg(&a).arg(&b).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not the JSON of `quantgraph run --json`"), "{err}");
}
