//! The boxed future a crate's public entry points return.
//!
//! rustc compiles an `async fn`'s body in whichever crate polls it, not in the crate that
//! defines it, so a service's `pub async fn run` was compiled again in the `ultracloud` binary
//! and in every test binary that awaited it — all of openraft, tonic's servers and the service
//! itself, about 3 million lines of LLVM IR in the binary alone. Returning the future as a
//! `Pin<Box<dyn Future>>` made in the defining crate compiles the body there, once; the callers
//! only poll it through the vtable. Use it for entry points (a service's `run`, a harness
//! scenario), never on hot paths, where the allocation would count.

use std::future::Future;
use std::pin::Pin;

/// A `Send` future compiled in the crate that made it (see the module docs).
pub type Entry<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
