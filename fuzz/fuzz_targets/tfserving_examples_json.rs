//! TF Serving REST `:classify` / `:regress` bodies (tf.Example as JSON).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let _ = quiver_http::tfserving::examples::decode(body);
});
