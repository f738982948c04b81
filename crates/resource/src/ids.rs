//! Resource IDs and names: one rule for every service.

use rand_core::RngCore;

use crate::StoreError;

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A new resource ID: `prefix-` and 12 random lowercase letters and digits (about 62 bits).
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    rand_core::OsRng.fill_bytes(&mut bytes);
    let tail: String = bytes.iter().map(|b| ID_ALPHABET[usize::from(*b) % ID_ALPHABET.len()] as char).collect();
    format!("{prefix}-{tail}")
}

/// `N` bytes from the operating system's random source (for IDs with a shape of their own).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes
}

pub use ultracloud_runtime::names::is_valid_name;

/// Checks a resource name ([`is_valid_name`]), naming it in the error.
pub fn valid_name(name: &str) -> Result<(), StoreError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("name {name:?}: use 1-63 lowercase letters, digits and dashes")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_differ() {
        let (a, b) = (new_id("vm"), new_id("vm"));
        assert!(a.starts_with("vm-") && a.len() == 15, "{a}");
        assert_ne!(a, b);
        assert!(a[3..].bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    }

    #[test]
    fn names_are_short_lowercase_dns_labels() {
        for ok in ["a", "web-1", &"x".repeat(63)] {
            assert!(valid_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "Web", "a_b", "a.b", &"x".repeat(64)] {
            assert!(matches!(valid_name(bad), Err(StoreError::Invalid(_))), "{bad:?}");
        }
    }
}
