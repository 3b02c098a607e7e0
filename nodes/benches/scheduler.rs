//! Scheduler and file benchmarks. Prints its figures; asserts nothing.
//!
//! `cargo bench -p quantgraph-nodes --bench scheduler`
//!
//! 1. Scheduler overhead: a 1,000-node graph of trivial kinds (a chain of adders, each also
//!    fed by a constant); edit the constant halfway down; time from the edit to all results
//!    current (≈ 500 nodes re-run). Target ≤ 5 ms.
//! 2. Load + validate a 1,000-node `.qgraph`. Target ≤ 50 ms.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use quantgraph_nodes::graph::{Graph, NodeId, PortRef};
use quantgraph_nodes::{file, testing, NodeRegistry, Scheduler};

fn build(r: &NodeRegistry, n: usize) -> (Graph, Vec<NodeId>) {
    let mut g = Graph::new();
    let mut consts = Vec::new();
    let mut prev: Option<NodeId> = None;
    while g.len() + 2 <= n {
        let c = g.add_node(r, "test.const", [0.0, 0.0]).unwrap();
        g.set_param(c, "value", 1.0.into()).unwrap();
        let a = g.add_node(r, "test.add", [0.0, 0.0]).unwrap();
        g.connect(r, PortRef::new(c, "out"), PortRef::new(a, "a")).unwrap();
        if let Some(p) = prev {
            g.connect(r, PortRef::new(p, "out"), PortRef::new(a, "b")).unwrap();
        }
        consts.push(c);
        prev = Some(a);
    }
    (g, consts)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut r = NodeRegistry::new();
    testing::register_nodes(&mut r).unwrap();
    let r = Arc::new(r);
    let (mut g, consts) = build(&r, 1000);
    let s = Scheduler::new(r.clone());
    let t = Instant::now();
    s.evaluate(&g, &[]);
    println!("first evaluation of {} nodes: {:.2} ms", g.len(), t.elapsed().as_secs_f64() * 1e3);

    let mid = consts[consts.len() / 2];
    let mut times = Vec::new();
    let mut reran = 0;
    for i in 0..50 {
        g.set_param(mid, "value", (2.0 + f64::from(i)).into()).unwrap();
        s.take_log();
        let t = Instant::now();
        let e = s.evaluate(&g, &[]);
        times.push(t.elapsed());
        reran = s.take_log().len();
        assert!(!e.superseded);
    }
    println!(
        "edit halfway down a {}-node graph → all results current: median {:.3} ms, max {:.3} ms ({reran} nodes re-ran) [target ≤ 5 ms]",
        g.len(),
        median(times.clone()).as_secs_f64() * 1e3,
        times.iter().max().unwrap().as_secs_f64() * 1e3
    );
    let mut noop = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        s.evaluate(&g, &[]);
        noop.push(t.elapsed());
    }
    println!("re-request with no edit (all cached): median {:.3} ms", median(noop).as_secs_f64() * 1e3);

    let dir = std::env::temp_dir().join(format!("qg-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big.qgraph");
    file::save(&mut g, &r, &path).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    let mut loads = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let (loaded, _) = file::load(&path, &r).unwrap();
        let problems = loaded.validate(&r);
        loads.push(t.elapsed());
        assert!(problems.is_empty());
    }
    println!(
        "load + validate a {}-node .qgraph ({} KiB): median {:.2} ms [target ≤ 50 ms]",
        g.len(),
        size / 1024,
        median(loads).as_secs_f64() * 1e3
    );
    let _ = std::fs::remove_dir_all(&dir);
}
