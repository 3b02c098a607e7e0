//! The headless command line.
//!
//! ```text
//! quantgraph run FILE [--set NODE.PARAM=VALUE]... [--json] [--out DIR]
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
    },
    /// Validate a graph file: kinds known, params valid, wires type-correct, no cycles.
    Check { file: PathBuf },
    /// Evaluate a node and write the ONNX model on its output (e.g. a QDQ Override's
    /// edited model) to a file. The source model files are never modified.
    Export {
        file: PathBuf,
        /// The node: its label, its id, or a kind id used by one node.
        node: String,
        /// Where to write the .onnx file.
        out: PathBuf,
        #[arg(long = "set", value_name = "NODE.PARAM=VALUE")]
        sets: Vec<String>,
    },
    /// Open the editor (the default when no command is given), optionally on a graph file.
    Edit {
        file: Option<PathBuf>,
        /// Once evaluation has settled, save a screenshot of the window here and exit.
        #[arg(long, value_name = "PNG")]
        screenshot: Option<PathBuf>,
    },
    /// List every registered node kind with its ports, params and docs.
    Nodes {
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
            Ok(open_editor(file, None))
        }
        Some(Command::Edit { file, screenshot }) => Ok(open_editor(file, screenshot)),
        Some(Command::Nodes { json }) => {
            print!("{}", nodes_text(&registry, json));
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Check { file }) => {
            let (graph, report) = file::load(&file, &registry)?;
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            let problems = graph.validate(&registry);
            if problems.is_empty() {
                println!("{}: {} nodes, {} wires, no problems", file.display(), graph.len(), graph.wires().count());
                Ok(ExitCode::SUCCESS)
            } else {
                for (node, msg) in &problems {
                    match node {
                        Some(id) => println!("{}: {}: {msg}", file.display(), graph.display_name(&registry, *id)),
                        None => println!("{}: {msg}", file.display()),
                    }
                }
                println!("{} problem(s)", problems.len());
                Ok(ExitCode::FAILURE)
            }
        }
        Some(Command::Run { file, sets, json, out }) => run(&registry, &file, &sets, json, out.as_deref()),
        Some(Command::Export { file, node, out, sets }) => export(&registry, &file, &node, &out, &sets),
    }
}

fn open_editor(file: Option<PathBuf>, screenshot: Option<PathBuf>) -> ExitCode {
    let launched = Some(crate::LAUNCHED.get().copied().unwrap_or_else(std::time::Instant::now));
    match crate::editor::run(crate::editor::EditorPlugin { file, screenshot, launched }) {
        bevy::app::AppExit::Success => ExitCode::SUCCESS,
        bevy::app::AppExit::Error(_) => ExitCode::FAILURE,
    }
}

/// Apply `NODE.PARAM=VALUE` overrides.
pub fn apply_sets(graph: &mut Graph, sets: &[String]) -> anyhow::Result<()> {
    for set in sets {
        let Some((target, value)) = set.split_once('=') else {
            bail!("--set {set}: expected NODE.PARAM=VALUE");
        };
        let Some((node_name, param)) = target.rsplit_once('.') else {
            bail!("--set {set}: expected NODE.PARAM=VALUE (no '.' before '=')");
        };
        let Some(id) = graph.find_node(node_name) else {
            bail!("--set {set}: no node is labelled '{node_name}', has that id, or is the only one of that kind");
        };
        let value = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
        graph.set_param(id, param, value)?;
    }
    Ok(())
}

fn run(
    registry: &Arc<NodeRegistry>,
    path: &Path,
    sets: &[String],
    json: bool,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let (mut graph, report) = file::load(path, registry)?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    apply_sets(&mut graph, sets)?;
    let scheduler = Scheduler::new(registry.clone());
    let eval = evaluate_with_progress(&scheduler, &graph, registry);
    let failed = eval.outcomes.values().any(|o| !matches!(o, NodeOutcome::Ready { .. }));
    let results = results_json(&graph, registry, &eval);
    if let Some(dir) = out {
        write_out_dir(dir, &graph, registry, &eval, &results)?;
        eprintln!("wrote results to {}", dir.display());
    }
    let mut stdout = std::io::stdout().lock();
    if json {
        writeln!(stdout, "{}", serde_json::to_string_pretty(&results)?)?;
    } else {
        write!(stdout, "{}", results_text(&graph, registry, &eval))?;
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn export(
    registry: &Arc<NodeRegistry>,
    path: &Path,
    node: &str,
    out: &Path,
    sets: &[String],
) -> anyhow::Result<ExitCode> {
    let (mut graph, _) = file::load(path, registry)?;
    apply_sets(&mut graph, sets)?;
    let Some(id) = graph.find_node(node) else {
        bail!("no node is labelled '{node}', has that id, or is the only one of that kind in {}", path.display());
    };
    let scheduler = Scheduler::new(registry.clone());
    let eval = scheduler.evaluate(&graph, &[id]);
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
    std::fs::write(out, model.bytes.as_ref()).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "wrote {} ({} bytes, {} changed values) to {}",
        model.name,
        model.bytes.len(),
        model.changes.len(),
        out.display()
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
    dir: &Path,
    graph: &Graph,
    registry: &NodeRegistry,
    eval: &Evaluation,
    results: &serde_json::Value,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(results)?)
        .with_context(|| format!("writing {}", dir.join("results.json").display()))?;
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
                        std::fs::write(dir.join(&name), t.to_csv()).with_context(|| format!("writing {name}"))?;
                    }
                }
                Value::Plot(p) => {
                    let name = format!("{base}.{port}.png");
                    let png = quantgraph_plot::render_png(p, 960, 540)
                        .map_err(|e| anyhow::anyhow!("rendering plot of {}: {e}", graph.display_name(registry, *id)))?;
                    std::fs::write(dir.join(&name), png).with_context(|| format!("writing {name}"))?;
                    let csv = quantgraph_plot::plot_csv(p);
                    std::fs::write(dir.join(format!("{base}.{port}.csv")), csv)?;
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
