//! Per-request deadlines over gRPC: the client's deadline travels as the `grpc-timeout` header
//! (gRPC over HTTP/2: up to 8 digits and a unit, `H M S m u n`). tonic enforces it only when
//! the server sets a timeout of its own, so Quiver reads it itself and hands it to the batcher,
//! which drops the request unrun when it expires. A KServe request may also carry Triton's
//! `parameters["timeout"]` (microseconds).

use std::time::{Duration, Instant};

pub use quiver_core::deadline::{after, earliest};

use tonic::metadata::MetadataMap;

/// The deadline of a request's `grpc-timeout` header, if it has a valid one.
pub fn from_metadata(metadata: &MetadataMap) -> Option<Instant> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    after(parse_timeout(text)?)
}

/// Parses a `grpc-timeout` value, e.g. `100m` (100 ms); `None` if malformed.
fn parse_timeout(text: &str) -> Option<Duration> {
    let split = text.len().checked_sub(1)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(parse_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "100", "123456789m", "10x", "-1m", "1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{bad}");
        }
    }
}
