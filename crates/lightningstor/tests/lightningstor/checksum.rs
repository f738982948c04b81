//! `x-amz-checksum-*` with the AWS CLI (whose botocore sends a CRC32 by default): computed
//! while the body streams in, refused when it differs, returned on PUT and on GET/HEAD with
//! `--checksum-mode ENABLED`.

use base64::Engine;
use sha2::Digest;

use crate::gateway::{World, aws_json, aws_missing, aws_refused, write};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksums_are_verified_kept_and_returned() {
    if aws_missing() {
        return;
    }
    let w = World::start().await;
    let k = w.project_key("acme", "web").await;
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let file = write(&dir.path().join("data"), &data);
    aws_json(&w, &k, &["s3api", "create-bucket", "--bucket", "sums"]);
    let put = |key: &str, extra: &[&str]| {
        aws_json(
            &w,
            &k,
            &[&["s3api", "put-object", "--bucket", "sums", "--key", key, "--body", &file][..], extra].concat(),
        )
    };

    let sha256 = b64(&sha2::Sha256::digest(&data));
    let answered = put("sha", &["--checksum-algorithm", "SHA256"]);
    assert_eq!(answered["ChecksumSHA256"].as_str(), Some(sha256.as_str()), "{answered}");
    let head = |key: &str, mode: bool| {
        let mut args = vec!["s3api", "head-object", "--bucket", "sums", "--key", key];
        if mode {
            args.extend(["--checksum-mode", "ENABLED"]);
        }
        aws_json(&w, &k, &args)
    };
    assert_eq!(head("sha", true)["ChecksumSHA256"].as_str(), Some(sha256.as_str()));
    assert!(head("sha", false).get("ChecksumSHA256").is_none(), "only when asked");

    // The CLI's default (a CRC32, as current SDKs send) is kept too.
    let crc32 = b64(&s3s::crypto::Crc32::checksum_u32(&data).to_be_bytes());
    put("default", &[]);
    let h = head("default", true);
    assert_eq!(h["ChecksumCRC32"].as_str(), Some(crc32.as_str()), "{h}");
    let got = aws_json(
        &w,
        &k,
        &[
            "s3api",
            "get-object",
            "--bucket",
            "sums",
            "--key",
            "default",
            "--checksum-mode",
            "ENABLED",
            dir.path().join("out").to_str().unwrap(),
        ],
    );
    assert_eq!(got["ChecksumCRC32"].as_str(), Some(crc32.as_str()), "{got}");

    // A value that does not match the body is refused, and nothing is stored.
    aws_refused(
        &w,
        &k,
        &["s3api", "put-object", "--bucket", "sums", "--key", "bad", "--body", &file, "--checksum-crc32", "AAAAAA=="],
        "BadDigest",
    );
    aws_refused(&w, &k, &["s3api", "head-object", "--bucket", "sums", "--key", "bad"], "404");
    let wrong_sha = b64(&sha2::Sha256::digest(b"something else"));
    aws_refused(
        &w,
        &k,
        &["s3api", "put-object", "--bucket", "sums", "--key", "bad", "--body", &file, "--checksum-sha256", &wrong_sha],
        "BadDigest",
    );
}
