//! API load benchmark: starts `lifeboat serve --driver fake` on a fresh data
//! directory, creates N servers (default 10,000) through the native API with
//! C concurrent clients, then measures GET show and list latencies.
//! Prints numbers; asserts nothing. Not run in CI.
//!
//! `cargo build --release && cargo run --release -p lifeboat-bench --bin api-load -- [N] [C]`

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let conc: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
    let bin = std::env::var("LIFEBOAT_BIN").unwrap_or_else(|_| "target/release/lifeboat".into());
    let dir = std::env::temp_dir().join(format!("lifeboat-bench-{}", std::process::id()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(&bin)
        .args([
            "serve",
            "--driver",
            "fake",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--sync-interval",
            "60",
        ])
        .arg("--data-dir")
        .arg(&dir)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(conc)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let creds: Value = serde_json::from_str(&std::fs::read_to_string(
        dir.join("admin-credentials.json"),
    )?)?;
    let login: Value = http
        .post(format!("{url}/api/v1/auth/tokens"))
        .json(&json!({"username": creds["username"], "password": creds["password"]}))
        .send()
        .await?
        .json()
        .await?;
    let token = Arc::new(login["token"].as_str().unwrap_or_default().to_string());
    // Nova's default quotas allow 10 servers: lift them for the load.
    let lifted = http
        .put(format!("{url}/compute/v2.1/os-quota-class-sets/default"))
        .header("X-Auth-Token", token.as_str())
        .json(&json!({"quota_class_set": {"instances": -1, "cores": -1, "ram": -1}}))
        .send()
        .await?;
    anyhow::ensure!(
        lifted.status().is_success(),
        "lifting quotas: {}",
        lifted.status()
    );

    println!("api-load: {n} servers, {conc} concurrent clients, fake driver, SQLite");
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ids = Arc::new(tokio::sync::Mutex::new(Vec::with_capacity(n)));
    let mut tasks = vec![];
    for _ in 0..conc {
        let (http, url, token, next, ids) = (
            http.clone(),
            url.clone(),
            token.clone(),
            next.clone(),
            ids.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r: Value = http
                    .post(format!("{url}/api/v1/servers"))
                    .header("X-Auth-Token", token.as_str())
                    .json(&json!({"name": format!("s{i}"), "flavor": "m1.nano"}))
                    .send()
                    .await
                    .expect("create")
                    .json()
                    .await
                    .expect("json");
                if let Some(id) = r[0]["server"]["id"].as_str() {
                    ids.lock().await.push(id.to_string());
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let secs = start.elapsed().as_secs_f64();
    let ids = ids.lock().await.clone();
    println!(
        "create: {} accepted in {secs:.1}s = {:.0} creates/s",
        ids.len(),
        ids.len() as f64 / secs
    );

    // Wait for the create workflows to finish; count outcomes.
    let count = |status: &'static str| {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        async move {
            let v: Value = http
                .get(format!("{url}/api/v1/servers?status={status}&limit=100000"))
                .header("X-Auth-Token", token.as_str())
                .send()
                .await
                .expect("list")
                .json()
                .await
                .expect("json");
            v.as_array().map(|a| a.len()).unwrap_or(0)
        }
    };
    while count("BUILD").await > 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settled = start.elapsed().as_secs_f64();
    let (active, errored) = (count("ACTIVE").await, count("ERROR").await);
    println!(
        "settle: {active} ACTIVE, {errored} ERROR after {settled:.1}s = {:.0} servers/s end to end",
        active as f64 / settled
    );

    let mut show = vec![];
    for i in 0..1000 {
        let id = &ids[(i * 7919) % ids.len()];
        let t = Instant::now();
        let r = http
            .get(format!("{url}/api/v1/servers/{id}"))
            .header("X-Auth-Token", token.as_str())
            .send()
            .await?;
        r.bytes().await?;
        show.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut list = vec![];
    let mut marker: Option<String> = None;
    for _ in 0..200 {
        let mut u = format!("{url}/api/v1/servers?limit=100");
        if let Some(m) = &marker {
            u.push_str(&format!("&marker={m}"));
        }
        let t = Instant::now();
        let page: Value = http
            .get(u)
            .header("X-Auth-Token", token.as_str())
            .send()
            .await?
            .json()
            .await?;
        list.push(t.elapsed().as_secs_f64() * 1000.0);
        marker = page
            .as_array()
            .and_then(|a| a.last())
            .and_then(|s| s["id"].as_str())
            .map(str::to_string);
        if marker.is_none() {
            marker = None;
        }
    }
    println!(
        "GET show:            p50 {:.2} ms  p99 {:.2} ms  (1000 requests)",
        pct(&mut show, 0.5),
        pct(&mut show, 0.99)
    );
    println!(
        "GET list (limit 100): p50 {:.2} ms  p99 {:.2} ms  (200 pages)",
        pct(&mut list, 0.5),
        pct(&mut list, 0.99)
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
