//! A small S3 client signing with AWS Signature Version 4 (header auth, path-style addressing):
//! what the harness, the quickstart and `ultracloud bench s3` use to drive any S3 endpoint —
//! lightningstor's gateways and, side by side, Garage. Users keep their own clients (`aws`,
//! s3cmd, the SDKs); this one covers the few calls the platform itself makes.

use std::time::SystemTime;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// An S3 access key pair.
#[derive(Clone)]
pub struct S3Key {
    /// The access key ID.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Key").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// Why an S3 call failed.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The endpoint is not a URL.
    #[error("S3 endpoint {0:?} is not an http(s) URL")]
    Endpoint(String),
    /// No answer (connection refused, timeout, TLS).
    #[error("S3 {method} {path}: {source}")]
    Transport {
        /// The request's method.
        method: &'static str,
        /// The request's path.
        path: String,
        /// What went wrong.
        source: reqwest::Error,
    },
    /// The server refused, with S3's error code (`NoSuchKey`, `AccessDenied`, …).
    #[error("S3 {method} {path}: {status} {code}: {message}")]
    Refused {
        /// The request's method.
        method: &'static str,
        /// The request's path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// S3's error code, empty when the body had none.
        code: String,
        /// S3's message.
        message: String,
    },
}

impl S3Error {
    /// S3's error code of a refusal (`NoSuchKey`, …); empty for other failures.
    pub fn code(&self) -> &str {
        match self {
            Self::Refused { code, .. } => code,
            _ => "",
        }
    }

    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The condition of a conditional PUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteCondition<'a> {
    /// `If-None-Match: *`: create only; refused when the key has an object.
    IfAbsent,
    /// `If-Match`: replace only the object with this ETag.
    IfMatch(&'a str),
}

/// An S3 endpoint with one key pair.
#[derive(Debug, Clone)]
pub struct S3Client {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    key: S3Key,
    region: String,
    unsigned_payload: bool,
    clock_offset_s: i64,
}

impl S3Client {
    /// A client of `endpoint` (`http(s)://host:port`) signing as `key` in region `us-east-1`,
    /// trusting what the process's TLS setup trusts (the cluster CA).
    pub fn new(endpoint: &str, key: S3Key) -> Result<Self, S3Error> {
        let url = reqwest::Url::parse(endpoint).map_err(|_| S3Error::Endpoint(endpoint.to_owned()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(S3Error::Endpoint(endpoint.to_owned()));
        }
        let http = ultracloud_tls::client::http_client();
        Ok(Self { http, endpoint: url, key, region: "us-east-1".into(), unsigned_payload: false, clock_offset_s: 0 })
    }

    /// Signs in `region` instead (Garage checks it against its own).
    pub fn with_region(mut self, region: &str) -> Self {
        region.clone_into(&mut self.region);
        self
    }

    /// Sends `UNSIGNED-PAYLOAD` instead of each body's SHA-256 (a benchmark's client-side
    /// saving; TLS protects the body in transit).
    pub fn with_unsigned_payload(mut self) -> Self {
        self.unsigned_payload = true;
        self
    }

    /// Signs as if the clock were `secs` ahead (negative: behind) — for checking a server's
    /// clock-skew refusal.
    pub fn with_clock_offset(mut self, secs: i64) -> Self {
        self.clock_offset_s = secs;
        self
    }

    /// `PUT /bucket`.
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        self.request(reqwest::Method::PUT, bucket, None, &[], Bytes::new()).await.map(drop)
    }

    /// `DELETE /bucket`.
    pub async fn delete_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        self.request(reqwest::Method::DELETE, bucket, None, &[], Bytes::new()).await.map(drop)
    }

    /// `PUT /bucket/key`; the object's ETag.
    pub async fn put_object(&self, bucket: &str, key: &str, body: Bytes) -> Result<String, S3Error> {
        self.put_object_if(bucket, key, body, None).await
    }

    /// `PUT /bucket/key` only if `condition` holds: `If-None-Match: *` creates only when the
    /// key has no object, `If-Match: <etag>` replaces only that object (412
    /// PreconditionFailed otherwise, checked atomically with the write); the object's ETag.
    pub async fn put_object_if(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        condition: Option<WriteCondition<'_>>,
    ) -> Result<String, S3Error> {
        let payload = self.payload_of(&body);
        let headers: Vec<(&str, String)> = match condition {
            None => Vec::new(),
            Some(WriteCondition::IfAbsent) => vec![("if-none-match", "*".to_owned())],
            Some(WriteCondition::IfMatch(etag)) => vec![("if-match", format!("\"{}\"", etag.trim_matches('"')))],
        };
        let r = self.send(reqwest::Method::PUT, bucket, Some(key), &[], &headers, body.into(), payload, None).await?;
        Ok(r.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default().trim_matches('"').to_owned())
    }

    /// `GET /bucket/key`: the whole object.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<Bytes, S3Error> {
        let path = format!("/{bucket}/{key}");
        let r = self.request(reqwest::Method::GET, bucket, Some(key), &[], Bytes::new()).await?;
        r.bytes().await.map_err(|source| S3Error::Transport { method: "GET", path, source })
    }

    /// `DELETE /bucket/key`.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        self.request(reqwest::Method::DELETE, bucket, Some(key), &[], Bytes::new()).await.map(drop)
    }

    /// `PUT /bucket/key` streaming `body` of `len` bytes, signed with UNSIGNED-PAYLOAD (a stream
    /// cannot be hashed before it is sent); the object's ETag.
    pub async fn put_object_stream(
        &self,
        bucket: &str,
        key: &str,
        body: reqwest::Body,
        len: u64,
    ) -> Result<String, S3Error> {
        let r =
            self.send(reqwest::Method::PUT, bucket, Some(key), &[], &[], body, UNSIGNED.to_owned(), Some(len)).await?;
        Ok(r.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default().trim_matches('"').to_owned())
    }

    /// Any signed request on a bucket or object, with `query` parameters (`("delete", "")`,
    /// `("uploadId", id)`, …); a non-2xx answer becomes [`S3Error::Refused`] with S3's code.
    pub async fn request(
        &self,
        method: reqwest::Method,
        bucket: &str,
        key: Option<&str>,
        query: &[(&str, &str)],
        body: Bytes,
    ) -> Result<reqwest::Response, S3Error> {
        let payload = self.payload_of(&body);
        self.send(method, bucket, key, query, &[], body.into(), payload, None).await
    }

    /// The `x-amz-content-sha256` of `body`.
    fn payload_of(&self, body: &Bytes) -> String {
        if self.unsigned_payload { UNSIGNED.to_owned() } else { hex::encode(Sha256::digest(body)) }
    }

    /// Signs and sends; a non-2xx answer becomes [`S3Error::Refused`].
    #[allow(clippy::too_many_arguments)] // one private funnel for every call
    async fn send(
        &self,
        method: reqwest::Method,
        bucket: &str,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: reqwest::Body,
        payload: String,
        content_length: Option<u64>,
    ) -> Result<reqwest::Response, S3Error> {
        let path = match key {
            Some(k) => format!("/{}/{}", uri_encode(bucket, false), uri_encode(k, false)),
            None => format!("/{}", uri_encode(bucket, false)),
        };
        let method_name = static_method(&method);
        let mut pairs: Vec<String> =
            query.iter().map(|(k, v)| format!("{}={}", uri_encode(k, true), uri_encode(v, true))).collect();
        pairs.sort();
        let query = pairs.join("&");
        let mut url = self.endpoint.clone();
        url.set_path(&path);
        url.set_query((!query.is_empty()).then_some(query.as_str()));
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let signed = sign(
            &Request { method: method_name, path: &path, query: &query, host: &host, payload_sha256: &payload },
            &self.key,
            &self.region,
            skewed(SystemTime::now(), self.clock_offset_s),
        );
        let mut r = self
            .http
            .request(method, url)
            .header("x-amz-date", &signed.amz_date)
            .header("x-amz-content-sha256", &payload)
            .header("authorization", signed.authorization);
        if let Some(len) = content_length {
            r = r.header("content-length", len);
        }
        // Sent unsigned (SigV4 signs `host` and the `x-amz-*` headers it names).
        for (name, value) in headers {
            r = r.header(*name, value);
        }
        let r = r.body(body).send().await.map_err(|source| S3Error::Transport {
            method: method_name,
            path: path.clone(),
            source,
        })?;
        if r.status().is_success() {
            return Ok(r);
        }
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        Err(S3Error::Refused {
            method: method_name,
            path,
            status,
            code: xml_field(&text, "Code").unwrap_or_default(),
            message: xml_field(&text, "Message").unwrap_or_default(),
        })
    }
}

const UNSIGNED: &str = "UNSIGNED-PAYLOAD";

fn skewed(now: SystemTime, secs: i64) -> SystemTime {
    let by = std::time::Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 { now + by } else { now - by }
}

fn static_method(m: &reqwest::Method) -> &'static str {
    match *m {
        reqwest::Method::GET => "GET",
        reqwest::Method::PUT => "PUT",
        reqwest::Method::DELETE => "DELETE",
        reqwest::Method::HEAD => "HEAD",
        _ => "POST",
    }
}

/// The parts of a request SigV4 covers here (three signed headers).
struct Request<'a> {
    method: &'a str,
    /// Already URI-encoded.
    path: &'a str,
    /// The canonical query string (encoded, sorted).
    query: &'a str,
    host: &'a str,
    payload_sha256: &'a str,
}

/// The headers a signature adds.
struct Signed {
    amz_date: String,
    authorization: String,
}

/// Signs `req` at `now` (AWS SigV4: canonical request, string to sign, the derived key).
fn sign(req: &Request<'_>, key: &S3Key, region: &str, now: SystemTime) -> Signed {
    // 2026-12-07T13:24:39Z → 20261207T132439Z
    let amz_date: String = humantime::format_rfc3339_seconds(now).to_string().replace(['-', ':'], "");
    let day = &amz_date[..8];
    let canonical = format!(
        "{}\n{}\n{}\nhost:{}\nx-amz-content-sha256:{}\nx-amz-date:{amz_date}\n\n{SIGNED_HEADERS}\n{}",
        req.method, req.path, req.query, req.host, req.payload_sha256, req.payload_sha256
    );
    let scope = format!("{day}/{region}/s3/aws4_request");
    let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical)));
    let mut k = hmac(format!("AWS4{}", key.secret_access_key).as_bytes(), day.as_bytes());
    for part in [region, "s3", "aws4_request"] {
        k = hmac(&k, part.as_bytes());
    }
    let signature = hex::encode(hmac(&k, to_sign.as_bytes()));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={SIGNED_HEADERS}, Signature={signature}",
        key.access_key_id
    );
    Signed { amz_date, authorization }
}

const SIGNED_HEADERS: &str = "host;x-amz-content-sha256;x-amz-date";

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// S3's URI encoding (SigV4's, and listings' `encoding-type=url`): every byte but
/// `A-Za-z0-9-._~` as `%XX`; `/` too when `slash`.
pub(crate) fn uri_encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (b == b'/' && !slash) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text of the first `<field>` element (S3 error bodies are flat).
fn xml_field(xml: &str, field: &str) -> Option<String> {
    let start = xml.find(&format!("<{field}>"))? + field.len() + 2;
    let end = xml[start..].find(&format!("</{field}>"))? + start;
    Some(xml[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature botocore (the AWS CLI's signer) computes for the same request and time.
    #[test]
    fn signatures_follow_sigv4() {
        let key = S3Key {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        };
        let empty = hex::encode(Sha256::digest(b""));
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_369_353_600); // 2013-05-24
        let req = Request {
            method: "GET",
            path: "/examplebucket/test.txt",
            query: "",
            host: "s3.amazonaws.com",
            payload_sha256: &empty,
        };
        let s = sign(&req, &key, "us-east-1", at);
        assert_eq!(s.amz_date, "20130524T000000Z");
        assert!(s.authorization.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
        ));
        let sig = s.authorization.rsplit('=').next().unwrap();
        assert_eq!(sig, EXPECTED_SIGNATURE);
    }

    /// botocore 1.x `S3SigV4Auth(...).add_auth` of GET https://s3.amazonaws.com/examplebucket/test.txt
    /// at 2013-05-24T00:00:00Z with AWS's documented example key pair.
    const EXPECTED_SIGNATURE: &str = "0fcb291c4b47980ad34dd9a29532ceae67b48e45de3d6054873b430740567ec2";

    #[test]
    fn keys_are_encoded_as_sigv4_wants() {
        assert_eq!(uri_encode("a b/ü~x", false), "a%20b/%C3%BC~x");
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
        assert_eq!(
            xml_field("<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>", "Code").unwrap(),
            "NoSuchKey"
        );
        assert_eq!(xml_field("<x/>", "Code"), None);
    }
}
