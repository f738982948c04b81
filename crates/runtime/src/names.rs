//! The one rule for names and IDs across UltraCloud: every service's resource names
//! (`ultracloud_resource::ids`) and iam's tenants, projects, users and roles.

/// Whether `name` is 1-63 lowercase letters, digits and dashes, not starting with a dash (a DNS
/// label's alphabet, so a name can become a hostname or a path segment as it is).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_name_rule() {
        for ok in ["a", "web-1", "0", &"x".repeat(63)] {
            assert!(super::is_valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", "Web", "a_b", "a.b", "a/b", &"x".repeat(64)] {
            assert!(!super::is_valid_name(bad), "{bad}");
        }
    }
}
