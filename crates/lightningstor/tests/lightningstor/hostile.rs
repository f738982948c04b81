//! Every bucket and object operation of a project's bucket, tried by a member of another
//! tenant (with a valid key of their own) and unsigned: each is refused, and the bucket is
//! unchanged afterwards.

use crate::gateway::{World, aws, aws_json, aws_missing, aws_ok, write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_member_and_anonymous_callers_reach_nothing() {
    if aws_missing() {
        return;
    }
    let w = World::start().await;
    let owner = w.project_key("acme", "web").await;
    let stranger = w.project_key("evil", "ops").await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir.path().join("f"), b"secret bytes");
    aws_ok(&w, &owner, &["s3api", "create-bucket", "--bucket", "vault"]);
    let on = ["s3api", "put-bucket-versioning", "--bucket", "vault", "--versioning-configuration", "Status=Enabled"];
    aws_ok(&w, &owner, &on);
    let put = aws_json(&w, &owner, &["s3api", "put-object", "--bucket", "vault", "--key", "k", "--body", &file]);
    let version = put["VersionId"].as_str().unwrap().to_owned();
    let upload = aws_json(&w, &owner, &["s3api", "create-multipart-upload", "--bucket", "vault", "--key", "m"]);
    let upload_id = upload["UploadId"].as_str().unwrap().to_owned();

    let lifecycle = r#"{"Rules":[{"ID":"x","Status":"Enabled","Filter":{"Prefix":""},"Expiration":{"Days":1}}]}"#;
    let cors = r#"{"CORSRules":[{"AllowedOrigins":["*"],"AllowedMethods":["GET"]}]}"#;
    let policy = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::vault/*"}]}"#;
    let b = ["--bucket", "vault"];
    let attempts: Vec<Vec<&str>> = vec![
        vec!["head-bucket"],
        vec!["get-bucket-location"],
        vec!["list-objects-v2"],
        vec!["list-objects"],
        vec!["list-object-versions"],
        vec!["list-multipart-uploads"],
        vec!["get-bucket-versioning"],
        vec!["put-bucket-versioning", "--versioning-configuration", "Status=Suspended"],
        vec!["get-bucket-lifecycle-configuration"],
        vec!["put-bucket-lifecycle-configuration", "--lifecycle-configuration", lifecycle],
        vec!["delete-bucket-lifecycle"],
        vec!["get-bucket-cors"],
        vec!["put-bucket-cors", "--cors-configuration", cors],
        vec!["delete-bucket-cors"],
        vec!["get-bucket-acl"],
        vec!["put-bucket-acl", "--acl", "public-read"],
        vec!["get-bucket-policy"],
        vec!["put-bucket-policy", "--policy", policy],
        vec!["delete-bucket-policy"],
        vec!["get-bucket-policy-status"],
        vec!["get-bucket-tagging"],
        vec!["put-bucket-tagging", "--tagging", "TagSet=[{Key=a,Value=b}]"],
        vec!["delete-bucket"],
        vec!["head-object", "--key", "k"],
        vec!["head-object", "--key", "k", "--version-id", &version],
        vec!["get-object-tagging", "--key", "k"],
        vec!["put-object-tagging", "--key", "k", "--tagging", "TagSet=[{Key=a,Value=b}]"],
        vec!["delete-object-tagging", "--key", "k"],
        vec!["put-object", "--key", "k", "--body", &file],
        vec!["delete-object", "--key", "k"],
        vec!["delete-object", "--key", "k", "--version-id", &version],
        vec!["copy-object", "--key", "copy", "--copy-source", "vault/k"],
        vec!["list-parts", "--key", "m", "--upload-id", &upload_id],
        vec!["upload-part", "--key", "m", "--upload-id", &upload_id, "--part-number", "1", "--body", &file],
        vec!["abort-multipart-upload", "--key", "m", "--upload-id", &upload_id],
    ];
    // HEAD answers carry no body: the CLI shows their 403 without S3's code.
    let denied = |err: &str| err.contains("AccessDenied") || err.contains("(403)");
    for a in &attempts {
        let args: Vec<&str> = ["s3api", a[0]].into_iter().chain(b).chain(a[1..].iter().copied()).collect();
        let (ok, out, err) = aws(&w, &stranger, &args);
        assert!(!ok && denied(&err), "another tenant's member: {args:?} → {out} {err}");
        let unsigned: Vec<&str> = ["--no-sign-request"].into_iter().chain(args.iter().copied()).collect();
        let (ok, out, err) = aws(&w, &stranger, &unsigned);
        assert!(!ok && denied(&err), "unsigned: {args:?} → {out} {err}");
    }
    // The stranger's own bucket cannot borrow the vault's object either.
    aws_ok(&w, &stranger, &["s3api", "create-bucket", "--bucket", "loot"]);
    let (ok, _, err) =
        aws(&w, &stranger, &["s3api", "copy-object", "--bucket", "loot", "--key", "k", "--copy-source", "vault/k"]);
    assert!(!ok && err.contains("AccessDenied"), "{err}");

    // Nothing changed.
    let versioning = aws_json(&w, &owner, &["s3api", "get-bucket-versioning", "--bucket", "vault"]);
    assert_eq!(versioning["Status"], "Enabled");
    let versions = aws_json(&w, &owner, &["s3api", "list-object-versions", "--bucket", "vault"]);
    assert_eq!(versions["Versions"].as_array().map(Vec::len), Some(1), "{versions}");
    assert!(versions.get("DeleteMarkers").is_none_or(|m| m.as_array().is_none_or(Vec::is_empty)), "{versions}");
    let acl = aws_ok(&w, &owner, &["s3api", "get-bucket-acl", "--bucket", "vault"]);
    assert!(!acl.contains("AllUsers"), "{acl}");
    let (ok, _, err) = aws(&w, &owner, &["s3api", "get-bucket-policy", "--bucket", "vault"]);
    assert!(!ok && err.contains("NoSuchBucketPolicy"), "{err}");
    let (ok, _, err) = aws(&w, &owner, &["s3api", "get-bucket-lifecycle-configuration", "--bucket", "vault"]);
    assert!(!ok && err.contains("NoSuchLifecycleConfiguration"), "{err}");
    let parts =
        aws_json(&w, &owner, &["s3api", "list-parts", "--bucket", "vault", "--key", "m", "--upload-id", &upload_id]);
    assert!(parts.get("Parts").is_none_or(|p| p.as_array().is_none_or(Vec::is_empty)), "{parts}");
}
