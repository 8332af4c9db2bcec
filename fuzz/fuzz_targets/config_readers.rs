//! The repository's configuration readers: `config.toml`, Triton's `config.pbtxt` and its JSON
//! form, and TF Serving's `--model_config_file`. The first byte picks the reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 4 {
        0 => drop(quiver_repository::parse_config(text)),
        1 => drop(quiver_repository::parse_triton_config(text)),
        2 => drop(quiver_repository::parse_triton_json(text)),
        _ => drop(quiver_repository::parse_model_config_file(text)),
    }
});
