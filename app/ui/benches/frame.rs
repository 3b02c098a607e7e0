//! UI-thread CPU time per frame of the editor with a 100-node graph while evaluation runs.
//! Prints its figures; asserts nothing.
//!
//! `cargo bench -p quantgraph-ui --bench frame`
//!
//! The frame is `Editor::ui` inside `egui::Context::run_ui` plus tessellation: everything
//! the UI thread does except handing the triangles to the GPU.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use quantgraph_nodes::graph::PortRef;
use quantgraph_nodes::{testing, NodeRegistry};
use quantgraph_ui::Editor;

fn main() {
    let mut r = NodeRegistry::new();
    testing::register_nodes(&mut r).unwrap();
    let r = Arc::new(r);
    let mut editor = Editor::new(r.clone());
    // 100 nodes: 25 chains of const → slow → add → add, laid out on a grid.
    editor.edit(|g, r| {
        for chain in 0..25 {
            let y = chain as f32 * 90.0;
            let c = g.add_node(r, "test.const", [0.0, y]).unwrap();
            let s = g.add_node(r, "test.slow", [220.0, y]).unwrap();
            g.set_param(s, "millis", (200 + chain * 40).into()).unwrap();
            let a = g.add_node(r, "test.add", [440.0, y]).unwrap();
            let b = g.add_node(r, "test.add", [660.0, y]).unwrap();
            g.connect(r, PortRef::new(c, "out"), PortRef::new(s, "x")).unwrap();
            g.connect(r, PortRef::new(s, "out"), PortRef::new(a, "a")).unwrap();
            g.connect(r, PortRef::new(a, "out"), PortRef::new(b, "a")).unwrap();
        }
    });
    assert_eq!(editor.graph().len(), 100);
    let ctx = egui::Context::default();
    let input = || egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1600.0, 1000.0))),
        ..Default::default()
    };
    // Warm up (fonts, layout caches).
    for _ in 0..5 {
        let out = ctx.run_ui(input(), |ui| editor.ui(ui));
        let _ = ctx.tessellate(out.shapes, out.pixels_per_point);
    }
    // Start a long evaluation, then measure frames while it runs.
    editor.retry_failed();
    let mut times = Vec::new();
    let mut busy_frames = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        let out = ctx.run_ui(input(), |ui| editor.ui(ui));
        let prims = ctx.tessellate(out.shapes, out.pixels_per_point);
        times.push(t.elapsed());
        if editor.is_busy() {
            busy_frames += 1;
        }
        std::hint::black_box(prims);
        std::thread::sleep(Duration::from_millis(4));
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "100-node graph, {} frames ({} while evaluation ran): UI-thread time per frame median {:.2} ms, p90 {:.2} ms, max {:.2} ms [target median ≤ 8 ms]",
        times.len(),
        busy_frames,
        ms(times[times.len() / 2]),
        ms(times[times.len() * 9 / 10]),
        ms(*times.last().unwrap())
    );
}
