//! Shared harness: an engine on a temp SQLite store with the fake driver,
//! the OpenStack router on 127.0.0.1:0, users with each role in a project
//! `demo`, and helpers to call the APIs as any of them.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use lifeboat_core::Role;
use lifeboat_engine::{Engine, EngineConfig};
use lifeboat_hypervisor::fake::{FakeConfig, FakeDriver};
use serde_json::{json, Value};

/// A running front.
pub struct Env {
    pub url: String,
    pub http: reqwest::Client,
    pub engine: Engine,
    /// Admin token (project `admin`).
    pub admin: String,
    /// Project `demo`'s id.
    pub demo: String,
    pub _dir: tempfile::TempDir,
}

/// Password of every test user.
pub const PASSWORD: &str = "secret-password";

/// Starts a front with users `member`, `reader` (project `demo`) and `other`
/// (member of project `other`).
pub async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = lifeboat_store::Store::open(&format!(
        "sqlite://{}",
        dir.path().join("lifeboat.db").display()
    ))
    .await
    .unwrap();
    let mut cfg = EngineConfig::new(dir.path().to_path_buf());
    cfg.serial_console_url = Some("ws://127.0.0.1:1/console/serial".into());
    let engine = Engine::new(store, cfg);
    let creds = engine.bootstrap_identity().await.unwrap().unwrap();
    engine.bootstrap_catalog(&Default::default()).await.unwrap();
    let fake = FakeDriver::new(FakeConfig::from_env("host1"));
    engine
        .add_host("host1", "local", "nova", Arc::new(fake))
        .await
        .unwrap();
    engine.start().await.unwrap();
    let demo = engine.create_project("demo", "").await.unwrap();
    let other = engine.create_project("other", "").await.unwrap();
    engine
        .create_user("member", PASSWORD, &demo.id, Role::Member)
        .await
        .unwrap();
    engine
        .create_user("reader", PASSWORD, &demo.id, Role::Reader)
        .await
        .unwrap();
    engine
        .create_user("other", PASSWORD, &other.id, Role::Member)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Both fronts on one listener, as `lifeboat serve` mounts them.
    let app = lifeboat_api_native::router(engine.clone())
        .merge(lifeboat_api_openstack::router(engine.clone(), url.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let c: Value = serde_json::from_slice(&std::fs::read(creds).unwrap()).unwrap();
    let http = reqwest::Client::new();
    let mut env = Env {
        url,
        http,
        engine,
        admin: String::new(),
        demo: demo.id,
        _dir: dir,
    };
    env.admin = env
        .login(
            c["username"].as_str().unwrap(),
            c["password"].as_str().unwrap(),
            "admin",
        )
        .await;
    env
}

/// Sends `rb` with `body` as JSON; the status and the JSON answer (Null if none).
async fn json_answer(mut rb: reqwest::RequestBuilder, body: Option<Value>) -> (u16, Value) {
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

impl Env {
    /// `POST /v3/auth/tokens` with a password; the answer.
    pub async fn password_auth(&self, body: Value) -> (u16, Value, Option<String>) {
        let r = self
            .http
            .post(format!("{}/identity/v3/auth/tokens", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let tok = r
            .headers()
            .get("x-subject-token")
            .map(|v| v.to_str().unwrap().to_string());
        (status, r.json().await.unwrap_or(Value::Null), tok)
    }

    /// A token for `user` scoped to `project`.
    pub async fn login(&self, user: &str, password: &str, project: &str) -> String {
        let (s, v, tok) = self
            .password_auth(
                json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": "Default"}, "password": password}}},
                "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}}),
            )
            .await;
        assert_eq!(s, 201, "login {user}: {v}");
        tok.unwrap()
    }

    /// A native API call (`/api/v1...`) with a token.
    pub async fn native(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let rb = self
            .http
            .request(m, format!("{}{path}", self.url))
            .header("X-Auth-Token", token);
        json_answer(rb, body).await
    }

    /// A compute call with a token at a microversion.
    pub async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        mv: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let rb = self
            .http
            .request(m, format!("{}/compute/v2.1{path}", self.url))
            .header("X-Auth-Token", token)
            .header("OpenStack-API-Version", format!("compute {mv}"));
        json_answer(rb, body).await
    }

    /// Any call under the public URL, raw body; (status, content-type, body).
    pub async fn raw(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> (u16, String, String) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = self
            .http
            .request(m, format!("{}{path}", self.url))
            .header("X-Auth-Token", token)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, ct, r.text().await.unwrap())
    }

    /// Boots a server as `token` and waits for ACTIVE.
    pub async fn boot(&self, token: &str, name: &str, flavor: &str) -> String {
        let (s, v) = self
            .call(
                token,
                "POST",
                "/servers",
                "2.100",
                Some(json!({"server": {"name": name, "flavorRef": flavor, "networks": "none"}})),
            )
            .await;
        assert_eq!(s, 202, "boot {name}: {v}");
        let id = v["server"]["id"].as_str().unwrap().to_string();
        self.wait(token, &id, "ACTIVE").await;
        id
    }

    /// Waits for a server to reach a status with no task.
    pub async fn wait(&self, token: &str, id: &str, status: &str) -> Value {
        for _ in 0..400 {
            let (_, v) = self
                .call(token, "GET", &format!("/servers/{id}"), "2.100", None)
                .await;
            if v["server"]["status"] == status && v["server"]["OS-EXT-STS:task_state"].is_null() {
                return v["server"].clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server {id} never reached {status}");
    }
}
