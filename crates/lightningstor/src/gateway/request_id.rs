//! Request IDs, as S3 gives them: every answer carries `x-amz-request-id`, and an error's XML
//! body names the same ID in `<RequestId>` — clients print it with the error (botocore's
//! `RequestId`), and the gateway logs it with every refusal, so the two can be matched.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderValue, header};

/// The largest error body rewritten (S3's error documents are a few hundred bytes).
const MAX_ERROR_BODY: usize = 64 << 10;

/// The header S3 answers with.
pub const HEADER: &str = "x-amz-request-id";

/// A new request ID: 16 uppercase hex digits, like S3's.
pub fn new_request_id() -> String {
    hex::encode_upper(ultracloud_resource::ids::random_bytes::<8>())
}

/// `body` (an S3 error document) with `<RequestId>id</RequestId>` before its closing tag;
/// `None` when it is not one.
fn with_request_id(body: &[u8], id: &str) -> Option<Vec<u8>> {
    const CLOSE: &[u8] = b"</Error>";
    let at = body.windows(CLOSE.len()).rposition(|w| w == CLOSE)?;
    let mut out = Vec::with_capacity(body.len() + id.len() + 24);
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(format!("<RequestId>{id}</RequestId>").as_bytes());
    out.extend_from_slice(&body[at..]);
    Some(out)
}

/// The layer: names each answer with a new ID; adds it to error documents and logs refusals.
pub async fn layer(req: Request, next: Next) -> Response {
    let id = new_request_id();
    // For the log line of a refusal (a `Uri` clone shares its bytes: no copy per request).
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let response = next.run(req).await;
    let status = response.status();
    let (mut parts, body) = response.into_parts();
    if let Ok(v) = HeaderValue::from_str(&id) {
        parts.headers.insert(HEADER, v);
    }
    if !(status.is_client_error() || status.is_server_error()) {
        return Response::from_parts(parts, body);
    }
    if status.is_server_error() {
        tracing::warn!(request_id = %id, %method, path = uri.path(), status = status.as_u16(), "S3 request failed");
    } else {
        tracing::debug!(request_id = %id, %method, path = uri.path(), status = status.as_u16(), "S3 request refused");
    }
    let xml = parts.headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().ends_with(b"xml"));
    if !xml {
        return Response::from_parts(parts, body);
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        // Too large or broken to be an error document: its beginning is gone, so say so.
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from("error body unreadable"));
    };
    match with_request_id(&bytes, &id) {
        Some(rewritten) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(rewritten))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_s3s_and_land_inside_the_error() {
        let id = new_request_id();
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()), "{id}");
        assert_ne!(id, new_request_id());
        let doc = b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>";
        let out = String::from_utf8(with_request_id(doc, "AB12").unwrap()).unwrap();
        assert_eq!(out, "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><RequestId>AB12</RequestId></Error>");
        assert_eq!(with_request_id(b"<ListBucketResult/>", "AB12"), None);
    }
}
