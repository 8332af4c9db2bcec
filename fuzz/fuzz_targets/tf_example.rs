//! TF Serving gRPC `Classify` / `Regress`: serialized tf.Example lists (with or without context).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use quiver_grpc::tensorflow::serving::ClassificationRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = ClassificationRequest::decode(data) {
        let _ = quiver_grpc::examples::examples_of(request.input);
    }
});
