//! Quiver: serve ONNX models over the TensorFlow Serving and KServe V2 protocols, REST and gRPC.
//!
//! The binary is a thin shell over this library: [`config`] is the command line, [`engines`]
//! sets up tract and ONNX Runtime, [`server`] starts the listeners ([`listen`]: their accept
//! loops and limits), [`inspect`] prints a model's
//! signature, [`validate`] checks a repository without serving it, [`bench`] measures a
//! model's throughput and latency.

pub mod bench;
pub mod config;
pub mod engines;
pub mod inspect;
pub mod listen;
pub mod logging;
pub mod metadata_config;
pub mod server;
pub mod store_config;
pub mod tls;
pub mod validate;
