//! How an exported model was made: the JSON sidecar written beside every exported model
//! (`quantgraph export`, the editor's Export action).

use std::collections::{BTreeSet, VecDeque};

use serde_json::{json, Value as Json};

use crate::graph::{Graph, NodeId};
use crate::kind::Outputs;
use crate::registry::NodeRegistry;
use crate::value::{PortType, Value};

/// The sidecar of a model exported from `node`: the graph file, the node and every node it
/// depends on (kind, label, params, wires: the dataset slice among them), what its outputs
/// say (a report's headline and summary, e.g. the accuracy a sweep measured; the values a
/// QDQ Override changed), what the graph measured of the model (`measured`: see
/// [`measured`]; the accuracy of a calibrated or overridden model comes from the probes
/// that run it), the QuantGraph version and when.
pub fn sidecar(
    graph: &Graph,
    registry: &NodeRegistry,
    node: NodeId,
    outputs: &Outputs,
    graph_file: Option<&str>,
    measured: Vec<Json>,
) -> Json {
    // The node and everything upstream of it, nearest first.
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([node]);
    while let Some(id) = queue.pop_front() {
        if !seen.insert(id) {
            continue;
        }
        order.push(id);
        for (_, from) in graph.inputs_of(id) {
            queue.push_back(from.node);
        }
    }
    let nodes: Vec<Json> = order
        .iter()
        .filter_map(|id| graph.node(*id))
        .map(|n| {
            let inputs: serde_json::Map<String, Json> = graph
                .inputs_of(n.id)
                .into_iter()
                .map(|(port, from)| {
                    (port, json!({ "node": from.node.0, "name": graph.display_name(registry, from.node), "port": from.port }))
                })
                .collect();
            json!({
                "id": n.id.0,
                "label": n.label,
                "name": graph.display_name(registry, n.id),
                "kind": n.kind,
                "kind_version": n.kind_version,
                "params": n.params,
                "inputs": inputs,
            })
        })
        .collect();
    let mut results = serde_json::Map::new();
    for (port, value) in outputs {
        match value {
            Value::Table(r) => {
                results.insert(port.clone(), json!({ "headline": r.headline, "summary": r.summary, "notes": r.notes }));
            }
            Value::Model(m) => {
                results.insert(
                    port.clone(),
                    json!({
                        "name": m.name,
                        "source": m.path,
                        "size_bytes": m.bytes.len(),
                        "changes": m.changes,
                    }),
                );
            }
            _ => {}
        }
    }
    json!({
        "made_by": format!("QuantGraph {}", env!("CARGO_PKG_VERSION")),
        "exported_at_unix_s": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "graph_file": graph_file,
        "node": {
            "id": node.0,
            "label": graph.node(node).and_then(|n| n.label.clone()),
            "name": graph.display_name(registry, node),
        },
        "graph": nodes,
        "results": results,
        "measured": measured,
    })
}

/// The nodes that measure the model `node` makes: those reading its Model output directly
/// whose kind outputs Activations (a Layer Probe runs the model over a dataset).
pub fn measuring_readers(graph: &Graph, registry: &NodeRegistry, node: NodeId) -> Vec<NodeId> {
    let ports = |id: NodeId| -> Vec<crate::kind::PortSpec> {
        graph.node(id).and_then(|n| registry.get(&n.kind).map(|k| k.outputs(&n.params))).unwrap_or_default()
    };
    let model_ports: BTreeSet<String> =
        ports(node).into_iter().filter(|p| p.ty == PortType::Model).map(|p| p.name).collect();
    graph
        .consumers_of(node)
        .into_iter()
        .filter(|r| {
            graph.inputs_of(*r).iter().any(|(_, from)| from.node == node && model_ports.contains(&from.port))
                && ports(*r).iter().any(|p| p.ty == PortType::Activations)
        })
        .collect()
}

/// What the graph measured of the exported model: for each of `readers` (see
/// [`measuring_readers`]) that has a result, its top-1 accuracy over its dataset (samples,
/// where they came from); `outputs_of` gives a node's current outputs.
pub fn measured(
    graph: &Graph,
    registry: &NodeRegistry,
    readers: &[NodeId],
    outputs_of: &dyn Fn(NodeId) -> Option<Outputs>,
) -> Vec<Json> {
    let mut out = Vec::new();
    for r in readers {
        let Some(outputs) = outputs_of(*r) else { continue };
        for value in outputs.values() {
            let Value::Activations(a) = value else { continue };
            let Some(p) = &a.predictions else { continue };
            out.push(json!({
                "node": r.0,
                "name": graph.display_name(registry, *r),
                "samples": p.top1.len(),
                "top1_accuracy": p.accuracy(),
                "dataset": a.dataset.as_ref().map(|d| json!({ "source": d.source, "preprocessing": d.preprocessing })),
            }));
        }
    }
    out
}

/// Where a model exported to `out` gets its sidecar: `out` with `.json` appended.
pub fn sidecar_path(out: &std::path::Path) -> std::path::PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".json");
    std::path::PathBuf::from(s)
}

/// The node of `graph` whose path param reads `file`, with the param's name and the path it
/// resolves to: an export must not overwrite it. Files that do not exist are read by no one.
pub fn reader_of(
    graph: &Graph,
    registry: &NodeRegistry,
    file: &std::path::Path,
) -> Option<(NodeId, String, std::path::PathBuf)> {
    let target = std::fs::canonicalize(file).ok()?;
    graph.nodes().find_map(|n| {
        let kind = registry.get(&n.kind)?;
        kind.params().into_iter().find_map(|spec| {
            if !matches!(spec.kind, crate::ParamKind::Path { .. }) {
                return None;
            }
            let p = n.params.get(&spec.name).and_then(|v| v.as_str()).filter(|p| !p.is_empty())?;
            let source = crate::kind::resolve_path(graph.base_dir.as_deref(), p);
            (std::fs::canonicalize(&source).ok()? == target).then(|| (n.id, spec.name.clone(), source))
        })
    })
}
