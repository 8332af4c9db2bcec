//! `quiver inspect`: a model's inputs and outputs, the way `saved_model_cli show` prints them.

use std::fmt::Write as _;
use std::path::Path;

use quiver_core::shape_text;
use quiver_engine_api::{Engine, EngineOptions, ModelSignature, TensorSpec};

/// Loads `path` with `engine` and describes its signature.
pub fn describe(engine: &dyn Engine, path: &Path) -> anyhow::Result<String> {
    let session = engine.load(path, &EngineOptions::default())?;
    Ok(render(path, engine, session.signature()))
}

fn render(path: &Path, engine: &dyn Engine, signature: &ModelSignature) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "model: {}", path.display());
    let _ = writeln!(
        out,
        "engine: {} (platform {})",
        engine.name(),
        engine.platform()
    );
    let _ = writeln!(
        out,
        "signature '{}':",
        quiver_http::tfserving::DEFAULT_SIGNATURE
    );
    for (title, specs) in [
        ("inputs", &signature.inputs),
        ("outputs", &signature.outputs),
    ] {
        let _ = writeln!(out, "  {title}:");
        for spec in specs {
            let _ = writeln!(out, "    {}", line(spec));
        }
    }
    out
}

fn line(spec: &TensorSpec) -> String {
    format!(
        "'{}': dtype {} ({}), shape {}",
        spec.name,
        spec.dtype.tf_name(),
        spec.dtype.kserve_name(),
        shape_text(&spec.shape)
    )
}
