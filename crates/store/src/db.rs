use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::{StoreError, StoreResult};

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
    sqlite_file: Option<std::path::PathBuf>,
}

/// SQLite's `synchronous` setting on every connection. In WAL mode `NORMAL`
/// syncs the WAL at checkpoints, not at every commit: a committed
/// transaction survives a crash of the process (SIGKILL, panic) and is
/// never corrupted, but the last commits before a power loss or kernel
/// crash may be lost. That is the failure a manager restart must survive;
/// a host losing power also loses its VMs' state.
pub const SQLITE_SYNCHRONOUS: &str = "NORMAL";

/// Key of the PostgreSQL session advisory lock the one manager holds.
const MANAGER_LOCK_KEY: i64 = 7243602;

/// Proof that this process is the one manager of its database; the lock is
/// released when this is dropped (or the process dies).
pub struct ManagerLock {
    _held: Held,
}

enum Held {
    /// flock(2) on `<db>.lock` beside the SQLite file.
    File(#[allow(dead_code)] std::fs::File),
    /// A PostgreSQL connection holding a session advisory lock.
    Pg(#[allow(dead_code)] sqlx::AnyConnection),
    /// In-memory database: nothing to share.
    None,
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

/// v2: secrets a running workflow needs (admin passwords), sealed by the
/// engine, never part of the workflow's params; deleted when it ends.
const SCHEMA_V2: &str = "
CREATE TABLE workflow_secrets (
    workflow_id TEXT NOT NULL,
    name TEXT NOT NULL,
    sealed TEXT NOT NULL,
    PRIMARY KEY (workflow_id, name)
);
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
        if backend == Backend::Sqlite {
            private_sqlite_files(&url)?;
        }
        let opts = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute(format!("PRAGMA synchronous = {SQLITE_SYNCHRONOUS}").as_str())
                            .await?;
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
            // SQLite gives -wal/-shm the database file's mode; make sure.
            private_sqlite_files(&url)?;
        }
        let sqlite_file = match backend {
            Backend::Sqlite => sqlite_path(&url),
            Backend::Postgres => None,
        };
        let store = Store {
            pool,
            backend,
            sqlite_file,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Makes this process the one manager of the database, or fails with
    /// [`StoreError::Locked`] saying who holds it: a PostgreSQL session
    /// advisory lock, or for SQLite an exclusive `flock` on `<db>.lock`.
    /// Two managers would resume the same workflows and fight over servers.
    pub async fn lock_manager(&self) -> StoreResult<ManagerLock> {
        match self.backend {
            Backend::Postgres => {
                let mut conn = self.pool.acquire().await?.detach();
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(MANAGER_LOCK_KEY)
                    .fetch_one(&mut conn)
                    .await?;
                if got {
                    return Ok(ManagerLock {
                        _held: Held::Pg(conn),
                    });
                }
                let holder: Option<(i64, String)> = sqlx::query_as(
                    "SELECT a.pid::bigint, COALESCE(host(a.client_addr), 'local socket')
                     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                     WHERE l.locktype = 'advisory' AND l.granted
                       AND l.objid::text = $1::text LIMIT 1",
                )
                .bind(MANAGER_LOCK_KEY.to_string())
                .fetch_optional(&mut conn)
                .await
                .ok()
                .flatten();
                Err(StoreError::Locked(match holder {
                    Some((pid, addr)) => format!(
                        "PostgreSQL advisory lock {MANAGER_LOCK_KEY} is held by backend pid {pid} (client {addr})"
                    ),
                    None => format!("PostgreSQL advisory lock {MANAGER_LOCK_KEY} is held"),
                }))
            }
            Backend::Sqlite => {
                let Some(db) = &self.sqlite_file else {
                    return Ok(ManagerLock { _held: Held::None });
                };
                let path = std::path::PathBuf::from(format!("{}.lock", db.display()));
                lock_file(&path).map(|f| ManagerLock {
                    _held: Held::File(f),
                })
            }
        }
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
        if current < 2 {
            for stmt in SCHEMA_V2
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                sqlx::query(stmt).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO schema_version (version) VALUES (2)")
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
        for t in [
            "servers",
            "records",
            "workflows",
            "counters",
            "events",
            "workflow_secrets",
        ] {
            sqlx::query(&format!("DELETE FROM {t}"))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

/// Takes an exclusive, non-blocking flock on `path` (created 0600) and
/// writes this process's pid into it.
fn lock_file(path: &std::path::Path) -> StoreResult<std::fs::File> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| StoreError::Db(format!("{}: {e}", path.display()));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    // SAFETY: flock on a file descriptor this function owns; no memory involved.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            return Err(StoreError::Locked(format!(
                "{} is locked by process {}",
                path.display(),
                pid.trim()
            )));
        }
        return Err(io(err));
    }
    f.set_len(0).map_err(io)?;
    f.rewind().map_err(io)?;
    write!(f, "{}", std::process::id()).map_err(io)?;
    Ok(f)
}

/// The file path of a `sqlite://PATH?...` URL (None for `:memory:`).
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| path.into())
}

/// Creates the SQLite database file with mode 0600 (it holds credentials
/// and in-flight secrets) and tightens it and its -wal/-shm if they exist.
fn private_sqlite_files(url: &str) -> StoreResult<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let Some(db) = sqlite_path(url) else {
        return Ok(());
    };
    let io = |e: std::io::Error| StoreError::Db(format!("{}: {e}", db.display()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&db)
        .map_err(io)?;
    for suffix in ["", "-wal", "-shm"] {
        let p = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(())
}

/// Timestamps are stored as fixed-width RFC 3339 strings so that they sort.
pub(crate) fn ts(t: &lifeboat_core::Time) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}
