//! What a test does when this machine lacks something it needs (root, a tool, a built binary).
//!
//! On a developer's machine it skips with a note: not every laptop has QEMU. Under CI
//! (`CI=true`, as `.ci/run` and most CI systems set) it fails instead, so that a runner that lost
//! a package cannot pass by running nothing.

/// Whether this process runs under CI (`CI` set to `true` or `1`, any case).
pub fn under_ci() -> bool {
    means_ci(std::env::var("CI").ok().as_deref())
}

/// Whether a value of `CI` means "this is CI".
fn means_ci(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Reports that a test cannot run here because of `why`: under CI this panics (failing the
/// test); elsewhere it prints `SKIPPED: why` and returns, and the caller returns too.
pub fn missing(why: &str) {
    assert!(!under_ci(), "a prerequisite is missing and CI=true forbids skipping: {why}");
    eprintln!("SKIPPED: {why} (under CI=true this fails)");
}

#[cfg(test)]
mod tests {
    #[test]
    fn true_and_1_mean_ci_and_nothing_else_does() {
        for (v, ci) in [(Some("true"), true), (Some("TRUE"), true), (Some("1"), true)] {
            assert_eq!(super::means_ci(v), ci, "{v:?}");
        }
        for v in [None, Some(""), Some("false"), Some("0"), Some("yes please")] {
            assert!(!super::means_ci(v), "{v:?}");
        }
    }
}
