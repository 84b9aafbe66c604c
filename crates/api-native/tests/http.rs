//! The native API over HTTP: every error is `{"error": {code, message}}`
//! (malformed JSON, a JSON array where an object belongs, 405, 413, 415,
//! bad query strings), and non-admins do not see admin-only fields.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_core::Role;
use lifeboat_engine::{Engine, EngineConfig};
use lifeboat_hypervisor::fake::{FakeConfig, FakeDriver};
use serde_json::{json, Value};

struct Env {
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start() -> (Env, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = lifeboat_store::Store::open(&format!(
        "sqlite://{}",
        dir.path().join("lifeboat.db").display()
    ))
    .await
    .unwrap();
    let engine = Engine::new(store, EngineConfig::new(dir.path().to_path_buf()));
    let creds = engine.bootstrap_identity().await.unwrap().unwrap();
    engine.bootstrap_catalog(&Default::default()).await.unwrap();
    engine
        .add_host(
            "host1",
            "local",
            "nova",
            Arc::new(FakeDriver::new(FakeConfig::from_env("host1"))),
        )
        .await
        .unwrap();
    engine.start().await.unwrap();
    let c: Value = serde_json::from_slice(&std::fs::read(creds).unwrap()).unwrap();
    let admin = c["project_id"].as_str().unwrap().to_string();
    engine
        .create_user("member", "member-password", &admin, Role::Member)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = lifeboat_api_native::router(engine);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let env = Env {
        url,
        http: reqwest::Client::new(),
        _dir: dir,
    };
    let login = |u: String, p: String| {
        let env = &env;
        async move {
            let v: Value = env
                .http
                .post(format!("{}/api/v1/auth/tokens", env.url))
                .json(&json!({"username": u, "password": p}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["token"].as_str().unwrap().to_string()
        }
    };
    let a = login(
        c["username"].as_str().unwrap().into(),
        c["password"].as_str().unwrap().into(),
    )
    .await;
    let m = login("member".into(), "member-password".into()).await;
    (env, a, m)
}

impl Env {
    async fn send(
        &self,
        token: &str,
        method: &str,
        path: &str,
        ct: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let mut rb = self
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", self.url),
            )
            .header("X-Auth-Token", token)
            .body(body);
        if let Some(ct) = ct {
            rb = rb.header("Content-Type", ct);
        }
        let r = rb.send().await.unwrap();
        let s = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        if s >= 400 {
            assert!(
                ctype.starts_with("application/json"),
                "{method} {path}: {s} {ctype} {text}"
            );
            let v: Value = serde_json::from_str(&text).unwrap();
            assert!(
                v["error"]["code"].is_string() && v["error"]["message"].is_string(),
                "{v}"
            );
            return (s, v);
        }
        (s, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_the_documented_shape() {
    let (env, admin, _) = start().await;
    let j = Some("application/json");
    let (s, v) = env
        .send(&admin, "POST", "/api/v1/servers", j, b"{oops".to_vec())
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("bad_request")));
    let (s, _) = env
        .send(
            &admin,
            "POST",
            "/api/v1/servers",
            j,
            b"{\"name\": 5}".to_vec(),
        )
        .await;
    assert_eq!(s, 400);
    let (s, v) = env
        .send(
            &admin,
            "POST",
            "/api/v1/servers",
            Some("text/plain"),
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let (s, v) = env
        .send(&admin, "PUT", "/api/v1/servers", None, vec![])
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (s, v) = env
        .send(&admin, "GET", "/api/v1/servers?limit=abc", None, vec![])
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("bad_request")));
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let (s, v) = env
        .send(&admin, "POST", "/api/v1/servers", j, big.into_bytes())
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );

    // A JSON array is not an update.
    let (s, v) = env
        .send(
            &admin,
            "POST",
            "/api/v1/servers",
            j,
            serde_json::to_vec(&json!({"name": "a", "flavor": "m1.nano"})).unwrap(),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let id = v[0]["server"]["id"].as_str().unwrap().to_string();
    let (s, v) = env
        .send(
            &admin,
            "PATCH",
            &format!("/api/v1/servers/{id}"),
            j,
            b"[\"name\", \"x\"]".to_vec(),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{v}"
    );
    let (s, v) = env
        .send(
            &admin,
            "PATCH",
            &format!("/api/v1/servers/{id}"),
            j,
            b"{\"name\": \"renamed\"}".to_vec(),
        )
        .await;
    assert_eq!((s, v["name"].as_str()), (200, Some("renamed")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_admins_do_not_see_admin_fields() {
    let (env, admin, member) = start().await;
    let j = Some("application/json");
    let body = serde_json::to_vec(
        &json!({"name": "m", "flavor": "m1.nano", "scheduler_hints": {"different_host": "x"}}),
    )
    .unwrap();
    let (s, v) = env.send(&member, "POST", "/api/v1/servers", j, body).await;
    assert_eq!(s, 202, "{v}");
    let id = v[0]["server"]["id"].as_str().unwrap().to_string();
    let mut seen = Value::Null;
    for _ in 0..200 {
        let (_, v) = env
            .send(
                &admin,
                "GET",
                &format!("/api/v1/servers/{id}"),
                None,
                vec![],
            )
            .await;
        if v["status"] == "ACTIVE" {
            seen = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen["host"], "host1", "admins see the host: {seen}");
    assert!(seen["instance_name"]
        .as_str()
        .unwrap()
        .starts_with("instance-"));
    let (_, v) = env
        .send(
            &member,
            "GET",
            &format!("/api/v1/servers/{id}"),
            None,
            vec![],
        )
        .await;
    assert!(v["host"].is_null(), "{v}");
    assert_eq!(v["instance_name"], "");
    assert_eq!(v["scheduler_hints"], json!({}));
    let (_, v) = env
        .send(&member, "GET", "/api/v1/servers", None, vec![])
        .await;
    assert!(v[0]["host"].is_null());
}

impl Env {
    async fn json(&self, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
        let body = if body.is_null() {
            vec![]
        } else {
            serde_json::to_vec(&body).unwrap()
        };
        let ct = (!body.is_empty()).then_some("application/json");
        self.send(token, method, path, ct, body).await
    }
}

/// What the native fuzz (compat/native) found: the default image could be
/// deleted (then every create without an image failed), a floating IP with
/// no external network was a 400 though the body was fine, and router
/// interfaces take exactly one of a subnet and a port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_refusals_are_not_body_errors() {
    let (env, admin, _) = start().await;
    let image = lifeboat_engine::DEFAULT_IMAGE_ID;
    let (s, v) = env
        .json(
            &admin,
            "DELETE",
            &format!("/api/v1/images/{image}"),
            Value::Null,
        )
        .await;
    assert_eq!(
        (s, v["error"]["message"].as_str()),
        (
            403,
            Some(format!("Image {image} is protected and cannot be deleted.").as_str())
        )
    );
    let (s, v) = env
        .json(
            &admin,
            "POST",
            "/api/v1/servers",
            json!({"name": "after", "flavor": "m1.nano"}),
        )
        .await;
    assert_eq!(s, 202, "a create without an image still works: {v}");
    // A body naming what does not exist is a 404, as in the networking bodies.
    for (body, message) in [
        (
            json!({"name": "x", "flavor": "bogus"}),
            "Flavor bogus could not be found.",
        ),
        (
            json!({"name": "x", "flavor": "m1.nano", "image": "bogus"}),
            "Image bogus could not be found.",
        ),
        (
            json!({"name": "x", "flavor": "m1.nano", "key_name": "bogus"}),
            "no such key pair",
        ),
    ] {
        let (s, v) = env.json(&admin, "POST", "/api/v1/servers", body).await;
        assert_eq!(
            (
                s,
                v["error"]["code"].as_str(),
                v["error"]["message"].as_str()
            ),
            (404, Some("not_found"), Some(message)),
            "{v}"
        );
    }

    // A network with no subnet is the deployment's state (409), not the body's.
    let (s, v) = env
        .json(&admin, "POST", "/api/v1/networks", json!({"name": "bare"}))
        .await;
    assert_eq!(s, 201, "{v}");
    let bare = v["id"].as_str().unwrap().to_string();
    let (s, v) = env
        .json(
            &admin,
            "POST",
            "/api/v1/servers",
            json!({"name": "x", "flavor": "m1.nano", "networks": [{"network_id": bare}]}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{v}"
    );
    let (s, v) = env
        .json(
            &admin,
            "POST",
            "/api/v1/servers",
            json!({"name": "x", "flavor": "m1.nano", "networks": [{"network_id": "nope"}]}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["message"].as_str()),
        (404, Some("Network nope could not be found.")),
        "{v}"
    );

    // Floating IPs: the only external network gives one; without it, 409.
    let (s, v) = env
        .json(&admin, "POST", "/api/v1/floating-ips", json!({}))
        .await;
    assert_eq!(s, 201, "{v}");
    let fip = v["id"].as_str().unwrap().to_string();
    // An address is an IP (400 otherwise) in the network's subnets (409).
    for (address, status) in [
        ("", 400),
        ("nope", 400),
        ("10.9.9.9", 409),
        ("fd00::1", 409),
    ] {
        let (s, v) = env
            .json(
                &admin,
                "POST",
                "/api/v1/floating-ips",
                json!({"address": address}),
            )
            .await;
        assert_eq!(s, status, "{address}: {v}");
    }
    let (s, v) = env
        .json(
            &admin,
            "DELETE",
            &format!("/api/v1/floating-ips/{fip}"),
            Value::Null,
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let (s, v) = env
        .json(
            &admin,
            "POST",
            "/api/v1/floating-ips",
            json!({"network": "private"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["message"].as_str()),
        (404, Some("no external network with id or name private")),
        "{v}"
    );
    let (s, v) = env
        .json(&admin, "DELETE", "/api/v1/networks/public", Value::Null)
        .await;
    assert_eq!(s, 204, "{v}");
    let (s, v) = env
        .json(&admin, "POST", "/api/v1/floating-ips", json!({}))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{v}"
    );
    for external in ["ext-a", "ext-b"] {
        let (s, v) = env
            .json(
                &admin,
                "POST",
                "/api/v1/networks",
                json!({"name": external, "external": true}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, v) = env
        .json(&admin, "POST", "/api/v1/floating-ips", json!({}))
        .await;
    assert_eq!(
        (s, v["error"]["message"].as_str()),
        (
            409,
            Some("there are several external networks: give \"network\"")
        ),
        "{v}"
    );

    // Router interfaces: the documented example (router1, private-subnet)
    // works on a fresh deployment; neither or both is a 400.
    let (s, v) = env
        .json(
            &admin,
            "POST",
            "/api/v1/routers",
            json!({"name": "router1"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    for body in [
        json!({}),
        json!({"subnet": null}),
        json!({"subnet": "private-subnet", "port": "x"}),
    ] {
        let (s, v) = env
            .json(
                &admin,
                "POST",
                "/api/v1/routers/router1/interfaces",
                body.clone(),
            )
            .await;
        assert_eq!(s, 400, "{body}: {v}");
    }
    let (s, v) = env
        .json(
            &admin,
            "POST",
            "/api/v1/routers/router1/interfaces",
            json!({"subnet": "private-subnet"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["interfaces"][0]["ip_address"], "10.0.0.1", "{v}");
    let (s, v) = env
        .json(
            &admin,
            "POST",
            "/api/v1/routers/router1/interfaces",
            json!({"subnet": "private-subnet"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("conflict")),
        "again: {v}"
    );
    // A CIDR overlapping a subnet of the network is a 409 too; ip_version
    // is 4 or 6 only.
    let (s, v) = env
        .json(
            &admin,
            "POST",
            "/api/v1/subnets",
            json!({"network": "private", "cidr": "10.0.5.0/24"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{v}"
    );
    let (s, v) = env
        .json(
            &admin,
            "POST",
            "/api/v1/subnets",
            json!({"network": "private", "cidr": "10.1.0.0/24"}),
        )
        .await;
    assert_eq!(s, 201, "the documented example: {v}");
    let (s, v) = env
        .json(
            &admin,
            "POST",
            "/api/v1/subnets",
            json!({"network": "private", "cidr": "10.0.0.0/33"}),
        )
        .await;
    assert_eq!(s, 400, "a malformed CIDR is the body's fault: {v}");
    let (s, v) = env
        .json(
            &admin,
            "DELETE",
            "/api/v1/routers/router1/interfaces/private-subnet",
            Value::Null,
        )
        .await;
    assert_eq!((s, v["interfaces"].clone()), (200, json!([])), "{v}");
}
