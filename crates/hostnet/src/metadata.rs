//! The metadata service (169.254.169.254:80 inside each network's service namespace) and the
//! documents it serves, in the OpenStack format (`/openstack/<version>/meta_data.json`,
//! `user_data`, `network_data.json`, `vendor_data.json`, `vendor_data2.json`) and the EC2 format
//! (`/<version>/meta-data/...`, `/<version>/user-data`). The instance is found by the request's
//! source address through a [`MetadataSource`] the caller supplies (source IP -> port ->
//! instance). The config drive carries the same documents (see [`crate::configdrive`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::types::{NetworkSpec, PortSpec};
use crate::{netns, Error};

/// What the metadata service and the config drive tell one instance (serde: it crosses the
/// host agent's RPC; `user_data` travels base64-encoded).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct InstanceMetadata {
    pub uuid: String,
    pub name: String,
    pub hostname: String,
    pub project_id: String,
    pub availability_zone: String,
    pub launch_index: u32,
    /// Key pairs (name, OpenSSH public key); Nova exposes the server's `key_name` here.
    pub public_keys: Vec<(String, String)>,
    #[serde(with = "b64")]
    pub user_data: Option<Vec<u8>>,
    /// Server metadata (`meta`).
    pub meta: BTreeMap<String, String>,
    /// EC2-style id, `i-%08x`.
    pub ec2_instance_id: String,
    pub instance_type: String,
    pub local_ipv4: Option<Ipv4Addr>,
    pub public_ipv4: Option<Ipv4Addr>,
    pub security_groups: Vec<String>,
    /// `network_data.json` (see [`network_data`]).
    pub network_data: Value,
    /// `vendor_data.json`; `{}` when null.
    pub vendor_data: Value,
}

/// Looks up the instance behind a source address on a network.
#[async_trait]
pub trait MetadataSource: Send + Sync {
    async fn instance(&self, network_id: &str, ip: IpAddr) -> Option<InstanceMetadata>;
}

/// OpenStack metadata versions served (as Nova lists them).
pub const OPENSTACK_VERSIONS: &[&str] = &[
    "2012-08-10",
    "2013-04-04",
    "2013-10-17",
    "2015-10-15",
    "2016-06-30",
    "2016-10-06",
    "2017-02-22",
    "2018-08-27",
    "2020-10-14",
];

/// EC2 metadata versions served.
pub const EC2_VERSIONS: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
];

/// `meta_data.json`.
pub fn meta_data_json(md: &InstanceMetadata) -> Value {
    let keys: Vec<Value> = md
        .public_keys
        .iter()
        .map(|(n, k)| json!({"name": n, "type": "ssh", "data": k}))
        .collect();
    let pk: serde_json::Map<String, Value> = md
        .public_keys
        .iter()
        .map(|(n, k)| (n.clone(), json!(k)))
        .collect();
    json!({
        "uuid": md.uuid,
        "meta": md.meta,
        "hostname": md.hostname,
        "name": md.name,
        "launch_index": md.launch_index,
        "availability_zone": md.availability_zone,
        "project_id": md.project_id,
        "devices": [],
        "public_keys": pk,
        "keys": keys,
    })
}

/// `network_data.json` for an instance's ports (links, networks with static addresses and
/// routes, DNS services), in Nova's format.
pub fn network_data(ports: &[(&PortSpec, &NetworkSpec)]) -> Value {
    let mut links = Vec::new();
    let mut networks = Vec::new();
    let mut services = Vec::new();
    for (p, n) in ports {
        let link = crate::names::tap(&p.id);
        links.push(json!({
            "id": link,
            "vif_id": p.id,
            "type": "bridge",
            "mtu": n.mtu,
            "ethernet_mac_address": p.mac.to_string(),
        }));
        for ip in &p.fixed_ips {
            let Some(sn) = n.subnets.iter().find(|s| s.cidr.contains(ip)) else {
                continue;
            };
            let mut routes = Vec::new();
            if let Some(g) = sn.gateway_ip {
                let (net, mask) = if ip.is_ipv4() {
                    ("0.0.0.0", "0.0.0.0")
                } else {
                    ("::", "::")
                };
                routes.push(json!({"network": net, "netmask": mask, "gateway": g.to_string()}));
            }
            for (dst, via) in &sn.host_routes {
                routes.push(json!({"network": dst.network().to_string(),
                    "netmask": dst.netmask().to_string(), "gateway": via.to_string()}));
            }
            let kind = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
            networks.push(json!({
                "id": format!("network{}", networks.len()),
                "type": kind,
                "link": link,
                "ip_address": ip.to_string(),
                "netmask": sn.cidr.netmask().to_string(),
                "routes": routes,
                "network_id": n.id,
                "services": sn.dns_nameservers.iter()
                    .map(|d| json!({"type": "dns", "address": d.to_string()})).collect::<Vec<_>>(),
            }));
            for d in &sn.dns_nameservers {
                let s = json!({"type": "dns", "address": d.to_string()});
                if !services.contains(&s) {
                    services.push(s);
                }
            }
        }
    }
    json!({"links": links, "networks": networks, "services": services})
}

fn vendor_data(md: &InstanceMetadata) -> Value {
    if md.vendor_data.is_null() {
        json!({})
    } else {
        md.vendor_data.clone()
    }
}

/// The EC2 `meta-data` tree as (key, value) leaves; `public-keys` handled separately.
fn ec2_leaves(md: &InstanceMetadata) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("ami-id", "ami-00000001".to_string()),
        ("ami-launch-index", md.launch_index.to_string()),
        ("hostname", md.hostname.clone()),
        ("instance-id", md.ec2_instance_id.clone()),
        ("instance-type", md.instance_type.clone()),
        ("local-hostname", md.hostname.clone()),
        ("placement/availability-zone", md.availability_zone.clone()),
        ("public-hostname", md.hostname.clone()),
        ("security-groups", md.security_groups.join("\n")),
    ];
    if let Some(ip) = md.local_ipv4 {
        v.push(("local-ipv4", ip.to_string()));
    }
    if let Some(ip) = md.public_ipv4 {
        v.push(("public-ipv4", ip.to_string()));
    }
    v.sort();
    v
}

/// `ec2/latest/meta-data.json` of the config drive.
pub fn ec2_meta_data_json(md: &InstanceMetadata) -> Value {
    let mut o = serde_json::Map::new();
    for (k, val) in ec2_leaves(md) {
        if let Some((a, b)) = k.split_once('/') {
            let e = o.entry(a.to_string()).or_insert_with(|| json!({}));
            e[b] = json!(val);
        } else {
            o.insert(k.to_string(), json!(val));
        }
    }
    let keys: serde_json::Map<String, Value> = md
        .public_keys
        .iter()
        .enumerate()
        .map(|(i, (n, k))| (format!("{i}={n}"), json!({"openssh-key": k})))
        .collect();
    o.insert("public-keys".into(), Value::Object(keys));
    Value::Object(o)
}

/// The OpenStack documents of one version directory: (file name, bytes).
pub fn openstack_files(md: &InstanceMetadata) -> Vec<(&'static str, Vec<u8>)> {
    let mut v = vec![
        (
            "meta_data.json",
            meta_data_json(md).to_string().into_bytes(),
        ),
        (
            "network_data.json",
            md.network_data.to_string().into_bytes(),
        ),
        ("vendor_data.json", vendor_data(md).to_string().into_bytes()),
        ("vendor_data2.json", json!({}).to_string().into_bytes()),
    ];
    if let Some(u) = &md.user_data {
        v.push(("user_data", u.clone()));
    }
    v
}

fn text(s: impl Into<String>) -> Response {
    (
        StatusCode::OK,
        [("content-type", "text/plain; charset=UTF-8")],
        s.into(),
    )
        .into_response()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [("content-type", "text/plain; charset=UTF-8")],
        "404 Not Found\n\nThe resource could not be found.\n",
    )
        .into_response()
}

/// Answer one GET for an instance (no instance: 404). Pure, for tests and other servers.
pub fn answer(md: &InstanceMetadata, path: &str) -> Response {
    let path = path.trim_start_matches('/');
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [""] => {
            let mut v: Vec<&str> = EC2_VERSIONS.to_vec();
            v.push("latest");
            text(v.join("\n"))
        }
        ["openstack"] | ["openstack", ""] => {
            let mut v: Vec<&str> = OPENSTACK_VERSIONS.to_vec();
            v.push("latest");
            text(v.join("\n"))
        }
        ["openstack", ver, rest @ ..] => {
            if *ver != "latest" && !OPENSTACK_VERSIONS.contains(ver) {
                return not_found();
            }
            let files = openstack_files(md);
            match rest {
                [] | [""] => text(files.iter().map(|(n, _)| *n).collect::<Vec<_>>().join("\n")),
                [name] => match files.into_iter().find(|(n, _)| n == name) {
                    Some((n, body)) => {
                        let ct = if n.ends_with(".json") {
                            "application/json"
                        } else {
                            "application/octet-stream"
                        };
                        (StatusCode::OK, [("content-type", ct)], body).into_response()
                    }
                    None => not_found(),
                },
                _ => not_found(),
            }
        }
        [ver, rest @ ..] => {
            if *ver != "latest" && !EC2_VERSIONS.contains(ver) {
                return not_found();
            }
            match rest {
                [] | [""] => {
                    let mut v = vec!["meta-data/"];
                    if md.user_data.is_some() {
                        v.push("user-data");
                    }
                    text(v.join("\n"))
                }
                ["user-data"] => match &md.user_data {
                    Some(u) => (
                        StatusCode::OK,
                        [("content-type", "application/octet-stream")],
                        u.clone(),
                    )
                        .into_response(),
                    None => not_found(),
                },
                ["meta-data", tail @ ..] => ec2_meta(md, tail),
                _ => not_found(),
            }
        }
        _ => not_found(),
    }
}

fn ec2_meta(md: &InstanceMetadata, tail: &[&str]) -> Response {
    let key = tail.join("/");
    let key = key.trim_end_matches('/');
    let leaves = ec2_leaves(md);
    if key.is_empty() {
        let mut top: Vec<String> = Vec::new();
        for (k, _) in &leaves {
            let t = match k.split_once('/') {
                Some((a, _)) => format!("{a}/"),
                None => k.to_string(),
            };
            if !top.contains(&t) {
                top.push(t);
            }
        }
        if !md.public_keys.is_empty() {
            top.push("public-keys/".into());
        }
        top.sort();
        return text(top.join("\n"));
    }
    if let Some((_, v)) = leaves.iter().find(|(k, _)| *k == key) {
        return text(v.clone());
    }
    let sub: Vec<String> = leaves
        .iter()
        .filter_map(|(k, _)| k.strip_prefix(&format!("{key}/")).map(|s| s.to_string()))
        .collect();
    if !sub.is_empty() {
        return text(sub.join("\n"));
    }
    // public-keys, public-keys/N, public-keys/N/openssh-key
    let pk: Vec<&str> = key.split('/').collect();
    match pk.as_slice() {
        ["public-keys"] if !md.public_keys.is_empty() => text(
            md.public_keys
                .iter()
                .enumerate()
                .map(|(i, (n, _))| format!("{i}={n}"))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        ["public-keys", n] => match n.parse::<usize>().ok().and_then(|i| md.public_keys.get(i)) {
            Some(_) => text("openssh-key"),
            None => not_found(),
        },
        ["public-keys", n, "openssh-key"] => {
            match n.parse::<usize>().ok().and_then(|i| md.public_keys.get(i)) {
                Some((_, k)) => text(k.clone()),
                None => not_found(),
            }
        }
        _ => not_found(),
    }
}

#[derive(Clone)]
struct AppState {
    network_id: String,
    source: Arc<dyn MetadataSource>,
}

async fn handle(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
) -> Response {
    let ip = match peer.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        ip => ip,
    };
    match st.source.instance(&st.network_id, ip).await {
        Some(md) => answer(&md, uri.path()),
        None => not_found(),
    }
}

/// A running metadata server; stops when dropped.
pub struct MetadataServer {
    task: tokio::task::JoinHandle<()>,
    addr: SocketAddr,
}

impl Drop for MetadataServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MetadataServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The axum router of the metadata service for one network (GET only).
pub fn router(network_id: &str, source: Arc<dyn MetadataSource>) -> axum::Router {
    axum::Router::new()
        .fallback(axum::routing::get(handle))
        .with_state(AppState {
            network_id: network_id.to_string(),
            source,
        })
}

/// Serve the metadata service on `addr` inside namespace `ns` (the listening socket is opened
/// on a thread that entered the namespace).
pub async fn serve_in(
    ns: &str,
    addr: SocketAddr,
    network_id: &str,
    source: Arc<dyn MetadataSource>,
) -> Result<MetadataServer, Error> {
    let std_listener = netns::run_in(ns, move || -> std::io::Result<std::net::TcpListener> {
        let l = std::net::TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        Ok(l)
    })?
    .map_err(|e| Error::Os(format!("bind metadata {addr} in {ns}: {e}")))?;
    let listener = tokio::net::TcpListener::from_std(std_listener)
        .map_err(|e| Error::Os(format!("metadata listener: {e}")))?;
    let app = router(network_id, source);
    let task = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Ok(MetadataServer { task, addr })
}

/// A tiny in-memory [`MetadataSource`]: (network, IP) -> instance.
#[derive(Default)]
pub struct StaticMetadata {
    pub entries: std::sync::Mutex<Vec<(String, IpAddr, InstanceMetadata)>>,
}

#[async_trait]
impl MetadataSource for StaticMetadata {
    async fn instance(&self, network_id: &str, ip: IpAddr) -> Option<InstanceMetadata> {
        self.entries
            .lock()
            .ok()?
            .iter()
            .find(|(n, i, _)| n == network_id && *i == ip)
            .map(|(_, _, m)| m.clone())
    }
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&base64::engine::general_purpose::STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(t) => base64::engine::general_purpose::STANDARD
                .decode(t.as_bytes())
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// An EC2-style id from a number (`i-0000002a`).
pub fn ec2_id(n: u64) -> String {
    format!("i-{n:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md() -> InstanceMetadata {
        InstanceMetadata {
            uuid: "u-1".into(),
            name: "vm1".into(),
            hostname: "vm1".into(),
            ec2_instance_id: ec2_id(42),
            public_keys: vec![("k1".into(), "ssh-ed25519 AAAA test".into())],
            user_data: Some(b"#!/bin/sh\necho hi\n".to_vec()),
            local_ipv4: Some("10.0.0.5".parse().unwrap()),
            ..Default::default()
        }
    }

    async fn body(r: Response) -> (StatusCode, String) {
        let s = r.status();
        let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (s, String::from_utf8_lossy(&b).into_owned())
    }

    #[tokio::test]
    async fn paths() {
        let m = md();
        let (s, b) = body(answer(&m, "/openstack/latest/meta_data.json")).await;
        assert_eq!(s, StatusCode::OK);
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["uuid"], "u-1");
        assert_eq!(v["public_keys"]["k1"], "ssh-ed25519 AAAA test");
        assert_eq!(
            body(answer(&m, "/openstack/2012-08-10/user_data")).await.1,
            "#!/bin/sh\necho hi\n"
        );
        assert_eq!(
            body(answer(&m, "/latest/user-data")).await.1,
            "#!/bin/sh\necho hi\n"
        );
        assert_eq!(
            body(answer(&m, "/latest/meta-data/instance-id")).await.1,
            "i-0000002a"
        );
        assert_eq!(
            body(answer(&m, "/2009-04-04/meta-data/local-ipv4")).await.1,
            "10.0.0.5"
        );
        assert_eq!(
            body(answer(&m, "/latest/meta-data/public-keys/")).await.1,
            "0=k1"
        );
        assert_eq!(
            body(answer(&m, "/latest/meta-data/public-keys/0/openssh-key"))
                .await
                .1,
            "ssh-ed25519 AAAA test"
        );
        let (_, listing) = body(answer(&m, "/latest/meta-data/")).await;
        assert!(
            listing.contains("placement/") && listing.contains("public-keys/"),
            "{listing}"
        );
        assert_eq!(
            body(answer(&m, "/latest/meta-data/placement/")).await.1,
            "availability-zone"
        );
        assert_eq!(
            answer(&m, "/openstack/1999-01-01/meta_data.json").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            answer(&m, "/latest/meta-data/nope").status(),
            StatusCode::NOT_FOUND
        );
        let mut m2 = m.clone();
        m2.user_data = None;
        assert_eq!(
            answer(&m2, "/openstack/latest/user_data").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            answer(&m2, "/latest/user-data").status(),
            StatusCode::NOT_FOUND
        );
    }
}
