//! Compiles the schemas of the two foreign config formats into descriptor sets that the crate
//! embeds: the text format is parsed at run time against them (prost-reflect), so no generated
//! Rust types are needed. protox is pure Rust: no system `protoc`.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Triton's full ModelConfig lives in this crate: the grpc crate's copy is the subset its
    // responses need, and a missing field would reject valid config.pbtxt files.
    let triton = protox::compile(["inference/model_config.proto"], ["proto"])?;
    std::fs::write(out.join("triton_model_config.bin"), triton.encode_to_vec())?;
    // TF Serving's config protos sit with its other protos in the grpc crate.
    let tf_serving = protox::compile(
        ["tensorflow_serving/config/model_server_config.proto"],
        ["../grpc/proto"],
    )?;
    std::fs::write(
        out.join("tf_serving_model_server_config.bin"),
        tf_serving.encode_to_vec(),
    )?;
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=../grpc/proto/tensorflow_serving/config");
    println!("cargo:rerun-if-changed=../grpc/proto/tensorflow_serving/sources");
    Ok(())
}
