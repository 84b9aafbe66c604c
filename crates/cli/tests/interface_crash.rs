//! Crash safety of Nova's os-interface: a real `lifeboat serve` (fake driver) is SIGKILLed
//! right after each durable side effect of an attach (port bound; NIC plugged) and of a
//! detach (NIC unplugged). After the restart an interrupted attach is undone (the port made
//! for it deleted, a brought port unbound with its MAC, the NIC out of the VM, and no later
//! boot brings it back) and an interrupted detach is finished.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{free_port, Api, Serve};
use reqwest::Method;
use serde_json::{json, Value};

fn fake_nics(dir: &Path, instance: &str) -> Vec<Value> {
    let v = lifeboat_hypervisor::fake::read_state_file(&dir.join("hosts/host1/fake-host1.json"));
    v[instance]["spec"]["nics"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn start(dir: &Path, port: u16, hang: Option<&str>) -> (Serve, Api) {
    let mut env = vec![];
    if let Some(h) = hang {
        env = vec![
            ("LIFEBOAT_ENABLE_TEST_HOOKS", "1"),
            ("LIFEBOAT_TEST_HANG_AT", h),
        ];
    }
    let serve = Serve::start(dir, port, &env, &[]);
    let c = serve.credentials();
    let api = Api::keystone(
        &serve.url,
        c["username"].as_str().unwrap(),
        c["password"].as_str().unwrap(),
    );
    (serve, api)
}

fn ok(api: &Api, m: Method, path: &str, body: Option<Value>) -> Value {
    let (st, v) = api.req(m.clone(), path, body);
    assert!(st < 300, "{m} {path}: {st} {v}");
    v
}

/// Sends `body` to `path` from another thread (the request hangs at the kill point) and
/// waits for the hang; then kills the server.
fn hang_and_kill(serve: Serve, api: &Api, m: Method, path: &str, body: Option<Value>, at: &str) {
    let (url, token, path) = (api.url.clone(), api.token.clone(), path.to_string());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut r = reqwest::Client::new()
                .request(m, format!("{url}{path}"))
                .header("X-Auth-Token", token);
            if let Some(b) = body {
                r = r.json(&b);
            }
            // The connection drops with the server: no answer is expected.
            let _ = r.send().await;
        })
    });
    serve.wait_stderr(&format!("LIFEBOAT-HANG {at}"), Duration::from_secs(30));
    serve.kill9();
}

fn interfaces(api: &Api, server: &str) -> Vec<Value> {
    ok(
        api,
        Method::GET,
        &format!("/compute/v2.1/servers/{server}/os-interface"),
        None,
    )["interfaceAttachments"]
        .as_array()
        .cloned()
        .unwrap()
}

fn wait_status(api: &Api, server: &str, want: &str) -> Value {
    for _ in 0..300 {
        let s = ok(
            api,
            Method::GET,
            &format!("/compute/v2.1/servers/{server}"),
            None,
        )["server"]
            .clone();
        if s["status"] == want && s["OS-EXT-STS:task_state"].is_null() {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("server {server} not {want}");
}

#[test]
fn interface_changes_survive_sigkill_after_each_side_effect() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();

    // Kill 1: after the attach made and bound its port, before the plug.
    let (serve, api) = start(dir.path(), port, Some("attach_interface:bound:after"));
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
        Some(json!({"subnet": {"network_id": net2, "ip_version": 4, "cidr": "10.1.0.0/24"}})),
    );
    let private = ok(
        &api,
        Method::GET,
        "/network/v2.0/networks?name=private",
        None,
    )["networks"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = ok(
        &api,
        Method::POST,
        "/compute/v2.1/servers",
        Some(json!({"server": {"name": "ifc", "flavorRef": "1",
            "imageRef": "5f0c8d7e-4a3b-4c1e-9d2f-0b1a2c3d4e5f",
            "networks": [{"uuid": private}]}})),
    );
    let id = s["server"]["id"].as_str().unwrap().to_string();
    let s = wait_status(&api, &id, "ACTIVE");
    let instance = s["OS-EXT-SRV-ATTR:instance_name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(fake_nics(dir.path(), &instance).len(), 1);
    let ifaces = format!("/compute/v2.1/servers/{id}/os-interface");
    hang_and_kill(
        serve,
        &api,
        Method::POST,
        &ifaces,
        Some(json!({"interfaceAttachment": {"net_id": net2}})),
        "attach_interface:bound:after",
    );

    // Restarted (kill 2 armed: after the plug of a brought port).
    let (serve, api) = start(dir.path(), port, Some("attach_interface:plugged:after"));
    assert_eq!(interfaces(&api, &id).len(), 1, "the attach was undone");
    let on_net2 = ok(
        &api,
        Method::GET,
        &format!("/network/v2.0/ports?network_id={net2}&device_owner=compute:nova"),
        None,
    );
    assert_eq!(on_net2["ports"], json!([]), "the port it made is gone");
    assert_eq!(fake_nics(dir.path(), &instance).len(), 1);
    let brought = ok(
        &api,
        Method::POST,
        "/network/v2.0/ports",
        Some(json!({"port": {"network_id": net2, "name": "keep"}})),
    )["port"]
        .clone();
    let bid = brought["id"].as_str().unwrap().to_string();
    hang_and_kill(
        serve,
        &api,
        Method::POST,
        &ifaces,
        Some(json!({"interfaceAttachment": {"port_id": bid}})),
        "attach_interface:plugged:after",
    );
    assert_eq!(
        fake_nics(dir.path(), &instance).len(),
        2,
        "the NIC was in at the kill"
    );

    // Restarted (kill 3 armed: after a detach's unplug).
    let (serve, api) = start(dir.path(), port, Some("detach_interface:unplugged:after"));
    assert_eq!(interfaces(&api, &id).len(), 1, "the attach was undone");
    assert_eq!(fake_nics(dir.path(), &instance).len(), 1, "the NIC is out");
    let p = ok(
        &api,
        Method::GET,
        &format!("/network/v2.0/ports/{bid}"),
        None,
    )["port"]
        .clone();
    assert_eq!(p["device_id"], "", "the brought port is free: {p}");
    assert_eq!(p["mac_address"], brought["mac_address"]);
    assert_eq!(p["fixed_ips"], brought["fixed_ips"]);
    // Attached for real now, then a detach killed after its unplug.
    let att = ok(
        &api,
        Method::POST,
        &ifaces,
        Some(json!({"interfaceAttachment": {"net_id": net2}})),
    );
    let made = att["interfaceAttachment"]["port_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(interfaces(&api, &id).len(), 2);
    hang_and_kill(
        serve,
        &api,
        Method::DELETE,
        &format!("{ifaces}/{made}"),
        None,
        "detach_interface:unplugged:after",
    );

    // Restarted: the detach was finished.
    let (_serve, api) = start(dir.path(), port, None);
    assert_eq!(interfaces(&api, &id).len(), 1, "the detach was finished");
    let (st, _) = api.req(Method::GET, &format!("/network/v2.0/ports/{made}"), None);
    assert_eq!(st, 404, "the port the attach made is deleted");
    let events = ok(
        &api,
        Method::GET,
        &format!("/api/v1/events?server_id={id}&limit=500"),
        None,
    );
    let said: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.contains("interrupted"))
        .collect();
    assert_eq!(
        said.iter().filter(|m| m.contains("undone")).count(),
        2,
        "{said:?}"
    );
    assert_eq!(
        said.iter().filter(|m| m.contains("finished")).count(),
        1,
        "{said:?}"
    );
    // No later boot brings a NIC back.
    for action in [json!({"os-stop": null}), json!({"os-start": null})] {
        ok(
            &api,
            Method::POST,
            &format!("/compute/v2.1/servers/{id}/action"),
            Some(action.clone()),
        );
        let want = if action.get("os-stop").is_some() {
            "SHUTOFF"
        } else {
            "ACTIVE"
        };
        wait_status(&api, &id, want);
    }
    assert_eq!(fake_nics(dir.path(), &instance).len(), 1);
    assert_eq!(interfaces(&api, &id).len(), 1);
}
