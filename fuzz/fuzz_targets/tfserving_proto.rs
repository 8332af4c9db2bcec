//! TF Serving gRPC `Predict` messages: every `TensorProto` input into a tensor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use quiver_grpc::tensorflow::serving::PredictRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = PredictRequest::decode(data) {
        for (name, proto) in request.inputs {
            let _ = quiver_grpc::tfserving::from_proto(&name, proto);
        }
    }
});
