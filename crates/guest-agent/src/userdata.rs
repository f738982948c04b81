//! User data: the JSON document the host hands a guest through QEMU's fw_cfg
//! (`-fw_cfg name=opt/ultracloud/userdata,file=…`), read from sysfs once the `qemu_fw_cfg` module
//! is loaded.
//!
//! ```json
//! {"hostname": "web-1", "http_port": 8080, "run": "echo hello", "files": {"/etc/motd": "hi\n"}}
//! ```
//! Every field is optional. Malformed user data is reported on the console and replaced by the
//! defaults, so a typo never leaves a guest unreachable.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use serde::Deserialize;

/// Where the `qemu_fw_cfg` driver exposes the user data blob.
pub const USERDATA_PATH: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/ultracloud/userdata/raw";
/// Largest user data accepted.
pub const MAX_USERDATA_BYTES: usize = 1024 * 1024;
/// Port of the HTTP API when user data names none.
pub const DEFAULT_HTTP_PORT: u16 = 80;

/// The parsed user data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserData {
    /// Hostname to set.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Port of the HTTP API (default [`DEFAULT_HTTP_PORT`]).
    #[serde(default)]
    pub http_port: Option<u16>,
    /// A command run with `/bin/sh -c` in the background once the network is up; its output goes
    /// to the console.
    #[serde(default)]
    pub run: Option<String>,
    /// Files to write before anything else starts: absolute path → content. Content starting with
    /// `#!` is made executable.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

impl UserData {
    /// Parses and validates user data.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > MAX_USERDATA_BYTES {
            return Err(format!("larger than {MAX_USERDATA_BYTES} bytes"));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if !value.is_object() {
            // serde would also accept a struct written as an array.
            return Err("user data must be a JSON object".to_string());
        }
        let data: Self = serde_json::from_value(value).map_err(|e| e.to_string())?;
        if let Some(name) = &data.hostname {
            validate_hostname(name)?;
        }
        if data.http_port == Some(0) {
            return Err("http_port must not be 0".to_string());
        }
        for path in data.files.keys() {
            validate_file_path(path)?;
        }
        Ok(data)
    }

    /// The HTTP port to listen on.
    pub fn http_port(&self) -> u16 {
        self.http_port.unwrap_or(DEFAULT_HTTP_PORT)
    }

    /// Writes [`UserData::files`], creating parent directories; returns one message per failure.
    pub fn write_files(&self, root: &Path) -> Vec<String> {
        let mut errors = Vec::new();
        for (path, content) in &self.files {
            let target = root.join(path.trim_start_matches('/'));
            if let Err(e) = write_file(&target, content) {
                errors.push(format!("writing {path}: {e}"));
            }
        }
        errors
    }
}

fn write_file(target: &Path, content: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(target, content)?;
    let mode = if content.starts_with("#!") { 0o755 } else { 0o644 };
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode))
}

/// Hostnames: 1–64 characters of letters, digits, `-` and `.`.
fn validate_hostname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.']);
    if ok { Ok(()) } else { Err(format!("invalid hostname {name:?}")) }
}

/// File paths: absolute, without `..`, naming a file (not `/`).
fn validate_file_path(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("file path {path:?} is not absolute"));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("file path {path:?} contains '..'"));
    }
    if p.file_name().is_none() || path.ends_with('/') {
        return Err(format!("file path {path:?} names no file"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_empty_user_data() {
        let d =
            UserData::parse(br#"{"hostname":"web-1","http_port":8080,"run":"echo hi","files":{"/etc/motd":"hello"}}"#)
                .unwrap();
        assert_eq!(d.hostname.as_deref(), Some("web-1"));
        assert_eq!(d.http_port(), 8080);
        assert_eq!(d.run.as_deref(), Some("echo hi"));
        assert_eq!(d.files.get("/etc/motd").map(String::as_str), Some("hello"));
        assert_eq!(UserData::parse(b"{}").unwrap(), UserData::default());
        assert_eq!(UserData::parse(b" \n").unwrap(), UserData::default());
        assert_eq!(UserData::default().http_port(), 80);
    }

    #[test]
    fn refuses_malformed_user_data() {
        for bad in [
            &b"{"[..],
            b"[]",
            b"{\"http_port\":70000}",
            b"{\"http_port\":0}",
            b"{\"hostname\":\"bad name\"}",
            b"{\"hostname\":\"\"}",
            b"{\"files\":{\"etc/motd\":\"x\"}}",
            b"{\"files\":{\"/etc/../motd\":\"x\"}}",
            b"{\"files\":{\"/\":\"x\"}}",
            b"{\"files\":{\"/a\":1}}",
            b"{\"unknown\":1}",
        ] {
            assert!(UserData::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn writes_files_under_root() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let d = UserData::parse(br##"{"files":{"/etc/motd":"hi","/usr/local/bin/x":"#!/bin/sh\necho x\n"}}"##).unwrap();
        assert!(d.write_files(root.path()).is_empty());
        assert_eq!(std::fs::read_to_string(root.path().join("etc/motd")).unwrap(), "hi");
        let mode = std::fs::metadata(root.path().join("usr/local/bin/x")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
    }
}
