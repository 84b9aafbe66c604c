//! Manager plus a remote host agent on another loopback address, both real
//! processes: placement across hosts, live migration to the remote agent,
//! and evacuation when that agent dies.

mod common;

use std::time::Duration;

use common::{free_port, Api, Serve};
use serde_json::json;

#[test]
fn remote_agent_migration_and_evacuation() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The first start creates the agent token; the agent needs it.
    let bootstrap = Serve::start(dir.path(), port, &[], &[]);
    drop(bootstrap);
    let agent_port = free_port();
    let agent_dir = tempfile::tempdir().unwrap();
    let mut agent = common::start_agent(
        "host2",
        "fake",
        agent_port,
        agent_dir.path(),
        &dir.path().join("agent-token"),
    );
    let agent_arg = format!("host2=http://127.0.0.2:{agent_port}");
    let serve = Serve::start(dir.path(), port, &[], &["--agent", &agent_arg]);
    let c = serve.credentials();
    let api = Api::login(
        &serve.url,
        c["username"].as_str().unwrap(),
        c["password"].as_str().unwrap(),
    );
    let hosts = api.get("/api/v1/hosts");
    assert_eq!(hosts.as_array().unwrap().len(), 2, "{hosts}");

    let (st, v) = api.post(
        "/api/v1/servers",
        json!({"name": "m", "flavor": "m1.nano", "availability_zone": "nova:host1"}),
    );
    assert_eq!(st, 202, "{v}");
    let id = v[0]["server"]["id"].as_str().unwrap().to_string();
    let s = api.settle(&id, Duration::from_secs(20));
    assert_eq!(
        (s["status"].as_str(), s["host"].as_str()),
        (Some("ACTIVE"), Some("host1"))
    );

    let (st, v) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "live_migrate", "host": "host2"}),
    );
    assert_eq!(st, 202, "{v}");
    let s = api.settle(&id, Duration::from_secs(20));
    assert_eq!(
        (s["status"].as_str(), s["host"].as_str()),
        (Some("ACTIVE"), Some("host2")),
        "{s}"
    );
    // the VM now lives in the agent process's state
    let state = std::fs::read_to_string(agent_dir.path().join("fake-host2.json")).unwrap();
    assert!(state.contains(s["instance_name"].as_str().unwrap()));

    // the agent dies: the manager notices, refuses nothing else, evacuates
    agent.kill().unwrap();
    agent.wait().unwrap();
    api.wait_host_down("host2", Duration::from_secs(20));
    let (st, v) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "evacuate"}),
    );
    assert_eq!(st, 202, "{v}");
    let s = api.settle(&id, Duration::from_secs(20));
    assert_eq!(
        (s["status"].as_str(), s["host"].as_str()),
        (Some("ACTIVE"), Some("host1")),
        "{s}"
    );
}
