//! Whether this process may build networks: root, or the two capabilities that netns work needs.
//!
//! Read from `/proc/self/status` (the `Uid:` and `CapEff:` lines) rather than through `geteuid(2)`,
//! which keeps the crate free of `unsafe`.

use serde::Serialize;

/// Capability bit of `CAP_NET_ADMIN` in `CapEff`.
const CAP_NET_ADMIN: u32 = 12;
/// Capability bit of `CAP_SYS_ADMIN` in `CapEff`.
const CAP_SYS_ADMIN: u32 = 21;

/// The privileges of this process that UltraCloud cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Privileges {
    /// Effective user id.
    pub euid: u32,
    /// `CAP_NET_ADMIN` is in the effective set.
    pub cap_net_admin: bool,
    /// `CAP_SYS_ADMIN` is in the effective set.
    pub cap_sys_admin: bool,
}

/// Why the privileges could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegesError {
    /// `/proc/self/status` could not be read.
    #[error("reading /proc/self/status")]
    Read(#[source] std::io::Error),
    /// A line the kernel always writes was missing or malformed.
    #[error("/proc/self/status has no readable {0} line")]
    Field(&'static str),
}

impl Privileges {
    /// The privileges of the calling process.
    pub fn current() -> Result<Self, PrivilegesError> {
        let status = std::fs::read_to_string("/proc/self/status").map_err(PrivilegesError::Read)?;
        Self::parse(&status)
    }

    /// Parses the text of a `/proc/<pid>/status` file.
    pub fn parse(status: &str) -> Result<Self, PrivilegesError> {
        let field =
            |name: &str| status.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':')).map(str::trim);
        // `Uid:` lists real, effective, saved and filesystem uids.
        let euid = field("Uid")
            .and_then(|v| v.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .ok_or(PrivilegesError::Field("Uid"))?;
        let cap_eff =
            field("CapEff").and_then(|v| u64::from_str_radix(v, 16).ok()).ok_or(PrivilegesError::Field("CapEff"))?;
        Ok(Self {
            euid,
            cap_net_admin: cap_eff & (1 << CAP_NET_ADMIN) != 0,
            cap_sys_admin: cap_eff & (1 << CAP_SYS_ADMIN) != 0,
        })
    }

    /// Effective uid 0.
    pub fn is_root(&self) -> bool {
        self.euid == 0
    }

    /// Enough to create namespaces, bridges and taps: root, or both capabilities.
    pub fn sufficient(&self) -> bool {
        self.is_root() || (self.cap_net_admin && self.cap_sys_admin)
    }

    /// The capabilities a non-root process lacks, by name.
    pub fn missing_caps(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if !self.cap_net_admin {
            missing.push("CAP_NET_ADMIN");
        }
        if !self.cap_sys_admin {
            missing.push("CAP_SYS_ADMIN");
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(uid: &str, cap_eff: &str) -> String {
        format!("Name:\ttest\nUid:\t{uid}\nGid:\t0\t0\t0\t0\nCapInh:\t0\nCapEff:\t{cap_eff}\n")
    }

    #[test]
    fn root_is_sufficient() {
        let p = Privileges::parse(&status("0\t0\t0\t0", "000001ffffffffff")).unwrap();
        assert!(p.is_root() && p.sufficient());
    }

    #[test]
    fn capabilities_without_root() {
        // bits 12 and 21
        let p = Privileges::parse(&status("1000\t1000\t1000\t1000", "0000000000201000")).unwrap();
        assert_eq!(p.euid, 1000);
        assert!(p.sufficient());
        let p = Privileges::parse(&status("1000\t1000\t1000\t1000", "0000000000001000")).unwrap();
        assert!(!p.sufficient());
        assert_eq!(p.missing_caps(), vec!["CAP_SYS_ADMIN"]);
    }

    #[test]
    fn effective_uid_is_the_second_field() {
        let p = Privileges::parse(&status("1000\t0\t0\t0", "0")).unwrap();
        assert!(p.is_root());
    }

    #[test]
    fn malformed() {
        assert!(Privileges::parse("Uid:\tx\n").is_err());
        assert!(Privileges::current().is_ok());
    }
}
