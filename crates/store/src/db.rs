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
    /// Connections for reads outside a transaction. With a SQLite file these
    /// are their own (`PRAGMA query_only`), so reads (the API's GETs above
    /// all) never wait behind the writer's connections; WAL lets them read
    /// while it writes. Otherwise (PostgreSQL, in-memory SQLite) `pool`.
    pub(crate) reader: AnyPool,
    backend: Backend,
    sqlite_file: Option<std::path::PathBuf>,
    /// SQLite writes one transaction at a time; a second connection that
    /// tries meanwhile gets SQLITE_BUSY and its busy handler sleeps (1 ms,
    /// then up to 100 ms) before trying again. Writers queue here instead
    /// (first come, first served) and each is woken the moment the one
    /// before it commits. Unused with PostgreSQL (row locks).
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Bumped by every write of a record that authentication reads
    /// ([`crate::IDENTITY_KINDS`]) through this store (see
    /// [`Store::identity_generation`]).
    pub(crate) identity_gen: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Held while this process writes to a SQLite store (see `Store::writer`).
pub(crate) type WriteTurn = Option<tokio::sync::OwnedMutexGuard<()>>;

/// SQLite's `synchronous` setting on every connection. In WAL mode `NORMAL`
/// syncs the WAL at checkpoints, not at every commit: a committed
/// transaction survives a crash of the process (SIGKILL, panic) and is
/// never corrupted, but the last commits before a power loss or kernel
/// crash may be lost. That is the failure a manager restart must survive;
/// a host losing power also loses its VMs' state.
pub const SQLITE_SYNCHRONOUS: &str = "NORMAL";

/// Read-only connections beside the writer's, for a SQLite file.
const SQLITE_READERS: u32 = 4;

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

/// The schema, one directory of numbered SQL files per backend, embedded at
/// build time and applied by sqlx's migrator (table `_sqlx_migrations`).
/// A new migration is a new `NNNN_what.sql` file in both directories.
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static PG_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Key of the PostgreSQL transaction advisory lock that serialises the
/// adoption of a hand-migrated database by concurrent starters (not the
/// manager lock, [`MANAGER_LOCK_KEY`]; sqlx's migrator takes its own lock,
/// derived from the database name).
const MIGRATION_LOCK_KEY: i64 = 7243601;

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
        let reader = match &sqlite_file {
            Some(_) => {
                AnyPoolOptions::new()
                    .max_connections(SQLITE_READERS)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA query_only = ON").await?;
                            Ok(())
                        })
                    })
                    .connect_with(AnyConnectOptions::from_str(&url)?)
                    .await?
            }
            None => pool.clone(),
        };
        let store = Store {
            pool,
            reader,
            backend,
            sqlite_file,
            writer: Default::default(),
            identity_gen: Default::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This process's turn to write (SQLite; nothing to wait for with
    /// PostgreSQL). Taken before a write transaction or statement starts
    /// and held until it ends; never taken twice by one task.
    pub(crate) async fn write_turn(&self) -> WriteTurn {
        match self.backend {
            Backend::Sqlite => Some(self.writer.clone().lock_owned().await),
            Backend::Postgres => None,
        }
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

    /// The migrator of this backend.
    pub(crate) fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &PG_MIGRATIONS,
        }
    }

    /// Brings the schema up to date: adopts a database migrated by the
    /// hand-run migrations of earlier versions, then runs sqlx's migrator.
    async fn migrate(&self) -> StoreResult<()> {
        self.adopt_hand_migrations().await?;
        self.migrator()
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Db(format!("migrating the schema: {e}")))?;
        Ok(())
    }

    /// Databases made before sqlx's migrator recorded their schema in a
    /// `schema_version` table (versions 1 and 2 are `0001_initial` and
    /// `0002_workflow_secrets`). For such a database this records every
    /// version it has as applied in `_sqlx_migrations`, with the checksum
    /// of the embedded file, and drops `schema_version`, in one
    /// transaction; the migrator then applies only the newer files. Under
    /// PostgreSQL a transaction advisory lock serialises concurrent starters.
    async fn adopt_hand_migrations(&self) -> StoreResult<()> {
        use sqlx::migrate::Migrate;
        let mut tx = self.pool.begin().await?;
        let exists_sql = match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            }
            Backend::Postgres => {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(MIGRATION_LOCK_KEY)
                    .execute(&mut *tx)
                    .await?;
                "SELECT COUNT(*) FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_name = 'schema_version'"
            }
        };
        let found: i64 = sqlx::query_scalar(exists_sql).fetch_one(&mut *tx).await?;
        if found == 0 {
            return Ok(());
        }
        let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
            .fetch_one(&mut *tx)
            .await?;
        let current = current.unwrap_or(0);
        let newest = self.migrator().iter().map(|m| m.version).max().unwrap_or(0);
        if current > newest {
            return Err(StoreError::Db(format!(
                "the database has schema version {current}, newer than this Lifeboat knows ({newest})"
            )));
        }
        tx.ensure_migrations_table()
            .await
            .map_err(|e| StoreError::Db(format!("creating _sqlx_migrations: {e}")))?;
        for m in self.migrator().iter() {
            if m.version > current || !m.migration_type.is_up_migration() {
                continue;
            }
            sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                 VALUES ($1, $2, TRUE, $3, 0) ON CONFLICT (version) DO NOTHING",
            )
            .bind(m.version)
            .bind(m.description.to_string())
            .bind(m.checksum.to_vec())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DROP TABLE schema_version")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            "adopted a database at hand-migrated schema version {current} into sqlx's migrations"
        );
        Ok(())
    }

    /// Atomically increments and returns a named counter (starts at 1).
    pub async fn next_counter(&self, name: &str) -> StoreResult<i64> {
        let _turn = self.write_turn().await;
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

    /// A number that changes whenever this store writes a record that
    /// authentication reads (users, role assignments, tokens, projects,
    /// access keys): a cache of validated tokens keyed on it is never stale
    /// for writes made through this store.
    pub fn identity_generation(&self) -> u64 {
        self.identity_gen.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Marks identity records as changed (after a write of `kind`).
    pub(crate) fn identity_written(&self, kind: &str) {
        if crate::IDENTITY_KINDS.contains(&kind) {
            self.identity_gen
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Deletes every row (tests only).
    pub async fn wipe_for_tests(&self) -> StoreResult<()> {
        self.identity_gen
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        for t in [
            "servers",
            "records",
            "workflows",
            "counters",
            "events",
            "workflow_secrets",
            "host_usage",
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
