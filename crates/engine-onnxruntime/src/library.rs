//! Finding ONNX Runtime's shared library. Quiver never links it: the binary builds and runs
//! without it, and looks for it at start-up in these places, in order:
//!
//! 1. the path given with `--onnxruntime-lib` / `QUIVER_ONNXRUNTIME_LIB`;
//! 2. `ORT_DYLIB_PATH` (the variable the `ort` crate and its users know);
//! 3. next to the `quiver` binary (`libonnxruntime.so` or `libonnxruntime.so.1.x.y`);
//! 4. the `onnxruntime` Python package of the `python3` on `PATH`
//!    (`onnxruntime/capi/libonnxruntime.so.*`).
//!
//! A path given explicitly (1, 2) that does not work is an error, not a reason to look
//! elsewhere: the user said which library to use.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the library was found, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The library file.
    pub path: PathBuf,
    /// Which rule found it, for the log.
    pub source: &'static str,
}

/// The library was not found; lists what was tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound {
    /// Every place looked at, in order.
    pub looked: Vec<String>,
}

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ONNX Runtime's library was not found (looked at: {}); fetch it with \
             scripts/fetch-onnxruntime.sh and pass its path with --onnxruntime-lib",
            self.looked.join("; ")
        )
    }
}

/// Looks for the library; `explicit` is `--onnxruntime-lib`.
pub fn find(explicit: Option<&Path>) -> Result<Found, NotFound> {
    if let Some(path) = explicit {
        return Ok(Found {
            path: in_dir(path).unwrap_or_else(|| path.to_owned()),
            source: "--onnxruntime-lib",
        });
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return Ok(Found {
            path: in_dir(&path).unwrap_or(path),
            source: "ORT_DYLIB_PATH",
        });
    }
    let mut looked = vec![
        "--onnxruntime-lib (not set)".to_owned(),
        "ORT_DYLIB_PATH (not set)".to_owned(),
    ];
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned))
    {
        if let Some(path) = in_dir(&dir) {
            return Ok(Found {
                path,
                source: "next to the quiver binary",
            });
        }
        looked.push(dir.display().to_string());
    }
    match python_package_dir() {
        Some(dir) => {
            if let Some(path) = in_dir(&dir.join("capi")) {
                return Ok(Found {
                    path,
                    source: "the onnxruntime Python package",
                });
            }
            looked.push(dir.join("capi").display().to_string());
        }
        None => looked.push("python3's onnxruntime package (not installed)".to_owned()),
    }
    Err(NotFound { looked })
}

/// The library file in `dir`: `libonnxruntime.so`, else the highest `libonnxruntime.so.1.x.y`.
/// `None` when `dir` is not a directory or holds neither.
fn in_dir(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let plain = dir.join(plain_name());
    if plain.is_file() {
        return Some(plain);
    }
    let prefix = format!("{}.", plain_name());
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = name.strip_prefix(&prefix)?;
            let key: Vec<u64> = version
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            Some((key, e.path()))
        })
        .max()
        .map(|(_, path)| path)
}

fn plain_name() -> String {
    format!(
        "{}onnxruntime{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// The directory of the `onnxruntime` package of `python3`, found without importing it
/// (importing would load the library and its dependencies into a throw-away process).
fn python_package_dir() -> Option<PathBuf> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import importlib.util as u; s = u.find_spec('onnxruntime'); \
             print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')",
        ])
        .output()
        .ok()?;
    let dir = String::from_utf8(output.stdout).ok()?;
    let dir = dir.trim();
    (output.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_plain_name_then_the_highest_version() {
        let dir = tempfile::tempdir().unwrap();
        let so = plain_name();
        for v in ["1.9.0", "1.31.1", "1.22.0", "x"] {
            std::fs::write(dir.path().join(format!("{so}.{v}")), b"").unwrap();
        }
        assert_eq!(
            in_dir(dir.path()),
            Some(dir.path().join(format!("{so}.1.31.1")))
        );
        std::fs::write(dir.path().join(&so), b"").unwrap();
        assert_eq!(in_dir(dir.path()), Some(dir.path().join(&so)));
        assert_eq!(in_dir(&dir.path().join("none")), None);
    }

    #[test]
    fn an_explicit_path_wins() {
        let found = find(Some(Path::new("/opt/ort/libonnxruntime.so.1.31.1"))).unwrap();
        assert_eq!(found.path, Path::new("/opt/ort/libonnxruntime.so.1.31.1"));
        assert_eq!(found.source, "--onnxruntime-lib");
    }
}
