//! The Rust end-to-end tests of Quiver, in one test binary (one link of the server and its
//! clients instead of one a file): real servers on `127.0.0.1:0` — the `quiver` binary, or the
//! server started in process — driven over real HTTP, gRPC and OTLP.
//!
//! One module a subject; `support` holds what they share. A new subject is a module here, not
//! a new file beside this folder (each of those would be a test binary, and a link, of its own).
//! `cargo test -p quiver --test e2e MODULE::` runs one subject.

#![allow(clippy::unwrap_used, clippy::wildcard_enum_match_arm)] // a test may panic

mod batching;
mod binary;
mod engines;
mod lifecycle;
mod observability;
#[cfg(feature = "otlp")]
mod otlp;
mod support;
mod tfserving_rest;
