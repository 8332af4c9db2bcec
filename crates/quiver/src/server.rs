//! Starting and stopping the server: load the repository, bind the listeners, serve until told
//! to stop, then drain in-flight requests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use std::time::Duration;

use quiver_core::{BatchingDefaults, Budget, ManagerOptions, ModelManager};
use quiver_grpc::GrpcOptions;
use quiver_http::AppState;
use quiver_telemetry::connections::ListenerMetrics;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ControlMode, ServeConfig};

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
    poller: Option<Poller>,
    exit_timeout: Duration,
}

impl RunningServer {
    /// Stops accepting connections, finishes in-flight requests, and waits for the end.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Waits until both listeners have stopped (after the shutdown signal fired) and their
    /// in-flight requests have been answered, or `--exit-timeout-secs` passed.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let _ = self.stop.subscribe().wait_for(|&stop| stop).await;
        if let Some(poller) = self.poller.take() {
            poller.stop();
        }
        let drained = async {
            self.rest.await.context("the REST server task failed")??;
            self.grpc.await.context("the gRPC server task failed")??;
            anyhow::Ok(())
        };
        match tokio::time::timeout(self.exit_timeout, drained).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    seconds = self.exit_timeout.as_secs_f64(),
                    "requests still in flight after --exit-timeout-secs: exiting anyway"
                );
                Ok(())
            }
        }
    }
}

/// The thread that polls the repository (`--model-control-mode poll`).
struct Poller {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Poller {
    fn start(models: Arc<ModelManager>, every: Duration) -> std::io::Result<Self> {
        use std::sync::atomic::Ordering;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("quiver-poll".into())
            .spawn(move || {
                // Sleep in short steps so that shutdown does not wait out a long interval.
                let step = Duration::from_millis(50).min(every);
                loop {
                    let mut slept = Duration::ZERO;
                    while slept < every {
                        if stopped.load(Ordering::Acquire) {
                            return;
                        }
                        std::thread::sleep(step);
                        slept += step;
                    }
                    if let Err(e) = models.poll() {
                        tracing::error!("polling the model repository: {e}");
                    }
                    // What a test waits for to know the server has looked (QUIVER_LOG=debug).
                    tracing::debug!(target: "quiver::poll", "repository polled");
                }
            })?;
        Ok(Self { stop })
    }

    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
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
        engine.onnxruntime_spinning,
        engine.selection.onnxruntime_lib.as_deref(),
    );
    // A name no engine registers is a typo: say so now, not once per model. A registered engine
    // that could not start (ONNX Runtime without its library) is each model's load error instead,
    // so the models on other engines still serve.
    if let quiver_core::EngineChoice::Named(name) = &engine.selection.engine
        && !engines.names().contains(&name.as_str())
    {
        let why = engines
            .select(&engine.selection.engine)
            .err()
            .unwrap_or_default();
        anyhow::bail!("--engine {name}: {why}");
    }
    let options = ManagerOptions {
        default_engine: engine.selection.engine.clone(),
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
        allow_unavailable_labels: config.lifecycle.allow_version_labels_for_unavailable_models,
        model_control_api: config.lifecycle.model_control_mode == ControlMode::Explicit,
        budget: Budget {
            max_loaded_versions: config
                .lifecycle
                .max_loaded_models
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            memory_bytes: config.lifecycle.memory_budget_bytes,
        },
        max_inflight: config.limits.max_inflight_requests,
        ..ManagerOptions::default()
    };
    let replica = config.replica();
    quiver_telemetry::set_replica(&replica);
    let metrics = if config.log.metrics {
        let exporter = quiver_telemetry::exporter::install().map_err(anyhow::Error::msg)?;
        quiver_telemetry::exporter::record_build_info(&replica);
        Some(exporter)
    } else {
        None
    };
    tracing::info!(%replica, "replica (--replica-id)");
    let sources = crate::store_config::sources(
        config.model_repository.as_deref(),
        config.model_config_file.as_deref(),
        &config.store,
    )?;
    let models = Arc::new(ModelManager::new(engines, options, sources));
    // Before anything loads: the load history starts with the start-up loads, and the policies
    // and labels kept from the last run are in force when the first request comes.
    let admin = {
        let metadata = config.metadata.clone();
        let data_dir = config.store.data_dir();
        let models = Arc::clone(&models);
        let replica = replica.clone();
        tokio::task::spawn_blocking(move || {
            crate::metadata_config::start(&metadata, &data_dir, models, &replica)
        })
        .await
        .context("opening the metadata store panicked")??
    };
    let limits = config
        .limits
        .limits(config.grpc.grpc_max_concurrent_streams);
    tracing::info!(
        max_connections = limits.connections.max(),
        "connections are capped (--max-connections)"
    );
    // Reading the repository up front turns a wrong --model-repository into an error at once;
    // the start-up load uses this reading (an object store is listed once, not twice).
    let listed = models.sources()?;

    let listener = TcpListener::bind((config.http.host, config.http.rest_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{} (--host, --rest-port)",
                config.http.host, config.http.rest_port
            )
        })?;
    let rest_addr = listener.local_addr()?;
    // A certificate or key that cannot be used stops start-up, naming the file.
    let tls = config
        .security
        .tls()
        .map(|files| crate::tls::acceptor(&files))
        .transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let auth = match &config.security.auth_tokens_file {
        Some(path) => {
            let auth = quiver_core::auth::Auth::load(path).map_err(anyhow::Error::msg)?;
            auth.watch(Duration::from_secs(1));
            Some(auth)
        }
        None => None,
    };
    let limiter = config.security.rate_limit.map(|rate| {
        // A burst of at least one second's worth unless told otherwise.
        let burst = config
            .security
            .rate_limit_burst
            .unwrap_or_else(|| rate.ceil().clamp(1.0, f64::from(u32::MAX)) as u32);
        Arc::new(quiver_core::rate_limit::RateLimiter::new(rate, burst))
    });
    let state = AppState {
        auth: auth.clone(),
        limiter: limiter.clone(),
        models: Arc::clone(&models),
        max_body_bytes: config.http.max_body_bytes,
        metrics,
        access_log: config.log.access_log,
        replica: axum::http::HeaderValue::from_str(&replica).ok(),
        admin: admin.clone(),
    };
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
    let delay = Duration::from_secs_f64(config.lifecycle.shutdown_delay_secs);
    let draining = Arc::clone(&models);
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => {}
            () = signal.closed() => return,
        }
        draining.set_ready(false);
        if !delay.is_zero() {
            tracing::info!(
                seconds = delay.as_secs_f64(),
                "shutting down: not ready, still serving"
            );
            tokio::time::sleep(delay).await;
        }
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = signal.send(true);
    });
    let rest = tokio::spawn(crate::listen::serve_http(
        listener,
        tls.clone(),
        quiver_http::app(state.clone()),
        limits.clone(),
        ListenerMetrics::new("rest"),
        stopped(stop_rx.clone()),
    ));
    let grpc_options = GrpcOptions {
        max_message_bytes: config.grpc.grpc_max_message_bytes,
        access_log: config.log.access_log,
        auth,
        limiter,
        max_concurrent_streams: config.grpc.grpc_max_concurrent_streams,
        keepalive_interval: limits.http2.keepalive_interval,
        keepalive_timeout: limits.http2.keepalive_timeout,
        max_header_list_bytes: limits.http2.max_header_list_bytes,
        max_pending_reset_streams: limits.http2.max_pending_reset_streams,
        replica: Some(replica.clone()),
        admin,
    };
    let grpc = tokio::spawn(quiver_grpc::serve_incoming(
        crate::listen::incoming(
            grpc_listener,
            tls.clone(),
            limits.clone(),
            ListenerMetrics::new("grpc"),
        ),
        Arc::clone(&models),
        grpc_options,
        stopped(stop_rx.clone()),
    ));
    // The listeners answer health checks (not ready) while the start-up models load.
    let lifecycle = &config.lifecycle;
    let loader = Arc::clone(&models);
    let mode = lifecycle.model_control_mode;
    let wanted = lifecycle.load_model.clone();
    tokio::task::spawn_blocking(move || load_at_start(&loader, listed, mode, &wanted))
        .await
        .context("loading the start-up models panicked")??;
    models.set_ready(true);
    let poller = match mode {
        ControlMode::Poll => Some(Poller::start(
            Arc::clone(&models),
            Duration::from_secs_f64(lifecycle.repository_poll_secs),
        )?),
        ControlMode::None | ControlMode::Explicit => None,
    };
    tracing::info!("REST API listening on {scheme}://{rest_addr}");
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
            tokio::spawn(crate::listen::serve_http(
                listener,
                tls.clone(),
                quiver_http::metrics_app(state),
                limits.clone(),
                ListenerMetrics::new("metrics"),
                stopped(stop_rx),
            ));
            tracing::info!("metrics listening on {scheme}://{addr}/metrics");
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
        poller,
        exit_timeout: Duration::from_secs_f64(config.lifecycle.exit_timeout_secs),
    })
}

/// Loads the start-up models: all of them, or in `explicit` mode those `--load-model` names.
fn load_at_start(
    models: &ModelManager,
    listed: Vec<quiver_core::ModelSource>,
    mode: ControlMode,
    wanted: &[String],
) -> anyhow::Result<()> {
    if mode != ControlMode::Explicit || wanted.iter().any(|name| name == "*") {
        models.load_listed(&listed);
        return Ok(());
    }
    for name in wanted {
        // A start-up model that cannot be loaded stops the server: it was asked for by name.
        models
            .load(name, None)
            .map_err(|e| anyhow::anyhow!("--load-model {name}: {}", e.message))?;
    }
    Ok(())
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
