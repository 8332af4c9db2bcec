//! Where a traffic policy's sticky key is found in an HTTP request: a header of that name, or
//! (KServe V2) a request parameter of that name.

use axum::http::HeaderMap;
use quiver_core::traffic::StickyKeys;
use serde::Deserialize;

/// The request's headers.
pub struct HeaderKeys<'a>(pub &'a HeaderMap);

impl StickyKeys for HeaderKeys<'_> {
    fn value(&self, key: &str) -> Option<String> {
        header(self.0, key)
    }
}

/// A V2 inference request: its headers, then the `parameters` of its JSON (the body is read
/// for this only when the header is missing and the model's policy is sticky).
pub struct V2Keys<'a> {
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The request's body, when it could be read.
    pub body: Option<&'a [u8]>,
}

impl StickyKeys for V2Keys<'_> {
    fn value(&self, key: &str) -> Option<String> {
        header(self.headers, key).or_else(|| parameter(self.headers, self.body?, key))
    }
}

fn header(headers: &HeaderMap, key: &str) -> Option<String> {
    let value = headers.get(key)?.to_str().ok()?;
    Some(value.to_owned())
}

/// Only the top-level `parameters` of a V2 request; the rest is skipped (serde's recursion
/// limit still guards against deep nesting: such a body yields no key here, and its own error
/// when it is decoded).
#[derive(Deserialize)]
struct Parameters {
    #[serde(default)]
    parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

fn parameter(headers: &HeaderMap, body: &[u8], key: &str) -> Option<String> {
    let json_len = headers
        .get(crate::kserve::HEADER_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(body.len());
    let json = body.get(..json_len)?;
    let peeked: Parameters = serde_json::from_slice(json).ok()?;
    match peeked.parameters?.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Null | serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_wins_over_a_v2_parameter() {
        let mut headers = HeaderMap::new();
        let body = br#"{"parameters": {"x-user-id": "from-body", "n": 7}, "inputs": []}"#;
        let keys = V2Keys {
            headers: &headers,
            body: Some(body),
        };
        assert_eq!(keys.value("x-user-id").as_deref(), Some("from-body"));
        assert_eq!(keys.value("n").as_deref(), Some("7"));
        assert_eq!(keys.value("absent"), None);
        headers.insert("x-user-id", "from-header".parse().unwrap());
        let keys = V2Keys {
            headers: &headers,
            body: Some(body),
        };
        assert_eq!(keys.value("X-User-Id").as_deref(), Some("from-header"));
    }

    #[test]
    fn a_malformed_or_deep_body_has_no_key() {
        let headers = HeaderMap::new();
        let deep = format!(
            "{{\"parameters\": {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        for body in [b"{not json".as_slice(), deep.as_bytes()] {
            let keys = V2Keys {
                headers: &headers,
                body: Some(body),
            };
            assert_eq!(keys.value("k"), None);
        }
    }
}
