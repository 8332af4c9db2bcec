//! The `quiver` command.

use clap::Parser as _;

/// mimalloc: fast for the many small allocations of request handling, and it returns freed
/// pages to the system, so an unloaded model's memory does not stay resident.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use quiver::config::{Cli, Command};

fn main() -> std::process::ExitCode {
    quiver_core::memory::configure();
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
        Command::Validate(args) => {
            let report = quiver::validate::validate(&args)?;
            print!("{report}");
            if report.passed() {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        Command::Bench(args) => {
            let table = quiver::bench::run(&args)?;
            print!("{table}");
            Ok(())
        }
        Command::Inspect(args) => {
            let engines =
                quiver::engines::engines(None, 1, false, args.selection.onnxruntime_lib.as_deref());
            let selection = engines
                .select(&args.selection.engine)
                .map_err(anyhow::Error::msg)?;
            print!(
                "{}",
                quiver::inspect::describe(&*selection.engine, &args.model)?
            );
            Ok(())
        }
        Command::Serve(config) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let logging = {
                let _runtime = runtime.enter();
                quiver::logging::init(config.log.log_format)?
            };
            quiver_telemetry::set_span_stages(config.log.access_log || logging.exports_spans());
            let result = runtime.block_on(async {
                let server =
                    quiver::server::start(&config, quiver::server::shutdown_signal()).await?;
                server.wait().await?;
                tracing::info!("stopped");
                Ok(())
            });
            // A model load still running on a blocking thread must not keep the process alive
            // past --exit-timeout-secs: dropping the runtime would wait for it.
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            result
        }
    }
}
