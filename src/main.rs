fn main() -> anyhow::Result<()> {
    quantgraph_app::main()
}
