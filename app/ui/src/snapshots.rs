//! Before/after in the editor: every report a node produces (a comparator's, or any table
//! value with a summary or a per-layer table) is kept as a named snapshot — the last
//! [`KEEP`] plus any the user pins — so that after an edit the user can set an earlier one as
//! the baseline and see "now vs then" with deltas, without writing numbers down.

use std::collections::HashMap;
use std::sync::Arc;

use quantgraph_nodes::graph::NodeId;
use quantgraph_nodes::value::Report;
use quantgraph_nodes::{Outputs, Value};

/// Unpinned snapshots kept per report.
pub const KEEP: usize = 10;

/// One kept report.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Stable within the node (1, 2, …), for naming and for the baseline choice.
    pub id: usize,
    pub name: String,
    pub report: Arc<Report>,
    pub pinned: bool,
}

/// The snapshots of one report port, oldest first; the last is "now".
#[derive(Debug, Clone, Default)]
pub struct History {
    pub items: Vec<Snapshot>,
    next: usize,
    /// The snapshot compared against, by id.
    pub baseline: Option<usize>,
}

impl History {
    /// Keep `report` as the newest snapshot (unless it is the newest already), dropping the
    /// oldest unpinned ones beyond [`KEEP`].
    pub fn push(&mut self, report: &Arc<Report>) {
        if self.items.last().is_some_and(|s| Arc::ptr_eq(&s.report, report) || *s.report == **report) {
            return;
        }
        self.next += 1;
        let name = match report.summary.get("accuracy_b").or_else(|| report.summary.get("agreement")) {
            Some(v) => format!("run {} ({:.2} %)", self.next, v * 100.0),
            None => format!("run {}", self.next),
        };
        self.items.push(Snapshot { id: self.next, name, report: report.clone(), pinned: false });
        while self.items.iter().filter(|s| !s.pinned).count() > KEEP {
            let Some(oldest) = self.items.iter().position(|s| !s.pinned) else { break };
            let gone = self.items.remove(oldest);
            if self.baseline == Some(gone.id) {
                self.baseline = None;
            }
        }
    }
    pub fn now(&self) -> Option<&Snapshot> {
        self.items.last()
    }
    pub fn baseline(&self) -> Option<&Snapshot> {
        let id = self.baseline?;
        self.items.iter().find(|s| s.id == id && Some(s.id) != self.now().map(|n| n.id))
    }
    /// Pin (or unpin) the current snapshot: pinned ones are never dropped.
    pub fn toggle_pin_now(&mut self) {
        if let Some(s) = self.items.last_mut() {
            s.pinned = !s.pinned;
        }
    }
}

/// Every node's report histories.
#[derive(Debug, Default)]
pub struct Snapshots {
    by_port: HashMap<(NodeId, String), History>,
}

impl Snapshots {
    /// Record a node's new outputs: each report with a summary or a per-layer table.
    pub fn record(&mut self, node: NodeId, outputs: &Outputs) {
        for (port, value) in outputs.iter() {
            if let Value::Table(r) = value {
                if !r.summary.is_empty() || crate::views::layer_table(r).is_some() {
                    self.by_port.entry((node, port.clone())).or_default().push(r);
                }
            }
        }
    }
    pub fn get(&self, node: NodeId, port: &str) -> Option<&History> {
        self.by_port.get(&(node, port.to_owned()))
    }
    pub fn get_mut(&mut self, node: NodeId, port: &str) -> Option<&mut History> {
        self.by_port.get_mut(&(node, port.to_owned()))
    }
    /// Forget a deleted node's snapshots.
    pub fn forget(&mut self, node: NodeId) {
        self.by_port.retain(|(n, _), _| *n != node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(acc: f64) -> Arc<Report> {
        Arc::new(Report { summary: [("accuracy_b".to_owned(), acc)].into_iter().collect(), ..Report::default() })
    }

    #[test]
    fn keeps_the_last_ten_and_the_pinned_and_skips_repeats() {
        let mut h = History::default();
        h.push(&report(0.5));
        h.toggle_pin_now();
        h.push(&report(0.5));
        assert_eq!(h.items.len(), 1, "the same report again is not a new snapshot");
        for k in 0..15 {
            h.push(&report(0.6 + f64::from(k) / 100.0));
        }
        assert_eq!(h.items.len(), KEEP + 1);
        assert!(h.items[0].pinned && h.items[0].name == "run 1 (50.00 %)", "{:?}", h.items[0].name);
        assert_eq!(h.items.last().unwrap().id, 16);
        h.baseline = Some(1);
        assert_eq!(h.baseline().unwrap().id, 1);
        h.baseline = Some(16);
        assert!(h.baseline().is_none(), "now is not its own baseline");
    }
}
