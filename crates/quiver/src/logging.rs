//! Logs on stderr (text or JSON) and, with the `otlp` cargo feature, OpenTelemetry export of
//! request spans over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.

use std::io::IsTerminal as _;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::LogFormat;

/// Info for Quiver; ONNX Runtime's own info lines (every graph rewrite of every load) only
/// when asked for with `QUIVER_LOG=info,ort=info`.
pub const DEFAULT_LOG_FILTER: &str = "info,ort=warn";

/// Keeps the log writer (and the span exporter) running; dropping it flushes both.
pub struct Logging {
    _writer: tracing_appender::non_blocking::WorkerGuard,
    #[cfg(feature = "otlp")]
    tracer: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Logging {
    /// Whether request spans are exported (OTLP), so their fields are read even when no line is
    /// logged.
    pub fn exports_spans(&self) -> bool {
        #[cfg(feature = "otlp")]
        return self.tracer.is_some();
        #[cfg(not(feature = "otlp"))]
        false
    }
}

impl Drop for Logging {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.tracer.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("warning: exporting the last spans failed: {error}");
        }
    }
}

/// Installs the global subscriber. Logs go to stderr through a background writer thread, so
/// that a request thread formats its line but never waits on the terminal or pipe; lines are
/// never dropped (`lossy(false)`): a full buffer slows logging down instead. With the `otlp`
/// feature, call this inside the Tokio runtime: the exporter's gRPC channel lives on it.
pub fn init(format: LogFormat) -> anyhow::Result<Logging> {
    let filter = EnvFilter::try_from_env("QUIVER_LOG")
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("quiver-log-writer")
        // Buffered: the writer thread flushes whenever it has drained what is queued, so a busy
        // server makes one write per burst of lines instead of one per line.
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    #[cfg(feature = "otlp")]
    {
        let (otel, tracer) = match otlp::exporter()? {
            Some((layer, provider)) => (Some(layer), Some(provider)),
            None => (None, None),
        };
        tracing_subscriber::registry()
            .with(otel)
            .with(filter)
            .with(fmt)
            .try_init()?;
        if let Ok(endpoint) = std::env::var(otlp::ENDPOINT) {
            tracing::info!(%endpoint, "exporting request spans over OTLP");
        }
        Ok(Logging {
            _writer: guard,
            tracer,
        })
    }
    #[cfg(not(feature = "otlp"))]
    {
        tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .try_init()?;
        Ok(Logging { _writer: guard })
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
    use tracing_opentelemetry::OpenTelemetryLayer;
    use tracing_subscriber::Registry;

    /// The standard variable naming the collector (read by the exporter itself).
    pub const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";

    type Layer = OpenTelemetryLayer<Registry, SdkTracer>;

    /// The span export layer, when the environment names a collector.
    pub fn exporter() -> anyhow::Result<Option<(Layer, SdkTracerProvider)>> {
        if std::env::var_os(ENDPOINT).is_none() && std::env::var_os(TRACES_ENDPOINT).is_none() {
            return Ok(None);
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?;
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("quiver");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("quiver"));
        Ok(Some((layer, provider)))
    }
}
