//! Lifeboat store: one API over SQLite (embedded default, WAL) and
//! PostgreSQL (multi-node/HA), through sqlx's `Any` driver with portable SQL.
//!
//! Resources are rows with a few indexed columns plus the full record as
//! JSON (`data`). Servers carry a `version` used for compare-and-set: the
//! task_state guard that allows one active task per server.

mod db;
mod events;
mod identity;
mod records;
mod servers;
pub mod testing;
mod workflows;

/// Record kinds that authentication reads: a write of one changes
/// [`Store::identity_generation`].
pub const IDENTITY_KINDS: &[&str] = &["user", "role_assignment", "token", "project", "access_key"];

pub use db::{Backend, ManagerLock, Store, SQLITE_SYNCHRONOUS};
pub use events::EventQuery;
pub use records::{Record, RecordRow, Setting};
pub use servers::ServerQuery;
pub use workflows::{SealedSecret, WorkflowExtras};

/// A store error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Row not found.
    #[error("not found: {0}")]
    NotFound(String),
    /// Compare-and-set lost: the row changed since it was read.
    #[error("conflict: {0} changed concurrently")]
    Conflict(String),
    /// Unique constraint violated.
    #[error("duplicate: {0}")]
    Duplicate(String),
    /// Another manager holds the database.
    #[error("another manager holds the database: {0}")]
    Locked(String),
    /// Database error.
    #[error("database: {0}")]
    Db(String),
    /// Stored JSON did not decode.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(d) = &e {
            if d.is_unique_violation() {
                return StoreError::Duplicate(d.message().to_string());
            }
        }
        StoreError::Db(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// Store result.
pub type StoreResult<T> = Result<T, StoreError>;

#[cfg(test)]
mod tests;
