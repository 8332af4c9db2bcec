//! Runs a session on dedicated OS threads, never on the async runtime's workers.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use quiver_engine_api::{EngineError, Session, Tensor};
use tokio::sync::oneshot;

use crate::{Error, ErrorKind};

type Reply = oneshot::Sender<Result<Vec<Tensor>, EngineError>>;

struct Job {
    inputs: Vec<Tensor>,
    reply: Reply,
    span: tracing::Span,
}

/// A pool of threads running one session. Dropping it lets the threads finish the queued jobs
/// and exit, which drops the session.
pub(crate) struct Executor {
    jobs: Sender<Job>,
}

impl Executor {
    /// Starts `threads` workers for `session`, with room for `queue` waiting jobs.
    pub(crate) fn start(
        label: &str,
        session: Arc<dyn Session>,
        threads: usize,
        queue: usize,
    ) -> std::io::Result<Self> {
        let (jobs, receiver) = crossbeam_channel::bounded(queue);
        for i in 0..threads.max(1) {
            let receiver: Receiver<Job> = receiver.clone();
            let session = Arc::clone(&session);
            thread::Builder::new()
                .name(format!("quiver-{label}-{i}"))
                .spawn(move || work(&*session, &receiver))?;
        }
        Ok(Self { jobs })
    }

    /// Runs `inputs` on a worker thread and waits for the outputs without blocking the runtime.
    pub(crate) async fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, Error> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            inputs,
            reply,
            span: tracing::Span::current(),
        };
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Error::new(
                ErrorKind::Overloaded,
                "too many requests are waiting for this model; try again later",
            ),
            TrySendError::Disconnected(_) => {
                Error::new(ErrorKind::Unavailable, "the model is being unloaded")
            }
        })?;
        answer
            .await
            .map_err(|_| Error::internal("the inference thread stopped without answering"))?
            .map_err(engine_error)
    }
}

fn work(session: &dyn Session, jobs: &Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        if job.reply.is_closed() {
            continue; // the client went away; don't compute for nobody
        }
        let _entered = job.span.enter();
        let inputs = job.inputs;
        let result = catch_unwind(AssertUnwindSafe(|| session.run(inputs))).unwrap_or_else(|_| {
            Err(EngineError::Runtime(
                "the engine panicked while running the model".into(),
            ))
        });
        if let Err(e) = &result {
            tracing::warn!(error = %e, "inference failed");
        }
        let _ = job.reply.send(result);
    }
}

fn engine_error(e: EngineError) -> Error {
    match e {
        EngineError::InvalidInput(m) => Error::invalid(m),
        EngineError::Unsupported(m) => Error::invalid(format!("unsupported by this engine: {m}")),
        EngineError::Load(_) | EngineError::Runtime(_) => Error::internal(e.to_string()),
    }
}
