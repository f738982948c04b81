//! The S3 gateway with real servers on 127.0.0.1 — a flaredb node, an iam replica, three storage
//! nodes and the gateway — driven by the AWS CLI (`aws`), the way users will drive it: buckets,
//! objects (streamed in blocks), ranges, listings with prefixes and delimiters, and the refusals:
//! another project's key, a wrong secret, an unknown or deleted key.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use ultracloud_lightningstor::data::{Cluster, StorageNode};
use ultracloud_lightningstor::gateway::auth::{CACHE_TTL, IamKeys};
use ultracloud_lightningstor::gateway::meta::Meta;
use ultracloud_lightningstor::gateway::{Gateway, serve};
use ultracloud_lightningstor::layout::Member;

use crate::node::{Served, serve as serve_node};
use crate::stack::Stack;

/// Everything the gateway stands on (flaredb and iam: prismnet's test stack, whose controller
/// idles here), three storage nodes, and the gateway.
pub(crate) struct World {
    pub(crate) s: Stack,
    nodes: Vec<Served>,
    /// The storage nodes as the gateway knows them.
    pub(crate) members: Vec<StorageNode>,
    pub(crate) s3: String,
    keys: Arc<IamKeys>,
}

impl World {
    pub(crate) async fn start() -> Self {
        let s = Stack::start().await;
        // The gateway's own service account, made by iam's bootstrap: the object-gateway role.
        let key = std::fs::read_to_string(s.dir.path().join("iam").join("s3-gateway-api-key")).unwrap();
        let tokens = ultracloud_iam::guard::TokenSource::new(vec![s.iam.clone()], key.trim().to_owned()).unwrap();
        let keys = Arc::new(IamKeys::new(tokens.client("iam", std::slice::from_ref(&s.iam)).unwrap()));
        let mut w = Self { s, nodes: Vec::new(), members: Vec::new(), s3: String::new(), keys };

        let mut members = Vec::new();
        for i in 0..3 {
            let path = w.s.dir.path().join(format!("node{i}"));
            let served = serve_node(&path).await;
            members.push(StorageNode {
                member: Member { id: format!("node{i}"), zone: String::new(), weight: 1 },
                url: served.url(),
            });
            w.nodes.push(served);
        }
        w.members.clone_from(&members);
        let service = w.gateway(members);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        w.s3 = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve(listener, service, tokio_util::sync::CancellationToken::new()));
        w
    }

    /// A gateway over the world's flaredb and iam and the storage nodes `members`, cutting
    /// objects into 1 MiB blocks (a few-MiB object spans several).
    pub(crate) fn gateway(&self, members: Vec<StorageNode>) -> axum::Router {
        let cluster = Arc::new(Cluster::new(members, 3, 1024 * 1024).unwrap());
        let meta = Meta::new(ultracloud_flaredb::Client::new(vec![self.s.db.to_string()]).unwrap());
        Gateway::new(meta, cluster, self.keys.clone()).into_router(None).unwrap()
    }

    async fn token(&self, user: &str, password: &str) -> String {
        let v: Value = self
            .s
            .http
            .post(format!("{}/v1/auth/token", self.s.iam))
            .json(&json!({"grant_type": "password", "username": user, "password": password}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["access_token"].as_str().unwrap_or_else(|| panic!("login {user}: {v}")).to_owned()
    }

    pub(crate) async fn iam_call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.s.http.request(method, format!("{}{path}", self.s.iam)).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    /// A POST to iam as the admin that must succeed.
    pub(crate) async fn iam_ok(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.iam_call(reqwest::Method::POST, path, &self.s.admin, Some(body)).await;
        assert!(s == 201 || s == 200, "POST {path}: {s} {v}");
        v
    }

    /// A tenant with a project and a member of it; the member's S3 key pair.
    pub(crate) async fn project_key(&self, tenant: &str, project: &str) -> (String, String) {
        self.iam_ok("/v1/tenants", json!({"id": tenant})).await;
        self.iam_ok(&format!("/v1/tenants/{tenant}/projects"), json!({"id": project})).await;
        let user = format!("{tenant}-member");
        self.iam_ok("/v1/users", json!({"name": user, "tenant": tenant, "password": "a long password"})).await;
        let scope = json!({"kind": "project", "tenant": tenant, "project": project});
        self.iam_ok("/v1/bindings", json!({"subject": format!("user:{user}"), "role": "member", "scope": scope})).await;
        let token = self.token(&user, "a long password").await;
        let path = format!("/v1/tenants/{tenant}/projects/{project}/s3-credentials");
        let (s, v) = self.iam_call(reqwest::Method::POST, &path, &token, Some(json!({}))).await;
        assert_eq!(s, 201, "{v}");
        (v["access_key_id"].as_str().unwrap().to_owned(), v["secret_access_key"].as_str().unwrap().to_owned())
    }
}

/// Whether the AWS CLI is absent (reported as a missing prerequisite: a failure under CI).
pub(crate) fn aws_missing() -> bool {
    let missing = Command::new("aws").arg("--version").output().is_err();
    if missing {
        ultracloud_runtime::prerequisite::missing("the AWS CLI (`aws`; Debian package awscli)");
    }
    missing
}

/// Runs `aws` with a key pair against the gateway; (success, stdout, stderr).
pub(crate) fn aws(w: &World, key: &(String, String), args: &[&str]) -> (bool, String, String) {
    let args: Vec<&str> =
        ["--endpoint-url", &w.s3, "--output", "json"].into_iter().chain(args.iter().copied()).collect();
    crate::aws_cli::run(
        &args,
        &[
            ("AWS_ACCESS_KEY_ID", &key.0),
            ("AWS_SECRET_ACCESS_KEY", &key.1),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ("AWS_MAX_ATTEMPTS", "1"),
        ],
    )
}

/// `aws` that must succeed; its stdout.
pub(crate) fn aws_ok(w: &World, key: &(String, String), args: &[&str]) -> String {
    let (ok, out, err) = aws(w, key, args);
    assert!(ok, "aws {args:?} failed: {err}");
    out
}

/// `aws` that must fail with the S3 error `code`.
pub(crate) fn aws_refused(w: &World, key: &(String, String), args: &[&str], code: &str) {
    let (ok, out, err) = aws(w, key, args);
    assert!(!ok, "aws {args:?} should fail with {code}: {out}");
    assert!(err.contains(code), "aws {args:?}: expected {code}, got: {err}");
}

pub(crate) fn write(path: &Path, bytes: &[u8]) -> String {
    std::fs::write(path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_buckets_objects_ranges_listings_and_refusals() {
    if aws_missing() {
        return;
    }
    let w = World::start().await;
    let acme = w.project_key("acme", "web").await;
    let globex = w.project_key("globex", "app").await;
    let files = tempfile::tempdir().unwrap();

    // Buckets: created, listed by their project only, names global.
    aws_ok(&w, &acme, &["s3api", "create-bucket", "--bucket", "photos"]);
    aws_refused(&w, &acme, &["s3api", "create-bucket", "--bucket", "photos"], "BucketAlreadyOwnedByYou");
    aws_refused(&w, &globex, &["s3api", "create-bucket", "--bucket", "photos"], "BucketAlreadyExists");
    let listed: Value = serde_json::from_str(&aws_ok(&w, &acme, &["s3api", "list-buckets"])).unwrap();
    assert_eq!(listed["Buckets"][0]["Name"], "photos", "{listed}");
    let listed: Value = serde_json::from_str(&aws_ok(&w, &globex, &["s3api", "list-buckets"])).unwrap();
    assert_eq!(listed["Buckets"].as_array().map(Vec::len).unwrap_or(0), 0, "{listed}");

    // Objects: a 3.5 MiB object goes out in four blocks and comes back whole and by range.
    let big: Vec<u8> = (0..3_600_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let src = write(&files.path().join("big"), &big);
    let put: Value = serde_json::from_str(&aws_ok(
        &w,
        &acme,
        &[
            "s3api",
            "put-object",
            "--bucket",
            "photos",
            "--key",
            "2026/trip/big.bin",
            "--body",
            &src,
            "--content-type",
            "application/x-test",
            "--metadata",
            "camera=pinhole",
        ],
    ))
    .unwrap();
    let md5 = {
        use s3s::crypto::Checksum;
        hex::encode(s3s::crypto::Md5::checksum(&big))
    };
    assert_eq!(put["ETag"].as_str(), Some(format!("\"{md5}\"").as_str()), "ETag is the MD5: {put}");
    let back = files.path().join("back");
    let head: Value = serde_json::from_str(&aws_ok(
        &w,
        &acme,
        &["s3api", "get-object", "--bucket", "photos", "--key", "2026/trip/big.bin", back.to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), big, "the object reads back byte for byte");
    assert_eq!(
        (head["ContentLength"].as_u64(), head["ContentType"].as_str()),
        (Some(big.len() as u64), Some("application/x-test")),
        "{head}"
    );
    assert_eq!(head["Metadata"]["camera"], "pinhole", "{head}");
    let part = files.path().join("part");
    let r: Value = serde_json::from_str(&aws_ok(
        &w,
        &acme,
        &[
            "s3api",
            "get-object",
            "--bucket",
            "photos",
            "--key",
            "2026/trip/big.bin",
            "--range",
            "bytes=1048000-1049999",
            part.to_str().unwrap(),
        ],
    ))
    .unwrap();
    assert_eq!(std::fs::read(&part).unwrap(), &big[1_048_000..1_050_000], "a range across a block boundary");
    assert_eq!(r["ContentRange"], format!("bytes 1048000-1049999/{}", big.len()), "{r}");
    aws_refused(
        &w,
        &acme,
        &[
            "s3api",
            "get-object",
            "--bucket",
            "photos",
            "--key",
            "2026/trip/big.bin",
            "--range",
            "bytes=9000000-",
            part.to_str().unwrap(),
        ],
        "InvalidRange",
    );
    aws_refused(&w, &acme, &["s3api", "head-object", "--bucket", "photos", "--key", "nope"], "404");

    // Listings: prefixes, delimiters, pages.
    let small = write(&files.path().join("small"), b"hello");
    for key in ["2026/a.txt", "2026/b.txt", "2026/trip/c.txt", "2027/d.txt", "top.txt"] {
        aws_ok(&w, &acme, &["s3api", "put-object", "--bucket", "photos", "--key", key, "--body", &small]);
    }
    let l: Value = serde_json::from_str(&aws_ok(
        &w,
        &acme,
        &["s3api", "list-objects-v2", "--bucket", "photos", "--delimiter", "/"],
    ))
    .unwrap();
    let keys: Vec<&str> = l["Contents"].as_array().unwrap().iter().map(|o| o["Key"].as_str().unwrap()).collect();
    let prefixes: Vec<&str> =
        l["CommonPrefixes"].as_array().unwrap().iter().map(|p| p["Prefix"].as_str().unwrap()).collect();
    assert_eq!((keys, prefixes), (vec!["top.txt"], vec!["2026/", "2027/"]), "{l}");
    let l: Value = serde_json::from_str(&aws_ok(
        &w,
        &acme,
        &["s3api", "list-objects-v2", "--bucket", "photos", "--prefix", "2026/", "--delimiter", "/"],
    ))
    .unwrap();
    let keys: Vec<&str> = l["Contents"].as_array().unwrap().iter().map(|o| o["Key"].as_str().unwrap()).collect();
    assert_eq!(keys, vec!["2026/a.txt", "2026/b.txt"], "{l}");
    assert_eq!(l["CommonPrefixes"][0]["Prefix"], "2026/trip/", "{l}");
    // Pages of two, followed by the CLI's own pagination: every key once, in order.
    let l: Value = serde_json::from_str(&aws_ok(
        &w,
        &acme,
        &["s3api", "list-objects-v2", "--bucket", "photos", "--page-size", "2"],
    ))
    .unwrap();
    let keys: Vec<&str> = l["Contents"].as_array().unwrap().iter().map(|o| o["Key"].as_str().unwrap()).collect();
    assert_eq!(keys, vec!["2026/a.txt", "2026/b.txt", "2026/trip/big.bin", "2026/trip/c.txt", "2027/d.txt", "top.txt"]);

    // Another project's key reaches nothing of acme's.
    for args in [
        vec!["s3api", "head-bucket", "--bucket", "photos"],
        vec!["s3api", "list-objects-v2", "--bucket", "photos"],
        vec!["s3api", "head-object", "--bucket", "photos", "--key", "top.txt"],
        vec!["s3api", "put-object", "--bucket", "photos", "--key", "evil", "--body", &small],
        vec!["s3api", "delete-object", "--bucket", "photos", "--key", "top.txt"],
        vec!["s3api", "delete-bucket", "--bucket", "photos"],
    ] {
        let (ok, out, err) = aws(&w, &globex, &args);
        assert!(!ok && (err.contains("AccessDenied") || err.contains("(403)")), "{args:?}: {out} {err}");
    }
    // Wrong secrets and unknown keys are refused as S3 does.
    let forged = (acme.0.clone(), "x".repeat(40));
    aws_refused(&w, &forged, &["s3api", "list-buckets"], "SignatureDoesNotMatch");
    let unknown = ("UCAAAAAAAAAAAAAAAAAA".to_owned(), "x".repeat(40));
    aws_refused(&w, &unknown, &["s3api", "list-buckets"], "InvalidAccessKeyId");

    // Deletes: a bucket with objects stays; objects go; then the bucket.
    aws_refused(&w, &acme, &["s3api", "delete-bucket", "--bucket", "photos"], "BucketNotEmpty");
    for key in ["2026/a.txt", "2026/b.txt", "2026/trip/big.bin", "2026/trip/c.txt", "2027/d.txt", "top.txt"] {
        aws_ok(&w, &acme, &["s3api", "delete-object", "--bucket", "photos", "--key", key]);
    }
    aws_ok(&w, &acme, &["s3api", "delete-bucket", "--bucket", "photos"]);
    aws_refused(&w, &acme, &["s3api", "head-bucket", "--bucket", "photos"], "404");

    // A deleted key stops working once the gateway's cache lets go of it.
    let (s, v) = w
        .iam_call(
            reqwest::Method::DELETE,
            &format!("/v1/tenants/acme/projects/web/s3-credentials/{}", acme.0),
            &w.s.admin,
            None,
        )
        .await;
    assert_eq!(s, 204, "{v}");
    tokio::time::sleep(CACHE_TTL + Duration::from_millis(500)).await;
    aws_refused(&w, &acme, &["s3api", "list-buckets"], "InvalidAccessKeyId");
}

/// `aws … s3api upload-part`; the part's ETag as the CLI shows it (quoted).
fn upload_part(w: &World, key: &(String, String), upload: &str, number: u32, body: &str) -> String {
    let n = number.to_string();
    let out = aws_ok(
        w,
        key,
        &[
            "s3api",
            "upload-part",
            "--bucket",
            "big",
            "--key",
            "parts.bin",
            "--upload-id",
            upload,
            "--part-number",
            &n,
            "--body",
            body,
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    v["ETag"].as_str().unwrap().to_owned()
}

fn parts_json(parts: &[(u32, &str)]) -> String {
    let parts: Vec<Value> = parts.iter().map(|(n, e)| json!({"PartNumber": n, "ETag": e})).collect();
    json!({ "Parts": parts }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_by_aws_and_our_own_client() {
    if aws_missing() {
        return;
    }
    let w = World::start().await;
    let acme = w.project_key("acme", "web").await;
    let files = tempfile::tempdir().unwrap();
    aws_ok(&w, &acme, &["s3api", "create-bucket", "--bucket", "big"]);

    // `aws s3 cp` of 20 MiB uploads three parts (8 + 8 + 4 MiB) and downloads in ranges.
    let data: Vec<u8> = (0..20u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let src = write(&files.path().join("twenty"), &data);
    aws_ok(&w, &acme, &["s3", "cp", &src, "s3://big/twenty.bin"]);
    let head: Value =
        serde_json::from_str(&aws_ok(&w, &acme, &["s3api", "head-object", "--bucket", "big", "--key", "twenty.bin"]))
            .unwrap();
    assert!(head["ETag"].as_str().unwrap().ends_with("-3\""), "a three-part ETag: {head}");
    assert_eq!(head["ContentLength"].as_u64(), Some(20 << 20), "{head}");
    let back = files.path().join("back");
    aws_ok(&w, &acme, &["s3", "cp", "s3://big/twenty.bin", back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&back).unwrap(), data, "the multipart object reads back byte for byte");

    // The parts API step by step, and each refusal with S3's code.
    let five = write(&files.path().join("five"), &data[..5 << 20]);
    let tail = write(&files.path().join("tail"), b"the end");
    let create = ["s3api", "create-multipart-upload", "--bucket", "big", "--key", "parts.bin"];
    let v: Value = serde_json::from_str(&aws_ok(&w, &acme, &create)).unwrap();
    let upload = v["UploadId"].as_str().unwrap().to_owned();
    let e1 = upload_part(&w, &acme, &upload, 1, &five);
    let e2 = upload_part(&w, &acme, &upload, 2, &tail);
    let ids = ["--bucket", "big", "--key", "parts.bin", "--upload-id", &upload];
    let parts: Value =
        serde_json::from_str(&aws_ok(&w, &acme, &[&["s3api", "list-parts"][..], &ids].concat())).unwrap();
    let numbers: Vec<u64> =
        parts["Parts"].as_array().unwrap().iter().map(|p| p["PartNumber"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2], "{parts}");
    let uploads: Value =
        serde_json::from_str(&aws_ok(&w, &acme, &["s3api", "list-multipart-uploads", "--bucket", "big"])).unwrap();
    assert_eq!(uploads["Uploads"][0]["UploadId"].as_str(), Some(upload.as_str()), "{uploads}");
    let complete = |list: String| -> Vec<String> {
        [&["s3api", "complete-multipart-upload"][..], &ids, &["--multipart-upload", &list]]
            .concat()
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    let refused = |args: Vec<String>, code: &str| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        aws_refused(&w, &acme, &a, code);
    };
    refused(complete(parts_json(&[(2, &e2), (1, &e1)])), "InvalidPartOrder");
    refused(complete(parts_json(&[(1, "\"00000000000000000000000000000000\"")])), "InvalidPart");
    refused(complete(parts_json(&[(1, &e1), (3, &e2)])), "InvalidPart");
    refused(complete(parts_json(&[(2, &e2), (3, &e2)])), "InvalidPart");
    let args = complete(parts_json(&[(1, &e1), (2, &e2)]));
    let done: Value =
        serde_json::from_str(&aws_ok(&w, &acme, &args.iter().map(String::as_str).collect::<Vec<_>>())).unwrap();
    assert!(done["ETag"].as_str().unwrap().ends_with("-2\""), "{done}");
    let got = files.path().join("got");
    aws_ok(&w, &acme, &["s3api", "get-object", "--bucket", "big", "--key", "parts.bin", got.to_str().unwrap()]);
    assert_eq!(std::fs::read(&got).unwrap(), [&data[..5 << 20], b"the end"].concat());
    // Completed: the upload is gone.
    refused(complete(parts_json(&[(1, &e1), (2, &e2)])), "NoSuchUpload");

    // A small part that is not the last is refused; an aborted upload takes no more parts.
    let v: Value = serde_json::from_str(&aws_ok(&w, &acme, &create)).unwrap();
    let upload = v["UploadId"].as_str().unwrap().to_owned();
    let ids = ["--bucket", "big", "--key", "parts.bin", "--upload-id", &upload];
    let s1 = upload_part(&w, &acme, &upload, 1, &tail);
    let s2 = upload_part(&w, &acme, &upload, 2, &tail);
    let list = parts_json(&[(1, &s1), (2, &s2)]);
    aws_refused(
        &w,
        &acme,
        &[&["s3api", "complete-multipart-upload"][..], &ids, &["--multipart-upload", &list]].concat(),
        "EntityTooSmall",
    );
    aws_ok(&w, &acme, &[&["s3api", "abort-multipart-upload"][..], &ids].concat());
    let uploads: Value =
        serde_json::from_str(&aws_ok(&w, &acme, &["s3api", "list-multipart-uploads", "--bucket", "big"])).unwrap();
    assert_eq!(uploads["Uploads"].as_array().map(Vec::len).unwrap_or(0), 0, "{uploads}");
    aws_refused(
        &w,
        &acme,
        &[&["s3api", "upload-part", "--part-number", "3", "--body", &tail][..], &ids].concat(),
        "NoSuchUpload",
    );

    // Our own S3 client (the harness's and the benchmark's) against the same gateway.
    use ultracloud_lightningstor::client::s3::{S3Client, S3Key};
    let key = S3Key { access_key_id: acme.0.clone(), secret_access_key: acme.1.clone() };
    let ours = S3Client::new(&w.s3, key.clone()).unwrap();
    let body = bytes::Bytes::from(data[..3 << 20].to_vec());
    let etag = ours.put_object("big", "ours/a b+c.bin", body.clone()).await.unwrap();
    assert_eq!(etag, hex::encode(<s3s::crypto::Md5 as s3s::crypto::Checksum>::checksum(&body)));
    assert_eq!(ours.get_object("big", "ours/a b+c.bin").await.unwrap(), body, "an odd key round-trips");
    ours.delete_object("big", "ours/a b+c.bin").await.unwrap();
    let gone = ours.get_object("big", "ours/a b+c.bin").await.unwrap_err();
    assert_eq!((gone.status(), gone.code()), (Some(404), "NoSuchKey"), "{gone}");
    let unsigned = ours.clone().with_unsigned_payload();
    unsigned.put_object("big", "unsigned", body.clone()).await.unwrap();
    assert_eq!(unsigned.get_object("big", "unsigned").await.unwrap(), body);
    let forged = S3Client::new(&w.s3, S3Key { secret_access_key: "x".repeat(40), ..key }).unwrap();
    assert_eq!(forged.get_object("big", "unsigned").await.unwrap_err().code(), "SignatureDoesNotMatch");
}

/// `aws` output as JSON.
pub(crate) fn aws_json(w: &World, key: &(String, String), args: &[&str]) -> Value {
    serde_json::from_str(&aws_ok(w, key, args)).unwrap()
}

fn listed_keys(v: &Value) -> Vec<String> {
    v["Contents"]
        .as_array()
        .map(|a| a.iter().map(|o| o["Key"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_multi_deletes_v1_listings_and_conditions() {
    if aws_missing() {
        return;
    }
    let w = World::start().await;
    let acme = w.project_key("acme", "web").await;
    let globex = w.project_key("globex", "app").await;
    let files = tempfile::tempdir().unwrap();
    for b in ["docs", "archive"] {
        aws_ok(&w, &acme, &["s3api", "create-bucket", "--bucket", b]);
    }
    aws_ok(&w, &globex, &["s3api", "create-bucket", "--bucket", "theirs"]);
    let body = write(&files.path().join("body"), &vec![7u8; 1_500_000]);
    let put = aws_json(
        &w,
        &acme,
        &["s3api", "put-object", "--bucket", "docs", "--key", "src.bin", "--body", &body, "--metadata", "owner=ada"],
    );
    let etag = put["ETag"].as_str().unwrap().to_owned();

    // Copies: metadata kept or replaced, across buckets, never from another project, never onto
    // itself unchanged, and only when the source's conditions hold.
    fn copy<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [&["s3api", "copy-object"][..], args].concat()
    }
    aws_ok(&w, &acme, &copy(&["--copy-source", "docs/src.bin", "--bucket", "docs", "--key", "dst.bin"]));
    let head = aws_json(&w, &acme, &["s3api", "head-object", "--bucket", "docs", "--key", "dst.bin"]);
    assert_eq!(
        (head["ETag"].as_str(), head["Metadata"]["owner"].as_str()),
        (Some(etag.as_str()), Some("ada")),
        "{head}"
    );
    aws_ok(
        &w,
        &acme,
        &copy(&[
            "--copy-source",
            "docs/src.bin",
            "--bucket",
            "archive",
            "--key",
            "moved.bin",
            "--metadata-directive",
            "REPLACE",
            "--metadata",
            "owner=grace",
            "--content-type",
            "text/x-copy",
        ]),
    );
    let head = aws_json(&w, &acme, &["s3api", "head-object", "--bucket", "archive", "--key", "moved.bin"]);
    assert_eq!(head["Metadata"]["owner"], "grace", "{head}");
    assert_eq!(head["ContentType"], "text/x-copy", "{head}");
    let got = files.path().join("got");
    aws_ok(&w, &acme, &["s3api", "get-object", "--bucket", "archive", "--key", "moved.bin", got.to_str().unwrap()]);
    assert_eq!(std::fs::read(&got).unwrap(), vec![7u8; 1_500_000], "a copy reads back the source's bytes");
    aws_refused(
        &w,
        &acme,
        &copy(&["--copy-source", "docs/src.bin", "--bucket", "docs", "--key", "src.bin"]),
        "InvalidRequest",
    );
    aws_refused(&w, &acme, &copy(&["--copy-source", "docs/nope", "--bucket", "docs", "--key", "x"]), "NoSuchKey");
    aws_refused(
        &w,
        &globex,
        &copy(&["--copy-source", "docs/src.bin", "--bucket", "theirs", "--key", "x"]),
        "AccessDenied",
    );
    aws_refused(
        &w,
        &acme,
        &copy(&["--copy-source", "docs/src.bin", "--bucket", "theirs", "--key", "x"]),
        "AccessDenied",
    );
    aws_refused(
        &w,
        &acme,
        &copy(&["--copy-source", "docs/src.bin", "--bucket", "docs", "--key", "y", "--copy-source-if-match", "\"0\""]),
        "PreconditionFailed",
    );
    aws_ok(
        &w,
        &acme,
        &copy(&["--copy-source", "docs/src.bin", "--bucket", "docs", "--key", "y", "--copy-source-if-match", &etag]),
    );

    // Conditional reads.
    let get = |extra: &[&str]| -> Vec<String> {
        [&["s3api", "get-object", "--bucket", "docs", "--key", "src.bin"][..], extra, &[got.to_str().unwrap()]]
            .concat()
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    let run = |args: Vec<String>| aws(&w, &acme, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(run(get(&["--if-match", &etag])).0, "If-Match with the ETag reads");
    let (ok, _, err) = run(get(&["--if-match", "\"0\""]));
    assert!(!ok && err.contains("PreconditionFailed"), "{err}");
    let (ok, _, err) = run(get(&["--if-none-match", &etag]));
    assert!(!ok && err.contains("304"), "If-None-Match with the ETag: not modified: {err}");
    let (ok, _, err) = run(get(&["--if-modified-since", "2100-01-01T00:00:00Z"]));
    assert!(!ok && err.contains("304"), "{err}");
    let (ok, _, err) = run(get(&["--if-unmodified-since", "2000-01-01T00:00:00Z"]));
    assert!(!ok && err.contains("PreconditionFailed"), "{err}");
    assert!(run(get(&["--if-modified-since", "2000-01-01T00:00:00Z"])).0);

    // ListObjects v1 (markers, the CLI's own paging) with odd keys: botocore asks for and
    // decodes encoding-type=url.
    let odd = "odd key+plus & ü.txt";
    aws_ok(&w, &acme, &["s3api", "put-object", "--bucket", "docs", "--key", odd, "--body", &body]);
    for k in ["dir/a", "dir/b", "dir/sub/c"] {
        aws_ok(&w, &acme, &["s3api", "put-object", "--bucket", "docs", "--key", k, "--body", &body]);
    }
    let all = aws_json(&w, &acme, &["s3api", "list-objects", "--bucket", "docs", "--page-size", "2"]);
    assert_eq!(listed_keys(&all), ["dir/a", "dir/b", "dir/sub/c", "dst.bin", odd, "src.bin", "y"], "{all}");
    let v2 = aws_json(&w, &acme, &["s3api", "list-objects-v2", "--bucket", "docs", "--prefix", "odd"]);
    assert_eq!(listed_keys(&v2), [odd], "{v2}");
    // Owners: always in version 1, in version 2 when fetch-owner asks.
    assert_eq!(all["Contents"][0]["Owner"]["ID"], "acme/web", "{all}");
    assert!(v2["Contents"][0].get("Owner").is_none(), "{v2}");
    let owned =
        aws_json(&w, &acme, &["s3api", "list-objects-v2", "--bucket", "docs", "--prefix", "odd", "--fetch-owner"]);
    assert_eq!(owned["Contents"][0]["Owner"]["ID"], "acme/web", "{owned}");
    let rolled =
        aws_json(&w, &acme, &["s3api", "list-objects", "--bucket", "docs", "--delimiter", "/", "--page-size", "1"]);
    let prefixes: Vec<&str> =
        rolled["CommonPrefixes"].as_array().unwrap().iter().map(|p| p["Prefix"].as_str().unwrap()).collect();
    assert_eq!(prefixes, ["dir/"], "a common prefix once across pages: {rolled}");
    assert_eq!(listed_keys(&rolled), ["dst.bin", odd, "src.bin", "y"], "{rolled}");

    // Multi-object delete: named keys go (absent ones count as deleted); quiet answers nothing.
    let del = json!({"Objects": [{"Key": "dir/a"}, {"Key": "dir/b"}, {"Key": "never-was"}]}).to_string();
    let v = aws_json(&w, &acme, &["s3api", "delete-objects", "--bucket", "docs", "--delete", &del]);
    assert_eq!(v["Deleted"].as_array().map(Vec::len), Some(3), "{v}");
    let quiet = json!({"Objects": [{"Key": "dir/sub/c"}], "Quiet": true}).to_string();
    let out = aws_ok(&w, &acme, &["s3api", "delete-objects", "--bucket", "docs", "--delete", &quiet]);
    assert!(!out.contains("dir/sub/c"), "quiet: {out}");
    let left = aws_json(&w, &acme, &["s3api", "list-objects-v2", "--bucket", "docs", "--prefix", "dir/"]);
    assert!(listed_keys(&left).is_empty(), "{left}");
    aws_refused(&w, &globex, &["s3api", "delete-objects", "--bucket", "docs", "--delete", &del], "AccessDenied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_s3_error_and_the_gateway_keeps_serving() {
    use reqwest::Method;
    use ultracloud_lightningstor::client::s3::{S3Client, S3Key};
    let w = World::start().await;
    let acme = w.project_key("acme", "web").await;
    let key = S3Key { access_key_id: acme.0.clone(), secret_access_key: acme.1.clone() };
    let s3 = S3Client::new(&w.s3, key.clone()).unwrap();
    s3.create_bucket("inputs").await.unwrap();
    let body = bytes::Bytes::from_static(b"still here");
    s3.put_object("inputs", "ok", body.clone()).await.unwrap();
    let refused = |r: Result<reqwest::Response, ultracloud_lightningstor::client::s3::S3Error>| match r {
        Ok(resp) => panic!("accepted: {}", resp.status()),
        Err(e) => (e.status().unwrap_or(0), e.code().to_owned()),
    };
    let empty = bytes::Bytes::new();

    // Signatures: a clock an hour off, a wrong secret.
    let skewed = s3.clone().with_clock_offset(-3600);
    let e = skewed.get_object("inputs", "ok").await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(403), "RequestTimeTooSkewed"), "{e}");
    let forged = S3Client::new(&w.s3, S3Key { secret_access_key: "y".repeat(40), ..key }).unwrap();
    assert_eq!(forged.get_object("inputs", "ok").await.unwrap_err().code(), "SignatureDoesNotMatch");

    // Keys, XML bodies, upload IDs and part numbers.
    let long = "k".repeat(1025);
    let e = s3.put_object("inputs", &long, body.clone()).await.unwrap_err();
    assert_eq!(e.code(), "KeyTooLongError", "{e}");
    let garbage = bytes::Bytes::from_static(b"<Delete><Object><Key>a</Key></Object");
    let (status, code) = refused(s3.request(Method::POST, "inputs", None, &[("delete", "")], garbage.clone()).await);
    assert_eq!((status, code.as_str()), (400, "MalformedXML"));
    let (status, code) =
        refused(s3.request(Method::POST, "inputs", Some("mp"), &[("uploadId", "u-none")], garbage).await);
    assert!(status == 400 && code == "MalformedXML", "{status} {code}");
    let done = bytes::Bytes::from_static(
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"x\"</ETag></Part></CompleteMultipartUpload>",
    );
    let (_, code) = refused(s3.request(Method::POST, "inputs", Some("mp"), &[("uploadId", "u-none")], done).await);
    assert_eq!(code, "NoSuchUpload");
    let (_, code) = refused(
        s3.request(Method::PUT, "inputs", Some("mp"), &[("partNumber", "1"), ("uploadId", "u-none")], body.clone())
            .await,
    );
    assert_eq!(code, "NoSuchUpload");
    let (_, code) = refused(
        s3.request(Method::PUT, "inputs", Some("mp"), &[("partNumber", "10001"), ("uploadId", "u-none")], body.clone())
            .await,
    );
    assert_eq!(code, "InvalidArgument");
    let (_, code) = refused(s3.request(Method::GET, "inputs", None, &[("max-keys", "-1")], empty.clone()).await);
    assert_eq!(code, "InvalidArgument");
    let (_, code) = refused(
        s3.request(Method::GET, "inputs", None, &[("list-type", "2"), ("continuation-token", "!")], empty).await,
    );
    assert_eq!(code, "InvalidArgument");

    // Server-side encryption is not offered: asking for it is refused, never ignored.
    for sse in [&["--server-side-encryption", "AES256"][..], &["--server-side-encryption", "aws:kms"]] {
        let put = [&["s3api", "put-object", "--bucket", "inputs", "--key", "secret"][..], sse].concat();
        aws_refused(&w, &acme, &put, "NotImplemented");
        let create = [&["s3api", "create-multipart-upload", "--bucket", "inputs", "--key", "secret"][..], sse].concat();
        aws_refused(&w, &acme, &create, "NotImplemented");
    }
    aws_refused(&w, &acme, &["s3api", "head-object", "--bucket", "inputs", "--key", "secret"], "404");

    // Oversized headers are refused by the HTTP layer, not by a crash.
    let r = reqwest::Client::new()
        .get(format!("{}/inputs/ok", w.s3))
        .header("x-amz-meta-huge", "h".repeat(256 * 1024))
        .send()
        .await;
    assert!(r.as_ref().map_or(true, |r| r.status().is_client_error()), "{r:?}");

    // Through all of it the gateway kept serving.
    assert_eq!(s3.get_object("inputs", "ok").await.unwrap(), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_and_bucket_tags() {
    if aws_missing() {
        return;
    }
    let w = World::start().await;
    let acme = w.project_key("acme", "web").await;
    let globex = w.project_key("globex", "app").await;
    let files = tempfile::tempdir().unwrap();
    aws_ok(&w, &acme, &["s3api", "create-bucket", "--bucket", "tagged"]);
    let body = write(&files.path().join("body"), b"tag me");
    let obj = ["--bucket", "tagged", "--key", "a.txt"];
    let with =
        |cmd: &'static str, extra: &[&'static str]| -> Vec<&'static str> { [&["s3api", cmd][..], extra].concat() };
    let tags_of = |key: &str| -> Vec<(String, String)> {
        let v = aws_json(&w, &acme, &["s3api", "get-object-tagging", "--bucket", "tagged", "--key", key]);
        v["TagSet"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["Key"].as_str().unwrap().into(), t["Value"].as_str().unwrap().into()))
            .collect()
    };

    // x-amz-tagging on PUT, then the tagging API, then copies keeping or replacing the tags.
    aws_ok(
        &w,
        &acme,
        &[&with("put-object", &["--body"])[..], &[body.as_str()], &obj, &["--tagging", "team=blue&cost+center=r%26d"]]
            .concat(),
    );
    assert_eq!(tags_of("a.txt"), [("cost center".into(), "r&d".into()), ("team".into(), "blue".into())]);
    let got = files.path().join("got");
    let v = aws_json(&w, &acme, &[&with("get-object", &obj)[..], &[got.to_str().unwrap()]].concat());
    assert_eq!(v["TagCount"].as_u64(), Some(2), "{v}");
    let set = json!({"TagSet": [{"Key": "stage", "Value": "prod"}]}).to_string();
    aws_ok(&w, &acme, &[&with("put-object-tagging", &obj)[..], &["--tagging", &set]].concat());
    assert_eq!(tags_of("a.txt"), [("stage".into(), "prod".into())]);
    aws_ok(
        &w,
        &acme,
        &["s3api", "copy-object", "--copy-source", "tagged/a.txt", "--bucket", "tagged", "--key", "b.txt"],
    );
    assert_eq!(tags_of("b.txt"), [("stage".into(), "prod".into())], "COPY keeps the tags");
    aws_ok(
        &w,
        &acme,
        &[
            "s3api",
            "copy-object",
            "--copy-source",
            "tagged/a.txt",
            "--bucket",
            "tagged",
            "--key",
            "c.txt",
            "--tagging-directive",
            "REPLACE",
            "--tagging",
            "new=1",
        ],
    );
    assert_eq!(tags_of("c.txt"), [("new".into(), "1".into())], "REPLACE takes the header's");
    aws_ok(&w, &acme, &with("delete-object-tagging", &obj));
    assert!(tags_of("a.txt").is_empty());
    let reserved = json!({"TagSet": [{"Key": "aws:x", "Value": "1"}]}).to_string();
    aws_refused(&w, &acme, &[&with("put-object-tagging", &obj)[..], &["--tagging", &reserved]].concat(), "InvalidTag");
    aws_refused(&w, &acme, &["s3api", "get-object-tagging", "--bucket", "tagged", "--key", "nope"], "NoSuchKey");
    aws_refused(&w, &globex, &with("get-object-tagging", &obj), "AccessDenied");
    aws_refused(&w, &globex, &[&with("put-object-tagging", &obj)[..], &["--tagging", &set]].concat(), "AccessDenied");

    // Bucket tags.
    let bucket = ["--bucket", "tagged"];
    aws_refused(&w, &acme, &with("get-bucket-tagging", &bucket), "NoSuchTagSet");
    aws_ok(&w, &acme, &[&with("put-bucket-tagging", &bucket)[..], &["--tagging", &set]].concat());
    let v = aws_json(&w, &acme, &with("get-bucket-tagging", &bucket));
    assert_eq!(v["TagSet"][0]["Key"], "stage", "{v}");
    aws_refused(&w, &globex, &with("get-bucket-tagging", &bucket), "AccessDenied");
    aws_ok(&w, &acme, &with("delete-bucket-tagging", &bucket));
    aws_refused(&w, &acme, &with("get-bucket-tagging", &bucket), "NoSuchTagSet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_work_until_they_expire() {
    if aws_missing() {
        return;
    }
    let w = World::start().await;
    let acme = w.project_key("acme", "web").await;
    let files = tempfile::tempdir().unwrap();
    aws_ok(&w, &acme, &["s3api", "create-bucket", "--bucket", "shared"]);
    let body = write(&files.path().join("body"), b"for anyone with the link");
    aws_ok(&w, &acme, &["s3api", "put-object", "--bucket", "shared", "--key", "note.txt", "--body", &body]);
    // A URL signed by `aws s3 presign` (query auth) reads the object without credentials.
    let url = aws_ok(&w, &acme, &["s3", "presign", "s3://shared/note.txt", "--expires-in", "60"]);
    let r = reqwest::get(url.trim()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "for anyone with the link");
    // Tampered with, or expired, it reads nothing.
    let tampered = url.trim().replace("note.txt", "other.txt");
    assert_eq!(reqwest::get(&tampered).await.unwrap().status(), 403);
    let short = aws_ok(&w, &acme, &["s3", "presign", "s3://shared/note.txt", "--expires-in", "1"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = reqwest::get(short.trim()).await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert!(status == 403 && text.contains("AccessDenied"), "an expired URL: {status} {text}");
    // Unsigned requests are anonymous, and anonymous requests are refused.
    let r = reqwest::get(format!("{}/shared/note.txt", w.s3)).await.unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_part_copy_joins_ranges_of_other_objects() {
    if aws_missing() {
        return;
    }
    let w = World::start().await;
    let acme = w.project_key("acme", "web").await;
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..7_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let tail = b"and a small tail";
    aws_ok(&w, &acme, &["s3api", "create-bucket", "--bucket", "parts"]);
    let src = write(&dir.path().join("src"), &data);
    aws_ok(&w, &acme, &["s3api", "put-object", "--bucket", "parts", "--key", "src", "--body", &src]);
    let small = write(&dir.path().join("small"), tail);
    aws_ok(&w, &acme, &["s3api", "put-object", "--bucket", "parts", "--key", "small", "--body", &small]);
    let upload = aws_json(&w, &acme, &["s3api", "create-multipart-upload", "--bucket", "parts", "--key", "joined"]);
    let id = upload["UploadId"].as_str().unwrap().to_owned();
    let ids = ["--bucket", "parts", "--key", "joined", "--upload-id", &id];
    let copy_part = |number: &str, source: &str, range: Option<&str>| {
        let mut args = vec!["s3api", "upload-part-copy", "--part-number", number, "--copy-source", source];
        if let Some(r) = range {
            args.extend(["--copy-source-range", r]);
        }
        args.extend(ids);
        aws_json(&w, &acme, &args)
    };
    let first = copy_part("1", "parts/src", Some("bytes=0-5242879"));
    let second = copy_part("2", "parts/src", None);
    let third = copy_part("3", "parts/small", None);
    let etag = |v: &Value| v["CopyPartResult"]["ETag"].as_str().unwrap().to_owned();
    let md5 = |b: &[u8]| format!("\"{}\"", hex::encode(<s3s::crypto::Md5 as s3s::crypto::Checksum>::checksum(b)));
    assert_eq!(etag(&first), md5(&data[..5_242_880]), "a part's ETag is the MD5 of its bytes");
    let parts = parts_json(&[(1, &etag(&first)), (2, &etag(&second)), (3, &etag(&third))]);
    aws_ok(&w, &acme, &[&["s3api", "complete-multipart-upload", "--multipart-upload", &parts][..], &ids].concat());
    let out = dir.path().join("out");
    aws_ok(&w, &acme, &["s3api", "get-object", "--bucket", "parts", "--key", "joined", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), [&data[..5_242_880], &data[..], &tail[..]].concat());

    // Refusals: a malformed range, one past the end, a missing source, another project's.
    let upload = aws_json(&w, &acme, &["s3api", "create-multipart-upload", "--bucket", "parts", "--key", "again"]);
    let id = upload["UploadId"].as_str().unwrap().to_owned();
    let part = |source: &str, range: &str| -> Vec<String> {
        ["s3api", "upload-part-copy", "--part-number", "1", "--copy-source", source, "--copy-source-range", range]
            .into_iter()
            .chain(["--bucket", "parts", "--key", "again", "--upload-id", &id])
            .map(str::to_owned)
            .collect()
    };
    let refused = |args: Vec<String>, code: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        aws_refused(&w, &acme, &args, code);
    };
    refused(part("parts/src", "bytes=10-5"), "InvalidArgument");
    refused(part("parts/src", "bytes=0-7000000"), "InvalidRange");
    refused(part("parts/nothing", "bytes=0-1"), "NoSuchKey");
    let other = w.project_key("other", "proj").await;
    aws_ok(&w, &other, &["s3api", "create-bucket", "--bucket", "theirs"]);
    refused(part("theirs/x", "bytes=0-1"), "AccessDenied");

    // Uploads listed with a delimiter roll up into common prefixes, page by page too.
    for key in ["dir/a", "dir/b", "dir/sub/c"] {
        aws_ok(&w, &acme, &["s3api", "create-multipart-upload", "--bucket", "parts", "--key", key]);
    }
    let list = |extra: &[&str]| {
        aws_json(
            &w,
            &acme,
            &[&["s3api", "list-multipart-uploads", "--bucket", "parts", "--delimiter", "/"][..], extra].concat(),
        )
    };
    let keys = |v: &Value| -> (Vec<String>, Vec<String>) {
        let field = |f: &str, k: &str| -> Vec<String> {
            v[f].as_array().map(|a| a.iter().map(|u| u[k].as_str().unwrap().to_owned()).collect()).unwrap_or_default()
        };
        (field("Uploads", "Key"), field("CommonPrefixes", "Prefix"))
    };
    let whole = keys(&list(&[]));
    assert_eq!(whole, (vec!["again".to_owned()], vec!["dir/".to_owned()]));
    assert_eq!(keys(&list(&["--page-size", "1"])), whole, "one entry per page gives the same");
    let inside = keys(&list(&["--prefix", "dir/"]));
    assert_eq!(inside, (vec!["dir/a".to_owned(), "dir/b".to_owned()], vec!["dir/sub/".to_owned()]));
}
