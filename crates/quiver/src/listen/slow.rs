//! Timeouts for slow HTTP/1.1 clients, as a wrapper around a connection's stream: a request's
//! headers must arrive within `--http-header-timeout-secs` of its first byte (of the connection's
//! opening, for a new one), and a kept-alive connection may sit between requests for
//! `--http-idle-timeout-secs`. A connection that starts with the HTTP/2 preface (gRPC, h2c, h2
//! over TLS) is let through after it: HTTP/2 has its own keep-alive pings and stream limits.
//!
//! Written here because hyper's only timer, `header_read_timeout`, starts as soon as it waits
//! for a request — so it also times the wait between kept-alive requests, and the two limits
//! (nginx's `client_header_timeout` and `keepalive_timeout`, Go's `ReadHeaderTimeout` and
//! `IdleTimeout`) could not differ. Watching the bytes tells the phases apart: a request's head
//! ends at its first empty line; the server's answer (other than `100 Continue`) ends the
//! request. A timeout shows as a read error, on which hyper closes the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use quiver_telemetry::connections::{ListenerMetrics, Phase};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::cap::Admission;

/// The HTTP/2 connection preface's first line, which no HTTP/1 request starts with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// The two HTTP/1.1 timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From a request's first byte (or the connection's opening) to the end of its headers.
    pub header: Duration,
    /// Between the end of an answer and the next request's first byte.
    pub idle: Duration,
}

/// A connection's stream, closed when a client is too slow, holding the connection's place
/// under `--max-connections` until dropped.
#[derive(Debug)]
pub struct Guarded<IO> {
    io: IO,
    /// `None` once the connection turned out to speak HTTP/2.
    watch: Option<Box<Watch>>,
    _admission: Admission,
}

#[derive(Debug)]
struct Watch {
    phase: State,
    timeouts: Timeouts,
    sleep: Pin<Box<Sleep>>,
    /// The last bytes of the head read so far, newest in the lowest byte.
    tail: u32,
    /// How many of the connection's first bytes matched the HTTP/2 preface; `None` once
    /// decided.
    preface: Option<usize>,
    metrics: ListenerMetrics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the next request's first byte.
    Idle,
    /// Reading a request's head (or waiting for a new connection's first byte).
    Head,
    /// The head is in: the body, the model and the answer take the time they take.
    Busy,
}

/// What the bytes just read showed.
enum Seen {
    Nothing,
    Http2,
}

impl Watch {
    fn saw(&mut self, bytes: &[u8]) -> Seen {
        if let Some(matched) = self.preface {
            let take = (H2_PREFACE.len() - matched).min(bytes.len());
            if bytes[..take] != H2_PREFACE[matched..matched + take] {
                self.preface = None;
            } else if matched + take == H2_PREFACE.len() {
                return Seen::Http2;
            } else {
                self.preface = Some(matched + take);
            }
        }
        if self.phase == State::Idle && !bytes.is_empty() {
            self.phase = State::Head;
            self.tail = 0;
            let deadline = Instant::now() + self.timeouts.header;
            self.sleep.as_mut().reset(deadline);
        }
        if self.phase == State::Head {
            for &byte in bytes {
                self.tail = (self.tail << 8) | u32::from(byte);
                // An empty line: "\n\n" or "\n\r\n" (so "\r\n\r\n" too; httparse takes bare
                // newlines as well).
                if self.tail & 0xffff == 0x0a0a || self.tail & 0x00ff_ffff == 0x000a_0d0a {
                    self.phase = State::Busy;
                    break;
                }
            }
        }
        Seen::Nothing
    }

    fn wrote(&mut self, first: &[u8]) {
        // An interim answer (`HTTP/1.1 100 Continue`) does not end the request.
        if self.phase == State::Busy && first.starts_with(b"HTTP/1.1 1") {
            return;
        }
        if self.phase != State::Head {
            self.phase = State::Idle;
            let deadline = Instant::now() + self.timeouts.idle;
            self.sleep.as_mut().reset(deadline);
        }
    }

    /// Whether the current phase's deadline has passed (registering for a wake-up when not).
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<Phase> {
        let phase = match self.phase {
            State::Busy => return None,
            State::Idle => Phase::Idle,
            State::Head => Phase::Header,
        };
        self.sleep.as_mut().poll(cx).is_ready().then_some(phase)
    }
}

impl<IO> Guarded<IO> {
    /// `io`, a new connection, watched with `timeouts` (`None`: not at all) and counted on
    /// `metrics`.
    pub fn new(
        io: IO,
        admission: Admission,
        timeouts: Option<Timeouts>,
        metrics: &ListenerMetrics,
    ) -> Self {
        let watch = timeouts.map(|timeouts| {
            Box::new(Watch {
                phase: State::Head,
                timeouts,
                sleep: Box::pin(tokio::time::sleep(timeouts.header)),
                tail: 0,
                preface: Some(0),
                metrics: metrics.clone(),
            })
        });
        Self {
            io,
            watch,
            _admission: admission,
        }
    }

    /// The stream inside.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(watch) = &mut this.watch
            && let Some(phase) = watch.expired(cx)
        {
            watch.metrics.timed_out(phase);
            let what = match phase {
                Phase::Idle => "idle longer than --http-idle-timeout-secs",
                Phase::Header | Phase::Body => {
                    "no complete request headers within --http-header-timeout-secs"
                }
            };
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(watch)) = (&polled, &mut this.watch)
            && let Seen::Http2 = watch.saw(&buf.filled()[before..])
        {
            this.watch = None;
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if let (Poll::Ready(Ok(n)), Some(watch)) = (&polled, &mut this.watch)
            && *n > 0
        {
            watch.wrote(buf);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let (Poll::Ready(Ok(n)), Some(watch)) = (&polled, &mut this.watch)
            && *n > 0
        {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            watch.wrote(first);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Guarded<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use crate::listen::cap::ConnectionCap;

    const TIMEOUTS: Timeouts = Timeouts {
        header: Duration::from_millis(300),
        idle: Duration::from_millis(900),
    };

    fn guarded(io: tokio::io::DuplexStream) -> Guarded<tokio::io::DuplexStream> {
        let metrics = ListenerMetrics::new("rest");
        let cap = ConnectionCap::new(10);
        let admission = cap.admit(&metrics);
        let Some(admission) = admission else {
            panic!("a cap of 10 admits one")
        };
        Guarded::new(io, admission, Some(TIMEOUTS), &metrics)
    }

    async fn read_error(
        server: &mut Guarded<tokio::io::DuplexStream>,
    ) -> (io::ErrorKind, Duration) {
        let started = Instant::now();
        let mut buf = [0u8; 64];
        loop {
            match server.read(&mut buf).await {
                Ok(0) => return (io::ErrorKind::UnexpectedEof, started.elapsed()),
                Ok(_) => continue,
                Err(e) => return (e.kind(), started.elapsed()),
            }
        }
    }

    #[tokio::test]
    async fn a_head_that_never_ends_times_out() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = guarded(server);
        client
            .write_all(b"POST /v2 HTTP/1.1\r\nHost: x\r\n")
            .await
            .ok();
        let (kind, took) = read_error(&mut server).await;
        assert_eq!(kind, io::ErrorKind::TimedOut);
        assert!(took < TIMEOUTS.idle, "{took:?}");
    }

    #[tokio::test]
    async fn between_requests_the_idle_timeout_counts() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = guarded(server);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.ok();
        let mut buf = [0u8; 64];
        assert!(server.read(&mut buf).await.is_ok_and(|n| n > 0));
        // Busy: the model takes longer than the header timeout, and nothing closes.
        tokio::time::sleep(TIMEOUTS.header * 2).await;
        server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.ok();
        let (kind, took) = read_error(&mut server).await;
        assert_eq!(kind, io::ErrorKind::TimedOut);
        assert!(
            took >= TIMEOUTS.idle - Duration::from_millis(50),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn continue_does_not_end_the_request() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = guarded(server);
        client
            .write_all(b"POST / HTTP/1.1\nExpect: 100-continue\n\n")
            .await
            .ok();
        let mut buf = [0u8; 64];
        assert!(server.read(&mut buf).await.is_ok());
        server
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .ok();
        // The body comes slower than the header timeout, without an empty line: still busy.
        for _ in 0..3 {
            tokio::time::sleep(TIMEOUTS.header / 2).await;
            client.write_all(b"\x00\x01").await.ok();
            assert!(server.read(&mut buf).await.is_ok());
        }
    }

    #[tokio::test]
    async fn http2_is_let_through() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = guarded(server);
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .ok();
        let mut buf = [0u8; 64];
        assert!(server.read(&mut buf).await.is_ok());
        assert!(server.watch.is_none());
    }
}
