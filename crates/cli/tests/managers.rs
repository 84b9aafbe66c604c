//! One manager per database: a second `lifeboat serve` on the same SQLite
//! data dir or the same PostgreSQL database refuses to start and says why.
//! And the Compute front's X-OpenStack-Request-Id is the instance action's.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, Serve, BIN};
use serde_json::{json, Value};

/// Runs a second serve to completion (it must exit by itself).
fn second_serve(dir: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--driver", "fake", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (st.code().unwrap_or(-1), err);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the second lifeboat serve kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn second_manager_on_the_same_sqlite_data_dir_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let first = Serve::start(dir.path(), free_port(), &[], &[]);
    let (code, err) = second_serve(dir.path(), &[]);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("another `lifeboat serve` is already running")
            && err.contains(&format!("locked by process {}", first.child.id())),
        "{err}"
    );
    // once the first is gone, a new one starts
    first.kill9();
    let _again = Serve::start(dir.path(), free_port(), &[], &[]);
}

#[test]
fn second_manager_on_the_same_postgres_refuses_to_start() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(lifeboat_store::testing::fresh_pg_database());
    let dir1 = tempfile::tempdir().unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let first = Serve::start(dir1.path(), free_port(), &[], &["--database", &db]);
    let (code, err) = second_serve(dir2.path(), &["--database", &db]);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("another `lifeboat serve` is already running")
            && err.contains("advisory lock"),
        "{err}"
    );
    assert!(!err.contains("lifeboat-test@"), "password redacted: {err}");
    first.kill9();
    let _again = Serve::start(dir2.path(), free_port(), &[], &["--database", &db]);
}

#[test]
fn compute_request_id_header_is_the_instance_actions_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), free_port(), &[], &[]);
    let c = serve.credentials();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let url = &serve.url;
        let r = http
            .post(format!("{url}/identity/v3/auth/tokens"))
            .json(
                &json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": c["username"], "domain": {"name": "Default"}, "password": c["password"]}}},
                "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let token = r.headers()["x-subject-token"].to_str().unwrap().to_string();
        let r = http
            .post(format!("{url}/compute/v2.1/servers"))
            .header("X-Auth-Token", &token)
            .json(&json!({"server": {"name": "rid", "flavorRef": "1",
                "imageRef": "5f0c8d7e-4a3b-4c1e-9d2f-0b1a2c3d4e5f"}}))
            .send()
            .await
            .unwrap();
        let header = r.headers()["x-openstack-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        let body: Value = r.json().await.unwrap();
        let id = body["server"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}"))
            .to_string();
        let actions: Value = http
            .get(format!(
                "{url}/compute/v2.1/servers/{id}/os-instance-actions"
            ))
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let create = actions["instanceActions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["action"] == "create")
            .unwrap_or_else(|| panic!("{actions}"))
            .clone();
        assert_eq!(create["request_id"], header.as_str(), "{actions}");
    });
}
