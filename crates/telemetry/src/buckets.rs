//! Histogram bucket bounds, defined once for every histogram of a kind so that dashboards can
//! aggregate across metrics.

/// Durations, in seconds: 100 µs (a tiny model's compute) to 10 s (a large model on a busy host).
pub const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Model load durations, in seconds: loads take far longer than requests.
pub const LOAD_SECONDS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Body sizes, in bytes: 64 B to 64 MiB in steps of 4×.
pub const BYTES: &[f64] = &[
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// Requests per engine call.
pub const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Differences between a shadow's outputs and the primary's: 1e-7 to 1, in decades.
pub const DIFFERENCE: &[f64] = &[1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];
