//! Triton's binary tensor data extension: a JSON header and the raw tensor bytes after it.
//! The first two bytes (little-endian) play `Inference-Header-Content-Length`, so the fuzzer
//! moves the split as freely as a client can.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((len, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let split = usize::from(u16::from_le_bytes(*len)).min(body.len());
    let (header, binary) = body.split_at(split);
    let _ = quiver_http::kserve::codec::decode_infer(header, binary);
});
