//! Dynamic batching for Quiver: many small requests to one model version become one engine call.
//!
//! - [`state`]: [`QueueState`], the pure batching rules (when a batch closes, which requests it
//!   takes, which are dropped), tested without threads or clocks.
//! - [`queue`]: [`Queue`], the handle the front ends push into, and one worker OS thread per
//!   engine instance that takes batches, runs them and hands every request exactly its rows
//!   (a lone request to a quick model that does not batch runs on its caller's thread).
//! - `batch` (private): running one batch — inputs joined and padded, one engine call, each
//!   request answered with its own rows.
//!
//! A full queue refuses at once ([`BatchError::Overloaded`]) instead of growing; a request whose
//! deadline passes while it waits, or whose client went away, never reaches the engine.

mod batch;
pub mod queue;
pub mod state;

pub use queue::{Answer, BatchError, Company, Queue, QueueStats};
pub use state::{BatchPolicy, QueueState};
