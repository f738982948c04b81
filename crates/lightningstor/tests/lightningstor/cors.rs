//! CORS: rules set with the AWS CLI; browsers' preflights answered (or refused) by them, and
//! the `Access-Control-*` headers added to answers of requests from an admitted origin.

use crate::gateway::{World, aws_json, aws_missing, aws_ok, aws_refused, write};

/// An unsigned request with `headers`: (status, headers, body).
async fn call(
    w: &World,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut r = w.s.http.request(method, format!("{}{path}", w.s3));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.headers().clone(), r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_and_answers_follow_the_bucket_rules() {
    if aws_missing() {
        return;
    }
    let w = World::start().await;
    let k = w.project_key("acme", "web").await;
    let dir = tempfile::tempdir().unwrap();
    aws_ok(&w, &k, &["s3api", "create-bucket", "--bucket", "app", "--acl", "public-read"]);
    let file = write(&dir.path().join("f"), b"data");
    aws_ok(&w, &k, &["s3api", "put-object", "--bucket", "app", "--key", "f", "--body", &file]);
    aws_refused(&w, &k, &["s3api", "get-bucket-cors", "--bucket", "app"], "NoSuchCORSConfiguration");
    let app = "https://app.example.com";
    let preflight = |origin: &'static str, method: &'static str| {
        let headers = [
            ("Origin", origin),
            ("Access-Control-Request-Method", method),
            ("Access-Control-Request-Headers", "Content-Type, X-Amz-Date"),
        ];
        let w = &w;
        async move { call(w, reqwest::Method::OPTIONS, "/app/f", &headers).await }
    };
    let (status, _, body) = preflight("https://app.example.com", "PUT").await;
    assert_eq!(status, 403, "no rules yet: {body}");
    let (status, h, body) = call(&w, reqwest::Method::OPTIONS, "/app/f", &[]).await;
    assert!(status == 400 && body.contains("Origin request header needed"), "no Origin: {status} {body}");
    // Every answer names its request, an error document the same ID (as S3's do).
    let id = h["x-amz-request-id"].to_str().unwrap();
    assert!(body.contains(&format!("<RequestId>{id}</RequestId>")), "{id}: {body}");
    let (status, h, body) = call(&w, reqwest::Method::GET, "/app/missing", &[]).await;
    let id = h["x-amz-request-id"].to_str().unwrap();
    assert!(status == 404 && body.contains(&format!("<RequestId>{id}</RequestId>")), "{status} {id}: {body}");

    let config = r#"{"CORSRules":[{"AllowedOrigins":["https://app.example.com"],"AllowedMethods":["GET","PUT"],
        "AllowedHeaders":["*"],"ExposeHeaders":["ETag"],"MaxAgeSeconds":600}]}"#;
    aws_ok(&w, &k, &["s3api", "put-bucket-cors", "--bucket", "app", "--cors-configuration", config]);
    let got = aws_json(&w, &k, &["s3api", "get-bucket-cors", "--bucket", "app"]);
    assert_eq!(got["CORSRules"][0]["MaxAgeSeconds"], 600, "{got}");

    let (status, h, body) = preflight("https://app.example.com", "PUT").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h["access-control-allow-origin"], app);
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("PUT"));
    assert_eq!(h["access-control-allow-headers"], "content-type, x-amz-date");
    assert_eq!(h["access-control-max-age"], "600");
    let (status, _, body) = preflight("https://evil.example.org", "PUT").await;
    assert!(status == 403 && body.contains("AccessForbidden"), "{status} {body}");
    let (status, _, _) = preflight("https://app.example.com", "DELETE").await;
    assert_eq!(status, 403, "a method no rule allows");

    // A request from an admitted origin gets the headers; another origin's does not.
    let (status, h, body) = call(&w, reqwest::Method::GET, "/app/f", &[("Origin", app)]).await;
    assert_eq!((status, body.as_str()), (200, "data"));
    assert_eq!(h["access-control-allow-origin"], app);
    assert_eq!(h["access-control-expose-headers"], "ETag");
    let (_, h, _) = call(&w, reqwest::Method::GET, "/app/f", &[("Origin", "https://evil.example.org")]).await;
    assert!(h.get("access-control-allow-origin").is_none());

    // Bad rules are refused; deleting the configuration closes the door again.
    let bad = r#"{"CORSRules":[{"AllowedOrigins":["*"],"AllowedMethods":["PATCH"]}]}"#;
    aws_refused(
        &w,
        &k,
        &["s3api", "put-bucket-cors", "--bucket", "app", "--cors-configuration", bad],
        "InvalidRequest",
    );
    let stranger = w.project_key("evil", "ops").await;
    aws_refused(
        &w,
        &stranger,
        &["s3api", "put-bucket-cors", "--bucket", "app", "--cors-configuration", config],
        "AccessDenied",
    );
    aws_ok(&w, &k, &["s3api", "delete-bucket-cors", "--bucket", "app"]);
    aws_refused(&w, &k, &["s3api", "get-bucket-cors", "--bucket", "app"], "NoSuchCORSConfiguration");
    assert_eq!(preflight("https://app.example.com", "GET").await.0, 403);
}
