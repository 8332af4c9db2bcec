//! Running one batch on an engine session: the requests' inputs joined (padded where the
//! policy pads), one engine call, and each request answered with exactly its own rows (cut back
//! to its own lengths) or the error that stopped the batch.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use quiver_engine_api::{EngineError, Session, Tensor};

use crate::queue::{Answer, BatchError, Job, Reply};
use crate::state::Entry;

/// Runs a batch and answers each request with its own rows.
pub(crate) fn run_batch(
    label: &str,
    session: &dyn Session,
    pad: &[Option<i64>],
    batch: Vec<Entry<Job>>,
) {
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

pub(crate) fn run_guarded(
    session: &dyn Session,
    inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>, BatchError> {
    catch_unwind(AssertUnwindSafe(|| session.run(inputs)))
        .unwrap_or_else(|_| {
            Err(EngineError::Runtime(
                "the engine panicked while running the model".into(),
            ))
        })
        .map_err(BatchError::Engine)
}
