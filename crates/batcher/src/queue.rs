//! The queue of one model version: a handle the async front ends push requests into, and one
//! worker OS thread per engine instance that takes batches out of the shared [`QueueState`],
//! runs them and answers each request with its own rows.
//!
//! The workers take batches themselves (under a mutex, woken by a condition variable) instead
//! of a separate batching task handing batches over: a request goes from the runtime thread to
//! the engine thread in one hop, which on a 2-core machine is worth microseconds per request.
//!
//! A model that does not batch and answers quickly skips even that hop: when nothing waits and
//! an instance is free, the request runs on the caller's thread ([`Queue::run`]). Waking an
//! engine thread and being woken by it again costs a sleeping thread's wake-up twice (tens of
//! µs each on a virtual machine, measured in bench/RESULTS.md) — more than a small model's whole
//! engine call. Instances are a pool of sessions either may take, so the bound on concurrent
//! engine calls holds across both paths.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use quiver_engine_api::{EngineError, Session, Tensor};
use quiver_telemetry::VersionMetrics;
use tokio::sync::oneshot;

use crate::batch::{run_batch, run_guarded};
use crate::state::{BatchPolicy, Entry, Next, QueueState, Refused};

/// Why a request got no outputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The queue is full; the client should back off.
    #[error("too many requests are waiting for this model ({0} queued); try again later")]
    Overloaded(usize),
    /// The request has more rows than one batch may hold.
    #[error(
        "the request has {rows} rows; this model takes at most {max} per request (max_batch_size)"
    )]
    TooManyRows {
        /// Rows in the request.
        rows: usize,
        /// The model's `max_batch_size`.
        max: usize,
    },
    /// The request's inputs cannot be batched as given.
    #[error("{0}")]
    InvalidInput(String),
    /// The deadline passed before the request ran.
    #[error("the request's deadline passed while it waited for the model")]
    DeadlineExceeded,
    /// The version is being unloaded.
    #[error("the model is being unloaded")]
    Stopped,
    /// The engine failed on the batch.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// A request's outputs and where its time went.
#[derive(Debug)]
pub struct Answer {
    /// The request's own rows of every output, in the model's order.
    pub outputs: Vec<Tensor>,
    /// Time from being queued to its batch starting.
    pub queued: Duration,
    /// Time of the batch's engine call, with assembling and splitting the batch.
    pub compute: Duration,
}

/// What a caller knows of the server's load when it submits a request.
///
/// Only a request alone in the server runs inline. Under load the engine threads keep the
/// work, overlapping the model with the runtime's network work: on 2 cores at concurrency 8
/// that costs less CPU a request than running the model on the runtime's threads
/// (bench/RESULTS.md), where at concurrency 1 skipping the two wake-ups is the larger gain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Company {
    /// No other request is in flight in the server, and it has been quiet (the caller's
    /// judgement: `quiver_core::inflight` looks at the gaps between requests).
    Alone,
    /// Others may be.
    Unknown,
}

pub(crate) type Reply = oneshot::Sender<Result<Answer, BatchError>>;

/// A queued request.
#[derive(Debug)]
pub struct Job {
    pub(crate) inputs: Vec<Tensor>,
    pub(crate) reply: Reply,
    pub(crate) span: tracing::Span,
}

/// `recent_compute` before the first engine call: not known, so not inline.
const UNMEASURED: u64 = u64::MAX;

struct Shared {
    label: String,
    metrics: Arc<VersionMetrics>,
    /// The rules, fixed for the queue's life (the state holds its own copy to apply them).
    policy: BatchPolicy,
    /// The engine instances; `Inner::free` says which are not running.
    sessions: Vec<Arc<dyn Session>>,
    inner: Mutex<Inner>,
    wake: Condvar,
    batches: AtomicU64,
    requests: AtomicU64,
    largest: AtomicU64,
    /// Moving average of engine calls, in nanoseconds ([`UNMEASURED`] before the first).
    recent_compute: AtomicU64,
}

/// What a queue has run so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Engine calls made.
    pub batches: u64,
    /// Requests answered by them.
    pub requests: u64,
    /// Most requests in one engine call.
    pub largest_batch: u64,
}

struct Inner {
    state: QueueState<Job>,
    closed: bool,
    /// Workers blocked on the condition variable. A notify is a system call even when nobody
    /// waits, so a push skips it while every worker is busy running a batch (they look at the
    /// queue again before they wait).
    sleeping: usize,
    /// Indexes of the sessions no worker or caller is running.
    free: Vec<usize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count_batch(&self, requests: usize) {
        let n = requests as u64;
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(n, Ordering::Relaxed);
        self.largest.fetch_max(n, Ordering::Relaxed);
        self.metrics.record_batch(requests);
    }

    /// Folds one engine call's time into the moving average (an eighth of the new sample):
    /// racing callers may lose a sample, which a moving average does not miss.
    fn note_compute(&self, took: Duration) {
        let sample = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX - 1);
        let old = self.recent_compute.load(Ordering::Relaxed);
        let new = if old == UNMEASURED {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.recent_compute.store(new, Ordering::Relaxed);
    }

    /// Whether a request may run on its caller's thread: the model does not batch and its
    /// engine calls have been short.
    fn inline_allowed(&self) -> bool {
        self.policy.max_batch_size == 0
            && u128::from(self.recent_compute.load(Ordering::Relaxed))
                <= self.policy.inline_max.as_nanos()
    }

    /// Gives a session back to the pool, waking a worker when requests wait for one.
    fn give_back(&self, slot: usize) {
        let mut inner = self.lock();
        inner.free.push(slot);
        let wake = inner.sleeping > 0 && !inner.state.is_empty();
        drop(inner);
        if wake {
            self.wake.notify_one();
        }
    }
}

/// A session taken from the pool by a caller running its request inline; back on drop.
struct Lent<'a> {
    shared: &'a Shared,
    slot: usize,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        self.shared.give_back(self.slot);
    }
}

/// The handle to a version's queue. Dropping it lets the workers finish what is queued, then
/// stop, which drops the sessions.
pub struct Queue {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("label", &self.shared.label)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// Starts one worker thread per session (each an engine instance) under `policy`; the
    /// queue's depth and batch sizes go to `metrics`, which also names the queue.
    pub fn start(
        metrics: Arc<VersionMetrics>,
        sessions: Vec<Arc<dyn Session>>,
        policy: BatchPolicy,
    ) -> std::io::Result<Self> {
        let label = metrics.model().to_owned();
        let instances = sessions.len();
        let shared = Arc::new(Shared {
            label: label.clone(),
            metrics,
            policy: policy.clone(),
            sessions,
            inner: Mutex::new(Inner {
                state: QueueState::new(policy),
                closed: false,
                sleeping: 0,
                free: (0..instances).rev().collect(),
            }),
            wake: Condvar::new(),
            batches: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            largest: AtomicU64::new(0),
            recent_compute: AtomicU64::new(UNMEASURED),
        });
        for i in 0..instances {
            let worker = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("quiver-{label}-{i}"))
                .spawn(move || work(&worker))?;
        }
        Ok(Self { shared })
    }

    /// The batching rules in force.
    pub fn policy(&self) -> &BatchPolicy {
        &self.shared.policy
    }

    /// Batches and requests run so far.
    pub fn stats(&self) -> QueueStats {
        QueueStats {
            batches: self.shared.batches.load(Ordering::Relaxed),
            requests: self.shared.requests.load(Ordering::Relaxed),
            largest_batch: self.shared.largest.load(Ordering::Relaxed),
        }
    }

    /// Requests waiting now.
    pub fn depth(&self) -> usize {
        self.shared.lock().state.len()
    }

    /// A session when the model is idle: nothing waits and no instance runs. Refused once
    /// closed.
    fn lend(&self) -> Result<Option<Lent<'_>>, BatchError> {
        let mut inner = self.shared.lock();
        if inner.closed {
            return Err(BatchError::Stopped);
        }
        if !inner.state.is_empty() || inner.free.len() < self.shared.sessions.len() {
            return Ok(None);
        }
        Ok(inner.free.pop().map(|slot| Lent {
            shared: &self.shared,
            slot,
        }))
    }

    /// Queues `inputs` (checked against the model) and waits for their outputs without blocking
    /// the runtime. A full queue, or a request too large to batch, is refused at once. A request
    /// that comes [`Company::Alone`] to a quick model that does not batch, finding it idle, runs
    /// on this thread instead (see the module's notes).
    pub async fn run(
        &self,
        inputs: Vec<Tensor>,
        deadline: Option<Instant>,
        company: Company,
    ) -> Result<Answer, BatchError> {
        if company == Company::Alone
            && self.shared.inline_allowed()
            && let Some(lent) = self.lend()?
        {
            return run_inline(&lent, inputs, deadline);
        }
        let (reply, answer) = oneshot::channel();
        // Shapes are checked before taking the lock, which every request and worker shares.
        let (rows, key) = if self.shared.policy.max_batch_size > 0 {
            batch_shape(&inputs, &self.shared.policy.pad)?
        } else {
            (1, Vec::new())
        };
        let wake = {
            let mut inner = self.shared.lock();
            if inner.closed {
                return Err(BatchError::Stopped);
            }
            let entry = Entry {
                item: Job {
                    inputs,
                    reply,
                    span: tracing::Span::current(),
                },
                rows,
                key,
                queued_at: Instant::now(),
                deadline,
            };
            inner
                .state
                .push(entry)
                .map_err(|(refused, _)| match refused {
                    Refused::Full => {
                        self.shared.metrics.record_rejected();
                        BatchError::Overloaded(inner.state.len())
                    }
                    Refused::TooManyRows { rows, max } => BatchError::TooManyRows { rows, max },
                })?;
            self.shared.metrics.set_queue_depth(inner.state.len());
            inner.sleeping > 0 && inner.state.worth_a_look()
        };
        if wake {
            self.shared.wake.notify_one();
        }
        answer.await.unwrap_or(Err(BatchError::Stopped))
    }
}

/// Runs one request on the caller's thread with a lent session.
fn run_inline(
    lent: &Lent<'_>,
    inputs: Vec<Tensor>,
    deadline: Option<Instant>,
) -> Result<Answer, BatchError> {
    let shared = lent.shared;
    let started = Instant::now();
    if deadline.is_some_and(|d| d <= started) {
        return Err(BatchError::DeadlineExceeded);
    }
    shared.count_batch(1);
    let result = run_guarded(&*shared.sessions[lent.slot], inputs);
    let compute = started.elapsed();
    shared.note_compute(compute);
    match result {
        Ok(outputs) => Ok(Answer {
            outputs,
            queued: Duration::ZERO,
            compute,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "inference failed");
            Err(e)
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_all();
    }
}

/// Rows (dimension 0, on which every input must agree) and the batching key: every input's
/// other dimensions, which requests batched together must share — for a padded input only its
/// rank, as padding makes the lengths agree.
fn batch_shape(inputs: &[Tensor], pad: &[Option<i64>]) -> Result<(usize, Vec<usize>), BatchError> {
    let mut rows = None;
    let mut key = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let Some((&first, rest)) = input.shape().split_first() else {
            return Err(BatchError::InvalidInput(
                "a batching model takes inputs with a batch dimension; got a scalar".into(),
            ));
        };
        match rows {
            Some(r) if r != first => {
                return Err(BatchError::InvalidInput(format!(
                    "inputs disagree on the batch dimension: {r} vs {first} rows"
                )));
            }
            _ => rows = Some(first),
        }
        key.push(rest.len());
        if pad.get(i).is_none_or(Option::is_none) {
            key.extend_from_slice(rest);
        }
    }
    Ok((rows.unwrap_or(0), key))
}

fn work(shared: &Shared) {
    let mut done = None;
    while let Some((batch, slot)) = take_batch(shared, done.take()) {
        shared.count_batch(batch.len());
        let started = Instant::now();
        run_batch(
            &shared.label,
            &*shared.sessions[slot],
            &shared.policy.pad,
            batch,
        );
        shared.note_compute(started.elapsed());
        done = Some(slot);
    }
}

/// Gives back the session the worker ran its last batch on (`done`), then waits for the next
/// batch and a free session to run it on; `None` once the queue is closed and empty.
fn take_batch(shared: &Shared, done: Option<usize>) -> Option<(Vec<Entry<Job>>, usize)> {
    let mut inner = shared.lock();
    if let Some(slot) = done {
        inner.free.push(slot);
    }
    loop {
        let Some(slot) = inner.free.pop() else {
            // Callers running inline hold every session; the last to finish wakes a worker
            // if requests wait.
            if inner.closed && inner.state.is_empty() {
                return None;
            }
            inner = sleep(shared, inner, None);
            continue;
        };
        let now = Instant::now();
        let (next, dropped) = inner.state.next(now, |job| job.reply.is_closed());
        shared.metrics.set_queue_depth(inner.state.len());
        for entry in dropped.expired {
            let _ = entry.item.reply.send(Err(BatchError::DeadlineExceeded));
        }
        match next {
            Next::Batch(batch) => {
                if !inner.state.is_empty() && inner.sleeping > 0 {
                    shared.wake.notify_one(); // another worker may take the rest
                }
                return Some((batch, slot));
            }
            Next::WaitUntil(at) => {
                inner.free.push(slot);
                inner = sleep(shared, inner, Some(at.saturating_duration_since(now)));
            }
            Next::Idle if inner.closed => return None,
            Next::Idle => {
                inner.free.push(slot);
                inner = sleep(shared, inner, None);
            }
        }
    }
}

/// Waits on the condition variable (at most `timeout`), counted among the sleeping workers.
fn sleep<'a>(
    shared: &'a Shared,
    mut inner: MutexGuard<'a, Inner>,
    timeout: Option<Duration>,
) -> MutexGuard<'a, Inner> {
    inner.sleeping += 1;
    let mut inner = match timeout {
        Some(timeout) => {
            shared
                .wake
                .wait_timeout(inner, timeout)
                .unwrap_or_else(PoisonError::into_inner)
                .0
        }
        None => shared
            .wake
            .wait(inner)
            .unwrap_or_else(PoisonError::into_inner),
    };
    inner.sleeping -= 1;
    inner
}
