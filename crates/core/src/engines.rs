//! The engines a server has, and which one runs a model.

use std::sync::Arc;

use quiver_engine_api::Engine;
use quiver_repository::EngineChoice;

/// One registered engine: usable, or named with the reason it cannot be used.
#[derive(Clone)]
enum Entry {
    Available(Arc<dyn Engine>),
    Missing { name: String, why: String },
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Available(engine) => engine.name(),
            Entry::Missing { name, .. } => name,
        }
    }
}

/// The engines this server can use, and the ones it cannot with the reason, in registration
/// order — the order `auto` tries them in.
#[derive(Clone, Default)]
pub struct Engines {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for entry in &self.entries {
            match entry {
                Entry::Available(engine) => list.entry(&engine.name()),
                Entry::Missing { name, why } => {
                    list.entry(&format_args!("{name} (missing: {why})"))
                }
            };
        }
        list.finish()
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

    /// Registers an engine that can run models; `auto` prefers engines registered earlier.
    #[must_use]
    pub fn with(mut self, engine: Arc<dyn Engine>) -> Self {
        self.entries.push(Entry::Available(engine));
        self
    }

    /// Registers the engine called `name` as not available, and why (shown to anyone whose model
    /// asks for it, so say how to get it). It keeps its place in `auto`'s order, so the log of a
    /// model `auto` gave to a later engine says why not this one.
    #[must_use]
    pub fn without(mut self, name: &str, why: impl Into<String>) -> Self {
        self.entries.push(Entry::Missing {
            name: name.to_owned(),
            why: why.into(),
        });
        self
    }

    /// The available engine called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Engine>> {
        self.entries.iter().find_map(|entry| match entry {
            Entry::Available(engine) if engine.name() == name => Some(engine),
            Entry::Available(_) | Entry::Missing { .. } => None,
        })
    }

    /// Every registered engine's name, available or not, in registration order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(Entry::name).collect()
    }

    /// The engine for `choice`: a named one, or for `auto` the first available in registration
    /// order. The error says why a named engine cannot be used, or which engines there are.
    pub fn select(&self, choice: &EngineChoice) -> Result<Selection, String> {
        match choice {
            EngineChoice::Named(name) => match self.entries.iter().find(|e| e.name() == name) {
                Some(Entry::Available(engine)) => Ok(Selection {
                    engine: engine.clone(),
                    reason: format!("the model's config asks for {name}"),
                }),
                Some(Entry::Missing { why, .. }) => {
                    Err(format!("engine '{name}' is not available: {why}"))
                }
                None => Err(format!(
                    "this server has no engine called '{name}'; its engines are: {} \
                     (or give auto)",
                    self.names().join(", ")
                )),
            },
            EngineChoice::Auto => {
                let mut passed_over = Vec::new();
                for entry in &self.entries {
                    match entry {
                        Entry::Available(engine) => {
                            let reason = if passed_over.is_empty() {
                                format!("auto: {} is the first engine available", engine.name())
                            } else {
                                format!("auto: {}", passed_over.join("; "))
                            };
                            return Ok(Selection {
                                engine: engine.clone(),
                                reason,
                            });
                        }
                        Entry::Missing { name, why } => {
                            passed_over.push(format!("{name} is not available: {why}"))
                        }
                    }
                }
                Err(if passed_over.is_empty() {
                    "this server has no engines".to_owned()
                } else {
                    format!("no engine is available: {}", passed_over.join("; "))
                })
            }
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

    fn pick(engines: &Engines, choice: &str) -> Result<&'static str, String> {
        engines
            .select(&choice.parse().unwrap())
            .map(|s| s.engine.name())
    }

    #[test]
    fn auto_takes_the_first_available_in_registration_order() {
        let both = Engines::new()
            .with(Arc::new(Named("onnxruntime")))
            .with(Arc::new(Named("tract")));
        assert_eq!(pick(&both, "auto").unwrap(), "onnxruntime");
        assert_eq!(pick(&both, "tract").unwrap(), "tract");
        let reversed = Engines::new()
            .with(Arc::new(Named("tract")))
            .with(Arc::new(Named("onnxruntime")));
        assert_eq!(pick(&reversed, "auto").unwrap(), "tract");
    }

    #[test]
    fn a_missing_engine_says_why_and_auto_passes_over_it() {
        let tract_only = Engines::new()
            .without("onnxruntime", "get it with scripts/fetch-onnxruntime.sh")
            .with(Arc::new(Named("tract")));
        let auto = tract_only.select(&EngineChoice::Auto).unwrap();
        assert_eq!(auto.engine.name(), "tract");
        assert!(auto.reason.contains("fetch-onnxruntime"), "{}", auto.reason);
        assert_eq!(
            pick(&tract_only, "onnxruntime").unwrap_err(),
            "engine 'onnxruntime' is not available: get it with scripts/fetch-onnxruntime.sh"
        );
        let none = Engines::new().without("onnxruntime", "no library");
        assert!(pick(&none, "auto").unwrap_err().contains("no library"));
    }

    #[test]
    fn any_registered_name_is_selectable_and_an_unknown_one_lists_them() {
        let three = Engines::new()
            .with(Arc::new(Named("onnxruntime")))
            .with(Arc::new(Named("tract")))
            .with(Arc::new(Named("openvino")));
        assert_eq!(pick(&three, "openvino").unwrap(), "openvino");
        assert_eq!(
            pick(&three, "cuda").unwrap_err(),
            "this server has no engine called 'cuda'; its engines are: onnxruntime, tract, \
             openvino (or give auto)"
        );
    }
}
