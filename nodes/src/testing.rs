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
use crate::kind::{file_identity, resolve_path, single, EvalContext, Inputs, Outputs, PortSpec, TypedKind};
use crate::param::NoParams;
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

crate::params! {
    pub struct ConstParams {
        pub value: f64 = float("Value", 0.0, -1e12, 1e12),
    }
}

impl TypedKind for Const {
    type Params = ConstParams;
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
    fn inputs(&self) -> Vec<PortSpec> {
        Vec::new()
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("out", PortType::Scalar)]
    }
    fn evaluate(&self, _: &EvalContext, _: &Inputs, params: &ConstParams) -> Result<Outputs, NodeError> {
        Ok(single("out", Value::Scalar(params.value)))
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

crate::params! {
    pub struct AddParams {
        pub bias: f64 = float("Bias", 0.0, -1e12, 1e12),
    }
}

impl TypedKind for Add {
    type Params = AddParams;
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
    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("a", PortType::Scalar), PortSpec::optional("b", PortType::Scalar)]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("out", PortType::Scalar)]
    }
    fn evaluate(&self, _: &EvalContext, inputs: &Inputs, params: &AddParams) -> Result<Outputs, NodeError> {
        let b = match inputs.optional("b") {
            Some(_) => inputs.scalar("b")?,
            None => 0.0,
        };
        Ok(single("out", Value::Scalar(inputs.scalar("a")? + b + params.bias)))
    }
}

#[derive(Default)]
pub struct Slow;

crate::params! {
    pub struct SlowParams {
        pub millis: u64 = int("Milliseconds", 100, 0, 600_000),
        pub tag: f64 = float("Tag", 0.0, -1e12, 1e12),
    }
}

static SLOW_CANCELLED: std::sync::Mutex<std::collections::BTreeMap<u64, usize>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// How many `test.slow` evaluations with this `millis` stopped because they were cancelled.
pub fn slow_cancellations(millis: u64) -> usize {
    SLOW_CANCELLED.lock().map(|m| m.get(&millis).copied().unwrap_or(0)).unwrap_or(0)
}

impl TypedKind for Slow {
    type Params = SlowParams;
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
    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("x", PortType::Scalar)]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("out", PortType::Scalar)]
    }
    fn evaluate(&self, ctx: &EvalContext, inputs: &Inputs, params: &SlowParams) -> Result<Outputs, NodeError> {
        let millis = params.millis;
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
        Ok(single("out", Value::Scalar(inputs.scalar("x")? + params.tag)))
    }
}

#[derive(Default)]
pub struct Fail;

crate::params! {
    pub struct FailParams {
        pub message: String = text("Message", "deliberate failure"),
    }
}

impl TypedKind for Fail {
    type Params = FailParams;
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
    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::optional("x", PortType::Scalar)]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("out", PortType::Scalar)]
    }
    fn evaluate(&self, _: &EvalContext, _: &Inputs, params: &FailParams) -> Result<Outputs, NodeError> {
        Err(NodeError::failed(params.message.clone()))
    }
}

#[derive(Default)]
pub struct Panic;

impl TypedKind for Panic {
    type Params = NoParams;
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
    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::optional("x", PortType::Scalar)]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("out", PortType::Scalar)]
    }
    #[allow(clippy::panic)]
    fn evaluate(&self, _: &EvalContext, _: &Inputs, _: &NoParams) -> Result<Outputs, NodeError> {
        panic!("test.panic always panics")
    }
}

#[derive(Default)]
pub struct FileLen;

crate::params! {
    pub struct FileLenParams {
        pub path: String = path("File", "", &[], false),
    }
}

impl TypedKind for FileLen {
    type Params = FileLenParams;
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
    fn inputs(&self) -> Vec<PortSpec> {
        Vec::new()
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("out", PortType::Scalar)]
    }
    fn evaluate(&self, ctx: &EvalContext, _: &Inputs, params: &FileLenParams) -> Result<Outputs, NodeError> {
        let path = ctx.resolve_path(&params.path);
        let bytes = std::fs::read(&path).map_err(|e| NodeError::file(format!("cannot read the file ({e})"), &path))?;
        Ok(single("out", Value::Scalar(bytes.len() as f64)))
    }
    fn external_identity(&self, params: &FileLenParams, base_dir: Option<&Path>) -> Option<String> {
        Some(file_identity(&resolve_path(base_dir, &params.path)))
    }
}
