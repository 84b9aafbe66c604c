//! Bounded concurrent load with crashes: 12 clients send random actions to
//! about 10 servers of a real `lifeboat serve` (fake driver) for ~20 s while
//! serve is SIGKILLed and restarted twice. Afterwards nothing is left
//! queued, stuck in a task state or leaked: no 5xx was answered, every
//! workflow ended, no image is queued/saving, and the fake host's VMs are
//! exactly the VMs of servers that should have one (a shelved-offloaded
//! server has none: its disk is in the snapshot store).

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, Api, Serve};
use serde_json::{json, Value};

const CLIENTS: usize = 12;
const SERVERS: usize = 10;
const LOAD: Duration = Duration::from_secs(20);

/// xorshift64*: enough randomness for picking actions, seed printed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

fn action(rng: &mut Rng, n: u64) -> Value {
    match rng.next() % 20 {
        0 => json!({"action": "reboot", "hard": rng.next() & 1 == 0}),
        1 => json!({"action": "stop"}),
        2 => json!({"action": "start"}),
        3 => json!({"action": "pause"}),
        4 => json!({"action": "unpause"}),
        5 => json!({"action": "suspend"}),
        6 => json!({"action": "resume"}),
        7 => json!({"action": "resize", "flavor": rng.pick(&["m1.tiny", "m1.small"])}),
        8 => json!({"action": "confirm_resize"}),
        9 => json!({"action": "revert_resize"}),
        10 => json!({"action": "create_image", "name": format!("img-{n}")}),
        11 => json!({"action": "create_backup", "name": format!("bak-{n}"),
                     "backup_type": "daily", "rotation": 2}),
        12 => json!({"action": "shelve"}),
        13 => json!({"action": "unshelve"}),
        14 => json!({"action": "rescue"}),
        15 => json!({"action": "unrescue"}),
        16 => json!({"action": "lock"}),
        17 => json!({"action": "unlock"}),
        18 => json!({"action": "change_password", "admin_pass": format!("Load-{n}")}),
        _ => json!({"action": "delete"}),
    }
}

struct Shared {
    url: String,
    token: String,
    ids: Mutex<Vec<String>>,
    stop: AtomicBool,
    requests: AtomicUsize,
    fives: Mutex<Vec<String>>,
}

async fn send(
    http: &reqwest::Client,
    sh: &Shared,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let mut r = http
        .request(method.clone(), format!("{}{path}", sh.url))
        .header("X-Auth-Token", &sh.token)
        .timeout(Duration::from_secs(30));
    if let Some(b) = &body {
        r = r.json(b);
    }
    // A refused or cut connection is the SIGKILL: nothing to judge.
    let resp = r.send().await.ok()?;
    let st = resp.status().as_u16();
    let text = resp.text().await.ok()?;
    sh.requests.fetch_add(1, Ordering::Relaxed);
    if st >= 500 {
        sh.fives
            .lock()
            .unwrap()
            .push(format!("{method} {path} {body:?} -> {st} {text}"));
    }
    Some((st, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

async fn create(http: &reqwest::Client, sh: &Shared, n: u64) -> Option<String> {
    let (st, v) = send(
        http,
        sh,
        reqwest::Method::POST,
        "/api/v1/servers",
        Some(json!({"name": format!("load-{n}"), "flavor": "m1.nano"})),
    )
    .await?;
    (st == 202).then(|| v[0]["server"]["id"].as_str().unwrap().to_string())
}

async fn client(sh: Arc<Shared>, seed: u64) {
    let http = reqwest::Client::new();
    let mut rng = Rng(seed | 1);
    let mut n = seed % 1000 * 100_000;
    while !sh.stop.load(Ordering::Relaxed) {
        n += 1;
        let id = {
            let ids = sh.ids.lock().unwrap();
            ids[(rng.next() % ids.len() as u64) as usize].clone()
        };
        let a = action(&mut rng, n);
        if a["action"] == "delete" {
            let res = send(
                &http,
                &sh,
                reqwest::Method::DELETE,
                &format!("/api/v1/servers/{id}"),
                None,
            )
            .await;
            if matches!(res, Some((202, _))) {
                // keep about SERVERS servers around
                if let Some(new) = create(&http, &sh, n).await {
                    let mut ids = sh.ids.lock().unwrap();
                    ids.retain(|x| x != &id);
                    ids.push(new);
                }
            }
        } else if rng.next() & 3 == 0 {
            let _ = send(
                &http,
                &sh,
                reqwest::Method::GET,
                &format!("/api/v1/servers/{id}"),
                None,
            )
            .await;
        } else {
            let _ = send(
                &http,
                &sh,
                reqwest::Method::POST,
                &format!("/api/v1/servers/{id}/actions"),
                Some(a),
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(rng.next() % 20)).await;
    }
}

#[test]
fn concurrent_random_actions_with_kills_leave_nothing_behind() {
    let started = Instant::now();
    let seed = std::env::var("LIFEBOAT_LOAD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("load seed {seed} (LIFEBOAT_LOAD_SEED to replay)");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = [
        ("LIFEBOAT_ENABLE_TEST_HOOKS", "1"),
        ("LIFEBOAT_FAKE_DELAY_MS", "5"),
    ];
    let mut serve = Serve::start(dir.path(), port, &env, &[]);
    let c = serve.credentials();
    let (user, pass) = (
        c["username"].as_str().unwrap().to_string(),
        c["password"].as_str().unwrap().to_string(),
    );
    let api = Api::login(&serve.url, &user, &pass);
    let mut ids = vec![];
    for i in 0..SERVERS {
        let (st, v) = api.post(
            "/api/v1/servers",
            json!({"name": format!("seed-{i}"), "flavor": "m1.nano"}),
        );
        assert_eq!(st, 202, "{v}");
        ids.push(v[0]["server"]["id"].as_str().unwrap().to_string());
    }
    let sh = Arc::new(Shared {
        url: serve.url.clone(),
        token: api.token.clone(),
        ids: Mutex::new(ids),
        stop: AtomicBool::new(false),
        requests: AtomicUsize::new(0),
        fives: Mutex::new(vec![]),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| rt.spawn(client(sh.clone(), seed.wrapping_add(i as u64 * 7919))))
        .collect();
    let load_start = Instant::now();
    for kill in 1..=2u32 {
        std::thread::sleep(LOAD / 3);
        eprintln!(
            "SIGKILL {kill} after {} requests",
            sh.requests.load(Ordering::Relaxed)
        );
        serve.kill9();
        serve = Serve::start(dir.path(), port, &env, &[]);
    }
    std::thread::sleep(LOAD.saturating_sub(load_start.elapsed()));
    sh.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        rt.block_on(t).unwrap();
    }
    let requests = sh.requests.load(Ordering::Relaxed);
    eprintln!("{requests} requests in {:?}", load_start.elapsed());
    assert!(requests > 500, "the load ran: {requests} requests");
    let fives = sh.fives.lock().unwrap().clone();
    assert!(fives.is_empty(), "5xx answers: {fives:#?}");

    // settle: every server leaves its task, every workflow ends
    let api = Api::login(&serve.url, &user, &pass);
    let deadline = Instant::now() + Duration::from_secs(30);
    let servers = loop {
        let all = api.get("/api/v1/servers?all_projects=true&limit=1000");
        let busy: Vec<&Value> = all
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| !s["task_state"].is_null() || s["status"] == "BUILD")
            .collect();
        if busy.is_empty() {
            break all;
        }
        assert!(Instant::now() < deadline, "stuck servers: {busy:#?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let wfs = api.get("/api/v1/workflows?limit=1000");
    for w in wfs.as_array().unwrap() {
        assert!(
            !matches!(w["state"].as_str(), Some("running" | "rolling_back")),
            "unfinished workflow: {w}"
        );
    }
    let images = api.get("/api/v1/images");
    for i in images.as_array().unwrap() {
        assert!(
            !matches!(i["status"].as_str(), Some("queued" | "saving")),
            "image left behind: {i}"
        );
    }
    // no leak: the host's VMs are those of live servers; servers that
    // should run have their VM
    let host: Value =
        lifeboat_hypervisor::fake::read_state_file(&dir.path().join("hosts/host1/fake-host1.json"));
    let vms: BTreeSet<String> = host.as_object().unwrap().keys().cloned().collect();
    let live: Vec<&Value> = servers
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] != "DELETED")
        .collect();
    let names: BTreeSet<String> = live
        .iter()
        .map(|s| s["instance_name"].as_str().unwrap().to_string())
        .collect();
    let leaked: Vec<&String> = vms.difference(&names).collect();
    if !leaked.is_empty() {
        // keep the data dir (database, events, fake host) to read the story
        let keep = dir.path().to_path_buf();
        std::mem::forget(dir);
        eprintln!("data dir kept for diagnosis: {}", keep.display());
        for l in &leaked {
            eprintln!("leaked VM {l}: {}", host[l.as_str()]);
        }
    }
    assert!(leaked.is_empty(), "VMs of no live server: {leaked:?}");
    for s in &live {
        let st = s["status"].as_str().unwrap();
        if st == "SHELVED_OFFLOADED" {
            // its disk is in the snapshot store; offload freed the host
            assert!(
                !vms.contains(s["instance_name"].as_str().unwrap()),
                "offloaded server still has its VM: {s}"
            );
        } else if st != "ERROR" {
            assert!(
                vms.contains(s["instance_name"].as_str().unwrap()),
                "{st} server without its VM: {s}"
            );
        }
    }
    eprintln!(
        "{} live servers, {} VMs, {} workflows, in {:?}",
        live.len(),
        vms.len(),
        wfs.as_array().unwrap().len(),
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(90));
}
