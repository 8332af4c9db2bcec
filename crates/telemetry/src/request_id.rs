//! Request ids: the client's `x-request-id` when it sends a sensible one, else a fresh UUID.

/// The header carrying the id, both ways.
pub const HEADER: &str = "x-request-id";

/// The response header (and gRPC response metadata) naming the model version that answered.
pub const VERSION_HEADER: &str = "x-quiver-model-version";

/// What a front end's access layer and the request it wraps share: the request's id, and the
/// version that served it, once one did (for [`VERSION_HEADER`]).
#[derive(Debug)]
pub struct RequestContext {
    id: std::sync::Arc<str>,
    /// The serving version; 0 until one serves (versions are positive).
    served: std::sync::atomic::AtomicU64,
}

impl RequestContext {
    /// The context of the request `id`, served by no version yet.
    pub fn new(id: std::sync::Arc<str>) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            id,
            served: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The version that served the request, if one did.
    pub fn served(&self) -> Option<u64> {
        Some(self.served.load(std::sync::atomic::Ordering::Relaxed)).filter(|&v| v > 0)
    }
}

tokio::task_local! {
    /// The request the current task serves (set by the front ends' access layers).
    static CURRENT: std::sync::Arc<RequestContext>;
}

/// Runs `work` as the request `context`: [`current`] answers its id inside it, and
/// [`note_served`] records the version that answered in it.
pub async fn scope<F: std::future::Future>(
    context: std::sync::Arc<RequestContext>,
    work: F,
) -> F::Output {
    CURRENT.scope(context, work).await
}

/// The id of the request being served, when a front end set one.
pub fn current() -> Option<std::sync::Arc<str>> {
    CURRENT
        .try_with(|context| std::sync::Arc::clone(&context.id))
        .ok()
}

/// Records that `version` serves the current request (nothing outside a front end's scope).
pub fn note_served(version: u64) {
    let _ = CURRENT.try_with(|context| {
        context
            .served
            .store(version, std::sync::atomic::Ordering::Relaxed);
    });
}

/// Longest client-given id kept; longer ones are replaced (they end up in every log line).
const MAX_LEN: usize = 128;

/// The client's id if it is short, visible ASCII; otherwise a new random (v4) UUID.
/// Shared (`Arc`) so that the span, the response header and the task-local take it without a
/// copy each.
pub fn accept_or_generate(given: Option<&[u8]>) -> std::sync::Arc<str> {
    match given {
        Some(id)
            if !id.is_empty() && id.len() <= MAX_LEN && id.iter().all(|b| b.is_ascii_graphic()) =>
        {
            String::from_utf8_lossy(id).into()
        }
        _ => uuid::Uuid::new_v4().to_string().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sensible_ids_and_replaces_others() {
        assert_eq!(&*accept_or_generate(Some(b"abc-123")), "abc-123");
        for bad in [&b""[..], b"has space", b"\x01", &[b'a'; 129]] {
            let id = accept_or_generate(Some(bad));
            assert_eq!(id.len(), 36, "{id}");
        }
        assert_ne!(accept_or_generate(None), accept_or_generate(None));
    }
}
