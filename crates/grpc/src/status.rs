//! Core errors as gRPC statuses, and the repair of tonic's own statuses for client mistakes.

use quiver_core::{Error, ErrorKind};
use tonic::{Code, Status};

/// The gRPC code for each kind of error; exhaustive, so a new kind cannot be forgotten.
pub fn code_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidInput | ErrorKind::UnsupportedMediaType => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::NotReady | ErrorKind::Unavailable => Code::Unavailable,
        // gRPC's code for a message over the limit, as tonic itself answers it.
        ErrorKind::Overloaded | ErrorKind::TooLarge => Code::ResourceExhausted,
        ErrorKind::Timeout | ErrorKind::RequestTimeout => Code::DeadlineExceeded,
        // gRPC's code for a method a service does not have.
        ErrorKind::Unimplemented | ErrorKind::MethodNotAllowed => Code::Unimplemented,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Internal => Code::Internal,
    }
}

/// An error as a status; one refused for load (a full queue, `--max-inflight-requests`) says
/// when to come back in `retry-after` metadata, as the HTTP answer's header does.
pub fn status(error: Error) -> Status {
    let mut status = Status::new(code_of(error.kind), error.message);
    if error.kind == ErrorKind::Overloaded {
        status
            .metadata_mut()
            .insert("retry-after", tonic::metadata::MetadataValue::from(1u32));
    }
    status
}

/// An [`ErrorKind::InvalidInput`] error: the request is the client's mistake.
pub fn invalid(message: impl Into<String>) -> Error {
    Error::invalid(message)
}

/// tonic answers an over-limit message with OUT_OF_RANGE and an undecodable one with INTERNAL;
/// both are the client's doing. Rewrites such trailers-only responses to RESOURCE_EXHAUSTED
/// (naming the flag that sets the limit) and INVALID_ARGUMENT.
pub fn repair<B>(
    mut response: tonic::codegen::http::Response<B>,
    limit: usize,
) -> tonic::codegen::http::Response<B> {
    let headers = response.headers_mut();
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    let message = percent_decode(
        headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
    );
    let replacement = match code.map(Code::from_i32) {
        Some(Code::OutOfRange) if message.contains("message length too large") => Some((
            Code::ResourceExhausted,
            format!(
                "the message is larger than the server's limit of {limit} bytes; raise it with --grpc-max-message-bytes"
            ),
        )),
        Some(Code::Internal) if message.contains("decode") => Some((
            Code::InvalidArgument,
            format!("malformed protobuf message: {message}"),
        )),
        _ => None,
    };
    if let Some((code, message)) = replacement {
        headers.insert(
            "grpc-status",
            tonic::codegen::http::HeaderValue::from(code as i32),
        );
        if let Ok(value) = tonic::codegen::http::HeaderValue::from_str(&percent_encode(&message)) {
            headers.insert("grpc-message", value);
        }
    }
    response
}

/// gRPC's percent-encoding of `grpc-message`: bytes outside printable ASCII, and `%`.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(message: &str) -> String {
    let bytes = message.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = message.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_coding_round_trips() {
        let text = "100% sure: ünïcode\nline";
        assert_eq!(percent_decode(&percent_encode(text)), text);
        assert_eq!(percent_encode("a b%"), "a b%25");
    }

    #[test]
    fn repairs_tonic_statuses() {
        let response = |code: i32, message: &str| {
            tonic::codegen::http::Response::builder()
                .header("grpc-status", code)
                .header("grpc-message", message)
                .body(())
                .unwrap()
        };
        let r = repair(
            response(
                11,
                "Error,%20decoded%20message%20length%20too%20large: found 9 bytes",
            ),
            8,
        );
        assert_eq!(r.headers()["grpc-status"], "8");
        assert!(
            r.headers()["grpc-message"]
                .to_str()
                .unwrap()
                .contains("--grpc-max-message-bytes")
        );
        let r = repair(
            response(13, "failed to decode Protobuf message: invalid wire type"),
            8,
        );
        assert_eq!(r.headers()["grpc-status"], "3");
        let r = repair(response(5, "model 'x' not found"), 8);
        assert_eq!(r.headers()["grpc-status"], "5");
    }
}
