//! KServe V2 / Open Inference Protocol JSON request bodies (`POST …/infer`, no binary part).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let _ = quiver_http::kserve::codec::decode_infer(body, &[]);
});
