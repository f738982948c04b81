//! The timestamp oracle: it runs on the meta group's leader and persists a high-water mark
//! through the meta group before handing out timestamps above it, so a new leader never goes
//! back in time. Requests that arrive together share one leadership check (batching).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::error::FlareError;
use crate::raft::types::{Command, MetaCommand};
use crate::replica::Replica;
use crate::ts::{Ts, compose, now_ms};

/// How far ahead of the clock the persisted mark is pushed (fewer meta writes).
const WINDOW_MS: u64 = 3_000;

type Request = (u32, oneshot::Sender<Result<Ts, FlareError>>);

/// The oracle of one meta leader term.
#[derive(Debug)]
pub struct Oracle {
    tx: mpsc::Sender<Request>,
}

impl Oracle {
    /// Starts the oracle task on the meta replica.
    pub fn spawn(meta: Arc<Replica>) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(serve(meta, rx));
        Self { tx }
    }

    /// Reserves `count` timestamps and returns the first.
    pub async fn allocate(&self, count: u32) -> Result<Ts, FlareError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((count.max(1), reply)).await.map_err(|_| FlareError::Unavailable("oracle stopped".into()))?;
        answer.await.map_err(|_| FlareError::Unavailable("oracle stopped".into()))?
    }
}

async fn serve(meta: Arc<Replica>, mut rx: mpsc::Receiver<Request>) {
    // (term the state belongs to, last handed out, persisted mark)
    let mut state: Option<(u64, Ts, Ts)> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(r) = rx.try_recv() {
            batch.push(r);
        }
        let result = allocate(&meta, &mut state, batch.iter().map(|(n, _)| u64::from(*n)).sum()).await;
        let mut next = result.as_ref().map_or(0, |t| *t);
        for (n, reply) in batch {
            let _ = reply.send(result.clone().map(|_| next));
            next += u64::from(n);
        }
    }
}

async fn allocate(meta: &Replica, state: &mut Option<(u64, Ts, Ts)>, count: u64) -> Result<Ts, FlareError> {
    // Confirms leadership now: a deposed leader must not hand out timestamps.
    meta.read_index().await?;
    let term = meta.raft.metrics().borrow().current_term;
    let (last, mark) = match *state {
        Some((t, last, mark)) if t == term => (last, mark),
        _ => {
            let mark = meta.sm.shared().meta.map_or(0, |m| m.tso_high_water);
            (mark, mark)
        }
    };
    let first = compose(now_ms(), 0).max(last + 1);
    let end = first + count;
    let mut mark = mark;
    if end >= mark {
        let high_water = end.max(compose(now_ms() + WINDOW_MS, 0));
        meta.propose(Command::Meta(MetaCommand::AdvanceTso { high_water })).await?;
        mark = high_water;
    }
    *state = Some((term, end - 1, mark));
    Ok(first)
}
