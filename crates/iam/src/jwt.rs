//! Access tokens: compact JWTs signed with Ed25519 (`alg` `EdDSA`), a key ring that rotates
//! signing keys with overlap, and the JWKS document (`/.well-known/jwks.json`).
//!
//! Verification is strict and offline: the header must say exactly `{"alg":"EdDSA"}` with a
//! known `kid` (so `none`, HMAC with the public key as secret and every other algorithm are
//! refused before any signature check), the signature is checked with `verify_strict`, and
//! `exp`/`nbf` are enforced. A rotated-out key keeps verifying until every token it signed has
//! expired, so rotation never breaks a valid token.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The only algorithm accepted.
pub const ALG: &str = "EdDSA";

/// The audience of every token iam issues today: the platform's APIs. A verifier refuses a
/// token that does not name it (a token minted for something else, or by an older iam).
pub const PLATFORM_AUDIENCE: &str = "ultracloud";

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer (iam's configured name); checked against the issuer the JWKS names.
    pub iss: String,
    /// Audience: who the token is for; verifiers require [`PLATFORM_AUDIENCE`].
    #[serde(default)]
    pub aud: Vec<String>,
    /// Subject: `user:<id>` or `sa:<id>` (service account).
    pub sub: String,
    /// The subject's home tenant (`None` for system-level subjects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Not before (seconds since the epoch).
    pub nbf: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    /// Token ID (for revocation lists and audit).
    pub jti: String,
    /// The API key it was issued for, if any (deleting the key revokes its tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub akid: Option<String>,
    /// The worker this token's service account is bound to (a node agent's credential): the
    /// node authorizer lets it touch only that host's records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header names another algorithm (or none).
    #[error("token algorithm {0:?} is not accepted (only EdDSA)")]
    Algorithm(String),
    /// The header's key ID is not in the key set.
    #[error("token signed with unknown key {0:?}")]
    UnknownKey(String),
    /// The signature does not match.
    #[error("token signature is invalid")]
    Signature,
    /// Past `exp`.
    #[error("token expired at {0}")]
    Expired(u64),
    /// Before `nbf`.
    #[error("token not valid before {0}")]
    NotYetValid(u64),
    /// Issued by another issuer than the one whose keys verified it.
    #[error("token issuer {0:?} is not this platform's iam")]
    Issuer(String),
    /// Not meant for the platform's APIs.
    #[error("token audience {0:?} does not include {PLATFORM_AUDIENCE:?}")]
    Audience(Vec<String>),
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// A signing key with its lifetime.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Key ID (published in the JWKS and token headers).
    pub kid: String,
    /// The 32-byte Ed25519 seed, base64url. Secret: never log a `KeyRecord`.
    pub secret: String,
    /// Created (seconds since the epoch).
    pub created: u64,
    /// When it stopped signing (rotated out); it verifies until `retired + token lifetime`.
    #[serde(default)]
    pub retired: Option<u64>,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("kid", &self.kid)
            .field("created", &self.created)
            .field("retired", &self.retired)
            .finish_non_exhaustive()
    }
}

impl KeyRecord {
    /// A fresh random key created at `now`.
    pub fn generate(now: u64) -> Self {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let public = key.verifying_key().to_bytes();
        // The key ID is derived from the public key: stable, and it names no secret.
        let kid = B64.encode(&public[..12]);
        Self { kid, secret: B64.encode(key.to_bytes()), created: now, retired: None }
    }

    fn signing_key(&self) -> Result<SigningKey, TokenError> {
        let bytes = B64.decode(&self.secret).map_err(|e| TokenError::Malformed(format!("stored key: {e}")))?;
        let seed: [u8; 32] =
            bytes.try_into().map_err(|_| TokenError::Malformed("stored key is not 32 bytes".into()))?;
        Ok(SigningKey::from_bytes(&seed))
    }
}

/// The signing keys: the newest unretired one signs; all still within their overlap verify.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyRing {
    /// Keys, oldest first.
    pub keys: Vec<KeyRecord>,
}

impl KeyRing {
    /// Retires the current signing key and adds a new one; drops keys whose tokens have all
    /// expired (`token_lifetime` seconds after retirement).
    pub fn rotate(&mut self, now: u64, token_lifetime: u64) {
        for k in &mut self.keys {
            k.retired.get_or_insert(now);
        }
        self.keys.retain(|k| k.retired.is_none_or(|r| r + token_lifetime > now));
        self.keys.push(KeyRecord::generate(now));
    }

    /// Signs `claims` with the current key.
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let key = self
            .keys
            .iter()
            .rev()
            .find(|k| k.retired.is_none())
            .ok_or_else(|| TokenError::UnknownKey("no signing key".into()))?;
        let header = Header { alg: ALG.into(), typ: Some("JWT".into()), kid: Some(key.kid.clone()) };
        let h = B64.encode(serde_json::to_vec(&header).map_err(|e| TokenError::Malformed(e.to_string()))?);
        let c = B64.encode(serde_json::to_vec(claims).map_err(|e| TokenError::Malformed(e.to_string()))?);
        let signing_input = format!("{h}.{c}");
        let sig = key.signing_key()?.sign(signing_input.as_bytes());
        Ok(format!("{signing_input}.{}", B64.encode(sig.to_bytes())))
    }

    /// The public half, as published.
    pub fn jwks(&self) -> Jwks {
        let keys = self
            .keys
            .iter()
            .filter_map(|k| {
                let public = k.signing_key().ok()?.verifying_key();
                Some(Jwk {
                    kty: "OKP".into(),
                    crv: "Ed25519".into(),
                    alg: ALG.into(),
                    use_: "sig".into(),
                    kid: k.kid.clone(),
                    x: B64.encode(public.to_bytes()),
                })
            })
            .collect();
        Jwks { keys, issuer: None }
    }
}

/// One public key in a JWKS (RFC 8037 OKP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `OKP`.
    pub kty: String,
    /// Curve: `Ed25519`.
    pub crv: String,
    /// Algorithm: `EdDSA`.
    pub alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// Key ID.
    pub kid: String,
    /// The public key, base64url.
    pub x: String,
}

/// `/.well-known/jwks.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
    /// The issuer whose tokens these keys sign (an extension member, which RFC 7517 lets
    /// other readers ignore); a verifier then refuses tokens naming another issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// Verifies tokens offline against a JWKS.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    keys: BTreeMap<String, VerifyingKey>,
    issuer: Option<String>,
}

impl Claims {
    /// `Ok` when the token's validity window holds `now` (seconds since the epoch).
    pub fn valid_at(&self, now: u64) -> Result<(), TokenError> {
        if now >= self.exp {
            return Err(TokenError::Expired(self.exp));
        }
        if now < self.nbf {
            return Err(TokenError::NotYetValid(self.nbf));
        }
        Ok(())
    }
}

impl Verifier {
    /// A verifier of the Ed25519 keys in `jwks` (other key types are ignored).
    pub fn new(jwks: &Jwks) -> Self {
        let keys = jwks
            .keys
            .iter()
            .filter(|k| k.kty == "OKP" && k.crv == "Ed25519")
            .filter_map(|k| {
                let bytes: [u8; 32] = B64.decode(&k.x).ok()?.try_into().ok()?;
                Some((k.kid.clone(), VerifyingKey::from_bytes(&bytes).ok()?))
            })
            .collect();
        Self { keys, issuer: jwks.issuer.clone() }
    }

    /// Whether the key set knows `kid` (a miss may mean the cached JWKS is stale).
    pub fn knows(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The claims of `token` if it is well-formed, signed by a known key with EdDSA, and valid
    /// at `now` (seconds since the epoch).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed("expected three dot-separated parts".into()));
        };
        let header: Header = decode_json(h, "header")?;
        if header.alg != ALG {
            return Err(TokenError::Algorithm(header.alg));
        }
        let kid = header.kid.ok_or_else(|| TokenError::Malformed("header has no kid".into()))?;
        let key = self.keys.get(&kid).ok_or(TokenError::UnknownKey(kid))?;
        let sig_bytes = B64.decode(s).map_err(|e| TokenError::Malformed(format!("signature: {e}")))?;
        let sig = Signature::from_slice(&sig_bytes).map_err(|_| TokenError::Signature)?;
        key.verify_strict(format!("{h}.{c}").as_bytes(), &sig).map_err(|_| TokenError::Signature)?;
        let claims: Claims = decode_json(c, "claims")?;
        claims.valid_at(now)?;
        if self.issuer.as_ref().is_some_and(|i| *i != claims.iss) {
            return Err(TokenError::Issuer(claims.iss));
        }
        if !claims.aud.iter().any(|a| a == PLATFORM_AUDIENCE) {
            return Err(TokenError::Audience(claims.aud));
        }
        Ok(claims)
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T, TokenError> {
    let bytes = B64.decode(part).map_err(|e| TokenError::Malformed(format!("{what}: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| TokenError::Malformed(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, Mac};

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn claims() -> Claims {
        Claims {
            iss: "iam".into(),
            aud: vec![PLATFORM_AUDIENCE.into()],
            sub: "user:alice".into(),
            tenant: Some("acme".into()),
            iat: NOW,
            nbf: NOW,
            exp: NOW + 300,
            jti: "t1".into(),
            akid: None,
            node: None,
        }
    }

    fn ring() -> KeyRing {
        let mut r = KeyRing::default();
        r.rotate(NOW, 300);
        r
    }

    #[test]
    fn a_signed_token_verifies_and_expires() {
        let r = ring();
        let v = Verifier::new(&r.jwks());
        let t = r.sign(&claims()).unwrap();
        assert_eq!(v.verify(&t, NOW + 1).unwrap(), claims());
        assert_eq!(v.verify(&t, NOW + 300), Err(TokenError::Expired(NOW + 300)));
        assert_eq!(v.verify(&t, NOW - 1), Err(TokenError::NotYetValid(NOW)));
    }

    #[test]
    fn another_issuer_or_audience_is_refused() {
        let r = ring();
        let mut jwks = r.jwks();
        jwks.issuer = Some("iam".into());
        let v = Verifier::new(&jwks);
        assert!(v.verify(&r.sign(&claims()).unwrap(), NOW + 1).is_ok());
        let other_issuer = Claims { iss: "someone-else".into(), ..claims() };
        assert_eq!(v.verify(&r.sign(&other_issuer).unwrap(), NOW + 1), Err(TokenError::Issuer("someone-else".into())));
        for aud in [vec![], vec!["billing".to_owned()]] {
            let t = r.sign(&Claims { aud: aud.clone(), ..claims() }).unwrap();
            assert_eq!(v.verify(&t, NOW + 1), Err(TokenError::Audience(aud)));
        }
        let both = Claims { aud: vec!["billing".into(), PLATFORM_AUDIENCE.into()], ..claims() };
        assert!(v.verify(&r.sign(&both).unwrap(), NOW + 1).is_ok());
    }

    #[test]
    fn tampering_and_foreign_keys_are_refused() {
        let r = ring();
        let v = Verifier::new(&r.jwks());
        let t = r.sign(&claims()).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let mut evil = claims();
        evil.tenant = Some("other".into());
        let forged = format!("{}.{}.{}", parts[0], B64.encode(serde_json::to_vec(&evil).unwrap()), parts[2]);
        assert_eq!(v.verify(&forged, NOW + 1), Err(TokenError::Signature));
        let mut sig = B64.decode(parts[2]).unwrap();
        sig[5] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], B64.encode(sig));
        assert_eq!(v.verify(&flipped, NOW + 1), Err(TokenError::Signature));
        // A token of another key ring: its kid is unknown here.
        let other = ring();
        let t2 = other.sign(&claims()).unwrap();
        assert!(matches!(v.verify(&t2, NOW + 1), Err(TokenError::UnknownKey(_))));
        assert!(matches!(v.verify("a.b", NOW), Err(TokenError::Malformed(_))));
        assert!(matches!(v.verify("a.b.c.d", NOW), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn algorithm_confusion_is_refused() {
        let r = ring();
        let jwks = r.jwks();
        let v = Verifier::new(&jwks);
        let kid = jwks.keys[0].kid.clone();
        let body = B64.encode(serde_json::to_vec(&claims()).unwrap());
        // alg none, no signature.
        let h = B64.encode(format!(r#"{{"alg":"none","kid":"{kid}"}}"#));
        assert_eq!(v.verify(&format!("{h}.{body}."), NOW + 1), Err(TokenError::Algorithm("none".into())));
        // HS256 keyed with the public key (the classic confusion attack).
        let h = B64.encode(format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#));
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(jwks.keys[0].x.as_bytes()).unwrap();
        mac.update(format!("{h}.{body}").as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        assert_eq!(v.verify(&format!("{h}.{body}.{sig}"), NOW + 1), Err(TokenError::Algorithm("HS256".into())));
        let h = B64.encode(r#"{"alg":"EDDSA"}"#);
        assert!(matches!(v.verify(&format!("{h}.{body}.x"), NOW + 1), Err(TokenError::Algorithm(_))));
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_until_they_expire() {
        let mut r = ring();
        let old = r.sign(&claims()).unwrap();
        r.rotate(NOW + 10, 300);
        let v = Verifier::new(&r.jwks());
        assert_eq!(r.jwks().keys.len(), 2, "the old key is still published");
        assert!(v.verify(&old, NOW + 20).is_ok());
        let new = r.sign(&Claims { iat: NOW + 10, nbf: NOW + 10, exp: NOW + 310, ..claims() }).unwrap();
        assert_ne!(old.split('.').next(), new.split('.').next(), "signed with the new kid");
        assert!(v.verify(&new, NOW + 20).is_ok());
        // After the old key's tokens have all expired, the next rotation drops it.
        r.rotate(NOW + 400, 300);
        assert_eq!(r.keys.len(), 2);
        assert!(matches!(Verifier::new(&r.jwks()).verify(&old, NOW + 20), Err(TokenError::UnknownKey(_))));
    }

    #[test]
    fn secrets_are_not_in_debug_output() {
        let r = ring();
        let dbg = format!("{r:?}");
        assert!(!dbg.contains(&r.keys[0].secret), "{dbg}");
    }
}
