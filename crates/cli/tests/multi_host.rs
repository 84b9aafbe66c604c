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
    let agent_arg = common::agent_arg("host2", agent_port, agent_dir.path());
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
    let state =
        lifeboat_hypervisor::fake::read_state_file(&agent_dir.path().join("fake-host2.json"))
            .to_string();
    assert!(state.contains(s["instance_name"].as_str().unwrap()));
    // Its serial console is carried through the agent.
    let (st, con) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "remote_console", "protocol": "serial", "console_type": "serial"}),
    );
    assert_eq!(st, 200, "{con}");
    assert!(common::console_says(
        con["url"].as_str().unwrap(),
        "m login:"
    ));

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

/// The manager talks to an agent only over TLS and only when the agent's
/// certificate is the pinned one; the agent admits only TLS clients holding a
/// certificate from the manager's CA.
#[test]
fn agent_channel_is_pinned_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    drop(Serve::start(dir.path(), port, &[], &[]));
    let agent_port = free_port();
    let agent_dir = tempfile::tempdir().unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _agent = Kill(common::start_agent(
        "host2",
        "fake",
        agent_port,
        agent_dir.path(),
        &dir.path().join("agent-token"),
    ));
    let run = |agent: &str| {
        std::process::Command::new(common::BIN)
            .args(["serve", "--driver", "fake", "--listen"])
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--agent", agent])
            .output()
            .unwrap()
    };
    // Plain HTTP is refused outright; so is an agent with no pin.
    let out = run(&format!("host2=http://127.0.0.2:{agent_port}"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("over TLS only"),
        "{out:?}"
    );
    let out = run(&format!("host2=https://127.0.0.2:{agent_port}"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no pin for agent host2"),
        "{out:?}"
    );
    // A wrong pin: the manager starts, but host2 is down and says why.
    let wrong = format!(
        "host2=https://127.0.0.2:{agent_port},pin=sha256:{}",
        "00".repeat(32)
    );
    let mut serve = Serve::start(dir.path(), port, &[], &["--agent", &wrong]);
    serve.wait_ready_line();
    serve.wait_stderr("does not match the pinned", Duration::from_secs(10));
    let c = serve.credentials();
    let api = Api::login(
        &serve.url,
        c["username"].as_str().unwrap(),
        c["password"].as_str().unwrap(),
    );
    let hosts = api.get("/api/v1/hosts");
    assert!(
        hosts
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == "host2" && h["up"] == false),
        "{hosts}"
    );
    drop(api);
    drop(serve);
    // The right pin is kept: the next start needs only the URL.
    let right = common::agent_arg("host2", agent_port, agent_dir.path());
    drop(Serve::start(dir.path(), port, &[], &["--agent", &right]));
    let plain = format!("host2=https://127.0.0.2:{agent_port}");
    let serve = Serve::start(dir.path(), port, &[], &["--agent", &plain]);
    let c = serve.credentials();
    let api = Api::login(
        &serve.url,
        c["username"].as_str().unwrap(),
        c["password"].as_str().unwrap(),
    );
    let hosts = api.get("/api/v1/hosts");
    assert!(
        hosts
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == "host2" && h["up"] == true),
        "{hosts}"
    );
    // A client without the manager CA's certificate gets no HTTP answer.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.2", agent_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /v1/rpc HTTP/1.1\r\nhost: x\r\ncontent-length: 13\r\n\r\n{\"op\":\"list\"}")
        .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        !buf.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
}
