//! `x-amz-checksum-*`: the additional checksums of S3 (CRC32, CRC32C, CRC64NVME, SHA1,
//! SHA256). A PUT or part that names one — as a header, or as a trailer of an aws-chunked body,
//! which is how current AWS SDKs send it by default — is computed while it streams into blocks
//! and refused with BadDigest when it differs; the value is kept with the object and returned
//! on PUT and, with `x-amz-checksum-mode: ENABLED`, on GET and HEAD of the whole object.

use s3s::S3Result;
use s3s::TrailingHeaders;
use s3s::dto::ChecksumAlgorithm;
use s3s::s3_error;
use serde::{Deserialize, Serialize};

/// A checksum algorithm S3 knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// CRC-32 (IEEE).
    Crc32,
    /// CRC-32C (Castagnoli).
    Crc32c,
    /// CRC-64/NVME.
    Crc64nvme,
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
}

/// The order of the algorithms in [`fields`] and [`wanted`].
const ALL: [Algorithm; 5] =
    [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64nvme, Algorithm::Sha1, Algorithm::Sha256];

impl Algorithm {
    fn header(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
            Self::Crc64nvme => "x-amz-checksum-crc64nvme",
            Self::Sha1 => "x-amz-checksum-sha1",
            Self::Sha256 => "x-amz-checksum-sha256",
        }
    }

    fn named(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            ChecksumAlgorithm::CRC32 => Some(Self::Crc32),
            ChecksumAlgorithm::CRC32C => Some(Self::Crc32c),
            ChecksumAlgorithm::CRC64NVME => Some(Self::Crc64nvme),
            ChecksumAlgorithm::SHA1 => Some(Self::Sha1),
            ChecksumAlgorithm::SHA256 => Some(Self::Sha256),
            _ => None,
        }
    }
}

/// A checksum kept with an object or part: the algorithm and the base64 value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Its base64 value.
    pub value: String,
}

/// What a request asked to be checked: the algorithm and, unless it comes as a trailer, the
/// value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    algorithm: Algorithm,
    value: Option<String>,
}

/// The checksum a request names: from the `checksum_algorithm` (`x-amz-sdk-checksum-algorithm`)
/// and the values of `x-amz-checksum-crc32`, `-crc32c`, `-crc64nvme`, `-sha1`, `-sha256` in
/// that order. Two values, or a value of another algorithm than the one named, are refused.
pub fn wanted(algorithm: Option<&ChecksumAlgorithm>, values: [Option<&str>; 5]) -> S3Result<Option<Wanted>> {
    let named = match algorithm {
        Some(a) => Some(
            Algorithm::named(a.as_str())
                .ok_or_else(|| s3_error!(InvalidArgument, "checksum algorithm {:?} is unknown", a.as_str()))?,
        ),
        None => None,
    };
    let mut given = ALL.into_iter().zip(values).filter_map(|(a, v)| v.map(|v| (a, v.to_owned())));
    let first = given.next();
    if given.next().is_some() {
        return Err(s3_error!(InvalidRequest, "name one x-amz-checksum-* value, not several"));
    }
    match (named, first) {
        (Some(n), Some((a, _))) if n != a => {
            Err(s3_error!(InvalidRequest, "the checksum named ({n:?}) is not the one given ({a:?})"))
        }
        (_, Some((algorithm, value))) => Ok(Some(Wanted { algorithm, value: Some(value) })),
        (Some(algorithm), None) => Ok(Some(Wanted { algorithm, value: None })),
        (None, None) => Ok(None),
    }
}

/// [`wanted`] over the checksum fields of a PutObject or UploadPart input (they share names).
macro_rules! wanted_by {
    ($input:expr) => {
        $crate::gateway::checksums::wanted(
            $input.checksum_algorithm.as_ref(),
            [
                $input.checksum_crc32.as_deref(),
                $input.checksum_crc32c.as_deref(),
                $input.checksum_crc64nvme.as_deref(),
                $input.checksum_sha1.as_deref(),
                $input.checksum_sha256.as_deref(),
            ],
        )
    };
}
pub(crate) use wanted_by;

/// A running checksum of a body.
pub struct Hasher {
    wanted: Wanted,
    inner: s3s::checksum::ChecksumHasher,
}

impl Hasher {
    /// Starts computing what `wanted` names.
    pub fn new(wanted: Wanted) -> Self {
        use s3s::crypto::Checksum as _;
        let mut inner = s3s::checksum::ChecksumHasher::default();
        match wanted.algorithm {
            Algorithm::Crc32 => inner.crc32 = Some(s3s::crypto::Crc32::new()),
            Algorithm::Crc32c => inner.crc32c = Some(s3s::crypto::Crc32c::new()),
            Algorithm::Crc64nvme => inner.crc64nvme = Some(s3s::crypto::Crc64Nvme::new()),
            Algorithm::Sha1 => inner.sha1 = Some(s3s::crypto::Sha1::new()),
            Algorithm::Sha256 => inner.sha256 = Some(s3s::crypto::Sha256::new()),
        }
        Self { wanted, inner }
    }

    /// Feeds a chunk of the body.
    pub fn update(&mut self, chunk: &[u8]) {
        self.inner.update(chunk);
    }

    /// The checksum of the whole body, checked against the one given in a header or (read
    /// now that the body has ended) in a trailer.
    pub fn finish(self, trailers: Option<&TrailingHeaders>) -> S3Result<Stored> {
        let algorithm = self.wanted.algorithm;
        let sums = self.inner.finalize();
        let value = match algorithm {
            Algorithm::Crc32 => sums.checksum_crc32,
            Algorithm::Crc32c => sums.checksum_crc32c,
            Algorithm::Crc64nvme => sums.checksum_crc64nvme,
            Algorithm::Sha1 => sums.checksum_sha1,
            Algorithm::Sha256 => sums.checksum_sha256,
        }
        .unwrap_or_default();
        let trailed = || {
            trailers
                .and_then(|t| t.read(|h| h.get(algorithm.header()).and_then(|v| v.to_str().ok()).map(str::to_owned)))?
        };
        if let Some(expected) = self.wanted.value.clone().or_else(trailed)
            && expected.trim() != value
        {
            return Err(s3_error!(BadDigest, "the {algorithm:?} checksum given does not match the body's"));
        }
        Ok(Stored { algorithm, value })
    }
}

/// A stored checksum as the five response fields (crc32, crc32c, crc64nvme, sha1, sha256).
pub fn fields(c: Option<&Stored>) -> [Option<String>; 5] {
    ALL.map(|a| c.filter(|c| c.algorithm == a).map(|c| c.value.clone()))
}

/// Sets the five checksum fields of an S3 output (PutObject, GetObject, HeadObject,
/// UploadPart: they share names) from a stored checksum.
macro_rules! answer_with {
    ($output:expr, $checksum:expr) => {{
        let mut out = $output;
        [out.checksum_crc32, out.checksum_crc32c, out.checksum_crc64nvme, out.checksum_sha1, out.checksum_sha256] =
            $crate::gateway::checksums::fields($checksum);
        out
    }};
}
pub(crate) use answer_with;

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(algorithm: &str, body: &[u8]) -> String {
        let w = wanted(Some(&ChecksumAlgorithm::from(algorithm.to_owned())), [None; 5]).unwrap().unwrap();
        let mut h = Hasher::new(w);
        h.update(body);
        h.finish(None).unwrap().value
    }

    #[test]
    fn checksums_match_known_values_and_mismatches_are_refused() {
        // Known values for "hello" (Python: zlib.crc32, crc32c, hashlib), base64 of big-endian.
        assert_eq!(digest("CRC32", b"hello"), "NhCmhg==");
        assert_eq!(digest("CRC32C", b"hello"), "mnG7TA==");
        assert_eq!(digest("SHA1", b"hello"), "qvTGHdzF6KLavt4PO0gs2a6pQ00=");
        assert_eq!(digest("SHA256", b"hello"), "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=");
        let bad = wanted(None, [Some("AAAAAA=="), None, None, None, None]).unwrap().unwrap();
        let mut h = Hasher::new(bad);
        h.update(b"hello");
        assert_eq!(h.finish(None).unwrap_err().code().as_str(), "BadDigest");
        let two = wanted(None, [Some("a"), None, None, Some("b"), None]);
        assert_eq!(two.unwrap_err().code().as_str(), "InvalidRequest");
        let other = wanted(Some(&ChecksumAlgorithm::from("SHA1".to_owned())), [Some("a"), None, None, None, None]);
        assert_eq!(other.unwrap_err().code().as_str(), "InvalidRequest");
        assert_eq!(wanted(None, [None; 5]).unwrap(), None);
        let stored = Stored { algorithm: Algorithm::Sha1, value: "v".into() };
        assert_eq!(fields(Some(&stored)), [None, None, None, Some("v".into()), None]);
    }
}
