//! API load benchmark (issue 8, item 6): starts `lifeboat serve --driver
//! fake` (SQLite) on a fresh data directory, creates N servers (default
//! 10,000) through the native API with C concurrent clients (default 16),
//! and measures:
//!
//! - creates accepted per second (202 answers);
//! - servers settled end to end per second: N over the time from the first
//!   create to the moment every server is ACTIVE (or ERROR), and its ratio
//!   to the accepted rate of the same run;
//! - GET show and GET list (100 per page) latencies, sampled by one more
//!   client while the creates and workflows run ("under load"), and again
//!   on the idle server afterwards;
//! - the limit: the raw rate of SQLite transactions of the same size (one
//!   server row and one workflow row of the sizes this run stored, plus one
//!   event) and the same durability (WAL, the store's `synchronous`) on the
//!   same disk, on one connection, measured at the end of the same run.
//!
//! The last line printed is one JSON object with `accepted_per_s`,
//! `settled_per_s`, `settle_vs_accepted`, `sqlite_tx_per_s`, `show_p99_ms`,
//! `list_p99_ms` (the under-load percentiles) and a few more fields.
//! Prints numbers; asserts nothing. Not run in CI.
//!
//! `cargo build --release -p lifeboat -p lifeboat-bench && target/release/api-load [N] [C]`
//! (`LIFEBOAT_BIN` overrides the `lifeboat` binary, which defaults to the one
//! beside this executable).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::{Connection, Executor, Row};

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Kills the child server when the bench ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes the data directory when the bench ends.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    url: String,
    token: Arc<String>,
}

impl Api {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .header("X-Auth-Token", self.token.as_str())
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "GET {path}: {}", r.status());
        Ok(r.json().await?)
    }

    /// Times one GET (the whole body read).
    async fn timed(&self, path: &str) -> anyhow::Result<(f64, Value)> {
        let t = Instant::now();
        let v = self.get(path).await?;
        Ok((t.elapsed().as_secs_f64() * 1000.0, v))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let conc: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
    let bin = match std::env::var("LIFEBOAT_BIN") {
        Ok(b) => std::path::PathBuf::from(b),
        Err(_) => std::env::current_exe()?.with_file_name("lifeboat"),
    };
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it (cargo build --release -p lifeboat) or set LIFEBOAT_BIN",
        bin.display()
    );
    let dir = TempDir(std::env::temp_dir().join(format!("lifeboat-bench-{}", std::process::id())));
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = Child(
        Command::new(&bin)
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
            .arg(&dir.0)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(conc + 2)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        || !dir.0.join("admin-credentials.json").exists()
    {
        anyhow::ensure!(Instant::now() < deadline, "server did not start");
        anyhow::ensure!(child.0.try_wait()?.is_none(), "server exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let creds: Value = serde_json::from_str(&std::fs::read_to_string(
        dir.0.join("admin-credentials.json"),
    )?)?;
    let login: Value = http
        .post(format!("{url}/api/v1/auth/tokens"))
        .json(&json!({"username": creds["username"], "password": creds["password"]}))
        .send()
        .await?
        .json()
        .await?;
    let token = Arc::new(
        login["token"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("login: {login}"))?
            .to_string(),
    );
    let api = Api {
        http: http.clone(),
        url: url.clone(),
        token: token.clone(),
    };
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

    println!("api-load: {n} servers, {conc} concurrent clients, native API, fake driver, SQLite");
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = vec![];
    for _ in 0..conc {
        let (api, next, ids, failed) = (api.clone(), next.clone(), ids.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = api
                    .http
                    .post(format!("{}/api/v1/servers", api.url))
                    .header("X-Auth-Token", api.token.as_str())
                    .json(&json!({"name": format!("s{i}"), "flavor": "m1.nano"}))
                    .send()
                    .await;
                let body: Option<Value> = match r {
                    Ok(r) if r.status().as_u16() == 202 => r.json().await.ok(),
                    _ => None,
                };
                match body.as_ref().and_then(|b| b[0]["server"]["id"].as_str()) {
                    Some(id) => ids.lock().unwrap().push(id.to_string()),
                    None => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    // One more client samples show and list latencies while the load runs.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (api, ids, done) = (api.clone(), ids.clone(), done.clone());
        tokio::spawn(async move {
            let (mut show, mut list) = (vec![], vec![]);
            let mut k = 0usize;
            while !done.load(Ordering::Relaxed) {
                let id = {
                    let ids = ids.lock().unwrap();
                    (!ids.is_empty()).then(|| ids[(k * 7919) % ids.len()].clone())
                };
                k += 1;
                if let Some(id) = id {
                    if let Ok((ms, _)) = api.timed(&format!("/api/v1/servers/{id}")).await {
                        show.push(ms);
                    }
                    if k.is_multiple_of(4) {
                        if let Ok((ms, _)) = api.timed("/api/v1/servers?limit=100").await {
                            list.push(ms);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (show, list)
        })
    };

    for t in tasks {
        t.await?;
    }
    let accept_secs = start.elapsed().as_secs_f64();
    let accepted = ids.lock().unwrap().len();
    let accepted_per_s = accepted as f64 / accept_secs;
    println!(
        "create: {accepted} accepted ({} failed) in {accept_secs:.1}s = {accepted_per_s:.0} creates/s",
        failed.load(Ordering::Relaxed)
    );

    // Settled: no server is building any more (each is ACTIVE or ERROR).
    let settle_deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let building = api.get("/api/v1/servers?status=BUILD&limit=1").await?;
        if building.as_array().is_some_and(|a| a.is_empty()) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < settle_deadline,
            "servers still building after an hour"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settle_secs = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let (mut show_load, mut list_load) = sampler.await?;
    let count = |status: &'static str| {
        let api = api.clone();
        async move {
            api.get(&format!("/api/v1/servers?status={status}&limit=1000000"))
                .await
                .map(|v| v.as_array().map(|a| a.len()).unwrap_or(0))
        }
    };
    let (active, errored) = (count("ACTIVE").await?, count("ERROR").await?);
    let settled_per_s = active as f64 / settle_secs;
    let ratio = settled_per_s / accepted_per_s;
    println!(
        "settle: {active} ACTIVE, {errored} ERROR after {settle_secs:.1}s = {settled_per_s:.0} servers/s end to end = {:.1}% of the accepted rate",
        ratio * 100.0
    );

    // Idle latencies.
    let ids = ids.lock().unwrap().clone();
    let mut show_idle = vec![];
    for i in 0..1000.min(ids.len() * 10) {
        let id = &ids[(i * 7919) % ids.len()];
        show_idle.push(api.timed(&format!("/api/v1/servers/{id}")).await?.0);
    }
    let mut list_idle = vec![];
    let mut marker: Option<String> = None;
    for _ in 0..200 {
        let mut u = "/api/v1/servers?limit=100".to_string();
        if let Some(m) = &marker {
            u.push_str(&format!("&marker={m}"));
        }
        let (ms, page) = api.timed(&u).await?;
        list_idle.push(ms);
        marker = page
            .as_array()
            .and_then(|a| a.last())
            .and_then(|s| s["id"].as_str())
            .map(str::to_string);
    }
    let (show_p99, list_p99) = (pct(&mut show_load, 0.99), pct(&mut list_load, 0.99));
    println!(
        "GET show under load:  p50 {:.2} ms  p99 {show_p99:.2} ms  ({} requests)",
        pct(&mut show_load, 0.5),
        show_load.len()
    );
    println!(
        "GET list under load:  p50 {:.2} ms  p99 {list_p99:.2} ms  ({} pages of 100)",
        pct(&mut list_load, 0.5),
        list_load.len()
    );
    let (show_idle_p99, list_idle_p99) = (pct(&mut show_idle, 0.99), pct(&mut list_idle, 0.99));
    println!(
        "GET show idle:        p50 {:.2} ms  p99 {show_idle_p99:.2} ms  ({} requests)",
        pct(&mut show_idle, 0.5),
        show_idle.len()
    );
    println!(
        "GET list idle:        p50 {:.2} ms  p99 {list_idle_p99:.2} ms  ({} pages of 100)",
        pct(&mut list_idle, 0.5),
        list_idle.len()
    );
    drop(child);

    // The limit: raw SQLite transactions like the runner's on the same disk.
    let db = dir.0.join("lifeboat.db");
    let sizes = row_sizes(&db).await?;
    let raw = raw_sqlite_tx(&dir.0.join("raw-bench.db"), sizes, accepted.max(1000)).await?;
    println!(
        "sqlite limit: {raw:.0} tx/s (one connection; tx = server row {} B + workflow row {} B + event {} B, WAL, synchronous={}); events per server {:.1}",
        sizes.server,
        sizes.workflow,
        sizes.event,
        lifeboat_store::SQLITE_SYNCHRONOUS,
        sizes.events_per_server
    );
    println!(
        "{}",
        json!({
            "servers": n,
            "clients": conc,
            "accepted_per_s": round2(accepted_per_s),
            "settled_per_s": round2(settled_per_s),
            "settle_vs_accepted": (ratio * 10_000.0).round() / 10_000.0,
            "sqlite_tx_per_s": raw.round(),
            "show_p99_ms": round2(show_p99),
            "list_p99_ms": round2(list_p99),
            "show_idle_p99_ms": round2(show_idle_p99),
            "list_idle_p99_ms": round2(list_idle_p99),
            "active": active,
            "error": errored,
        })
    );
    Ok(())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Average stored sizes of this run's rows.
#[derive(Clone, Copy)]
struct Sizes {
    server: usize,
    workflow: usize,
    event: usize,
    events_per_server: f64,
}

async fn row_sizes(db: &std::path::Path) -> anyhow::Result<Sizes> {
    let mut c =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", db.display())).await?;
    let avg = |sql: &'static str| sqlx::query(sql);
    let server: f64 = avg("SELECT CAST(COALESCE(AVG(LENGTH(data)), 0) AS REAL) FROM servers")
        .fetch_one(&mut c)
        .await?
        .try_get(0)?;
    let workflow: f64 = avg("SELECT CAST(COALESCE(AVG(LENGTH(data)), 0) AS REAL) FROM workflows")
        .fetch_one(&mut c)
        .await?
        .try_get(0)?;
    let event: f64 = avg("SELECT CAST(COALESCE(AVG(LENGTH(message)), 0) AS REAL) FROM events")
        .fetch_one(&mut c)
        .await?
        .try_get(0)?;
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(&mut c)
        .await?;
    let servers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM servers")
        .fetch_one(&mut c)
        .await?;
    Ok(Sizes {
        server: server as usize,
        workflow: workflow as usize,
        event: event as usize,
        events_per_server: events as f64 / servers.max(1) as f64,
    })
}

/// Commits, for about three seconds on one connection, transactions that
/// each rewrite one of `rows` server rows and one workflow row of the given
/// sizes and append one event; returns transactions per second.
async fn raw_sqlite_tx(path: &std::path::Path, s: Sizes, rows: usize) -> anyhow::Result<f64> {
    let mut c =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display())).await?;
    c.execute("PRAGMA journal_mode = WAL").await?;
    c.execute(
        format!(
            "PRAGMA synchronous = {}",
            lifeboat_store::SQLITE_SYNCHRONOUS
        )
        .as_str(),
    )
    .await?;
    c.execute(
        "CREATE TABLE servers (id TEXT PRIMARY KEY, version BIGINT NOT NULL, data TEXT NOT NULL);
         CREATE TABLE workflows (id TEXT PRIMARY KEY, data TEXT NOT NULL);
         CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, workflow_id TEXT, message TEXT NOT NULL);
         CREATE INDEX events_workflow ON events (workflow_id, id);",
    )
    .await?;
    let server = "s".repeat(s.server.max(1));
    let workflow = "w".repeat(s.workflow.max(1));
    let event = "e".repeat(s.event.max(1));
    let mut tx = c.begin().await?;
    for i in 0..rows {
        sqlx::query("INSERT INTO servers (id, version, data) VALUES ($1, 1, $2)")
            .bind(format!("{i:08}"))
            .bind(&server)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO workflows (id, data) VALUES ($1, $2)")
            .bind(format!("{i:08}"))
            .bind(&workflow)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let start = Instant::now();
    let mut done = 0usize;
    while start.elapsed() < Duration::from_secs(3) {
        let id = format!("{:08}", (done * 7919) % rows);
        let mut tx = c.begin().await?;
        sqlx::query("UPDATE servers SET version = version + 1, data = $1 WHERE id = $2")
            .bind(&server)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE workflows SET data = $1 WHERE id = $2")
            .bind(&workflow)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO events (workflow_id, message) VALUES ($1, $2)")
            .bind(&id)
            .bind(&event)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        done += 1;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}
