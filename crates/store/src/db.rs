use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::StoreResult;

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    backend: Backend,
}

/// Schema migrations, applied in order: (version, SQLite id column, PostgreSQL id column).
const MIGRATIONS: &[(i64, &str, &str)] = &[(1, SCHEMA_V1_SQLITE, SCHEMA_V1_PG)];

const SCHEMA_V1_COMMON: &str = "
CREATE TABLE servers (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    vm_state TEXT NOT NULL,
    task_state TEXT,
    host TEXT,
    source_host TEXT,
    vcpus BIGINT NOT NULL DEFAULT 0,
    ram_mb BIGINT NOT NULL DEFAULT 0,
    disk_gb BIGINT NOT NULL DEFAULT 0,
    src_vcpus BIGINT NOT NULL DEFAULT 0,
    src_ram_mb BIGINT NOT NULL DEFAULT 0,
    src_disk_gb BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version BIGINT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX servers_project ON servers (project_id, created_at);
CREATE INDEX servers_created ON servers (created_at, id);
CREATE INDEX servers_host ON servers (host);
CREATE INDEX servers_source_host ON servers (source_host);
CREATE INDEX servers_task ON servers (task_state);
CREATE TABLE records (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    owner TEXT,
    name TEXT,
    ref_id TEXT,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX records_owner ON records (kind, owner);
CREATE INDEX records_ref ON records (kind, ref_id);
CREATE UNIQUE INDEX records_unique_name ON records (kind, owner, name);
CREATE TABLE workflows (
    id TEXT PRIMARY KEY,
    server_id TEXT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX workflows_server ON workflows (server_id, created_at);
CREATE INDEX workflows_state ON workflows (state);
CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
";

/// The events table; only the auto-increment id differs between backends.
const EVENTS_TABLE: &str = "
CREATE TABLE events (
    id ID_COLUMN,
    time TEXT NOT NULL,
    level TEXT NOT NULL,
    server_id TEXT,
    project_id TEXT,
    workflow_id TEXT,
    step TEXT,
    message TEXT NOT NULL
);
CREATE INDEX events_server ON events (server_id, id);
CREATE INDEX events_workflow ON events (workflow_id, id);
";

const SCHEMA_V1_SQLITE: &str = "INTEGER PRIMARY KEY AUTOINCREMENT";
const SCHEMA_V1_PG: &str = "BIGSERIAL PRIMARY KEY";

impl Store {
    /// Opens (creating if needed) the database at `url`: `sqlite://PATH` or
    /// `postgres://...`; runs migrations.
    pub async fn open(url: &str) -> StoreResult<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { "&" } else { "?" })
            }
            _ => url.to_string(),
        };
        let opts = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        let store = Store { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // Serialise concurrent migrators (several managers starting).
            sqlx::query("SELECT pg_advisory_xact_lock(7243601)")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .execute(&mut *tx)
            .await?;
        let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
            .fetch_one(&mut *tx)
            .await?;
        let current = current.unwrap_or(0);
        for (v, sqlite, pg) in MIGRATIONS {
            if *v <= current {
                continue;
            }
            let id_column = if self.backend == Backend::Sqlite {
                sqlite
            } else {
                pg
            };
            let ddl = format!(
                "{SCHEMA_V1_COMMON}{}",
                EVENTS_TABLE.replace("ID_COLUMN", id_column)
            );
            for stmt in ddl.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(stmt).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                .bind(*v)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Atomically increments and returns a named counter (starts at 1).
    pub async fn next_counter(&self, name: &str) -> StoreResult<i64> {
        let v: i64 = sqlx::query_scalar(
            "INSERT INTO counters (name, value) VALUES ($1, 1)
             ON CONFLICT (name) DO UPDATE SET value = counters.value + 1
             RETURNING value",
        )
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        Ok(v)
    }

    /// Deletes every row (tests only).
    pub async fn wipe_for_tests(&self) -> StoreResult<()> {
        for t in ["servers", "records", "workflows", "counters", "events"] {
            sqlx::query(&format!("DELETE FROM {t}"))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

/// Timestamps are stored as fixed-width RFC 3339 strings so that they sort.
pub(crate) fn ts(t: &lifeboat_core::Time) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}
