//! Opaque credentials: API keys (`ucak_…`) and refresh tokens (`ucrt_…`).
//!
//! A credential is `{prefix}_{id}_{secret}`: the ID finds the stored record, the secret proves
//! possession. Only SHA-256 of the secret is stored — the secret has 190 bits of entropy, so a
//! slow hash (argon2, as for passwords) would add cost without adding safety — and the check
//! compares digests in constant time. The full credential is shown once, when it is created.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand_core::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a credential is for (its prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An API key, exchanged for access tokens.
    ApiKey,
    /// A refresh token, exchanged once for a new access and refresh token.
    Refresh,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::ApiKey => "ucak",
            Kind::Refresh => "ucrt",
        }
    }
}

const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut bytes = vec![0u8; len];
    rand_core::OsRng.fill_bytes(&mut bytes);
    // 256 % 57 != 0 leaves a slight bias; 33 characters still carry more than 190 bits.
    bytes.iter().map(|b| alphabet[*b as usize % alphabet.len()] as char).collect()
}

/// A new random ID (16 lowercase letters and digits).
pub fn new_id() -> String {
    random_string(16, b"abcdefghijklmnopqrstuvwxyz0123456789")
}

/// A new S3 access key pair: an access key ID (`UC` and 18 capitals and digits: the shape S3
/// tools expect of an AWS key ID) and its secret (40 characters, about 233 bits).
pub fn s3_pair() -> (String, String) {
    (format!("UC{}", random_string(18, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")), random_string(40, ALPHABET))
}

/// Whether `id` has the shape of an S3 access key ID minted here.
pub fn is_s3_access_key_id(id: &str) -> bool {
    id.len() == 20 && id.starts_with("UC") && id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// A freshly minted credential: give `token` to the holder, store `id` and `hash`.
pub struct Minted {
    /// The record's ID.
    pub id: String,
    /// What the holder presents. Shown once; never stored or logged.
    pub token: String,
    /// What is stored.
    pub hash: String,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Mints a credential of `kind`.
pub fn mint(kind: Kind) -> Minted {
    let id = new_id();
    let secret = random_string(33, ALPHABET);
    let token = format!("{}_{id}_{secret}", kind.prefix());
    Minted { id, hash: hash(&secret), token }
}

/// Splits a presented credential of `kind` into its ID and secret; `None` when it is not one.
pub fn parse(kind: Kind, token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(kind.prefix())?.strip_prefix('_')?;
    let (id, secret) = rest.split_once('_')?;
    let ok = !id.is_empty() && !secret.is_empty() && id.len() <= 64 && secret.len() <= 128;
    ok.then_some((id, secret))
}

/// The stored form of a secret.
pub fn hash(secret: &str) -> String {
    B64.encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` matches the stored `hash` (constant time in the secret).
pub fn matches(secret: &str, hash: &str) -> bool {
    let Ok(stored) = B64.decode(hash) else { return false };
    let presented = Sha256::digest(secret.as_bytes());
    stored.len() == presented.len() && bool::from(presented.as_slice().ct_eq(&stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_credentials_parse_and_match() {
        let m = mint(Kind::ApiKey);
        assert!(m.token.starts_with("ucak_"));
        let (id, secret) = parse(Kind::ApiKey, &m.token).unwrap();
        assert_eq!(id, m.id);
        assert!(matches(secret, &m.hash));
        assert!(!matches("another secret", &m.hash));
        assert!(!matches(secret, "not base64!"));
        assert!(parse(Kind::Refresh, &m.token).is_none(), "kinds do not mix");
        assert!(!format!("{m:?}").contains(secret), "Debug never shows the secret");
    }

    #[test]
    fn malformed_credentials_are_refused() {
        for bad in ["", "ucak", "ucak_", "ucak__x", "ucak_id_", "ucak-id-secret", "bearer ucak_a_b"] {
            assert!(parse(Kind::ApiKey, bad).is_none(), "{bad:?}");
        }
        assert_eq!(parse(Kind::ApiKey, "ucak_abc_s3cr_et"), Some(("abc", "s3cr_et")));
    }

    #[test]
    fn ids_are_distinct() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
