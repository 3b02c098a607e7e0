//! The [`Graph`]: nodes with params, and wires between named ports.
//!
//! Edits that need to know port types (connecting) take the [`NodeRegistry`]. A node whose
//! kind is not registered is kept as a placeholder: its params and wires survive untouched.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, NodeError, Result};
use crate::kind::PortSpec;
use crate::param::{self, Params};
use crate::registry::NodeRegistry;

/// A node's id, stable for the life of the graph and stored in files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: NodeId,
    /// The kind's id, e.g. `"onnx.model"`.
    pub kind: String,
    pub kind_version: u32,
    /// A user-given name (shown instead of the kind's name, usable in `--set`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub position: [f32; 2],
    #[serde(default)]
    pub params: Params,
}

/// One end of a wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortRef {
    pub node: NodeId,
    pub port: String,
}

impl PortRef {
    pub fn new(node: NodeId, port: &str) -> Self {
        Self { node, port: port.into() }
    }
}

/// A wire from an output port to an input port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Wire {
    pub from: PortRef,
    pub to: PortRef,
}

/// Canvas view state saved with the graph.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ViewState {
    pub offset: [f32; 2],
    pub zoom: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected: Option<NodeId>,
}

/// A titled, coloured box drawn behind a group of nodes (a comment on the canvas); saved
/// with the graph. `rect` is `[x, y, width, height]` in canvas units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    pub title: String,
    pub color: [u8; 3],
    pub rect: [f32; 4],
}

/// A dataflow graph.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Graph {
    nodes: BTreeMap<NodeId, Node>,
    /// Keyed by the input end: an input takes one wire.
    wires: BTreeMap<PortRef, PortRef>,
    next_id: u64,
    pub notes: String,
    pub view: Option<ViewState>,
    /// Frames (groups with a title) behind the nodes, in drawing order.
    pub frames: Vec<Frame>,
    /// Folder of the graph file; relative paths in params are relative to it.
    pub base_dir: Option<PathBuf>,
}

impl Graph {
    pub fn new() -> Self {
        Self { next_id: 1, ..Self::default() }
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(&id)
    }

    pub fn node_mut(&mut self, id: NodeId) -> Option<&mut Node> {
        self.nodes.get_mut(&id)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// All wires, sorted by their input end.
    pub fn wires(&self) -> impl Iterator<Item = Wire> + '_ {
        self.wires.iter().map(|(to, from)| Wire { from: from.clone(), to: to.clone() })
    }

    /// The output feeding an input port, if connected.
    pub fn source_of(&self, input: &PortRef) -> Option<&PortRef> {
        self.wires.get(input)
    }

    /// Add a node of a registered kind with default params.
    pub fn add_node(&mut self, registry: &NodeRegistry, kind_id: &str, position: [f32; 2]) -> Result<NodeId> {
        let kind = registry.get(kind_id).ok_or_else(|| Error::UnknownKind(kind_id.into()))?;
        let id = self.fresh_id();
        self.nodes.insert(
            id,
            Node {
                id,
                kind: kind_id.into(),
                kind_version: kind.version(),
                label: None,
                position,
                params: param::defaults(&kind.params()),
            },
        );
        Ok(id)
    }

    /// Insert a node as it is (from a file or a paste). Its id must be free.
    pub fn insert_node(&mut self, node: Node) -> Result<()> {
        if self.nodes.contains_key(&node.id) {
            return Err(Error::Connect(format!("node id {} is used twice", node.id.0)));
        }
        // Ids come from files: saturate rather than overflow (u64::MAX is a valid id).
        self.next_id = self.next_id.max(node.id.0.saturating_add(1));
        self.nodes.insert(node.id, node);
        Ok(())
    }

    /// An id no node has. After a node with id `u64::MAX` the counter cannot grow, and the
    /// smallest free id is used instead.
    pub fn fresh_id(&mut self) -> NodeId {
        let candidate = NodeId(self.next_id.max(1));
        if !self.nodes.contains_key(&candidate) {
            self.next_id = candidate.0.saturating_add(1);
            return candidate;
        }
        let mut id = 1u64;
        for used in self.nodes.keys() {
            if used.0 > id {
                break;
            }
            id = used.0.saturating_add(1);
        }
        NodeId(id)
    }

    /// Remove a node and every wire touching it. Returns the node and its wires.
    pub fn remove_node(&mut self, id: NodeId) -> Option<(Node, Vec<Wire>)> {
        let node = self.nodes.remove(&id)?;
        let removed: Vec<Wire> = self.wires().filter(|w| w.from.node == id || w.to.node == id).collect();
        for w in &removed {
            self.wires.remove(&w.to);
        }
        Some((node, removed))
    }

    /// Set one param. The value is not validated here (see [`Graph::validate`]).
    pub fn set_param(&mut self, id: NodeId, name: &str, value: serde_json::Value) -> Result<()> {
        let node = self.nodes.get_mut(&id).ok_or(Error::UnknownNode(id.0))?;
        node.params.insert(name.into(), value);
        Ok(())
    }

    /// Find a node by its label, by `#id`/`id`, or by kind id when only one node has it;
    /// `None` when nothing matches or the name is ambiguous (see [`Graph::resolve_node`]).
    pub fn find_node(&self, name: &str) -> Option<NodeId> {
        self.resolve_node(name).ok()
    }

    /// Like [`Graph::find_node`], with a message that says why not: no such node, or
    /// several nodes share that label (or kind), with the candidates listed.
    pub fn resolve_node(&self, name: &str) -> std::result::Result<NodeId, String> {
        let labelled: Vec<NodeId> =
            self.nodes.values().filter(|n| n.label.as_deref() == Some(name)).map(|n| n.id).collect();
        let list = |ids: &[NodeId]| ids.iter().map(|i| format!("#{}", i.0)).collect::<Vec<_>>().join(", ");
        match labelled.as_slice() {
            [one] => return Ok(*one),
            [] => {}
            many => {
                return Err(format!(
                "{} nodes are labelled '{name}' ({}); name one by its id, e.g. '#{}', or give them different labels",
                many.len(),
                list(many),
                many[0].0
            ))
            }
        }
        if let Ok(id) = name.trim_start_matches('#').parse::<u64>() {
            if self.nodes.contains_key(&NodeId(id)) {
                return Ok(NodeId(id));
            }
        }
        let of_kind: Vec<NodeId> = self.nodes.values().filter(|n| n.kind == name).map(|n| n.id).collect();
        match of_kind.as_slice() {
            [one] => Ok(*one),
            [] => Err(format!("no node is labelled '{name}', has that id, or is the only one of that kind")),
            many => {
                Err(format!("{} nodes are of kind '{name}' ({}); name one by its label or id", many.len(), list(many)))
            }
        }
    }

    /// Labels used by more than one node, with their nodes.
    pub fn duplicate_labels(&self) -> BTreeMap<String, Vec<NodeId>> {
        let mut by_label: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
        for n in self.nodes.values() {
            if let Some(l) = &n.label {
                by_label.entry(l.clone()).or_default().push(n.id);
            }
        }
        by_label.retain(|_, ids| ids.len() > 1);
        by_label
    }

    /// A name for messages: the label, else the kind's display name, with the id.
    pub fn display_name(&self, registry: &NodeRegistry, id: NodeId) -> String {
        match self.nodes.get(&id) {
            Some(n) => {
                let name = n.label.clone().unwrap_or_else(|| {
                    registry.get(&n.kind).map(|k| k.display_name().to_owned()).unwrap_or(n.kind.clone())
                });
                format!("{name} ({id})")
            }
            None => format!("{id}"),
        }
    }

    pub fn input_ports(&self, registry: &NodeRegistry, id: NodeId) -> Option<Vec<PortSpec>> {
        let node = self.nodes.get(&id)?;
        Some(registry.get(&node.kind)?.inputs(&node.params))
    }

    pub fn output_ports(&self, registry: &NodeRegistry, id: NodeId) -> Option<Vec<PortSpec>> {
        let node = self.nodes.get(&id)?;
        Some(registry.get(&node.kind)?.outputs(&node.params))
    }

    /// Check whether `from` may feed `to`, with a reason a user can read if not.
    pub fn can_connect(&self, registry: &NodeRegistry, from: &PortRef, to: &PortRef) -> Result<()> {
        let out_ports = self.ports_or_err(registry, from.node, true)?;
        let in_ports = self.ports_or_err(registry, to.node, false)?;
        let out = out_ports.iter().find(|p| p.name == from.port).ok_or_else(|| {
            Error::Connect(format!("{} has no output '{}'", self.display_name(registry, from.node), from.port))
        })?;
        let inp = in_ports.iter().find(|p| p.name == to.port).ok_or_else(|| {
            Error::Connect(format!("{} has no input '{}'", self.display_name(registry, to.node), to.port))
        })?;
        if out.ty != inp.ty {
            return Err(Error::Connect(format!("{} output cannot feed a {} input", out.ty, inp.ty)));
        }
        if from.node == to.node || self.reaches(to.node, from.node) {
            return Err(Error::Connect(format!(
                "connecting {} to {} would make a cycle",
                self.display_name(registry, from.node),
                self.display_name(registry, to.node)
            )));
        }
        Ok(())
    }

    fn ports_or_err(&self, registry: &NodeRegistry, id: NodeId, outputs: bool) -> Result<Vec<PortSpec>> {
        let node = self.nodes.get(&id).ok_or(Error::UnknownNode(id.0))?;
        let kind = registry
            .get(&node.kind)
            .ok_or_else(|| Error::Connect(format!("{} is a placeholder for the unknown kind '{}'", id, node.kind)))?;
        Ok(if outputs { kind.outputs(&node.params) } else { kind.inputs(&node.params) })
    }

    /// Connect an output to an input. The input's previous wire, if any, is replaced
    /// and returned.
    pub fn connect(&mut self, registry: &NodeRegistry, from: PortRef, to: PortRef) -> Result<Option<Wire>> {
        self.can_connect(registry, &from, &to)?;
        let old = self.wires.insert(to.clone(), from).map(|f| Wire { from: f, to });
        Ok(old)
    }

    /// Insert a wire without checks (files, placeholders, undo).
    pub fn insert_wire_unchecked(&mut self, wire: Wire) -> Option<Wire> {
        let to = wire.to.clone();
        self.wires.insert(wire.to, wire.from).map(|from| Wire { from, to })
    }

    /// Remove the wire into an input.
    pub fn disconnect(&mut self, to: &PortRef) -> Option<Wire> {
        self.wires.remove(to).map(|from| Wire { from, to: to.clone() })
    }

    /// Nodes feeding `id`'s inputs, as `(input port, source)`.
    pub fn inputs_of(&self, id: NodeId) -> Vec<(String, PortRef)> {
        self.wires
            .range(PortRef::new(id, "")..)
            .take_while(|(to, _)| to.node == id)
            .map(|(to, from)| (to.port.clone(), from.clone()))
            .collect()
    }

    /// Nodes fed by `id`.
    pub fn consumers_of(&self, id: NodeId) -> BTreeSet<NodeId> {
        self.wires.iter().filter(|(_, from)| from.node == id).map(|(to, _)| to.node).collect()
    }

    /// Is `target` reachable from `start` by following wires downstream?
    pub fn reaches(&self, start: NodeId, target: NodeId) -> bool {
        let mut down: BTreeMap<NodeId, Vec<NodeId>> = BTreeMap::new();
        for (to, from) in &self.wires {
            down.entry(from.node).or_default().push(to.node);
        }
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([start]);
        while let Some(n) = queue.pop_front() {
            if n == target {
                return true;
            }
            if seen.insert(n) {
                if let Some(next) = down.get(&n) {
                    queue.extend(next.iter().copied());
                }
            }
        }
        false
    }

    /// Nodes with no consumers.
    pub fn sinks(&self) -> Vec<NodeId> {
        let fed: BTreeSet<NodeId> = self.wires.values().map(|f| f.node).collect();
        self.nodes.keys().filter(|id| !fed.contains(id)).copied().collect()
    }

    /// A topological order of all nodes, or the nodes on a cycle.
    pub fn topo_order(&self) -> std::result::Result<Vec<NodeId>, Vec<NodeId>> {
        let mut indegree: BTreeMap<NodeId, usize> = self.nodes.keys().map(|k| (*k, 0)).collect();
        let mut down: BTreeMap<NodeId, Vec<NodeId>> = BTreeMap::new();
        for (to, from) in &self.wires {
            if self.nodes.contains_key(&to.node) && self.nodes.contains_key(&from.node) {
                *indegree.entry(to.node).or_default() += 1;
                down.entry(from.node).or_default().push(to.node);
            }
        }
        let mut ready: VecDeque<NodeId> = indegree.iter().filter(|(_, d)| **d == 0).map(|(k, _)| *k).collect();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(n) = ready.pop_front() {
            order.push(n);
            for m in down.get(&n).into_iter().flatten() {
                if let Some(d) = indegree.get_mut(m) {
                    *d -= 1;
                    if *d == 0 {
                        ready.push_back(*m);
                    }
                }
            }
        }
        if order.len() == self.nodes.len() {
            Ok(order)
        } else {
            let placed: BTreeSet<NodeId> = order.into_iter().collect();
            Err(self.nodes.keys().filter(|k| !placed.contains(k)).copied().collect())
        }
    }

    /// What keeps node `id` from being evaluated, in the order it is checked: its kind unknown
    /// or newer than this build, params its schema refuses, inputs not connected or wired to
    /// something that cannot feed them. The one validation of a node: the scheduler fails the
    /// node with the first problem, `check` and [`Graph::validate`] list them all.
    pub fn node_problems(&self, registry: &NodeRegistry, id: NodeId) -> Vec<NodeError> {
        let Some(node) = self.nodes.get(&id) else { return vec![NodeError::failed("missing node")] };
        let Some(kind) = registry.get(&node.kind) else { return vec![NodeError::UnknownKind(node.kind.clone())] };
        let mut out = Vec::new();
        if node.kind_version > kind.version() {
            out.push(NodeError::failed(format!(
                "'{}' version {} is newer than this build's version {}",
                node.kind,
                node.kind_version,
                kind.version()
            )));
        }
        for (name, msg) in param::validate(&kind.params(), &node.params) {
            out.push(NodeError::param(name, msg));
        }
        for port in kind.inputs(&node.params) {
            let Some(src) = self.wires.get(&PortRef::new(id, &port.name)) else {
                if !port.optional {
                    out.push(NodeError::input(&port.name, "not connected"));
                }
                continue;
            };
            let Some(src_node) = self.nodes.get(&src.node) else {
                out.push(NodeError::input(&port.name, "wired to a missing node"));
                continue;
            };
            // A placeholder source (unknown kind) is reported on that node.
            let Some(src_kind) = registry.get(&src_node.kind) else { continue };
            match src_kind.outputs(&src_node.params).into_iter().find(|p| p.name == src.port) {
                Some(o) if o.ty == port.ty => {}
                Some(o) => {
                    out.push(NodeError::input(&port.name, format!("{} output cannot feed a {} input", o.ty, port.ty)))
                }
                None => out.push(NodeError::input(
                    &port.name,
                    format!("wired to '{}', which {} does not have", src.port, src.node),
                )),
            }
        }
        out
    }

    /// Everything wrong with the graph, as `(node, message)` (node `None` for the graph):
    /// every node's [`Graph::node_problems`], wires to ports or nodes that do not exist, and
    /// cycles.
    pub fn validate(&self, registry: &NodeRegistry) -> Vec<(Option<NodeId>, String)> {
        let mut problems = Vec::new();
        for node in self.nodes.values() {
            for p in self.node_problems(registry, node.id) {
                problems.push((Some(node.id), p.to_string()));
            }
        }
        for w in self.wires() {
            let (Some(_), Some(to_node)) = (self.nodes.get(&w.from.node), self.nodes.get(&w.to.node)) else {
                problems.push((
                    None,
                    format!("wire {}.{} → {}.{} names a missing node", w.from.node, w.from.port, w.to.node, w.to.port),
                ));
                continue;
            };
            // A wire into a port the node does not have (its own inputs are checked above).
            if let Some(tk) = registry.get(&to_node.kind) {
                if !tk.inputs(&to_node.params).iter().any(|p| p.name == w.to.port) {
                    problems.push((Some(w.to.node), format!("no input port '{}'", w.to.port)));
                }
            }
        }
        if let Err(cycle) = self.topo_order() {
            let names: Vec<String> = cycle.iter().map(|n| n.to_string()).collect();
            problems.push((None, format!("the graph has a cycle through {}", names.join(", "))));
        }
        problems
    }
}
