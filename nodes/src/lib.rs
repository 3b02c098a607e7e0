//! # quantgraph-nodes — the QuantGraph engine
//!
//! Everything that makes a QuantGraph graph evaluate, with no UI and no ONNX Runtime:
//!
//! * [`value`]: the port types and the values that flow on wires ([`Value`] is cheap to
//!   clone: every payload sits behind an `Arc`).
//! * [`param`]: the declared parameter schema of a node kind and typed params
//!   ([`params!`] declares a kind's params struct and its schema at once).
//! * [`kind`]: the [`TypedKind`] trait a plugin implements (and [`NodeKind`], the form the
//!   engine sees), and the [`EvalContext`] a node evaluates in (progress, cancellation,
//!   paths).
//! * [`registry`]: the [`NodeRegistry`] where kinds are registered by type.
//! * [`graph`]: the [`Graph`] (nodes, wires, edits that refuse type mismatches and cycles).
//! * [`file`]: `.qgraph` files (JSON, atomic and deterministic saves, migrations,
//!   placeholders for unknown kinds).
//! * [`fsio`]: atomic writes of every file a user sees; bounded reads of regular files only.
//! * [`fuzz`]: the deterministic mutation fuzzer the fuzz tests of every crate share.
//! * [`stats`]: mergeable streaming moments and histograms.
//! * [`scheduler`]: the demand-driven, content-addressed, cancellable [`Scheduler`].
//!
//! Data flows one way: file/UI edit → [`Graph`] → [`Scheduler`] → node kinds → [`Value`]s →
//! events back to whoever asked. This crate never imports a plugin or the app.

pub mod diff;
pub mod error;
pub mod file;
pub mod fsio;
pub mod fuzz;
pub mod graph;
pub mod images;
pub mod jsonf64;
pub mod kernels;
pub mod kind;
pub mod memo;
pub mod param;
pub mod provenance;
pub mod registry;
pub mod scheduler;
pub mod stats;
pub mod testing;
pub mod value;

pub use error::{Error, NodeError, Result};
pub use graph::{Graph, Node, NodeId, PortRef, Wire};
pub use kind::{EvalContext, Inputs, NodeKind, Outputs, PortSpec, TypedKind};
pub use param::{KindParams, NoParams, ParamKind, ParamSpec, Params};
pub use registry::NodeRegistry;
pub use scheduler::{Evaluation, Event, NodeOutcome, Scheduler};
pub use value::{PortType, Value};
