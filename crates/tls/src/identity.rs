//! Who is on the other end of a connection: the holder's name and role, read from the
//! certificate the cluster CA issued it.

use std::fmt;
use std::str::FromStr;

/// What a certificate's holder is in the cluster. A server decides what each role may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A control-plane node: a member of chainfire's and flaredb's peer planes, and the client
    /// identity of the services on that node (iam, the controllers).
    ControlPlane,
    /// A worker: serves its agents' listeners; never a client of the internal planes.
    Worker,
    /// An operator's client certificate (`ultracloud db`, `etcdctl`, benchmarks).
    Admin,
}

impl Role {
    /// The role's name as written in a certificate and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
            Role::Admin => "admin",
        }
    }

    /// Every role, for help texts and errors.
    pub const ALL: [Role; 3] = [Role::ControlPlane, Role::Worker, Role::Admin];
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}` (expected control-plane, worker or admin)"))
    }
}

/// The verified identity of a TLS peer (its certificate chained to the cluster CA before this
/// is read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The certificate's common name: a node name, or an operator's name.
    pub name: String,
    /// The certificate's role.
    pub role: Role,
}

impl PeerIdentity {
    /// Reads the identity from a DER certificate; `None` when it names no known role (a
    /// certificate the cluster CA did not issue through [`crate::CertAuthority::issue`]).
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let name = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
        let role = subject.iter_organizational_unit().next()?.as_str().ok()?.parse().ok()?;
        Some(Self { name, role })
    }

    /// Whether the peer holds one of `roles`.
    pub fn is(&self, roles: &[Role]) -> bool {
        roles.contains(&self.role)
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_unknown_ones_are_named() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().unwrap_err().contains("`root`"));
    }

    #[test]
    fn garbage_is_no_identity() {
        assert_eq!(PeerIdentity::from_der(b"not a certificate"), None);
    }
}
