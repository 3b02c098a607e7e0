//! QuantGraph with one more plugin. This is the whole "build" a plugin user changes: their
//! own binary crate whose `main` lists the extra plugins (one line per plugin).

fn main() -> anyhow::Result<()> {
    quantgraph_app::main_with(&[quantgraph_plugin_hello::register_nodes])
}
