//! Lifeboat store: SQLite (embedded default) and PostgreSQL through sqlx.
