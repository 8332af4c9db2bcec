//! The queue of one model version: a handle the async front ends push requests into, and one
//! worker OS thread per engine instance that takes batches out of the shared [`QueueState`],
//! runs them and answers each request with its own rows.
//!
//! The workers take batches themselves (under a mutex, woken by a condition variable) instead
//! of a separate batching task handing batches over: a request goes from the runtime thread to
//! the engine thread in one hop, which on a 2-core machine is worth microseconds per request.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use quiver_engine_api::{EngineError, Session, Tensor};
use quiver_telemetry::VersionMetrics;
use tokio::sync::oneshot;

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

type Reply = oneshot::Sender<Result<Answer, BatchError>>;

/// A queued request.
#[derive(Debug)]
pub struct Job {
    inputs: Vec<Tensor>,
    reply: Reply,
    span: tracing::Span,
}

struct Shared {
    label: String,
    metrics: Arc<VersionMetrics>,
    /// The rules, fixed for the queue's life (the state holds its own copy to apply them).
    policy: BatchPolicy,
    inner: Mutex<Inner>,
    wake: Condvar,
    batches: AtomicU64,
    requests: AtomicU64,
    largest: AtomicU64,
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
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
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
        let shared = Arc::new(Shared {
            label: label.clone(),
            metrics,
            policy: policy.clone(),
            inner: Mutex::new(Inner {
                state: QueueState::new(policy),
                closed: false,
                sleeping: 0,
            }),
            wake: Condvar::new(),
            batches: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            largest: AtomicU64::new(0),
        });
        for (i, session) in sessions.into_iter().enumerate() {
            let worker = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("quiver-{label}-{i}"))
                .spawn(move || work(&worker, &*session))?;
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

    /// Queues `inputs` (checked against the model) and waits for their outputs without blocking
    /// the runtime. A full queue, or a request too large to batch, is refused at once.
    pub async fn run(
        &self,
        inputs: Vec<Tensor>,
        deadline: Option<Instant>,
    ) -> Result<Answer, BatchError> {
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

fn work(shared: &Shared, session: &dyn Session) {
    while let Some(batch) = take_batch(shared) {
        let requests = batch.len() as u64;
        shared.batches.fetch_add(1, Ordering::Relaxed);
        shared.requests.fetch_add(requests, Ordering::Relaxed);
        shared.largest.fetch_max(requests, Ordering::Relaxed);
        shared.metrics.record_batch(batch.len());
        run_batch(&shared.label, session, &shared.policy.pad, batch);
    }
}

/// Waits for the next batch; `None` once the queue is closed and empty.
fn take_batch(shared: &Shared) -> Option<Vec<Entry<Job>>> {
    let mut inner = shared.lock();
    loop {
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
                return Some(batch);
            }
            Next::WaitUntil(at) => {
                inner.sleeping += 1;
                inner = shared
                    .wake
                    .wait_timeout(inner, at.saturating_duration_since(now))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                inner.sleeping -= 1;
            }
            Next::Idle if inner.closed => return None,
            Next::Idle => {
                inner.sleeping += 1;
                inner = shared
                    .wake
                    .wait(inner)
                    .unwrap_or_else(PoisonError::into_inner);
                inner.sleeping -= 1;
            }
        }
    }
}

/// Runs a batch and answers each request with its own rows.
fn run_batch(label: &str, session: &dyn Session, pad: &[Option<i64>], batch: Vec<Entry<Job>>) {
    let started = Instant::now();
    let requests = batch.len();
    let mut rows = Vec::with_capacity(requests);
    let mut replies = Vec::with_capacity(requests);
    let mut per_input: Vec<Vec<Tensor>> = Vec::new();
    for entry in batch {
        let Job {
            inputs,
            reply,
            span,
        } = entry.item;
        // Inputs the engine cannot take (e.g. string bytes it cannot hold) fail their own
        // request, not the others' in the batch.
        if requests > 1
            && let Err(e) = session.check_inputs(&inputs)
        {
            let e = BatchError::Engine(e);
            span.in_scope(|| tracing::warn!(error = %e, "inference failed"));
            let _ = reply.send(Err(e));
            continue;
        }
        per_input.resize_with(inputs.len(), Vec::new);
        for (parts, input) in per_input.iter_mut().zip(inputs) {
            parts.push(input);
        }
        rows.push(entry.rows);
        replies.push(Waiting {
            reply,
            span,
            queued: started.saturating_duration_since(entry.queued_at),
        });
    }
    let requests = replies.len();
    if requests == 0 {
        return;
    }
    // One request's lines carry its own span (and request id); a batch of several gets a span
    // of its own that follows from each of theirs.
    let span = match replies.as_slice() {
        [one] => one.span.clone(),
        many => {
            let span = tracing::debug_span!("batch", model = label, requests);
            for waiting in many {
                span.follows_from(&waiting.span);
            }
            span
        }
    };
    let _entered = span.enter();
    tracing::debug!(
        model = label,
        requests,
        rows = rows.iter().sum::<usize>(),
        "running a batch"
    );
    // Padded inputs: each request's own lengths, and the batch's (the longest of each).
    let padding = if requests > 1 {
        pad_inputs(&mut per_input, pad)
    } else {
        Ok(None)
    };
    let padding = match padding {
        Ok(padding) => padding,
        Err(e) => return fail(replies, &e),
    };
    let result = if requests == 1 {
        run_guarded(session, per_input.into_iter().flatten().collect())
    } else {
        per_input
            .into_iter()
            .map(|parts| Tensor::concat_rows(parts).map_err(BatchError::InvalidInput))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|inputs| run_guarded(session, inputs))
    };
    let outputs = match result {
        Ok(outputs) => outputs,
        Err(e) => return fail(replies, &e),
    };
    if requests == 1 {
        if let Some(waiting) = replies.pop() {
            waiting.answer(Ok(outputs), started);
        }
        return;
    }
    // Each request gets exactly its own rows of every output.
    let total: usize = rows.iter().sum();
    if let Some(bad) = outputs.iter().find(|o| o.shape().first() != Some(&total)) {
        let e = BatchError::Engine(EngineError::Runtime(format!(
            "the model returned an output of shape {:?} for a batch of {total} rows; it cannot be batched",
            bad.shape()
        )));
        return fail(replies, &e);
    }
    let mut start = 0;
    let own: Vec<_> = rows
        .iter()
        .enumerate()
        .map(|(request, &n)| {
            let own = outputs
                .iter()
                .map(|o| {
                    let mine = o.slice_rows(start, n)?;
                    match &padding {
                        Some(p) => cut_back(mine, &p.longest, &p.own[request]),
                        None => Ok(mine),
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| BatchError::Engine(EngineError::Runtime(e)));
            start += n;
            own
        })
        .collect();
    for (waiting, own) in replies.into_iter().zip(own) {
        waiting.answer(own, started);
    }
}

/// The lengths behind a padded batch: the first padded input's dimensions after the batch
/// dimension, per request and the longest.
struct Padding {
    own: Vec<Vec<usize>>,
    longest: Vec<usize>,
}

/// Pads every padded input of every request to the batch's longest; `None` when nothing needed
/// padding.
fn pad_inputs(
    per_input: &mut [Vec<Tensor>],
    pad: &[Option<i64>],
) -> Result<Option<Padding>, BatchError> {
    let mut padding = None;
    for (parts, value) in per_input.iter_mut().zip(pad) {
        let Some(value) = *value else { continue };
        let rank = parts.first().map_or(0, |t| t.shape().len());
        let mut longest = vec![0usize; rank];
        for part in parts.iter() {
            for (l, &d) in longest.iter_mut().zip(part.shape()) {
                *l = (*l).max(d);
            }
        }
        let own: Vec<Vec<usize>> = parts.iter().map(|t| t.shape()[1..].to_vec()).collect();
        if own.iter().all(|dims| dims[..] == longest[1..]) {
            continue;
        }
        for part in parts.iter_mut() {
            let mut shape = longest.clone();
            shape[0] = part.shape()[0];
            if part.shape() != shape.as_slice() {
                *part = part
                    .pad_to(&shape, value as f64)
                    .map_err(BatchError::InvalidInput)?;
            }
        }
        padding.get_or_insert(Padding {
            own,
            longest: longest[1..].to_vec(),
        });
    }
    Ok(padding)
}

/// Cuts a request's rows of an output back to its own lengths: every dimension (after the
/// batch dimension) as long as a padded length of the batch, where the request's own was
/// shorter, is cut to the request's.
fn cut_back(mut output: Tensor, longest: &[usize], own: &[usize]) -> Result<Tensor, String> {
    for dim in 1..output.shape().len() {
        let size = output.shape()[dim];
        if let Some(k) = longest.iter().position(|&l| l == size)
            && own[k] < size
        {
            output = output.truncate_dim(dim, own[k])?;
        }
    }
    Ok(output)
}

/// A request of a running batch, waiting for its answer.
struct Waiting {
    reply: Reply,
    span: tracing::Span,
    queued: Duration,
}

impl Waiting {
    fn answer(self, outputs: Result<Vec<Tensor>, BatchError>, started: Instant) {
        let compute = started.elapsed();
        let _ = self.reply.send(outputs.map(|outputs| Answer {
            outputs,
            queued: self.queued,
            compute,
        }));
    }
}

/// Answers every request of a batch with `error`, logged under each request's span.
fn fail(replies: Vec<Waiting>, error: &BatchError) {
    for waiting in replies {
        waiting
            .span
            .in_scope(|| tracing::warn!(error = %error, "inference failed"));
        let _ = waiting.reply.send(Err(error.clone()));
    }
}

fn run_guarded(session: &dyn Session, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BatchError> {
    catch_unwind(AssertUnwindSafe(|| session.run(inputs)))
        .unwrap_or_else(|_| {
            Err(EngineError::Runtime(
                "the engine panicked while running the model".into(),
            ))
        })
        .map_err(BatchError::Engine)
}
