//! Placeholder until the engine-call benchmark lands.

fn main() {}
