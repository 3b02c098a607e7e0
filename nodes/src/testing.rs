//! Trivial node kinds for tests, benchmarks and examples of the engine (no files, no
//! models). Not registered by the application.
//!
//! * `test.const` — outputs its `value` param.
//! * `test.add` — `a + b` (b optional) plus its `bias` param.
//! * `test.slow` — passes `x` through after `millis` ms, checking for cancellation.
//! * `test.fail` — always fails; `test.panic` — always panics.
//! * `test.file` — outputs the length of a file (reads a file: its identity is in the key).

use std::path::Path;

use crate::error::{NodeError, Result};
use crate::kind::{file_identity, resolve_path, single, EvalContext, Inputs, NodeKind, Outputs, PortSpec};
use crate::param::{ParamReader, ParamSpec, Params};
use crate::registry::NodeRegistry;
use crate::value::{PortType, Value};

/// Register every test kind.
pub fn register_nodes(registry: &mut NodeRegistry) -> Result<()> {
    registry.register::<Const>()?;
    registry.register::<Add>()?;
    registry.register::<Slow>()?;
    registry.register::<Fail>()?;
    registry.register::<Panic>()?;
    registry.register::<FileLen>()?;
    Ok(())
}

#[derive(Default)]
pub struct Const;

impl NodeKind for Const {
    fn id(&self) -> &'static str {
        "test.const"
    }
    fn version(&self) -> u32 {
        2
    }
    fn display_name(&self) -> &'static str {
        "Constant"
    }
    fn category(&self) -> &'static str {
        "Test"
    }
    fn doc(&self) -> &'static str {
        "Outputs the number in its `value` param."
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::float("value", "Value", 0.0, -1e12, 1e12)]
    }
    fn inputs(&self, _: &Params) -> Vec<PortSpec> {
        Vec::new()
    }
    fn outputs(&self, _: &Params) -> Vec<PortSpec> {
        vec![PortSpec::new("out", PortType::Scalar)]
    }
    fn evaluate(&self, _: &EvalContext, _: &Inputs, params: &Params) -> Result<Outputs, NodeError> {
        let r = ParamReader::new(params, self.params());
        Ok(single("out", Value::Scalar(r.f64("value")?)))
    }
    fn migrations(&self) -> Vec<crate::kind::Migration> {
        // Version 1 called the param `v`.
        vec![crate::kind::Migration {
            from_version: 1,
            apply: |params| {
                if let Some(v) = params.remove("v") {
                    params.insert("value".into(), v);
                }
                Ok(())
            },
        }]
    }
}

#[derive(Default)]
pub struct Add;

impl NodeKind for Add {
    fn id(&self) -> &'static str {
        "test.add"
    }
    fn display_name(&self) -> &'static str {
        "Add"
    }
    fn category(&self) -> &'static str {
        "Test"
    }
    fn doc(&self) -> &'static str {
        "Outputs a + b + bias; b is optional."
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::float("bias", "Bias", 0.0, -1e12, 1e12)]
    }
    fn inputs(&self, _: &Params) -> Vec<PortSpec> {
        vec![PortSpec::new("a", PortType::Scalar), PortSpec::optional("b", PortType::Scalar)]
    }
    fn outputs(&self, _: &Params) -> Vec<PortSpec> {
        vec![PortSpec::new("out", PortType::Scalar)]
    }
    fn evaluate(&self, _: &EvalContext, inputs: &Inputs, params: &Params) -> Result<Outputs, NodeError> {
        let r = ParamReader::new(params, self.params());
        let b = match inputs.optional("b") {
            Some(_) => inputs.scalar("b")?,
            None => 0.0,
        };
        Ok(single("out", Value::Scalar(inputs.scalar("a")? + b + r.f64("bias")?)))
    }
}

#[derive(Default)]
pub struct Slow;

static SLOW_CANCELLED: std::sync::Mutex<std::collections::BTreeMap<u64, usize>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// How many `test.slow` evaluations with this `millis` stopped because they were cancelled.
pub fn slow_cancellations(millis: u64) -> usize {
    SLOW_CANCELLED.lock().map(|m| m.get(&millis).copied().unwrap_or(0)).unwrap_or(0)
}

impl NodeKind for Slow {
    fn id(&self) -> &'static str {
        "test.slow"
    }
    fn display_name(&self) -> &'static str {
        "Slow"
    }
    fn category(&self) -> &'static str {
        "Test"
    }
    fn doc(&self) -> &'static str {
        "Passes x through after `millis` milliseconds, reporting progress and stopping when cancelled."
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::int("millis", "Milliseconds", 100, 0, 600_000),
            ParamSpec::float("tag", "Tag", 0.0, -1e12, 1e12),
        ]
    }
    fn inputs(&self, _: &Params) -> Vec<PortSpec> {
        vec![PortSpec::new("x", PortType::Scalar)]
    }
    fn outputs(&self, _: &Params) -> Vec<PortSpec> {
        vec![PortSpec::new("out", PortType::Scalar)]
    }
    fn evaluate(&self, ctx: &EvalContext, inputs: &Inputs, params: &Params) -> Result<Outputs, NodeError> {
        let r = ParamReader::new(params, self.params());
        let millis = r.i64("millis")?.max(0) as u64;
        let start = std::time::Instant::now();
        while start.elapsed().as_millis() < u128::from(millis) {
            if ctx.is_cancelled() {
                if let Ok(mut m) = SLOW_CANCELLED.lock() {
                    *m.entry(millis).or_default() += 1;
                }
                return Err(NodeError::Cancelled);
            }
            ctx.progress(start.elapsed().as_millis() as f32 / millis.max(1) as f32, "sleeping");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Ok(single("out", Value::Scalar(inputs.scalar("x")? + r.f64("tag")?)))
    }
}

#[derive(Default)]
pub struct Fail;

impl NodeKind for Fail {
    fn id(&self) -> &'static str {
        "test.fail"
    }
    fn display_name(&self) -> &'static str {
        "Fail"
    }
    fn category(&self) -> &'static str {
        "Test"
    }
    fn doc(&self) -> &'static str {
        "Always fails with the message in its param."
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::text("message", "Message", "deliberate failure")]
    }
    fn inputs(&self, _: &Params) -> Vec<PortSpec> {
        vec![PortSpec::optional("x", PortType::Scalar)]
    }
    fn outputs(&self, _: &Params) -> Vec<PortSpec> {
        vec![PortSpec::new("out", PortType::Scalar)]
    }
    fn evaluate(&self, _: &EvalContext, _: &Inputs, params: &Params) -> Result<Outputs, NodeError> {
        Err(NodeError::failed(ParamReader::new(params, self.params()).str("message")?))
    }
}

#[derive(Default)]
pub struct Panic;

impl NodeKind for Panic {
    fn id(&self) -> &'static str {
        "test.panic"
    }
    fn display_name(&self) -> &'static str {
        "Panic"
    }
    fn category(&self) -> &'static str {
        "Test"
    }
    fn doc(&self) -> &'static str {
        "Always panics (to test that panics are contained)."
    }
    fn params(&self) -> Vec<ParamSpec> {
        Vec::new()
    }
    fn inputs(&self, _: &Params) -> Vec<PortSpec> {
        vec![PortSpec::optional("x", PortType::Scalar)]
    }
    fn outputs(&self, _: &Params) -> Vec<PortSpec> {
        vec![PortSpec::new("out", PortType::Scalar)]
    }
    #[allow(clippy::panic)]
    fn evaluate(&self, _: &EvalContext, _: &Inputs, _: &Params) -> Result<Outputs, NodeError> {
        panic!("test.panic always panics")
    }
}

#[derive(Default)]
pub struct FileLen;

impl NodeKind for FileLen {
    fn id(&self) -> &'static str {
        "test.file"
    }
    fn display_name(&self) -> &'static str {
        "File length"
    }
    fn category(&self) -> &'static str {
        "Test"
    }
    fn doc(&self) -> &'static str {
        "Outputs the length in bytes of the file at `path`."
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::path("path", "File", "", &[], false)]
    }
    fn inputs(&self, _: &Params) -> Vec<PortSpec> {
        Vec::new()
    }
    fn outputs(&self, _: &Params) -> Vec<PortSpec> {
        vec![PortSpec::new("out", PortType::Scalar)]
    }
    fn evaluate(&self, ctx: &EvalContext, _: &Inputs, params: &Params) -> Result<Outputs, NodeError> {
        let path = ctx.resolve_path(&ParamReader::new(params, self.params()).str("path")?);
        let bytes = std::fs::read(&path).map_err(|e| NodeError::file(format!("cannot read the file ({e})"), &path))?;
        Ok(single("out", Value::Scalar(bytes.len() as f64)))
    }
    fn external_identity(&self, params: &Params, base_dir: Option<&Path>) -> Option<String> {
        let p = params.get("path")?.as_str()?;
        Some(file_identity(&resolve_path(base_dir, p)))
    }
}
