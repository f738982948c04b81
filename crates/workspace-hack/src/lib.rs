//! No code: see `Cargo.toml` for why this crate exists (one build of each dependency for the
//! release binary and the tests).

use num_traits as _;
use regex_syntax as _;
use rustix as _;
