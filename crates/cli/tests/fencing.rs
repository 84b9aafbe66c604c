//! Evacuation fencing with a real manager and a real remote fake agent: a
//! host is marked down only after several missed heartbeats; when an
//! evacuated host comes back, its stale copy is destroyed before it serves;
//! a manager whose agent is unreachable at start still starts, with that
//! host down, and its servers can be evacuated.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, Api, Serve};
use serde_json::{json, Value};

struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn host_up(api: &Api, host: &str) -> bool {
    api.get("/api/v1/hosts")
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["name"] == host && h["up"] == true)
}

fn vms(dir: &std::path::Path) -> Value {
    lifeboat_hypervisor::fake::read_state_file(&dir.join("fake-host2.json"))
}

fn login(s: &Serve) -> Api {
    let c = s.credentials();
    Api::login(
        &s.url,
        c["username"].as_str().unwrap(),
        c["password"].as_str().unwrap(),
    )
}

#[test]
fn evacuated_host_is_fenced_and_an_unreachable_agent_does_not_stop_the_manager() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("agent-token");
    std::fs::write(&token, "fencing-test-token").unwrap();
    let agent_port = free_port();
    let agent_dir = tempfile::tempdir().unwrap();
    let start_agent = || {
        Agent(common::start_agent(
            "host2",
            "fake",
            agent_port,
            agent_dir.path(),
            &token,
        ))
    };
    let port = free_port();

    let mut agent = start_agent();
    let agent_arg = common::agent_arg("host2", agent_port, agent_dir.path());
    let extra = ["--agent", agent_arg.as_str(), "--host-down-after", "3"];
    let serve = Serve::start(dir.path(), port, &[], &extra);
    let api = login(&serve);
    let (st, v) = api.post(
        "/api/v1/servers",
        json!({"name": "f", "flavor": "m1.nano", "availability_zone": "nova:host2"}),
    );
    assert_eq!(st, 202, "{v}");
    let id = v[0]["server"]["id"].as_str().unwrap().to_string();
    let s = api.settle(&id, Duration::from_secs(30));
    assert_eq!(
        (s["status"].as_str(), s["host"].as_str()),
        (Some("ACTIVE"), Some("host2"))
    );
    let name = s["instance_name"].as_str().unwrap().to_string();

    // the agent dies: down only after 3 missed heartbeats (1 s apart)
    drop(agent);
    let died = Instant::now();
    api.wait_host_down("host2", Duration::from_secs(30));
    assert!(
        died.elapsed() >= Duration::from_millis(1900),
        "marked down after {:?}: one failed heartbeat is not enough",
        died.elapsed()
    );
    let events = api.get("/api/v1/events?limit=1000");
    assert!(
        events
            .to_string()
            .contains("host host2 is down after 3 missed heartbeats"),
        "{events}"
    );
    let (st, v) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "evacuate"}),
    );
    assert_eq!(st, 202, "{v}");
    let s = api.settle(&id, Duration::from_secs(30));
    assert_eq!(
        (s["status"].as_str(), s["host"].as_str()),
        (Some("ACTIVE"), Some("host1"))
    );
    assert!(
        vms(agent_dir.path()).get(&name).is_some(),
        "the dead host still has its copy"
    );

    // it comes back: the stale copy is destroyed before the host is up
    agent = start_agent();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !host_up(&api, "host2") {
        assert!(Instant::now() < deadline, "host2 did not come back");
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = vms(agent_dir.path());
    assert!(left.get(&name).is_none(), "stale copy destroyed: {left}");
    let events = api.get(&format!("/api/v1/events?server_id={id}&limit=500"));
    assert!(events.to_string().contains("stale copy"), "{events}");
    let s = api.get(&format!("/api/v1/servers/{id}"));
    assert_eq!(
        (s["status"].as_str(), s["host"].as_str()),
        (Some("ACTIVE"), Some("host1"))
    );

    // move it back, then lose both the agent and the manager
    let (st, v) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "live_migrate", "host": "host2"}),
    );
    assert_eq!(st, 202, "{v}");
    let s = api.settle(&id, Duration::from_secs(30));
    assert_eq!(s["host"], "host2", "{s}");
    drop(agent);
    drop(api);
    serve.kill9();

    // the manager starts although host2's agent is unreachable
    let serve = Serve::start(dir.path(), port, &[], &extra);
    let api = login(&serve);
    let hosts = api.get("/api/v1/hosts");
    let h2 = hosts
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "host2")
        .unwrap_or_else(|| panic!("{hosts}"));
    assert_eq!(h2["up"], false, "{hosts}");
    let (st, v) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "evacuate"}),
    );
    assert_eq!(st, 202, "{v}");
    let s = api.settle(&id, Duration::from_secs(30));
    assert_eq!(
        (s["status"].as_str(), s["host"].as_str()),
        (Some("ACTIVE"), Some("host1"))
    );
    assert!(
        vms(agent_dir.path()).get(&name).is_some(),
        "the dead host still has its copy"
    );

    // both restart: the host is fenced when it registers, before it is up
    drop(api);
    serve.kill9();
    let _agent = start_agent();
    let serve = Serve::start(dir.path(), port, &[], &extra);
    let api = login(&serve);
    assert!(host_up(&api, "host2"), "host2 registered up");
    let left = vms(agent_dir.path());
    assert!(
        left.get(&name).is_none(),
        "stale copy destroyed at registration: {left}"
    );
    let s = api.get(&format!("/api/v1/servers/{id}"));
    assert_eq!(s["host"], "host1", "{s}");
}

/// A host that comes back while its server is being evacuated: its copy is
/// destroyed before the host is up (whether the evacuation has defined the
/// new copy yet or not), is never started again, and the evacuation, resumed
/// by a restarted manager, completes on the other host.
#[test]
fn host_back_during_evacuation_is_fenced_before_it_serves() {
    for hang in ["evacuate:evacuate", "evacuate:evacuate:after"] {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("agent-token");
        std::fs::write(&token, "fencing-mid-evacuation-token").unwrap();
        let agent_port = free_port();
        let agent_dir = tempfile::tempdir().unwrap();
        let start_agent = || {
            Agent(common::start_agent(
                "host2",
                "fake",
                agent_port,
                agent_dir.path(),
                &token,
            ))
        };
        let port = free_port();
        let agent = start_agent();
        let agent_arg = common::agent_arg("host2", agent_port, agent_dir.path());
        let extra = ["--agent", agent_arg.as_str(), "--host-down-after", "2"];
        let hooks = [
            ("LIFEBOAT_ENABLE_TEST_HOOKS", "1"),
            ("LIFEBOAT_TEST_HANG_AT", hang),
        ];
        let serve = Serve::start(dir.path(), port, &hooks, &extra);
        let api = login(&serve);
        let (st, v) = api.post(
            "/api/v1/servers",
            json!({"name": "mid", "flavor": "m1.nano", "availability_zone": "nova:host2"}),
        );
        assert_eq!(st, 202, "{v}");
        let id = v[0]["server"]["id"].as_str().unwrap().to_string();
        let s = api.settle(&id, Duration::from_secs(30));
        assert_eq!(s["host"], "host2", "{s}");
        let name = s["instance_name"].as_str().unwrap().to_string();

        drop(agent);
        api.wait_host_down("host2", Duration::from_secs(30));
        let (st, v) = api.post(
            &format!("/api/v1/servers/{id}/actions"),
            json!({"action": "evacuate"}),
        );
        assert_eq!(st, 202, "{v}");
        serve.wait_stderr(&format!("LIFEBOAT-HANG {hang}"), Duration::from_secs(30));
        assert!(
            vms(agent_dir.path()).get(&name).is_some(),
            "{hang}: copy on host2"
        );

        // host2 comes back mid-evacuation: fenced before it is up
        let _agent = start_agent();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !host_up(&api, "host2") {
            assert!(Instant::now() < deadline, "{hang}: host2 did not come back");
            std::thread::sleep(Duration::from_millis(100));
        }
        let left = vms(agent_dir.path());
        assert!(
            left.get(&name).is_none(),
            "{hang}: stale copy destroyed: {left}"
        );
        let events = api.get(&format!("/api/v1/events?server_id={id}&limit=500"));
        assert!(
            events.to_string().contains("stale copy"),
            "{hang}: {events}"
        );

        // the evacuation resumes in a new manager and completes on host1
        drop(api);
        serve.kill9();
        let serve = Serve::start(dir.path(), port, &[], &extra);
        let api = login(&serve);
        let s = api.settle(&id, Duration::from_secs(30));
        assert_eq!(
            (s["status"].as_str(), s["host"].as_str()),
            (Some("ACTIVE"), Some("host1")),
            "{hang}: {s}"
        );
        // a few heartbeats later host2 still has no copy: never started again
        std::thread::sleep(Duration::from_secs(3));
        let left = vms(agent_dir.path());
        assert!(left.get(&name).is_none(), "{hang}: {left}");
    }
}
