//! Real networks on real VMs (issue 10): `lifeboat serve --driver qemu --dataplane NAME` plugs
//! every port as a tap in the namespace `lbh-NAME` (hostnet), guests get their fixed IPs by
//! DHCP and their hostname, SSH key and user data from the metadata service; the OpenStack
//! APIs (Nova + Neutron) drive it all. Runs as root (namespaces, nftables, dnsmasq) under TCG
//! with the guest image of guest/out; fails with a clear message when something is missing.
//! Everything the tests start (qemu processes, dnsmasq, namespaces) is removed by a Drop guard,
//! also when an assertion fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{free_port, Api, Serve};
use lifeboat_hostnet::{names, netns};
use reqwest::Method;
use serde_json::{json, Value};

const IMAGE: &str = "5f0c8d7e-4a3b-4c1e-9d2f-0b1a2c3d4e5f";

fn guest_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the network VM tests need root (namespaces, nftables)"
    );
    for t in ["qemu-system-x86_64", "dnsmasq", "nft", "ip", "ping"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(ok, "{t} is not installed: run scripts/setup.sh");
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../guest/out");
    assert!(
        dir.join("vmlinux").is_file(),
        "the guest image is missing ({}): run bash guest/build-image.sh",
        dir.display()
    );
    dir
}

fn unique(tag: &str) -> String {
    format!("t{tag}{}", std::process::id() % 100_000)
}

/// Kills the qemu processes of the data dirs and removes the data planes, fabrics and
/// namespaces, in that order (also on panic). The data planes, fabrics and namespaces are
/// recorded in the test registry as they are added, and the data dirs by `Serve` and
/// `start_agent`, so when the test process is killed the next real-VM test's [`VmGuard`]
/// sweeps them (qemus, serve/agents, dnsmasqs, namespaces); the guard, dropped after this,
/// also cleans up whatever the test registered.
struct Cleanup {
    data_dirs: Vec<PathBuf>,
    dataplanes: common::Tracked,
    fabrics: common::Tracked,
    namespaces: common::Tracked,
    children: Vec<Child>,
    _vms: common::VmGuard,
}

impl Cleanup {
    fn new() -> Cleanup {
        Cleanup {
            _vms: common::VmGuard::new(),
            data_dirs: vec![],
            dataplanes: common::Tracked::dataplanes(),
            fabrics: common::Tracked::fabrics(),
            namespaces: common::Tracked::namespaces(),
            children: vec![],
        }
    }
}

/// Pids of the qemu processes whose command line mentions `dir`.
fn qemus_under(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut v = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
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
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.data_dirs {
            for pid in qemus_under(d) {
                // SAFETY: kill(2) of a qemu this test started (its command line names our dir).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        for n in &self.namespaces {
            let _ = netns::delete(n);
        }
        for h in &self.dataplanes {
            let _ = lifeboat_hostnet::cleanup_host(h);
        }
        for f in &self.fabrics {
            let _ = netns::delete(&names::fabric_ns(f));
        }
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {secs} s: {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn ok(api: &Api, m: Method, path: &str, body: Option<Value>) -> Value {
    let (st, v) = api.req(m.clone(), path, body);
    assert!(st < 300, "{m} {path}: {st} {v}");
    v
}

fn active(api: &Api, id: &str) -> Value {
    wait_for(&format!("server {id} ACTIVE"), 400, || {
        let s = ok(
            api,
            Method::GET,
            &format!("/compute/v2.1/servers/{id}"),
            None,
        );
        let st = s["server"]["status"].as_str().unwrap_or("").to_string();
        assert_ne!(st, "ERROR", "{s}");
        (st == "ACTIVE").then_some(s["server"].clone())
    })
}

fn console(api: &Api, id: &str) -> String {
    let v = ok(
        api,
        Method::POST,
        &format!("/compute/v2.1/servers/{id}/action"),
        Some(json!({"os-getConsoleOutput": {"length": null}})),
    );
    v["output"].as_str().unwrap_or("").to_string()
}

fn console_has(api: &Api, id: &str, needle: &str, secs: u64) -> String {
    let mut last = String::new();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        last = console(api, id);
        if last.contains(needle) {
            return last;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("{needle:?} not on the console of {id} after {secs} s:\n{last}");
}

fn ping(ns: &str, ip: &str) -> bool {
    netns::run_command(ns, "ping", &["-c", "1", "-W", "1", ip]).is_ok()
}

fn ping_within(ns: &str, ip: &str, secs: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if ping(ns, ip) {
            return true;
        }
    }
    false
}

/// A namespace on the external network: a veth from the bridge the router's gateway is on
/// (in `lbh-<dataplane>`) to `eth0` with `addr`.
fn external_namespace(g: &mut Cleanup, dataplane: &str, router_id: &str, addr: &str) -> String {
    let host_ns = names::host_ns(dataplane);
    let gw = names::gateway_host_side(router_id);
    let bridge = wait_for("the router's gateway on the external bridge", 60, || {
        let out = netns::run_command(&host_ns, "ip", &["-j", "link", "show", "dev", &gw]).ok()?;
        let v: Value = serde_json::from_str(&out).ok()?;
        v[0]["master"].as_str().map(str::to_string)
    });
    // Named after the data plane: the two tests of this binary run at once in one
    // process, so a name from the pid alone would collide.
    let ns = format!("lbt-x{dataplane}");
    g.namespaces.push(ns.clone());
    netns::create(&ns).unwrap();
    let veth = format!("x{dataplane}");
    netns::run_command(
        &host_ns,
        "ip",
        &[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ],
    )
    .unwrap();
    netns::run_command(&host_ns, "ip", &["link", "set", &veth, "master", &bridge]).unwrap();
    netns::run_command(&host_ns, "ip", &["link", "set", &veth, "up"]).unwrap();
    netns::run_command(&ns, "ip", &["addr", "add", addr, "dev", "eth0"]).unwrap();
    netns::run_command(&ns, "ip", &["link", "set", "eth0", "up"]).unwrap();
    netns::run_command(&ns, "ip", &["link", "set", "lo", "up"]).unwrap();
    ns
}

fn network(api: &Api, name: &str) -> (String, String) {
    let v = ok(
        api,
        Method::GET,
        &format!("/network/v2.0/networks?name={name}"),
        None,
    );
    let n = &v["networks"][0];
    (
        n["id"].as_str().unwrap().to_string(),
        n["subnets"][0].as_str().unwrap().to_string(),
    )
}

fn create_server(api: &Api, body: Value) -> String {
    let v = ok(
        api,
        Method::POST,
        "/compute/v2.1/servers",
        Some(json!({ "server": body })),
    );
    v["server"]["id"].as_str().unwrap().to_string()
}

fn port_of(api: &Api, server: &str) -> Value {
    let v = ok(
        api,
        Method::GET,
        &format!("/network/v2.0/ports?device_id={server}"),
        None,
    );
    v["ports"][0].clone()
}

fn start_serve(g: &mut Cleanup, guest: &Path, extra: &[&str]) -> (tempfile::TempDir, Serve, Api) {
    let dir = tempfile::tempdir().unwrap();
    let (serve, api) = start_serve_in(g, dir.path(), guest, extra);
    (dir, serve, api)
}

fn start_serve_in(g: &mut Cleanup, dir: &Path, guest: &Path, extra: &[&str]) -> (Serve, Api) {
    g.data_dirs.push(dir.to_path_buf());
    let port = free_port();
    let mut args = vec!["--guest-dir", guest.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut serve = Serve::start_full(
        dir,
        port,
        "qemu",
        &[("LIFEBOAT_ACCEL", "tcg"), ("RUST_LOG", "warn")],
        &args,
    );
    serve.wait_ready_line();
    let c = serve.credentials();
    let api = Api::keystone(
        &serve.url,
        c["username"].as_str().unwrap(),
        c["password"].as_str().unwrap(),
    );
    (serve, api)
}

/// Router `r1` from `private` to `public`, a floating IP on `port`, ICMP from anywhere in
/// the default group; returns (router id, floating IP id, address).
fn expose(api: &Api, port: &str) -> (String, String, String) {
    let (private, private_subnet) = network(api, "private");
    let _ = private;
    let (public, _) = network(api, "public");
    let r = ok(
        api,
        Method::POST,
        "/network/v2.0/routers",
        Some(json!({"router": {"name": "r1", "external_gateway_info": {"network_id": public}}})),
    );
    let router = r["router"]["id"].as_str().unwrap().to_string();
    ok(
        api,
        Method::PUT,
        &format!("/network/v2.0/routers/{router}/add_router_interface"),
        Some(json!({"subnet_id": private_subnet})),
    );
    let f = ok(
        api,
        Method::POST,
        "/network/v2.0/floatingips",
        Some(json!({"floatingip": {"floating_network_id": public, "port_id": port}})),
    );
    let sg = ok(
        api,
        Method::GET,
        "/network/v2.0/security-groups?name=default",
        None,
    )["security_groups"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        api,
        Method::POST,
        "/network/v2.0/security-group-rules",
        Some(json!({"security_group_rule": {"security_group_id": sg,
            "direction": "ingress", "ethertype": "IPv4", "protocol": "icmp"}})),
    );
    (
        router,
        f["floatingip"]["id"].as_str().unwrap().to_string(),
        f["floatingip"]["floating_ip_address"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

/// Two host agents on one machine joined by a fabric (VXLAN): a guest on host1 behind a
/// floating IP (router and DHCP served by host1) is live-migrated to the remote agent host2
/// and still answers from the external namespace, its traffic now crossing the fabric.
#[test]
fn a_guest_stays_reachable_after_live_migration_to_another_host_agent() {
    let guest = guest_dir();
    let mut g = Cleanup::new();
    let (dp1, dp2, fabric) = (unique("ma"), unique("mb"), unique("mf"));
    g.dataplanes.extend([dp1.clone(), dp2.clone()]);
    g.fabrics.push(fabric.clone());
    for d in [&dp1, &dp2] {
        let _ = lifeboat_hostnet::cleanup_host(d);
    }
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("agent-token");
    std::fs::write(&token, "net-vms-agent-token").unwrap();
    let agent_dir = tempfile::tempdir().unwrap();
    g.data_dirs.push(agent_dir.path().to_path_buf());
    let agent_port = free_port();
    g.children.push(common::start_agent_with(
        "host2",
        "qemu",
        agent_port,
        agent_dir.path(),
        &token,
        &[
            "--accel",
            "tcg",
            "--guest-dir",
            guest.to_str().unwrap(),
            "--dataplane",
            &dp2,
            "--fabric",
            &fabric,
        ],
    ));
    let agent_arg = common::agent_arg("host2", agent_port, agent_dir.path());
    let (_serve, api) = start_serve_in(
        &mut g,
        dir.path(),
        &guest,
        &[
            "--dataplane",
            &dp1,
            "--fabric",
            &fabric,
            "--agent",
            &agent_arg,
        ],
    );
    let (private, _) = network(&api, "private");
    let m = create_server(
        &api,
        json!({"name": "mover", "flavorRef": "1", "imageRef": IMAGE,
            "networks": [{"uuid": private, "fixed_ip": "10.0.0.60"}],
            "availability_zone": "nova:host1"}),
    );
    let s = active(&api, &m);
    assert_eq!(s["OS-EXT-SRV-ATTR:host"], "host1", "{s}");
    console_has(&api, &m, "eth0 dhcp ip=10.0.0.60", 120);
    let port = port_of(&api, &m)["id"].as_str().unwrap().to_string();
    let (router, _, fip) = expose(&api, &port);
    let ext = external_namespace(&mut g, &dp1, &router, "172.24.4.250/24");
    assert!(
        ping_within(&ext, &fip, 60),
        "the floating IP {fip} does not answer before the migration"
    );

    ok(
        &api,
        Method::POST,
        &format!("/compute/v2.1/servers/{m}/action"),
        Some(
            json!({"os-migrateLive": {"host": "host2", "block_migration": true,
            "disk_over_commit": false}}),
        ),
    );
    let s = wait_for("the live migration to host2", 300, || {
        let s = ok(
            &api,
            Method::GET,
            &format!("/compute/v2.1/servers/{m}"),
            None,
        )["server"]
            .clone();
        assert_ne!(s["status"], "ERROR", "{s}");
        (s["status"] == "ACTIVE" && s["OS-EXT-SRV-ATTR:host"] == "host2").then_some(s)
    });
    assert_eq!(s["addresses"]["private"][0]["addr"], "10.0.0.60");
    // The tap of the port is on host2 now, and gone from host1.
    let tap = names::tap(&port);
    wait_for("the port's tap leaves host1", 30, || {
        netns::run_command(&names::host_ns(&dp1), "ip", &["link", "show", "dev", &tap])
            .is_err()
            .then_some(())
    });
    assert!(
        netns::run_command(&names::host_ns(&dp2), "ip", &["link", "show", "dev", &tap]).is_ok(),
        "no tap {tap} on host2"
    );
    assert!(
        ping_within(&ext, &fip, 60),
        "the floating IP {fip} does not answer after the live migration"
    );
}

/// Two guests on one network reach each other over their fixed IPs (one by a port made first,
/// one by `{uuid, fixed_ip}`); user_data and key_name reach the guest through the metadata
/// service; a floating IP answers from the external namespace, a security group rule blocks
/// then allows it, and it keeps answering after moving to the other server; a port detached
/// from a deleted server and attached to a new one keeps its MAC and IP.
#[test]
fn guests_fixed_ips_metadata_floating_ip_security_groups_and_port_reuse() {
    let guest = guest_dir();
    let mut g = Cleanup::new();
    let dp = unique("nv");
    g.dataplanes.push(dp.clone());
    let _ = lifeboat_hostnet::cleanup_host(&dp);
    let (_dir, _serve, api) = start_serve(&mut g, &guest, &["--dataplane", &dp]);
    let (private, private_subnet) = network(&api, "private");
    let (public, _) = network(&api, "public");

    // A key pair Nova generates; its public key must reach the guest.
    let kp = ok(
        &api,
        Method::POST,
        "/compute/v2.1/os-keypairs",
        Some(json!({"keypair": {"name": "k1"}})),
    );
    let public_key = kp["keypair"]["public_key"].as_str().unwrap().to_string();

    // A: a port made first, with a fixed IP.
    let pa = ok(
        &api,
        Method::POST,
        "/network/v2.0/ports",
        Some(json!({"port": {"network_id": private, "name": "pa",
            "fixed_ips": [{"ip_address": "10.0.0.50"}]}})),
    );
    let pa_id = pa["port"]["id"].as_str().unwrap().to_string();
    let pa_mac = pa["port"]["mac_address"].as_str().unwrap().to_string();
    // A's user data shows what its key pair became in the guest: root's authorized_keys.
    let show_keys = "#!/bin/sh\necho \"KEYS-IN-GUEST[$(cat /root/.ssh/authorized_keys)]\"\n";
    let a = create_server(
        &api,
        json!({"name": "net-a", "flavorRef": "1", "imageRef": IMAGE,
            "networks": [{"port": pa_id}], "key_name": "k1", "user_data": b64(show_keys)}),
    );
    // B: {uuid, fixed_ip}; its user data pings A.
    let script = "#!/bin/sh\nfor i in $(seq 1 120); do\n  if ping -c 1 -W 1 10.0.0.50 >/dev/null 2>&1; then echo PEER-OK-10.0.0.50; exit 0; fi\ndone\necho PEER-FAILED\n";
    let b = create_server(
        &api,
        json!({"name": "net-b", "flavorRef": "1", "imageRef": IMAGE,
            "networks": [{"uuid": private, "fixed_ip": "10.0.0.51"}],
            "user_data": b64(script)}),
    );
    let sa = active(&api, &a);
    active(&api, &b);
    let addr = &sa["addresses"]["private"][0];
    assert_eq!(addr["addr"], "10.0.0.50", "{sa}");
    assert_eq!(addr["OS-EXT-IPS-MAC:mac_addr"], pa_mac.as_str(), "{sa}");

    // DHCP gave each guest its fixed IP; the metadata service its hostname and key.
    let con_a = console_has(&api, &a, "lifeboat-cloud:", 120);
    assert!(con_a.contains("eth0 dhcp ip=10.0.0.50"), "{con_a}");
    assert!(
        con_a.contains("source=metadata-service hostname=net-a keys=k1"),
        "{con_a}"
    );
    let con_b = console_has(&api, &b, "PEER-", 240);
    assert!(con_b.contains("eth0 dhcp ip=10.0.0.51"), "{con_b}");
    assert!(
        con_b.contains("PEER-OK-10.0.0.50"),
        "B could not ping A:\n{con_b}"
    );
    assert!(!con_b.contains("keys="), "B has no key pair: {con_b}");
    // The key itself, not only its name, is root's authorized key in A.
    let con_a = console_has(&api, &a, "KEYS-IN-GUEST[", 60);
    assert!(
        con_a.contains(&format!("KEYS-IN-GUEST[{}]", public_key.trim())),
        "A's authorized_keys is not the key pair's public key {public_key:?}:\n{con_a}"
    );

    // A router to the public network and a floating IP on A's port.
    let r = ok(
        &api,
        Method::POST,
        "/network/v2.0/routers",
        Some(json!({"router": {"name": "r1", "external_gateway_info": {"network_id": public}}})),
    );
    let router = r["router"]["id"].as_str().unwrap().to_string();
    ok(
        &api,
        Method::PUT,
        &format!("/network/v2.0/routers/{router}/add_router_interface"),
        Some(json!({"subnet_id": private_subnet})),
    );
    let f = ok(
        &api,
        Method::POST,
        "/network/v2.0/floatingips",
        Some(json!({"floatingip": {"floating_network_id": public, "port_id": pa_id}})),
    );
    let fip_id = f["floatingip"]["id"].as_str().unwrap().to_string();
    let fip = f["floatingip"]["floating_ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    let ext = external_namespace(&mut g, &dp, &router, "172.24.4.250/24");

    // The default group admits only its members: an ICMP rule lets the outside in.
    let sg = ok(
        &api,
        Method::GET,
        "/network/v2.0/security-groups?name=default",
        None,
    )["security_groups"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let add_icmp = || {
        ok(
            &api,
            Method::POST,
            "/network/v2.0/security-group-rules",
            Some(json!({"security_group_rule": {"security_group_id": sg,
                "direction": "ingress", "ethertype": "IPv4", "protocol": "icmp"}})),
        )["security_group_rule"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let rule = add_icmp();
    assert!(
        ping_within(&ext, &fip, 60),
        "the floating IP {fip} does not answer with an ICMP rule"
    );
    ok(
        &api,
        Method::DELETE,
        &format!("/network/v2.0/security-group-rules/{rule}"),
        None,
    );
    wait_for("the rule's removal blocks ICMP", 30, || {
        (!ping(&ext, &fip)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !ping(&ext, &fip) && !ping(&ext, &fip),
        "blocked without the rule"
    );
    add_icmp();
    assert!(ping_within(&ext, &fip, 30), "allowed again with the rule");

    // The floating IP moves to B; with A deleted only B can answer.
    let pb_id = port_of(&api, &b)["id"].as_str().unwrap().to_string();
    ok(
        &api,
        Method::PUT,
        &format!("/network/v2.0/floatingips/{fip_id}"),
        Some(json!({"floatingip": {"port_id": pb_id}})),
    );
    ok(
        &api,
        Method::DELETE,
        &format!("/compute/v2.1/servers/{a}"),
        None,
    );
    wait_for("server A gone", 120, || {
        let (st, _) = api.req(Method::GET, &format!("/compute/v2.1/servers/{a}"), None);
        (st == 404).then_some(())
    });
    assert!(
        ping_within(&ext, &fip, 30),
        "the floating IP does not answer after moving to B"
    );

    // A's port outlived it (the user made it) and keeps MAC and IP on a new server.
    let p = ok(
        &api,
        Method::GET,
        &format!("/network/v2.0/ports/{pa_id}"),
        None,
    );
    assert_eq!(p["port"]["device_id"], "", "{p}");
    assert_eq!(p["port"]["mac_address"], pa_mac.as_str());
    assert_eq!(p["port"]["fixed_ips"][0]["ip_address"], "10.0.0.50");
    let c = create_server(
        &api,
        json!({"name": "net-c", "flavorRef": "1", "imageRef": IMAGE,
            "networks": [{"port": pa_id}]}),
    );
    let sc = active(&api, &c);
    assert_eq!(sc["addresses"]["private"][0]["addr"], "10.0.0.50", "{sc}");
    assert_eq!(
        sc["addresses"]["private"][0]["OS-EXT-IPS-MAC:mac_addr"],
        pa_mac.as_str()
    );
    let con_c = console_has(&api, &c, "lifeboat-cloud:", 120);
    assert!(con_c.contains("eth0 dhcp ip=10.0.0.50"), "{con_c}");
    // The floating IP back on the port: C answers behind it.
    ok(
        &api,
        Method::PUT,
        &format!("/network/v2.0/floatingips/{fip_id}"),
        Some(json!({"floatingip": {"port_id": pa_id}})),
    );
    assert!(
        ping_within(&ext, &fip, 30),
        "the floating IP does not answer from the new server on the old port"
    );
}

/// The service (DHCP/metadata) namespace of the data plane `dp` that has an address in
/// `prefix` (e.g. "10.1.0."): the far end of the network's service veth.
fn service_namespace_for(dp: &str, prefix: &str) -> String {
    wait_for(&format!("a service namespace on {prefix}*"), 60, || {
        let want = format!("lbh-{dp}-n");
        for e in std::fs::read_dir("/run/netns").ok()?.flatten() {
            let ns = e.file_name().to_string_lossy().into_owned();
            if !ns.starts_with(&want) {
                continue;
            }
            let Ok(out) = netns::run_command(&ns, "ip", &["-4", "-o", "addr", "show"]) else {
                continue;
            };
            if out.contains(&format!("inet {prefix}")) {
                return Some(ns);
            }
        }
        None
    })
}

/// Nova's os-interface on a running guest: an interface attached on a second network is
/// hot-plugged (PCI, a tap on that network's bridge), the guest gets its address by DHCP and
/// answers pings over it; the port shows the server as its device; detach unplugs it (the
/// guest sees the NIC go, the tap goes, the port Nova made is deleted). A port made first keeps
/// its MAC and fixed IP through attach and detach and is only unbound. Both show as instance
/// actions.
#[test]
fn an_interface_attached_to_a_running_guest_gets_its_address_and_detaches() {
    let guest = guest_dir();
    let mut g = Cleanup::new();
    let dp = unique("ia");
    g.dataplanes.push(dp.clone());
    let _ = lifeboat_hostnet::cleanup_host(&dp);
    let (_dir, _serve, api) = start_serve(&mut g, &guest, &["--dataplane", &dp]);
    // A second network with a subnet.
    let n = ok(
        &api,
        Method::POST,
        "/network/v2.0/networks",
        Some(json!({"network": {"name": "net2"}})),
    );
    let net2 = n["network"]["id"].as_str().unwrap().to_string();
    ok(
        &api,
        Method::POST,
        "/network/v2.0/subnets",
        Some(json!({"subnet": {"network_id": net2, "ip_version": 4,
            "cidr": "10.1.0.0/24", "name": "sub2"}})),
    );
    // ICMP from anywhere, so the network's service namespace may ping the guest.
    let sg = ok(
        &api,
        Method::GET,
        "/network/v2.0/security-groups?name=default",
        None,
    )["security_groups"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        &api,
        Method::POST,
        "/network/v2.0/security-group-rules",
        Some(json!({"security_group_rule": {"security_group_id": sg,
            "direction": "ingress", "ethertype": "IPv4", "protocol": "icmp"}})),
    );
    // Two networks are usable now: the server names one.
    let (private, _) = network(&api, "private");
    let a = create_server(
        &api,
        json!({"name": "hotplug", "flavorRef": "1", "imageRef": IMAGE,
            "networks": [{"uuid": private}]}),
    );
    active(&api, &a);
    console_has(&api, &a, "LIFEBOAT-READY", 120);
    let ifaces = format!("/compute/v2.1/servers/{a}/os-interface");

    // Attach on net2: 200 with Nova's interfaceAttachment.
    let att = ok(
        &api,
        Method::POST,
        &ifaces,
        Some(json!({"interfaceAttachment": {"net_id": net2}})),
    );
    let att = &att["interfaceAttachment"];
    assert_eq!(att["net_id"], net2.as_str(), "{att}");
    let port = att["port_id"].as_str().unwrap().to_string();
    let ip = att["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip.starts_with("10.1.0."), "{att}");
    let con = console_has(&api, &a, &format!("lifeboat-net: eth1 dhcp ip={ip} "), 120);
    assert!(con.contains("eth0 dhcp ip=10.0."), "{con}");
    let svc = service_namespace_for(&dp, "10.1.0.");
    assert!(
        ping_within(&svc, &ip, 60),
        "the attached interface {ip} does not answer"
    );
    // The tap is on the host's data plane, the port's device is the server.
    let tap = names::tap(&port);
    assert!(
        netns::run_command(&names::host_ns(&dp), "ip", &["link", "show", "dev", &tap]).is_ok(),
        "no tap {tap}"
    );
    let p = ok(
        &api,
        Method::GET,
        &format!("/network/v2.0/ports/{port}"),
        None,
    );
    assert_eq!(p["port"]["device_id"], a.as_str(), "{p}");
    assert_eq!(p["port"]["device_owner"], "compute:nova", "{p}");
    assert_eq!(p["port"]["binding:host_id"], "host1", "{p}");
    let list = ok(&api, Method::GET, &ifaces, None);
    assert_eq!(
        list["interfaceAttachments"].as_array().unwrap().len(),
        2,
        "{list}"
    );
    let s = ok(
        &api,
        Method::GET,
        &format!("/compute/v2.1/servers/{a}"),
        None,
    );
    assert_eq!(
        s["server"]["addresses"]["net2"][0]["addr"],
        ip.as_str(),
        "{s}"
    );

    // Detach: 202; the guest loses eth1, the tap goes, the port Nova made is deleted.
    let (st, v) = api.req(Method::DELETE, &format!("{ifaces}/{port}"), None);
    assert_eq!(st, 202, "{v}");
    console_has(&api, &a, "lifeboat-net: eth1 removed", 60);
    assert!(!ping(&svc, &ip), "{ip} still answers after the detach");
    wait_for("the detached port's tap goes", 30, || {
        netns::run_command(&names::host_ns(&dp), "ip", &["link", "show", "dev", &tap])
            .is_err()
            .then_some(())
    });
    let (st, _) = api.req(Method::GET, &format!("/network/v2.0/ports/{port}"), None);
    assert_eq!(st, 404, "the port the attach made is deleted");
    let (st, v) = api.req(Method::GET, &format!("{ifaces}/{port}"), None);
    assert_eq!(st, 404, "{v}");

    // A port made first: attached with its MAC and fixed IP, detached and only unbound.
    let pb = ok(
        &api,
        Method::POST,
        "/network/v2.0/ports",
        Some(json!({"port": {"network_id": net2, "fixed_ips": [{"ip_address": "10.1.0.77"}]}})),
    );
    let pb_id = pb["port"]["id"].as_str().unwrap().to_string();
    let pb_mac = pb["port"]["mac_address"].as_str().unwrap().to_string();
    let att = ok(
        &api,
        Method::POST,
        &ifaces,
        Some(json!({"interfaceAttachment": {"port_id": pb_id}})),
    );
    assert_eq!(att["interfaceAttachment"]["mac_addr"], pb_mac.as_str());
    console_has(&api, &a, "lifeboat-net: eth1 dhcp ip=10.1.0.77 ", 120);
    assert!(
        ping_within(&svc, "10.1.0.77", 60),
        "the brought port does not answer"
    );
    // The same port cannot be attached twice.
    let (st, v) = api.req(
        Method::POST,
        &ifaces,
        Some(json!({"interfaceAttachment": {"port_id": pb_id}})),
    );
    assert_eq!(st, 409, "{v}");
    assert_eq!(
        v["conflictingRequest"]["message"],
        format!("Port {pb_id} is still in use.")
    );
    let (st, v) = api.req(Method::DELETE, &format!("{ifaces}/{pb_id}"), None);
    assert_eq!(st, 202, "{v}");
    let p = ok(
        &api,
        Method::GET,
        &format!("/network/v2.0/ports/{pb_id}"),
        None,
    );
    assert_eq!(p["port"]["device_id"], "", "{p}");
    assert_eq!(p["port"]["mac_address"], pb_mac.as_str());
    assert_eq!(p["port"]["fixed_ips"][0]["ip_address"], "10.1.0.77");

    // Nova's instance actions.
    let acts = ok(
        &api,
        Method::GET,
        &format!("/compute/v2.1/servers/{a}/os-instance-actions"),
        None,
    );
    let names: Vec<&str> = acts["instanceActions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["action"].as_str())
        .collect();
    assert_eq!(
        names.iter().filter(|n| **n == "attach_interface").count(),
        2,
        "{acts}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "detach_interface").count(),
        2,
        "{acts}"
    );
}

/// Nova's `config_drive: true` on a host without a data plane (so no metadata service can
/// answer): the VM gets an ISO 9660 `config-2` drive and the guest agent's cloud-init takes
/// the hostname, the key pair and the user data from it.
#[test]
fn a_config_drive_carries_hostname_keys_and_user_data_without_a_metadata_service() {
    let guest = guest_dir();
    let mut g = Cleanup::new();
    let (dir, _serve, api) = start_serve(&mut g, &guest, &[]);
    ok(
        &api,
        Method::POST,
        "/compute/v2.1/os-keypairs",
        Some(json!({"keypair": {"name": "kd"}})),
    );
    let script = "#!/bin/sh\necho FROM-CONFIG-DRIVE-USER-DATA\n";
    let id = create_server(
        &api,
        json!({"name": "cd-guest", "flavorRef": "1", "imageRef": IMAGE,
            "config_drive": true, "key_name": "kd", "user_data": b64(script)}),
    );
    let s = active(&api, &id);
    assert_eq!(s["config_drive"], "True", "{s}");
    let con = console_has(&api, &id, "lifeboat-cloud:", 120);
    assert!(con.contains("config drive /dev/vd"), "{con}");
    assert!(
        con.contains("source=config-drive hostname=cd-guest keys=kd"),
        "{con}"
    );
    console_has(&api, &id, "FROM-CONFIG-DRIVE-USER-DATA", 60);
    // The drive is an ISO labelled config-2 with the OpenStack documents.
    let iso = wait_for("the config drive ISO", 10, || {
        let vms = dir.path().join("hosts").join("host1").join("vms");
        std::fs::read_dir(&vms)
            .ok()?
            .flatten()
            .map(|e| e.path().join("config.iso"))
            .find(|p| p.is_file())
    });
    let bytes = std::fs::read(&iso).unwrap();
    assert_eq!(&bytes[0x8001..0x8006], b"CD001", "not ISO 9660");
    assert_eq!(
        String::from_utf8_lossy(&bytes[0x8028..0x8028 + 8]),
        "config-2"
    );
}

/// The NICs follow the order of the requested networks (eth0 on the first one asked for), and
/// a fixed IP added with Nova's addFixedIp is usable by the guest: it reads the address from
/// the metadata service's `network_data.json`, configures it, and the data plane lets it
/// through; an address the port does not have stays dropped, and the added one is dropped
/// again once removeFixedIp takes it off the port.
#[test]
fn nics_follow_the_request_and_an_added_fixed_ip_is_usable() {
    let guest = guest_dir();
    let mut g = Cleanup::new();
    let dp = unique("fx");
    g.dataplanes.push(dp.clone());
    let _ = lifeboat_hostnet::cleanup_host(&dp);
    let (_dir, _serve, api) = start_serve(&mut g, &guest, &["--dataplane", &dp]);
    let n = ok(
        &api,
        Method::POST,
        "/network/v2.0/networks",
        Some(json!({"network": {"name": "net2"}})),
    );
    let net2 = n["network"]["id"].as_str().unwrap().to_string();
    ok(
        &api,
        Method::POST,
        "/network/v2.0/subnets",
        Some(json!({"subnet": {"network_id": net2, "ip_version": 4,
            "cidr": "10.1.0.0/24", "name": "sub2"}})),
    );
    let sg = ok(
        &api,
        Method::GET,
        "/network/v2.0/security-groups?name=default",
        None,
    )["security_groups"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        &api,
        Method::POST,
        "/network/v2.0/security-group-rules",
        Some(json!({"security_group_rule": {"security_group_id": sg,
            "direction": "ingress", "ethertype": "IPv4", "protocol": "icmp"}})),
    );
    let (private, _) = network(&api, "private");
    // The guest configures a second private address once the metadata service lists one,
    // and an address no port has (10.0.250.250).
    let script = r#"#!/bin/sh
md=http://169.254.169.254/openstack/latest/network_data.json
for i in $(seq 1 300); do
  ips=$(wget -q -O - $md 2>/dev/null | grep -o '"ip_address":"10\.0\.[0-9.]*"' | grep -o '10\.0\.[0-9.]*')
  set -- $ips
  if [ $# -ge 2 ]; then
    ip addr add $2/16 dev eth1 && ip addr add 10.0.250.250/16 dev eth1 && echo "ADDED-IP-$2"
    exit 0
  fi
  sleep 1
done
echo ADD-IP-TIMEOUT
"#;
    let a = create_server(
        &api,
        json!({"name": "multi", "flavorRef": "1", "imageRef": IMAGE,
            "networks": [{"uuid": net2}, {"uuid": private}], "user_data": b64(script)}),
    );
    active(&api, &a);
    // eth0 is on net2, the first network asked for.
    let con = console_has(&api, &a, "lifeboat-net: eth1 dhcp ip=10.0.", 180);
    assert!(con.contains("eth0 dhcp ip=10.1.0."), "{con}");

    let ports = ok(
        &api,
        Method::GET,
        &format!("/network/v2.0/ports?device_id={a}&network_id={private}"),
        None,
    );
    let port = ports["ports"][0]["id"].as_str().unwrap().to_string();
    let action = format!("/compute/v2.1/servers/{a}/action");
    let (st, v) = api.req(
        Method::POST,
        &action,
        Some(json!({"addFixedIp": {"networkId": private}})),
    );
    assert_eq!(st, 202, "{v}");
    let p = ok(
        &api,
        Method::GET,
        &format!("/network/v2.0/ports/{port}"),
        None,
    );
    let ips = p["port"]["fixed_ips"].as_array().unwrap().clone();
    assert_eq!(ips.len(), 2, "the same port got the address: {p}");
    let added = ips[1]["ip_address"].as_str().unwrap().to_string();
    console_has(&api, &a, &format!("ADDED-IP-{added}"), 240);
    let svc = service_namespace_for(&dp, "10.0.");
    assert!(
        ping_within(&svc, &added, 60),
        "the added address {added} does not answer"
    );
    assert!(
        !ping(&svc, "10.0.250.250"),
        "an address the port does not have answers"
    );

    let (st, v) = api.req(
        Method::POST,
        &action,
        Some(json!({"removeFixedIp": {"address": added}})),
    );
    assert_eq!(st, 202, "{v}");
    wait_for("the removed address is dropped", 30, || {
        (!ping(&svc, &added)).then_some(())
    });
    let p = ok(
        &api,
        Method::GET,
        &format!("/network/v2.0/ports/{port}"),
        None,
    );
    assert_eq!(p["port"]["fixed_ips"].as_array().unwrap().len(), 1, "{p}");
}

/// An os-interface attach interrupted by SIGKILL of serve right after the NIC was hot-plugged
/// into the running guest is undone at the next start, on a real VM: the guest sees eth1 go
/// again (QMP unplug), the tap leaves the host's data plane, the port the attach made is
/// deleted, and the server lists only its first interface.
#[test]
fn an_attach_killed_after_the_hot_plug_is_undone_in_the_running_guest() {
    let guest = guest_dir();
    let mut g = Cleanup::new();
    let dp = unique("ik");
    g.dataplanes.push(dp.clone());
    let _ = lifeboat_hostnet::cleanup_host(&dp);
    let dir = tempfile::tempdir().unwrap();
    g.data_dirs.push(dir.path().to_path_buf());
    let port = free_port();
    let hang = "attach_interface:plugged:after";
    let args = ["--guest-dir", guest.to_str().unwrap(), "--dataplane", &dp];
    let envs = [
        ("LIFEBOAT_ACCEL", "tcg"),
        ("RUST_LOG", "warn"),
        ("LIFEBOAT_ENABLE_TEST_HOOKS", "1"),
        ("LIFEBOAT_TEST_HANG_AT", hang),
    ];
    let mut serve = Serve::start_full(dir.path(), port, "qemu", &envs, &args);
    serve.wait_ready_line();
    let login = |s: &Serve| {
        let c = s.credentials();
        Api::keystone(
            &s.url,
            c["username"].as_str().unwrap(),
            c["password"].as_str().unwrap(),
        )
    };
    let api = login(&serve);
    let net2 = ok(
        &api,
        Method::POST,
        "/network/v2.0/networks",
        Some(json!({"network": {"name": "net2"}})),
    )["network"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        &api,
        Method::POST,
        "/network/v2.0/subnets",
        Some(json!({"subnet": {"network_id": net2, "ip_version": 4,
            "cidr": "10.1.0.0/24", "name": "sub2"}})),
    );
    let (private, _) = network(&api, "private");
    let a = create_server(
        &api,
        json!({"name": "killed-attach", "flavorRef": "1", "imageRef": IMAGE,
            "networks": [{"uuid": private}]}),
    );
    active(&api, &a);
    console_has(&api, &a, "LIFEBOAT-READY", 120);
    let ifaces = format!("/compute/v2.1/servers/{a}/os-interface");

    // The attach hangs after the hot-plug; serve is killed there.
    let (url, token, path) = (api.url.clone(), api.token.clone(), ifaces.clone());
    let body = json!({"interfaceAttachment": {"net_id": net2}});
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            // The connection drops with the server: no answer is expected.
            let _ = reqwest::Client::new()
                .post(format!("{url}{path}"))
                .header("X-Auth-Token", token)
                .json(&body)
                .send()
                .await;
        })
    });
    serve.wait_stderr(&format!("LIFEBOAT-HANG {hang}"), Duration::from_secs(120));
    let con = console_has(&api, &a, "lifeboat-net: eth1 ", 120);
    let made = ok(
        &api,
        Method::GET,
        &format!("/network/v2.0/ports?network_id={net2}&device_owner=compute:nova"),
        None,
    )["ports"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tap = names::tap(&made);
    assert!(
        netns::run_command(&names::host_ns(&dp), "ip", &["link", "show", "dev", &tap]).is_ok(),
        "no tap {tap} at the kill:\n{con}"
    );
    serve.kill9();

    // Restarted: the attach is undone in the running guest.
    let envs = [("LIFEBOAT_ACCEL", "tcg"), ("RUST_LOG", "warn")];
    let mut serve = Serve::start_full(dir.path(), port, "qemu", &envs, &args);
    serve.wait_ready_line();
    let api = login(&serve);
    console_has(&api, &a, "lifeboat-net: eth1 removed", 120);
    wait_for("the attach's tap leaves the host", 60, || {
        netns::run_command(&names::host_ns(&dp), "ip", &["link", "show", "dev", &tap])
            .is_err()
            .then_some(())
    });
    let (st, _) = api.req(Method::GET, &format!("/network/v2.0/ports/{made}"), None);
    assert_eq!(st, 404, "the port the attach made is deleted");
    let list = ok(&api, Method::GET, &ifaces, None);
    assert_eq!(
        list["interfaceAttachments"].as_array().unwrap().len(),
        1,
        "{list}"
    );
    let s = active(&api, &a);
    assert!(s["addresses"].get("net2").is_none(), "{s}");
}
