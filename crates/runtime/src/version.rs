//! Build identity reported by `/version` and `ultracloud --version`.

use serde::Serialize;

/// The UltraCloud release this binary was built from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `/version` answers: enough to tell which build a process runs.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    /// Name of the service answering (e.g. `chainfire`).
    pub service: String,
    /// Release version.
    pub version: &'static str,
    /// Git commit, when the build recorded one (`ULTRACLOUD_GIT_COMMIT` at build time).
    pub commit: Option<&'static str>,
    /// `debug` or `release`.
    pub profile: &'static str,
}

impl VersionInfo {
    /// The version info of this binary, answered on behalf of `service`.
    pub fn for_service(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            version: VERSION,
            commit: option_env!("ULTRACLOUD_GIT_COMMIT"),
            profile: if cfg!(debug_assertions) { "debug" } else { "release" },
        }
    }
}
