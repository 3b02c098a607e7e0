//! Errors of the engine (`Error`) and of a node's evaluation (`NodeError`).

use std::path::PathBuf;

/// Errors of engine operations: registry, graph edits, files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("a node kind with id '{0}' is already registered")]
    DuplicateKind(String),
    #[error("node kind '{0}' declares its params wrongly: {1}")]
    BadParamsDeclaration(String, String),
    #[error("unknown node kind '{0}'")]
    UnknownKind(String),
    #[error("no node with id {0}")]
    UnknownNode(u64),
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Param(String),
    #[error("malformed graph file at line {line}, column {column}: {message}: {path}")]
    Parse { line: usize, column: usize, message: String, path: PathBuf },
    #[error("invalid graph file: {message}: {path}")]
    Invalid { message: String, path: PathBuf },
    #[error("{action} failed: {source}: {path}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while evaluating one node. Shown on that node only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// A parameter has a value the node cannot use.
    #[error("parameter '{param}': {message}")]
    Param { param: String, message: String },
    /// An input is missing or holds something the node cannot use.
    #[error("input '{port}': {message}")]
    Input { port: String, message: String },
    /// A file could not be read or is not what was expected.
    #[error("{message}: {path}")]
    File { message: String, path: String },
    /// Any other failure, with a message a user can read.
    #[error("{0}")]
    Failed(String),
    /// The evaluation was cancelled (a newer edit made it stale, or the user stopped it).
    #[error("cancelled")]
    Cancelled,
    /// The node's code panicked; the panic was contained.
    #[error("the node panicked: {0}")]
    Panicked(String),
    /// The graph file names a kind this build does not know.
    #[error("unknown node kind '{0}' (kept as a placeholder; its params are saved unchanged)")]
    UnknownKind(String),
}

impl NodeError {
    pub fn failed(msg: impl Into<String>) -> Self {
        Self::Failed(msg.into())
    }
    pub fn param(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Param { param: param.into(), message: message.into() }
    }
    pub fn input(port: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Input { port: port.into(), message: message.into() }
    }
    pub fn file(message: impl Into<String>, path: impl AsRef<std::path::Path>) -> Self {
        Self::File { message: message.into(), path: path.as_ref().display().to_string() }
    }
}
