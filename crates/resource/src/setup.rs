//! Service start-up helpers every controller uses the same way.

/// What start-up failures are returned as.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `<data root>/iam/platform-api-key`: where iam writes the platform service account's key.
pub fn default_key_file() -> std::path::PathBuf {
    ultracloud_runtime::data_dir::default_root().join("iam").join("platform-api-key")
}

/// A comma-separated list, trimmed, empty entries dropped.
pub fn split(list: &str) -> Vec<String> {
    list.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
}

/// Reads a service API key file, naming the file (and who writes it) when it cannot.
pub fn read_key(path: &std::path::Path) -> Result<String, BoxError> {
    let key = ultracloud_runtime::secret_file::read(path).map_err(|e| {
        format!("reading the service API key {}: {e} (iam writes it on its first start)", path.display())
    })?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_drop_blanks_and_spaces() {
        assert_eq!(super::split(" a, b,,c ,"), ["a", "b", "c"]);
        assert!(super::split("").is_empty());
    }

    #[test]
    fn a_missing_key_file_names_the_file_and_its_writer() {
        let e = super::read_key(std::path::Path::new("/nonexistent/key")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/key") && e.contains("iam"), "{e}");
    }
}
