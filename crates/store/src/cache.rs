//! The local cache of a store's versions: what each cached version was downloaded from (its
//! manifest, a hidden file the repository scan skips), whether it still matches the listing,
//! putting a finished download in place, and removing what the store no longer holds or the
//! size bound no longer has room for.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::listing::RemoteFile;

/// A cached version's manifest, inside its directory.
pub(crate) const VERSION_MANIFEST: &str = ".quiver-download.json";
/// The manifest of a model's files beside its versions, in the model's directory.
pub(crate) const MODEL_MANIFEST: &str = ".quiver-model-files.json";
/// Prefix of a download in progress (hidden: the repository scan skips it).
pub(crate) const PARTIAL_PREFIX: &str = ".download-";
/// Prefix of a replaced version on its way out.
pub(crate) const OLD_PREFIX: &str = ".replaced-";

/// What a cached directory was downloaded from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// The objects, as the listing saw them when they were downloaded.
    pub(crate) files: Vec<RemoteFile>,
    /// Seconds since the epoch when a sync last wanted it: the cache's LRU order.
    #[serde(default)]
    pub(crate) last_used: u64,
}

impl Manifest {
    pub(crate) fn read(path: &Path) -> Option<Manifest> {
        serde_json::from_slice(&fs::read(path).ok()?).ok()
    }

    pub(crate) fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        fs::write(
            &tmp,
            serde_json::to_vec(self).map_err(std::io::Error::other)?,
        )?;
        fs::rename(tmp, path)
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Whether the directory `dir` holds exactly `files` as listed now: the same objects (path,
    /// size, ETag) as the manifest says were downloaded, each still there at its size.
    pub(crate) fn matches(&self, dir: &Path, files: &[RemoteFile]) -> bool {
        self.files == files
            && files.iter().all(|f| {
                fs::metadata(dir.join(&f.path)).is_ok_and(|m| m.is_file() && m.len() == f.size)
            })
    }
}

/// Now, in seconds since the epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Puts the finished download `partial` in place as `dest`; a version already there is moved
/// aside first and removed after, so `dest` is always whole.
pub(crate) fn install(partial: &Path, dest: &Path) -> std::io::Result<()> {
    if dest.exists() {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let aside = dest.with_file_name(format!("{OLD_PREFIX}{name}-{}", fastrand::u64(..)));
        fs::rename(dest, &aside)?;
        fs::rename(partial, dest)?;
        let _ = fs::remove_dir_all(aside);
        Ok(())
    } else {
        fs::rename(partial, dest)
    }
}

/// The version directories (named by a positive integer) in a model's cache directory.
pub(crate) fn cached_versions(model_dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = fs::read_dir(model_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version: u64 = name.parse().ok().filter(|&v| v > 0)?;
            e.path().is_dir().then(|| (version, e.path()))
        })
        .collect()
}

/// Removes what an interrupted download or replacement left in a model's cache directory.
pub(crate) fn remove_leftovers(model_dir: &Path) {
    let Ok(entries) = fs::read_dir(model_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PARTIAL_PREFIX) || name.starts_with(OLD_PREFIX) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// A cached version the size bound may remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) dir: PathBuf,
    pub(crate) bytes: u64,
    pub(crate) last_used: u64,
}

/// Which of `unused` to remove so that `total` bytes fit in `max`: least recently used first.
pub(crate) fn victims(total: u64, max: u64, mut unused: Vec<Candidate>) -> Vec<Candidate> {
    unused.sort_by(|a, b| (a.last_used, &a.dir).cmp(&(b.last_used, &b.dir)));
    let mut left = total;
    unused
        .into_iter()
        .take_while(|c| {
            let over = left > max;
            if over {
                left = left.saturating_sub(c.bytes);
            }
            over
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(name: &str, bytes: u64, last_used: u64) -> Candidate {
        Candidate {
            dir: name.into(),
            bytes,
            last_used,
        }
    }

    #[test]
    fn least_recently_used_go_first_until_it_fits() {
        let unused = vec![
            candidate("a/1", 40, 30),
            candidate("b/1", 40, 10),
            candidate("c/1", 40, 20),
        ];
        assert!(victims(100, 100, unused.clone()).is_empty());
        let gone = victims(130, 100, unused.clone());
        assert_eq!(gone, [candidate("b/1", 40, 10)]);
        let gone = victims(150, 100, unused.clone());
        assert_eq!(gone, [candidate("b/1", 40, 10), candidate("c/1", 40, 20)]);
        // Not enough unused to fit: all of it goes, the rest stays over the bound.
        assert_eq!(victims(1000, 100, unused).len(), 3);
    }

    #[test]
    fn a_manifest_matches_only_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![RemoteFile {
            path: "model.onnx".into(),
            size: 3,
            etag: Some("\"e\"".into()),
        }];
        let manifest = Manifest {
            files: files.clone(),
            last_used: 1,
        };
        assert!(!manifest.matches(dir.path(), &files));
        fs::write(dir.path().join("model.onnx"), b"ab").unwrap();
        assert!(!manifest.matches(dir.path(), &files), "truncated");
        fs::write(dir.path().join("model.onnx"), b"abc").unwrap();
        assert!(manifest.matches(dir.path(), &files));
        let mut changed = files.clone();
        changed[0].etag = Some("\"f\"".into());
        assert!(!manifest.matches(dir.path(), &changed), "new ETag");

        let path = dir.path().join(VERSION_MANIFEST);
        manifest.write(&path).unwrap();
        assert_eq!(Manifest::read(&path), Some(manifest));
    }

    #[test]
    fn install_replaces_whole() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("1");
        for content in ["old", "new"] {
            let partial = dir.path().join(format!("{PARTIAL_PREFIX}1"));
            fs::create_dir(&partial).unwrap();
            fs::write(partial.join("model.onnx"), content).unwrap();
            install(&partial, &dest).unwrap();
            assert_eq!(
                fs::read_to_string(dest.join("model.onnx")).unwrap(),
                content
            );
        }
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }
}
