//! Security properties of a real `lifeboat serve`: file modes of the data
//! directory, test hooks off unless enabled explicitly.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{free_port, Api, Serve};
use serde_json::{json, Value};

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

/// Every GET a reader of either API could make about `server`, as text.
fn everything_visible(api: &Api, nova: &Api, server: &str) -> String {
    let mut out = String::new();
    let mut add = |api: &Api, path: &str, headers: &[(&str, &str)]| {
        let (_, v) = api.req_with(reqwest::Method::GET, path, None, headers);
        out.push_str(path);
        out.push_str(&v.to_string());
    };
    for p in [
        "/api/v1/servers".to_string(),
        format!("/api/v1/servers/{server}"),
        format!("/api/v1/servers/{server}/workflows"),
        "/api/v1/workflows?limit=1000".to_string(),
        "/api/v1/events?limit=10000".to_string(),
        "/api/v1/images".to_string(),
        "/api/v1/keypairs".to_string(),
        "/api/v1/projects".to_string(),
        "/api/v1/hosts".to_string(),
    ] {
        add(api, &p, &[]);
    }
    let (_, wfs) = api.req(
        reqwest::Method::GET,
        &format!("/api/v1/servers/{server}/workflows"),
        None,
    );
    for w in wfs.as_array().cloned().unwrap_or_default() {
        add(
            api,
            &format!("/api/v1/workflows/{}", w["id"].as_str().unwrap_or("-")),
            &[],
        );
    }
    let mv = [("OpenStack-API-Version", "compute 2.100")];
    for p in [
        "/compute/v2.1/servers/detail?all_tenants=1".to_string(),
        format!("/compute/v2.1/servers/{server}"),
        format!("/compute/v2.1/servers/{server}/metadata"),
        format!("/compute/v2.1/servers/{server}/os-instance-actions"),
        "/identity/v3/users".to_string(),
        "/identity/v3/projects".to_string(),
    ] {
        add(nova, &p, &mv);
    }
    let (_, acts) = nova.req_with(
        reqwest::Method::GET,
        &format!("/compute/v2.1/servers/{server}/os-instance-actions"),
        None,
        &mv,
    );
    for a in acts["instanceActions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        add(
            nova,
            &format!(
                "/compute/v2.1/servers/{server}/os-instance-actions/{}",
                a["request_id"].as_str().unwrap_or("-")
            ),
            &mv,
        );
    }
    out
}

/// The admin passwords of create, change_password, rebuild and rescue (through both APIs),
/// the admin's login password and the access-key secret are in no API response (but the
/// one that hands a generated or given password back to its requester), workflow, event
/// or log line, at any time while the workflows run (polled throughout) or after; the log
/// is read at debug level.
#[test]
fn secrets_are_in_no_response_workflow_event_or_log() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        dir.path(),
        free_port(),
        &[("RUST_LOG", "debug"), ("LIFEBOAT_FAKE_DELAY_MS", "150")],
        &[],
    );
    let c = serve.credentials();
    let (user, login) = (
        c["username"].as_str().unwrap().to_string(),
        c["password"].as_str().unwrap().to_string(),
    );
    let access_secret = c["secret_access_key"].as_str().unwrap().to_string();
    assert!(access_secret.len() >= 20, "{c}");
    let api = Api::login(&serve.url, &user, &login);
    let nova = Api::keystone(&serve.url, &user, &login);
    let mv = [("OpenStack-API-Version", "compute 2.100")];

    let (st, v) = api.post(
        "/api/v1/servers",
        json!({"name": "s", "flavor": "m1.nano", "admin_pass": "Sec-Create-7001"}),
    );
    assert_eq!(st, 202, "{v}");
    assert_eq!(
        v[0]["admin_pass"], "Sec-Create-7001",
        "shown to the creator"
    );
    let id = v[0]["server"]["id"].as_str().unwrap().to_string();

    let mut secrets = vec![
        "Sec-Create-7001".to_string(),
        login.clone(),
        access_secret.clone(),
    ];
    // a poller sees everything while the workflows run
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (url, user, login, id, stop) = (
            serve.url.clone(),
            user.clone(),
            login.clone(),
            id.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let api = Api::login(&url, &user, &login);
            let nova = Api::keystone(&url, &user, &login);
            let mut seen = vec![];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seen.push(everything_visible(&api, &nova, &id));
            }
            seen.push(everything_visible(&api, &nova, &id));
            seen
        })
    };
    api.settle(&id, Duration::from_secs(30));
    type Step<'a> = Box<dyn Fn() -> (u16, Value) + 'a>;
    let steps: Vec<(&str, Step)> = vec![
        (
            "Sec-Change-7002",
            Box::new(|| {
                api.post(
                    &format!("/api/v1/servers/{id}/actions"),
                    json!({"action": "change_password", "admin_pass": "Sec-Change-7002"}),
                )
            }),
        ),
        (
            "Sec-NovaChange-7003",
            Box::new(|| {
                nova.req_with(
                    reqwest::Method::POST,
                    &format!("/compute/v2.1/servers/{id}/action"),
                    Some(json!({"changePassword": {"adminPass": "Sec-NovaChange-7003"}})),
                    &mv,
                )
            }),
        ),
        (
            "Sec-Rebuild-7004",
            Box::new(|| {
                nova.req_with(
                    reqwest::Method::POST,
                    &format!("/compute/v2.1/servers/{id}/action"),
                    Some(
                        json!({"rebuild": {"imageRef": "5f0c8d7e-4a3b-4c1e-9d2f-0b1a2c3d4e5f",
                        "adminPass": "Sec-Rebuild-7004"}}),
                    ),
                    &mv,
                )
            }),
        ),
        (
            "Sec-Rescue-7005",
            Box::new(|| {
                nova.req_with(
                    reqwest::Method::POST,
                    &format!("/compute/v2.1/servers/{id}/action"),
                    Some(json!({"rescue": {"adminPass": "Sec-Rescue-7005"}})),
                    &mv,
                )
            }),
        ),
    ];
    for (secret, step) in &steps {
        let (st, v) = step();
        assert!(st == 202 || st == 200, "{secret}: {st} {v}");
        api.settle(&id, Duration::from_secs(30));
        secrets.push(secret.to_string());
    }
    // a server whose create is superseded by its delete
    let (st, v) = api.post(
        "/api/v1/servers",
        json!({"name": "gone", "flavor": "m1.nano", "admin_pass": "Sec-Gone-7006"}),
    );
    assert_eq!(st, 202, "{v}");
    let gone = v[0]["server"]["id"].as_str().unwrap().to_string();
    let (st, v) = api.req(
        reqwest::Method::DELETE,
        &format!("/api/v1/servers/{gone}"),
        None,
    );
    assert_eq!(st, 202, "{v}");
    secrets.push("Sec-Gone-7006".into());
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = poller.join().unwrap();
    assert!(seen.len() >= 5, "polled {} times", seen.len());
    let mut last = everything_visible(&api, &nova, &id);
    last.push_str(&everything_visible(&api, &nova, &gone));
    assert!(
        last.contains("change_password") || last.contains("changePassword"),
        "the actions are visible: {last}"
    );
    let log = serve.stderr.lock().unwrap().clone();
    assert!(log.contains("DEBUG"), "the log is at debug level: {log}");
    for s in &secrets {
        for (i, text) in seen.iter().enumerate() {
            assert!(
                !text.contains(s.as_str()),
                "{s} visible in poll {i}: {text}"
            );
        }
        assert!(!last.contains(s.as_str()), "{s} visible after: {last}");
        assert!(!log.contains(s.as_str()), "{s} in the log");
    }
}
