//! Helpers to run a real `lifeboat serve` child process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod vms;
pub use vms::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

/// The guest image (`guest/out`) for real-VM tests, after checking that
/// qemu and the image exist: a missing prerequisite fails the test with
/// what to run, never skips it.
pub fn guest_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../guest/out");
    assert!(
        Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_ok(),
        "qemu-system-x86_64 is not installed: run scripts/setup.sh (or scripts/test-all.sh)"
    );
    assert!(
        dir.join("vmlinux").is_file(),
        "the guest image is missing ({}): run bash guest/build-image.sh",
        dir.display()
    );
    dir
}

/// A TCP port free on every address.
pub fn free_port() -> u16 {
    // The wildcard address: the kernel then picks a port that no address
    // holds. A port free on 127.0.0.1 may be an agent's on 127.0.0.2.
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `lifeboat serve`.
pub struct Serve {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    pub stderr: Arc<Mutex<String>>,
}

impl Serve {
    pub fn start(data_dir: &Path, port: u16, envs: &[(&str, &str)], extra: &[&str]) -> Serve {
        Self::spawn(data_dir, port, "fake", envs, extra)
    }

    pub fn start_with_driver(data_dir: &Path, port: u16, driver: &str, extra: &[&str]) -> Serve {
        Self::spawn(data_dir, port, driver, &[], extra)
    }

    /// With a driver, environment and extra arguments.
    pub fn start_full(
        data_dir: &Path,
        port: u16,
        driver: &str,
        envs: &[(&str, &str)],
        extra: &[&str],
    ) -> Serve {
        Self::spawn(data_dir, port, driver, envs, extra)
    }

    /// Waits for the "serving on" line (the listener may be up before the
    /// engine finished starting the driver).
    pub fn wait_ready_line(&mut self) {
        self.wait_stderr("serving on", Duration::from_secs(60));
    }

    fn spawn(
        data_dir: &Path,
        port: u16,
        driver: &str,
        envs: &[(&str, &str)],
        extra: &[&str],
    ) -> Serve {
        register(data_dir);
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--driver",
            driver,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--sync-interval", "1"])
        .args(extra)
        .env_remove("LIFEBOAT_TEST_HANG_AT")
        .env_remove("LIFEBOAT_FAKE_FAIL")
        .env_remove("LIFEBOAT_ENABLE_TEST_HOOKS")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn lifeboat serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let url = format!("http://127.0.0.1:{port}");
        let s = Serve {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
            stderr,
        };
        s.wait_up();
        s
    }

    fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(self.url.trim_start_matches("http://")).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "lifeboat serve did not come up: {}",
            self.stderr.lock().unwrap()
        );
    }

    pub fn wait_stderr(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr.lock().unwrap().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "'{needle}' not seen on stderr: {}",
            self.stderr.lock().unwrap()
        );
    }

    /// SIGKILL.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn credentials(&self) -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.data_dir.join("admin-credentials.json")).unwrap(),
        )
        .unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking JSON client for the native API.
pub struct Api {
    pub url: String,
    pub token: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Api {
    pub fn login(url: &str, user: &str, password: &str) -> Api {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = reqwest::Client::new();
        let body: Value = rt.block_on(async {
            http.post(format!("{url}/api/v1/auth/tokens"))
                .json(&json!({"username": user, "password": password}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        let token = body["token"]
            .as_str()
            .unwrap_or_else(|| panic!("login: {body}"))
            .to_string();
        Api {
            url: url.into(),
            token,
            http,
            rt,
        }
    }

    /// Logs in through Keystone (project `admin`): for the OpenStack APIs (`/compute/v2.1`,
    /// `/network/v2.0`), which take the same `X-Auth-Token` header.
    pub fn keystone(url: &str, user: &str, password: &str) -> Api {
        Self::keystone_project(url, user, password, "admin")
    }

    /// [`Api::keystone`] scoped to `project` (by name, domain Default).
    pub fn keystone_project(url: &str, user: &str, password: &str, project: &str) -> Api {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = reqwest::Client::new();
        let token = rt.block_on(async {
            let r = http
                .post(format!("{url}/identity/v3/auth/tokens"))
                .json(
                    &json!({"auth": {"identity": {"methods": ["password"], "password": {
                    "user": {"name": user, "domain": {"name": "Default"}, "password": password}}},
                    "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "keystone login");
            r.headers()["x-subject-token"].to_str().unwrap().to_string()
        });
        Api {
            url: url.into(),
            token,
            http,
            rt,
        }
    }

    pub fn req(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.req_with(method, path, body, &[])
    }

    /// [`Api::req`] with extra headers (e.g. `OpenStack-API-Version`).
    pub fn req_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        self.rt.block_on(async {
            let mut r = self
                .http
                .request(method, format!("{}{path}", self.url))
                .header("X-Auth-Token", &self.token);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            if let Some(b) = body {
                r = r.json(&b);
            }
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        })
    }

    pub fn get(&self, path: &str) -> Value {
        let (st, v) = self.req(reqwest::Method::GET, path, None);
        assert!(st < 300, "GET {path}: {st} {v}");
        v
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.req(reqwest::Method::POST, path, Some(body))
    }

    /// Waits until the server has no task; returns it.
    pub fn settle(&self, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (st, s) = self.req(reqwest::Method::GET, &format!("/api/v1/servers/{id}"), None);
            if st == 200 && s["task_state"].is_null() && s["status"] != "BUILD" {
                return s;
            }
            if Instant::now() > deadline {
                panic!("server {id} did not settle: {s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Connects to a console URL, presses Enter, waits for `needle`.
pub fn console_says(url: &str, needle: &str) -> bool {
    use futures_util::{SinkExt, StreamExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket");
        let mut seen = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut last_enter = tokio::time::Instant::now() - Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if last_enter.elapsed() > Duration::from_secs(2) {
                ws.send(tokio_tungstenite::tungstenite::Message::Binary(
                    b"\r".to_vec(),
                ))
                .await
                .unwrap();
                last_enter = tokio::time::Instant::now();
            }
            if let Ok(Some(Ok(m))) =
                tokio::time::timeout(Duration::from_millis(500), ws.next()).await
            {
                seen.push_str(&String::from_utf8_lossy(&m.into_data()));
                if seen.contains(needle) {
                    return true;
                }
            }
        }
        eprintln!("console said: {seen:?}");
        false
    })
}

/// The manager CA certificate of the manager data dir `manager_dir`
/// (created by `lifeboat ca` if no manager started there yet).
pub fn manager_ca(manager_dir: &Path) -> PathBuf {
    let out = Command::new(BIN)
        .arg("ca")
        .arg("--data-dir")
        .arg(manager_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "lifeboat ca: {out:?}");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// `--agent` for an agent started by [`start_agent`] with `data_dir`:
/// `NAME=https://127.0.0.2:PORT,pin=sha256:..` (its certificate's fingerprint).
pub fn agent_arg(name: &str, port: u16, data_dir: &Path) -> String {
    let pin = std::fs::read_to_string(data_dir.join("tls/agent.sha256"))
        .expect("the agent wrote its fingerprint");
    format!("{name}=https://127.0.0.2:{port},pin={}", pin.trim())
}

/// Starts `lifeboat agent` on 127.0.0.2:`port` and waits until it listens.
/// The manager is the one whose data dir holds `token` (its CA is given as
/// `--manager-ca`).
pub fn start_agent(name: &str, driver: &str, port: u16, data_dir: &Path, token: &Path) -> Child {
    start_agent_with(name, driver, port, data_dir, token, &[])
}

/// [`start_agent`] with extra arguments (e.g. `--dataplane`).
pub fn start_agent_with(
    name: &str,
    driver: &str,
    port: u16,
    data_dir: &Path,
    token: &Path,
    extra: &[&str],
) -> Child {
    register(data_dir);
    let ca = manager_ca(token.parent().unwrap());
    let mut child = Command::new(BIN)
        .args([
            "agent",
            "--name",
            name,
            "--driver",
            driver,
            "--listen",
            &format!("127.0.0.2:{port}"),
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--token-file")
        .arg(token)
        .arg("--manager-ca")
        .arg(ca)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.2", port)).is_err() {
        assert!(Instant::now() < deadline, "agent {name} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // what answered is this agent, not another process on that port
    let exited = child.try_wait().unwrap();
    assert!(
        exited.is_none(),
        "agent {name} exited: {exited:?} (port {port} taken?)"
    );
    child
}

impl Api {
    /// Waits until the manager reports `host` down.
    pub fn wait_host_down(&self, host: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let hosts = self.get("/api/v1/hosts");
            if hosts
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["name"] == host && h["up"] == false)
            {
                return;
            }
            assert!(Instant::now() < deadline, "{host} not marked down: {hosts}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Writes `data` at `offset` of a (stopped VM's) qcow2 disk through a
/// writable qemu-storage-daemon export.
pub fn write_disk(path: &Path, offset: u64, data: &[u8]) {
    let q = lifeboat_datastore::qsd::QsdExport::start(path, "qcow2", &[], true).unwrap();
    let mut c = lifeboat_datastore::nbd::NbdClient::connect(&q.addr(), &q.name, None).unwrap();
    c.write_at(data, offset).unwrap();
    c.flush().unwrap();
    c.disconnect();
    q.stop().unwrap();
}

/// Reads `len` bytes at `offset` of a qcow2 disk.
pub fn read_disk(path: &Path, offset: u64, len: usize) -> (u64, Vec<u8>) {
    use lifeboat_datastore::DiskReader;
    let q = lifeboat_datastore::qsd::QsdExport::start(path, "qcow2", &[], false).unwrap();
    let r = lifeboat_datastore::nbd::NbdReader::connect(&q.addr(), &q.name, 1).unwrap();
    let mut buf = vec![0u8; len];
    r.read_at(&mut buf, offset).unwrap();
    (r.size(), buf)
}
