//! Reading image files from `file://` and `http(s)://` URLs, hashing as they stream. The
//! controller reads an image once at import (to learn its size, SHA-256 and format); every
//! worker fetches it into its cache and checks the hash before a VM boots from it.
//!
//! A tenant names the URL, and the controller and the workers read it: an [`ImagePolicy`]
//! keeps that from reading the platform's own files (`file://` only inside directories the
//! operator publishes) or reaching into the platform's networks (http(s) only to public
//! addresses, checked on the resolved address the connection then uses, no redirects), and
//! bounds the size.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::model::DiskFormat;

/// The first bytes of a qcow2 file.
pub const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";

/// Where images may come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagePolicy {
    /// Directories `file://` URLs may point into (symlinks resolved first); none: `file://`
    /// is refused. Default: the guest image directory `ultracloud image build-guest` writes.
    pub file_dirs: Vec<PathBuf>,
    /// Whether http(s) URLs may reach internal addresses (loopback, private, link-local,
    /// shared, unique-local, multicast). Off: the platform's own networks are out of reach.
    pub allow_internal_http: bool,
    /// The largest image file read, in bytes.
    pub max_bytes: u64,
}

/// 64 GiB: larger than any image this platform builds, small enough to bound a bad URL.
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 64 << 30;

impl Default for ImagePolicy {
    fn default() -> Self {
        Self {
            file_dirs: vec![ultracloud_doctor::default_cache_dir().join("guest-image")],
            allow_internal_http: false,
            max_bytes: DEFAULT_MAX_IMAGE_BYTES,
        }
    }
}

/// Whether `ip` is inside the platform's or the host's own networks rather than the internet.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240 // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
        }
    }
}

/// What went wrong reading an image.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not one we read.
    #[error("image URL {0:?}: use file:///absolute/path or http(s)://host/path")]
    BadUrl(String),
    /// The policy refuses the URL.
    #[error("{0}")]
    Refused(String),
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
    /// The URL, its host, and the address checked (the connection goes there).
    Http(reqwest::Url, String, SocketAddr),
}

/// Parses a URL's form (no file system or network access).
fn parse(url: &str) -> Result<(), FetchError> {
    if let Some(path) = url.strip_prefix("file://") {
        return if path.starts_with('/') { Ok(()) } else { Err(FetchError::BadUrl(url.to_owned())) };
    }
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
        _ => Err(FetchError::BadUrl(url.to_owned())),
    }
}

/// Resolves `url` under `policy` into what to read.
async fn source(url: &str, policy: &ImagePolicy) -> Result<Source, FetchError> {
    parse(url)?;
    if let Some(path) = url.strip_prefix("file://") {
        let real = tokio::fs::canonicalize(path).await.map_err(|e| FetchError::Io(format!("opening {path}: {e}")))?;
        let inside = policy
            .file_dirs
            .iter()
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .any(|dir| real.starts_with(&dir) && real != dir);
        if !inside {
            return Err(FetchError::Refused(format!(
                "{url}: file:// URLs are read only inside the image directories the operator publishes \
                 (image_policy.file_dirs, --image-dir); this path is outside them"
            )));
        }
        return Ok(Source::File(real));
    }
    let u = reqwest::Url::parse(url).map_err(|_| FetchError::BadUrl(url.to_owned()))?;
    let host = u.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = u.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| FetchError::Io(format!("resolving {host}: {e}")))?
        .collect();
    let Some(first) = addrs.first().copied() else {
        return Err(FetchError::Io(format!("{host} has no address")));
    };
    if !policy.allow_internal_http
        && let Some(a) = addrs.iter().find(|a| is_internal(a.ip()))
    {
        return Err(FetchError::Refused(format!(
            "{url}: {host} is {}, an internal address; images come from public addresses \
             (an operator may allow internal ones: image_policy.allow_internal_http)",
            a.ip()
        )));
    }
    Ok(Source::Http(u, host, first))
}

/// Checks a URL's form without reading it.
pub fn check_url(url: &str) -> Result<(), FetchError> {
    parse(url)
}

/// Streams `url` into `sink` (when given), hashing it.
async fn stream(
    url: &str,
    policy: &ImagePolicy,
    mut sink: Option<&mut tokio::fs::File>,
) -> Result<Digested, FetchError> {
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut head = Vec::with_capacity(4);
    let max = policy.max_bytes;
    let mut take = |chunk: &[u8], hash: &mut Sha256, size: &mut u64| {
        hash.update(chunk);
        *size += chunk.len() as u64;
        let want = 4usize.saturating_sub(head.len());
        head.extend_from_slice(&chunk[..want.min(chunk.len())]);
        if *size > max {
            return Err(FetchError::Refused(format!("{url} is larger than {max} bytes (image_policy.max_bytes)")));
        }
        Ok(())
    };
    match source(url, policy).await? {
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
                take(&buf[..n], &mut hash, &mut size)?;
                if let Some(f) = sink.as_mut() {
                    f.write_all(&buf[..n]).await.map_err(|e| FetchError::Io(format!("storing {url}: {e}")))?;
                }
            }
        }
        Source::Http(u, host, addr) => {
            // Pinned to the address checked (no second lookup to rebind), and no redirects
            // (each would need the same check).
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .resolve(&host, addr)
                .connect_timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| FetchError::Io(format!("http client: {e}")))?;
            let resp = http.get(u.clone()).send().await.map_err(|e| FetchError::Io(format!("fetching {u}: {e}")))?;
            if !resp.status().is_success() {
                return Err(FetchError::Io(format!("fetching {u}: the server answered {}", resp.status())));
            }
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| FetchError::Io(format!("fetching {u}: {e}")))?;
                take(&chunk, &mut hash, &mut size)?;
                if let Some(f) = sink.as_mut() {
                    f.write_all(&chunk).await.map_err(|e| FetchError::Io(format!("storing {url}: {e}")))?;
                }
            }
        }
    }
    let format = if head.as_slice() == QCOW2_MAGIC { DiskFormat::Qcow2 } else { DiskFormat::Raw };
    Ok(Digested { sha256: hex::encode(hash.finalize()), size, format })
}

/// Reads `url` to learn its hash, size and format (nothing is stored).
pub async fn digest(url: &str, policy: &ImagePolicy) -> Result<Digested, FetchError> {
    stream(url, policy, None).await
}

/// Fetches `url` into `dest` (through a temporary file renamed into place), checking that it
/// hashes to `sha256`. A fetch that fails leaves nothing at `dest`.
pub async fn fetch_to(url: &str, sha256: &str, dest: &Path, policy: &ImagePolicy) -> Result<(), FetchError> {
    let tmp = dest.with_extension("partial");
    let io = |what: &str, e: std::io::Error| FetchError::Io(format!("{what} {}: {e}", tmp.display()));
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(|e| io("creating the directory of", e))?;
    }
    let mut file = tokio::fs::File::create(&tmp).await.map_err(|e| io("creating", e))?;
    let got = stream(url, policy, Some(&mut file)).await;
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

    fn inside(dir: &Path) -> ImagePolicy {
        ImagePolicy { file_dirs: vec![dir.to_path_buf()], ..ImagePolicy::default() }
    }

    #[tokio::test]
    async fn digests_and_fetches_a_file_url() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("disk.qcow2");
        std::fs::write(&src, b"QFI\xfbrest of the image").unwrap();
        let url = format!("file://{}", src.display());
        let policy = inside(dir.path());
        let d = digest(&url, &policy).await.unwrap();
        assert_eq!(d.format, DiskFormat::Qcow2);
        assert_eq!(d.size, 21);
        let dest = dir.path().join("cache/abc");
        fetch_to(&url, &d.sha256, &dest, &policy).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(&src).unwrap());
        let wrong = "0".repeat(64);
        let dest2 = dir.path().join("cache/def");
        assert!(matches!(fetch_to(&url, &wrong, &dest2, &policy).await, Err(FetchError::Checksum { .. })));
        assert!(!dest2.exists() && !dest2.with_extension("partial").exists(), "nothing left behind");
        let small = ImagePolicy { max_bytes: 20, ..policy };
        let e = digest(&url, &small).await.unwrap_err();
        assert!(matches!(e, FetchError::Refused(ref m) if m.contains("larger than 20 bytes")), "{e}");
    }

    #[tokio::test]
    async fn file_urls_stay_inside_the_published_directories() {
        let dir = tempfile::tempdir().unwrap();
        let published = dir.path().join("images");
        std::fs::create_dir(&published).unwrap();
        let secret = dir.path().join("platform-api-key");
        std::fs::write(&secret, "ucak_x_y").unwrap();
        std::os::unix::fs::symlink(&secret, published.join("link")).unwrap();
        let policy = inside(&published);
        for url in [
            format!("file://{}", secret.display()),
            format!("file://{}/../platform-api-key", published.display()),
            format!("file://{}/link", published.display()),
            "file:///etc/passwd".to_owned(),
        ] {
            let e = digest(&url, &policy).await.unwrap_err();
            assert!(matches!(e, FetchError::Refused(_)), "{url}: {e}");
        }
        let none = ImagePolicy { file_dirs: vec![], ..ImagePolicy::default() };
        std::fs::write(published.join("ok"), b"x").unwrap();
        let ok = format!("file://{}/ok", published.display());
        assert!(matches!(digest(&ok, &none).await, Err(FetchError::Refused(_))), "no directories: no file://");
        assert!(digest(&ok, &policy).await.is_ok());
    }

    #[tokio::test]
    async fn http_urls_to_internal_addresses_are_refused() {
        let policy = ImagePolicy::default();
        for url in [
            "http://127.0.0.1:2479/v1/kv",
            "http://10.231.0.11:2479/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:8480/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:8480/",
            "https://192.168.1.1/x",
            "http://0.0.0.0/",
        ] {
            let e = digest(url, &policy).await.unwrap_err();
            assert!(matches!(e, FetchError::Refused(ref m) if m.contains("internal address")), "{url}: {e}");
        }
        assert!(!is_internal("93.184.216.34".parse().unwrap()) && !is_internal("2606:4700::1".parse().unwrap()));
        assert!(is_internal("100.64.0.1".parse().unwrap()) && is_internal("fd00::1".parse().unwrap()));
    }

    #[tokio::test]
    async fn refuses_other_urls() {
        let policy = ImagePolicy::default();
        assert!(matches!(digest("ftp://x/y", &policy).await, Err(FetchError::BadUrl(_))));
        assert!(matches!(digest("file://relative", &policy).await, Err(FetchError::BadUrl(_))));
        assert!(matches!(digest("file:///does/not/exist", &policy).await, Err(FetchError::Io(_))));
        assert!(valid_sha256(&"a".repeat(64)) && !valid_sha256("abc"));
    }
}
