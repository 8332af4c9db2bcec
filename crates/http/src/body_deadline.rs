//! A deadline on reading a request's body, proportional to its length with a floor: a client
//! must send at least `min_rate` bytes a second on average after `floor`, so a slow upload
//! cannot hold a connection (and the request's memory) for ever, while a large body on a slow
//! but honest link still gets the time it needs. hyper has no such limit on bodies (its only
//! timer is for headers), hence this wrapper.
//!
//! The deadline is `floor + max(declared, received) / min_rate` from the request's head: the
//! declared length (`Content-Length`) when known, and for a chunked body the bytes received so
//! far, so the rule is the same for both. When it passes the body ends with [`BodyTimedOut`],
//! which the handlers answer with 408 (see [`crate::error::body_error`]).

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use metrics::Counter;
use tokio::time::{Instant, Sleep};

/// The rule: `floor` plus the body's length at `min_rate` bytes a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDeadline {
    /// Time every body gets, whatever its length (`--http-body-timeout-secs`).
    pub floor: Duration,
    /// The slowest average upload accepted, in bytes a second (`--http-body-min-rate`).
    pub min_rate: u64,
}

impl BodyDeadline {
    /// How long a body of `bytes` may take.
    pub fn allowance(&self, bytes: u64) -> Duration {
        self.floor + Duration::from_secs_f64(bytes as f64 / self.min_rate.max(1) as f64)
    }

    /// `body` under this rule, counted on `timed_out` when it is too slow (one handle, cloned
    /// per request). A body known to be empty is returned as it is.
    pub fn apply(&self, body: Body, timed_out: &Counter) -> Body {
        if http_body::Body::is_end_stream(&body) {
            return body;
        }
        let declared = http_body::Body::size_hint(&body).exact().unwrap_or(0);
        Body::new(Deadlined {
            inner: body,
            rule: *self,
            started: Instant::now(),
            allowed: declared,
            received: 0,
            sleep: None,
            timed_out: timed_out.clone(),
        })
    }
}

/// The error a body ends with when its deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "the request body arrived too slowly (--http-body-timeout-secs, --http-body-min-rate)",
        )
    }
}

impl std::error::Error for BodyTimedOut {}

struct Deadlined {
    inner: Body,
    rule: BodyDeadline,
    started: Instant,
    /// The length the deadline is for now.
    allowed: u64,
    received: u64,
    /// Made the first time the body has to wait: a body already in the buffer (most of them)
    /// never touches the timer.
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: Counter,
}

impl Deadlined {
    fn deadline(&self) -> Instant {
        self.started + self.rule.allowance(self.allowed)
    }
}

impl http_body::Body for Deadlined {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if let Some(Ok(frame)) = &frame
                && let Some(data) = frame.data_ref()
            {
                this.received += data.len() as u64;
                if this.received > this.allowed {
                    // A chunked body (or one longer than declared) earns time as it arrives.
                    this.allowed = this.received;
                    let deadline = this.deadline();
                    if let Some(sleep) = &mut this.sleep {
                        sleep.as_mut().reset(deadline);
                    }
                }
            }
            return Poll::Ready(frame);
        }
        let deadline = this.deadline();
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(sleep.as_mut().poll(cx));
        this.timed_out.increment(1);
        Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowance_grows_with_the_length() {
        let rule = BodyDeadline {
            floor: Duration::from_secs(10),
            min_rate: 1000,
        };
        assert_eq!(rule.allowance(0), Duration::from_secs(10));
        assert_eq!(rule.allowance(5000), Duration::from_secs(15));
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_ends_in_an_error() {
        let rule = BodyDeadline {
            floor: Duration::from_millis(200),
            min_rate: 1000,
        };
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let body = rule.apply(Body::new(ChannelBody(receiver)), &Counter::noop());
        sender
            .send(Ok(Frame::data(Bytes::from_static(b"abc"))))
            .await
            .ok();
        let started = std::time::Instant::now();
        let read = axum::body::to_bytes(body, 1 << 20).await;
        let error = read.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("too slowly"), "{error}");
        // The floor plus 3 bytes at 1000 a second (the sender, still open, never finishes).
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        drop(sender);
    }

    #[tokio::test]
    async fn a_body_in_time_is_read_whole() {
        let rule = BodyDeadline {
            floor: Duration::from_secs(2),
            min_rate: 1000,
        };
        let body = rule.apply(Body::from("hello"), &Counter::noop());
        let read = axum::body::to_bytes(body, 1 << 20).await;
        assert_eq!(read.ok().as_deref(), Some(&b"hello"[..]));
    }

    /// A body fed frame by frame from a channel, pending while the channel is empty.
    struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>);

    impl http_body::Body for ChannelBody {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            self.0.poll_recv(cx)
        }
    }
}
