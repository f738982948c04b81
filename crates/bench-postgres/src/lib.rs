//! The PostgreSQL backend of flaredb's benchmark ([`ultracloud_flaredb::bench`]): the same
//! key-value workload on one table, `kv(k bytea PRIMARY KEY, v bytea NOT NULL)`, so flaredb's
//! figures have a familiar reference beside them. It is a crate of its own so that flaredb
//! itself does not depend on a PostgreSQL client.
//!
//! A get is a `SELECT` and a put an `INSERT … ON CONFLICT DO UPDATE`, each in its own implicit
//! transaction; the transaction is `BEGIN ISOLATION LEVEL REPEATABLE READ` (snapshot isolation,
//! as flaredb's), one `SELECT` per key, one upsert per key, `COMMIT`. Serialization failures and
//! deadlocks are reported as conflicts, which the runner retries as it does flaredb's. Each
//! session is one connection with prepared statements. Durability is whatever the server is
//! configured with: the setup reports `fsync` and `synchronous_commit` so the report shows it.

use tokio_postgres::error::SqlState;
use tokio_postgres::{IsolationLevel, NoTls, Statement};
use ultracloud_flaredb::bench::{BenchError, KvBackend, KvSession, RequestError};

const CREATE: &str = "CREATE TABLE IF NOT EXISTS kv (k bytea PRIMARY KEY, v bytea NOT NULL)";
const GET: &str = "SELECT v FROM kv WHERE k = $1";
const PUT: &str = "INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v";

/// A PostgreSQL server reached at a connection URL (`postgres://user@host:port/db`).
#[derive(Debug, Clone)]
pub struct PostgresBackend {
    url: String,
}

impl PostgresBackend {
    /// The server at `url`.
    pub fn new(url: String) -> Self {
        Self { url }
    }

    async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await?;
        // The connection task ends when the client is dropped (or the server goes away).
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }
}

/// One connection with its prepared statements.
pub struct PostgresSession {
    client: tokio_postgres::Client,
    get: Statement,
    put: Statement,
}

impl std::fmt::Debug for PostgresSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSession").finish_non_exhaustive()
    }
}

fn failed(e: tokio_postgres::Error) -> RequestError {
    // The server's message ("could not serialize access …"), not just "db error".
    let message = e.as_db_error().map_or_else(|| e.to_string(), ToString::to_string);
    match e.code() {
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED => {
            RequestError::Conflict(message)
        }
        _ => RequestError::Failed(message),
    }
}

impl KvBackend for PostgresBackend {
    type Session = PostgresSession;

    async fn setup(&self) -> Result<String, BenchError> {
        let setup = |e: tokio_postgres::Error| BenchError::Setup { target: "PostgreSQL".into(), source: Box::new(e) };
        let client = self.connect().await.map_err(setup)?;
        client.batch_execute(CREATE).await.map_err(setup)?;
        let mut facts = Vec::new();
        for query in ["SHOW server_version", "SHOW fsync", "SHOW synchronous_commit", "SHOW max_connections"] {
            let row = client.query_one(query, &[]).await.map_err(setup)?;
            let setting = query.trim_start_matches("SHOW ");
            facts.push(format!("{setting}={}", row.try_get::<_, String>(0).map_err(setup)?));
        }
        Ok(format!("PostgreSQL, table kv ({})", facts.join(", ")))
    }

    async fn session(&self, _index: usize) -> Result<PostgresSession, BenchError> {
        let session =
            |e: tokio_postgres::Error| BenchError::Session { target: "PostgreSQL".into(), source: Box::new(e) };
        let client = self.connect().await.map_err(session)?;
        let get = client.prepare(GET).await.map_err(session)?;
        let put = client.prepare(PUT).await.map_err(session)?;
        Ok(PostgresSession { client, get, put })
    }
}

impl KvSession for PostgresSession {
    async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, RequestError> {
        let row = self.client.query_opt(&self.get, &[&key]).await.map_err(failed)?;
        row.map(|r| r.try_get::<_, Vec<u8>>(0)).transpose().map_err(failed)
    }

    async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), RequestError> {
        self.client.execute(&self.put, &[&key, &value]).await.map(|_| ()).map_err(failed)
    }

    async fn read_write(&mut self, keys: &[Vec<u8>], value: &[u8]) -> Result<(), RequestError> {
        let (get, put) = (self.get.clone(), self.put.clone());
        // Dropping the transaction unfinished (on an error) rolls it back.
        let tx = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .start()
            .await
            .map_err(failed)?;
        for k in keys {
            tx.query_opt(&get, &[k]).await.map_err(failed)?;
        }
        for k in keys {
            tx.execute(&put, &[k, &value]).await.map_err(failed)?;
        }
        tx.commit().await.map_err(failed)
    }
}
