//! One row of the doctor's report: what was checked, how it went, and how to fix it.

use serde::Serialize;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Present and working.
    Ok,
    /// A required piece is absent or broken: the host is not ready.
    Missing,
    /// Worth knowing, but UltraCloud runs (advisory checks, fallbacks, unprobed features).
    Warn,
}

impl Status {
    /// The word shown in the table's STATUS column.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Missing => "MISSING",
            Status::Warn => "warn",
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable machine-readable id, e.g. `qemu-system`.
    pub id: &'static str,
    /// Short human name, shown in the table.
    pub name: &'static str,
    /// Whether a failure makes the host not ready (advisory checks only warn).
    pub required: bool,
    /// How it came out.
    pub status: Status,
    /// What was found, or what went wrong.
    pub detail: String,
    /// What to do about it, e.g. `apt-get install -y qemu-system-x86`; `None` when nothing to do.
    pub fix: Option<String>,
    /// Debian packages that fix it (empty when ok or when no package helps).
    pub packages: Vec<String>,
}

/// What a check is, before it has run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) id: &'static str,
    pub(crate) name: &'static str,
    pub(crate) required: bool,
}

impl Spec {
    fn row(self, status: Status, detail: String, fix: Option<String>) -> Check {
        Check { id: self.id, name: self.name, required: self.required, status, detail, fix, packages: Vec::new() }
    }

    /// A passing row.
    pub(crate) fn ok(self, detail: impl Into<String>) -> Check {
        self.row(Status::Ok, detail.into(), None)
    }

    /// A failing row; advisory checks downgrade it to a warning.
    pub(crate) fn missing(self, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        let status = if self.required { Status::Missing } else { Status::Warn };
        self.row(status, detail.into(), Some(fix.into()))
    }

    /// A failing row fixed by installing Debian `packages`.
    pub(crate) fn missing_packages(self, detail: impl Into<String>, packages: &[&str]) -> Check {
        let mut check = self.missing(detail, apt_fix(packages));
        check.packages = packages.iter().map(|p| p.to_string()).collect();
        check
    }

    /// A warning row.
    pub(crate) fn warn(self, detail: impl Into<String>, fix: Option<String>) -> Check {
        self.row(Status::Warn, detail.into(), fix)
    }
}

/// `apt-get install -y <packages>`.
pub fn apt_fix(packages: &[&str]) -> String {
    format!("apt-get install -y {}", packages.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advisory_failures_only_warn() {
        let spec = Spec { id: "x", name: "x", required: false };
        let row = spec.missing_packages("gone", &["kmod"]);
        assert_eq!(row.status, Status::Warn);
        assert_eq!(row.fix.as_deref(), Some("apt-get install -y kmod"));
        assert_eq!(row.packages, vec!["kmod"]);
    }
}
