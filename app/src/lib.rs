//! # quantgraph-app
//!
//! The application around the engine: the registry of every plugin's node kinds, the
//! headless command line (`quantgraph run | check | nodes`), and the editor entry point.

pub mod cli;
#[cfg(feature = "editor")]
pub mod editor;
pub mod outdir;

use std::sync::OnceLock;

use quantgraph_nodes::NodeRegistry;

/// A plugin: a function that registers its node kinds (a plugin crate's `register_nodes`).
pub type Plugin = fn(&mut NodeRegistry) -> quantgraph_nodes::Result<()>;

/// The plugins QuantGraph ships.
pub const BUILTIN_PLUGINS: &[Plugin] = &[
    quantgraph_dataset::register_nodes,
    quantgraph_onnx::register_nodes,
    quantgraph_compare::register_nodes,
    quantgraph_plot::register_nodes,
];

/// Plugins added by the binary (see [`main_with`]).
static EXTRA_PLUGINS: OnceLock<Vec<Plugin>> = OnceLock::new();

/// Every node kind this build has: the built-in plugins, then those the binary added with
/// [`main_with`]. The CLI, the editor and the tests all build their registry here.
pub fn registry() -> anyhow::Result<NodeRegistry> {
    let mut r = NodeRegistry::new();
    for plugin in BUILTIN_PLUGINS.iter().chain(EXTRA_PLUGINS.get().into_iter().flatten()) {
        plugin(&mut r)?;
    }
    Ok(r)
}

/// Forget the figures kept for reuse across evaluations (probe statistics, comparator
/// pairs): for tests that compare an incremental evaluation with one from scratch.
pub fn clear_reuse_caches() {
    quantgraph_onnx::reuse::clear();
    quantgraph_onnx::cuts::clear();
    quantgraph_compare::reuse::clear();
    quantgraph_compare::kept::clear();
}

/// Memory for the activations kept at cut points of probed models, so that an evaluation
/// after an edit runs only the part of a model downstream of a cut (see
/// `quantgraph_onnx::cuts`). The editor and `quantgraph run --then` turn it on.
pub const EDIT_LOOP_CUT_BUDGET: usize = 256 << 20;

/// Turn suffix runs on (`bytes` > 0) or off for this process; with them, the comparator
/// keeps model A's paired tensors in half as much again (`quantgraph_compare::kept`), so
/// that an edit of B does not run A for the pairs it reaches.
pub fn keep_cuts(bytes: usize) {
    quantgraph_onnx::cuts::set_budget(bytes);
    quantgraph_compare::kept::set_budget(bytes / 2);
}

/// When `main` started.
pub static LAUNCHED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Entry point of the `quantgraph` binary.
pub fn main() -> anyhow::Result<()> {
    main_with(&[])
}

/// Entry point of a `quantgraph` binary with more plugins: a crate outside this repository
/// builds its own binary whose `main` is `quantgraph_app::main_with(&[my_plugin::register_nodes])`;
/// its node kinds then appear in the editor's palette, `nodes`, `run` and saved graphs (see
/// ARCHITECTURE.md, "Writing a plugin crate", and `examples/plugin-hello`).
pub fn main_with(plugins: &[Plugin]) -> anyhow::Result<()> {
    let _ = LAUNCHED.set(std::time::Instant::now());
    let _ = EXTRA_PLUGINS.set(plugins.to_vec());
    // Before any thread exists (setting the environment later would race with readers).
    quantgraph_onnx::runtime::disable_telemetry_env();
    cli::main()
}
