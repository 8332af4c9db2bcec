//! Starting and stopping the server: load the repository, bind the listeners, serve until told
//! to stop, then drain in-flight requests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use quiver_core::{ManagerOptions, ModelManager};
use quiver_engine_api::EngineOptions;
use quiver_engine_tract::TractEngine;
use quiver_http::AppState;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::ServeConfig;

/// A server that is up and answering.
pub struct RunningServer {
    /// Where the REST API listens.
    pub rest_addr: SocketAddr,
    /// The models being served.
    pub models: Arc<ModelManager>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Stops accepting connections, finishes in-flight requests, and waits for the end.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.context("the server task failed")??;
        Ok(())
    }

    /// Waits until the server stops by itself (it doesn't, unless its shutdown signal fires).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        (&mut self.task).await.context("the server task failed")??;
        Ok(())
    }
}

/// Loads the repository and starts listening; returns once requests are being served.
/// `shutdown` resolving starts a graceful stop (as does [`RunningServer::shutdown`]).
pub async fn start(
    config: &ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<RunningServer> {
    let mut engine_options = EngineOptions::default();
    if let Some(n) = config.engine.intra_op_threads {
        engine_options.intra_op_threads = n.max(1);
    }
    let options = ManagerOptions {
        engine: engine_options,
        instances: 1,
        queue_capacity: config.engine.max_queue_size.max(1),
    };
    let models = Arc::new(ModelManager::new(Arc::new(TractEngine), options));
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
    let app = quiver_http::app(AppState {
        models: Arc::clone(&models),
        max_body_bytes: config.http.max_body_bytes,
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    () = shutdown => {}
                    _ = stopped => {}
                }
                tracing::info!("shutting down: finishing in-flight requests");
            })
            .await
    });
    Ok(RunningServer {
        rest_addr,
        models,
        stop: Some(stop),
        task,
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
