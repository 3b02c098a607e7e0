//! Property test: over random DAGs and random edit sequences, the scheduler's incremental
//! results always equal a from-scratch evaluation, and no key is ever evaluated twice.
//!
//! `cargo test` runs 64 cases. The full run (10,000 cases) is:
//! `PROPTEST_CASES=10000 cargo test --release -p quantgraph-nodes --test proptest_scheduler`
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};

use common::registry;
use proptest::prelude::*;
use quantgraph_nodes::graph::{Graph, NodeId, PortRef};
use quantgraph_nodes::kind::EvalContext;
use quantgraph_nodes::scheduler::NodeOutcome;
use quantgraph_nodes::{Inputs, NodeRegistry, Scheduler, Value};

#[derive(Debug, Clone, PartialEq)]
enum Out {
    Value(f64),
    Failed(String),
    Blocked(NodeId),
}

/// Evaluate every node needed by the sinks directly, without caching or threads.
fn from_scratch(g: &Graph, r: &NodeRegistry) -> BTreeMap<NodeId, Out> {
    let order = g.topo_order().expect("acyclic by construction");
    let mut out: BTreeMap<NodeId, Out> = BTreeMap::new();
    for id in order {
        let node = g.node(id).unwrap();
        let kind = r.get(&node.kind).unwrap();
        let mut inputs = Inputs::default();
        let mut result = None;
        for port in kind.inputs(&node.params) {
            match g.source_of(&PortRef::new(id, &port.name)) {
                None if port.optional => {}
                None => {
                    result = Some(Out::Failed(format!("input '{}': not connected", port.name)));
                    break;
                }
                Some(src) => match &out[&src.node] {
                    Out::Value(v) => {
                        inputs.0.insert(port.name.clone(), Value::Scalar(*v));
                    }
                    Out::Failed(_) => {
                        result = result.or(Some(Out::Blocked(src.node)));
                    }
                    Out::Blocked(by) => {
                        result = result.or(Some(Out::Blocked(*by)));
                    }
                },
            }
        }
        let result =
            result.unwrap_or_else(|| match kind.evaluate(&EvalContext::detached(None), &inputs, &node.params) {
                Ok(o) => match o.get("out") {
                    Some(Value::Scalar(x)) => Out::Value(*x),
                    _ => Out::Failed("no output".into()),
                },
                Err(e) => Out::Failed(e.to_string()),
            });
        out.insert(id, result);
    }
    out
}

fn incremental(s: &Scheduler, g: &Graph) -> BTreeMap<NodeId, Out> {
    let e = s.evaluate(g, &[]);
    assert!(!e.superseded);
    e.outcomes
        .into_iter()
        .map(|(id, o)| {
            let o = match o {
                NodeOutcome::Ready { outputs, .. } => match outputs.get("out") {
                    Some(Value::Scalar(x)) => Out::Value(*x),
                    _ => Out::Failed("no output".into()),
                },
                NodeOutcome::Failed(e) => Out::Failed(e.to_string()),
                NodeOutcome::Blocked { by } => Out::Blocked(by),
                NodeOutcome::Cancelled => Out::Failed("cancelled".into()),
            };
            (id, o)
        })
        .collect()
}

/// One random step: `(op, a, b, value)`, indices taken modulo the node count.
type Step = (u8, u32, u32, i8);

fn apply(g: &mut Graph, r: &NodeRegistry, (op, a, b, v): Step) {
    let ids: Vec<NodeId> = g.nodes().map(|n| n.id).collect();
    let pick = |i: u32| ids.get(i as usize % ids.len().max(1)).copied();
    match op % 6 {
        // Add a constant.
        0 => {
            let id = g.add_node(r, "test.const", [0.0, 0.0]).unwrap();
            g.set_param(id, "value", f64::from(v).into()).unwrap();
        }
        // Add an adder fed by one or two existing nodes.
        1 | 2 => {
            let id = g.add_node(r, if v == 0 { "test.fail" } else { "test.add" }, [0.0, 0.0]).unwrap();
            g.set_param(
                id,
                if v == 0 { "message" } else { "bias" },
                if v == 0 { "no".into() } else { f64::from(v % 3).into() },
            )
            .unwrap();
            let port = if v == 0 { "x" } else { "a" };
            if let Some(src) = pick(a).filter(|s| *s != id) {
                let _ = g.connect(r, PortRef::new(src, "out"), PortRef::new(id, port));
            }
            if op % 6 == 2 && v != 0 {
                if let Some(src) = pick(b).filter(|s| *s != id) {
                    let _ = g.connect(r, PortRef::new(src, "out"), PortRef::new(id, "b"));
                }
            }
        }
        // Edit a param.
        3 => {
            if let Some(id) = pick(a) {
                let kind = g.node(id).unwrap().kind.clone();
                let name = match kind.as_str() {
                    "test.const" => "value",
                    "test.add" => "bias",
                    _ => return,
                };
                g.set_param(id, name, f64::from(v).into()).unwrap();
            }
        }
        // Rewire an input (refused if it would make a cycle).
        4 => {
            if let (Some(src), Some(dst)) = (pick(a), pick(b)) {
                let port = if v % 2 == 0 { "a" } else { "b" };
                if g.node(dst).unwrap().kind == "test.add"
                    && g.connect(r, PortRef::new(src, "out"), PortRef::new(dst, port)).is_err()
                    && v % 3 == 0
                {
                    g.disconnect(&PortRef::new(dst, port));
                }
            }
        }
        // Remove a node.
        _ => {
            if let Some(id) = pick(a) {
                g.remove_node(id);
            }
        }
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_from_scratch(
        build in prop::collection::vec((0u8..3, any::<u32>(), any::<u32>(), -5i8..6), 1..14),
        edits in prop::collection::vec((any::<u8>(), any::<u32>(), any::<u32>(), -5i8..6), 1..10),
    ) {
        let r = registry();
        let mut g = Graph::new();
        let s = Scheduler::new(r.clone());
        let mut seen_keys = HashSet::new();
        for step in build {
            apply(&mut g, &r, step);
        }
        prop_assert_eq!(incremental(&s, &g), from_scratch(&g, &r));
        for entry in s.take_log() {
            prop_assert!(seen_keys.insert(entry.key), "key evaluated twice");
        }
        for step in edits {
            apply(&mut g, &r, step);
            prop_assert!(g.topo_order().is_ok());
            prop_assert_eq!(incremental(&s, &g), from_scratch(&g, &r));
            for entry in s.take_log() {
                prop_assert!(seen_keys.insert(entry.key), "key of {} evaluated twice", entry.node);
            }
        }
    }
}
