//! s3cmd (Debian's) against the gateway: buckets, a small object, a multipart upload (s3cmd
//! splits files over its chunk size), listings, a copy, deletes — the second of the clients
//! the issue names, driven as users drive it, with its own SigV4 implementation.

use std::path::Path;
use std::process::Command;

use crate::gateway::World;

/// Whether s3cmd is absent (reported as a missing prerequisite: a failure under CI).
fn s3cmd_missing() -> bool {
    let missing = Command::new("s3cmd").arg("--version").output().is_err();
    if missing {
        ultracloud_runtime::prerequisite::missing("s3cmd (Debian package s3cmd)");
    }
    missing
}

/// Runs s3cmd with the config `cfg`; its stdout, or a panic with its stderr.
fn s3cmd(cfg: &Path, args: &[&str]) -> String {
    let out = Command::new("s3cmd").arg("-c").arg(cfg).args(args).output().expect("s3cmd runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "s3cmd {args:?} failed: {stdout}\n{stderr}");
    stdout.into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3cmd_buckets_objects_multipart_and_copies() {
    if s3cmd_missing() {
        return;
    }
    let w = World::start().await;
    let (access, secret) = w.project_key("acme", "web").await;
    let dir = tempfile::tempdir().unwrap();
    let host = w.s3.trim_start_matches("http://");
    let cfg = dir.path().join("s3cfg");
    std::fs::write(
        &cfg,
        format!(
            "[default]\naccess_key = {access}\nsecret_key = {secret}\nhost_base = {host}\nhost_bucket = {host}\n\
             use_https = False\nsignature_v2 = False\nbucket_location = us-east-1\nmultipart_chunk_size_mb = 5\n"
        ),
    )
    .unwrap();
    let small = dir.path().join("small.txt");
    std::fs::write(&small, b"hello from s3cmd").unwrap();
    let big = dir.path().join("big.bin");
    let data: Vec<u8> = (0..12_000_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(&big, &data).unwrap();
    let (small, big) = (small.to_str().unwrap(), big.to_str().unwrap());

    s3cmd(&cfg, &["mb", "s3://tools"]);
    assert!(s3cmd(&cfg, &["ls"]).contains("s3://tools"));
    s3cmd(&cfg, &["put", small, "s3://tools/docs/small.txt"]);
    let put = s3cmd(&cfg, &["put", "--progress", big, "s3://tools/big.bin"]);
    assert!(put.contains("part 3 of 3"), "a 12 MB file went up in three 5 MB parts: {put}");
    let listed = s3cmd(&cfg, &["ls", "-r", "s3://tools"]);
    assert!(listed.contains("s3://tools/docs/small.txt") && listed.contains("s3://tools/big.bin"), "{listed}");
    let back = dir.path().join("back.bin");
    s3cmd(&cfg, &["get", "s3://tools/big.bin", back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&back).unwrap(), data, "the multipart object reads back whole");
    s3cmd(&cfg, &["cp", "s3://tools/docs/small.txt", "s3://tools/copy.txt"]);
    let copy = dir.path().join("copy.txt");
    s3cmd(&cfg, &["get", "s3://tools/copy.txt", copy.to_str().unwrap()]);
    assert_eq!(std::fs::read(&copy).unwrap(), b"hello from s3cmd");
    let info = s3cmd(&cfg, &["info", "s3://tools/docs/small.txt"]);
    assert!(info.contains("File size: 16"), "{info}");
    s3cmd(&cfg, &["del", "--recursive", "--force", "s3://tools"]);
    s3cmd(&cfg, &["rb", "s3://tools"]);
    assert!(!s3cmd(&cfg, &["ls"]).contains("s3://tools"));
}
