//! ONNX Runtime, loaded at run time from a shared library (`ort` with `load-dynamic`).
//!
//! The library is found through `ORT_DYLIB_PATH`, else in the project's cache filled by
//! `scripts/ensure-ort.sh` (the pinned `onnxruntime` wheel from PyPI, sha256-checked).
//! When it cannot be found or loaded, every model node says so and what to do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use quantgraph_nodes::value::{Images, Tensor};
use quantgraph_nodes::{EvalContext, NodeError};

/// The ONNX Runtime version this build is made for (ort's `api-31`).
pub const ORT_VERSION: &str = "1.31.1";

static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Where the library is looked for, in order.
pub fn library_candidates() -> Vec<PathBuf> {
    let file = format!("libonnxruntime.so.{ORT_VERSION}");
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        out.push(PathBuf::from(p));
        return out;
    }
    if let Some(cache) = std::env::var_os("QUANTGRAPH_CACHE") {
        out.push(Path::new(&cache).join(format!("onnxruntime-{ORT_VERSION}")).join(&file));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            out.push(dir.join(&file));
            // target/<profile>/ → repository root
            for up in [dir.join("../.."), dir.join("../../..")] {
                out.push(up.join(".cache").join(format!("onnxruntime-{ORT_VERSION}")).join(&file));
            }
        }
    }
    out
}

/// Turn off ONNX Runtime's telemetry, which on Linux (1DS, since 1.2x) writes a device id
/// and a database under `$XDG_CACHE_HOME` or `~/.cache/Microsoft/DeveloperTools` as soon
/// as the library starts, whatever `DisableTelemetryEvents` says later. The library reads
/// `ORT_DISABLE_TELEMETRY` when it starts, so this must run before the first session; the
/// binary calls it first thing in `main`, before any thread exists. A value the user set
/// is left alone.
pub fn disable_telemetry_env() {
    if std::env::var_os("ORT_DISABLE_TELEMETRY").is_none() {
        std::env::set_var("ORT_DISABLE_TELEMETRY", "1");
    }
}

fn load() -> Result<Environment, String> {
    // Also here, for library users that do not go through the binary's `main`; ONNX
    // Runtime is not loaded yet, so none of its threads can be reading the environment.
    disable_telemetry_env();
    let candidates = library_candidates();
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "ONNX Runtime {ORT_VERSION} was not found. Run `scripts/ensure-ort.sh` (it fetches the pinned onnxruntime \
             wheel from PyPI and checks its sha256), or set ORT_DYLIB_PATH to a libonnxruntime.so {ORT_VERSION}. \
             Looked in: {}",
            looked.join(", ")
        ));
    };
    let builder = ort::init_from(path)
        .map_err(|e| format!("ONNX Runtime could not be loaded from {} ({e}); set ORT_DYLIB_PATH to a working libonnxruntime.so {ORT_VERSION}", path.display()))?;
    // Telemetry off: ONNX Runtime would otherwise record usage (and, in Microsoft's builds,
    // write a device id under ~/.cache/Microsoft/DeveloperTools) on every run.
    builder
        .with_name("quantgraph")
        .with_telemetry(false)
        .build()
        .map_err(|e| format!("ONNX Runtime loaded from {} but did not start: {e}", path.display()))
}

/// The process-wide ONNX Runtime environment.
pub fn environment() -> Result<&'static Environment, NodeError> {
    ENV.get_or_init(load).as_ref().map_err(|e| NodeError::failed(e.clone()))
}

fn ort_err(context: &str) -> impl Fn(ort::Error) -> NodeError + '_ {
    move |e| NodeError::failed(format!("{context}: {e}"))
}

/// A session made from model bytes, optimised as Python's `InferenceSession` does by
/// default (all graph optimisations).
pub fn session(bytes: &[u8], threads: usize) -> Result<Session, NodeError> {
    session_with(bytes, threads, false)
}

/// A session for probing (`probing`): like [`session`], but Q/DQ pairs are never fused into
/// integer kernels, so a tensor's values do not depend on which other tensors are captured
/// (capturing a Q/DQ pair's output blocks that fusion anyway). This is what lets a probe or
/// comparator reuse figures of tensors an edit did not reach. Predictions still come from
/// the model as it runs unprobed.
pub fn session_with(bytes: &[u8], threads: usize, probing: bool) -> Result<Session, NodeError> {
    session_at(bytes, threads, probing, GraphOptimizationLevel::All)
}

/// A session with no graph optimization, as ONNX Runtime's calibrators make theirs
/// (`ORT_DISABLE_ALL`): every tensor is computed by the op that makes it in the model, so
/// calibrated ranges are those of the model as written.
pub fn session_unoptimized(bytes: &[u8], threads: usize) -> Result<Session, NodeError> {
    session_at(bytes, threads, false, GraphOptimizationLevel::Disable)
}

fn session_at(
    bytes: &[u8],
    threads: usize,
    probing: bool,
    level: GraphOptimizationLevel,
) -> Result<Session, NodeError> {
    let env = environment()?;
    let builder = Session::builder(env).map_err(ort_err("ONNX Runtime session options"))?;
    // No spinning: the scheduler runs several sessions at once (both probes, a comparator),
    // and spinning intra-op threads would burn the cores the others and our statistics need.
    let options = |e: ort::Error<_>| NodeError::failed(format!("ONNX Runtime session options: {e}"));
    let builder = builder.with_optimization_level(level).map_err(options)?;
    let builder = builder.with_intra_op_spinning(false).map_err(options)?;
    let builder =
        if probing { builder.with_config_entry("session.disable_quant_qdq", "1").map_err(options)? } else { builder };
    let mut builder = if threads > 0 {
        builder
            .with_intra_threads(threads)
            .map_err(|e| NodeError::failed(format!("ONNX Runtime session options: {e}")))?
    } else {
        builder
    };
    let started = std::time::Instant::now();
    let session = builder.commit_from_memory(bytes).map_err(ort_err("ONNX Runtime could not load the model"))?;
    tracing::debug!(
        bytes = bytes.len(),
        threads,
        outputs = session.outputs().len(),
        secs = started.elapsed().as_secs_f64(),
        "ONNX Runtime session created"
    );
    Ok(session)
}

/// Outputs of a batched run: name → (shape with the full sample count, data).
pub type RunOutputs = BTreeMap<String, Tensor>;

/// Run `images` (first axis = samples) through the session in batches and hand each
/// named output of each batch to `on_batch(first_sample, name, item_shape, data)`.
/// Reports progress and stops when cancelled.
#[allow(clippy::too_many_arguments)]
pub fn for_each_batch(
    session: &mut Session,
    feed: &Feed,
    images: &Images,
    batch_size: usize,
    outputs: &[String],
    ctx: &EvalContext,
    what: &str,
    mut on_batch: impl FnMut(usize, &str, &[usize], &[f32]) -> Result<(), NodeError>,
) -> Result<(), NodeError> {
    let n = images.len();
    let batch_size = batch_size.max(1);
    let began = std::time::Instant::now();
    let mut start = 0;
    while start < n {
        ctx.check_cancelled()?;
        let end = (start + batch_size).min(n);
        run_batch(ctx, session, feed, images, start, end, outputs, |outs| {
            for (name, item_shape, data) in outs {
                on_batch(start, name, &item_shape, data)?;
            }
            Ok(())
        })?;
        start = end;
        let rate = end as f64 / began.elapsed().as_secs_f64().max(1e-9);
        ctx.progress(end as f32 / n as f32, &format!("{what}: {end}/{n} images, {rate:.0} images/s"));
    }
    Ok(())
}

/// Run samples `start..end` of `images` (first axis = samples) and hand every named
/// output to `f` as `(name, shape per sample, data)`, borrowed from ONNX Runtime's buffers
/// (no copy).
#[allow(clippy::type_complexity)]
#[allow(clippy::too_many_arguments)]
pub fn run_batch<R>(
    ctx: &EvalContext,
    session: &mut Session,
    feed: &Feed,
    images: &Images,
    start: usize,
    end: usize,
    outputs: &[String],
    f: impl FnOnce(Vec<(&str, Vec<usize>, &[f32])>) -> Result<R, NodeError>,
) -> Result<R, NodeError> {
    let input = input_value(ctx, feed, images, start, end)?;
    run_feeding(ctx, session, feed, vec![(feed.name.as_str(), input)], outputs, f)
}

/// The model's input for samples `start..end` of `images`, laid out and quantized as `feed`
/// says.
pub fn input_value(
    ctx: &EvalContext,
    feed: &Feed,
    images: &Images,
    start: usize,
    end: usize,
) -> Result<ort::value::DynValue, NodeError> {
    let mut shape: Vec<usize> = vec![end.saturating_sub(start)];
    shape.extend(images.item_shape());
    let data = images.batch(start, end, &|| ctx.is_cancelled())?;
    let (shape, data) = feed.layout_batch(shape, &data);
    let shape: Vec<i64> = shape.iter().map(|d| *d as i64).collect();
    let input: ort::value::DynValue = match &feed.quant {
        None => ort::value::Tensor::from_array((shape, data.into_owned()))
            .map_err(ort_err("making the input tensor"))?
            .into_dyn(),
        Some(q) if q.dtype == "uint8" => ort::value::Tensor::from_array((shape, q.quantize::<u8>(&data)))
            .map_err(ort_err("making the input tensor"))?
            .into_dyn(),
        Some(q) => ort::value::Tensor::from_array((shape, q.quantize::<i8>(&data)))
            .map_err(ort_err("making the input tensor"))?
            .into_dyn(),
    };
    Ok(input)
}

/// Run the session on `inputs` and hand every named output to `f` as `(name, shape per
/// sample, data)`, borrowed from ONNX Runtime's buffers; int8/uint8 outputs are dequantized
/// with `feed`'s scales and zero points.
#[allow(clippy::type_complexity)]
pub fn run_feeding<R>(
    ctx: &EvalContext,
    session: &mut Session,
    feed: &Feed,
    inputs: Vec<(&str, ort::value::DynValue)>,
    outputs: &[String],
    f: impl FnOnce(Vec<(&str, Vec<usize>, &[f32])>) -> Result<R, NodeError>,
) -> Result<R, NodeError> {
    run_cancellable(ctx, session, inputs, |result| {
        let mut outs = Vec::with_capacity(outputs.len());
        let mut converted: Vec<(usize, Vec<usize>, Vec<f32>)> = Vec::new();
        for (k, name) in outputs.iter().enumerate() {
            let Some(value) = result.get(name) else {
                return Err(NodeError::failed(format!("the model gave no output '{name}'")));
            };
            if let Ok((shape, data)) = value.try_extract_tensor::<f32>() {
                let item_shape: Vec<usize> = shape.iter().skip(1).map(|d| (*d).max(0) as usize).collect();
                outs.push((name.as_str(), item_shape, data));
                continue;
            }
            // A quantized tensor: dequantized with its scale and zero point.
            let Some(dq) = feed.dequantize.get(name) else {
                return Err(NodeError::failed(format!(
                    "output '{name}' is not a float tensor and QuantGraph does not know its scale and zero point"
                )));
            };
            let (shape, values) = if let Ok((shape, data)) = value.try_extract_tensor::<i8>() {
                (shape.clone(), data.iter().map(|q| (f32::from(*q) - dq.zero_point as f32) * dq.scale).collect())
            } else if let Ok((shape, data)) = value.try_extract_tensor::<u8>() {
                (shape.clone(), data.iter().map(|q| (f32::from(*q) - dq.zero_point as f32) * dq.scale).collect())
            } else {
                return Err(NodeError::failed(format!("output '{name}' is neither float, int8 nor uint8")));
            };
            let item_shape: Vec<usize> = shape.iter().skip(1).map(|d| (*d).max(0) as usize).collect();
            converted.push((k, item_shape, values));
        }
        for (k, item_shape, values) in &converted {
            outs.insert((*k).min(outs.len()), (outputs[*k].as_str(), item_shape.clone(), values.as_slice()));
        }
        f(outs)
    })
}

/// Run samples `start..end` of a cut's cached values through a suffix model (see
/// [`crate::cuts`]), as [`run_batch`] runs images through the whole model.
#[allow(clippy::type_complexity)]
#[allow(clippy::too_many_arguments)]
/// The cut itself, when asked for, is its kept values (the suffix model does not make it).
pub fn run_cut_batch<R>(
    ctx: &EvalContext,
    session: &mut Session,
    feed: &Feed,
    cut: &str,
    values: &crate::cuts::CutValues,
    start: usize,
    end: usize,
    outputs: &[String],
    f: impl FnOnce(Vec<(&str, Vec<usize>, &[f32])>) -> Result<R, NodeError>,
) -> Result<R, NodeError> {
    let (shape, data) = values.batch(start, end).ok_or_else(|| {
        NodeError::failed(format!("the cached values of '{cut}' do not cover samples {start}..{end}"))
    })?;
    let ort_shape: Vec<i64> = shape.iter().map(|d| *d as i64).collect();
    let input = ort::value::Tensor::from_array((ort_shape, data.to_vec()))
        .map_err(ort_err("making the cut's input tensor"))?
        .into_dyn();
    let made: Vec<String> = outputs.iter().filter(|o| *o != cut).cloned().collect();
    let at = outputs.iter().position(|o| o == cut);
    run_feeding(ctx, session, feed, vec![(cut, input)], &made, |outs| {
        // A vector of its own: it borrows both ONNX Runtime's outputs and the kept values.
        let mut all: Vec<(&str, Vec<usize>, &[f32])> = Vec::with_capacity(outs.len() + 1);
        all.extend(outs);
        if let Some(at) = at {
            all.insert(at.min(all.len()), (cut, values.item_shape.clone(), data));
        }
        f(all)
    })
}

/// Run the session, stopping inside the run (not only between batches) when the work is
/// cancelled: a watcher thread sets ONNX Runtime's terminate flag as soon as `ctx` is
/// cancelled, so a superseded evaluation (a slider drag) frees the cores within
/// milliseconds even when one batch takes seconds.
pub fn run_cancellable<R>(
    ctx: &EvalContext,
    session: &mut Session,
    inputs: Vec<(&str, ort::value::DynValue)>,
    f: impl FnOnce(&ort::session::SessionOutputs<'_>) -> Result<R, NodeError>,
) -> Result<R, NodeError> {
    let options = ort::session::RunOptions::new().map_err(ort_err("ONNX Runtime run options"))?;
    if ctx.is_cancelled() {
        // Set before the run starts: ONNX Runtime stops at once.
        let _ = options.terminate();
    }
    let options = Arc::new(options);
    watch(&options, ctx.cancel_flag());
    // The inputs are lent to the run and live until `f` is done: ONNX Runtime hands a graph
    // input asked for as an output back without copying it.
    let lent: Vec<(&str, ort::session::SessionInputValue<'_>)> =
        inputs.iter().map(|(name, value)| (*name, ort::session::SessionInputValue::from(value))).collect();
    let result = session.run_with_options(lent, &*options);
    match result {
        Ok(outputs) => f(&outputs),
        Err(_) if ctx.is_cancelled() => Err(NodeError::Cancelled),
        Err(e) => Err(ort_err("ONNX Runtime run failed")(e)),
    }
}

/// Runs in progress and their contexts' cancel flags, for the watcher.
type Watched = Vec<(std::sync::Weak<ort::session::RunOptions>, Arc<std::sync::atomic::AtomicBool>)>;

/// Have the one watcher thread of the process stop the run with `options` once `cancel` is
/// set. It looks every 2 ms while runs are in progress, sleeps while none is, and forgets a
/// run when its options are dropped. (A thread per run cost more than the run on small
/// models: thousands of runs in a sweep.)
fn watch(options: &Arc<ort::session::RunOptions>, cancel: Arc<std::sync::atomic::AtomicBool>) {
    static WATCHED: std::sync::OnceLock<Arc<(std::sync::Mutex<Watched>, std::sync::Condvar)>> =
        std::sync::OnceLock::new();
    let shared = WATCHED.get_or_init(|| {
        let shared = Arc::new((std::sync::Mutex::new(Watched::new()), std::sync::Condvar::new()));
        let watcher = shared.clone();
        let spawned = std::thread::Builder::new().name("quantgraph-ort-watch".into()).spawn(move || {
            let (list, wake) = &*watcher;
            let Ok(mut guard) = list.lock() else { return };
            loop {
                guard.retain(|(options, cancel)| match options.upgrade() {
                    Some(options) => {
                        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                            let _ = options.terminate();
                            false
                        } else {
                            true
                        }
                    }
                    None => false,
                });
                let next = if guard.is_empty() {
                    wake.wait(guard).ok()
                } else {
                    wake.wait_timeout(guard, std::time::Duration::from_millis(2)).ok().map(|(g, _)| g)
                };
                let Some(next) = next else { return };
                guard = next;
            }
        });
        if let Err(e) = spawned {
            tracing::warn!("no watcher thread for ONNX Runtime runs (Esc stops them between batches only): {e}");
        }
        shared
    });
    let (list, wake) = &**shared;
    if let Ok(mut guard) = list.lock() {
        guard.push((Arc::downgrade(options), cancel));
        wake.notify_one();
    }
}

/// How the dataset's float images become a model's input: the input's name, a transpose
/// when the model wants the other layout, and quantization when it takes int8/uint8.
/// Also how quantized outputs are dequantized.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Feed {
    pub name: String,
    pub transpose: Option<Transpose>,
    pub quant: Option<InputQuant>,
    /// Scale and zero point of each int8/uint8 tensor a probe captures.
    pub dequantize: BTreeMap<String, InputQuant>,
}

/// A layout change of the input, per sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transpose {
    /// `[C, H, W]` → `[H, W, C]`.
    ToNhwc,
    /// `[H, W, C]` → `[C, H, W]`.
    ToNchw,
}

/// Scale, zero point and type of a quantized tensor, and where they were read.
#[derive(Debug, Clone, PartialEq)]
pub struct InputQuant {
    pub dtype: String,
    pub scale: f32,
    pub zero_point: i32,
    pub source: String,
}

impl InputQuant {
    /// `q = clamp(round_half_even(x / scale) + zero_point)`, as QuantizeLinear does.
    pub fn quantize<T: TryFrom<i32> + Copy + Default>(&self, data: &[f32]) -> Vec<T> {
        let (lo, hi) = quantgraph_nodes::value::qrange(&self.dtype);
        data.iter()
            .map(|x| {
                let q = (x / self.scale).round_ties_even() as i64 + i64::from(self.zero_point);
                let q = q.clamp(i64::from(lo), i64::from(hi)) as i32;
                T::try_from(q).unwrap_or_default()
            })
            .collect()
    }
}

impl Feed {
    fn layout_batch<'d>(&self, mut shape: Vec<usize>, data: &'d [f32]) -> (Vec<usize>, std::borrow::Cow<'d, [f32]>) {
        let Some(t) = self.transpose else { return (shape, std::borrow::Cow::Borrowed(data)) };
        let [n, a, b, c] = shape[..] else { return (shape, std::borrow::Cow::Borrowed(data)) };
        let item = a * b * c;
        let mut out = vec![0.0f32; data.len()];
        for (src, dst) in data.chunks_exact(item.max(1)).zip(out.chunks_exact_mut(item.max(1))).take(n) {
            match t {
                // [C=a, H=b, W=c] → [H, W, C]
                Transpose::ToNhwc => {
                    for ci in 0..a {
                        for p in 0..b * c {
                            dst[p * a + ci] = src[ci * b * c + p];
                        }
                    }
                }
                // [H=a, W=b, C=c] → [C, H, W]
                Transpose::ToNchw => {
                    for p in 0..a * b {
                        for ci in 0..c {
                            dst[ci * a * b + p] = src[p * c + ci];
                        }
                    }
                }
            }
        }
        shape[1..].copy_from_slice(&match t {
            Transpose::ToNhwc => [b, c, a],
            Transpose::ToNchw => [c, a, b],
        });
        (shape, std::borrow::Cow::Owned(out))
    }
}

/// Run all samples and collect the named outputs in full.
pub fn run_batches(
    session: &mut Session,
    feed: &Feed,
    images: &Images,
    batch_size: usize,
    outputs: &[String],
    ctx: &EvalContext,
    what: &str,
) -> Result<RunOutputs, NodeError> {
    let n = images.len();
    let mut collected: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    for_each_batch(session, feed, images, batch_size, outputs, ctx, what, |_, name, item_shape, data| {
        let entry = collected.entry(name.to_owned()).or_insert_with(|| (item_shape.to_vec(), Vec::new()));
        entry.1.extend_from_slice(data);
        Ok(())
    })?;
    Ok(collected
        .into_iter()
        .map(|(name, (item_shape, data))| {
            let mut shape = vec![n];
            shape.extend(item_shape);
            (name, Tensor { shape, data })
        })
        .collect())
}
