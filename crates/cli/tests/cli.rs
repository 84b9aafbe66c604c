//! The CLI and the native API against a live `lifeboat serve`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{free_port, Api, Serve, BIN};
use serde_json::{json, Value};

struct Cli<'a> {
    serve: &'a Serve,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .env("LIFEBOAT_URL", &self.serve.url)
            .env(
                "LIFEBOAT_CREDENTIALS",
                self.serve.data_dir.join("admin-credentials.json"),
            )
            .env_remove("LIFEBOAT_USER")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }
    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let (code, out, err) = self.run(&a);
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }
}

#[test]
fn cli_drives_a_live_server() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), free_port(), &[], &[]);
    let meta = std::fs::metadata(dir.path().join("admin-credentials.json")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let cli = Cli { serve: &serve };

    let created = cli.json(&["server", "create", "web", "--wait"]);
    assert_eq!(created[0]["status"], "ACTIVE", "{created}");
    assert!(created[0]["admin_pass"].as_str().unwrap().len() >= 12);
    let list = cli.json(&["server", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (code, table, _) = cli.run(&["server", "list"]);
    assert_eq!(code, 0);
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
    assert!(table.contains("web") && table.contains("ACTIVE"), "{table}");

    let s = cli.json(&["server", "reboot", "web", "--hard", "--wait"]);
    assert_eq!(s["status"], "ACTIVE");
    let s = cli.json(&["server", "stop", "web", "--wait"]);
    assert_eq!(s["status"], "SHUTOFF");
    let (code, _, err) = cli.run(&["server", "stop", "web"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Cannot 'stop' instance") && err.contains("while it is in vm_state stopped"),
        "{err}"
    );
    let s = cli.json(&["server", "start", "web", "--wait"]);
    assert_eq!(s["status"], "ACTIVE");
    let s = cli.json(&["server", "resize", "web", "--flavor", "m1.tiny", "--wait"]);
    assert_eq!(s["status"], "VERIFY_RESIZE");
    let s = cli.json(&["server", "confirm-resize", "web", "--wait"]);
    assert_eq!(s["status"], "ACTIVE");
    let s = cli.json(&["server", "lock", "web", "--reason", "audit"]);
    assert_eq!(s["result"], "done");
    let shown = cli.json(&["server", "show", "web"]);
    assert_eq!(shown["locked_reason"], "audit");
    cli.json(&["server", "unlock", "web"]);
    let (code, out, _) = cli.run(&["server", "console", "web", "--lines", "1"]);
    assert_eq!((code, out.as_str()), (0, "LIFEBOAT-READY\n"));

    let events = cli.json(&["events", "--server", "web"]);
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"] == "resize completed"),
        "{events}"
    );
    let wfs = cli.json(&["workflow", "list", "--server", "web"]);
    let first = wfs.as_array().unwrap().last().unwrap();
    assert_eq!(first["kind"], "create");
    let shown = cli.json(&["workflow", "show", first["id"].as_str().unwrap()]);
    assert_eq!(shown["steps"].as_array().unwrap().len(), 6);
    assert_eq!(cli.json(&["flavor", "list"]).as_array().unwrap().len(), 6);
    assert!(!cli.json(&["image", "list"]).as_array().unwrap().is_empty());
    let hosts = cli.json(&["host", "list"]);
    assert_eq!(hosts[0]["name"], "host1");
    // JSON keeps raw numbers; the table shows human units.
    assert!(hosts[0]["capacity"]["ram_mb"].is_u64(), "{hosts}");
    let (code, table, _) = cli.run(&["host", "list"]);
    assert_eq!(code, 0);
    let ram_mb = hosts[0]["capacity"]["ram_mb"].as_u64().unwrap().to_string();
    assert!(!table.contains(&ram_mb), "raw MiB in the table: {table}");
    assert!(table.contains("iB"), "no human unit in the table: {table}");

    // clear errors for bad input
    let (code, _, err) = cli.run(&["server", "show", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no server named or with id nope"), "{err}");
    let (code, _, err) = cli.run(&["server", "create", "x", "--flavor", "bogus"]);
    assert_eq!(code, 1);
    assert!(err.contains("Flavor bogus could not be found."), "{err}");
    let (code, _, err) = cli.run(&["server", "create", "x", "--meta", "novalue"]);
    assert_eq!(code, 1);
    assert!(err.contains("expected KEY=VALUE"), "{err}");
    let out = Command::new(BIN)
        .args(["server", "list"])
        .env("LIFEBOAT_URL", "http://127.0.0.1:1")
        .env(
            "LIFEBOAT_CREDENTIALS",
            dir.path().join("admin-credentials.json"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot reach Lifeboat at http://127.0.0.1:1"));
    let out = Command::new(BIN)
        .args([
            "server",
            "list",
            "--user",
            "admin",
            "--password",
            "wrong-password",
        ])
        .env("LIFEBOAT_URL", &serve.url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("login failed (401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // users and projects
    let (code, _, err) = {
        let out = Command::new(BIN)
            .args(["project", "create", "team"])
            .env("LIFEBOAT_URL", &serve.url)
            .env(
                "LIFEBOAT_CREDENTIALS",
                dir.path().join("admin-credentials.json"),
            )
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            (),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert_eq!(code, 0, "{err}");
    let out = Command::new(BIN)
        .args([
            "user",
            "create",
            "alice",
            "--in-project",
            "team",
            "--role",
            "reader",
        ])
        .env("LIFEBOAT_URL", &serve.url)
        .env(
            "LIFEBOAT_CREDENTIALS",
            dir.path().join("admin-credentials.json"),
        )
        .env("LIFEBOAT_NEW_PASSWORD", "alice-password")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args([
            "server",
            "create",
            "nope",
            "--user",
            "alice",
            "--password",
            "alice-password",
            "--project",
            "team",
        ])
        .env("LIFEBOAT_URL", &serve.url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));

    let (code, yaml, _) = cli.run(&["openstack-config"]);
    assert_eq!(code, 0);
    assert!(
        yaml.contains(&format!("auth_url: \"{}/identity/v3\"", serve.url)),
        "{yaml}"
    );

    let s = cli.json(&["server", "delete", "web", "--wait"]);
    assert_eq!(s["status"], "DELETED");
}

#[test]
fn native_api_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), free_port(), &[], &[]);
    let c = serve.credentials();
    let api = Api::login(
        &serve.url,
        c["username"].as_str().unwrap(),
        c["password"].as_str().unwrap(),
    );

    let doc = api.get("/api/v1/openapi.json");
    assert_eq!(doc["openapi"].as_str().unwrap().chars().next(), Some('3'));
    for p in [
        "/api/v1/servers",
        "/api/v1/servers/{id}/actions",
        "/api/v1/events",
        "/api/v1/workflows/{id}",
    ] {
        assert!(doc["paths"].get(p).is_some(), "openapi lacks {p}");
    }
    assert!(doc["components"]["schemas"].get("ServerAction").is_some());

    // unauthenticated
    let anon = reqwest::blocking_free_get(&format!("{}/api/v1/servers", serve.url));
    assert_eq!(anon.0, 401);
    assert_eq!(anon.1["error"]["code"], "unauthorized");

    let (st, v) = api.post(
        "/api/v1/servers",
        json!({"name": "a", "flavor": "m1.nano", "max_count": 3, "min_count": 3}),
    );
    assert_eq!(st, 202, "{v}");
    let ids: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["server"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    for id in &ids {
        assert_eq!(api.settle(id, Duration::from_secs(20))["status"], "ACTIVE");
    }
    let names: Vec<String> = api
        .get("/api/v1/servers")
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a-3", "a-2", "a-1"]);
    let page = api.get("/api/v1/servers?limit=2");
    assert_eq!(page.as_array().unwrap().len(), 2);
    let last = page[1]["id"].as_str().unwrap();
    let page2 = api.get(&format!("/api/v1/servers?limit=2&marker={last}"));
    assert_eq!(page2.as_array().unwrap().len(), 1);

    // errors: stable codes and HTTP statuses
    let (st, v) = api.post(
        &format!("/api/v1/servers/{}/actions", ids[0]),
        json!({"action": "unpause"}),
    );
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (409, Some("invalid_state")),
        "{v}"
    );
    assert_eq!(
        v["error"]["message"],
        format!(
            "Cannot 'unpause' instance {} while it is in vm_state active",
            ids[0]
        )
    );
    let (st, v) = api.post(
        &format!("/api/v1/servers/{}/actions", ids[0]),
        json!({"action": "fly"}),
    );
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{v}"
    );
    let (st, v) = api.req(
        reqwest::Method::GET,
        "/api/v1/servers/00000000-0000-0000-0000-000000000000",
        None,
    );
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("not_found")));
    let (st, v) = api.post("/api/v1/servers", json!({"name": "", "flavor": "m1.nano"}));
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{v}"
    );
    let (st, _) = api.post("/api/v1/servers", json!("not an object"));
    assert!((400..500).contains(&st));
    let (st, v) = api.post(
        &format!("/api/v1/servers/{}/actions", ids[0]),
        json!({"action": "lock"}),
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = api.req(
        reqwest::Method::PATCH,
        &format!("/api/v1/servers/{}", ids[0]),
        Some(json!({"name": "renamed"})),
    );
    assert_eq!(
        (st, v["name"].as_str()),
        (200, Some("renamed")),
        "admins bypass the lock"
    );
    let (st, v) = api.req(
        reqwest::Method::DELETE,
        &format!("/api/v1/servers/{}", ids[1]),
        None,
    );
    assert_eq!(st, 202, "{v}");
    assert_eq!(
        api.settle(&ids[1], Duration::from_secs(20))["status"],
        "DELETED"
    );
    // unknown paths: each front's own 404 format
    let (st, nf) = api.req(reqwest::Method::GET, "/api/v1/nope", None);
    assert_eq!(
        (st, nf["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{nf}"
    );
    let (st, nf) = api.req(reqwest::Method::GET, "/compute/v2.1/nope", None);
    assert_eq!(
        (st, nf["itemNotFound"]["code"].as_i64()),
        (404, Some(404)),
        "{nf}"
    );

    // serial console through the websocket proxy (the fake driver's getty)
    let (st, con) = api.post(
        &format!("/api/v1/servers/{}/actions", ids[2]),
        json!({"action": "remote_console", "protocol": "serial", "console_type": "serial"}),
    );
    assert_eq!(st, 200, "{con}");
    assert!(common::console_says(
        con["url"].as_str().unwrap(),
        "a-3 login:"
    ));
    let bad = con["url"].as_str().unwrap().replace("token=", "token=x");
    assert!(
        std::panic::catch_unwind(|| common::console_says(&bad, "login")).is_err(),
        "a wrong token is refused"
    );
    let evs = api.get(&format!(
        "/api/v1/events?workflow_id={}",
        v["workflow_id"].as_str().unwrap()
    ));
    assert!(evs
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["message"] == "delete completed"));
}

mod reqwest {
    pub use ::reqwest::*;
    /// GET without a token (blocking).
    pub fn blocking_free_get(url: &str) -> (u16, serde_json::Value) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = ::reqwest::get(url).await.unwrap();
            (r.status().as_u16(), r.json().await.unwrap())
        })
    }
}

#[test]
fn serve_on_postgres_keeps_state_across_restarts() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(lifeboat_store::testing::fresh_pg_database());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let serve = Serve::start(dir.path(), port, &[], &["--database", &db]);
    let c = serve.credentials();
    let (u, p) = (
        c["username"].as_str().unwrap().to_string(),
        c["password"].as_str().unwrap().to_string(),
    );
    let api = Api::login(&serve.url, &u, &p);
    let (st, v) = api.post(
        "/api/v1/servers",
        json!({"name": "pg", "flavor": "m1.nano"}),
    );
    assert_eq!(st, 202, "{v}");
    let id = v[0]["server"]["id"].as_str().unwrap().to_string();
    assert_eq!(api.settle(&id, Duration::from_secs(20))["status"], "ACTIVE");
    assert!(
        !dir.path().join("lifeboat.db").exists(),
        "no SQLite file when using PostgreSQL"
    );
    drop(api);
    serve.kill9();
    let serve = Serve::start(dir.path(), port, &[], &["--database", &db]);
    let api = Api::login(&serve.url, &u, &p);
    let s = api.get(&format!("/api/v1/servers/{id}"));
    assert_eq!(s["status"], "ACTIVE");
    assert!(
        serve.stderr.lock().unwrap().contains("***@"),
        "database password redacted in logs"
    );
}

/// `lifeboat network|subnet|port|floating-ip|security-group`: an endpoint
/// (port with its MAC, fixed IP and floating IP) made with the CLI is given
/// to a server, outlives it and goes to the next one unchanged; bad input
/// gets a clear message; another project sees none of it.
#[test]
fn cli_manages_networks_and_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), free_port(), &[], &[]);
    let cli = Cli { serve: &serve };

    let net = cli.json(&["network", "create", "blue", "--description", "app tier"]);
    assert_eq!(net["name"], "blue", "{net}");
    assert_eq!(net["external"], false);
    let sub = cli.json(&[
        "subnet",
        "create",
        "blue-v4",
        "--network",
        "blue",
        "--cidr",
        "10.20.0.0/24",
        "--pool",
        "10.20.0.10-10.20.0.50",
        "--dns",
        "10.20.0.1",
    ]);
    assert_eq!(sub["network_id"], net["id"], "{sub}");
    assert_eq!(sub["gateway_ip"], "10.20.0.1");
    assert_eq!(
        sub["allocation_pools"],
        json!([{"start": "10.20.0.10", "end": "10.20.0.50"}])
    );
    let shown = cli.json(&["network", "show", "blue"]);
    assert_eq!(shown["subnets"], json!([sub["id"]]));

    let port = cli.json(&[
        "port",
        "create",
        "keep",
        "--network",
        "blue",
        "--fixed-ip",
        "subnet=blue-v4,ip=10.20.0.33",
    ]);
    let mac = port["mac_address"].as_str().unwrap().to_string();
    assert_eq!(port["fixed_ips"][0]["ip_address"], "10.20.0.33", "{port}");
    assert_eq!(port["server_id"], Value::Null);
    let (code, table, _) = cli.run(&["port", "list"]);
    assert_eq!(code, 0);
    assert!(
        table.starts_with("ID") && table.contains("10.20.0.33"),
        "{table}"
    );

    let fip = cli.json(&["floating-ip", "create"]);
    let addr = fip["address"].as_str().unwrap().to_string();
    assert_eq!(fip["port_id"], Value::Null, "{fip}");
    let fip = cli.json(&["floating-ip", "associate", &addr, "keep"]);
    assert_eq!(fip["port_id"], port["id"], "{fip}");
    assert_eq!(fip["fixed_ip_address"], "10.20.0.33");

    // the endpoint goes to a server, outlives it and goes to the next one
    for name in ["first", "second"] {
        let s = cli.json(&["server", "create", name, "--port", "keep", "--wait"]);
        assert_eq!(s[0]["status"], "ACTIVE", "{s}");
        let s = cli.json(&["server", "show", name]);
        let att = &s["attachments"][0];
        assert_eq!(att["port_id"], port["id"], "{s}");
        assert_eq!(att["mac_address"], mac.as_str());
        assert_eq!(att["fixed_ip"], "10.20.0.33");
        assert_eq!(att["floating_ips"], json!([addr]), "{s}");
        let p = cli.json(&["port", "show", "keep"]);
        assert_eq!(p["server_id"], s["id"], "{p}");
        assert_eq!(p["status"], "ACTIVE");
        let d = cli.json(&["server", "delete", name, "--wait"]);
        assert_eq!(d["status"], "DELETED");
        let p = cli.json(&["port", "show", "keep"]);
        assert_eq!(
            p["server_id"],
            Value::Null,
            "a pre-made port survives its server: {p}"
        );
        assert_eq!(p["mac_address"], mac.as_str());
        assert_eq!(p["fixed_ips"][0]["ip_address"], "10.20.0.33");
    }
    let fip = cli.json(&["floating-ip", "show", &addr]);
    assert_eq!(
        fip["port_id"], port["id"],
        "the floating IP stays with the port: {fip}"
    );

    // security groups and rules
    let g = cli.json(&[
        "security-group",
        "create",
        "web",
        "--description",
        "http in",
    ]);
    assert_eq!(g["name"], "web", "{g}");
    let r = cli.json(&[
        "security-group",
        "rule-add",
        "web",
        "--protocol",
        "tcp",
        "--port",
        "80:81",
        "--remote-ip",
        "0.0.0.0/0",
    ]);
    assert_eq!(
        (
            &r["direction"],
            &r["protocol"],
            &r["port_range_min"],
            &r["port_range_max"]
        ),
        (&json!("ingress"), &json!("tcp"), &json!(80), &json!(81)),
        "{r}"
    );
    let g = cli.json(&["security-group", "show", "web"]);
    assert!(
        g["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == r["id"]),
        "{g}"
    );
    let p = cli.json(&["port", "set", "keep", "--security-group", "web"]);
    assert_eq!(p["security_groups"], json!([g["id"]]), "{p}");
    let (code, _, err) = cli.run(&["security-group", "delete", "web"]);
    assert_eq!(code, 1);
    assert!(err.contains("in use") && err.contains("409"), "{err}");
    let p = cli.json(&[
        "port",
        "set",
        "keep",
        "--no-security-group",
        "--port-security",
        "false",
    ]);
    assert_eq!(p["security_groups"], json!([]), "{p}");
    cli.json(&["security-group", "rule-delete", r["id"].as_str().unwrap()]);
    cli.json(&["security-group", "delete", "web"]);

    // bad input: a clear message, exit 1, nothing made
    for (args, says) in [
        (
            &["port", "create", "x", "--network", "nosuch"][..],
            "no network with id or name nosuch",
        ),
        (
            &[
                "port",
                "create",
                "x",
                "--network",
                "blue",
                "--fixed-ip",
                "10.20.0.5",
            ][..],
            "subnet=ID_OR_NAME",
        ),
        (
            &["floating-ip", "associate", &addr, "nosuch"][..],
            "no port with id or name nosuch",
        ),
        (
            &[
                "subnet",
                "create",
                "bad",
                "--network",
                "blue",
                "--cidr",
                "10.20.0.0/33",
            ][..],
            "400",
        ),
        (
            &["security-group", "rule-add", "default", "--port", "ssh"][..],
            "--port takes N or MIN:MAX",
        ),
        (&["port", "set", "keep"][..], "nothing to change"),
    ] {
        let (code, _, err) = cli.run(args);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let ports = cli.json(&["port", "list"]);
    assert!(
        !ports.as_array().unwrap().iter().any(|p| p["name"] == "x"),
        "{ports}"
    );

    // another project sees none of it
    let out = Command::new(BIN)
        .args(["project", "create", "other"])
        .env("LIFEBOAT_URL", &serve.url)
        .env(
            "LIFEBOAT_CREDENTIALS",
            dir.path().join("admin-credentials.json"),
        )
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = Command::new(BIN)
        .args([
            "user",
            "create",
            "bob",
            "--in-project",
            "other",
            "--role",
            "member",
        ])
        .env("LIFEBOAT_URL", &serve.url)
        .env(
            "LIFEBOAT_CREDENTIALS",
            dir.path().join("admin-credentials.json"),
        )
        .env("LIFEBOAT_NEW_PASSWORD", "bob-password-1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bob = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .args([
                "--user",
                "bob",
                "--password",
                "bob-password-1",
                "--project",
                "other",
                "-o",
                "json",
            ])
            .env("LIFEBOAT_URL", &serve.url)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = bob(&["network", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("blue"), "{out}");
    let (code, _, err) = bob(&["port", "show", "keep"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("404"), "{err}");
    let (code, _, err) = bob(&["floating-ip", "delete", &addr]);
    assert_eq!(code, Some(1));
    assert!(err.contains("404"), "{err}");

    // clean up in order; a network with a port in use cannot go first
    cli.json(&["floating-ip", "delete", &addr]);
    cli.json(&["port", "delete", "keep"]);
    cli.json(&["subnet", "delete", "blue-v4"]);
    cli.json(&["network", "delete", "blue"]);
    let nets = cli.json(&["network", "list"]);
    assert!(
        !nets.as_array().unwrap().iter().any(|n| n["name"] == "blue"),
        "{nets}"
    );
}

/// `lifeboat router`: a gateway on the external network, an interface on a subnet (the router
/// takes the gateway address), list/show, the gateway cleared and set again without SNAT, the
/// in-use refusal, and deletion; names or ids everywhere, `--output json`.
#[test]
fn cli_manages_routers() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), free_port(), &[], &[]);
    let cli = Cli { serve: &serve };
    cli.json(&["network", "create", "red"]);
    let sub = cli.json(&[
        "subnet",
        "create",
        "red-v4",
        "--network",
        "red",
        "--cidr",
        "10.30.0.0/24",
    ]);
    let public = cli.json(&["network", "show", "public"]);

    let r = cli.json(&["router", "create", "edge", "--external-network", "public"]);
    assert_eq!(r["name"], "edge", "{r}");
    assert_eq!(r["gateway"]["network_id"], public["id"], "{r}");
    assert_eq!(r["gateway"]["enable_snat"], true);
    let gw_ip = r["gateway"]["addresses"][0]["ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(gw_ip.starts_with("172.24.4."), "{r}");
    assert_eq!(r["interfaces"], json!([]));

    let r = cli.json(&["router", "add-interface", "edge", "--subnet", "red-v4"]);
    let ifs = r["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 1, "{r}");
    assert_eq!(ifs[0]["subnet_id"], sub["id"]);
    assert_eq!(ifs[0]["ip_address"], "10.30.0.1");
    let port = cli.json(&["port", "show", ifs[0]["port_id"].as_str().unwrap()]);
    assert_eq!(port["device_owner"], "network:router_interface", "{port}");
    assert_eq!(port["device_id"], r["id"]);
    let (code, table, _) = cli.run(&["router", "list"]);
    assert_eq!(code, 0);
    assert!(
        table.starts_with("ID") && table.contains("edge") && table.contains("GATEWAY NETWORK"),
        "{table}"
    );
    let listed = cli.json(&["router", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(cli.json(&["router", "show", "edge"])["id"], r["id"]);

    // The same subnet twice, a router in use, a missing subnet: exit 1 with the reason.
    for (args, says) in [
        (
            &["router", "add-interface", "edge", "--subnet", "red-v4"][..],
            "already has a port on subnet",
        ),
        (&["router", "delete", "edge"][..], "still has ports"),
        (
            &["router", "add-interface", "edge", "--subnet", "nosuch"][..],
            "no subnet with id or name nosuch",
        ),
        (&["router", "add-interface", "edge"][..], "--subnet"),
        (
            &["router", "show", "nosuch"][..],
            "no router with id or name nosuch",
        ),
    ] {
        let (code, _, err) = cli.run(args);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
    }

    let r = cli.json(&["router", "set-gateway", "edge", "--clear"]);
    assert_eq!(r["gateway"], Value::Null, "{r}");
    let r = cli.json(&["router", "set-gateway", "edge", "public", "--disable-snat"]);
    assert_eq!(r["gateway"]["enable_snat"], false, "{r}");
    let r = cli.json(&["router", "remove-interface", "edge", "--subnet", "red-v4"]);
    assert_eq!(r["interfaces"], json!([]), "{r}");
    let d = cli.json(&["router", "delete", "edge"]);
    assert_eq!(d["deleted"], "router", "{d}");
    assert_eq!(cli.json(&["router", "list"]), json!([]));
    // The gateway port went with the router: the subnet and network can go.
    cli.json(&["subnet", "delete", "red-v4"]);
    cli.json(&["network", "delete", "red"]);
}
