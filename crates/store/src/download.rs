//! Downloading files, each streamed to disk and checked against the listing (its size, and the
//! MD5 an S3 ETag carries), a bounded number at once.

use std::path::PathBuf;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::listing::RemoteFile;

/// How often a file still downloading logs its progress.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// What every download of one batch shares.
pub(crate) struct Context {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) shown: String,
    pub(crate) limit: Arc<Semaphore>,
    pub(crate) check_md5: bool,
}

/// One file to download.
pub(crate) struct Job {
    pub(crate) key: Path,
    pub(crate) dest: PathBuf,
    pub(crate) file: RemoteFile,
}

/// Downloads every job; the first failure stops the rest.
pub(crate) async fn all(context: Context, jobs: Vec<Job>) -> Result<(), String> {
    let context = Arc::new(context);
    futures::stream::iter(jobs)
        .map(|job| one(Arc::clone(&context), job))
        .buffer_unordered(context.limit.available_permits().max(1))
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
}

async fn one(context: Arc<Context>, job: Job) -> Result<(), String> {
    let _permit = context
        .limit
        .acquire()
        .await
        .map_err(|_| "the download pool has closed".to_owned())?;
    let name = &job.file.path;
    let io = |e: std::io::Error| format!("{name}: writing {}: {e}", job.dest.display());
    if let Some(parent) = job.dest.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
    }
    let mut stream = context
        .store
        .get(&job.key)
        .await
        .map_err(|e| format!("{name}: {e}"))?
        .into_stream();
    let mut out = tokio::fs::File::create(&job.dest).await.map_err(io)?;
    let expected_md5 = context
        .check_md5
        .then(|| job.file.etag.as_deref().and_then(md5_of_etag))
        .flatten();
    let mut md5 = expected_md5.is_some().then(Md5::new);
    let mut written: u64 = 0;
    let mut reported = std::time::Instant::now();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("{name}: {e}"))?;
        written += chunk.len() as u64;
        if written > job.file.size {
            return Err(format!(
                "{name}: more than the {} bytes listed (changed while downloading?)",
                job.file.size
            ));
        }
        if let Some(md5) = md5.as_mut() {
            md5.update(&chunk);
        }
        out.write_all(&chunk).await.map_err(io)?;
        quiver_telemetry::store::record_bytes(&context.shown, chunk.len() as u64);
        // A large file says how far it has come, every few seconds.
        if reported.elapsed() >= PROGRESS_EVERY {
            reported = std::time::Instant::now();
            tracing::info!(store = %context.shown, file = %job.key, bytes = written,
                of = job.file.size, "downloading");
        }
    }
    out.flush().await.map_err(io)?;
    if written != job.file.size {
        return Err(format!(
            "{name}: {written} bytes arrived, {} listed",
            job.file.size
        ));
    }
    if let (Some(md5), Some(expected)) = (md5, expected_md5) {
        let got: String = md5.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if got != expected {
            return Err(format!(
                "{name}: checksum mismatch (MD5 {got}, the store's ETag says {expected})"
            ));
        }
    }
    Ok(())
}

/// The MD5 an ETag is, when it is one (an S3 single-part upload: 32 hex digits; a multipart
/// upload's ETag has a `-N` suffix and is not the object's MD5).
fn md5_of_etag(etag: &str) -> Option<String> {
    let tag = etag.trim_start_matches("W/").trim_matches('"');
    (tag.len() == 32 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| tag.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_part_etags_are_checksums() {
        assert_eq!(
            md5_of_etag("\"9E107D9D372BB6826BD81D3542A419D6\"").as_deref(),
            Some("9e107d9d372bb6826bd81d3542a419d6")
        );
        assert_eq!(md5_of_etag("\"9e107d9d372bb6826bd81d3542a419d6-3\""), None);
        assert_eq!(md5_of_etag("\"0x8D9\""), None);
    }

    #[tokio::test]
    async fn a_download_is_checked_against_the_listing() {
        use object_store::memory::InMemory;
        let store = Arc::new(InMemory::new());
        let key = Path::from("m/1/model.onnx");
        store.put(&key, b"hello".to_vec().into()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let context = || Context {
            store: Arc::clone(&store) as Arc<dyn ObjectStore>,
            shown: "memory".into(),
            limit: Arc::new(Semaphore::new(2)),
            check_md5: true,
        };
        let job = |size, etag: &str| Job {
            key: key.clone(),
            dest: dir.path().join("model.onnx"),
            file: RemoteFile {
                path: "model.onnx".into(),
                size,
                etag: Some(etag.into()),
            },
        };
        let md5 = "\"5d41402abc4b2a76b9719d911017c592\"";
        all(context(), vec![job(5, md5)]).await.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("model.onnx")).unwrap(),
            b"hello"
        );
        let e = all(context(), vec![job(4, md5)]).await.unwrap_err();
        assert!(e.contains("more than the 4 bytes"), "{e}");
        let e = all(context(), vec![job(6, md5)]).await.unwrap_err();
        assert!(e.contains("5 bytes arrived, 6 listed"), "{e}");
        let e = all(
            context(),
            vec![job(5, "\"00000000000000000000000000000000\"")],
        )
        .await
        .unwrap_err();
        assert!(e.contains("checksum mismatch"), "{e}");
    }
}
