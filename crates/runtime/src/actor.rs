//! Who is making the change a request causes: the authenticated subject (`user:<id>`,
//! `sa:<id>`), set by the API guard around each admitted request and read where records are
//! stamped and audited. Work outside a request (controllers' own loops, migrations) runs as
//! [`SYSTEM`].
//!
//! A task-local, not a parameter: stamping happens deep in the store's transaction helpers,
//! and every write of every service must carry it without each operation passing it along.
//! It never decides scope or permission — the guard did that before setting it.

use std::future::Future;

tokio::task_local! {
    static ACTOR: String;
}

/// The actor of work no request caused.
pub const SYSTEM: &str = "system";

/// Runs `fut` as `actor`.
pub async fn scope<F: Future>(actor: String, fut: F) -> F::Output {
    ACTOR.scope(actor, fut).await
}

/// The actor of the current task ([`SYSTEM`] outside a request).
pub fn current() -> String {
    ACTOR.try_with(Clone::clone).unwrap_or_else(|_| SYSTEM.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_actor_is_the_scope_s_and_system_outside() {
        assert_eq!(current(), SYSTEM);
        let inside = scope("user:a".into(), async { current() }).await;
        assert_eq!(inside, "user:a");
        assert_eq!(current(), SYSTEM);
    }
}
