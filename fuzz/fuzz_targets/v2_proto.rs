//! KServe V2 gRPC `ModelInfer` messages into tensors: typed contents and raw_input_contents.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use quiver_grpc::inference::ModelInferRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = ModelInferRequest::decode(data) {
        let _ = quiver_grpc::kserve::decode_inputs(request.inputs, request.raw_input_contents);
    }
});
