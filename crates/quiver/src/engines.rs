//! The engines this binary offers: ONNX Runtime when built with the `onnxruntime` feature (the
//! default) and its library is found at start-up, tract always. Adding an engine means its crate
//! and one registration here; model configs and `--engine` name it with no other change.

use std::path::Path;
use std::sync::Arc;

use quiver_core::Engines;
use quiver_engine_tract::TractEngine;

/// Builds the engines with a shared pool of `threads` threads each (`None`: one per core, so
/// the models of one engine never run more threads than there are cores), logging whether ONNX
/// Runtime is there and why not.
pub fn engines(
    threads: Option<usize>,
    inter_op_threads: usize,
    spinning: bool,
    onnxruntime_lib: Option<&Path>,
) -> Engines {
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    // Registration order is `auto`'s preference: ONNX Runtime (faster) first, tract after.
    let engines = match onnxruntime(threads, inter_op_threads, spinning, onnxruntime_lib) {
        Ok(engine) => Engines::new().with(engine),
        Err(why) => {
            tracing::info!("ONNX Runtime is not available; models run on tract: {why}");
            Engines::new().without("onnxruntime", why)
        }
    };
    engines.with(Arc::new(TractEngine::new(threads)))
}

#[cfg(feature = "onnxruntime")]
fn onnxruntime(
    threads: usize,
    inter_op_threads: usize,
    spinning: bool,
    explicit: Option<&Path>,
) -> Result<Arc<dyn quiver_engine_api::Engine>, String> {
    use quiver_engine_onnxruntime::{OnnxRuntimeEngine, SharedPool, library};

    let found = library::find(explicit).map_err(|e| e.to_string())?;
    let pool = SharedPool {
        intra_op_threads: threads,
        inter_op_threads,
        spinning,
    };
    let engine = OnnxRuntimeEngine::init(&found.path, pool).map_err(|e| {
        format!(
            "{e}; scripts/fetch-onnxruntime.sh fetches a library to pass with --onnxruntime-lib"
        )
    })?;
    tracing::info!(library = %found.path.display(), found = found.source, threads,
        "ONNX Runtime loaded ({})", engine.build_info());
    Ok(Arc::new(engine))
}

#[cfg(not(feature = "onnxruntime"))]
fn onnxruntime(
    _threads: usize,
    _inter_op_threads: usize,
    _spinning: bool,
    _explicit: Option<&Path>,
) -> Result<Arc<dyn quiver_engine_api::Engine>, String> {
    Err("this quiver was built without the `onnxruntime` cargo feature; rebuild with it".into())
}
