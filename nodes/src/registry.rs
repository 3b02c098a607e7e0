//! The [`NodeRegistry`]: node kinds registered by type, looked up by id.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::kind::NodeKind;

/// All known node kinds. Plugins add theirs with `register_nodes(&mut NodeRegistry)`.
#[derive(Default, Clone)]
pub struct NodeRegistry {
    kinds: BTreeMap<&'static str, Arc<dyn NodeKind>>,
}

impl NodeRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a kind by type. A second kind with the same id is an error.
    pub fn register<K: NodeKind + Default>(&mut self) -> Result<()> {
        self.register_kind(Arc::new(K::default()))
    }

    /// Register a kind instance (for kinds configured at start-up). A second kind with the
    /// same id, or a params declaration whose defaults do not read back into its struct
    /// ([`NodeKind::check_params`]), is an error: a plugin's mistake shows when the
    /// application starts, not when a user first evaluates the node.
    pub fn register_kind(&mut self, kind: Arc<dyn NodeKind>) -> Result<()> {
        let id = kind.id();
        if self.kinds.contains_key(id) {
            return Err(Error::DuplicateKind(id.to_owned()));
        }
        kind.check_params().map_err(|e| Error::BadParamsDeclaration(id.to_owned(), e))?;
        self.kinds.insert(id, kind);
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&Arc<dyn NodeKind>> {
        self.kinds.get(id)
    }

    /// All kinds, sorted by id.
    pub fn kinds(&self) -> impl Iterator<Item = &Arc<dyn NodeKind>> {
        self.kinds.values()
    }

    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }
}

impl std::fmt::Debug for NodeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_id_is_refused() {
        let mut r = NodeRegistry::new();
        r.register::<crate::testing::Const>().unwrap();
        let err = r.register::<crate::testing::Const>().unwrap_err();
        assert_eq!(err.to_string(), "a node kind with id 'test.const' is already registered");
        assert_eq!(r.len(), 1);
        assert!(r.get("test.const").is_some());
    }

    crate::params! {
        struct BadParams {
            count: usize = int("Count", 7, 0, 5),
        }
    }

    #[derive(Default)]
    struct BadKind;

    impl crate::kind::TypedKind for BadKind {
        type Params = BadParams;
        fn id(&self) -> &'static str {
            "test.bad_params"
        }
        fn display_name(&self) -> &'static str {
            "Bad params"
        }
        fn category(&self) -> &'static str {
            "Test"
        }
        fn doc(&self) -> &'static str {
            ""
        }
        fn inputs(&self) -> Vec<crate::PortSpec> {
            Vec::new()
        }
        fn outputs(&self) -> Vec<crate::PortSpec> {
            Vec::new()
        }
        fn evaluate(
            &self,
            _: &crate::EvalContext,
            _: &crate::Inputs,
            _: &BadParams,
        ) -> std::result::Result<crate::Outputs, crate::NodeError> {
            Ok(crate::Outputs::new())
        }
    }

    #[test]
    fn a_kind_whose_default_params_do_not_read_is_refused_at_registration() {
        let mut r = NodeRegistry::new();
        let err = r.register::<BadKind>().unwrap_err().to_string();
        assert!(err.starts_with("node kind 'test.bad_params' declares its params wrongly: param 'count'"), "{err}");
        assert!(r.get("test.bad_params").is_none());
    }
}
