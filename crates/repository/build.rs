//! Compiles the schemas of the two foreign config formats into descriptor sets that the crate
//! embeds: the text format is parsed at run time against them (prost-reflect), so no generated
//! Rust types are needed. protox is pure Rust: no system `protoc`. The `.proto` files live once
//! for the whole workspace, in its top-level `proto/` folder (quiver-grpc compiles them too).

use std::path::PathBuf;

use prost::Message;

const PROTO_ROOT: &str = "../../proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let schemas = [
        ("inference/model_config.proto", "triton_model_config.bin"),
        (
            "tensorflow_serving/config/model_server_config.proto",
            "tf_serving_model_server_config.bin",
        ),
    ];
    for (file, descriptor_set) in schemas {
        let compiled = protox::compile([file], [PROTO_ROOT])?;
        std::fs::write(out.join(descriptor_set), compiled.encode_to_vec())?;
    }
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    Ok(())
}
