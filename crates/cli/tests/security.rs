//! Security properties of a real `lifeboat serve`: file modes of the data
//! directory, test hooks off unless enabled explicitly.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{free_port, Api, Serve};
use serde_json::json;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn data_dir_is_private_and_secrets_are_0600() {
    let tmp = tempfile::tempdir().unwrap();
    // a permissive parent umask must not leak into the data dir
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tmp.path().join("data");
    let port = free_port();
    let serve = Serve::start(&dir, port, &[], &[]);
    let c = serve.credentials();
    let api = Api::login(
        &serve.url,
        c["username"].as_str().unwrap(),
        c["password"].as_str().unwrap(),
    );
    // make the database write (WAL and SHM exist while serve runs)
    let (st, v) = api.post("/api/v1/servers", json!({"name": "m", "flavor": "m1.nano"}));
    assert_eq!(st, 202, "{v}");
    api.settle(
        v[0]["server"]["id"].as_str().unwrap(),
        Duration::from_secs(20),
    );
    assert_eq!(mode(&dir), 0o700, "data dir");
    for f in [
        "lifeboat.db",
        "lifeboat.db-wal",
        "lifeboat.db-shm",
        "admin-credentials.json",
        "agent-token",
        "ca/ca.key",
    ] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&dir.join("ca")), 0o700, "CA dir");
    // an existing, too-open data dir is tightened at start
    drop(api);
    drop(serve);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.join("lifeboat.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let _serve = Serve::start(&dir, port, &[], &[]);
    assert_eq!(mode(&dir), 0o700, "data dir after restart");
    assert_eq!(mode(&dir.join("lifeboat.db")), 0o600, "db after restart");
}

#[test]
fn test_hooks_are_ignored_unless_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let serve = Serve::start(
        dir.path(),
        port,
        &[("LIFEBOAT_TEST_HANG_AT", "create:spawn")],
        &[],
    );
    let c = serve.credentials();
    let api = Api::login(
        &serve.url,
        c["username"].as_str().unwrap(),
        c["password"].as_str().unwrap(),
    );
    let (st, v) = api.post("/api/v1/servers", json!({"name": "m", "flavor": "m1.nano"}));
    assert_eq!(st, 202, "{v}");
    let s = api.settle(
        v[0]["server"]["id"].as_str().unwrap(),
        Duration::from_secs(20),
    );
    assert_eq!(s["status"], "ACTIVE", "{s}");
    let err = serve.stderr.lock().unwrap().clone();
    assert!(!err.contains("LIFEBOAT-HANG"), "{err}");
    assert!(err.contains("LIFEBOAT_TEST_HANG_AT ignored"), "{err}");
}
