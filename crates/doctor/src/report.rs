//! The doctor's findings as a whole: readiness, the human table, the JSON form, what to install.

use serde::Serialize;

use crate::check::{Check, Status};

/// Id of the guest-kernel check, which [`Report::needs_guest_kernel`] looks at.
pub(crate) const GUEST_KERNEL_ID: &str = "guest-kernel";
/// The command that installs everything the report asks for.
pub const INSTALL_COMMAND: &str = "ultracloud doctor --install";

/// The outcome of [`crate::Doctor::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    checks: Vec<Check>,
}

/// The JSON form: the rows plus what a script needs without re-deriving it.
#[derive(Serialize)]
struct Wire<'a> {
    ready: bool,
    checks: &'a [Check],
    missing_packages: Vec<String>,
    needs_guest_kernel: bool,
    apt_command: Option<String>,
}

impl Serialize for Report {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Wire {
            ready: self.ready(),
            checks: &self.checks,
            missing_packages: self.missing_packages(),
            needs_guest_kernel: self.needs_guest_kernel(),
            apt_command: self.apt_command(),
        }
        .serialize(serializer)
    }
}

impl Report {
    /// A report of these rows.
    pub fn new(checks: Vec<Check>) -> Self {
        Self { checks }
    }

    /// Every row, in check order.
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// The row with this id.
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// True when no required check is missing (warnings do not count).
    pub fn ready(&self) -> bool {
        !self.checks.iter().any(|c| c.required && c.status == Status::Missing)
    }

    /// Debian packages that would fix the failing and warning rows, each once, in check order.
    /// Never includes a kernel image: see [`Report::needs_guest_kernel`].
    pub fn missing_packages(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for pkg in self.checks.iter().filter(|c| c.status != Status::Ok).flat_map(|c| &c.packages) {
            if !out.contains(pkg) {
                out.push(pkg.clone());
            }
        }
        out
    }

    /// True when no guest kernel was found, so the installer should run
    /// [`crate::fetch_guest_kernel`].
    pub fn needs_guest_kernel(&self) -> bool {
        self.check(GUEST_KERNEL_ID).is_some_and(|c| c.status != Status::Ok)
    }

    /// `apt-get install -y --no-install-recommends <all missing packages>`, if any are missing.
    pub fn apt_command(&self) -> Option<String> {
        let packages = self.missing_packages();
        (!packages.is_empty()).then(|| format!("apt-get install -y --no-install-recommends {}", packages.join(" ")))
    }

    /// The human table (CHECK, STATUS, DETAIL, FIX), a summary line, and the commands that fix
    /// everything.
    pub fn render_table(&self) -> String {
        let header = ["CHECK", "STATUS", "DETAIL", "FIX"];
        let rows: Vec<[&str; 4]> = self
            .checks
            .iter()
            .map(|c| [c.name, c.status.label(), c.detail.as_str(), c.fix.as_deref().unwrap_or("-")])
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&rows) {
            let line = row.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect::<Vec<_>>().join("  ");
            out.push_str(line.trim_end());
            out.push('\n');
        }

        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        let (ok, missing, warn) = (count(Status::Ok), count(Status::Missing), count(Status::Warn));
        let verdict = if self.ready() { "READY" } else { "NOT READY" };
        out.push_str(&format!(
            "\n{ok} ok, {missing} missing, {warn} warning{}: {verdict}\n",
            if warn == 1 { "" } else { "s" }
        ));
        if let Some(apt) = self.apt_command() {
            out.push_str(&format!("Missing packages: {apt}\n"));
        }
        if self.needs_guest_kernel() {
            out.push_str("Guest kernel: downloaded into the cache by the installer (the host's boot is not changed)\n");
        }
        if self.apt_command().is_some() || self.needs_guest_kernel() {
            out.push_str(&format!("Install everything (as root): {INSTALL_COMMAND}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Spec;

    fn spec(id: &'static str, required: bool) -> Spec {
        Spec { id, name: id, required }
    }

    fn sample() -> Report {
        Report::new(vec![
            spec("iproute2", true).ok("/usr/sbin/ip"),
            spec("qemu-system", true).missing_packages("qemu-system-x86_64 not found", &["qemu-system-x86"]),
            spec("firewall", true).warn("only iptables", Some("apt-get install -y nftables".into())),
            spec("depmod", false).missing_packages("depmod not found", &["kmod"]),
            spec("qemu-img", true).missing_packages("qemu-img not found", &["qemu-utils"]),
            spec(GUEST_KERNEL_ID, true).missing("none", INSTALL_COMMAND),
        ])
    }

    #[test]
    fn readiness_ignores_warnings() {
        let report = sample();
        assert!(!report.ready());
        let warnings_only = Report::new(sample().checks.into_iter().filter(|c| c.status != Status::Missing).collect());
        assert!(warnings_only.ready());
        assert!(!warnings_only.needs_guest_kernel());
    }

    #[test]
    fn packages_in_check_order_once() {
        assert_eq!(sample().missing_packages(), vec!["qemu-system-x86", "kmod", "qemu-utils"]);
        assert!(sample().needs_guest_kernel());
    }

    #[test]
    fn table_layout() {
        let table = sample().render_table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "CHECK         STATUS   DETAIL                        FIX");
        assert_eq!(lines[1], "iproute2      ok       /usr/sbin/ip                  -");
        assert_eq!(lines[2], "qemu-system   MISSING  qemu-system-x86_64 not found  apt-get install -y qemu-system-x86");
        assert!(lines[4].starts_with("depmod        warn "));
        assert!(table.contains("\n1 ok, 3 missing, 2 warnings: NOT READY\n"), "{table}");
        assert!(table.contains(
            "Missing packages: apt-get install -y --no-install-recommends qemu-system-x86 kmod qemu-utils\n"
        ));
        assert!(table.ends_with("Install everything (as root): ultracloud doctor --install\n"));
    }

    #[test]
    fn json_shape() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["ready"], false);
        assert_eq!(v["needs_guest_kernel"], true);
        assert_eq!(v["missing_packages"][0], "qemu-system-x86");
        let row = &v["checks"][1];
        assert_eq!(row["id"], "qemu-system");
        assert_eq!(row["status"], "missing");
        assert_eq!(row["required"], true);
        assert_eq!(row["fix"], "apt-get install -y qemu-system-x86");
        assert_eq!(row["packages"][0], "qemu-system-x86");
        assert_eq!(v["checks"][0]["fix"], serde_json::Value::Null);
    }
}
