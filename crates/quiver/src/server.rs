//! Starting and stopping the server: load the repository, bind the listeners, serve until told
//! to stop, then drain in-flight requests.

use std::future::{Future, IntoFuture as _};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use std::time::Duration;

use quiver_core::{BatchingDefaults, ManagerOptions, ModelManager};
use quiver_grpc::GrpcOptions;
use quiver_http::AppState;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ServeConfig;

/// A server that is up and answering.
pub struct RunningServer {
    /// Where the REST API (TF Serving REST, KServe V2 HTTP) listens.
    pub rest_addr: SocketAddr,
    /// Where the gRPC services listen.
    pub grpc_addr: SocketAddr,
    /// Where `/metrics` also listens, with `--metrics-port`.
    pub metrics_addr: Option<SocketAddr>,
    /// The models being served.
    pub models: Arc<ModelManager>,
    stop: watch::Sender<bool>,
    rest: JoinHandle<std::io::Result<()>>,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl RunningServer {
    /// Stops accepting connections, finishes in-flight requests, and waits for the end.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Waits until both listeners have stopped (after the shutdown signal fired).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.rest.await.context("the REST server task failed")??;
        self.grpc.await.context("the gRPC server task failed")??;
        Ok(())
    }
}

/// Resolves when `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|&stop| stop).await;
}

/// Loads the repository and starts listening; returns once requests are being served.
/// `shutdown` resolving starts a graceful stop (as does [`RunningServer::shutdown`]).
pub async fn start(
    config: &ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<RunningServer> {
    let engine = &config.engine;
    let engines = crate::engines::engines(
        engine.intra_op_threads,
        engine.inter_op_threads,
        engine.selection.onnxruntime_lib.as_deref(),
    );
    let options = ManagerOptions {
        default_engine: engine.selection.engine,
        optimization: engine.graph_optimization_level,
        optimized_model_dir: engine.optimized_model_dir.clone(),
        batching: BatchingDefaults {
            max_batch_size: engine.max_batch_size,
            max_queue_delay: Duration::from_micros(engine.max_queue_delay_us),
            max_queue_size: engine.max_queue_size,
            default_timeout: (engine.default_timeout_ms > 0)
                .then(|| Duration::from_millis(engine.default_timeout_ms)),
            instances: engine.instances,
        },
    };
    let metrics = if config.log.metrics {
        Some(quiver_telemetry::exporter::install().map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    let models = Arc::new(ModelManager::new(engines, options));
    let repository = config.model_repository.clone();
    let loader = Arc::clone(&models);
    tokio::task::spawn_blocking(move || loader.load_repository(&repository))
        .await
        .context("loading the model repository panicked")??;

    let listener = TcpListener::bind((config.http.host, config.http.rest_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{} (--host, --rest-port)",
                config.http.host, config.http.rest_port
            )
        })?;
    let rest_addr = listener.local_addr()?;
    tracing::info!("REST API listening on http://{rest_addr}");
    let state = AppState {
        models: Arc::clone(&models),
        max_body_bytes: config.http.max_body_bytes,
        metrics,
        access_log: config.log.access_log,
    };
    let app = quiver_http::app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let grpc_listener = TcpListener::bind((config.http.host, config.grpc.grpc_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{} (--host, --grpc-port)",
                config.http.host, config.grpc.grpc_port
            )
        })?;
    let grpc_addr = grpc_listener.local_addr()?;

    // One stop signal for both listeners: the caller's `shutdown` future or `shutdown()`.
    let (stop, stop_rx) = watch::channel(false);
    let signal = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => {}
            () = signal.closed() => return,
        }
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = signal.send(true);
    });
    // Small request/response exchanges must not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {error}");
        }
    });
    let rest = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );
    let grpc = tokio::spawn(quiver_grpc::serve(
        grpc_listener,
        Arc::clone(&models),
        GrpcOptions {
            max_message_bytes: config.grpc.grpc_max_message_bytes,
            access_log: config.log.access_log,
        },
        stopped(stop_rx.clone()),
    ));
    tracing::info!("gRPC API listening on {grpc_addr}");
    let metrics_addr = match config.log.metrics_port {
        Some(port) => {
            let listener = TcpListener::bind((config.http.host, port))
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on {}:{port} (--host, --metrics-port)",
                        config.http.host
                    )
                })?;
            let addr = listener.local_addr()?;
            let app = quiver_http::metrics_app(state);
            tokio::spawn(
                axum::serve(listener, app)
                    .with_graceful_shutdown(stopped(stop_rx))
                    .into_future(),
            );
            tracing::info!("metrics listening on http://{addr}/metrics");
            Some(addr)
        }
        None => None,
    };
    Ok(RunningServer {
        rest_addr,
        grpc_addr,
        metrics_addr,
        models,
        stop,
        rest,
        grpc,
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
