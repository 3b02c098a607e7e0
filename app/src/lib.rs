//! # quantgraph-app
//!
//! The application around the engine: the registry of every plugin's node kinds, the
//! headless command line (`quantgraph run | check | nodes`), and the editor entry point.

pub mod cli;
pub mod editor;
pub mod outdir;

use quantgraph_nodes::NodeRegistry;

/// Every node kind this build ships, from every plugin crate.
pub fn registry() -> anyhow::Result<NodeRegistry> {
    let mut r = NodeRegistry::new();
    quantgraph_dataset::register_nodes(&mut r)?;
    quantgraph_onnx::register_nodes(&mut r)?;
    quantgraph_compare::register_nodes(&mut r)?;
    quantgraph_plot::register_nodes(&mut r)?;
    Ok(r)
}

/// When `main` started.
pub static LAUNCHED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Entry point of the `quantgraph` binary.
pub fn main() -> anyhow::Result<()> {
    let _ = LAUNCHED.set(std::time::Instant::now());
    // Before any thread exists (setting the environment later would race with readers).
    quantgraph_onnx::runtime::disable_telemetry_env();
    cli::main()
}
