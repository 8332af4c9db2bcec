//! Request ids: the client's `x-request-id` when it sends a sensible one, else a fresh UUID.

/// The header carrying the id, both ways.
pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    /// The id of the request the current task serves (set by the front ends' access layers).
    static CURRENT: std::sync::Arc<str>;
}

/// Runs `work` as the request `id`: [`current`] answers `id` inside it.
pub async fn scope<F: std::future::Future>(id: std::sync::Arc<str>, work: F) -> F::Output {
    CURRENT.scope(id, work).await
}

/// The id of the request being served, when a front end set one.
pub fn current() -> Option<std::sync::Arc<str>> {
    CURRENT.try_with(std::sync::Arc::clone).ok()
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
