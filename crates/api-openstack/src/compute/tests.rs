use axum::http::StatusCode;
use lifeboat_core::{Actor, Server, Status, VmState};
use serde_json::{json, Value};

use super::parse::*;
use super::servers::*;
use super::views::*;
use crate::microversion::Mv;
use crate::nova::instance_action_name as action_name;
use crate::wire::*;
use crate::Ctx;
use lifeboat_core::{Attachment, PowerState, Role, TaskState};

fn actor(role: Role) -> Actor {
    Actor {
        user_id: "u".into(),
        user_name: "u".into(),
        project_id: "p".into(),
        role,
    }
}

fn server() -> Server {
    let t = chrono::DateTime::parse_from_rfc3339("2013-09-03T04:01:32.123456Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    Server {
        image_id: Some("img".into()),
        vm_state: VmState::Active,
        task_state: None,
        power_state: PowerState::Running,
        progress: 100,
        host: Some("host1".into()),
        node: Some("host1".into()),
        instance_name: "instance-00000001".into(),
        availability_zone: Some("nova".into()),
        reservation_id: "r-abcdefgh".into(),
        attachments: vec![Attachment {
            port_id: "port".into(),
            network_id: "net".into(),
            network_name: "private".into(),
            mac_address: "fa:16:3e:00:00:01".into(),
            fixed_ip: "10.0.0.2".into(),
            extra_fixed_ips: vec![],
            floating_ips: vec!["172.24.4.2".into()],
        }],
        admin_password_set: true,
        launched_at: Some(t),
        version: 1,
        ..Server::new(
            "0e44cc9c-e052-415d-afbf-469b0d384170",
            "new-server-test",
            "p",
            "u",
            &lifeboat_core::Flavor::defaults()[0],
            t,
        )
    }
}

async fn with_render<F: FnOnce(&Render)>(mv: u16, role: Role, f: F) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        lifeboat_store::Store::open(&format!("sqlite://{}", dir.path().join("db").display()))
            .await
            .unwrap();
    let engine = lifeboat_engine::Engine::new(
        store,
        lifeboat_engine::EngineConfig::new(dir.path().to_path_buf()),
    );
    let ctx = Ctx {
        engine,
        public_url: "http://h".into(),
    };
    let a = actor(role);
    let r = Render::load(&ctx, Mv(mv), &a).await.unwrap();
    f(&r);
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn show_at_2_1_for_a_member() {
    with_render(1, Role::Member, |r| {
        let v = r.show(&server(), View::Show);
        assert_eq!(
            keys(&v),
            [
                "OS-DCF:diskConfig",
                "OS-EXT-AZ:availability_zone",
                "OS-EXT-STS:power_state",
                "OS-EXT-STS:task_state",
                "OS-EXT-STS:vm_state",
                "OS-SRV-USG:launched_at",
                "OS-SRV-USG:terminated_at",
                "accessIPv4",
                "accessIPv6",
                "addresses",
                "config_drive",
                "created",
                "flavor",
                "hostId",
                "id",
                "image",
                "key_name",
                "links",
                "metadata",
                "name",
                "os-extended-volumes:volumes_attached",
                "progress",
                "security_groups",
                "status",
                "tenant_id",
                "updated",
                "user_id"
            ]
        );
        assert_eq!(v["created"], "2013-09-03T04:01:32Z");
        assert_eq!(v["OS-SRV-USG:launched_at"], "2013-09-03T04:01:32.123456");
        assert_eq!(v["config_drive"], "");
        assert_eq!(
            v["flavor"]["links"][0]["href"],
            "http://h/compute/flavors/1"
        );
        assert_eq!(
            v["links"][0]["href"],
            "http://h/compute/v2.1/servers/0e44cc9c-e052-415d-afbf-469b0d384170"
        );
        let addrs = &v["addresses"]["private"];
        assert_eq!(addrs[1]["OS-EXT-IPS:type"], "floating");
        assert_eq!(addrs[0]["OS-EXT-IPS-MAC:mac_addr"], "fa:16:3e:00:00:01");
    })
    .await;
}

#[tokio::test]
async fn fields_by_microversion() {
    with_render(100, Role::Member, |r| {
        let mut s = server();
        s.locked = true;
        s.locked_reason = Some("maint".into());
        let v = r.show(&s, View::Show);
        assert_eq!(v["locked"], true);
        assert_eq!(v["locked_reason"], "maint");
        assert_eq!(v["flavor"]["original_name"], "m1.nano");
        assert!(v["flavor"].get("id").is_none());
        assert_eq!(v["OS-EXT-SRV-ATTR:hostname"], "new-server-test");
        assert!(v.get("OS-EXT-SRV-ATTR:host").is_none());
        assert!(v.get("host_status").is_none());
        assert_eq!(v["server_groups"], json!([]));
        assert_eq!(v["scheduler_hints"], json!({}));
        assert!(v["pinned_availability_zone"].is_null());
        assert!(v["image"]["properties"].is_object());
        let d = r.detail(&s);
        assert!(d.get("server_groups").is_none());
        assert_eq!(d["security_groups"], json!([{"name": "default"}]));
    })
    .await;
    with_render(72, Role::Member, |r| {
        let v = r.show(&server(), View::Show);
        assert!(v.get("locked_reason").is_none());
        assert!(v.get("OS-EXT-SRV-ATTR:hostname").is_none());
        assert!(v["image"].get("properties").is_none());
    })
    .await;
    with_render(3, Role::Admin, |r| {
        let v = r.show(&server(), View::Show);
        assert_eq!(v["OS-EXT-SRV-ATTR:host"], "host1");
        assert_eq!(v["OS-EXT-SRV-ATTR:reservation_id"], "r-abcdefgh");
        assert!(v.get("locked").is_none());
    })
    .await;
}

#[tokio::test]
async fn reduced_update_view_and_states() {
    with_render(19, Role::Member, |r| {
        let v = r.show(&server(), View::Update);
        assert!(v.get("OS-EXT-STS:vm_state").is_none());
        assert!(v.get("key_name").is_none());
        assert!(v["addresses"]["private"][0]
            .get("OS-EXT-IPS:type")
            .is_none());
        assert!(v.get("description").is_some());
        let mut s = server();
        s.vm_state = VmState::Building;
        s.task_state = Some(TaskState::Spawning);
        let v = r.show(&s, View::Show);
        assert_eq!(v["status"], "BUILD");
        assert_eq!(v["addresses"], json!({}));
        s.vm_state = VmState::Stopped;
        s.task_state = None;
        let v = r.show(&s, View::Show);
        assert_eq!(v["status"], "SHUTOFF");
        assert!(v.get("progress").is_none());
    })
    .await;
}

#[test]
fn create_parsing() {
    let body = json!({"server": {
        "name": "a", "imageRef": "http://x/images/abc", "flavorRef": 2,
        "networks": [{"uuid": "6f1c1f1e-0000-4000-8000-000000000001", "fixed_ip": "10.0.0.9"}],
        "metadata": {"k": "v"}, "min_count": 2, "max_count": "3",
        "security_groups": [{"name": "web"}], "tags": ["t"],
        "config_drive": "true", "description": "d"},
        "os:scheduler_hints": {"group": "6f1c1f1e-0000-4000-8000-0000000000aa"}});
    let (c, res) = parse_create(&body, Mv(52)).unwrap();
    assert!(!res);
    assert_eq!(c.image.as_deref(), Some("abc"));
    assert_eq!(c.flavor, "2");
    assert_eq!(c.networks[0].fixed_ip.as_deref(), Some("10.0.0.9"));
    assert_eq!((c.min_count, c.max_count), (2, 3));
    assert!(c.config_drive);
    assert_eq!(c.tags, vec!["t"]);
    assert_eq!(
        c.scheduler_hints["group"],
        "6f1c1f1e-0000-4000-8000-0000000000aa"
    );
    // networks is required from 2.37; "none" means no network.
    let b = json!({"server": {"name": "a", "flavorRef": "1"}});
    assert!(parse_create(&b, Mv(37)).is_err());
    assert!(parse_create(&b, Mv(36)).is_ok());
    let b = json!({"server": {"name": "a", "flavorRef": "1", "networks": "none"}});
    assert!(parse_create(&b, Mv(37)).unwrap().0.no_network);
    // tags need 2.52, description 2.19.
    let b = json!({"server": {"name": "a", "flavorRef": "1", "tags": ["x"]}});
    assert!(parse_create(&b, Mv(51)).is_err());
    let b = json!({"server": {"name": "a", "flavorRef": "1", "description": "x"}});
    assert!(parse_create(&b, Mv(18)).is_err());
}

#[test]
fn list_parsing() {
    let member = actor(Role::Member);
    let admin = actor(Role::Admin);
    let q: Pairs = vec![
        ("status".into(), "active".into()),
        ("limit".into(), "5".into()),
        ("marker".into(), "m".into()),
        ("host".into(), "h".into()),
    ];
    let l = parse_list(&q, Mv(1), &member).unwrap().unwrap();
    assert_eq!(l.status, Some(vec![Status::Active]));
    assert_eq!(l.limit, Some(5));
    assert_eq!(l.marker.as_deref(), Some("m"));
    assert_eq!(l.host, None, "host is an admin filter");
    assert_eq!(
        parse_list(&q, Mv(1), &admin)
            .unwrap()
            .unwrap()
            .host
            .as_deref(),
        Some("h")
    );
    let bad: Pairs = vec![("status".into(), "bogus".into())];
    assert!(parse_list(&bad, Mv(37), &member).unwrap().is_none());
    assert_eq!(
        parse_list(&bad, Mv(38), &member).unwrap_err().message,
        "Invalid status value"
    );
    let all: Pairs = vec![("all_tenants".into(), "1".into())];
    assert_eq!(
        parse_list(&all, Mv(1), &member).unwrap_err().status,
        StatusCode::FORBIDDEN
    );
    assert!(
        parse_list(&all, Mv(1), &admin)
            .unwrap()
            .unwrap()
            .all_projects
    );
}

#[test]
fn links_and_names() {
    assert_eq!(id_from_href("http://x/v2.1/flavors/7"), "7");
    assert_eq!(id_from_href("abc"), "abc");
    assert_eq!(enc("a b&c"), "a%20b%26c");
    assert_eq!(action_name("reboot_hard"), "reboot");
    assert_eq!(action_name("create_backup"), "backup");
    assert_eq!(security_group_id("p", "default").len(), 36);
}
