//! Nova server groups on a real `lifeboat serve` with two hosts (the
//! in-process fake `host1` and a fake `lifeboat agent` `host2`), through the
//! Compute API: the policies place servers (create, migrate, unshelve), the
//! groups show their members, the `server_groups` and
//! `server_group_members` quotas answer Nova's 403s, and another project can
//! neither see nor use a group.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, Api, Serve};
use reqwest::Method;
use serde_json::{json, Value};

const MV: (&str, &str) = ("OpenStack-API-Version", "compute 2.71");

struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn call(api: &Api, m: Method, path: &str, body: Option<Value>, mv: &str) -> (u16, Value) {
    api.req_with(
        m,
        &format!("/compute/v2.1{path}"),
        body,
        &[("OpenStack-API-Version", mv)],
    )
}

fn group(api: &Api, name: &str, policy: &str, rules: Value) -> String {
    let (st, v) = call(
        api,
        Method::POST,
        "/os-server-groups",
        Some(json!({"server_group": {"name": name, "policy": policy, "rules": rules}})),
        MV.1,
    );
    assert_eq!(st, 200, "{v}");
    v["server_group"]["id"].as_str().unwrap().to_string()
}

fn boot(api: &Api, name: &str, group: &str) -> (u16, Value) {
    call(
        api,
        Method::POST,
        "/servers",
        Some(
            json!({"server": {"name": name, "flavorRef": "1", "networks": "none"},
                    "os:scheduler_hints": {"group": group}}),
        ),
        MV.1,
    )
}

/// Waits until the server has no task and is not BUILD; returns it.
fn settle(api: &Api, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, v) = call(api, Method::GET, &format!("/servers/{id}"), None, MV.1);
        assert_eq!(st, 200, "{v}");
        let s = v["server"].clone();
        if s["OS-EXT-STS:task_state"].is_null() && s["status"] != "BUILD" {
            return s;
        }
        assert!(Instant::now() < deadline, "{id} did not settle: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn boot_settled(api: &Api, name: &str, group: &str) -> Value {
    let (st, v) = boot(api, name, group);
    assert_eq!(st, 202, "{v}");
    settle(api, v["server"]["id"].as_str().unwrap())
}

fn host(s: &Value) -> &str {
    s["OS-EXT-SRV-ATTR:host"].as_str().unwrap_or("")
}

fn action(api: &Api, id: &str, body: Value) {
    let (st, v) = call(
        api,
        Method::POST,
        &format!("/servers/{id}/action"),
        Some(body),
        MV.1,
    );
    assert_eq!(st, 202, "{v}");
}

#[test]
fn server_groups_place_show_members_enforce_quotas_and_isolate_projects() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("agent-token");
    std::fs::write(&token, "server-groups-test-token").unwrap();
    let agent_port = free_port();
    let agent_dir = tempfile::tempdir().unwrap();
    let _agent = Agent(common::start_agent(
        "host2",
        "fake",
        agent_port,
        agent_dir.path(),
        &token,
    ));
    let agent_arg = common::agent_arg("host2", agent_port, agent_dir.path());
    let serve = Serve::start(
        dir.path(),
        free_port(),
        &[],
        &["--agent", &agent_arg, "--shelved-offload-time", "-1"],
    );
    let c = serve.credentials();
    let (user, pass) = (
        c["username"].as_str().unwrap(),
        c["password"].as_str().unwrap(),
    );
    let native = Api::login(&serve.url, user, pass);
    let api = Api::keystone(&serve.url, user, pass);
    assert_eq!(native.get("/api/v1/hosts").as_array().unwrap().len(), 2);
    let project_id = |name: &str| {
        let p = native.get("/api/v1/projects");
        p.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // this test boots more than the default 10 instances
    let (st, v) = call(
        &api,
        Method::PUT,
        &format!("/os-quota-sets/{}", project_id("admin")),
        Some(json!({"quota_set": {"instances": -1, "cores": -1, "ram": -1}})),
        MV.1,
    );
    assert_eq!(st, 200, "{v}");

    // anti-affinity: two members on two hosts, a third has no host
    let anti = group(&api, "anti", "anti-affinity", json!({}));
    let a1 = boot_settled(&api, "a1", &anti);
    let a2 = boot_settled(&api, "a2", &anti);
    assert_eq!(
        (a1["status"].as_str(), a2["status"].as_str()),
        (Some("ACTIVE"), Some("ACTIVE"))
    );
    assert_ne!(host(&a1), host(&a2), "anti-affinity spreads: {a1} {a2}");
    assert_eq!(a1["server_groups"], json!([anti]), "2.71 shows the group");
    let a3 = boot_settled(&api, "a3", &anti);
    assert_eq!(a3["status"], "ERROR", "{a3}");
    assert!(
        a3["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("No valid host"),
        "{a3}"
    );
    // a cold migration has nowhere to go either: it stays where it is
    let a1_id = a1["id"].as_str().unwrap();
    action(&api, a1_id, json!({"migrate": null}));
    let moved = settle(&api, a1_id);
    assert_eq!(
        (moved["status"].as_str(), host(&moved)),
        (Some("ACTIVE"), host(&a1)),
        "{moved}"
    );

    // members are the group's servers that are not deleted
    let (st, g) = call(
        &api,
        Method::GET,
        &format!("/os-server-groups/{anti}"),
        None,
        MV.1,
    );
    assert_eq!(st, 200, "{g}");
    let mut members: Vec<&str> = g["server_group"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    members.sort();
    let mut want = vec![
        a1_id,
        a2["id"].as_str().unwrap(),
        a3["id"].as_str().unwrap(),
    ];
    want.sort();
    assert_eq!(members, want);
    assert_eq!(g["server_group"]["policy"], "anti-affinity");
    assert_eq!(g["server_group"]["rules"], json!({}));
    let (st, _) = call(
        &api,
        Method::DELETE,
        &format!("/servers/{}", a3["id"].as_str().unwrap()),
        None,
        MV.1,
    );
    assert_eq!(st, 204);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, g) = call(
            &api,
            Method::GET,
            &format!("/os-server-groups/{anti}"),
            None,
            "compute 2.1",
        );
        // before 2.64: a policies list and an empty metadata
        assert_eq!(
            g["server_group"]["policies"],
            json!(["anti-affinity"]),
            "{g}"
        );
        assert_eq!(g["server_group"]["metadata"], json!({}));
        if g["server_group"]["members"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "deleted member still listed: {g}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // max_server_per_host 2 takes two members on one host
    let two = group(
        &api,
        "two",
        "anti-affinity",
        json!({"max_server_per_host": 2}),
    );
    let hosts: Vec<String> = (0..4)
        .map(|i| host(&boot_settled(&api, &format!("t{i}"), &two)).to_string())
        .collect();
    for h in ["host1", "host2"] {
        assert_eq!(hosts.iter().filter(|x| *x == h).count(), 2, "{hosts:?}");
    }

    // affinity: all on the host of the first; unshelve goes back there
    let aff = group(&api, "aff", "affinity", json!({}));
    let f1 = boot_settled(&api, "f1", &aff);
    let f2 = boot_settled(&api, "f2", &aff);
    assert_eq!(host(&f1), host(&f2));
    let f2_id = f2["id"].as_str().unwrap();
    action(&api, f2_id, json!({"shelve": null}));
    settle(&api, f2_id);
    action(&api, f2_id, json!({"shelveOffload": null}));
    let off = settle(&api, f2_id);
    assert_eq!(off["status"], "SHELVED_OFFLOADED", "{off}");
    action(&api, f2_id, json!({"unshelve": null}));
    let back = settle(&api, f2_id);
    assert_eq!(
        (back["status"].as_str(), host(&back)),
        (Some("ACTIVE"), host(&f1))
    );

    // soft-anti-affinity spreads but still places when every host has one
    let soft = group(&api, "soft", "soft-anti-affinity", json!({}));
    let s: Vec<Value> = (0..3)
        .map(|i| boot_settled(&api, &format!("s{i}"), &soft))
        .collect();
    assert_ne!(host(&s[0]), host(&s[1]));
    assert_eq!(s[2]["status"], "ACTIVE");

    // rules only with anti-affinity; bad hints
    let (st, v) = call(
        &api,
        Method::POST,
        "/os-server-groups",
        Some(
            json!({"server_group": {"name": "x", "policy": "affinity", "rules": {"max_server_per_host": 2}}}),
        ),
        MV.1,
    );
    assert_eq!(
        (st, v["badRequest"]["message"].as_str()),
        (400, Some("Only anti-affinity policy supports rules."))
    );
    let (st, v) = boot(&api, "nope", "not-a-uuid");
    assert_eq!(st, 400, "{v}");
    assert_eq!(
        v["badRequest"]["message"],
        "Invalid input for field/attribute group. Value: not-a-uuid. 'not-a-uuid' is not valid under any of the given schemas"
    );
    let missing = "3f1c6a2e-4b3d-4f6e-9a8b-1c2d3e4f5a6b";
    let (st, v) = boot(&api, "nope", missing);
    assert_eq!(st, 400, "{v}");
    assert_eq!(
        v["badRequest"]["message"],
        format!("Instance group {missing} could not be found.")
    );
    let (st, v) = call(
        &api,
        Method::GET,
        &format!("/os-server-groups/{missing}"),
        None,
        MV.1,
    );
    assert_eq!(
        (st, v["itemNotFound"]["message"].as_str()),
        (
            404,
            Some(format!("Instance group {missing} could not be found.").as_str())
        )
    );

    // another project: cannot see, use or delete the group
    let (st, v) = native.post("/api/v1/projects", json!({"name": "other"}));
    assert!(st < 300, "{v}");
    let (st, v) = native.post(
        "/api/v1/users",
        json!({"name": "olga", "password": "olga-password-1", "project": "other", "role": "member"}),
    );
    assert!(st < 300, "{v}");
    let olga = Api::keystone_project(&serve.url, "olga", "olga-password-1", "other");
    let (st, v) = call(
        &olga,
        Method::GET,
        "/os-server-groups?all_projects=1",
        None,
        MV.1,
    );
    assert_eq!((st, v["server_groups"].clone()), (200, json!([])), "{v}");
    let (st, v) = call(
        &olga,
        Method::GET,
        &format!("/os-server-groups/{aff}"),
        None,
        MV.1,
    );
    // Nova: InstanceGroup.get_by_uuid filters by the caller's project
    // unless admin, so another project's group is not found (404, 400 as a
    // hint), not forbidden
    let not_found = format!("Instance group {aff} could not be found.");
    assert_eq!(
        (st, v["itemNotFound"]["message"].as_str()),
        (404, Some(not_found.as_str())),
        "{v}"
    );
    let (st, v) = call(
        &olga,
        Method::DELETE,
        &format!("/os-server-groups/{aff}"),
        None,
        MV.1,
    );
    assert_eq!(
        (st, v["itemNotFound"]["message"].as_str()),
        (404, Some(not_found.as_str())),
        "{v}"
    );
    let (st, v) = boot(&olga, "sneak", &aff);
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["badRequest"]["message"], not_found);
    // an admin may name any project's group in a hint (Nova's admin
    // context sees every group): the server joins olga's group
    let (st, v) = call(
        &olga,
        Method::POST,
        "/os-server-groups",
        Some(json!({"server_group": {"name": "olgas", "policy": "soft-affinity"}})),
        MV.1,
    );
    assert_eq!(st, 200, "{v}");
    let olgas = v["server_group"]["id"].as_str().unwrap().to_string();
    let joined = boot_settled(&api, "admin-in-olgas", &olgas);
    let (st, v) = call(
        &olga,
        Method::GET,
        &format!("/os-server-groups/{olgas}"),
        None,
        MV.1,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["server_group"]["members"], json!([joined["id"]]), "{v}");
    let (st, v) = call(
        &api,
        Method::DELETE,
        &format!("/servers/{}", joined["id"].as_str().unwrap()),
        None,
        MV.1,
    );
    assert_eq!(st, 204, "{v}");
    let (st, v) = call(
        &olga,
        Method::DELETE,
        &format!("/os-server-groups/{olgas}"),
        None,
        MV.1,
    );
    assert_eq!(st, 204, "{v}");
    // the admin sees every project's groups with all_projects
    let (_, v) = call(
        &api,
        Method::GET,
        "/os-server-groups?all_projects=True",
        None,
        MV.1,
    );
    assert_eq!(v["server_groups"].as_array().unwrap().len(), 4, "{v}");
    let (_, v) = call(
        &api,
        Method::GET,
        "/os-server-groups?limit=1&offset=1",
        None,
        MV.1,
    );
    assert_eq!(v["server_groups"].as_array().unwrap().len(), 1, "{v}");

    // quotas: server_groups and server_group_members, Nova's 403 texts
    let (_, lim) = call(&olga, Method::GET, "/limits", None, MV.1);
    assert_eq!(
        lim["limits"]["absolute"]["totalServerGroupsUsed"], 0,
        "{lim}"
    );
    let other_id = project_id("other");
    let (st, v) = call(
        &api,
        Method::PUT,
        &format!("/os-quota-sets/{other_id}"),
        Some(json!({"quota_set": {"server_groups": 1, "server_group_members": 1}})),
        MV.1,
    );
    assert_eq!(st, 200, "{v}");
    let mine = group(&olga, "mine", "soft-affinity", json!({}));
    let (st, v) = call(
        &olga,
        Method::POST,
        "/os-server-groups",
        Some(json!({"server_group": {"name": "more", "policy": "affinity"}})),
        MV.1,
    );
    assert_eq!(st, 403, "{v}");
    assert_eq!(
        v["forbidden"]["message"],
        "Quota exceeded, too many server groups."
    );
    let (_, lim) = call(&olga, Method::GET, "/limits", None, MV.1);
    assert_eq!(
        lim["limits"]["absolute"]["totalServerGroupsUsed"], 1,
        "{lim}"
    );
    assert_eq!(boot_settled(&olga, "m1", &mine)["status"], "ACTIVE");
    let (st, v) = boot(&olga, "m2", &mine);
    assert_eq!(st, 403, "{v}");
    assert_eq!(
        v["forbidden"]["message"],
        "Quota exceeded, too many servers in group"
    );

    // deleting a group frees its quota; its servers stay
    let (st, _) = call(
        &olga,
        Method::DELETE,
        &format!("/os-server-groups/{mine}"),
        None,
        MV.1,
    );
    assert_eq!(st, 204);
    let (st, v) = call(
        &olga,
        Method::GET,
        &format!("/os-server-groups/{mine}"),
        None,
        MV.1,
    );
    assert_eq!(st, 404, "{v}");
    group(&olga, "again", "affinity", json!({}));
}

/// `lifeboat server-group` ARGS (admin), with its exit code, stdout and stderr.
fn cli(serve: &Serve, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(common::BIN)
        .args(args)
        .env("LIFEBOAT_URL", &serve.url)
        .env(
            "LIFEBOAT_CREDENTIALS",
            serve.data_dir.join("admin-credentials.json"),
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

fn cli_json(serve: &Serve, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let (code, out, err) = cli(serve, &a);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// The native API's server groups (`/api/v1/server-groups`) and `lifeboat
/// server-group list|create|show|delete` with `--output json`, on the same
/// engine service as the Compute front: a group made natively is Nova's
/// group, `server create --group` joins it (shown in its members), another
/// project gets 404 (Nova's behaviour), readers cannot delete, the quota
/// answers 403, and errors are clear.
#[test]
fn native_api_and_cli_manage_server_groups() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), free_port(), &[], &[]);
    let c = serve.credentials();
    let (user, pass) = (
        c["username"].as_str().unwrap(),
        c["password"].as_str().unwrap(),
    );
    let native = Api::login(&serve.url, user, pass);
    let nova = Api::keystone(&serve.url, user, pass);

    let g = cli_json(
        &serve,
        &[
            "server-group",
            "create",
            "web",
            "--policy",
            "anti-affinity",
            "--max-per-host",
            "2",
        ],
    );
    assert_eq!(
        (
            g["name"].as_str(),
            g["policy"].as_str(),
            g["max_server_per_host"].as_u64()
        ),
        (Some("web"), Some("anti-affinity"), Some(2)),
        "{g}"
    );
    assert_eq!(g["members"], json!([]));
    let id = g["id"].as_str().unwrap().to_string();
    // the Compute front sees the same group
    let (st, v) = call(
        &nova,
        Method::GET,
        &format!("/os-server-groups/{id}"),
        None,
        MV.1,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["server_group"]["policy"], "anti-affinity");
    assert_eq!(
        v["server_group"]["rules"],
        json!({"max_server_per_host": 2})
    );

    // a server joins it by name through the CLI
    let created = cli_json(
        &serve,
        &["server", "create", "w1", "--group", "web", "--wait"],
    );
    let sid = created[0]["id"].as_str().unwrap().to_string();
    assert_eq!(created[0]["status"], "ACTIVE", "{created}");
    let shown = cli_json(&serve, &["server-group", "show", "web"]);
    assert_eq!(shown["members"], json!([sid]), "{shown}");
    let listed = cli_json(&serve, &["server-group", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(
        listed[0]["members"],
        json!([sid]),
        "raw members in JSON: {listed}"
    );
    let (code, table, err) = cli(&serve, &["server-group", "list"]);
    assert_eq!(code, 0, "{err}");
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("ID"), "{table}");
    let row = lines.next().unwrap();
    assert!(
        row.contains("web") && row.contains("anti-affinity"),
        "{table}"
    );
    assert!(
        row.split_whitespace().any(|c| c == "1"),
        "member count: {table}"
    );
    let s = native.get(&format!("/api/v1/servers/{sid}"));
    assert_eq!(s["server_groups"], json!([id]), "{s}");

    // natively made groups follow the same validation and quota
    let (st, v) = native.post(
        "/api/v1/server-groups",
        json!({"name": "x", "policy": "affinity", "max_server_per_host": 2}),
    );
    assert_eq!(
        (st, v["error"]["message"].as_str()),
        (400, Some("only the anti-affinity policy takes rules")),
        "{v}"
    );
    let (st, v) = native.post(
        "/api/v1/server-groups",
        json!({"name": "x", "policy": "legacy"}),
    );
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{v}"
    );
    let (st, v) = native.post(
        "/api/v1/server-groups",
        json!({"name": "", "policy": "affinity"}),
    );
    assert_eq!(st, 400, "{v}");
    let (st, v) = native.post(
        "/api/v1/server-groups",
        json!({"name": "x", "policy": "affinity", "extra": 1}),
    );
    assert_eq!(st, 400, "unknown keys are refused: {v}");
    let admin_project = native
        .get("/api/v1/projects")
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, v) = call(
        &nova,
        Method::PUT,
        &format!("/os-quota-sets/{admin_project}"),
        Some(json!({"quota_set": {"server_groups": 1}})),
        MV.1,
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = native.post(
        "/api/v1/server-groups",
        json!({"name": "more", "policy": "affinity"}),
    );
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("over_limit")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server groups"),
        "{v}"
    );

    // another project: not found; a reader of the owning project cannot delete
    for (name, project, role) in [("oscar", "others", "member"), ("rita", "admin", "reader")] {
        if name == "oscar" {
            let (st, v) = native.post("/api/v1/projects", json!({"name": project}));
            assert!(st < 300, "{v}");
        }
        let (st, v) = native.post(
            "/api/v1/users",
            json!({"name": name, "password": "a-long-password", "project": project, "role": role}),
        );
        assert!(st < 300, "{v}");
    }
    let oscar = Api::login(&serve.url, "oscar", "a-long-password");
    for m in [Method::GET, Method::DELETE] {
        let (st, v) = oscar.req(m.clone(), &format!("/api/v1/server-groups/{id}"), None);
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{m} another project's group: {v}"
        );
    }
    let (_, v) = oscar.req(Method::GET, "/api/v1/server-groups?all_projects=true", None);
    assert_eq!(v, json!([]), "all_projects is ignored for non-admins: {v}");
    let (st, v) = oscar.post(
        "/api/v1/servers",
        json!({"name": "sneak", "flavor": "m1.nano", "scheduler_hints": {"group": id}}),
    );
    assert_eq!(st, 404, "another project's group is not found: {v}");
    assert_eq!(
        v["error"]["message"],
        format!("Instance group {id} could not be found.")
    );
    let rita = Api::login(&serve.url, "rita", "a-long-password");
    let (st, v) = rita.req(Method::GET, &format!("/api/v1/server-groups/{id}"), None);
    assert_eq!(st, 200, "a reader sees it: {v}");
    let (st, v) = rita.req(Method::DELETE, &format!("/api/v1/server-groups/{id}"), None);
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );
    let (_, all) = native.req(Method::GET, "/api/v1/server-groups?all_projects=true", None);
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");

    // CLI errors
    let (code, _, err) = cli(
        &serve,
        &[
            "server-group",
            "create",
            "x",
            "--policy",
            "affinity",
            "--max-per-host",
            "2",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("--max-per-host applies to --policy anti-affinity only"),
        "{err}"
    );
    let (code, _, err) = cli(
        &serve,
        &["server-group", "create", "x", "--policy", "sideways"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("sideways"), "{err}");
    let (code, _, err) = cli(&serve, &["server-group", "show", "nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("could not be found"), "{err}");

    // delete: the server stays, no longer in a group
    let del = cli_json(&serve, &["server-group", "delete", "web"]);
    assert_eq!(del["deleted"], id.as_str());
    let (code, _, _) = cli(&serve, &["server-group", "show", &id]);
    assert_ne!(code, 0);
    let s = native.get(&format!("/api/v1/servers/{sid}"));
    assert_eq!(s["status"], "ACTIVE", "{s}");
}
