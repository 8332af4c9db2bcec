//! The listeners' accept loops, plain or TLS, with what protects them from hostile and slow
//! clients: the connection cap shared by every listener ([`cap`]), the HTTP/1.1 header and
//! idle timeouts ([`slow`]), the body deadline (`quiver_http::body_deadline`) and the HTTP/2
//! limits (streams per connection, keep-alive pings, resets, header lists). docs/security.md
//! gives each flag, its default and why.

pub mod cap;
pub mod slow;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use quiver_http::body_deadline::BodyDeadline;
use quiver_telemetry::connections::{ListenerMetrics, Phase};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use cap::ConnectionCap;
use slow::{Guarded, Timeouts};

/// Longest a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP/2 limits, on the REST port (h2c, h2) and on gRPC alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Limits {
    /// Streams one connection may have open (`--grpc-max-concurrent-streams`).
    pub max_concurrent_streams: u32,
    /// How often an idle connection is pinged (`--http2-keepalive-interval-secs`); `None`:
    /// never.
    pub keepalive_interval: Option<Duration>,
    /// How long a ping may go unanswered before the connection is closed
    /// (`--http2-keepalive-timeout-secs`).
    pub keepalive_timeout: Duration,
    /// Largest header list (names and values) a request may send (`--http2-max-header-list-bytes`).
    pub max_header_list_bytes: u32,
    /// Streams a client may reset before the server took them, before the connection is closed
    /// with ENHANCE_YOUR_CALM: the HTTP/2 "rapid reset" attack (`--http2-max-pending-reset-streams`).
    pub max_pending_reset_streams: usize,
}

/// Everything the listeners enforce, shared by all of them.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `--max-connections`, across every listener.
    pub connections: Arc<ConnectionCap>,
    /// The HTTP/1.1 timeouts.
    pub timeouts: Timeouts,
    /// The request body deadline.
    pub body: BodyDeadline,
    /// The HTTP/2 limits.
    pub http2: Http2Limits,
}

/// A connection's stream: TCP, or TLS over it.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for Stream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp().connect_info()
    }
}

/// Accepts the next connection that gets a place under the cap; refused ones are closed here.
async fn accept(
    listener: &TcpListener,
    limits: &Limits,
    metrics: &ListenerMetrics,
) -> (TcpStream, SocketAddr, cap::Admission) {
    loop {
        let (tcp, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, say: back off a little rather than spin.
                tracing::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admission) = limits.connections.admit(metrics) else {
            drop(tcp);
            continue;
        };
        // Small request/response exchanges must not wait for Nagle's algorithm.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        return (tcp, client, admission);
    }
}

/// `tcp` after the TLS handshake, if there is one to do.
async fn handshake(
    tcp: TcpStream,
    client: SocketAddr,
    tls: Option<&tokio_rustls::TlsAcceptor>,
) -> Option<Stream> {
    let Some(acceptor) = tls else {
        return Some(Stream::Plain(tcp));
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(Stream::Tls(Box::new(tls))),
        Ok(Err(e)) => {
            tracing::debug!(%client, "TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(%client, "TLS handshake timed out");
            None
        }
    }
}

/// Serves `app` (HTTP/1.1 and HTTP/2) on `listener` until `shutdown`, then lets the connections
/// finish what they are doing. Each connection runs on a task of its own (its TLS handshake
/// too), so a slow client holds up no one.
pub async fn serve_http(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: axum::Router,
    limits: Limits,
    metrics: ListenerMetrics,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use tower::ServiceExt as _;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header and idle timeouts are the stream's (slow.rs), not hyper's: its timer would
    // also cut kept-alive connections at the header timeout.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    let h2 = limits.http2;
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(h2.max_concurrent_streams)
        .keep_alive_interval(h2.keepalive_interval)
        .keep_alive_timeout(h2.keepalive_timeout)
        .max_header_list_size(h2.max_header_list_bytes)
        .max_pending_accept_reset_streams(h2.max_pending_reset_streams);
    let body = limits.body;
    tokio::pin!(shutdown);
    loop {
        let (tcp, client, admission) = tokio::select! {
            accepted = accept(&listener, &limits, &metrics) => accepted,
            () = &mut shutdown => break,
        };
        let (tls, builder, watcher) = (tls.clone(), builder.clone(), graceful.watcher());
        let timeouts = limits.timeouts;
        let metrics = metrics.clone();
        let body_timeouts = metrics.timed_out_counter(Phase::Body);
        let service = app
            .clone()
            .map_request(move |mut request: axum::extract::Request| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(client));
                request.map(|b| body.apply(b, &body_timeouts))
            });
        tokio::spawn(async move {
            let Some(stream) = handshake(tcp, client, tls.as_ref()).await else {
                return;
            };
            let stream = Guarded::new(stream, admission, Some(timeouts), &metrics);
            let service = hyper_util::service::TowerToHyperService::new(service.map_request(
                |r: hyper::Request<hyper::body::Incoming>| r.map(axum::body::Body::new),
            ));
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%client, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The connections of `listener` as tonic takes them: admitted under the cap, handshaken (each
/// on a task of its own) when `tls` is set, and closed if they do not start HTTP/2 within the
/// header timeout. Ends when tonic drops the receiver.
pub fn incoming(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    metrics: ListenerMetrics,
) -> tokio_stream::wrappers::ReceiverStream<Result<Guarded<Stream>, io::Error>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    // HTTP/2 speaks first with its preface; a connection that does not within the header
    // timeout is a slow or stray client. After it, HTTP/2's own limits apply.
    let timeouts = Timeouts {
        header: limits.timeouts.header,
        idle: limits.timeouts.header,
    };
    tokio::spawn(async move {
        loop {
            let (tcp, client, admission) = tokio::select! {
                accepted = accept(&listener, &limits, &metrics) => accepted,
                () = sender.closed() => return,
            };
            let handshaking = tls.is_some();
            let (tls, sender, metrics) = (tls.clone(), sender.clone(), metrics.clone());
            let hand_over = async move {
                if let Some(stream) = handshake(tcp, client, tls.as_ref()).await {
                    let stream = Guarded::new(stream, admission, Some(timeouts), &metrics);
                    let _ = sender.send(Ok(stream)).await;
                }
            };
            if handshaking {
                tokio::spawn(hand_over);
            } else {
                hand_over.await;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}
