//! Network benchmark: TCP throughput between two real guests on one Lifeboat network, beside
//! the same measurement between two bare namespaces joined by a veth pair, in the same run.
//!
//! - **guests**: two QEMU VMs (guest/out image) of `lifeboat serve --driver qemu --dataplane`,
//!   created through Nova on the `private` network; the receiver's user data runs
//!   busybox `nc -l -p 5201 > /dev/null`, the sender's `nc <receiver> 5201 < /dev/zero`. The frames
//!   cross the sender's tap, the network's bridge, the security-group and anti-spoofing
//!   nftables rules and the receiver's tap.
//! - **namespace ports**: two namespaces on veth ports of a Lifeboat bridge (same rules, no
//!   VMs): the data plane's own cost.
//! - **bare veth**: two namespaces joined by a veth pair, same MTU.
//!
//! One measurement for all three: while one TCP stream runs, the bytes the receiver's link
//! delivered (the receiving guest's tap as the host sees it, the receiving namespace's eth0)
//! are read at the start and the end of a window of SECONDS; Gbit/s of those frames. Each
//! round measures all three (the guests are paused through Nova while the namespaces run, so
//! the VMs take no CPU from them); the median round counts. Prints each round, the medians,
//! the ratios, and a JSON line last. Needs root, dnsmasq, nftables and QEMU. Not run in CI.
//!
//! `cargo build -p lifeboat && cargo run -p lifeboat-bench --bin network -- [SECONDS] [ROUNDS]`
//! (defaults 3 s, 3 rounds). Environment: `LIFEBOAT_BIN` (default: `lifeboat` beside this
//! binary), `LIFEBOAT_GUEST_DIR` (default: the repository's guest/out), `LIFEBOAT_ACCEL`
//! (passed to serve; unset: serve probes KVM and falls back to TCG).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use base64::Engine as _;
use lifeboat_hostnet::{
    names, netns, HostNetwork, HostOptions, MacAddr, NetworkSpec, PortSpec, SecurityGroup,
    SubnetSpec,
};
use serde_json::{json, Value};

const PORT: u16 = 5201;
/// The guest image's id in a fresh `lifeboat serve`.
const IMAGE: &str = "5f0c8d7e-4a3b-4c1e-9d2f-0b1a2c3d4e5f";
const RECEIVER_IP: &str = "10.0.0.71";
const SENDER_IP: &str = "10.0.0.72";

/// Removes everything the bench created, also on panic or error: the serve process, the
/// qemu processes of its data dir, the data planes and the namespaces.
struct Cleanup {
    hosts: Vec<String>,
    namespaces: Vec<String>,
    serve: Option<Child>,
    data_dir: Option<PathBuf>,
}

/// Pids of the qemu processes whose command line names `dir`.
fn qemus_under(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut v = vec![];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.starts_with("qemu-system") && cmd.contains(&needle) {
            v.push(pid);
        }
    }
    v
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(c) = &mut self.serve {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(d) = &self.data_dir {
            for pid in qemus_under(d) {
                // SAFETY: kill(2) of a qemu this bench started (its command line names our dir).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        for n in &self.namespaces {
            let _ = netns::delete(n);
        }
        for h in &self.hosts {
            let _ = lifeboat_hostnet::cleanup_host(h);
        }
    }
}

/// Bytes the link `dev` in namespace `ns` received (`rx`) or sent (`tx`), from rtnetlink's
/// 64-bit counters as `ip -j -s link` reports them.
fn link_bytes(ns: &str, dev: &str, dir: &str) -> anyhow::Result<u64> {
    let out = netns::run_command(ns, "ip", &["-j", "-s", "link", "show", "dev", dev])?;
    let v: Value = serde_json::from_str(&out)?;
    v[0]["stats64"][dir]["bytes"]
        .as_u64()
        .ok_or_else(|| anyhow!("no {dir} byte counter for {dev} in {ns}: {out}"))
}

/// Gbit/s delivered by `dev` (direction `dir`) over a window of `secs`.
fn window(ns: &str, dev: &str, dir: &str, secs: f64) -> anyhow::Result<f64> {
    let (b0, t0) = (link_bytes(ns, dev, dir)?, Instant::now());
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (b1, t1) = (link_bytes(ns, dev, dir)?, Instant::now());
    Ok(b1.saturating_sub(b0) as f64 * 8.0 / (t1 - t0).as_secs_f64() / 1e9)
}

/// One TCP stream from namespace `from` to `to_ip:PORT` (listening in `to`), until dropped.
struct NsStream {
    stop: Arc<AtomicBool>,
    sender: Option<JoinHandle<anyhow::Result<()>>>,
    receiver: Option<JoinHandle<std::io::Result<u64>>>,
}

impl NsStream {
    fn start(from: &str, to: &str, to_ip: Ipv4Addr) -> anyhow::Result<NsStream> {
        let listener: TcpListener = netns::run_in(to, move || {
            TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT))
        })??;
        let receiver = std::thread::spawn(move || -> std::io::Result<u64> {
            let (mut s, _) = listener.accept()?;
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let n = s.read(&mut buf)?;
                if n == 0 {
                    return Ok(total);
                }
                total += n as u64;
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, from) = (stop.clone(), from.to_string());
        let sender = std::thread::spawn(move || -> anyhow::Result<()> {
            netns::run_in(&from, move || -> std::io::Result<()> {
                let mut s = TcpStream::connect_timeout(
                    &SocketAddr::new(IpAddr::V4(to_ip), PORT),
                    Duration::from_secs(5),
                )?;
                let buf = vec![0x5au8; 128 * 1024];
                while !flag.load(Ordering::Relaxed) {
                    s.write_all(&buf)?;
                }
                s.shutdown(std::net::Shutdown::Write)
            })??;
            Ok(())
        });
        Ok(NsStream {
            stop,
            sender: Some(sender),
            receiver: Some(receiver),
        })
    }

    /// Measures a window of `secs` on the receiver's eth0 (after a short ramp-up).
    fn measure(to: &str, from: &str, to_ip: Ipv4Addr, secs: f64) -> anyhow::Result<f64> {
        let mut s = NsStream::start(from, to, to_ip)?;
        std::thread::sleep(Duration::from_millis(500));
        let g = window(to, "eth0", "rx", secs);
        s.finish()?;
        g
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.sender.take() {
            h.join().map_err(|_| anyhow!("sender panicked"))??;
        }
        if let Some(h) = self.receiver.take() {
            h.join().map_err(|_| anyhow!("receiver panicked"))??;
        }
        Ok(())
    }
}

impl Drop for NsStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn ns_port(id: &str, last: u8, ip: &str) -> PortSpec {
    PortSpec {
        id: id.into(),
        network_id: "bench".into(),
        mac: MacAddr([0xfa, 0x16, 0x3e, 0xbe, 0x00, last]),
        fixed_ips: vec![ip.parse().unwrap()],
        hostname: None,
        security_groups: vec!["default".into()],
        port_security_enabled: true,
        allowed_address_pairs: vec![],
    }
}

/// A running `lifeboat serve` and an OpenStack client logged in as its admin.
struct Cloud {
    url: String,
    token: String,
    http: reqwest::Client,
    stderr: Arc<Mutex<String>>,
}

impl Cloud {
    fn start(
        bin: &Path,
        data_dir: &Path,
        guest: &Path,
        dataplane: &str,
        cleanup: &mut Cleanup,
    ) -> anyhow::Result<Cloud> {
        let port = TcpListener::bind("0.0.0.0:0")?.local_addr()?.port();
        let mut child = Command::new(bin)
            .args(["serve", "--driver", "qemu", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--guest-dir")
            .arg(guest)
            .args(["--dataplane", dataplane, "--sync-interval", "1"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let err = child.stderr.take().expect("piped");
        cleanup.serve = Some(child);
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let end = Instant::now() + Duration::from_secs(120);
        while !stderr.lock().unwrap().contains("serving on") {
            if let Some(st) = cleanup
                .serve
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("lifeboat serve exited ({st}): {}", stderr.lock().unwrap());
            }
            ensure!(
                Instant::now() < end,
                "lifeboat serve did not come up: {}",
                stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Cloud {
            url: format!("http://127.0.0.1:{port}"),
            token: String::new(),
            http: reqwest::Client::new(),
            stderr,
        })
    }

    /// Keystone login with the admin credentials serve wrote.
    async fn login(&mut self, data_dir: &Path) -> anyhow::Result<()> {
        let c: Value = serde_json::from_str(&std::fs::read_to_string(
            data_dir.join("admin-credentials.json"),
        )?)?;
        let r = self
            .http
            .post(format!("{}/identity/v3/auth/tokens", self.url))
            .json(
                &json!({"auth": {"identity": {"methods": ["password"], "password": {
                "user": {"name": c["username"], "domain": {"name": "Default"},
                "password": c["password"]}}},
                "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}),
            )
            .send()
            .await?;
        ensure!(r.status() == 201, "keystone login: {}", r.status());
        self.token = r.headers()["x-subject-token"].to_str()?.to_string();
        Ok(())
    }

    async fn call(
        &self,
        m: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut r = self
            .http
            .request(m.clone(), format!("{}{path}", self.url))
            .header("X-Auth-Token", &self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await?;
        let st = resp.status();
        let text = resp.text().await?;
        ensure!(st.is_success(), "{m} {path}: {st} {text}");
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn server(
        &self,
        name: &str,
        net: &str,
        ip: &str,
        user_data: &str,
    ) -> anyhow::Result<String> {
        let ud = base64::engine::general_purpose::STANDARD.encode(user_data);
        let v = self
            .call(
                reqwest::Method::POST,
                "/compute/v2.1/servers",
                Some(
                    json!({"server": {"name": name, "flavorRef": "1", "imageRef": IMAGE,
                    "networks": [{"uuid": net, "fixed_ip": ip}], "user_data": ud}}),
                ),
            )
            .await?;
        Ok(v["server"]["id"].as_str().context("server id")?.to_string())
    }

    async fn wait_status(&self, id: &str, want: &str, secs: u64) -> anyhow::Result<()> {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.get(&format!("/compute/v2.1/servers/{id}")).await?;
            let st = s["server"]["status"].as_str().unwrap_or("");
            ensure!(st != "ERROR", "server {id} is in ERROR: {s}");
            if st == want && s["server"]["OS-EXT-STS:task_state"].is_null() {
                return Ok(());
            }
            ensure!(
                Instant::now() < end,
                "server {id} not {want} after {secs} s: {s}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn action(&self, id: &str, body: Value) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::POST,
            &format!("/compute/v2.1/servers/{id}/action"),
            Some(body),
        )
        .await
        .map(|_| ())
    }

    async fn console(&self, id: &str) -> String {
        self.call(
            reqwest::Method::POST,
            &format!("/compute/v2.1/servers/{id}/action"),
            Some(json!({"os-getConsoleOutput": {"length": 40}})),
        )
        .await
        .map(|v| v["output"].as_str().unwrap_or("").to_string())
        .unwrap_or_else(|e| format!("(no console: {e})"))
    }
}

/// The two guests, running and streaming: (receiver id, sender id, receiver's tap, MTU).
async fn guests(cloud: &Cloud, host_ns: &str) -> anyhow::Result<(String, String, String, u64)> {
    let nets = cloud.get("/network/v2.0/networks?name=private").await?;
    let net = nets["networks"][0]["id"]
        .as_str()
        .context("no private network")?
        .to_string();
    let mtu = nets["networks"][0]["mtu"].as_u64().unwrap_or(1500);
    let receiver = cloud
        .server(
            "bench-rx",
            &net,
            RECEIVER_IP,
            // nc stops at EOF on its stdin (user data has /dev/null): a FIFO held open
            // read-write never ends and never sends.
            &format!(
                "#!/bin/sh\nmkfifo /run/bench-in\nexec 3<>/run/bench-in\nwhile true; do nc -l -p {PORT} <&3 > /dev/null; done\n"
            ),
        )
        .await?;
    let sender = cloud
        .server(
            "bench-tx",
            &net,
            SENDER_IP,
            &format!(
                "#!/bin/sh\nwhile true; do nc {RECEIVER_IP} {PORT} < /dev/zero; sleep 1; done\n"
            ),
        )
        .await?;
    for id in [&receiver, &sender] {
        cloud.wait_status(id, "ACTIVE", 600).await?;
    }
    let ports = cloud
        .get(&format!("/network/v2.0/ports?device_id={receiver}"))
        .await?;
    let tap = names::tap(ports["ports"][0]["id"].as_str().context("receiver port")?);
    // The stream runs once both guests booted and the user data started.
    let end = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(g) = window(host_ns, &tap, "tx", 1.0) {
            if g > 0.008 {
                break;
            }
        }
        if Instant::now() > end {
            bail!(
                "no stream between the guests after 600 s.\nreceiver console:\n{}\nsender console:\n{}",
                cloud.console(&receiver).await,
                cloud.console(&sender).await
            );
        }
    }
    Ok((receiver, sender, tap, mtu))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(3.0);
    let rounds: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(3);
    ensure!(
        rounds >= 1 && secs > 0.0,
        "usage: network [SECONDS] [ROUNDS]"
    );
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "bench/network needs root (namespaces, nftables)"
    );
    let bin = match std::env::var_os("LIFEBOAT_BIN") {
        Some(b) => PathBuf::from(b),
        None => std::env::current_exe()?
            .parent()
            .context("no directory of this binary")?
            .join("lifeboat"),
    };
    ensure!(
        bin.is_file(),
        "{} is missing: cargo build -p lifeboat, or set LIFEBOAT_BIN",
        bin.display()
    );
    let guest = std::env::var_os("LIFEBOAT_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../guest/out"));
    ensure!(
        guest.join("vmlinux").is_file(),
        "no guest image in {}: run bash guest/build-image.sh or set LIFEBOAT_GUEST_DIR",
        guest.display()
    );
    let id = std::process::id() % 100_000;
    let (host, vm_host) = (format!("bnet{id}"), format!("bvm{id}"));
    let ns = |s: &str| format!("lbb-{id}-{s}");
    let (g1, g2, v1, v2) = (ns("g1"), ns("g2"), ns("v1"), ns("v2"));
    let data_dir = tempfile::tempdir()?;
    let mut cleanup = Cleanup {
        hosts: vec![host.clone(), vm_host.clone()],
        namespaces: vec![g1.clone(), g2.clone(), v1.clone(), v2.clone()],
        serve: None,
        data_dir: Some(data_dir.path().to_path_buf()),
    };
    let _ = lifeboat_hostnet::cleanup_host(&vm_host);

    // Two real guests through Nova on `private`.
    let mut cloud = Cloud::start(&bin, data_dir.path(), &guest, &vm_host, &mut cleanup)?;
    cloud.login(data_dir.path()).await?;
    let accel = cloud
        .stderr
        .lock()
        .unwrap()
        .lines()
        .find_map(|l| {
            l.split("accelerator ")
                .nth(1)
                .map(|a| a.split(' ').next().unwrap_or(a).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let vm_ns = names::host_ns(&vm_host);
    println!("booting two guests (accelerator {accel}) ...");
    let (receiver, sender, tap, mtu) = guests(&cloud, &vm_ns).await?;

    // Two namespaces on a Lifeboat network, same MTU.
    let hn = HostNetwork::open(&host, HostOptions::default()).await?;
    hn.ensure_network(&NetworkSpec {
        id: "bench".into(),
        vni: 900,
        mtu: mtu as u32,
        subnets: vec![SubnetSpec {
            id: "bench-v4".into(),
            cidr: "10.99.0.0/24".parse()?,
            gateway_ip: None,
            enable_dhcp: false,
            dns_nameservers: vec![],
            host_routes: vec![],
            dhcp_ip: None,
            ipv6_mode: Default::default(),
        }],
    })
    .await?;
    hn.apply_security_groups(&[SecurityGroup {
        id: "default".into(),
        rules: SecurityGroup::default_rules("default"),
        members: vec!["10.99.0.1".parse()?, "10.99.0.2".parse()?],
    }])
    .await?;
    hn.ensure_port_namespace(&ns_port("bench-1", 1, "10.99.0.1"), &g1)
        .await?;
    hn.ensure_port_namespace(&ns_port("bench-2", 2, "10.99.0.2"), &g2)
        .await?;
    netns::run_command(&g1, "ip", &["addr", "add", "10.99.0.1/24", "dev", "eth0"])?;
    netns::run_command(&g2, "ip", &["addr", "add", "10.99.0.2/24", "dev", "eth0"])?;

    // Two bare namespaces joined by a veth pair, same MTU.
    let mtu_s = mtu.to_string();
    netns::create(&v1)?;
    netns::create(&v2)?;
    netns::run_command(
        &v1,
        "ip",
        &[
            "link", "add", "eth0", "mtu", &mtu_s, "type", "veth", "peer", "name", "peer0",
        ],
    )?;
    netns::run_command(&v1, "ip", &["link", "set", "peer0", "netns", &v2])?;
    netns::run_command(&v2, "ip", &["link", "set", "peer0", "name", "eth0"])?;
    for (n, ip) in [(&v1, "10.98.0.1/24"), (&v2, "10.98.0.2/24")] {
        netns::run_command(n, "ip", &["addr", "add", ip, "dev", "eth0"])?;
        netns::run_command(n, "ip", &["link", "set", "eth0", "up"])?;
        netns::run_command(n, "ip", &["link", "set", "lo", "up"])?;
    }
    // Warm up ARP/conntrack on both namespace paths.
    netns::run_command(&g1, "ping", &["-c", "1", "-W", "2", "10.99.0.2"])?;
    netns::run_command(&v1, "ping", &["-c", "1", "-W", "2", "10.98.0.2"])?;

    let (mut vm, mut bridge, mut veth) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        if r > 0 {
            for s in [&receiver, &sender] {
                cloud.action(s, json!({"unpause": null})).await?;
            }
            for s in [&receiver, &sender] {
                cloud.wait_status(s, "ACTIVE", 120).await?;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        let g = window(&vm_ns, &tap, "tx", secs)?;
        // The guests take no CPU while the namespaces are measured.
        for s in [&receiver, &sender] {
            cloud.action(s, json!({"pause": null})).await?;
        }
        for s in [&receiver, &sender] {
            cloud.wait_status(s, "PAUSED", 120).await?;
        }
        let b = NsStream::measure(&g2, &g1, "10.99.0.2".parse()?, secs)?;
        let v = NsStream::measure(&v2, &v1, "10.98.0.2".parse()?, secs)?;
        println!(
            "round {}: guests {:.3} Gbit/s, namespace ports {b:.2} Gbit/s, bare veth {v:.2} Gbit/s",
            r + 1,
            g
        );
        vm.push(g);
        bridge.push(b);
        veth.push(v);
    }
    let (g, b, v) = (median(vm), median(bridge), median(veth));
    println!("guest-to-guest over the Lifeboat bridge (VMs, {accel}, MTU {mtu}): {g:.3} Gbit/s");
    println!("namespace ports on a Lifeboat bridge (security groups on):   {b:.2} Gbit/s");
    println!("two bare namespaces over a veth pair:                        {v:.2} Gbit/s");
    println!(
        "ratio guests/veth: {:.4}, namespace ports/veth: {:.3}",
        g / v,
        b / v
    );
    drop(hn);
    println!(
        "{}",
        json!({"bench": "network", "seconds": secs, "rounds": rounds, "accel": accel,
            "mtu": mtu, "measure": "bytes delivered by the receiver's link in the window",
            "guest_gbps": (g * 1000.0).round() / 1000.0,
            "namespace_bridge_gbps": (b * 100.0).round() / 100.0,
            "veth_gbps": (v * 100.0).round() / 100.0,
            "ratio_guest_veth": (g / v * 10000.0).round() / 10000.0,
            "ratio_namespace_bridge_veth": (b / v * 1000.0).round() / 1000.0})
    );
    Ok(())
}
