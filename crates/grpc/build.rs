//! Compiles the `.proto` wire contracts with protox (pure Rust: no system `protoc` needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/inference/grpc_service.proto",
        "proto/tensorflow_serving/apis/prediction_service.proto",
        "proto/tensorflow_serving/apis/model_service.proto",
    ];
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
