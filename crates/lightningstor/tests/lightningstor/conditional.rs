//! Conditional writes and deletes against the real gateway: If-None-Match (create only) and
//! If-Match on PUT and CompleteMultipartUpload, If-Match / if-match-size on DELETE and per
//! key of DeleteObjects — driven by the AWS CLI — and create-only PUTs racing each other,
//! of which exactly one may win.

use serde_json::Value;

use crate::gateway::{World, aws_json, aws_missing, aws_ok, aws_refused, write};

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn etag_of(v: &Value) -> String {
    v["ETag"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_puts_completes_and_deletes() {
    if aws_missing() {
        return;
    }
    let w = World::start().await;
    let acme = w.project_key("acme", "web").await;
    let dir = tempfile::tempdir().unwrap();
    let one = write(&dir.path().join("one"), b"one");
    let two = write(&dir.path().join("two"), b"two");
    aws_ok(&w, &acme, &["s3api", "create-bucket", "--bucket", "cond"]);
    let put = |key: &str, body: &str, extra: &[&str]| -> Vec<String> {
        [&["s3api", "put-object", "--bucket", "cond", "--key", key, "--body", body][..], extra]
            .concat()
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    let body_of = |key: &str| -> String {
        let out = dir.path().join("got");
        aws_ok(&w, &acme, &["s3api", "get-object", "--bucket", "cond", "--key", key, out.to_str().unwrap()]);
        String::from_utf8(std::fs::read(out).unwrap()).unwrap()
    };

    // Create only.
    let first = etag_of(&aws_json(&w, &acme, &args(&put("k", &one, &["--if-none-match", "*"]))));
    aws_refused(&w, &acme, &args(&put("k", &two, &["--if-none-match", "*"])), "PreconditionFailed");
    aws_refused(&w, &acme, &args(&put("k", &two, &["--if-none-match", &first])), "PreconditionFailed");
    assert_eq!(body_of("k"), "one", "a refused PUT changed nothing");
    // Replace only what was read.
    aws_refused(&w, &acme, &args(&put("k", &two, &["--if-match", "\"0123\""])), "PreconditionFailed");
    let second = etag_of(&aws_json(&w, &acme, &args(&put("k", &two, &["--if-match", &first]))));
    assert_eq!(body_of("k"), "two");
    aws_refused(&w, &acme, &args(&put("k", &one, &["--if-match", &first])), "PreconditionFailed");
    // If-Match on a key without an object is 404, as in S3.
    aws_refused(&w, &acme, &args(&put("absent", &one, &["--if-match", "*"])), "NoSuchKey");
    aws_refused(&w, &acme, &args(&put("absent", &one, &["--if-match", &first])), "NoSuchKey");

    // Deletes: only the version named by ETag or size goes; nothing to delete is no refusal.
    let del = |extra: &[&str]| -> Vec<String> {
        [&["s3api", "delete-object", "--bucket", "cond", "--key", "k"][..], extra]
            .concat()
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    aws_refused(&w, &acme, &args(&del(&["--if-match", &first])), "PreconditionFailed");
    aws_refused(&w, &acme, &args(&del(&["--if-match-size", "99"])), "PreconditionFailed");
    assert_eq!(body_of("k"), "two", "a refused DELETE changed nothing");
    aws_ok(&w, &acme, &args(&del(&["--if-match", &second, "--if-match-size", "3"])));
    aws_ok(&w, &acme, &args(&del(&["--if-match", "\"0123\""])));

    // CompleteMultipartUpload under a condition; a refused one leaves the upload to retry.
    aws_ok(&w, &acme, &args(&put("mp", &one, &[])));
    let upload = aws_json(&w, &acme, &["s3api", "create-multipart-upload", "--bucket", "cond", "--key", "mp"]);
    let id = upload["UploadId"].as_str().unwrap().to_owned();
    let part = aws_json(
        &w,
        &acme,
        &[
            "s3api",
            "upload-part",
            "--bucket",
            "cond",
            "--key",
            "mp",
            "--upload-id",
            &id,
            "--part-number",
            "1",
            "--body",
            &two,
        ],
    );
    let parts = format!(r#"{{"Parts":[{{"PartNumber":1,"ETag":{}}}]}}"#, part["ETag"]);
    let complete = |extra: &[&str]| -> Vec<String> {
        [
            &["s3api", "complete-multipart-upload", "--bucket", "cond", "--key", "mp", "--upload-id", &id][..],
            &["--multipart-upload", &parts],
            extra,
        ]
        .concat()
        .into_iter()
        .map(str::to_owned)
        .collect()
    };
    aws_refused(&w, &acme, &args(&complete(&["--if-none-match", "*"])), "PreconditionFailed");
    assert_eq!(body_of("mp"), "one");
    let mp = etag_of(&aws_json(&w, &acme, &args(&complete(&["--if-match", &first]))));
    assert!(mp.ends_with("-1\""), "a multipart ETag: {mp}");
    assert_eq!(body_of("mp"), "two");

    // DeleteObjects: a key whose ETag differs is reported in Errors, the others go.
    aws_ok(&w, &acme, &args(&put("x", &one, &[])));
    let request = format!(
        r#"{{"Objects":[{{"Key":"x","ETag":"\"0123\""}},{{"Key":"mp","ETag":{}}}]}}"#,
        serde_json::to_string(&mp).unwrap()
    );
    let answer = aws_json(&w, &acme, &["s3api", "delete-objects", "--bucket", "cond", "--delete", &request]);
    assert_eq!(answer["Errors"][0]["Key"], "x", "{answer}");
    assert_eq!(answer["Errors"][0]["Code"], "PreconditionFailed", "{answer}");
    assert_eq!(answer["Deleted"][0]["Key"], "mp", "{answer}");
    assert_eq!(body_of("x"), "one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_create_only_puts_have_one_winner() {
    use ultracloud_lightningstor::client::s3::{S3Client, S3Key, WriteCondition};
    let w = World::start().await;
    let acme = w.project_key("acme", "web").await;
    let s3 = S3Client::new(&w.s3, S3Key { access_key_id: acme.0.clone(), secret_access_key: acme.1.clone() }).unwrap();
    s3.create_bucket("race").await.unwrap();
    for round in 0..3 {
        let key = format!("lock-{round}");
        let tries = (0..8).map(|i| {
            let (s3, key) = (s3.clone(), key.clone());
            tokio::spawn(async move {
                let body = bytes::Bytes::from(format!("writer {i}"));
                (i, s3.put_object_if("race", &key, body, Some(WriteCondition::IfAbsent)).await)
            })
        });
        let mut winners = Vec::new();
        for t in futures::future::join_all(tries).await {
            match t.unwrap() {
                (i, Ok(_)) => winners.push(i),
                (_, Err(e)) => assert_eq!((e.status(), e.code()), (Some(412), "PreconditionFailed"), "{e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one create-only PUT wins, not {winners:?}");
        let stored = s3.get_object("race", &key).await.unwrap();
        assert_eq!(stored, format!("writer {}", winners[0]).as_bytes(), "the winner's body is what is stored");
        // Compare-and-swap on the ETag: a stale ETag loses.
        let etag = s3.put_object_if("race", &key, "v2".into(), None).await.unwrap();
        let stale = s3.put_object_if("race", &key, "v3".into(), Some(WriteCondition::IfMatch("0123"))).await;
        assert_eq!(stale.unwrap_err().code(), "PreconditionFailed");
        s3.put_object_if("race", &key, "v3".into(), Some(WriteCondition::IfMatch(&etag))).await.unwrap();
        assert_eq!(s3.get_object("race", &key).await.unwrap(), "v3".as_bytes());
    }
}
