//! CORS: Put/Get/DeleteBucketCors keep a bucket's rules; a layer in front of the S3 service
//! answers browsers' preflight `OPTIONS` requests (which S3 answers without a signature) and
//! adds `Access-Control-*` headers to the answers of requests that carry an `Origin`, as S3
//! does: the first rule whose origin, method and headers match decides.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use s3s::dto::{
    CORSConfiguration, CORSRule, DeleteBucketCorsInput, DeleteBucketCorsOutput, GetBucketCorsInput,
    GetBucketCorsOutput, PutBucketCorsInput, PutBucketCorsOutput,
};
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};

use super::meta::Meta;
use super::s3::{Gateway, db_error};

/// Most rules a bucket holds (S3's limit).
const MAX_RULES: usize = 100;
/// The methods a rule may allow.
const METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "HEAD"];

/// One CORS rule, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CorsRule {
    /// Its ID, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Origins it admits (at most one `*` each, which matches anything).
    pub origins: Vec<String>,
    /// Methods it admits.
    pub methods: Vec<String>,
    /// Request headers a preflight may ask for (lowercase; `*` wildcards).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// Response headers browsers may read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    /// How long browsers may cache a preflight's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u32>,
}

/// Whether `value` matches `pattern`, in which one `*` matches any run of characters.
fn wildcard(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((head, tail)) => {
            value.len() >= head.len() + tail.len() && value.starts_with(head) && value.ends_with(tail)
        }
    }
}

impl CorsRule {
    /// Whether the rule admits `origin` using `method` and asking for `headers`.
    pub fn admits(&self, origin: &str, method: &str, headers: &[String]) -> bool {
        self.origins.iter().any(|o| wildcard(o, origin))
            && self.methods.iter().any(|m| m == method)
            && headers.iter().all(|h| self.headers.iter().any(|p| wildcard(p, h)))
    }
}

/// The first of `rules` admitting the request.
pub fn matching<'a>(rules: &'a [CorsRule], origin: &str, method: &str, headers: &[String]) -> Option<&'a CorsRule> {
    rules.iter().find(|r| r.admits(origin, method, headers))
}

fn from_dto(r: CORSRule) -> S3Result<CorsRule> {
    if r.allowed_origins.is_empty() || r.allowed_methods.is_empty() {
        return Err(s3_error!(MalformedXML, "a CORS rule needs an AllowedOrigin and an AllowedMethod"));
    }
    if let Some(m) = r.allowed_methods.iter().find(|m| !METHODS.contains(&m.as_str())) {
        return Err(s3_error!(InvalidRequest, "AllowedMethod {m:?}: one of {}", METHODS.join(", ")));
    }
    let more_than_one_star = |s: &String| s.matches('*').count() > 1;
    if let Some(o) = r.allowed_origins.iter().find(|o| more_than_one_star(o)) {
        return Err(s3_error!(InvalidRequest, "AllowedOrigin {o:?} has more than one wildcard"));
    }
    let headers = r.allowed_headers.unwrap_or_default();
    if let Some(h) = headers.iter().find(|h| more_than_one_star(h)) {
        return Err(s3_error!(InvalidRequest, "AllowedHeader {h:?} has more than one wildcard"));
    }
    let max_age_secs = r
        .max_age_seconds
        .map(|s| u32::try_from(s).map_err(|_| s3_error!(InvalidRequest, "MaxAgeSeconds must not be negative")))
        .transpose()?;
    Ok(CorsRule {
        id: r.id,
        origins: r.allowed_origins,
        methods: r.allowed_methods,
        headers: headers.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
        expose: r.expose_headers.unwrap_or_default(),
        max_age_secs,
    })
}

fn to_dto(r: &CorsRule) -> CORSRule {
    CORSRule {
        id: r.id.clone(),
        allowed_origins: r.origins.clone(),
        allowed_methods: r.methods.clone(),
        allowed_headers: (!r.headers.is_empty()).then(|| r.headers.clone()),
        expose_headers: (!r.expose.is_empty()).then(|| r.expose.clone()),
        max_age_seconds: r.max_age_secs.map(|s| i32::try_from(s).unwrap_or(i32::MAX)),
    }
}

/// The rules of a configuration, checked.
pub fn rules_of(config: CORSConfiguration) -> S3Result<Vec<CorsRule>> {
    if config.cors_rules.is_empty() || config.cors_rules.len() > MAX_RULES {
        return Err(s3_error!(MalformedXML, "a CORS configuration has 1 to {MAX_RULES} rules"));
    }
    config.cors_rules.into_iter().map(from_dto).collect()
}

impl Gateway {
    pub(super) async fn put_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let who = self.caller(&req).await?;
        let bucket = self.owned(&who, &req.input.bucket).await?;
        let rules = rules_of(req.input.cors_configuration)?;
        if !self.meta.set_cors(&bucket, rules).await.map_err(db_error)? {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(S3Response::new(PutBucketCorsOutput::default()))
    }

    pub(super) async fn get_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let who = self.caller(&req).await?;
        let bucket = self.owned(&who, &req.input.bucket).await?;
        if bucket.cors.is_empty() {
            return Err(s3_error!(NoSuchCORSConfiguration));
        }
        Ok(S3Response::new(GetBucketCorsOutput { cors_rules: Some(bucket.cors.iter().map(to_dto).collect()) }))
    }

    pub(super) async fn delete_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        let who = self.caller(&req).await?;
        let bucket = self.owned(&who, &req.input.bucket).await?;
        if !self.meta.set_cors(&bucket, Vec::new()).await.map_err(db_error)? {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(S3Response::new(DeleteBucketCorsOutput::default()))
    }
}

/// What the CORS layer needs: the metadata, and the domain of virtual-host addressing.
#[derive(Debug, Clone)]
pub struct CorsState {
    /// Where buckets' rules are.
    pub meta: Meta,
    /// `BUCKET.domain` addresses a bucket, when set.
    pub domain: Option<String>,
}

/// The bucket a request addresses: `BUCKET.domain` by its host, else the first path segment.
fn bucket_of(headers: &HeaderMap, path: &str, domain: Option<&str>) -> Option<String> {
    if let Some(d) = domain
        && let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok())
    {
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if let Some(bucket) = host.strip_suffix(d).and_then(|b| b.strip_suffix('.')) {
            return Some(bucket.to_owned());
        }
    }
    path.trim_start_matches('/').split('/').next().filter(|b| !b.is_empty()).map(str::to_owned)
}

fn text(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn forbidden(why: &str) -> Response {
    refusal(StatusCode::FORBIDDEN, "AccessForbidden", why)
}

/// An S3 error document.
fn refusal(status: StatusCode, code: &str, why: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{why}</Message></Error>"
    );
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    r
}

/// The `Access-Control-*` answer of `rule` to `origin`.
fn allow(h: &mut HeaderMap, rule: &CorsRule, origin: &str, preflight: Option<&[String]>) {
    let value = |s: &str| HeaderValue::from_str(s).ok();
    let origin = if rule.origins.iter().any(|o| o == "*") { "*" } else { origin };
    if let Some(v) = value(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    if let Some(v) = value(&rule.methods.join(", ")) {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
    }
    if let Some(asked) = preflight.filter(|a| !a.is_empty())
        && let Some(v) = value(&asked.join(", "))
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    if !rule.expose.is_empty()
        && let Some(v) = value(&rule.expose.join(", "))
    {
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
    if let Some(secs) = rule.max_age_secs {
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(secs));
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// The layer: preflights answered here, other requests with an `Origin` answered by the S3
/// service and then given the matching rule's headers.
pub async fn layer(State(state): State<CorsState>, req: Request, next: Next) -> Response {
    let Some(origin) = text(req.headers(), header::ORIGIN) else {
        // A preflight without an origin is malformed (S3's answer), not unauthenticated.
        if req.method() == Method::OPTIONS {
            return refusal(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Insufficient information. Origin request header needed.",
            );
        }
        return next.run(req).await;
    };
    let bucket = bucket_of(req.headers(), req.uri().path(), state.domain.as_deref());
    let rules = match &bucket {
        Some(name) => match state.meta.bucket(name).await {
            Ok(b) => b.map(|b| b.cors).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "reading a bucket's CORS rules failed");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    if req.method() == Method::OPTIONS {
        let Some(method) = text(req.headers(), header::ACCESS_CONTROL_REQUEST_METHOD) else {
            return forbidden("a preflight names Access-Control-Request-Method");
        };
        let asked: Vec<String> = text(req.headers(), header::ACCESS_CONTROL_REQUEST_HEADERS)
            .map(|h| h.split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        return match matching(&rules, &origin, &method, &asked) {
            Some(rule) => {
                let mut r = Response::new(Body::empty());
                allow(r.headers_mut(), rule, &origin, Some(&asked));
                r
            }
            None => forbidden("CORSResponse: This CORS request is not allowed."),
        };
    }
    let method = req.method().as_str().to_owned();
    let mut response = next.run(req).await;
    if let Some(rule) = matching(&rules, &origin, &method, &[]) {
        allow(response.headers_mut(), rule, &origin, None);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_origins_methods_and_headers_with_wildcards() {
        let rule = CorsRule {
            origins: vec!["https://*.example.com".into()],
            methods: vec!["GET".into(), "PUT".into()],
            headers: vec!["x-amz-*".into(), "content-type".into()],
            ..CorsRule::default()
        };
        let h = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(rule.admits("https://app.example.com", "PUT", &h(&["content-type", "x-amz-date"])));
        assert!(!rule.admits("https://example.org", "GET", &[]), "origin");
        assert!(!rule.admits("https://app.example.com", "DELETE", &[]), "method");
        assert!(!rule.admits("https://app.example.com", "GET", &h(&["authorization"])), "header");
        assert!(wildcard("*", "anything") && wildcard("a*z", "az") && !wildcard("a*z", "a"));
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("photos.s3.example.com:8790"));
        assert_eq!(bucket_of(&headers, "/key", Some("s3.example.com")).as_deref(), Some("photos"));
        assert_eq!(bucket_of(&headers, "/site/a/b", None).as_deref(), Some("site"));
        assert_eq!(bucket_of(&HeaderMap::new(), "/", None), None);
    }

    #[test]
    fn configurations_are_checked() {
        let rule = |origins: &[&str], methods: &[&str]| CORSRule {
            allowed_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            allowed_methods: methods.iter().map(|s| (*s).to_owned()).collect(),
            allowed_headers: None,
            expose_headers: None,
            id: None,
            max_age_seconds: Some(60),
        };
        let ok = rules_of(CORSConfiguration { cors_rules: vec![rule(&["*"], &["GET"])] }).unwrap();
        assert_eq!(ok[0].max_age_secs, Some(60));
        let code =
            |r: CORSRule| rules_of(CORSConfiguration { cors_rules: vec![r] }).unwrap_err().code().as_str().to_owned();
        assert_eq!(code(rule(&["*"], &["PATCH"])), "InvalidRequest");
        assert_eq!(code(rule(&["*.*"], &["GET"])), "InvalidRequest");
        assert_eq!(code(rule(&[], &["GET"])), "MalformedXML");
    }
}
