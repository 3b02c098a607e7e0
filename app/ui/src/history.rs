//! Undo/redo of graph edits, as snapshots (graphs are small; a snapshot is a clone).

use quantgraph_nodes::Graph;

/// Undo and redo stacks.
#[derive(Default)]
pub struct History {
    undo: Vec<Graph>,
    redo: Vec<Graph>,
}

/// How many steps are kept.
const LIMIT: usize = 200;

impl History {
    /// Record the state before an edit.
    pub fn push(&mut self, before: Graph) {
        self.undo.push(before);
        if self.undo.len() > LIMIT {
            self.undo.remove(0);
        }
        self.redo.clear();
    }

    /// The state to go back to, given the current one.
    pub fn undo(&mut self, current: Graph) -> Option<Graph> {
        let prev = self.undo.pop()?;
        self.redo.push(current);
        Some(prev)
    }

    pub fn redo(&mut self, current: Graph) -> Option<Graph> {
        let next = self.redo.pop()?;
        self.undo.push(current);
        Some(next)
    }

    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    pub fn clear(&mut self) {
        self.undo.clear();
        self.redo.clear();
    }
}
