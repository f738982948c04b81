//! A key acts as its creator: when the creator is demoted to viewer the key becomes read-only,
//! and when the creator holds no role left in the project the key is refused — within the
//! gateway's few seconds of caching, with no change to the key itself.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::gateway::{World, aws, aws_missing, aws_ok, write};

/// Waits (up to 20 s) until `aws args` fails with `code` (or succeeds, for `None`).
fn eventually(w: &World, key: &(String, String), args: &[&str], code: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, _, err) = aws(w, key, args);
        let reached = match code {
            None => ok,
            Some(c) => !ok && err.contains(c),
        };
        if reached {
            return;
        }
        assert!(Instant::now() < deadline, "aws {args:?}: still not {code:?}: {err}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_follows_its_creators_roles() {
    if aws_missing() {
        return;
    }
    let w = World::start().await;
    let key = w.project_key("acme", "web").await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir.path().join("f"), b"bytes");
    aws_ok(&w, &key, &["s3api", "create-bucket", "--bucket", "roles"]);
    let put = ["s3api", "put-object", "--bucket", "roles", "--key", "k", "--body", &file];
    let get = ["s3api", "head-object", "--bucket", "roles", "--key", "k"];
    aws_ok(&w, &key, &put);

    // Demoted: member → viewer. Reads go on; writes are refused.
    let subject = "user:acme-member";
    let (status, bindings) =
        w.iam_call(reqwest::Method::GET, &format!("/v1/bindings?subject={subject}"), &w.s.admin, None).await;
    assert_eq!(status, 200, "{bindings}");
    let member = bindings["items"].as_array().unwrap().iter().find(|b| b["role"] == "member").cloned();
    let id = member.as_ref().and_then(|b: &Value| b["id"].as_str()).unwrap_or_else(|| panic!("{bindings}")).to_owned();
    let scope = json!({"kind": "project", "tenant": "acme", "project": "web"});
    w.iam_ok("/v1/bindings", json!({"subject": subject, "role": "viewer", "scope": scope})).await;
    let (status, body) =
        w.iam_call(reqwest::Method::DELETE, &format!("/v1/bindings/{subject}/{id}"), &w.s.admin, None).await;
    assert_eq!(status, 204, "{body}");
    eventually(&w, &key, &put, Some("AccessDenied"));
    aws_ok(&w, &key, &get);
    aws_ok(&w, &key, &["s3api", "list-objects-v2", "--bucket", "roles"]);

    // No role left: the key acts as nobody.
    let (status, bindings) =
        w.iam_call(reqwest::Method::GET, &format!("/v1/bindings?subject={subject}"), &w.s.admin, None).await;
    assert_eq!(status, 200);
    for b in bindings["items"].as_array().unwrap() {
        let id = b["id"].as_str().unwrap();
        w.iam_call(reqwest::Method::DELETE, &format!("/v1/bindings/{subject}/{id}"), &w.s.admin, None).await;
    }
    eventually(&w, &key, &get, Some("403"));
    let (ok, _, err) = aws(&w, &key, &["s3api", "list-buckets"]);
    assert!(!ok && err.contains("AccessDenied"), "{err}");
}
