//! S3 versioning driven by the AWS CLI against the real gateway: versions, the `null` version
//! from before versioning, delete markers, reads and deletes of a named version (the next one
//! taking the newest's place), copies of an old version, suspension, paging through
//! ListObjectVersions, and the refusals.

use serde_json::Value;

use crate::gateway::{World, aws_json, aws_missing, aws_ok, aws_refused, write};

type Key = (String, String);
/// (key, version ID, whether it is the newest) of a listed version or delete marker.
type Listed = Vec<(String, String, bool)>;

/// GET of `key` (a version when `version` names one): the answer's headers and the bytes.
fn get(w: &World, k: &Key, dir: &std::path::Path, key: &str, version: Option<&str>) -> (Value, Vec<u8>) {
    let out = dir.join("got");
    let out = out.to_str().unwrap();
    let mut args = vec!["s3api", "get-object", "--bucket", "vers", "--key", key];
    if let Some(v) = version {
        args.extend(["--version-id", v]);
    }
    args.push(out);
    let v = aws_json(w, k, &args);
    (v, std::fs::read(out).unwrap())
}

fn put(w: &World, k: &Key, dir: &std::path::Path, key: &str, body: &str) -> Value {
    let file = write(&dir.join("body"), body.as_bytes());
    aws_json(w, k, &["s3api", "put-object", "--bucket", "vers", "--key", key, "--body", &file])
}

/// (key, version ID, latest) of each version, then of each delete marker, of a listing.
fn versions_of(listing: &Value) -> (Listed, Listed) {
    let rows = |field: &str| -> Listed {
        listing[field]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| {
                        let s = |f: &str| v[f].as_str().unwrap_or_default().to_owned();
                        (s("Key"), s("VersionId"), v["IsLatest"].as_bool().unwrap_or(false))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    (rows("Versions"), rows("DeleteMarkers"))
}

fn listing(w: &World, k: &Key, extra: &[&str]) -> Value {
    aws_json(w, k, &[&["s3api", "list-object-versions", "--bucket", "vers"][..], extra].concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_delete_markers_suspension_and_paging() {
    if aws_missing() {
        return;
    }
    let w = World::start().await;
    let k = w.project_key("acme", "web").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    aws_ok(&w, &k, &["s3api", "create-bucket", "--bucket", "vers"]);
    let status = aws_ok(&w, &k, &["s3api", "get-bucket-versioning", "--bucket", "vers"]);
    assert!(!status.contains("Status"), "never enabled: no status: {status}");
    assert!(put(&w, &k, d, "k", "zero").get("VersionId").is_none(), "no version IDs before versioning");

    aws_ok(
        &w,
        &k,
        &["s3api", "put-bucket-versioning", "--bucket", "vers", "--versioning-configuration", "Status=Enabled"],
    );
    let status = aws_json(&w, &k, &["s3api", "get-bucket-versioning", "--bucket", "vers"]);
    assert_eq!(status["Status"], "Enabled");
    let v1 = put(&w, &k, d, "k", "one")["VersionId"].as_str().unwrap().to_owned();
    let v2 = put(&w, &k, d, "k", "two")["VersionId"].as_str().unwrap().to_owned();
    assert_ne!(v1, v2);
    // Tags belong to a version.
    let tag = ["--tagging", "TagSet=[{Key=era,Value=first}]"];
    aws_ok(
        &w,
        &k,
        &[&["s3api", "put-object-tagging", "--bucket", "vers", "--key", "k", "--version-id", &v1][..], &tag].concat(),
    );
    let tags = |version: &str| {
        aws_json(&w, &k, &["s3api", "get-object-tagging", "--bucket", "vers", "--key", "k", "--version-id", version])
    };
    assert_eq!(tags(&v1)["TagSet"][0]["Value"], "first");
    assert_eq!(tags(&v2)["TagSet"].as_array().map(Vec::len), Some(0));
    let (head, body) = get(&w, &k, d, "k", None);
    assert_eq!((body.as_slice(), head["VersionId"].as_str()), (&b"two"[..], Some(v2.as_str())));
    assert_eq!(get(&w, &k, d, "k", Some(&v1)).1, b"one");
    assert_eq!(get(&w, &k, d, "k", Some("null")).1, b"zero", "the object from before versioning is `null`");
    let all = listing(&w, &k, &[]);
    assert_eq!(
        versions_of(&all).0,
        vec![("k".into(), v2.clone(), true), ("k".into(), v1.clone(), false), ("k".into(), "null".into(), false)],
        "newest first: {all}"
    );

    // A delete adds a marker: the key is gone from GETs and listings, its versions stay.
    let deleted = aws_json(&w, &k, &["s3api", "delete-object", "--bucket", "vers", "--key", "k"]);
    assert_eq!(deleted["DeleteMarker"], true, "{deleted}");
    let m1 = deleted["VersionId"].as_str().unwrap().to_owned();
    aws_refused(&w, &k, &["s3api", "head-object", "--bucket", "vers", "--key", "k"], "404");
    aws_refused(&w, &k, &["s3api", "head-object", "--bucket", "vers", "--key", "k", "--version-id", &m1], "405");
    let listed = aws_ok(&w, &k, &["s3api", "list-objects-v2", "--bucket", "vers"]);
    assert!(!listed.contains("\"k\""), "{listed}");
    let (versions, markers) = versions_of(&listing(&w, &k, &[]));
    assert_eq!(markers, vec![("k".into(), m1.clone(), true)]);
    assert!(versions.iter().all(|v| !v.2), "no object version is the newest: {versions:?}");

    // Deleting the marker brings the newest version back; deleting that, the one before.
    let undeleted =
        aws_json(&w, &k, &["s3api", "delete-object", "--bucket", "vers", "--key", "k", "--version-id", &m1]);
    assert_eq!((undeleted["DeleteMarker"].as_bool(), undeleted["VersionId"].as_str()), (Some(true), Some(m1.as_str())));
    assert_eq!(get(&w, &k, d, "k", None).1, b"two");
    aws_ok(&w, &k, &["s3api", "delete-object", "--bucket", "vers", "--key", "k", "--version-id", &v2]);
    assert_eq!(get(&w, &k, d, "k", None).1, b"one");
    aws_refused(&w, &k, &["s3api", "head-object", "--bucket", "vers", "--key", "k", "--version-id", &v2], "404");

    // A copy of an old version.
    let copied = aws_json(
        &w,
        &k,
        &["s3api", "copy-object", "--bucket", "vers", "--key", "c", "--copy-source", "vers/k?versionId=null"],
    );
    assert_eq!(copied["CopySourceVersionId"], "null", "{copied}");
    let c_version = copied["VersionId"].as_str().unwrap().to_owned();
    assert_eq!(get(&w, &k, d, "c", None).1, b"zero");

    // Suspended: new writes are the `null` version, replacing the old `null` one.
    aws_ok(
        &w,
        &k,
        &["s3api", "put-bucket-versioning", "--bucket", "vers", "--versioning-configuration", "Status=Suspended"],
    );
    assert_eq!(put(&w, &k, d, "k", "three")["VersionId"], "null");
    let (versions, _) = versions_of(&listing(&w, &k, &["--prefix", "k"]));
    assert_eq!(versions, vec![("k".into(), "null".into(), true), ("k".into(), v1.clone(), false)]);
    assert_eq!(get(&w, &k, d, "k", Some("null")).1, b"three");

    // Paging one entry at a time (the CLI follows the key and version-ID markers) lists the
    // same as one page; a delimiter rolls keys up.
    for i in 0..3 {
        put(&w, &k, d, &format!("dir/{i}"), "x");
    }
    let whole = versions_of(&listing(&w, &k, &[]));
    let paged = versions_of(&listing(&w, &k, &["--page-size", "1"]));
    assert_eq!(whole, paged);
    assert_eq!(whole.0.len(), 6, "{whole:?}");
    let rolled = listing(&w, &k, &["--delimiter", "/"]);
    assert_eq!(rolled["CommonPrefixes"][0]["Prefix"], "dir/", "{rolled}");
    assert_eq!(versions_of(&rolled).0.len(), 3, "{rolled}");

    // Refusals.
    aws_refused(
        &w,
        &k,
        &["s3api", "get-object", "--bucket", "vers", "--key", "k", "--version-id", "bogus", "/dev/null"],
        "InvalidArgument",
    );
    let unknown = "0".repeat(24);
    aws_refused(
        &w,
        &k,
        &["s3api", "get-object", "--bucket", "vers", "--key", "k", "--version-id", &unknown, "/dev/null"],
        "NoSuchVersion",
    );
    aws_refused(&w, &k, &["s3api", "delete-bucket", "--bucket", "vers"], "BucketNotEmpty");

    // Deleting every version (one multi-object delete) empties the bucket.
    let mut names: Vec<String> = vec![
        "{Key=k,VersionId=null}".to_owned(),
        format!("{{Key=k,VersionId={v1}}}"),
        format!("{{Key=c,VersionId={c_version}}}"),
    ];
    names.extend((0..3).map(|i| format!("{{Key=dir/{i},VersionId=null}}")));
    let spec = format!("Objects=[{}],Quiet=false", names.join(","));
    let gone = aws_json(&w, &k, &["s3api", "delete-objects", "--bucket", "vers", "--delete", &spec]);
    assert_eq!(gone["Deleted"].as_array().map(Vec::len), Some(6), "{gone}");
    assert_eq!(versions_of(&listing(&w, &k, &[])), (vec![], vec![]));
    aws_ok(&w, &k, &["s3api", "delete-bucket", "--bucket", "vers"]);
}

/// Markers are positions: a client that deletes each page of ListObjectVersions before asking
/// for the next (ceph s3-tests' clean-up does) names a version that no longer exists — the
/// `null` version of an unversioned bucket, or a real version ID — and the listing goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_markers_of_deleted_versions_still_page() {
    if aws_missing() {
        return;
    }
    let w = World::start().await;
    let acme = w.project_key("acme", "web").await;
    let page = |bucket: &str, marker: Option<(&str, &str)>| -> Value {
        let mut args = vec!["s3api", "list-object-versions", "--bucket", bucket, "--max-keys", "1", "--no-paginate"];
        if let Some((key, version)) = marker {
            args.extend(["--key-marker", key, "--version-id-marker", version]);
        }
        aws_json(&w, &acme, &args)
    };
    for (bucket, versioned) in [("plain", false), ("kept", true)] {
        aws_ok(&w, &acme, &["s3api", "create-bucket", "--bucket", bucket]);
        if versioned {
            let on = ["--versioning-configuration", "Status=Enabled"];
            aws_ok(&w, &acme, &[&["s3api", "put-bucket-versioning", "--bucket", bucket][..], &on].concat());
        }
        for key in ["a", "b", "c"] {
            aws_ok(&w, &acme, &["s3api", "put-object", "--bucket", bucket, "--key", key]);
        }
        let mut seen = Vec::new();
        let mut marker: Option<(String, String)> = None;
        loop {
            let v = page(bucket, marker.as_ref().map(|(k, id)| (k.as_str(), id.as_str())));
            for entry in v["Versions"].as_array().into_iter().flatten() {
                let (key, id) = (entry["Key"].as_str().unwrap(), entry["VersionId"].as_str().unwrap());
                seen.push(key.to_owned());
                aws_ok(&w, &acme, &["s3api", "delete-object", "--bucket", bucket, "--key", key, "--version-id", id]);
            }
            if v["IsTruncated"] != Value::Bool(true) {
                break;
            }
            let next = |f: &str| v[f].as_str().unwrap().to_owned();
            marker = Some((next("NextKeyMarker"), next("NextVersionIdMarker")));
        }
        assert_eq!(seen, ["a", "b", "c"], "{bucket}");
        aws_ok(&w, &acme, &["s3api", "delete-bucket", "--bucket", bucket]);
    }
}
