//! The `quiver` command.

use std::io::IsTerminal as _;

use clap::Parser as _;
use quiver::config::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

/// Info for Quiver; ONNX Runtime's own info lines (every graph rewrite of every load) only
/// when asked for with `QUIVER_LOG=info,ort=info`.
const DEFAULT_LOG_FILTER: &str = "info,ort=warn";

/// Logs go to stderr through a background writer thread, so that a request thread formats its
/// line but never waits on the terminal or pipe; the guard flushes what is left at exit.
/// Lines are never dropped (`lossy(false)`): a full buffer slows logging down instead.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = EnvFilter::try_from_env("QUIVER_LOG")
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("quiver-log-writer")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    guard
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole cause chain on one line, without a backtrace.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(args) => {
            let engines =
                quiver::engines::engines(None, 1, args.selection.onnxruntime_lib.as_deref());
            let selection = engines
                .select(args.selection.engine)
                .map_err(anyhow::Error::msg)?;
            print!(
                "{}",
                quiver::inspect::describe(&*selection.engine, &args.model)?
            );
            Ok(())
        }
        Command::Serve(config) => {
            let _log_writer = init_logging(config.log.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let server =
                    quiver::server::start(&config, quiver::server::shutdown_signal()).await?;
                server.wait().await?;
                tracing::info!("stopped");
                Ok(())
            })
        }
    }
}
