//! Public-read buckets: private by default; the canned ACL `public-read` or a public-read
//! bucket policy lets anyone — unsigned, or another project's key — GET, HEAD and (as granted)
//! list, and nothing else; the owner's other project-mates and strangers can never change it.

use crate::gateway::{World, aws_json, aws_missing, aws_ok, aws_refused, write};

/// An unsigned request: (status, body).
async fn anonymous(w: &World, method: reqwest::Method, path: &str) -> (u16, String) {
    let r = w.s.http.request(method, format!("{}{path}", w.s3)).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

async fn refused(w: &World, method: reqwest::Method, path: &str) {
    let (status, body) = anonymous(w, method.clone(), path).await;
    assert_eq!(status, 403, "{method} {path}: {body}");
    assert!(body.contains("<Code>AccessDenied</Code>"), "{method} {path}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_read_by_acl_or_policy_is_read_only_and_owner_controlled() {
    if aws_missing() {
        return;
    }
    let w = World::start().await;
    let owner = w.project_key("acme", "web").await;
    let stranger = w.project_key("evil", "ops").await;
    let dir = tempfile::tempdir().unwrap();
    let page = write(&dir.path().join("index.html"), b"<h1>hello</h1>");
    aws_ok(&w, &owner, &["s3api", "create-bucket", "--bucket", "site"]);
    aws_ok(&w, &owner, &["s3api", "put-object", "--bucket", "site", "--key", "index.html", "--body", &page]);
    let get = reqwest::Method::GET;

    // Private by default: unsigned and foreign reads are refused, and a missing bucket looks
    // the same as a private one to an unsigned caller.
    refused(&w, get.clone(), "/site/index.html").await;
    refused(&w, get.clone(), "/site").await;
    refused(&w, get.clone(), "/no-such-bucket/x").await;
    let fetch = ["s3api", "get-object", "--bucket", "site", "--key", "index.html", "/dev/null"];
    aws_refused(&w, &stranger, &fetch, "AccessDenied");

    // The canned ACL public-read: anyone reads and lists; nobody else writes or deletes.
    let set_acl = |key: &(String, String), acl: &str| {
        aws_ok(&w, key, &["s3api", "put-bucket-acl", "--bucket", "site", "--acl", acl]);
    };
    aws_refused(
        &w,
        &stranger,
        &["s3api", "put-bucket-acl", "--bucket", "site", "--acl", "public-read"],
        "AccessDenied",
    );
    set_acl(&owner, "public-read");
    let acl = aws_json(&w, &owner, &["s3api", "get-bucket-acl", "--bucket", "site"]);
    assert!(acl.to_string().contains("AllUsers"), "{acl}");
    assert_eq!(anonymous(&w, get.clone(), "/site/index.html").await, (200, "<h1>hello</h1>".to_owned()));
    assert_eq!(anonymous(&w, reqwest::Method::HEAD, "/site/index.html").await.0, 200);
    let (status, listing) = anonymous(&w, get.clone(), "/site?list-type=2").await;
    assert!(status == 200 && listing.contains("index.html"), "{status} {listing}");
    aws_ok(&w, &stranger, &fetch);
    refused(&w, reqwest::Method::PUT, "/site/defaced.html").await;
    refused(&w, reqwest::Method::DELETE, "/site/index.html").await;
    refused(&w, get.clone(), "/site?versioning").await;
    let deface = ["s3api", "put-object", "--bucket", "site", "--key", "index.html", "--body", &page];
    aws_refused(&w, &stranger, &deface, "AccessDenied");
    aws_refused(&w, &stranger, &["s3api", "delete-object", "--bucket", "site", "--key", "index.html"], "AccessDenied");
    set_acl(&owner, "private");
    refused(&w, get.clone(), "/site/index.html").await;
    aws_refused(
        &w,
        &owner,
        &["s3api", "put-bucket-acl", "--bucket", "site", "--acl", "authenticated-read"],
        "NotImplemented",
    );

    // A bucket policy granting GetObject only: objects read, listing still refused.
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"read","Effect":"Allow","Principal":"*",
        "Action":"s3:GetObject","Resource":"arn:aws:s3:::site/*"}]}"#;
    let set_policy = ["s3api", "put-bucket-policy", "--bucket", "site", "--policy"];
    aws_refused(&w, &stranger, &[&set_policy[..], &[policy]].concat(), "AccessDenied");
    aws_ok(&w, &owner, &[&set_policy[..], &[policy]].concat());
    assert_eq!(anonymous(&w, get.clone(), "/site/index.html").await.0, 200);
    refused(&w, get.clone(), "/site").await;
    let stored = aws_json(&w, &owner, &["s3api", "get-bucket-policy", "--bucket", "site"]);
    assert_eq!(stored["Policy"].as_str(), Some(policy));
    let status = aws_json(&w, &owner, &["s3api", "get-bucket-policy-status", "--bucket", "site"]);
    assert_eq!(status["PolicyStatus"]["IsPublic"], true, "{status}");
    let writes = policy.replace("s3:GetObject", "s3:PutObject");
    aws_refused(&w, &owner, &[&set_policy[..], &[writes.as_str()]].concat(), "NotImplemented");
    aws_ok(&w, &owner, &["s3api", "delete-bucket-policy", "--bucket", "site"]);
    refused(&w, get.clone(), "/site/index.html").await;
    aws_refused(&w, &owner, &["s3api", "get-bucket-policy", "--bucket", "site"], "NoSuchBucketPolicy");

    // Public from birth: CreateBucket's x-amz-acl.
    aws_ok(&w, &owner, &["s3api", "create-bucket", "--bucket", "born-public", "--acl", "public-read"]);
    assert_eq!(anonymous(&w, get, "/born-public?list-type=2").await.0, 200);
}
