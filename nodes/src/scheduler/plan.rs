//! Planning a request: every node's key (kind, version, params, files read, upstream keys), in order.

use super::*;

/// A node as the scheduler will run it.
#[derive(Clone)]
pub(super) struct PlanNode {
    pub(super) key: Key,
    pub(super) kind: Option<Arc<dyn NodeKind>>,
    pub(super) kind_id: String,
    pub(super) params: Params,
    /// `(input port, upstream node, upstream output port)`.
    pub(super) inputs: Vec<(String, NodeId, String)>,
    pub(super) static_error: Option<NodeError>,
}

impl PlanNode {
    /// Whether its kind runs pending passes of its inputs within its own
    /// ([`NodeKind::fuses_pending`]).
    pub(super) fn fuses(&self) -> bool {
        self.kind.as_ref().is_some_and(|k| k.fuses_pending())
    }
}

/// A request, resolved into keys.
pub(super) struct Plan {
    pub(super) nodes: BTreeMap<NodeId, PlanNode>,
    pub(super) order: Vec<NodeId>,
    pub(super) base_dir: Option<PathBuf>,
}

impl Scheduler {
    pub(super) fn plan(&self, graph: &Graph, targets: &[NodeId]) -> Plan {
        let targets: Vec<NodeId> = if targets.is_empty() { graph.sinks() } else { targets.to_vec() };
        // Every ancestor of the targets.
        let mut needed = BTreeSet::new();
        let mut stack: Vec<NodeId> = targets.into_iter().filter(|t| graph.node(*t).is_some()).collect();
        while let Some(n) = stack.pop() {
            if needed.insert(n) {
                stack.extend(graph.inputs_of(n).into_iter().map(|(_, src)| src.node));
            }
        }
        let (order, cyclic): (Vec<NodeId>, BTreeSet<NodeId>) = match graph.topo_order() {
            Ok(order) => (order.into_iter().filter(|n| needed.contains(n)).collect(), BTreeSet::new()),
            Err(cycle) => {
                let cyclic: BTreeSet<NodeId> = cycle.into_iter().collect();
                let order = needed.iter().copied().filter(|n| !cyclic.contains(n)).collect();
                (order, cyclic)
            }
        };
        let mut nodes: BTreeMap<NodeId, PlanNode> = BTreeMap::new();
        for id in &cyclic {
            if needed.contains(id) {
                nodes.insert(*id, self.static_failure(graph, *id, NodeError::failed("this node is on a cycle")));
            }
        }
        let mut full_order: Vec<NodeId> = cyclic.iter().copied().filter(|n| needed.contains(n)).collect();
        for id in order {
            let plan_node = self.plan_node(graph, id, &nodes);
            nodes.insert(id, plan_node);
            full_order.push(id);
        }
        Plan { nodes, order: full_order, base_dir: graph.base_dir.clone() }
    }

    pub(super) fn static_failure(&self, graph: &Graph, id: NodeId, error: NodeError) -> PlanNode {
        let (kind_id, params) = graph.node(id).map(|n| (n.kind.clone(), n.params.clone())).unwrap_or_default();
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(b"failure\0");
        h.update(kind_id.as_bytes());
        h.update(serde_json::to_string(&params).unwrap_or_default().as_bytes());
        h.update(error.to_string().as_bytes());
        PlanNode { key: h.digest128(), kind: None, kind_id, params, inputs: Vec::new(), static_error: Some(error) }
    }

    pub(super) fn plan_node(&self, graph: &Graph, id: NodeId, planned: &BTreeMap<NodeId, PlanNode>) -> PlanNode {
        // The node's own problems (the one validation `check` and the editor use too).
        if let Some(e) = graph.node_problems(&self.registry, id).into_iter().next() {
            return self.static_failure(graph, id, e);
        }
        let (Some(node), Some(kind)) = (graph.node(id), graph.node(id).and_then(|n| self.registry.get(&n.kind))) else {
            return self.static_failure(graph, id, NodeError::failed("missing node"));
        };
        let mut inputs = Vec::new();
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(kind.id().as_bytes());
        h.update(&kind.version().to_le_bytes());
        h.update(serde_json::to_string(&node.params).unwrap_or_default().as_bytes());
        if let Some(identity) = kind.external_identity(&node.params, graph.base_dir.as_deref()) {
            h.update(b"\0file\0");
            h.update(identity.as_bytes());
        }
        for port in kind.inputs(&node.params) {
            // Optional inputs may be unconnected; the rest were checked above.
            let Some(src) = graph.source_of(&PortRef::new(id, &port.name)) else { continue };
            let upstream_key = planned.get(&src.node).map(|p| p.key).unwrap_or_default();
            h.update(b"\0in\0");
            h.update(port.name.as_bytes());
            h.update(&upstream_key.to_le_bytes());
            h.update(src.port.as_bytes());
            inputs.push((port.name.clone(), src.node, src.port.clone()));
        }
        PlanNode {
            key: h.digest128(),
            kind: Some(kind.clone()),
            kind_id: node.kind.clone(),
            params: node.params.clone(),
            inputs,
            static_error: None,
        }
    }
}
