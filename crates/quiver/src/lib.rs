//! Quiver: serve ONNX models over the TensorFlow Serving REST API (and, as they land, the
//! KServe V2 and gRPC protocols).
//!
//! The binary is a thin shell over this library: [`config`] is the command line, [`server`]
//! starts the listeners, [`inspect`] prints a model's signature.

pub mod config;
pub mod inspect;
pub mod server;
