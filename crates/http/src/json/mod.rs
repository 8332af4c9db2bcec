//! JSON reading and writing shared by the HTTP front ends.

pub mod number;
pub mod reader;
pub mod tensor;
pub mod writer;
