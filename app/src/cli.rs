//! The headless command line.
//!
//! ```text
//! quantgraph run FILE [--set NODE.PARAM=VALUE]... [--then NODE.PARAM=VALUE]... [--json] [--out DIR]
//! quantgraph check FILE
//! quantgraph nodes [--json]
//! quantgraph            (the editor)
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use quantgraph_nodes::scheduler::{collect, Event, NodeOutcome};
use quantgraph_nodes::value::{Cell, Report, Value};
use quantgraph_nodes::{file, Evaluation, Graph, NodeId, NodeRegistry, Scheduler};

#[derive(Parser, Debug)]
#[command(name = "quantgraph", version, about = "Visual dataflow editor for quantization experiments on ONNX models")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// More log output on standard error: -v for info, -vv for debug (RUST_LOG, when set,
    /// takes precedence, e.g. RUST_LOG=quantgraph_nodes=debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// Log to standard error through `tracing`: RUST_LOG if set, else by `-v` count. The editor
/// keeps Bevy's own logger (it installs its subscriber itself).
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Evaluate every sink of a graph and print (or write) the results.
    Run {
        file: PathBuf,
        /// Override a param before running: NODE.PARAM=VALUE, where NODE is a node's label,
        /// its id, or a kind id used by one node only; VALUE is JSON, or else text.
        #[arg(long = "set", value_name = "NODE.PARAM=VALUE")]
        sets: Vec<String>,
        /// Print the results as JSON on standard output.
        #[arg(long)]
        json: bool,
        /// Write results.json, one CSV per table and one PNG per plot into DIR.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// After evaluating, apply this edit and evaluate again in the same process: only
        /// what depends on the edit runs. Repeatable, each on top of the previous; the
        /// results shown are the last evaluation's, and every evaluation's wall time and
        /// the nodes it ran are listed (under "evaluations" with --json).
        #[arg(long = "then", value_name = "NODE.PARAM=VALUE")]
        thens: Vec<String>,
        /// Evaluate only the K-th (from 0) of N slices of every dataset, and add mergeable
        /// partial results to every comparator's report, for `quantgraph merge` (one job of
        /// an array: Slurm's $SLURM_ARRAY_TASK_ID, a Kubernetes indexed Job's
        /// $JOB_COMPLETION_INDEX).
        #[arg(long, value_name = "K/N")]
        shard: Option<String>,
    },
    /// Combine the results of `run --shard K/N --json` (or `--out DIR`'s results.json) for
    /// K = 0..N-1 into the results one run over the whole dataset gives, and write them to
    /// OUT as JSON (the merged reports are printed too).
    Merge {
        out: PathBuf,
        #[arg(required = true)]
        parts: Vec<PathBuf>,
    },
    /// Compare two results of `quantgraph run --json` (before and after a change): for every
    /// comparator in both (matched by label), the accuracy, agreement and per-layer SQNR,
    /// qdq_err, MSE and cosine before, after and their deltas.
    Diff {
        before: PathBuf,
        after: PathBuf,
        /// Print the deltas as JSON.
        #[arg(long)]
        json: bool,
        /// Show every layer (default: the 15 with the largest SQNR change).
        #[arg(long)]
        all: bool,
    },
    /// Validate a graph file: kinds known, params valid, wires type-correct, no cycles.
    Check { file: PathBuf },
    /// Evaluate a node and write the ONNX model on its output (e.g. a QDQ Override's
    /// edited model) to a file, with OUT.json beside it saying how it was made. The Layer
    /// Probes that run that model directly are evaluated too: their accuracy goes into the
    /// sidecar. The source model files are never modified.
    Export {
        file: PathBuf,
        /// The node: its label, its id, or a kind id used by one node.
        node: String,
        /// Where to write the .onnx file.
        out: PathBuf,
        #[arg(long = "set", value_name = "NODE.PARAM=VALUE")]
        sets: Vec<String>,
        /// Allow OUT to be one of the graph's own model files (otherwise refused).
        #[arg(long)]
        force: bool,
    },
    /// Open the editor (the default when no command is given), optionally on a graph file.
    Edit {
        file: Option<PathBuf>,
        /// Once evaluation has settled, save a screenshot of the window here and exit.
        #[arg(long, value_name = "PNG")]
        screenshot: Option<PathBuf>,
        /// Once evaluated, open the graph window of this node's per-layer report (a
        /// comparator's label or id), as its "Graph view with per-layer error" button does.
        #[arg(long, value_name = "NODE")]
        graph_view: Option<String>,
    },
    /// List every registered node kind with its ports, params and docs.
    Nodes {
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !matches!(cli.command, None | Some(Command::Edit { .. })) {
        init_logging(cli.verbose);
    }
    let code = run_cli(cli)?;
    if code != ExitCode::SUCCESS {
        std::process::exit(1);
    }
    Ok(())
}

/// Run a parsed command line; the exit code says whether everything succeeded.
pub fn run_cli(cli: Cli) -> anyhow::Result<ExitCode> {
    let registry = Arc::new(crate::registry()?);
    match cli.command {
        None => {
            let default = PathBuf::from("assets/graphs/default.qgraph");
            let file = default.is_file().then_some(default);
            Ok(open_editor(file, None, None))
        }
        Some(Command::Edit { file, screenshot, graph_view }) => Ok(open_editor(file, screenshot, graph_view)),
        Some(Command::Nodes { json }) => {
            print!("{}", nodes_text(&registry, json));
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Check { file }) => {
            let (graph, report) = file::load(&file, &registry)?;
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            warn_duplicate_labels(&graph);
            if check_problems(&graph, &registry, &file) {
                println!("{}: {} nodes, {} wires, no problems", file.display(), graph.len(), graph.wires().count());
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::FAILURE)
            }
        }
        Some(Command::Run { file, sets, json, out, thens, shard }) => {
            let mut sets = sets;
            if let Some(shard) = &shard {
                sets.splice(0..0, shard_sets(&file, &registry, shard)?);
            }
            run(&registry, &file, &sets, &thens, json, out.as_deref(), shard.as_deref())
        }
        Some(Command::Merge { out, parts }) => merge(&out, &parts),
        Some(Command::Diff { before, after, json, all }) => diff(&before, &after, json, all),
        Some(Command::Export { file, node, out, sets, force }) => export(&registry, &file, &node, &out, &sets, force),
    }
}

/// Warn (on standard error) about labels that several nodes share: `--set` and `export`
/// refuse them as ambiguous.
fn warn_duplicate_labels(graph: &Graph) {
    for (label, ids) in graph.duplicate_labels() {
        let ids: Vec<String> = ids.iter().map(|i| format!("#{}", i.0)).collect();
        eprintln!("warning: {} nodes are labelled '{label}' ({}); refer to them by id", ids.len(), ids.join(", "));
    }
}

/// Print every problem `check` finds (on standard output); `true` when there are none.
fn check_problems(graph: &Graph, registry: &NodeRegistry, file: &Path) -> bool {
    let problems = graph.validate(registry);
    for (node, msg) in &problems {
        match node {
            Some(id) => println!("{}: {}: {msg}", file.display(), graph.display_name(registry, *id)),
            None => println!("{}: {msg}", file.display()),
        }
    }
    if !problems.is_empty() {
        println!("{} problem(s)", problems.len());
    }
    problems.is_empty()
}

#[cfg(feature = "editor")]
fn open_editor(file: Option<PathBuf>, screenshot: Option<PathBuf>, graph_view: Option<String>) -> ExitCode {
    let launched = Some(crate::LAUNCHED.get().copied().unwrap_or_else(std::time::Instant::now));
    match crate::editor::run(crate::editor::EditorPlugin { file, screenshot, launched, graph_view }) {
        bevy::app::AppExit::Success => ExitCode::SUCCESS,
        bevy::app::AppExit::Error(_) => ExitCode::FAILURE,
    }
}

#[cfg(not(feature = "editor"))]
fn open_editor(_file: Option<PathBuf>, _screenshot: Option<PathBuf>, _graph_view: Option<String>) -> ExitCode {
    eprintln!(
        "error: this quantgraph was built without the editor (cargo feature 'editor'); it runs graphs \
         headless: quantgraph run | check | export | nodes (see --help)"
    );
    ExitCode::FAILURE
}

/// Apply `NODE.PARAM=VALUE` overrides. VALUE is JSON; for text-like params (text, paths,
/// choices, one tensor name) a bare value is taken as the text itself (`split=train`), and
/// lists of numbers may be written comma-separated (`mean=0.49,0.48,0.45`).
pub fn apply_sets(graph: &mut Graph, registry: &NodeRegistry, sets: &[String]) -> anyhow::Result<()> {
    use quantgraph_nodes::ParamKind;
    for set in sets {
        let Some((target, value)) = set.split_once('=') else {
            bail!("--set {set}: expected NODE.PARAM=VALUE");
        };
        let Some((node_name, param)) = target.rsplit_once('.') else {
            bail!("--set {set}: expected NODE.PARAM=VALUE (no '.' before '=')");
        };
        let id = graph.resolve_node(node_name).map_err(|e| anyhow::anyhow!("--set {set}: {e}"))?;
        let spec = graph
            .node(id)
            .and_then(|n| registry.get(&n.kind))
            .and_then(|k| k.params().into_iter().find(|p| p.name == param));
        let text_like = spec.as_ref().is_some_and(|s| {
            matches!(
                s.kind,
                ParamKind::Text { .. }
                    | ParamKind::Path { .. }
                    | ParamKind::Choice { .. }
                    | ParamKind::TensorName { multiple: false, .. }
            )
        });
        let floats = spec.as_ref().is_some_and(|s| matches!(s.kind, ParamKind::Floats { .. }));
        let value = match serde_json::from_str::<serde_json::Value>(value) {
            // Numbers: a JSON list, or comma-separated text (`mean=0.49,0.48,0.45`, `std=0.25`).
            Ok(v @ serde_json::Value::Array(_)) if floats => v,
            parsed if floats => {
                let text = match parsed {
                    Ok(serde_json::Value::String(text)) => text,
                    _ => value.to_owned(),
                };
                serde_json::Value::from(
                    quantgraph_nodes::param::parse_floats(&text)
                        .map_err(|e| anyhow::anyhow!("--set {set}: parameter '{param}': {e}"))?,
                )
            }
            Ok(serde_json::Value::String(s)) => serde_json::Value::String(s),
            Ok(_) | Err(_) if text_like => serde_json::Value::String(value.to_owned()),
            Ok(v) => v,
            Err(_) => serde_json::Value::String(value.to_owned()),
        };
        if let Some(spec) = &spec {
            spec.validate(&value).map_err(|e| anyhow::anyhow!("--set {set}: parameter '{param}': {e}"))?;
        }
        graph.set_param(id, param, value)?;
    }
    Ok(())
}

/// One evaluation of `run`: what was edited before it, its wall time, and per node whether
/// it ran (with its time), came from the cache, or failed.
pub fn evaluation_json(
    graph: &Graph,
    registry: &NodeRegistry,
    edit: Option<&str>,
    wall_secs: f64,
    eval: &Evaluation,
) -> serde_json::Value {
    let name = |id: &NodeId| graph.display_name(registry, *id);
    let mut ran = Vec::new();
    let mut cached = Vec::new();
    let mut other = Vec::new();
    for (id, o) in &eval.outcomes {
        match o {
            NodeOutcome::Ready { cached: true, .. } => cached.push(serde_json::json!(name(id))),
            NodeOutcome::Ready { duration, .. } => ran.push(serde_json::json!({
                "node": name(id), "id": id.0, "secs": duration.map(|d| d.as_secs_f64()),
            })),
            o => other.push(serde_json::json!({ "node": name(id), "status": outcome_status(o, graph, registry) })),
        }
    }
    serde_json::json!({ "edit": edit, "wall_secs": wall_secs, "ran": ran, "cached": cached, "not_ready": other })
}

fn evaluation_line(e: &serde_json::Value, index: usize) -> String {
    let ran: Vec<String> = e["ran"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| format!("{} {:.3} s", r["node"].as_str().unwrap_or(""), r["secs"].as_f64().unwrap_or(0.0)))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "evaluation {}{}: {:.3} s wall; ran {}; {} cached\n",
        index + 1,
        e["edit"].as_str().map(|x| format!(" (after {x})")).unwrap_or_default(),
        e["wall_secs"].as_f64().unwrap_or(0.0),
        if ran.is_empty() { "nothing".to_owned() } else { ran.join(", ") },
        e["cached"].as_array().map_or(0, Vec::len)
    )
}

/// The `--set`s a shard run applies: the shard on every dataset node, mergeable partial
/// results on every comparator.
fn shard_sets(path: &Path, registry: &NodeRegistry, shard: &str) -> anyhow::Result<Vec<String>> {
    let Some((k, n)) =
        shard.split_once('/').and_then(|(k, n)| Some((k.parse::<usize>().ok()?, n.parse::<usize>().ok()?)))
    else {
        bail!("--shard {shard}: expected K/N with 0 ≤ K < N, e.g. 0/4");
    };
    if n == 0 || k >= n {
        bail!("--shard {shard}: expected K/N with 0 ≤ K < N, e.g. 0/4");
    }
    let (graph, _) = file::load(path, registry)?;
    let mut sets = Vec::new();
    for node in graph.nodes() {
        let has = |param: &str| registry.get(&node.kind).is_some_and(|k| k.params().iter().any(|p| p.name == param));
        if node.kind.starts_with("dataset.") && has("shard") {
            sets.push(format!("{}.shard={k}/{n}", node.id.0));
        }
        if has("partials") {
            sets.push(format!("{}.partials=true", node.id.0));
        }
    }
    if !sets.iter().any(|s| s.contains(".shard=")) {
        bail!("--shard {shard}: {} has no dataset node to shard", path.display());
    }
    Ok(sets)
}

/// `quantgraph merge OUT PART...`.
///
/// The parts are read one at a time, in shard order, and folded into the merged results:
/// memory holds the results so far and one part, not every part (a thousand shards of an
/// array job merge in the memory of one run's report).
fn merge(out: &Path, parts: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let read = |p: &Path| {
        quantgraph_nodes::fsio::read_regular_file(p, 1 << 30)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
    };
    // First each part's shard only (parsed without building the whole tree).
    #[derive(serde::Deserialize)]
    struct Head {
        shard: Option<String>,
    }
    let mut shards: Vec<(usize, usize, PathBuf)> = Vec::new();
    for p in parts {
        let head: Head = serde_json::from_slice(&read(p)?)
            .with_context(|| format!("{} is not the JSON of a quantgraph run", p.display()))?;
        let shard = head.shard.unwrap_or_default();
        let Some((k, n)) = shard.split_once('/').and_then(|(k, n)| Some((k.parse().ok()?, n.parse().ok()?))) else {
            bail!("{} is not the result of `quantgraph run --shard K/N` (it has no \"shard\")", p.display());
        };
        shards.push((k, n, p.clone()));
    }
    shards.sort_by_key(|s| s.0);
    let n = shards[0].1;
    let ks: Vec<usize> = shards.iter().map(|s| s.0).collect();
    if shards.iter().any(|s| s.1 != n) || ks != (0..n).collect::<Vec<_>>() {
        bail!(
            "expected the shards 0/{n} … {}/{n} once each, found {:?}",
            n.saturating_sub(1),
            shards.iter().map(|s| format!("{}/{}", s.0, s.1)).collect::<Vec<_>>()
        );
    }
    // Comparators with partial results (as part 0 has them): merged so far, label and kind.
    let mut comparators: Vec<(String, quantgraph_compare::Partial, String, serde_json::Value)> = Vec::new();
    // Probes (whose statistics merge as they are): each part's output, bounded by its
    // tensors, not its samples. A probe that failed in the first part but not in others is
    // still found, and reported.
    let mut probes: Vec<String> = Vec::new();
    let mut probe_parts: Vec<BTreeMap<String, serde_json::Value>> = Vec::new();
    let mut names: BTreeMap<String, (String, serde_json::Value)> = BTreeMap::new();
    for (k, _, path) in &shards {
        let mut json: serde_json::Value = serde_json::from_slice(&read(path)?)
            .with_context(|| format!("{} is not the JSON of a quantgraph run", path.display()))?;
        // Taken apart by reading only: a node, output or report that is not an object (a
        // damaged or hand-made file) reads as missing, never as a crash.
        let nodes =
            json.get_mut("nodes").and_then(serde_json::Value::as_object_mut).map(std::mem::take).unwrap_or_default();
        if *k == 0 {
            for (id, v) in &nodes {
                names.insert(id.clone(), (v["label"].as_str().unwrap_or(id).to_owned(), v["kind"].clone()));
            }
        }
        let mut here = BTreeMap::new();
        let mut seen = std::collections::BTreeSet::new();
        for (id, mut v) in nodes {
            seen.insert(id.clone());
            let partial = v.pointer_mut("/outputs/report/partial").map(serde_json::Value::take).unwrap_or_default();
            if *k == 0 && !partial.is_null() {
                let (label, kind) = names.get(&id).cloned().unwrap_or_default();
                let p: quantgraph_compare::Partial = serde_json::from_value(partial)
                    .with_context(|| format!("node {id} of {}: not a comparator's partial results", path.display()))?;
                comparators.push((id.clone(), p, label, kind));
            } else if let Some(entry) = comparators.iter_mut().find(|c| c.0 == id) {
                let p: quantgraph_compare::Partial = serde_json::from_value(partial)
                    .with_context(|| format!("node {id} of {}: not a comparator's partial results", path.display()))?;
                quantgraph_compare::merge_into(&mut entry.1, &p, *k).map_err(|e| anyhow::anyhow!("node {id}: {e}"))?;
            }
            if v["outputs"]["activations"]["tensors"].is_object() {
                if !probes.contains(&id) {
                    probes.push(id.clone());
                }
                here.insert(id, v.pointer_mut("/outputs/activations").map(serde_json::Value::take).unwrap_or_default());
            }
        }
        if let Some((id, ..)) = comparators.iter().find(|c| !seen.contains(&c.0)) {
            bail!("node {id} of {}: not a comparator's partial results (it has no node {id})", path.display());
        }
        probe_parts.push(here);
    }
    if comparators.is_empty() && probes.is_empty() {
        bail!("{} has no comparator with partial results and no probe", shards[0].2.display());
    }
    let mut merged = serde_json::Map::new();
    let mut text = String::new();
    for (id, all, name, kind) in comparators {
        let report = quantgraph_compare::report_from(&all);
        text.push_str(&format!("{name} [merged {n} shards] {}\n", report.headline.clone().unwrap_or_default()));
        for (k, v) in &report.summary {
            text.push_str(&format!("  {k}: {v}\n"));
        }
        let report = quantgraph_nodes::Value::Table(Arc::new(report)).to_json();
        merged.insert(
            id,
            serde_json::json!({ "kind": kind, "label": name, "status": "ok", "outputs": { "report": report } }),
        );
    }
    let mut skipped = Vec::new();
    for id in probes {
        let (name, kind) = names.get(&id).cloned().unwrap_or_else(|| (id.clone(), serde_json::Value::Null));
        // Each part's output of it (null where the part has none).
        let outputs: Vec<(usize, usize, PathBuf, serde_json::Value)> = shards
            .iter()
            .zip(&mut probe_parts)
            .map(|((k, n, path), here)| (*k, *n, path.clone(), here.remove(&id).unwrap_or_default()))
            .collect();
        // A probe that cannot be merged (it failed in a shard, or an older QuantGraph wrote
        // the part) is left out with the reason; the rest is still merged.
        let acts = match merge_probe(&outputs) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("warning: {name} (node {id}) is not merged: {e:#}");
                skipped.push(serde_json::json!({ "node": id, "label": name, "reason": format!("{e:#}") }));
                continue;
            }
        };
        let accuracy = acts["accuracy"].as_f64().map_or_else(String::new, |a| format!(", top-1 {:.2} %", 100.0 * a));
        text.push_str(&format!(
            "{name} [merged {n} shards] statistics of {} tensors over {} samples{accuracy}\n",
            acts["tensors"].as_object().map_or(0, serde_json::Map::len),
            acts["samples"]
        ));
        merged.insert(
            id,
            serde_json::json!({ "kind": kind, "label": name, "status": "ok", "outputs": { "activations": acts } }),
        );
    }
    let mut result = serde_json::json!({ "merged_shards": n, "parts": parts, "nodes": merged });
    if !skipped.is_empty() {
        result["not_merged"] = skipped.into();
    }
    quantgraph_nodes::fsio::write_atomic(out, serde_json::to_string_pretty(&result)?.as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    print!("{text}");
    eprintln!("wrote the merged results of {n} shards to {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// A probe's output over all shards: every tensor's count, minimum, maximum and histogram
/// exactly as one run gives them (histograms share a power-of-two grid), mean and standard
/// deviation to float rounding; top-1 accuracy from the shards' right answers and samples.
/// `shards`: (shard, of, file, that part's output of the probe or null).
fn merge_probe(shards: &[(usize, usize, PathBuf, serde_json::Value)]) -> anyhow::Result<serde_json::Value> {
    let parts: Vec<&serde_json::Value> = shards.iter().map(|s| &s.3).collect();
    let names = |a: &serde_json::Value| -> Vec<String> {
        a["tensors"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
    };
    let first = parts[0];
    let first_names = names(first);
    let mut tensors = serde_json::Map::new();
    let mut samples = 0u64;
    let mut right = Some(0.0f64);
    // Notes every shard gave alike, as they are; others (counts of one shard's values) with
    // their shard.
    let shard_notes: Vec<Vec<&str>> = parts
        .iter()
        .map(|a| a["notes"].as_array().into_iter().flatten().filter_map(serde_json::Value::as_str).collect())
        .collect();
    let mut notes: Vec<String> = Vec::new();
    for ((k, n, _, _), list) in shards.iter().zip(&shard_notes) {
        for note in list {
            let text = if shard_notes.iter().all(|l| l.contains(note)) {
                (*note).to_owned()
            } else {
                format!("shard {k}/{n}: {note}")
            };
            if !notes.contains(&text) {
                notes.push(text);
            }
        }
    }
    for ((_, _, path, _), a) in shards.iter().zip(&parts) {
        if a["tensors"].is_null() {
            bail!("it has no results in {} (it failed there?)", path.display());
        }
        if names(a) != first_names {
            bail!(
                "in {} it captured other tensors than in {} (were the shards run on one graph?)",
                path.display(),
                shards[0].2.display()
            );
        }
        let n = a["samples"].as_u64().with_context(|| {
            format!("{} has no sample count for it (written by an older QuantGraph?)", path.display())
        })?;
        samples += n;
        right = right.zip(a["accuracy"].as_f64()).map(|(r, acc)| r + (acc * n as f64).round());
    }
    for name in first_names {
        let mut stats = Vec::new();
        for ((_, _, path, _), a) in shards.iter().zip(&parts) {
            stats.push(
                serde_json::from_value::<quantgraph_nodes::value::TensorStats>(a["tensors"][&name].clone())
                    .with_context(|| format!("in {}, the statistics of '{name}' do not read", path.display()))?,
            );
        }
        let all = quantgraph_nodes::stats::merge_stats(&stats).map_err(|e| anyhow::anyhow!("tensor '{name}': {e}"))?;
        tensors.insert(name, serde_json::to_value(&all)?);
    }
    Ok(serde_json::json!({
        "model": first["model"],
        "tensors": tensors,
        "accuracy": right.map(|r| r / samples.max(1) as f64),
        "samples": samples,
        "notes": notes,
    }))
}

/// A report as `run --json` writes it, read leniently (a NaN figure is written as null).
fn report_from_json(v: &serde_json::Value) -> Report {
    let cell = |c: &serde_json::Value| match c {
        serde_json::Value::Number(n) => n.as_i64().map_or_else(|| Cell::Num(n.as_f64().unwrap_or(f64::NAN)), Cell::Int),
        serde_json::Value::String(s) => Cell::Text(s.clone()),
        serde_json::Value::Null => Cell::Num(f64::NAN),
        other => Cell::Text(other.to_string()),
    };
    Report {
        headline: v["headline"].as_str().map(str::to_owned),
        summary: v["summary"]
            .as_object()
            .map(|o| o.iter().map(|(k, x)| (k.clone(), x.as_f64().unwrap_or(f64::NAN))).collect())
            .unwrap_or_default(),
        tables: v["tables"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .map(|t| quantgraph_nodes::value::Table {
                        name: t["name"].as_str().unwrap_or_default().to_owned(),
                        columns: t["columns"]
                            .as_array()
                            .map(|c| c.iter().map(|x| x.as_str().unwrap_or_default().to_owned()).collect())
                            .unwrap_or_default(),
                        rows: t["rows"]
                            .as_array()
                            .map(|rows| {
                                rows.iter()
                                    .map(|r| r.as_array().map(|r| r.iter().map(cell).collect()).unwrap_or_default())
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        notes: Vec::new(),
        partial: None,
        hints: serde_json::from_value(v["hints"].clone()).unwrap_or_default(),
    }
}

/// The comparators of a run's JSON: label → report.
fn comparators(path: &Path) -> anyhow::Result<BTreeMap<String, Report>> {
    let text = quantgraph_nodes::fsio::read_regular_file(path, 1 << 30)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let json: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not the JSON of `quantgraph run --json`", path.display()))?;
    let Some(nodes) = json["nodes"].as_object() else {
        bail!("{} is not the JSON of `quantgraph run --json` (it has no \"nodes\")", path.display());
    };
    Ok(nodes
        .iter()
        .filter(|(_, n)| n["kind"] == "compare.comparator" && n["outputs"]["report"].is_object())
        .map(|(id, n)| (n["label"].as_str().unwrap_or(id).to_owned(), report_from_json(&n["outputs"]["report"])))
        .collect())
}

fn diff(before: &Path, after: &Path, json: bool, all: bool) -> anyhow::Result<ExitCode> {
    let (b, a) = (comparators(before)?, comparators(after)?);
    let common: Vec<&String> = a.keys().filter(|k| b.contains_key(*k)).collect();
    if common.is_empty() {
        bail!(
            "no comparator is in both files (before: {:?}; after: {:?})",
            b.keys().collect::<Vec<_>>(),
            a.keys().collect::<Vec<_>>()
        );
    }
    let mut out = serde_json::Map::new();
    for label in common {
        let d = quantgraph_nodes::diff::diff(&b[label], &a[label]);
        if json {
            out.insert(label.clone(), serde_json::to_value(&d)?);
            continue;
        }
        println!("{label}: {}", d.headline.clone().unwrap_or_default());
        if let Some(t) = d.table("summary") {
            for row in &t.rows {
                if let (Some(x), Some(y)) = (row[1].as_f64(), row[2].as_f64()) {
                    let metric = row[0].to_string();
                    if ["accuracy_a", "accuracy_b", "agreement", "min_sqnr_db"].contains(&metric.as_str()) {
                        println!("  {metric:<12} {}", quantgraph_nodes::diff::describe_delta(&metric, x, y));
                    }
                }
            }
        }
        let Some(t) = d.table("per_layer") else { continue };
        let col = |name: &str| t.column(name).unwrap_or(usize::MAX);
        let (sb, sa, sd, status) = (col("sqnr_db_before"), col("sqnr_db_after"), col("sqnr_db_delta"), col("status"));
        let mut rows: Vec<&Vec<Cell>> = t.rows.iter().collect();
        if !all {
            rows.sort_by(|x, y| {
                let d = |r: &Vec<Cell>| r.get(sd).and_then(Cell::as_f64).map_or(-1.0, f64::abs);
                d(y).total_cmp(&d(x))
            });
            rows.truncate(15);
        }
        println!("  {:<44} {:>9} {:>9} {:>8}", "tensor (SQNR dB)", "before", "after", "delta");
        let fmt = |c: Option<&Cell>| c.and_then(Cell::as_f64).map_or("—".to_owned(), |v| format!("{v:.2}"));
        for r in rows {
            let extra = match r.get(status).map(ToString::to_string).as_deref() {
                Some("both") | None => String::new(),
                Some(s) => format!("  ({s})"),
            };
            println!(
                "  {:<44} {:>9} {:>9} {:>8}{extra}",
                quantgraph_nodes::value::elide_middle(&r[0].to_string(), 44),
                fmt(r.get(sb)),
                fmt(r.get(sa)),
                r.get(sd).and_then(Cell::as_f64).map_or("—".to_owned(), |v| format!("{v:+.2}")),
            );
        }
        if !all && t.rows.len() > 15 {
            println!("  … {} more layers (--all shows every one)", t.rows.len() - 15);
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::Value::Object(out))?);
    }
    Ok(ExitCode::SUCCESS)
}

fn run(
    registry: &Arc<NodeRegistry>,
    path: &Path,
    sets: &[String],
    thens: &[String],
    json: bool,
    out: Option<&Path>,
    shard: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let (mut graph, report) = file::load(path, registry)?;
    tracing::info!(file = %path.display(), nodes = graph.len(), migrated = report.migrated.len(), "graph loaded");
    // Edits to come: keep activations at cut points so they re-run only what they reach.
    if !thens.is_empty() {
        crate::keep_cuts(crate::EDIT_LOOP_CUT_BUDGET);
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    warn_duplicate_labels(&graph);
    apply_sets(&mut graph, registry, sets)?;
    // `run` refuses what `check` refuses, before any work.
    if !check_problems(&graph, registry, path) {
        eprintln!("{}: not run: fix the problems above (`quantgraph check` lists them too)", path.display());
        return Ok(ExitCode::FAILURE);
    }
    // Where results go must be writable before the evaluation starts.
    let staging = match out {
        Some(dir) => Some(crate::outdir::Staging::prepare(dir)?),
        None => None,
    };
    let scheduler = Scheduler::new(registry.clone());
    let started = std::time::Instant::now();
    let mut eval = evaluate_with_progress(&scheduler, &graph, registry);
    let mut evaluations = vec![evaluation_json(&graph, registry, None, started.elapsed().as_secs_f64(), &eval)];
    let mut failed = eval.outcomes.values().any(|o| !matches!(o, NodeOutcome::Ready { .. }));
    for then in thens {
        apply_sets(&mut graph, registry, std::slice::from_ref(then)).map_err(|e| anyhow::anyhow!("--then: {e}"))?;
        if !check_problems(&graph, registry, path) {
            bail!("--then {then}: the edited graph has the problems above");
        }
        eprintln!("— after {then}");
        let started = std::time::Instant::now();
        eval = evaluate_with_progress(&scheduler, &graph, registry);
        evaluations.push(evaluation_json(&graph, registry, Some(then), started.elapsed().as_secs_f64(), &eval));
        failed |= eval.outcomes.values().any(|o| !matches!(o, NodeOutcome::Ready { .. }));
    }
    let mut results = results_json(&graph, registry, &eval);
    if let Some(obj) = results.as_object_mut() {
        obj.insert("evaluations".into(), serde_json::Value::Array(evaluations.clone()));
        if let Some(shard) = shard {
            obj.insert("shard".into(), shard.into());
        }
    }
    // Results reach standard output even when writing the files fails.
    {
        let mut stdout = std::io::stdout().lock();
        if json {
            writeln!(stdout, "{}", serde_json::to_string_pretty(&results)?)?;
        } else {
            write!(stdout, "{}", results_text(&graph, registry, &eval))?;
            for (i, e) in evaluations.iter().enumerate() {
                write!(stdout, "{}", evaluation_line(e, i))?;
            }
        }
        stdout.flush()?;
    }
    if let (Some(dir), Some(staging)) = (out, staging) {
        write_out_dir(&staging, &graph, registry, &eval, &results)?;
        staging.commit()?;
        eprintln!("wrote results to {}", dir.display());
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Files whose identity equals `out`'s: the same file through another path, a link, …
fn export(
    registry: &Arc<NodeRegistry>,
    path: &Path,
    node: &str,
    out: &Path,
    sets: &[String],
    force: bool,
) -> anyhow::Result<ExitCode> {
    let (mut graph, _) = file::load(path, registry)?;
    apply_sets(&mut graph, registry, sets)?;
    let id = graph.resolve_node(node).map_err(|e| anyhow::anyhow!("{e} in {}", path.display()))?;
    // Never overwrite one of the graph's own inputs without being told to.
    if !force {
        if let Some((reader, param, _)) = quantgraph_nodes::provenance::reader_of(&graph, registry, out) {
            bail!(
                "{} is the file that {} reads ('{}'); exporting onto it would overwrite the source. \
                 Choose another file, or pass --force",
                out.display(),
                graph.display_name(registry, reader),
                param
            );
        }
    }
    let parent = quantgraph_nodes::fsio::parent_dir(out);
    if !parent.is_dir() {
        bail!("cannot export to {}: the folder {} does not exist", out.display(), parent.display());
    }
    let scheduler = Scheduler::new(registry.clone());
    // The probes that run the model too: their accuracy goes into the sidecar.
    let readers = quantgraph_nodes::provenance::measuring_readers(&graph, registry, id);
    let targets: Vec<NodeId> = std::iter::once(id).chain(readers.iter().copied()).collect();
    let eval = scheduler.evaluate(&graph, &targets);
    let outcome = eval.outcomes.get(&id);
    let Some(outputs) = outcome.and_then(NodeOutcome::outputs) else {
        bail!(
            "{} did not evaluate: {}",
            graph.display_name(registry, id),
            outcome.map(|o| outcome_status(o, &graph, registry)).unwrap_or_default()
        );
    };
    let Some(Value::Model(model)) = outputs.values().find(|v| matches!(v, Value::Model(_))) else {
        bail!("{} has no Model output to export", graph.display_name(registry, id));
    };
    // An earlier export's sidecar goes first: should writing the model fail, no sidecar is
    // left that describes another model.
    let sidecar_path = quantgraph_nodes::provenance::sidecar_path(out);
    if sidecar_path.exists() {
        std::fs::remove_file(&sidecar_path).with_context(|| format!("replacing {}", sidecar_path.display()))?;
    }
    quantgraph_nodes::fsio::write_atomic(out, model.bytes.as_ref())
        .with_context(|| format!("writing {}", out.display()))?;
    // How it was made, beside it.
    let graph_file = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let measured = quantgraph_nodes::provenance::measured(&graph, registry, &readers, &|r| {
        eval.outcomes.get(&r).and_then(NodeOutcome::outputs).map(|o| o.as_ref().clone())
    });
    let sidecar = quantgraph_nodes::provenance::sidecar(
        &graph,
        registry,
        id,
        outputs,
        Some(graph_file.to_string_lossy().as_ref()),
        measured,
    );
    quantgraph_nodes::fsio::write_atomic(&sidecar_path, serde_json::to_string_pretty(&sidecar)?.as_bytes())
        .with_context(|| format!("writing {}", sidecar_path.display()))?;
    eprintln!(
        "wrote {} ({} bytes, {} changed values) to {}, and how it was made to {}",
        model.name,
        model.bytes.len(),
        model.changes.len(),
        out.display(),
        sidecar_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Evaluate all sinks, printing progress on standard error.
pub fn evaluate_with_progress(scheduler: &Scheduler, graph: &Graph, registry: &NodeRegistry) -> Evaluation {
    let handle = scheduler.request(graph, &[]);
    let mut eval = Evaluation::default();
    let mut last_progress: BTreeMap<NodeId, i32> = BTreeMap::new();
    while let Some(event) = handle.next_event(Duration::from_secs(3600)) {
        let name = |id: NodeId| graph.display_name(registry, id);
        match &event {
            Event::Started { node } => eprintln!("▶ {}", name(*node)),
            Event::Progress { node, fraction, message } => {
                let pct = (fraction * 100.0) as i32;
                if last_progress.get(node).is_none_or(|p| pct >= p + 10) {
                    last_progress.insert(*node, pct);
                    eprintln!("  {} {pct:>3}% {message}", name(*node));
                }
            }
            Event::Finished { node, duration, .. } => eprintln!("✓ {} ({:.2} s)", name(*node), duration.as_secs_f64()),
            Event::Failed { node, error } => eprintln!("✗ {}: {error}", name(*node)),
            Event::Blocked { node, by } => eprintln!("- {}: blocked by {}", name(*node), name(*by)),
            _ => {}
        }
        if collect(&mut eval, [event]) {
            break;
        }
    }
    eval
}

fn outcome_status(o: &NodeOutcome, graph: &Graph, registry: &NodeRegistry) -> String {
    match o {
        NodeOutcome::Ready { cached: true, .. } => "cached".into(),
        NodeOutcome::Ready { .. } => "ok".into(),
        NodeOutcome::Failed(e) => format!("failed: {e}"),
        NodeOutcome::Blocked { by } => format!("blocked by {}", graph.display_name(registry, *by)),
        NodeOutcome::Cancelled => "cancelled".into(),
    }
}

/// Every evaluated node's status and outputs, as JSON.
pub fn results_json(graph: &Graph, registry: &NodeRegistry, eval: &Evaluation) -> serde_json::Value {
    let mut nodes = serde_json::Map::new();
    for (id, outcome) in &eval.outcomes {
        let Some(node) = graph.node(*id) else { continue };
        let mut entry = serde_json::Map::new();
        entry.insert("kind".into(), node.kind.clone().into());
        if let Some(label) = &node.label {
            entry.insert("label".into(), label.clone().into());
        }
        entry.insert("status".into(), outcome_status(outcome, graph, registry).into());
        if let Some(e) = outcome.error() {
            entry.insert("error".into(), e.to_string().into());
        }
        if let Some(outputs) = outcome.outputs() {
            let outs: serde_json::Map<String, serde_json::Value> =
                outputs.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
            entry.insert("outputs".into(), outs.into());
        }
        nodes.insert(id.0.to_string(), entry.into());
    }
    serde_json::json!({ "nodes": nodes })
}

/// A report table as aligned text.
pub fn table_text(t: &quantgraph_nodes::value::Table, max_rows: usize) -> String {
    let cells: Vec<Vec<String>> =
        t.rows.iter().take(max_rows).map(|r| r.iter().map(Cell::to_string).collect()).collect();
    let mut widths: Vec<usize> = t.columns.iter().map(|c| c.chars().count()).collect();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |row: &[String]| {
        row.iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = format!("  [{}]\n  {}\n", t.name, line(&t.columns));
    for row in &cells {
        out.push_str(&format!("  {}\n", line(row)));
    }
    if t.rows.len() > max_rows {
        out.push_str(&format!("  … {} more rows (use --json or --out for all)\n", t.rows.len() - max_rows));
    }
    out
}

fn report_text(r: &Report) -> String {
    let mut out = String::new();
    for (k, v) in &r.summary {
        out.push_str(&format!("  {k}: {v}\n"));
    }
    for n in &r.notes {
        out.push_str(&format!("  note: {n}\n"));
    }
    for t in &r.tables {
        out.push_str(&table_text(t, 40));
    }
    out
}

/// Human-readable results: the sinks' outputs in full, the other nodes in one line.
pub fn results_text(graph: &Graph, registry: &NodeRegistry, eval: &Evaluation) -> String {
    let mut out = String::new();
    for (id, outcome) in &eval.outcomes {
        let status = outcome_status(outcome, graph, registry);
        out.push_str(&format!("{} [{status}]", graph.display_name(registry, *id)));
        match outcome.outputs() {
            Some(outputs) => {
                let summaries: Vec<String> = outputs.iter().map(|(k, v)| format!("{k}: {}", v.summary())).collect();
                out.push_str(&format!(" {}\n", summaries.join("; ")));
                for v in outputs.values() {
                    if let Value::Table(r) = v {
                        out.push_str(&report_text(r));
                    }
                }
            }
            None => out.push('\n'),
        }
    }
    out
}

fn write_out_dir(
    staging: &crate::outdir::Staging,
    graph: &Graph,
    registry: &NodeRegistry,
    eval: &Evaluation,
    results: &serde_json::Value,
) -> anyhow::Result<()> {
    staging.write("results.json", serde_json::to_string_pretty(results)?.as_bytes())?;
    for (id, outcome) in &eval.outcomes {
        let Some(outputs) = outcome.outputs() else { continue };
        let base = graph
            .node(*id)
            .and_then(|n| n.label.clone())
            .unwrap_or_else(|| format!("node{}", id.0))
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_', "_");
        for (port, value) in outputs.iter() {
            match value {
                Value::Table(r) if graph.sinks().contains(id) || r.tables.len() < 8 => {
                    for t in &r.tables {
                        let name =
                            format!("{base}.{port}.{}.csv", t.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
                        staging.write(&name, t.to_csv().as_bytes())?;
                    }
                }
                Value::Plot(p) => {
                    let png = quantgraph_plot::render_png(p, 960, 540)
                        .map_err(|e| anyhow::anyhow!("rendering plot of {}: {e}", graph.display_name(registry, *id)))?;
                    staging.write(&format!("{base}.{port}.png"), &png)?;
                    staging.write(&format!("{base}.{port}.csv"), quantgraph_plot::plot_csv(p).as_bytes())?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The `nodes` listing.
pub fn nodes_text(registry: &NodeRegistry, json: bool) -> String {
    let empty = Default::default();
    if json {
        let kinds: Vec<serde_json::Value> = registry
            .kinds()
            .map(|k| {
                serde_json::json!({
                    "id": k.id(), "version": k.version(), "name": k.display_name(), "category": k.category(),
                    "doc": k.doc(), "inputs": k.inputs(&empty), "outputs": k.outputs(&empty), "params": k.params(),
                })
            })
            .collect();
        return serde_json::to_string_pretty(&kinds).unwrap_or_default() + "\n";
    }
    let mut out = String::new();
    for k in registry.kinds() {
        out.push_str(&format!("{} (v{}) — {} [{}]\n", k.id(), k.version(), k.display_name(), k.category()));
        out.push_str(&format!("  {}\n", k.doc()));
        for p in k.inputs(&empty) {
            out.push_str(&format!("  in  {}: {}{}\n", p.name, p.ty, if p.optional { " (optional)" } else { "" }));
        }
        for p in k.outputs(&empty) {
            out.push_str(&format!("  out {}: {}\n", p.name, p.ty));
        }
        for p in k.params() {
            out.push_str(&format!("  param {} = {} — {}\n", p.name, p.default_value(), p.label));
        }
    }
    out
}
