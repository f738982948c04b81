//! Who may read a bucket: its owning project always; anyone — anonymous or another project —
//! when the bucket is public. Buckets are private by default; one becomes public-read through
//! the canned ACL `public-read` (PutBucketAcl or CreateBucket's `x-amz-acl`) or through a bucket
//! policy whose statements allow `s3:GetObject` and/or `s3:ListBucket` to everyone. Public
//! access is read-only: GET and HEAD of objects, and listings. Every other request still needs a
//! signature from a key of the owning project.

use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::{
    BucketCannedACL, DeleteBucketPolicyInput, DeleteBucketPolicyOutput, GetBucketAclInput, GetBucketAclOutput,
    GetBucketPolicyInput, GetBucketPolicyOutput, GetBucketPolicyStatusInput, GetBucketPolicyStatusOutput, Grant,
    Grantee, Owner, Permission, PolicyStatus, PutBucketAclInput, PutBucketAclOutput, PutBucketPolicyInput,
    PutBucketPolicyOutput, Type,
};
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::meta::Bucket;
use super::s3::{Gateway, db_error};

/// The operations a public bucket answers without a signature.
const PUBLIC_OPERATIONS: &[&str] = &["GetObject", "HeadObject", "ListObjects", "ListObjectsV2"];
/// The grantee URI of everyone.
const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";

/// What a bucket lets everyone do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Public {
    /// The canned ACL `public-read`: everyone reads objects and lists.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub acl_read: bool,
    /// The bucket policy as the owner gave it, with what it allows everyone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<StoredPolicy>,
}

/// A bucket policy: its text and what it grants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPolicy {
    /// The JSON document as given.
    pub text: String,
    /// It allows everyone `s3:GetObject` on every object.
    pub get_object: bool,
    /// It allows everyone `s3:ListBucket`.
    pub list_bucket: bool,
}

impl Public {
    /// Whether everyone may GET and HEAD objects.
    pub fn reads(&self) -> bool {
        self.acl_read || self.policy.as_ref().is_some_and(|p| p.get_object)
    }

    /// Whether everyone may list objects.
    pub fn lists(&self) -> bool {
        self.acl_read || self.policy.as_ref().is_some_and(|p| p.list_bucket)
    }

    /// Whether everyone may do `read`.
    pub(super) fn allows(&self, read: Read) -> bool {
        match read {
            Read::Object => self.reads(),
            Read::List => self.lists(),
        }
    }

    /// Whether it is the default: no ACL grant and no policy.
    pub fn is_private_default(&self) -> bool {
        *self == Self::default()
    }
}

/// A read a public bucket may answer for anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Read {
    /// GET or HEAD of an object.
    Object,
    /// A listing of objects.
    List,
}

/// The check before a request is read: unsigned requests only reach the operations a public
/// bucket answers (the handlers decide per bucket); a key whose creator may only read in its
/// project (a viewer now) only reaches reads.
#[derive(Debug, Clone)]
pub struct RequestAccess(pub std::sync::Arc<super::auth::IamKeys>);

/// Whether an S3 operation only reads.
fn reads(operation: &str) -> bool {
    ["Get", "Head", "List"].iter().any(|p| operation.starts_with(p))
}

#[async_trait::async_trait]
impl S3Access for RequestAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let operation = cx.s3_op().name();
        let Some(credentials) = cx.credentials() else {
            if PUBLIC_OPERATIONS.contains(&operation) {
                return Ok(());
            }
            return Err(s3_error!(AccessDenied, "a signature is required"));
        };
        // Resolved (and cached) already: the signature was checked with its secret.
        let (_, owner) = self.0.resolve(&credentials.access_key).await?;
        if owner.read_only && !reads(operation) {
            return Err(s3_error!(AccessDenied, "the key's creator may only read in its project ({operation} writes)"));
        }
        Ok(())
    }
}

/// A canned ACL: `Ok(true)` for public-read, `Ok(false)` for private.
pub(super) fn canned(acl: Option<&BucketCannedACL>) -> S3Result<Option<bool>> {
    match acl.map(BucketCannedACL::as_str) {
        None => Ok(None),
        Some(BucketCannedACL::PRIVATE) => Ok(Some(false)),
        Some(BucketCannedACL::PUBLIC_READ) => Ok(Some(true)),
        Some(other) => Err(s3_error!(NotImplemented, "canned ACL {other:?}: private or public-read")),
    }
}

/// Whether `v` (a string or a list of strings) is or holds exactly `want`.
fn names(v: &Value, allowed: &[&str]) -> Option<Vec<String>> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        one => vec![one],
    };
    items.into_iter().map(|i| i.as_str().filter(|s| allowed.contains(s)).map(str::to_owned)).collect::<Option<Vec<_>>>()
}

/// Reads a policy document: only statements that allow everyone `s3:GetObject` on
/// `arn:aws:s3:::BUCKET/*` or `s3:ListBucket` on `arn:aws:s3:::BUCKET` are understood.
pub(super) fn parse_policy(bucket: &str, text: &str) -> S3Result<StoredPolicy> {
    let doc: Value = serde_json::from_str(text).map_err(|e| s3_error!(MalformedPolicy, "not JSON: {e}"))?;
    let statements = match &doc["Statement"] {
        Value::Array(a) => a.clone(),
        s @ Value::Object(_) => vec![s.clone()],
        _ => return Err(s3_error!(MalformedPolicy, "the policy has no Statement")),
    };
    let unsupported = |what: &str| {
        s3_error!(
            NotImplemented,
            "{what}: lightningstor understands only public-read policies (Effect Allow, Principal \"*\", \
             Action s3:GetObject on arn:aws:s3:::{bucket}/* or s3:ListBucket on arn:aws:s3:::{bucket})"
        )
    };
    let mut out = StoredPolicy { text: text.to_owned(), ..StoredPolicy::default() };
    for s in &statements {
        if s["Effect"] != "Allow" {
            return Err(unsupported("an Effect other than Allow"));
        }
        let everyone =
            s["Principal"] == "*" || s["Principal"]["AWS"] == "*" || s["Principal"]["AWS"] == serde_json::json!(["*"]);
        if !everyone {
            return Err(unsupported("a Principal other than everyone"));
        }
        if s.get("Condition").is_some() || s.get("NotAction").is_some() || s.get("NotResource").is_some() {
            return Err(unsupported("conditions and negations"));
        }
        let actions =
            names(&s["Action"], &["s3:GetObject", "s3:ListBucket"]).ok_or_else(|| unsupported("that Action"))?;
        let (objects, whole) = (format!("arn:aws:s3:::{bucket}/*"), format!("arn:aws:s3:::{bucket}"));
        let resources =
            names(&s["Resource"], &[objects.as_str(), whole.as_str()]).ok_or_else(|| unsupported("that Resource"))?;
        for action in &actions {
            let on = if action == "s3:GetObject" { &objects } else { &whole };
            if !resources.contains(on) {
                return Err(s3_error!(MalformedPolicy, "{action} needs the resource {on}"));
            }
            if action == "s3:GetObject" {
                out.get_object = true;
            } else {
                out.list_bucket = true;
            }
        }
    }
    Ok(out)
}

impl Gateway {
    /// The bucket `name` for a read: the owning project's keys always; anyone — unsigned or
    /// another project's key — when the bucket is public for that read.
    pub(super) async fn readable<T>(&self, req: &S3Request<T>, name: &str, read: Read) -> S3Result<Bucket> {
        let signed = match &req.credentials {
            Some(_) => Some(self.caller(req).await?),
            None => None,
        };
        let bucket = self.meta.bucket(name).await.map_err(db_error)?;
        match (bucket, signed) {
            (Some(b), Some(who)) if b.tenant == who.tenant && b.project == who.project => Ok(b),
            (Some(b), _) if b.public.allows(read) => Ok(b),
            (Some(_), Some(_)) => Err(s3_error!(AccessDenied, "the bucket belongs to another project")),
            (None, Some(_)) => Err(s3_error!(NoSuchBucket)),
            // An unsigned caller learns nothing about names that do not exist.
            (_, None) => Err(s3_error!(AccessDenied, "the bucket is not public; sign the request")),
        }
    }

    pub(super) async fn put_acl(&self, req: S3Request<PutBucketAclInput>) -> S3Result<S3Response<PutBucketAclOutput>> {
        let who = self.caller(&req).await?;
        let input = req.input;
        let bucket = self.owned(&who, &input.bucket).await?;
        if input.access_control_policy.is_some()
            || input.grant_read.is_some()
            || input.grant_full_control.is_some()
            || input.grant_write.is_some()
            || input.grant_read_acp.is_some()
            || input.grant_write_acp.is_some()
        {
            return Err(s3_error!(NotImplemented, "grants: use the canned ACLs private or public-read"));
        }
        let Some(public) = canned(input.acl.as_ref())? else {
            return Err(s3_error!(MalformedACLError, "name a canned ACL (x-amz-acl: private or public-read)"));
        };
        if !self.meta.update_public(&bucket, move |p| p.acl_read = public).await.map_err(db_error)? {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(S3Response::new(PutBucketAclOutput::default()))
    }

    pub(super) async fn get_acl(&self, req: S3Request<GetBucketAclInput>) -> S3Result<S3Response<GetBucketAclOutput>> {
        let who = self.caller(&req).await?;
        let bucket = self.owned(&who, &req.input.bucket).await?;
        let owner_id = format!("{}/{}", bucket.tenant, bucket.project);
        let grant = |grantee: Grantee, permission: &'static str| Grant {
            grantee: Some(grantee),
            permission: Some(Permission::from_static(permission)),
        };
        let mut grants = vec![grant(
            Grantee {
                id: Some(owner_id.clone()),
                display_name: Some(owner_id.clone()),
                type_: Type::from_static(Type::CANONICAL_USER),
                email_address: None,
                uri: None,
            },
            Permission::FULL_CONTROL,
        )];
        if bucket.public.acl_read {
            let everyone = Grantee {
                type_: Type::from_static(Type::GROUP),
                uri: Some(ALL_USERS.to_owned()),
                id: None,
                display_name: None,
                email_address: None,
            };
            grants.push(grant(everyone, Permission::READ));
        }
        Ok(S3Response::new(GetBucketAclOutput {
            grants: Some(grants),
            owner: Some(Owner { id: Some(owner_id.clone()), display_name: Some(owner_id) }),
        }))
    }

    pub(super) async fn put_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        let who = self.caller(&req).await?;
        let bucket = self.owned(&who, &req.input.bucket).await?;
        let policy = parse_policy(&bucket.name, &req.input.policy)?;
        if !self.meta.update_public(&bucket, move |p| p.policy = Some(policy.clone())).await.map_err(db_error)? {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(S3Response::new(PutBucketPolicyOutput::default()))
    }

    pub(super) async fn get_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        let who = self.caller(&req).await?;
        let bucket = self.owned(&who, &req.input.bucket).await?;
        match bucket.public.policy {
            Some(p) => Ok(S3Response::new(GetBucketPolicyOutput { policy: Some(p.text) })),
            None => Err(s3_error!(NoSuchBucketPolicy)),
        }
    }

    pub(super) async fn delete_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        let who = self.caller(&req).await?;
        let bucket = self.owned(&who, &req.input.bucket).await?;
        if !self.meta.update_public(&bucket, |p| p.policy = None).await.map_err(db_error)? {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(S3Response::new(DeleteBucketPolicyOutput::default()))
    }

    pub(super) async fn policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        let who = self.caller(&req).await?;
        let bucket = self.owned(&who, &req.input.bucket).await?;
        let public = bucket.public.policy.as_ref().is_some_and(|p| p.get_object || p.list_bucket);
        Ok(S3Response::new(GetBucketPolicyStatusOutput {
            policy_status: Some(PolicyStatus { is_public: Some(public) }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_read_policies_are_understood() {
        let read = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",
            "Action":"s3:GetObject","Resource":"arn:aws:s3:::site/*"}]}"#;
        let p = parse_policy("site", read).unwrap();
        assert!(p.get_object && !p.list_bucket);
        let both = r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"*"},
            "Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::site/*","arn:aws:s3:::site"]}}"#;
        let p = parse_policy("site", both).unwrap();
        assert!(p.get_object && p.list_bucket);
        let code = |text: &str| parse_policy("site", text).unwrap_err().code().as_str().to_owned();
        assert_eq!(code("{"), "MalformedPolicy");
        assert_eq!(code(&read.replace("site/*", "other/*")), "NotImplemented", "another bucket's objects");
        assert_eq!(code(&read.replace("Allow", "Deny")), "NotImplemented");
        assert_eq!(code(&read.replace("\"*\"", "{\"AWS\":\"arn:aws:iam::1:root\"}")), "NotImplemented");
        assert_eq!(code(&read.replace("s3:GetObject", "s3:PutObject")), "NotImplemented", "writes are never public");
        assert_eq!(code(&read.replace("site/*", "site")), "MalformedPolicy", "GetObject on the bucket itself");
    }
}
