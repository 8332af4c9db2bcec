//! The engines a server has, and which one runs a model.

use std::sync::Arc;

use quiver_engine_api::Engine;
use quiver_repository::EngineChoice;

/// The engines this server can use, and the ones it cannot with the reason.
#[derive(Clone, Default)]
pub struct Engines {
    available: Vec<Arc<dyn Engine>>,
    missing: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.available.iter().map(|e| e.name()).collect();
        f.debug_struct("Engines")
            .field("available", &names)
            .field("missing", &self.missing)
            .finish()
    }
}

/// The engine picked for a model, and why.
#[derive(Clone)]
pub struct Selection {
    /// The engine.
    pub engine: Arc<dyn Engine>,
    /// Why this one, for the log.
    pub reason: String,
}

impl Engines {
    /// No engines yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an engine that can run models.
    #[must_use]
    pub fn with(mut self, engine: Arc<dyn Engine>) -> Self {
        self.available.push(engine);
        self
    }

    /// Records that the engine called `name` is not available, and why (shown to anyone whose
    /// model asks for it, so say how to get it).
    #[must_use]
    pub fn without(mut self, name: &'static str, why: impl Into<String>) -> Self {
        self.missing.push((name, why.into()));
        self
    }

    /// The available engine called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Engine>> {
        self.available.iter().find(|e| e.name() == name)
    }

    /// The engine for `choice`: `auto` prefers ONNX Runtime and falls back to tract.
    pub fn select(&self, choice: EngineChoice) -> Result<Selection, String> {
        let named = |name: &'static str| {
            self.get(name).cloned().ok_or_else(|| {
                match self.missing.iter().find(|(missing, _)| *missing == name) {
                    Some((_, why)) => format!("engine '{name}' is not available: {why}"),
                    None => format!("engine '{name}' is not available in this server"),
                }
            })
        };
        match choice {
            EngineChoice::Onnxruntime => named("onnxruntime").map(|engine| Selection {
                engine,
                reason: "the model's config asks for onnxruntime".into(),
            }),
            EngineChoice::Tract => named("tract").map(|engine| Selection {
                engine,
                reason: "the model's config asks for tract".into(),
            }),
            EngineChoice::Auto => match named("onnxruntime") {
                Ok(engine) => Ok(Selection {
                    engine,
                    reason: "auto: ONNX Runtime is loaded".into(),
                }),
                Err(why_not) => named("tract").map(|engine| Selection {
                    engine,
                    reason: format!("auto: {why_not}"),
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_engine_api::{EngineError, EngineOptions, Session};
    use std::path::Path;

    struct Named(&'static str);

    impl Engine for Named {
        fn name(&self) -> &'static str {
            self.0
        }
        fn platform(&self) -> &'static str {
            self.0
        }
        fn load(&self, _: &Path, _: &EngineOptions) -> Result<Box<dyn Session>, EngineError> {
            Err(EngineError::Load("not a real engine".into()))
        }
    }

    #[test]
    fn auto_prefers_onnxruntime_and_falls_back_to_tract() {
        let both = Engines::new()
            .with(Arc::new(Named("tract")))
            .with(Arc::new(Named("onnxruntime")));
        assert_eq!(
            both.select(EngineChoice::Auto).unwrap().engine.name(),
            "onnxruntime"
        );
        assert_eq!(
            both.select(EngineChoice::Tract).unwrap().engine.name(),
            "tract"
        );
        let tract_only = Engines::new()
            .with(Arc::new(Named("tract")))
            .without("onnxruntime", "get it with scripts/fetch-onnxruntime.sh");
        let auto = tract_only.select(EngineChoice::Auto).unwrap();
        assert_eq!(auto.engine.name(), "tract");
        assert!(auto.reason.contains("fetch-onnxruntime"), "{}", auto.reason);
        let e = tract_only.select(EngineChoice::Onnxruntime).err().unwrap();
        assert_eq!(
            e,
            "engine 'onnxruntime' is not available: get it with scripts/fetch-onnxruntime.sh"
        );
    }
}
