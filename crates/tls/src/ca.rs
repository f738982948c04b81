//! The cluster CA: made once at bootstrap, kept where certificates are issued (the operator's
//! machine, the harness's lab directory, the quickstart's directory), never on the nodes.
//!
//! A CA directory holds `ca.pem` (the certificate every node trusts) and `ca-key.pem` (0600).
//! Issuing writes a holder's directory: `ca.pem`, `cert.pem` and `key.pem` (0600), which is what
//! every service's `--tls-dir` reads. Rotation: issue a new directory for the holder and restart
//! its services; a new CA means issuing every holder again (see docs/security.md).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use ultracloud_runtime::secret_file;

use crate::identity::Role;
use crate::tls_dir::{CA_FILE, CERT_FILE, KEY_FILE, TlsError};

/// The CA's private key file in a CA directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// How long a CA is valid.
const CA_DAYS: i64 = 3650;
/// How long an issued certificate is valid unless asked otherwise.
pub const DEFAULT_CERT_DAYS: u32 = 365;

/// A loaded cluster CA that can issue certificates.
pub struct CertAuthority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("CertAuthority").finish_non_exhaustive()
    }
}

/// What to put in a holder's certificate.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// The holder's name (common name): a node name or an operator's name.
    pub name: String,
    /// The holder's role.
    pub role: Role,
    /// IP addresses the holder serves on (subject alternative names).
    pub ips: Vec<IpAddr>,
    /// DNS names the holder serves on.
    pub dns: Vec<String>,
    /// Validity in days.
    pub days: u32,
}

impl IssueRequest {
    /// A request for `name` in `role`, valid for [`DEFAULT_CERT_DAYS`], with no addresses yet.
    pub fn new(name: &str, role: Role) -> Self {
        Self { name: name.to_owned(), role, ips: Vec::new(), dns: Vec::new(), days: DEFAULT_CERT_DAYS }
    }
}

fn rcgen_err(what: &str) -> impl FnOnce(rcgen::Error) -> TlsError + '_ {
    move |e| TlsError::Generate { what: what.to_owned(), reason: e.to_string() }
}

impl CertAuthority {
    /// Makes a new CA named `name` (in memory; [`Self::save`] writes it).
    pub fn create(name: &str) -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(rcgen_err("the CA key"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "UltraCloud");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(CA_DAYS);
        let cert = params.self_signed(&key).map_err(rcgen_err("the CA certificate"))?;
        Ok(Self { cert_pem: cert.pem(), issuer: Issuer::new(params, key) })
    }

    /// Loads the CA in `dir` (`ca.pem`, `ca-key.pem`).
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let cert_pem = read(&dir.join(CA_FILE))?;
        let key_path = dir.join(CA_KEY_FILE);
        let key_pem =
            secret_file::read(&key_path).map_err(|source| TlsError::Read { path: key_path.clone(), source })?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Parse { path: key_path, reason: e.to_string() })?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(|e| TlsError::Parse { path: dir.join(CA_FILE), reason: e.to_string() })?;
        Ok(Self { cert_pem, issuer })
    }

    /// Loads the CA in `dir`, or makes and saves one named `name` when there is none.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<Self, TlsError> {
        if dir.join(CA_KEY_FILE).exists() {
            return Self::load(dir);
        }
        let ca = Self::create(name)?;
        ca.save(dir)?;
        Ok(ca)
    }

    /// Writes `ca.pem` and `ca-key.pem` (0600) into `dir`, made if missing.
    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        make_dir(dir)?;
        write_public(&dir.join(CA_FILE), &self.cert_pem)?;
        write_secret(&dir.join(CA_KEY_FILE), &self.issuer.key().serialize_pem())
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a certificate and key for `req`; returns (certificate PEM, key PEM).
    pub fn issue_pem(&self, req: &IssueRequest) -> Result<(String, String), TlsError> {
        let key = KeyPair::generate().map_err(rcgen_err("a holder key"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, req.name.as_str());
        dn.push(DnType::OrganizationName, "UltraCloud");
        // The role: servers read it back with `PeerIdentity::from_der`.
        dn.push(DnType::OrganizationalUnitName, req.role.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = req.ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
        for name in &req.dns {
            let dns = name.clone().try_into().map_err(rcgen_err("a DNS name"))?;
            params.subject_alt_names.push(SanType::DnsName(dns));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = match req.role {
            // An operator's certificate is a client's only.
            Role::Admin => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Role::ControlPlane | Role::Worker => {
                vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
            }
        };
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(i64::from(req.days.max(1)));
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_err("a holder certificate"))?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Issues a certificate for `req` into the holder directory `dir` (`ca.pem`, `cert.pem`,
    /// `key.pem` 0600); returns `dir`.
    pub fn issue(&self, req: &IssueRequest, dir: &Path) -> Result<PathBuf, TlsError> {
        let (cert, key) = self.issue_pem(req)?;
        make_dir(dir)?;
        write_public(&dir.join(CA_FILE), &self.cert_pem)?;
        write_public(&dir.join(CERT_FILE), &cert)?;
        write_secret(&dir.join(KEY_FILE), &key)?;
        Ok(dir.to_path_buf())
    }
}

fn make_dir(dir: &Path) -> Result<(), TlsError> {
    ultracloud_runtime::data_dir::create_private_dir(dir)
        .map_err(|source| TlsError::Write { path: dir.to_path_buf(), source })
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

fn write_public(path: &Path, text: &str) -> Result<(), TlsError> {
    std::fs::write(path, text).map_err(|source| TlsError::Write { path: path.to_path_buf(), source })
}

fn write_secret(path: &Path, text: &str) -> Result<(), TlsError> {
    secret_file::write(path, text.trim_end()).map_err(|source| TlsError::Write { path: path.to_path_buf(), source })
}
