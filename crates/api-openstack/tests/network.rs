//! The Networking API v2.0 over HTTP: an engine on a temp SQLite store with
//! the fake driver, the OpenStack router on 127.0.0.1:0, reqwest as client.
//! Error bodies are compared with Neutron's api-ref / source texts.

use std::sync::Arc;

use lifeboat_core::Role;
use lifeboat_engine::{Engine, EngineConfig};
use lifeboat_hypervisor::fake::{FakeConfig, FakeDriver};
use serde_json::{json, Value};

struct Env {
    url: String,
    http: reqwest::Client,
    admin: String,
    alice: String,
    bob: String,
    reader: String,
    _dir: tempfile::TempDir,
}

async fn token(http: &reqwest::Client, url: &str, user: &str, pw: &str, project: &str) -> String {
    let r = http
        .post(format!("{url}/identity/v3/auth/tokens"))
        .json(
            &json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "Default"}, "password": pw}}},
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{user}");
    r.headers()["x-subject-token"].to_str().unwrap().to_string()
}

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = lifeboat_store::Store::open(&format!(
        "sqlite://{}",
        dir.path().join("lifeboat.db").display()
    ))
    .await
    .unwrap();
    let engine = Engine::new(store, EngineConfig::new(dir.path().to_path_buf()));
    let creds = engine.bootstrap_identity().await.unwrap().unwrap();
    engine.bootstrap_catalog(&Default::default()).await.unwrap();
    let fake = FakeDriver::new(FakeConfig::from_env("host1"));
    engine
        .add_host("host1", "local", "nova", Arc::new(fake))
        .await
        .unwrap();
    engine.start().await.unwrap();
    let pa = engine.create_project("proj-a", "").await.unwrap();
    let pb = engine.create_project("proj-b", "").await.unwrap();
    engine
        .create_user("alice", "alice-password", &pa.id, Role::Member)
        .await
        .unwrap();
    engine
        .create_user("rita", "rita-password", &pa.id, Role::Reader)
        .await
        .unwrap();
    engine
        .create_user("bob", "bob-password", &pb.id, Role::Member)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = lifeboat_api_openstack::router(engine, url.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let c: Value = serde_json::from_slice(&std::fs::read(creds).unwrap()).unwrap();
    let http = reqwest::Client::new();
    let admin = token(
        &http,
        &url,
        c["username"].as_str().unwrap(),
        c["password"].as_str().unwrap(),
        "admin",
    )
    .await;
    let alice = token(&http, &url, "alice", "alice-password", "proj-a").await;
    let reader = token(&http, &url, "rita", "rita-password", "proj-a").await;
    let bob = token(&http, &url, "bob", "bob-password", "proj-b").await;
    Env {
        url,
        http,
        admin,
        alice,
        bob,
        reader,
        _dir: dir,
    }
}

impl Env {
    async fn call(&self, tok: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self
            .http
            .request(m, format!("{}/network/v2.0{path}", self.url))
            .header("X-Auth-Token", tok);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn fault(t: &str, m: &str) -> Value {
    json!({"NeutronError": {"type": t, "message": m, "detail": ""}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_subnets_ports() {
    let env = start().await;
    // catalog
    let r = env
        .http
        .get(format!("{}/identity/v3/auth/catalog", env.url))
        .header("X-Auth-Token", &env.alice)
        .send()
        .await
        .unwrap();
    let cat: Value = r.json().await.unwrap();
    let net_svc = cat["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "network")
        .expect("network in catalog")
        .clone();
    assert_eq!(
        net_svc["endpoints"][0]["url"],
        format!("{}/network", env.url)
    );
    let r = env
        .http
        .get(format!("{}/network", env.url))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["versions"][0]["id"], "v2.0");

    // unauthenticated
    let r = env
        .http
        .get(format!("{}/network/v2.0/networks", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // bootstrapped networks and their subnets
    let (s, v) = env.call(&env.bob, "GET", "/networks", None).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"private") && names.contains(&"public"));
    let public = v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "public")
        .unwrap()
        .clone();
    assert_eq!(public["router:external"], true);
    assert_eq!(public["subnets"].as_array().unwrap().len(), 1);

    // create
    let (s, v) = env
        .call(
            &env.alice,
            "POST",
            "/networks",
            Some(json!({"network": {"name": "n1", "mtu": 1450}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let net = v["network"].clone();
    let nid = net["id"].as_str().unwrap().to_string();
    assert_eq!(net["status"], "ACTIVE");
    assert_eq!(net["admin_state_up"], true);
    assert_eq!(net["shared"], false);
    assert_eq!(net["router:external"], false);
    assert_eq!(net["mtu"], 1450);
    assert_eq!(net["subnets"], json!([]));
    assert_eq!(net["tenant_id"], net["project_id"]);

    // reader cannot create, can see
    let (s, v) = env
        .call(
            &env.reader,
            "POST",
            "/networks",
            Some(json!({"network": {}})),
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(
        v,
        fault(
            "PolicyNotAuthorized",
            "rule:create_network is disallowed by policy"
        )
    );
    let (s, _) = env
        .call(&env.reader, "GET", &format!("/networks/{nid}"), None)
        .await;
    assert_eq!(s, 200);
    // other project: 404 with Neutron's text
    let (s, v) = env
        .call(&env.bob, "GET", &format!("/networks/{nid}"), None)
        .await;
    assert_eq!(s, 404);
    assert_eq!(
        v,
        fault(
            "NetworkNotFound",
            &format!("Network {nid} could not be found.")
        )
    );
    // admin sees it
    let (_, v) = env.call(&env.admin, "GET", "/networks?name=n1", None).await;
    assert_eq!(v["networks"].as_array().unwrap().len(), 1);

    // subnet validation
    for (body, t, m) in [
        (
            json!({"network_id": nid, "ip_version": 4, "cidr": "10.1.0.0/33"}),
            "HTTPBadRequest",
            "Invalid input for cidr. Reason: '10.1.0.0/33' is not a valid IP subnet.",
        ),
        (
            json!({"network_id": nid, "ip_version": 7, "cidr": "10.1.0.0/24"}),
            "HTTPBadRequest",
            "Invalid input for ip_version. Reason: '7' is not in [4, 6].",
        ),
        (
            json!({"ip_version": 4, "cidr": "10.1.0.0/24"}),
            "HTTPBadRequest",
            "Failed to parse request. Required attribute 'network_id' not specified",
        ),
        (
            json!({"network_id": nid, "ip_version": 4, "cidr": "10.1.0.0/24",
                   "allocation_pools": [{"start": "10.1.0.10", "end": "10.2.0.5"}]}),
            "OutOfBoundsAllocationPool",
            "The allocation pool 10.1.0.10-10.2.0.5 spans beyond the subnet cidr 10.1.0.0/24.",
        ),
        (
            json!({"network_id": nid, "ip_version": 4, "cidr": "10.1.0.0/24",
                   "gateway_ip": "10.1.0.20",
                   "allocation_pools": [{"start": "10.1.0.10", "end": "10.1.0.30"}]}),
            "GatewayConflictWithAllocationPools",
            "Gateway ip 10.1.0.20 conflicts with allocation pool 10.1.0.10-10.1.0.30.",
        ),
    ] {
        let (s, v) = env
            .call(
                &env.alice,
                "POST",
                "/subnets",
                Some(json!({ "subnet": body })),
            )
            .await;
        assert!(s == 400 || s == 409, "{s} {v}");
        assert_eq!(v, fault(t, m));
    }
    let (s, v) = env
        .call(
            &env.alice,
            "POST",
            "/subnets",
            Some(
                json!({"subnet": {"network_id": nid, "ip_version": 4, "cidr": "10.1.0.0/24",
                "allocation_pools": [{"start": "10.1.0.100", "end": "10.1.0.102"}],
                "dns_nameservers": ["10.1.0.2"]}}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let sub = v["subnet"].clone();
    let sid = sub["id"].as_str().unwrap().to_string();
    assert_eq!(sub["gateway_ip"], "10.1.0.1");
    assert_eq!(sub["enable_dhcp"], true);
    assert_eq!(sub["ip_version"], 4);
    let (s, v) = env
        .call(
            &env.alice,
            "POST",
            "/subnets",
            Some(json!({"subnet": {"network_id": nid, "ip_version": 4, "cidr": "10.1.0.0/25"}})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        v,
        fault(
            "InvalidInput",
            &format!("Invalid input for operation: Requested subnet with cidr: 10.1.0.0/25 for network: {nid} overlaps with another subnet.")
        )
    );
    let (s, v) = env
        .call(
            &env.alice,
            "POST",
            "/subnets",
            Some(json!({"subnet": {"network_id": nid, "ip_version": 6, "cidr": "fd00:1::/64"}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let sid6 = v["subnet"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        v["subnet"]["allocation_pools"],
        json!([{"start": "fd00:1::2", "end": "fd00:1::ffff:ffff:ffff:ffff"}])
    );

    // ports: allocation from the pool, MAC, default security group
    let (s, v) = env
        .call(
            &env.alice,
            "POST",
            "/ports",
            Some(json!({"port": {"network_id": nid, "name": "p1"}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let p1 = v["port"].clone();
    assert!(p1["mac_address"].as_str().unwrap().starts_with("fa:16:3e:"));
    // The pool's first address is the subnet's DHCP port's (network:dhcp).
    assert_eq!(
        p1["fixed_ips"][0],
        json!({"subnet_id": sid, "ip_address": "10.1.0.101"})
    );
    assert_eq!(p1["fixed_ips"][1]["subnet_id"], sid6);
    assert_eq!(p1["status"], "DOWN");
    assert_eq!(p1["security_groups"].as_array().unwrap().len(), 1);
    let (s, v) = env
        .call(
            &env.alice,
            "POST",
            "/ports",
            Some(json!({"port": {"network_id": nid, "fixed_ips": [{"ip_address": "10.1.0.100"}]}})),
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(
        v,
        fault(
            "IpAddressAlreadyAllocated",
            &format!("IP address 10.1.0.100 already allocated in subnet {sid}")
        )
    );
    let mac = p1["mac_address"].as_str().unwrap();
    let (s, v) = env
        .call(
            &env.alice,
            "POST",
            "/ports",
            Some(json!({"port": {"network_id": nid, "mac_address": mac}})),
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(
        v,
        fault(
            "MacAddressInUse",
            &format!(
                "Unable to complete operation for network {nid}. The mac address {mac} is in use."
            )
        )
    );
    let (s, v) = env
        .call(
            &env.alice,
            "POST",
            "/ports",
            Some(json!({"port": {"network_id": nid, "device_id": "d2", "fixed_ips": [{"subnet_id": sid}]}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["port"]["fixed_ips"][0]["ip_address"], "10.1.0.102");
    assert_eq!(v["port"]["status"], "ACTIVE");
    let (s, v) = env
        .call(
            &env.alice,
            "POST",
            "/ports",
            Some(json!({"port": {"network_id": nid, "fixed_ips": [{"subnet_id": sid}]}})),
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(
        v,
        fault(
            "IpAddressGenerationFailure",
            &format!("No more IP addresses available on network {nid}.")
        )
    );
    // filters
    let (_, v) = env
        .call(&env.alice, "GET", "/ports?device_id=d2", None)
        .await;
    assert_eq!(v["ports"].as_array().unwrap().len(), 1);
    let (_, v) = env
        .call(
            &env.alice,
            "GET",
            "/ports?fixed_ips=ip_address%3D10.1.0.101",
            None,
        )
        .await;
    assert_eq!(v["ports"][0]["id"], p1["id"]);
    let (_, v) = env
        .call(
            &env.alice,
            "GET",
            &format!("/ports?network_id={nid}&fields=id&fields=name"),
            None,
        )
        .await;
    // p1, d2 and the DHCP ports of the IPv4 and IPv6 subnets.
    assert_eq!(v["ports"].as_array().unwrap().len(), 4);
    assert_eq!(v["ports"][0].as_object().unwrap().len(), 2);
    let (_, v) = env.call(&env.bob, "GET", "/ports", None).await;
    assert!(v["ports"].as_array().unwrap().is_empty());

    // in use
    let (s, v) = env
        .call(&env.alice, "DELETE", &format!("/networks/{nid}"), None)
        .await;
    assert_eq!(s, 409);
    assert_eq!(v, fault("NetworkInUse", &format!("Unable to complete operation on network {nid}. There are one or more ports still in use on the network.")));
    // unknown attribute, malformed
    let (s, v) = env
        .call(
            &env.alice,
            "PUT",
            &format!("/ports/{}", p1["id"].as_str().unwrap()),
            Some(json!({"port": {"nope": 1}})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        v,
        fault("HTTPBadRequest", "Unrecognized attribute(s) 'nope'")
    );
    let r = lifeboat_api_openstack::not_found("/network/v2.0/nothing-here").unwrap();
    assert_eq!(r.status(), 404);

    // extensions
    let (_, v) = env.call(&env.alice, "GET", "/extensions", None).await;
    let aliases: Vec<&str> = v["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["alias"].as_str().unwrap())
        .collect();
    for a in [
        "external-net",
        "router",
        "security-group",
        "standard-attr-tag",
        "pagination",
    ] {
        assert!(aliases.contains(&a), "{a}");
    }

    // tags
    let tag_path = format!("/networks/{nid}/tags");
    let (s, _) = env
        .call(&env.alice, "PUT", &format!("{tag_path}/red"), None)
        .await;
    assert_eq!(s, 201);
    let (s, v) = env
        .call(
            &env.alice,
            "PUT",
            &tag_path,
            Some(json!({"tags": ["a", "b"]})),
        )
        .await;
    assert_eq!((s, v), (200, json!({"tags": ["a", "b"]})));
    let (s, _) = env
        .call(&env.alice, "DELETE", &format!("{tag_path}/a"), None)
        .await;
    assert_eq!(s, 204);
    let (s, v) = env
        .call(&env.alice, "DELETE", &format!("{tag_path}/zz"), None)
        .await;
    assert_eq!(s, 404);
    assert_eq!(v, fault("TagNotFound", "Tag zz could not be found."));
    let (_, v) = env.call(&env.alice, "GET", "/networks?tags=b", None).await;
    assert_eq!(v["networks"][0]["id"], nid.as_str());
    assert_eq!(v["networks"].as_array().unwrap().len(), 1);
    let (s, _) = env
        .call(&env.bob, "PUT", &format!("{tag_path}/x"), None)
        .await;
    assert_eq!(s, 404);

    // pagination
    for i in 0..3 {
        env.call(
            &env.alice,
            "POST",
            "/networks",
            Some(json!({"network": {"name": format!("pg{i}")}})),
        )
        .await;
    }
    let mut seen = vec![];
    let mut next = format!("{}/network/v2.0/networks?limit=2", env.url);
    loop {
        let r = env
            .http
            .get(&next)
            .header("X-Auth-Token", &env.alice)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        let page = v["networks"].as_array().unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|n| n["id"].as_str().unwrap().to_string()));
        match v["networks_links"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["rel"] == "next"))
        {
            Some(l) => next = l["href"].as_str().unwrap().to_string(),
            None => break,
        }
    }
    let (_, all) = env.call(&env.alice, "GET", "/networks", None).await;
    assert_eq!(seen.len(), all["networks"].as_array().unwrap().len());

    // delete in order
    for p in [p1["id"].as_str().unwrap()] {
        let (s, _) = env
            .call(&env.alice, "DELETE", &format!("/ports/{p}"), None)
            .await;
        assert_eq!(s, 204);
    }
    let (_, v) = env
        .call(&env.alice, "GET", &format!("/ports?network_id={nid}"), None)
        .await;
    for p in v["ports"].as_array().unwrap() {
        env.call(
            &env.alice,
            "DELETE",
            &format!("/ports/{}", p["id"].as_str().unwrap()),
            None,
        )
        .await;
    }
    let (s, _) = env
        .call(&env.alice, "DELETE", &format!("/subnets/{sid}"), None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = env
        .call(&env.alice, "DELETE", &format!("/networks/{nid}"), None)
        .await;
    assert_eq!(s, 204);
    let (s, v) = env
        .call(&env.alice, "GET", &format!("/subnets/{sid6}"), None)
        .await;
    assert_eq!(s, 404);
    assert_eq!(
        v,
        fault(
            "SubnetNotFound",
            &format!("Subnet {sid6} could not be found.")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_groups_routers_floating_ips() {
    let env = start().await;
    let (_, v) = env.call(&env.alice, "GET", "/security-groups", None).await;
    let groups = v["security_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["name"], "default");
    assert_eq!(
        groups[0]["security_group_rules"].as_array().unwrap().len(),
        4
    );
    let (s, v) = env
        .call(
            &env.alice,
            "POST",
            "/security-groups",
            Some(json!({"security_group": {"name": "web"}})),
        )
        .await;
    assert_eq!(s, 201);
    let gid = v["security_group"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        v["security_group"]["security_group_rules"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let rule = json!({"security_group_rule": {"security_group_id": gid, "direction": "ingress",
        "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "10.0.0.0/8"}});
    let (s, v) = env
        .call(
            &env.alice,
            "POST",
            "/security-group-rules",
            Some(rule.clone()),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let rid = v["security_group_rule"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["security_group_rule"]["ethertype"], "IPv4");
    let (s, v) = env
        .call(&env.alice, "POST", "/security-group-rules", Some(rule))
        .await;
    assert_eq!(s, 409);
    assert_eq!(
        v,
        fault(
            "SecurityGroupRuleExists",
            &format!("Security group rule already exists. Rule id is {rid}.")
        )
    );
    let (s, v) = env
        .call(
            &env.alice,
            "POST",
            "/security-group-rules",
            Some(json!({"security_group_rule": {
            "security_group_id": gid, "direction": "sideways"}})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        v,
        fault(
            "HTTPBadRequest",
            "Invalid input for direction. Reason: 'sideways' is not in ['ingress', 'egress']."
        )
    );
    let (s, _) = env
        .call(&env.bob, "GET", &format!("/security-groups/{gid}"), None)
        .await;
    assert_eq!(s, 404);

    // router with a gateway on public, interface on a tenant subnet
    let (_, v) = env
        .call(&env.alice, "GET", "/networks?router:external=true", None)
        .await;
    let public = v["networks"][0]["id"].as_str().unwrap().to_string();
    let (_, v) = env
        .call(
            &env.alice,
            "POST",
            "/networks",
            Some(json!({"network": {"name": "rn"}})),
        )
        .await;
    let nid = v["network"]["id"].as_str().unwrap().to_string();
    let (_, v) = env
        .call(
            &env.alice,
            "POST",
            "/subnets",
            Some(json!({"subnet": {"network_id": nid, "ip_version": 4, "cidr": "10.5.0.0/24"}})),
        )
        .await;
    let sid = v["subnet"]["id"].as_str().unwrap().to_string();
    let (s, v) = env
        .call(
            &env.alice,
            "POST",
            "/routers",
            Some(json!({"router": {"name": "r", "external_gateway_info": {"network_id": public}}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let rtid = v["router"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["router"]["external_gateway_info"]["enable_snat"], true);
    let (s, v) = env
        .call(
            &env.alice,
            "PUT",
            &format!("/routers/{rtid}/add_router_interface"),
            Some(json!({"subnet_id": sid})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["subnet_id"], sid.as_str());
    let (_, port) = env
        .call(
            &env.alice,
            "POST",
            "/ports",
            Some(json!({"port": {"network_id": nid}})),
        )
        .await;
    let pid = port["port"]["id"].as_str().unwrap().to_string();
    // .2 is the subnet's DHCP port's.
    assert_eq!(port["port"]["fixed_ips"][0]["ip_address"], "10.5.0.3");
    let (s, v) = env
        .call(
            &env.alice,
            "POST",
            "/floatingips",
            Some(json!({"floatingip": {"floating_network_id": public, "port_id": pid}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let f = v["floatingip"].clone();
    assert_eq!(f["status"], "ACTIVE");
    assert_eq!(f["fixed_ip_address"], "10.5.0.3");
    assert_eq!(f["router_id"], rtid.as_str());
    assert!(f["floating_ip_address"]
        .as_str()
        .unwrap()
        .starts_with("172.24.4."));
    let fid = f["id"].as_str().unwrap();
    let (s, v) = env
        .call(
            &env.alice,
            "PUT",
            &format!("/floatingips/{fid}"),
            Some(json!({"floatingip": {"port_id": null}})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["floatingip"]["status"], "DOWN");
    assert_eq!(v["floatingip"]["port_id"], Value::Null);
    let (s, v) = env
        .call(&env.bob, "GET", &format!("/floatingips/{fid}"), None)
        .await;
    assert_eq!(s, 404);
    assert_eq!(
        v,
        fault(
            "FloatingIPNotFound",
            &format!("Floating IP {fid} could not be found")
        )
    );
    let (s, v) = env
        .call(
            &env.alice,
            "POST",
            "/floatingips",
            Some(json!({"floatingip": {"floating_network_id": nid}})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        v,
        fault(
            "HTTPBadRequest",
            &format!("Bad floatingip request: Network {nid} is not a valid external network.")
        )
    );
    let (s, v) = env
        .call(&env.alice, "DELETE", &format!("/routers/{rtid}"), None)
        .await;
    assert_eq!(s, 409);
    assert_eq!(
        v,
        fault("RouterInUse", &format!("Router {rtid} still has ports"))
    );
    let (s, _) = env
        .call(
            &env.alice,
            "PUT",
            &format!("/routers/{rtid}/remove_router_interface"),
            Some(json!({"subnet_id": sid})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = env
        .call(&env.alice, "DELETE", &format!("/routers/{rtid}"), None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = env
        .call(&env.alice, "DELETE", &format!("/floatingips/{fid}"), None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = env
        .call(
            &env.alice,
            "DELETE",
            &format!("/security-groups/{gid}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
}
