//! Reading image files from `file://` and `http://` URLs, hashing as they stream. The
//! controller reads an image once at import (to learn its size, SHA-256 and format); every
//! worker fetches it into its cache and checks the hash before a VM boots from it.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::model::DiskFormat;

/// The first bytes of a qcow2 file.
pub const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";

/// What went wrong reading an image.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not one we read.
    #[error("image URL {0:?}: use file:///absolute/path or http://host/path")]
    BadUrl(String),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(String),
    /// The content does not hash to what was expected.
    #[error("{url}: SHA-256 is {actual}, expected {expected}")]
    Checksum {
        /// The URL.
        url: String,
        /// Expected hash.
        expected: String,
        /// Actual hash.
        actual: String,
    },
}

/// What streaming a URL learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digested {
    /// Hex SHA-256.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// The format the first bytes say.
    pub format: DiskFormat,
}

enum Source {
    File(PathBuf),
    Http(String),
}

fn source(url: &str) -> Result<Source, FetchError> {
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(FetchError::BadUrl(url.to_owned()));
        }
        return Ok(Source::File(PathBuf::from(path)));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(Source::Http(url.to_owned()));
    }
    Err(FetchError::BadUrl(url.to_owned()))
}

/// Checks a URL's form without reading it.
pub fn check_url(url: &str) -> Result<(), FetchError> {
    source(url).map(|_| ())
}

/// Streams `url` into `sink` (when given), hashing it.
async fn stream(url: &str, mut sink: Option<&mut tokio::fs::File>) -> Result<Digested, FetchError> {
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut head = Vec::with_capacity(4);
    let mut take = |chunk: &[u8], hash: &mut Sha256, size: &mut u64| {
        hash.update(chunk);
        *size += chunk.len() as u64;
        let want = 4usize.saturating_sub(head.len());
        head.extend_from_slice(&chunk[..want.min(chunk.len())]);
    };
    match source(url)? {
        Source::File(path) => {
            let mut f = tokio::fs::File::open(&path)
                .await
                .map_err(|e| FetchError::Io(format!("opening {}: {e}", path.display())))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n =
                    f.read(&mut buf).await.map_err(|e| FetchError::Io(format!("reading {}: {e}", path.display())))?;
                if n == 0 {
                    break;
                }
                take(&buf[..n], &mut hash, &mut size);
                if let Some(f) = sink.as_mut() {
                    f.write_all(&buf[..n]).await.map_err(|e| FetchError::Io(format!("storing {url}: {e}")))?;
                }
            }
        }
        Source::Http(u) => {
            let resp = reqwest::get(&u).await.map_err(|e| FetchError::Io(format!("fetching {u}: {e}")))?;
            if !resp.status().is_success() {
                return Err(FetchError::Io(format!("fetching {u}: the server answered {}", resp.status())));
            }
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| FetchError::Io(format!("fetching {u}: {e}")))?;
                take(&chunk, &mut hash, &mut size);
                if let Some(f) = sink.as_mut() {
                    f.write_all(&chunk).await.map_err(|e| FetchError::Io(format!("storing {url}: {e}")))?;
                }
            }
        }
    }
    let format = if head.as_slice() == QCOW2_MAGIC { DiskFormat::Qcow2 } else { DiskFormat::Raw };
    Ok(Digested { sha256: hex(&hash.finalize()), size, format })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads `url` to learn its hash, size and format (nothing is stored).
pub async fn digest(url: &str) -> Result<Digested, FetchError> {
    stream(url, None).await
}

/// Fetches `url` into `dest` (through a temporary file renamed into place), checking that it
/// hashes to `sha256`. A fetch that fails leaves nothing at `dest`.
pub async fn fetch_to(url: &str, sha256: &str, dest: &Path) -> Result<(), FetchError> {
    let tmp = dest.with_extension("partial");
    let io = |what: &str, e: std::io::Error| FetchError::Io(format!("{what} {}: {e}", tmp.display()));
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(|e| io("creating the directory of", e))?;
    }
    let mut file = tokio::fs::File::create(&tmp).await.map_err(|e| io("creating", e))?;
    let got = stream(url, Some(&mut file)).await;
    let got = match got {
        Ok(g) => g,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    file.sync_all().await.map_err(|e| io("syncing", e))?;
    drop(file);
    if !got.sha256.eq_ignore_ascii_case(sha256) {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(FetchError::Checksum { url: url.to_owned(), expected: sha256.to_owned(), actual: got.sha256 });
    }
    tokio::fs::rename(&tmp, dest).await.map_err(|e| io("renaming", e))
}

/// Whether `s` is a hex SHA-256.
pub fn valid_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn digests_and_fetches_a_file_url() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("disk.qcow2");
        std::fs::write(&src, b"QFI\xfbrest of the image").unwrap();
        let url = format!("file://{}", src.display());
        let d = digest(&url).await.unwrap();
        assert_eq!(d.format, DiskFormat::Qcow2);
        assert_eq!(d.size, 21);
        let dest = dir.path().join("cache/abc");
        fetch_to(&url, &d.sha256, &dest).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(&src).unwrap());
        let wrong = "0".repeat(64);
        let dest2 = dir.path().join("cache/def");
        assert!(matches!(fetch_to(&url, &wrong, &dest2).await, Err(FetchError::Checksum { .. })));
        assert!(!dest2.exists() && !dest2.with_extension("partial").exists(), "nothing left behind");
    }

    #[tokio::test]
    async fn refuses_other_urls() {
        assert!(matches!(digest("ftp://x/y").await, Err(FetchError::BadUrl(_))));
        assert!(matches!(digest("file://relative").await, Err(FetchError::BadUrl(_))));
        assert!(matches!(digest("file:///does/not/exist").await, Err(FetchError::Io(_))));
        assert!(valid_sha256(&"a".repeat(64)) && !valid_sha256("abc"));
    }
}
