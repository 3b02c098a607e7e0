#![allow(dead_code)]
//! Helpers shared by the engine's integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use quantgraph_nodes::graph::{Graph, NodeId, PortRef};
use quantgraph_nodes::{testing, NodeRegistry, Value};

pub fn registry() -> Arc<NodeRegistry> {
    let mut r = NodeRegistry::new();
    testing::register_nodes(&mut r).unwrap();
    Arc::new(r)
}

pub fn konst(g: &mut Graph, r: &NodeRegistry, v: f64) -> NodeId {
    let id = g.add_node(r, "test.const", [0.0, 0.0]).unwrap();
    g.set_param(id, "value", v.into()).unwrap();
    id
}

pub fn add(g: &mut Graph, r: &NodeRegistry, a: NodeId, b: Option<NodeId>) -> NodeId {
    let id = g.add_node(r, "test.add", [0.0, 0.0]).unwrap();
    g.connect(r, PortRef::new(a, "out"), PortRef::new(id, "a")).unwrap();
    if let Some(b) = b {
        g.connect(r, PortRef::new(b, "out"), PortRef::new(id, "b")).unwrap();
    }
    id
}

pub fn scalar(eval: &quantgraph_nodes::Evaluation, node: NodeId) -> f64 {
    match eval.outputs(node).and_then(|o| o.get("out")) {
        Some(Value::Scalar(x)) => *x,
        other => panic!("node {node} has no scalar output: {other:?} ({:?})", eval.outcomes.get(&node)),
    }
}

/// The node ids in a scheduler's log, sorted (parallel branches run in any order).
pub fn ran(s: &quantgraph_nodes::Scheduler) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = s.take_log().into_iter().map(|e| e.node).collect();
    ids.sort();
    ids
}
