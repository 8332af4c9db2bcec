//! Compiles the `.proto` wire contracts with protox (pure Rust: no system `protoc` needed). The
//! files live once for the whole workspace, in its top-level `proto/` folder.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "inference/grpc_service.proto",
        "tensorflow_serving/apis/prediction_service.proto",
        "tensorflow_serving/apis/model_service.proto",
        "quiver/admin.proto",
    ];
    let descriptors = protox::compile(files, ["../../proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=../../proto");
    Ok(())
}
