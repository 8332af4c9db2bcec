//! `quiver validate REPO`: every model of a repository loaded as `serve` would load it — config
//! (`config.toml` or `config.pbtxt`), files, engine, signature check, processing pipeline,
//! warm-up — by the same model manager, then dropped, with nothing served. The report is one
//! tab-separated line per model version, `ok` or `FAILED` with the kind of failure and why (the
//! kinds `quiver_model_load_errors_total` counts), then `skipped` lines for entries that do not
//! fit the repository layout (as `serve` passes them over, they do not fail the check), then a
//! summary; the exit status is 1 when anything failed, so a CI can gate on it.

use std::fmt;

use quiver_core::{ManagerOptions, ModelManager, Sources, VersionSelector, VersionState};

use crate::config::ValidateConfig;

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `ok`, `FAILED` or `skipped`.
    pub status: &'static str,
    /// The model (or the path passed over).
    pub model: String,
    /// The version, when the line is about one.
    pub version: Option<u64>,
    /// The engine that loaded it (`ok`), or the kind of failure and why.
    pub detail: String,
}

/// What `validate` found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every finding, models by name then version, then skipped entries.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether every model version loaded.
    pub fn passed(&self) -> bool {
        self.findings.iter().all(|f| f.status != "FAILED")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            let version = finding.version.map(|v| v.to_string()).unwrap_or_default();
            writeln!(
                f,
                "{}\t{}\t{version}\t{}",
                finding.status, finding.model, finding.detail
            )?;
        }
        let count = |status| self.findings.iter().filter(|f| f.status == status).count();
        writeln!(
            f,
            "{} ok, {} failed, {} skipped: {}",
            count("ok"),
            count("FAILED"),
            count("skipped"),
            if self.passed() { "passed" } else { "FAILED" }
        )
    }
}

/// Loads every model of the repository per its version policy and reports each version.
pub fn validate(config: &ValidateConfig) -> anyhow::Result<Report> {
    let engines =
        crate::engines::engines(None, 1, false, config.selection.onnxruntime_lib.as_deref());
    let options = ManagerOptions {
        default_engine: config.selection.engine.clone(),
        ..ManagerOptions::default()
    };
    let repository = &config.model_repository;
    let models = ModelManager::new(engines, options, Sources::Repository(repository.clone()));
    // A repository that cannot be read at all is an error of the command, not a finding.
    let skipped = quiver_repository::scan(repository)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .skipped;
    models.load_all().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut report = Report::default();
    for row in models.index(false) {
        let finding = match (row.version, row.state) {
            (Some(version), Some(VersionState::Available)) => {
                let engine = models
                    .get(&row.name, &VersionSelector::Specific(version))
                    .map_or("", |loaded| loaded.engine());
                Finding {
                    status: "ok",
                    model: row.name.clone(),
                    version: Some(version),
                    detail: engine.to_owned(),
                }
            }
            (version, _) => Finding {
                status: "FAILED",
                model: row.name.clone(),
                version,
                detail: match row.error_kind {
                    Some(kind) => format!("{kind}: {}", row.reason_text()),
                    None => row.reason_text(),
                },
            },
        };
        report.findings.push(finding);
    }
    report
        .findings
        .extend(skipped.into_iter().map(|entry| Finding {
            status: "skipped",
            model: entry.path.display().to_string(),
            version: None,
            detail: entry.reason,
        }));
    Ok(report)
}
