//! Test support shared by the workspace's test suites.

/// Creates a fresh database on the server at `LIFEBOAT_TEST_PG_URL`; returns
/// its URL. Panics with a clear message when the variable is missing (a
/// PostgreSQL test never skips itself).
pub async fn fresh_pg_database() -> String {
    let Ok(base) = std::env::var("LIFEBOAT_TEST_PG_URL") else {
        panic!(
            "LIFEBOAT_TEST_PG_URL is not set: PostgreSQL tests need a server \
             (scripts/test-all.sh sets it, e.g. \
             postgres://lifeboat:lifeboat-test@127.0.0.1:5432/lifeboat_test)"
        );
    };
    sqlx::any::install_default_drivers();
    let name = format!("lifeboat_t_{}", uuid_like());
    let admin = sqlx::AnyPool::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to LIFEBOAT_TEST_PG_URL: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let k = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:x}{}_{k}", n, std::process::id())
}
