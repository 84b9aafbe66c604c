//! Test support shared by the workspace's test suites.

/// Creates a fresh database on the server at `LIFEBOAT_TEST_PG_URL`; returns its URL.
pub async fn fresh_pg_database() -> Option<String> {
    let Ok(base) = std::env::var("LIFEBOAT_TEST_PG_URL") else {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but LIFEBOAT_TEST_PG_URL is not: PostgreSQL tests must run in CI");
        }
        eprintln!("skipping PostgreSQL test: set LIFEBOAT_TEST_PG_URL");
        return None;
    };
    sqlx::any::install_default_drivers();
    let name = format!("lifeboat_t_{}", uuid_like());
    let admin = sqlx::AnyPool::connect(&base)
        .await
        .expect("connect to LIFEBOAT_TEST_PG_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    Some(format!("{prefix}/{name}"))
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
