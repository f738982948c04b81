//! `ultracloud bench s3`: PUT and GET throughput of any S3 endpoint — lightningstor's gateway
//! or, side by side with the same client, Garage — at given object sizes and concurrency.
//! Every object is pseudo-random bytes: neither store can deduplicate or compress its blocks.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use clap::Args;
use ultracloud_lightningstor::client::s3::{S3Client, S3Key};

use super::bench_api::cell;
use super::bench_iam::Cell;

/// S3 PUT/GET throughput of one endpoint.
#[derive(Debug, Args)]
pub struct S3Bench {
    /// The S3 endpoint, http(s)://host:port (path-style addressing).
    #[arg(long, value_name = "URL")]
    endpoint: String,
    /// An AWS shared-credentials file (its `[default]` profile), e.g. from `ultracloud s3
    /// credentials create --write`; else AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[arg(long, value_name = "FILE")]
    credentials_file: Option<std::path::PathBuf>,
    /// The region requests are signed for (Garage checks it: `garage` by default there).
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// The bucket (created when missing).
    #[arg(long, default_value = "bench")]
    bucket: String,
    /// Object sizes in bytes, one cell each.
    #[arg(long, value_delimiter = ',', default_value = "4096,1048576")]
    sizes: Vec<usize>,
    /// Concurrent clients, one cell each.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    clients: Vec<usize>,
    /// Objects per cell (fewer when `--max-seconds` runs out first).
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Bound on each cell.
    #[arg(long, default_value_t = 30)]
    max_seconds: u64,
    /// Sign each body's SHA-256 instead of sending UNSIGNED-PAYLOAD (costs the client a hash
    /// of every byte).
    #[arg(long)]
    signed_payload: bool,
    /// Instead of the cells: one PUT of an object this many MiB large, streamed from a
    /// generator (the client holds one MiB at a time), then one streamed GET of it — for the
    /// servers' memory bound on huge objects (read their peak RSS, VmHWM, afterwards).
    #[arg(long, value_name = "MIB", default_value_t = 0)]
    stream_mib: u64,
}

/// The `[default]` profile of an AWS shared-credentials file.
fn read_credentials(path: &std::path::Path) -> anyhow::Result<S3Key> {
    let text = ultracloud_runtime::secret_file::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut in_default = false;
    let (mut id, mut secret) = (None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_default = line == "[default]";
        } else if in_default && let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "aws_access_key_id" => id = Some(v.trim().to_owned()),
                "aws_secret_access_key" => secret = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(S3Key { access_key_id, secret_access_key }),
        _ => bail!("{}: no aws_access_key_id and aws_secret_access_key under [default]", path.display()),
    }
}

fn key_of(a: &S3Bench) -> anyhow::Result<S3Key> {
    if let Some(f) = &a.credentials_file {
        return read_credentials(f);
    }
    match (std::env::var("AWS_ACCESS_KEY_ID"), std::env::var("AWS_SECRET_ACCESS_KEY")) {
        (Ok(access_key_id), Ok(secret_access_key)) => Ok(S3Key { access_key_id, secret_access_key }),
        _ => bail!("give --credentials-file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    }
}

/// Object `n` of run `run`: `size` bytes (at least 24) of pseudo-random data — neither
/// compressible (Garage compresses blocks with zstd by default, and a pattern would let it
/// write almost nothing) nor shared between objects or within one (no deduplication).
fn object(run: u64, n: usize, size: usize) -> Bytes {
    // splitmix64: cheap enough that the load tool does not compete with the servers for CPU.
    let mut state = run ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut data = Vec::with_capacity(size.max(24) + 8);
    while data.len() < size.max(24) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        data.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    data.truncate(size.max(24));
    Bytes::from(data)
}

/// GETs `key` and counts its bytes as they arrive, keeping none: a load tool that gathered
/// each body whole would spend more CPU than the servers it measures (they share the cores).
async fn get_counted(s3: &S3Client, bucket: &str, key: &str) -> anyhow::Result<u64> {
    use futures::StreamExt;
    let answer = s3.request(reqwest::Method::GET, bucket, Some(key), &[], Bytes::new()).await?;
    let mut body = answer.bytes_stream();
    let mut got = 0u64;
    while let Some(chunk) = body.next().await {
        got += chunk.context("reading a GET's body")?.len() as u64;
    }
    Ok(got)
}

/// One streamed PUT of `mib` MiB and one streamed GET of it, each with its throughput.
async fn stream_one(s3: &S3Client, bucket: &str, mib: u64) -> anyhow::Result<()> {
    use futures::StreamExt;
    let run = ultracloud_runtime::clock::now_ms();
    let key = format!("stream/{run}");
    let chunks = futures::stream::iter(0..mib)
        .map(move |i| Ok::<_, std::io::Error>(object(run, usize::try_from(i).unwrap_or(usize::MAX), 1 << 20)));
    let started = std::time::Instant::now();
    s3.put_object_stream(bucket, &key, reqwest::Body::wrap_stream(chunks), mib << 20).await.context("the PUT")?;
    let put = started.elapsed();
    println!("put {mib} MiB streamed: {:.1} s, {:.1} MiB/s", put.as_secs_f64(), mib as f64 / put.as_secs_f64());
    let started = std::time::Instant::now();
    let got = get_counted(s3, bucket, &key).await?;
    ensure!(got == mib << 20, "the GET returned {got} bytes, not {}", mib << 20);
    let get = started.elapsed();
    println!("get {mib} MiB streamed: {:.1} s, {:.1} MiB/s", get.as_secs_f64(), mib as f64 / get.as_secs_f64());
    s3.delete_object(bucket, &key).await.context("deleting the object")?;
    Ok(())
}

/// Runs the benchmark and prints a PUT and a GET row per cell.
pub async fn run(a: S3Bench) -> anyhow::Result<()> {
    let mut s3 = S3Client::new(&a.endpoint, key_of(&a)?)?.with_region(&a.region);
    if !a.signed_payload {
        s3 = s3.with_unsigned_payload();
    }
    match s3.create_bucket(&a.bucket).await {
        Ok(()) => {}
        Err(e) if e.code() == "BucketAlreadyOwnedByYou" => {}
        Err(e) => return Err(e).context(format!("creating bucket {}", a.bucket)),
    }
    if a.stream_mib > 0 {
        return stream_one(&s3, &a.bucket, a.stream_mib).await;
    }
    let s3 = Arc::new(s3);
    let deadline = Duration::from_secs(a.max_seconds);
    println!("{}   MiB/S", Cell::header());
    for &size in &a.sizes {
        for &clients in &a.clients {
            let run_id = ultracloud_runtime::clock::now_ms();
            let (s, bucket) = (s3.clone(), a.bucket.clone());
            let (put, written) = cell(clients, a.requests, deadline, move |i| {
                let (s3, bucket) = (s.clone(), bucket.clone());
                async move {
                    let key = format!("bench/{run_id}/{size}/{i}");
                    s3.put_object(&bucket, &key, object(run_id, i, size)).await?;
                    anyhow::Ok(key)
                }
            })
            .await;
            let mib = |c: &Cell| (c.ops * size) as f64 / 1048576.0 / c.elapsed.as_secs_f64();
            println!("{}   {:>7.1}", put.row(&format!("put {size} B"), clients), mib(&put));
            let written = Arc::new(written);
            let (s, bucket, w) = (s3.clone(), a.bucket.clone(), written.clone());
            let (get, _) = cell(clients, written.len(), deadline, move |i| {
                let (s3, bucket, written) = (s.clone(), bucket.clone(), w.clone());
                async move {
                    let got = get_counted(&s3, &bucket, &written[i]).await?;
                    ensure!(got == size.max(24) as u64, "{} is {got} bytes, not {size}", written[i]);
                    anyhow::Ok(())
                }
            })
            .await;
            println!("{}   {:>7.1}", get.row(&format!("get {size} B"), clients), mib(&get));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_default_profile() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("creds");
        let text =
            "[other]\naws_access_key_id = NO\n[default]\naws_access_key_id = UCKEY\naws_secret_access_key = s3cr3t\n";
        ultracloud_runtime::secret_file::write(&f, text).unwrap();
        let k = read_credentials(&f).unwrap();
        assert_eq!((k.access_key_id.as_str(), k.secret_access_key.as_str()), ("UCKEY", "s3cr3t"));
        ultracloud_runtime::secret_file::write(&f, "[other]\naws_access_key_id = x\n").unwrap();
        assert!(read_credentials(&f).unwrap_err().to_string().contains("[default]"));
    }

    #[test]
    fn objects_differ_in_every_64_kib_and_do_not_compress() {
        let (a, b) = (object(1, 0, 256 << 10), object(1, 1, 256 << 10));
        for off in (0..256 << 10).step_by(64 << 10) {
            assert_ne!(a[off..off + (64 << 10)], b[off..off + (64 << 10)]);
        }
        assert_ne!(a[..64 << 10], a[64 << 10..128 << 10], "chunks of one object differ too");
        assert_eq!(object(1, 0, 4).len(), 24);
        assert_eq!(object(1, 0, 1000).len(), 1000);
        // Every byte value about equally often: nothing for a compressor to take.
        let mut counts = [0usize; 256];
        a.iter().for_each(|&x| counts[usize::from(x)] += 1);
        let expected = a.len() / 256;
        assert!(counts.iter().all(|&c| c > expected * 9 / 10 && c < expected * 11 / 10), "{counts:?}");
    }
}
