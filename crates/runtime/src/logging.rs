//! `tracing` setup shared by every command: human-readable by default, JSON on request.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event (the default).
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Dependencies silenced unless `level` names them: s3s logs every refused S3 request (a 404
/// included) and whole malformed request bodies at ERROR; lightningstor's gateway logs its
/// refusals itself, with their request IDs, and server errors as warnings.
const QUIET: &[&str] = &["s3s"];

fn with_quiet_dependencies(level: &str) -> String {
    let mut directives = level.to_owned();
    for dep in QUIET.iter().filter(|d| !level.contains(*d)) {
        directives.push_str(&format!(",{dep}=off"));
    }
    directives
}

/// Installs the global subscriber writing to stderr.
///
/// `level` is an `EnvFilter` directive (`info`, `chainfire=debug,warn`, …); `RUST_LOG` wins when
/// set, as operators expect. Calling it twice is harmless (the second call does nothing), which
/// keeps tests that start several services in one process simple.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(with_quiet_dependencies(level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: service logs usually go to files (the node agent's logs/).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noisy_dependencies_are_off_unless_named() {
        assert_eq!(with_quiet_dependencies("info"), "info,s3s=off");
        assert_eq!(with_quiet_dependencies("s3s=debug,info"), "s3s=debug,info");
        assert!(EnvFilter::try_new(with_quiet_dependencies("chainfire=debug,warn")).is_ok());
    }
}
