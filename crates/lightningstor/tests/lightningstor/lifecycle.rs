//! Lifecycle rules set with the AWS CLI and applied by the gateway's expiry pass (run here
//! with a clock days ahead): newest versions expired by prefix and age, abandoned multipart
//! uploads aborted, older versions deleted some days after they stopped being the newest,
//! delete markers left alone removed; and the refusals.

use serde_json::Value;
use ultracloud_lightningstor::gateway::expiry;
use ultracloud_lightningstor::gateway::lifecycle::DAY_MS;
use ultracloud_lightningstor::gateway::meta::Meta;

use crate::gateway::{World, aws_json, aws_missing, aws_ok, aws_refused, write};

fn keys(listing: &Value, field: &str) -> Vec<String> {
    listing[field]
        .as_array()
        .map(|a| a.iter().map(|o| o["Key"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_expire_objects_versions_markers_and_abandoned_uploads() {
    if aws_missing() {
        return;
    }
    let w = World::start().await;
    let k = w.project_key("acme", "web").await;
    let dir = tempfile::tempdir().unwrap();
    let body = write(&dir.path().join("body"), b"bytes");
    let meta = Meta::new(ultracloud_flaredb::Client::new(vec![w.s.db.to_string()]).unwrap());
    let put = |bucket: &str, key: &str| {
        aws_json(&w, &k, &["s3api", "put-object", "--bucket", bucket, "--key", key, "--body", &body])
    };

    // An unversioned bucket: logs expire after a day, uploads are aborted after two.
    aws_ok(&w, &k, &["s3api", "create-bucket", "--bucket", "life"]);
    aws_refused(
        &w,
        &k,
        &["s3api", "get-bucket-lifecycle-configuration", "--bucket", "life"],
        "NoSuchLifecycleConfiguration",
    );
    let rules = r#"{"Rules":[
        {"ID":"logs","Status":"Enabled","Filter":{"Prefix":"logs/"},"Expiration":{"Days":1}},
        {"ID":"uploads","Status":"Enabled","Filter":{"Prefix":""},"AbortIncompleteMultipartUpload":{"DaysAfterInitiation":2}}]}"#;
    aws_ok(
        &w,
        &k,
        &["s3api", "put-bucket-lifecycle-configuration", "--bucket", "life", "--lifecycle-configuration", rules],
    );
    let got = aws_json(&w, &k, &["s3api", "get-bucket-lifecycle-configuration", "--bucket", "life"]);
    assert_eq!(got["Rules"][0]["ID"], "logs", "{got}");
    assert_eq!(got["Rules"][0]["Expiration"]["Days"], 1, "{got}");
    assert_eq!(got["Rules"][1]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"], 2, "{got}");
    put("life", "logs/old");
    put("life", "keep/x");
    aws_ok(&w, &k, &["s3api", "create-multipart-upload", "--bucket", "life", "--key", "big"]);

    let now = ultracloud_runtime::clock::now_ms();
    let first = expiry::apply(&meta, now + DAY_MS + DAY_MS / 2).await.unwrap();
    assert_eq!((first.expired, first.uploads_aborted), (1, 0), "{first:?}");
    let listed = aws_json(&w, &k, &["s3api", "list-objects-v2", "--bucket", "life"]);
    assert_eq!(keys(&listed, "Contents"), ["keep/x"], "{listed}");
    let second = expiry::apply(&meta, now + 3 * DAY_MS).await.unwrap();
    assert_eq!((second.expired, second.uploads_aborted), (0, 1), "{second:?}");
    let uploads = aws_ok(&w, &k, &["s3api", "list-multipart-uploads", "--bucket", "life"]);
    assert!(!uploads.contains("\"big\""), "{uploads}");

    // A versioned bucket: older versions go a day after they were replaced, and a delete
    // marker left alone goes too.
    aws_ok(&w, &k, &["s3api", "create-bucket", "--bucket", "lifev"]);
    let on = ["s3api", "put-bucket-versioning", "--bucket", "lifev", "--versioning-configuration", "Status=Enabled"];
    aws_ok(&w, &k, &on);
    let rules = r#"{"Rules":[{"ID":"old","Status":"Enabled","Filter":{"Prefix":""},
        "NoncurrentVersionExpiration":{"NoncurrentDays":1},"Expiration":{"ExpiredObjectDeleteMarker":true}}]}"#;
    aws_ok(
        &w,
        &k,
        &["s3api", "put-bucket-lifecycle-configuration", "--bucket", "lifev", "--lifecycle-configuration", rules],
    );
    for _ in 0..3 {
        put("lifev", "k");
    }
    let newest = put("lifev", "k")["VersionId"].as_str().unwrap().to_owned();
    put("lifev", "gone");
    aws_ok(&w, &k, &["s3api", "delete-object", "--bucket", "lifev", "--key", "gone"]);
    let young = expiry::apply(&meta, now + DAY_MS / 2).await.unwrap();
    assert_eq!((young.noncurrent_deleted, young.markers_removed), (0, 0), "nothing is a day old: {young:?}");
    let aged = expiry::apply(&meta, now + 2 * DAY_MS).await.unwrap();
    assert_eq!((aged.noncurrent_deleted, aged.markers_removed), (4, 1), "{aged:?}");
    let versions = aws_json(&w, &k, &["s3api", "list-object-versions", "--bucket", "lifev"]);
    assert_eq!(keys(&versions, "Versions"), ["k"], "{versions}");
    assert_eq!(versions["Versions"][0]["VersionId"].as_str(), Some(newest.as_str()));
    assert!(keys(&versions, "DeleteMarkers").is_empty(), "{versions}");

    // Refusals: transitions (one storage class), a rule without an action; and removal.
    let transition = r#"{"Rules":[{"ID":"t","Status":"Enabled","Filter":{"Prefix":""},"Transitions":[{"Days":1,"StorageClass":"GLACIER"}]}]}"#;
    let set = ["s3api", "put-bucket-lifecycle-configuration", "--bucket", "life", "--lifecycle-configuration"];
    aws_refused(&w, &k, &[&set[..], &[transition]].concat(), "NotImplemented");
    let idle = r#"{"Rules":[{"ID":"idle","Status":"Enabled","Filter":{"Prefix":""}}]}"#;
    aws_refused(&w, &k, &[&set[..], &[idle]].concat(), "MalformedXML");
    aws_ok(&w, &k, &["s3api", "delete-bucket-lifecycle", "--bucket", "life"]);
    aws_refused(
        &w,
        &k,
        &["s3api", "get-bucket-lifecycle-configuration", "--bucket", "life"],
        "NoSuchLifecycleConfiguration",
    );
}
