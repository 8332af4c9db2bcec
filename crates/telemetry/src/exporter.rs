//! The Prometheus exposition: one process-wide recorder behind the `metrics` facade, rendered
//! on `GET /metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{buckets, names};

/// Renders the exposition of everything recorded in this process.
pub struct Exporter {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

static EXPORTER: OnceLock<Result<Exporter, String>> = OnceLock::new();

/// How often histogram samples recorded between scrapes are folded into their buckets, so that
/// memory stays flat on a server nobody scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the process-wide recorder (once; later calls return the same exporter). Until this
/// is called every metric handle is a no-op.
pub fn install() -> Result<&'static Exporter, String> {
    EXPORTER
        .get_or_init(|| {
            let exporter = build()?;
            let handle = exporter.handle.clone();
            std::thread::Builder::new()
                .name("quiver-metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP);
                        handle.run_upkeep();
                    }
                })
                .map_err(|e| format!("cannot start the metrics upkeep thread: {e}"))?;
            Ok(exporter)
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn build() -> Result<Exporter, String> {
    let error = |e: metrics_exporter_prometheus::BuildError| e.to_string();
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), buckets::SECONDS)
        .map_err(error)?
        .set_buckets_for_metric(
            Matcher::Full(names::LOAD_DURATION.into()),
            buckets::LOAD_SECONDS,
        )
        .map_err(error)?
        .set_buckets_for_metric(
            Matcher::Full(names::STORE_DOWNLOAD_DURATION.into()),
            buckets::LOAD_SECONDS,
        )
        .map_err(error)?
        .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), buckets::BYTES)
        .map_err(error)?
        .set_buckets_for_metric(Matcher::Full(names::BATCH_SIZE.into()), buckets::BATCH)
        .map_err(error)?
        .set_buckets_for_metric(
            Matcher::Full(names::SHADOW_DIFFERENCE.into()),
            buckets::DIFFERENCE,
        )
        .map_err(error)?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|_| "another metrics recorder is already installed".to_owned())?;
    names::describe();
    let process = metrics_process::Collector::default();
    process.describe();
    Ok(Exporter { handle, process })
}

/// Sets `quiver_build_info` (always 1): Quiver's version and this replica's name
/// (`--replica-id`), so a dashboard maps each scraped instance to its replica.
pub fn record_build_info(replica: &str) {
    metrics::gauge!(names::BUILD_INFO, names::VERSION => env!("CARGO_PKG_VERSION"),
        names::REPLICA => replica.to_owned())
    .set(1.0);
}

impl Exporter {
    /// The exposition in Prometheus' text format, with the process metrics read just now.
    pub fn render(&self) -> String {
        self.process.collect();
        self.handle.render()
    }
}
