//! `/servers`: create, list, show, update, delete, and the server
//! sub-resources (metadata, tags, ips, security groups, topology, instance
//! actions). Rendering follows `nova/api/openstack/compute/views/servers.py`
//! per microversion.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lifeboat_core::{Actor, Image, Server, Status, VmState, Workflow};
use lifeboat_engine::{CreateServer, ListServers, NetworkRequest, UpdateServer};
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::fault::{Fault, R};
use crate::microversion::Mv;
use crate::{isotime, naive_time, Ctx};

/// Which of Nova's server views to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// `GET /servers/{id}` (server_groups from 2.71).
    Show,
    /// One entry of `GET /servers/detail`.
    Detail,
    /// PUT and rebuild responses: the reduced show view before 2.75, the
    /// full one (with server_groups) from 2.75.
    Update,
}

/// What rendering needs besides the server.
pub struct Render<'a> {
    /// Front state.
    pub ctx: &'a Ctx,
    /// Request microversion.
    pub mv: Mv,
    /// Caller (admin-only fields).
    pub actor: &'a Actor,
    /// Images by id (for the 2.98 embedded image properties).
    pub images: HashMap<String, Image>,
    /// Host name → host_status (`UP`, `DOWN`, `MAINTENANCE`).
    pub host_status: HashMap<String, &'static str>,
}

impl<'a> Render<'a> {
    /// Loads what the microversion and the caller need.
    pub async fn load(ctx: &'a Ctx, mv: Mv, actor: &'a Actor) -> R<Render<'a>> {
        let images = if mv.ge(98) {
            ctx.engine
                .images(actor)
                .await?
                .into_iter()
                .map(|i| (i.id.clone(), i))
                .collect()
        } else {
            HashMap::new()
        };
        let host_status = if mv.ge(16) && actor.is_admin() {
            ctx.engine
                .hosts()
                .await
                .into_iter()
                .map(|(h, up)| {
                    let st = if !up {
                        "DOWN"
                    } else if !h.enabled {
                        "MAINTENANCE"
                    } else {
                        "UP"
                    };
                    (h.name, st)
                })
                .collect()
        } else {
            HashMap::new()
        };
        Ok(Render {
            ctx,
            mv,
            actor,
            images,
            host_status,
        })
    }

    /// `[{"rel": "self", ...}, {"rel": "bookmark", ...}]` of a resource.
    pub fn links(&self, collection: &str, id: &str) -> Value {
        json!([
            {"rel": "self", "href": format!("{}/{collection}/{id}", self.ctx.compute_url())},
            {"rel": "bookmark", "href": format!("{}/{collection}/{id}", self.ctx.bookmark_url())},
        ])
    }

    /// The brief entry of `GET /servers`.
    pub fn basic(&self, s: &Server) -> Value {
        json!({"id": s.id, "name": s.name, "links": self.links("servers", &s.id)})
    }

    fn status(s: &Server) -> Status {
        if s.vm_state == VmState::Deleted {
            Status::Deleted
        } else {
            s.status()
        }
    }

    /// `addresses`; empty while building. `extended` adds the OS-EXT-IPS keys.
    pub fn addresses(s: &Server, extended: bool) -> Value {
        if s.vm_state == VmState::Building {
            return json!({});
        }
        let mut out = Map::new();
        for (net, addrs) in s.addresses() {
            let list: Vec<Value> = addrs
                .into_iter()
                .map(|(addr, ty, mac)| {
                    let mut a = json!({"version": 4, "addr": addr});
                    if extended {
                        a["OS-EXT-IPS:type"] = json!(ty);
                        a["OS-EXT-IPS-MAC:mac_addr"] = json!(mac);
                    }
                    a
                })
                .collect();
            out.insert(net, Value::Array(list));
        }
        Value::Object(out)
    }

    fn image(&self, s: &Server) -> Value {
        let Some(id) = &s.image_id else {
            return json!("");
        };
        let mut v = json!({
            "id": id,
            "links": [{"rel": "bookmark", "href": format!("{}/images/{id}", self.ctx.bookmark_url())}],
        });
        if self.mv.ge(98) {
            let mut props = Map::new();
            if let Some(img) = self.images.get(id) {
                for (k, val) in &img.properties {
                    props.insert(k.clone(), json!(val));
                }
                props.insert("container_format".into(), json!(img.container_format));
                props.insert("disk_format".into(), json!(img.disk_format));
                props.insert("min_disk".into(), json!(img.min_disk.to_string()));
                props.insert("min_ram".into(), json!(img.min_ram.to_string()));
            }
            v["properties"] = Value::Object(props);
        }
        v
    }

    fn flavor(&self, s: &Server) -> Value {
        let f = &s.flavor;
        if self.mv.ge(47) {
            // os_compute_api:os-flavor-extra-specs:index is allowed to
            // project readers by default, so extra_specs is always shown.
            json!({
                "vcpus": f.vcpus,
                "ram": f.ram,
                "disk": f.disk,
                "ephemeral": f.ephemeral,
                "swap": f.swap,
                "original_name": f.original_name,
                "extra_specs": f.extra_specs,
            })
        } else {
            json!({
                "id": f.id,
                "links": [{"rel": "bookmark", "href": format!("{}/flavors/{}", self.ctx.bookmark_url(), f.id)}],
            })
        }
    }

    fn fault(&self, s: &Server) -> Option<Value> {
        let f = s.fault.as_ref()?;
        let mut v = json!({
            "code": f.code,
            "created": isotime(&f.created),
            "message": f.message,
        });
        if let Some(d) = &f.details {
            if self.actor.is_admin() || f.code != 500 {
                v["details"] = json!(d);
            }
        }
        Some(v)
    }

    /// The detailed server view.
    pub fn show(&self, s: &Server, view: View) -> Value {
        let mv = self.mv;
        let admin = self.actor.is_admin();
        // Before 2.75, PUT and rebuild responses skip most extensions.
        let reduced = view == View::Update && !mv.ge(75);
        let status = Self::status(s);
        let mut o = Map::new();
        let mut put = |k: &str, v: Value| {
            o.insert(k.to_string(), v);
        };
        put("id", json!(s.id));
        put("name", json!(s.name));
        put("status", json!(status.as_str()));
        put("tenant_id", json!(s.project_id));
        put("user_id", json!(s.user_id));
        put("metadata", json!(s.metadata));
        put("hostId", json!(s.host_id()));
        put("image", self.image(s));
        put("flavor", self.flavor(s));
        put("created", json!(isotime(&s.created_at)));
        put("updated", json!(isotime(&s.updated_at)));
        put("addresses", Self::addresses(s, !reduced));
        put("accessIPv4", json!(s.access_ipv4));
        put("accessIPv6", json!(s.access_ipv6));
        put("links", self.links("servers", &s.id));
        put("OS-DCF:diskConfig", json!(s.disk_config));
        if matches!(status, Status::Error | Status::Deleted) {
            if let Some(f) = self.fault(s) {
                put("fault", f);
            }
        }
        if matches!(
            status,
            Status::Active
                | Status::Build
                | Status::Rebuild
                | Status::Resize
                | Status::VerifyResize
                | Status::Migrating
        ) {
            put("progress", json!(s.progress));
        }
        if !reduced {
            put(
                "OS-EXT-AZ:availability_zone",
                json!(s.availability_zone.clone().unwrap_or_default()),
            );
            put(
                "config_drive",
                json!(if s.config_drive { "True" } else { "" }),
            );
            put("key_name", json!(s.key_name));
            put(
                "OS-SRV-USG:launched_at",
                json!(s.launched_at.as_ref().map(naive_time)),
            );
            put(
                "OS-SRV-USG:terminated_at",
                json!(s.terminated_at.as_ref().map(naive_time)),
            );
            if view != View::Detail && !s.security_groups.is_empty() {
                put("security_groups", Self::security_groups(s));
            }
            if admin {
                put("OS-EXT-SRV-ATTR:host", json!(s.host));
                put("OS-EXT-SRV-ATTR:instance_name", json!(s.instance_name));
                put("OS-EXT-SRV-ATTR:hypervisor_hostname", json!(s.node));
                if mv.ge(3) {
                    put("OS-EXT-SRV-ATTR:reservation_id", json!(s.reservation_id));
                    put("OS-EXT-SRV-ATTR:launch_index", json!(s.launch_index));
                    put("OS-EXT-SRV-ATTR:hostname", json!(s.hostname));
                    put("OS-EXT-SRV-ATTR:kernel_id", json!(s.kernel_id));
                    put("OS-EXT-SRV-ATTR:ramdisk_id", json!(s.ramdisk_id));
                    put(
                        "OS-EXT-SRV-ATTR:root_device_name",
                        json!(s.root_device_name),
                    );
                    put("OS-EXT-SRV-ATTR:user_data", json!(s.user_data));
                }
            } else if mv.ge(90) {
                put("OS-EXT-SRV-ATTR:hostname", json!(s.hostname));
            }
            put(
                "OS-EXT-STS:task_state",
                json!(s.task_state.map(|t| t.as_str())),
            );
            put("OS-EXT-STS:vm_state", json!(s.vm_state.as_str()));
            put("OS-EXT-STS:power_state", json!(s.power_state.code()));
            put("os-extended-volumes:volumes_attached", json!([]));
            if mv.ge(16) && admin {
                let hs = match &s.host {
                    None => "",
                    Some(h) => self.host_status.get(h).copied().unwrap_or("UNKNOWN"),
                };
                put("host_status", json!(hs));
            }
        }
        if mv.ge(9) {
            put("locked", json!(s.locked));
        }
        if mv.ge(73) {
            put("locked_reason", json!(s.locked_reason));
        }
        if mv.ge(19) {
            put("description", json!(s.description));
        }
        if mv.ge(26) {
            put("tags", json!(s.tags));
        }
        if mv.ge(63) {
            put(
                "trusted_image_certificates",
                json!(s.trusted_image_certificates),
            );
        }
        let groups = match view {
            View::Show => mv.ge(71),
            View::Update => mv.ge(71),
            View::Detail => false,
        };
        if groups {
            put("server_groups", json!(s.server_groups));
        }
        if mv.ge(96) {
            put(
                "pinned_availability_zone",
                json!(s.pinned_availability_zone),
            );
        }
        if mv.ge(100) {
            put("scheduler_hints", json!(s.scheduler_hints));
        }
        Value::Object(o)
    }

    fn security_groups(s: &Server) -> Value {
        json!(s
            .security_groups
            .iter()
            .map(|g| json!({"name": g}))
            .collect::<Vec<_>>())
    }

    /// One entry of `/servers/detail` (security groups added like Nova's
    /// separate pass).
    pub fn detail(&self, s: &Server) -> Value {
        let mut v = self.show(s, View::Detail);
        if !s.security_groups.is_empty() {
            v["security_groups"] = Self::security_groups(s);
        }
        v
    }
}

/// Parses a JSON request body.
pub fn parse_body(b: &Bytes) -> R<Value> {
    if b.is_empty() {
        return Err(Fault::bad_request("The server could not comply with the request since it is either malformed or otherwise incorrect."));
    }
    serde_json::from_slice(b).map_err(|_| Fault::bad_request("Malformed request body"))
}

/// `Invalid input for field/attribute X. ...` (Nova's schema errors).
pub fn invalid(field: &str, why: &str) -> Fault {
    Fault::bad_request(format!("Invalid input for field/attribute {field}. {why}"))
}

/// The id in a reference that may be a URL (`imageRef`, `flavorRef`).
pub fn id_from_href(r: &str) -> String {
    r.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(r)
        .to_string()
}

fn str_field(o: &Value, k: &str) -> R<Option<String>> {
    match &o[k] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(invalid(
            k,
            &format!("Value: {other}. {other} is not of type 'string'"),
        )),
    }
}

fn string_map(o: &Value, k: &str) -> R<BTreeMap<String, String>> {
    match &o[k] {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(m) => m
            .iter()
            .map(|(k2, v)| match v {
                Value::String(s) => Ok((k2.clone(), s.clone())),
                other => Err(invalid(
                    k,
                    &format!("Value: {other}. {other} is not of type 'string'"),
                )),
            })
            .collect(),
        other => Err(invalid(
            k,
            &format!("Value: {other}. {other} is not of type 'object'"),
        )),
    }
}

fn int_field(o: &Value, k: &str) -> R<Option<i64>> {
    match &o[k] {
        Value::Null => Ok(None),
        Value::Number(n) if n.is_i64() => Ok(n.as_i64()),
        Value::String(s) => s
            .parse()
            .map(Some)
            .map_err(|_| invalid(k, &format!("Value: {s}. '{s}' is not of type 'integer'"))),
        other => Err(invalid(
            k,
            &format!("Value: {other}. {other} is not of type 'integer'"),
        )),
    }
}

fn bool_value(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_lowercase().as_str() {
            "true" | "1" | "yes" | "on" | "t" | "y" => Some(true),
            "false" | "0" | "no" | "off" | "f" | "n" | "" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        _ => None,
    }
}

/// Parses `POST /servers` into the engine request.
pub fn parse_create(body: &Value, mv: Mv) -> R<(CreateServer, bool)> {
    crate::validate::server_create(body, mv)?;
    let s = &body["server"];
    if !s.is_object() {
        return Err(invalid("server", "'server' is a required property"));
    }
    let name =
        str_field(s, "name")?.ok_or_else(|| invalid("server", "'name' is a required property"))?;
    let flavor = match &s["flavorRef"] {
        Value::String(f) => id_from_href(f),
        Value::Number(n) => n.to_string(),
        Value::Null => return Err(invalid("server", "'flavorRef' is a required property")),
        other => return Err(invalid("flavorRef", &format!("Value: {other}."))),
    };
    let image = str_field(s, "imageRef")?.map(|i| id_from_href(&i));
    let mut no_network = false;
    let mut networks = vec![];
    match &s["networks"] {
        Value::Null => {
            if mv.ge(37) {
                return Err(invalid("server", "'networks' is a required property"));
            }
        }
        Value::String(x) if x == "auto" && mv.ge(37) => {}
        Value::String(x) if x == "none" && mv.ge(37) => no_network = true,
        Value::Array(list) => {
            for n in list {
                let r = NetworkRequest {
                    network_id: str_field(n, "uuid")?,
                    port_id: str_field(n, "port")?,
                    fixed_ip: str_field(n, "fixed_ip")?,
                };
                if r.network_id.is_none() && r.port_id.is_none() {
                    return Err(Fault::bad_request(
                        "Bad networks format: network uuid is not in proper format ()",
                    ));
                }
                networks.push(r);
            }
        }
        other => {
            return Err(invalid(
                "networks",
                &format!("Value: {other}. {other} is not valid under any of the given schemas"),
            ))
        }
    }
    let min_count = int_field(s, "min_count")?.unwrap_or(1);
    let max_count = int_field(s, "max_count")?.unwrap_or(min_count);
    if min_count < 1 || max_count < 1 {
        return Err(invalid("min_count", "Value must be >= 1"));
    }
    if min_count > max_count {
        return Err(Fault::bad_request("min_count must be <= max_count"));
    }
    let config_drive = match &s["config_drive"] {
        Value::Null => false,
        v => bool_value(v).ok_or_else(|| invalid("config_drive", "Value must be a boolean"))?,
    };
    let mut security_groups = vec![];
    if let Value::Array(gs) = &s["security_groups"] {
        for g in gs {
            if let Some(n) = g["name"].as_str() {
                if !security_groups.iter().any(|x: &String| x == n) {
                    security_groups.push(n.to_string());
                }
            }
        }
    }
    let tags: Vec<String> = match &s["tags"] {
        Value::Null => vec![],
        Value::Array(ts) if mv.ge(52) => ts
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid("tags", ""))
            })
            .collect::<R<_>>()?,
        _ => {
            return Err(invalid(
                "server",
                "Additional properties are not allowed ('tags' was unexpected)",
            ))
        }
    };
    let description = if mv.ge(19) {
        str_field(s, "description")?
    } else if !s["description"].is_null() {
        return Err(invalid(
            "server",
            "Additional properties are not allowed ('description' was unexpected)",
        ));
    } else {
        None
    };
    let hostname = if mv.ge(90) {
        str_field(s, "hostname")?
    } else {
        None
    };
    let host = if mv.ge(74) {
        str_field(s, "host")?
    } else {
        None
    };
    let disk_config = str_field(s, "OS-DCF:diskConfig")?;
    if let Some(d) = &disk_config {
        if d != "AUTO" && d != "MANUAL" {
            return Err(invalid(
                "OS-DCF:diskConfig",
                &format!("Value: {d}. '{d}' is not one of ['AUTO', 'MANUAL']"),
            ));
        }
    }
    let hints: BTreeMap<String, Value> = body
        .get("os:scheduler_hints")
        .or_else(|| body.get("OS-SCH-HNT:scheduler_hints"))
        .and_then(|h| h.as_object())
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let req = CreateServer {
        name,
        flavor,
        image: image.filter(|i| !i.is_empty()),
        networks,
        no_network,
        key_name: str_field(s, "key_name")?,
        metadata: string_map(s, "metadata")?,
        user_data: str_field(s, "user_data")?,
        availability_zone: str_field(s, "availability_zone")?.filter(|z| !z.is_empty()),
        admin_pass: str_field(s, "adminPass")?,
        description,
        tags,
        min_count: u32::try_from(min_count).unwrap_or(u32::MAX),
        max_count: u32::try_from(max_count).unwrap_or(u32::MAX),
        config_drive,
        security_groups,
        hostname,
        scheduler_hints: hints,
        host,
        access_ipv4: str_field(s, "accessIPv4")?,
        access_ipv6: str_field(s, "accessIPv6")?,
        disk_config,
    };
    let return_reservation_id = bool_value(&s["return_reservation_id"]).unwrap_or(false);
    Ok((req, return_reservation_id))
}

/// Parses `PUT /servers/{id}`.
pub fn parse_update(body: &Value, mv: Mv) -> R<UpdateServer> {
    let s = &body["server"];
    if !s.is_object() {
        return Err(invalid("server", "'server' is a required property"));
    }
    let mut u = UpdateServer {
        name: str_field(s, "name")?,
        access_ipv4: str_field(s, "accessIPv4")?,
        access_ipv6: str_field(s, "accessIPv6")?,
        disk_config: str_field(s, "OS-DCF:diskConfig")?,
        ..Default::default()
    };
    if s.get("description").is_some() {
        if !mv.ge(19) {
            return Err(invalid(
                "server",
                "Additional properties are not allowed ('description' was unexpected)",
            ));
        }
        u.description = Some(str_field(s, "description")?);
    }
    if s.get("hostname").is_some() {
        if !mv.ge(90) {
            return Err(invalid(
                "server",
                "Additional properties are not allowed ('hostname' was unexpected)",
            ));
        }
        u.hostname = str_field(s, "hostname")?;
    }
    Ok(u)
}

/// Query string as repeated pairs.
pub type Pairs = Vec<(String, String)>;

fn truthy(v: &str) -> bool {
    !matches!(
        v.to_lowercase().as_str(),
        "0" | "false" | "f" | "off" | "n" | "no"
    )
}

/// Parses `GET /servers[/detail]` filters.
pub fn parse_list(q: &Pairs, mv: Mv, actor: &Actor) -> R<Option<ListServers>> {
    let mut l = ListServers::default();
    let get = |k: &str| q.iter().rev().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    if let Some(v) = get("all_tenants") {
        if truthy(&v) {
            if !actor.is_admin() {
                return Err(Fault::forbidden(
                    "Policy doesn't allow os_compute_api:servers:index:get_all_tenants to be performed.",
                ));
            }
            l.all_projects = true;
            l.project_id = get("project_id").or_else(|| get("tenant_id"));
        }
    }
    let statuses: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "status")
        .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
        .collect();
    if !statuses.is_empty() {
        let mut sts = vec![];
        for s in &statuses {
            match Status::parse(&s.to_uppercase()) {
                Some(st) => sts.push(st),
                None if mv.ge(38) => return Err(Fault::bad_request("Invalid status value")),
                None => return Ok(None),
            }
        }
        l.status = Some(sts);
    }
    l.name = get("name").filter(|n| !n.is_empty());
    if actor.is_admin() {
        l.host = get("host");
        l.deleted = get("deleted").is_some_and(|d| truthy(&d));
    }
    if let Some(cs) = get("changes-since").or_else(|| get("changes_since")) {
        let t = chrono::DateTime::parse_from_rfc3339(&cs)
            .map(|t| t.with_timezone(&chrono::Utc))
            .or_else(|_| {
                chrono::NaiveDateTime::parse_from_str(&cs, "%Y-%m-%dT%H:%M:%S%.f")
                    .map(|n| n.and_utc())
            })
            .map_err(|_| {
                invalid(
                    "changes-since",
                    &format!("Value: {cs}. '{cs}' is not a 'date-time'"),
                )
            })?;
        l.changes_since = Some(t);
    }
    if let Some(lim) = get("limit") {
        let n: i64 = lim.parse().map_err(|_| {
            invalid(
                "limit",
                &format!("Value: {lim}. '{lim}' is not of type 'integer'"),
            )
        })?;
        if n < 0 {
            return Err(invalid(
                "limit",
                &format!("Value: {lim}. {n} is less than the minimum of 0"),
            ));
        }
        l.limit = Some(n.min(1000));
    } else {
        l.limit = Some(1000);
    }
    l.marker = get("marker");
    if let Some(t) = get("tags") {
        if mv.ge(26) {
            l.tags = t
                .split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect();
        }
    }
    l.image = get("image").map(|i| id_from_href(&i));
    l.flavor = get("flavor").map(|f| id_from_href(&f));
    if mv.ge(73) {
        if let Some(lk) = get("locked") {
            l.locked = Some(truthy(&lk));
        }
    }
    Ok(Some(l))
}

/// The `servers_links` next link when a page is full.
pub fn next_link(ctx: &Ctx, path: &str, q: &Pairs, last: &str) -> Value {
    let mut parts: Vec<String> = q
        .iter()
        .filter(|(k, _)| k != "marker")
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    parts.push(format!("marker={}", enc(last)));
    json!([{"rel": "next", "href": format!("{}/{path}?{}", ctx.compute_url(), parts.join("&"))}])
}

/// Percent-encodes a query component.
pub fn enc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

async fn list_common(ctx: &Ctx, mv: Mv, a: &Actor, q: &Pairs, detail: bool) -> R<Json<Value>> {
    let Some(l) = parse_list(q, mv, a)? else {
        return Ok(Json(json!({"servers": []})));
    };
    let limit = l.limit;
    let servers = ctx.engine.list_servers(a, &l).await?;
    let r = Render::load(ctx, mv, a).await?;
    let list: Vec<Value> = servers
        .iter()
        .map(|s| if detail { r.detail(s) } else { r.basic(s) })
        .collect();
    let mut body = json!({ "servers": list });
    if let (Some(n), Some(last)) = (limit, servers.last()) {
        if servers.len() as i64 == n && n > 0 {
            let path = if detail { "servers/detail" } else { "servers" };
            body["servers_links"] = next_link(ctx, path, q, &last.id);
        }
    }
    Ok(Json(body))
}

async fn list(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Query(q): Query<Pairs>,
) -> R<Json<Value>> {
    list_common(&ctx, mv, &a, &q, false).await
}

async fn list_detail(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Query(q): Query<Pairs>,
) -> R<Json<Value>> {
    list_common(&ctx, mv, &a, &q, true).await
}

async fn create(State(ctx): State<Ctx>, mv: Mv, Caller(a): Caller, body: Bytes) -> R<Response> {
    let body = parse_body(&body)?;
    let (req, want_reservation) = parse_create(&body, mv)?;
    let disk_config = req.disk_config.clone().unwrap_or_else(|| "MANUAL".into());
    let groups = if req.security_groups.is_empty() {
        vec!["default".to_string()]
    } else {
        req.security_groups.clone()
    };
    let created = ctx.engine.create_servers(&a, req).await?;
    let first = created
        .first()
        .ok_or_else(|| Fault::bad_request("No server was created."))?;
    if want_reservation {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"reservation_id": first.server.reservation_id})),
        )
            .into_response());
    }
    let r = Render::load(&ctx, mv, &a).await?;
    let body = json!({"server": {
        "id": first.server.id,
        "links": r.links("servers", &first.server.id),
        "OS-DCF:diskConfig": disk_config,
        "security_groups": groups.iter().map(|g| json!({"name": g})).collect::<Vec<_>>(),
        "adminPass": first.admin_pass,
    }});
    let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}/servers/{}",
        ctx.compute_url(),
        first.server.id
    )) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// A visible, not deleted server (Nova's `common.get_instance`).
pub async fn get_server(ctx: &Ctx, a: &Actor, id: &str) -> R<Server> {
    let s = ctx.engine.server(a, id).await?;
    if s.vm_state == VmState::Deleted {
        return Err(Fault::not_found(format!(
            "Instance {id} could not be found."
        )));
    }
    Ok(s)
}

async fn show(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    let s = get_server(&ctx, &a, &id).await?;
    let r = Render::load(&ctx, mv, &a).await?;
    Ok(Json(json!({"server": r.show(&s, View::Show)})))
}

async fn update(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> R<Json<Value>> {
    let body = parse_body(&body)?;
    let u = parse_update(&body, mv)?;
    get_server(&ctx, &a, &id).await?;
    let s = ctx.engine.update_server(&a, &id, u).await?;
    let r = Render::load(&ctx, mv, &a).await?;
    Ok(Json(json!({"server": r.show(&s, View::Update)})))
}

async fn delete(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<StatusCode> {
    get_server(&ctx, &a, &id).await?;
    ctx.engine.delete_server(&a, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- metadata ----

async fn metadata_get(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    let s = get_server(&ctx, &a, &id).await?;
    Ok(Json(json!({"metadata": s.metadata})))
}

fn meta_body(body: &Bytes, key: &str) -> R<BTreeMap<String, String>> {
    let v = parse_body(body)?;
    if !v[key].is_object() {
        return Err(invalid(key, &format!("'{key}' is a required property")));
    }
    string_map(&v, key)
}

/// PUT replaces the metadata, POST merges into it.
async fn set_metadata(
    ctx: &Ctx,
    a: &Actor,
    id: &str,
    body: &Bytes,
    replace: bool,
) -> R<Json<Value>> {
    let m = meta_body(body, "metadata")?;
    get_server(ctx, a, id).await?;
    let out = ctx.engine.set_metadata(a, id, m, replace).await?;
    Ok(Json(json!({"metadata": out})))
}

async fn metadata_replace(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> R<Json<Value>> {
    set_metadata(&ctx, &a, &id, &body, true).await
}

async fn metadata_merge(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> R<Json<Value>> {
    set_metadata(&ctx, &a, &id, &body, false).await
}

async fn metadata_item_get(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path((id, key)): Path<(String, String)>,
) -> R<Json<Value>> {
    let s = get_server(&ctx, &a, &id).await?;
    let v = s
        .metadata
        .get(&key)
        .ok_or_else(|| Fault::not_found("Metadata item was not found"))?;
    Ok(Json(json!({"meta": {key: v}})))
}

async fn metadata_item_put(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path((id, key)): Path<(String, String)>,
    body: Bytes,
) -> R<Json<Value>> {
    let m = meta_body(&body, "meta")?;
    if m.len() != 1 {
        return Err(Fault::bad_request("Request body contains too many items"));
    }
    if !m.contains_key(&key) {
        return Err(Fault::bad_request("Request body and URI mismatch"));
    }
    get_server(&ctx, &a, &id).await?;
    ctx.engine.set_metadata(&a, &id, m.clone(), false).await?;
    Ok(Json(json!({"meta": m})))
}

async fn metadata_item_delete(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path((id, key)): Path<(String, String)>,
) -> R<StatusCode> {
    get_server(&ctx, &a, &id).await?;
    ctx.engine
        .delete_metadata(&a, &id, &key)
        .await
        .map_err(|e| match e {
            lifeboat_engine::ComputeError::NotFound {
                kind: "Metadata item",
                ..
            } => Fault::not_found("Metadata item was not found"),
            e => e.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- tags (2.26+) ----

fn need(mv: Mv, min: u16) -> R<()> {
    if mv.ge(min) {
        Ok(())
    } else {
        Err(Fault::version_not_found())
    }
}

async fn tags_get(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    need(mv, 26)?;
    let s = get_server(&ctx, &a, &id).await?;
    Ok(Json(json!({"tags": s.tags})))
}

async fn tags_put(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> R<Json<Value>> {
    need(mv, 26)?;
    let v = parse_body(&body)?;
    let tags: Vec<String> = v["tags"]
        .as_array()
        .ok_or_else(|| invalid("tags", "'tags' is a required property"))?
        .iter()
        .map(|t| {
            t.as_str()
                .map(str::to_string)
                .ok_or_else(|| invalid("tags", "not a string"))
        })
        .collect::<R<_>>()?;
    get_server(&ctx, &a, &id).await?;
    let out = ctx.engine.set_tags(&a, &id, tags).await?;
    Ok(Json(json!({"tags": out})))
}

async fn tags_delete_all(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<StatusCode> {
    need(mv, 26)?;
    get_server(&ctx, &a, &id).await?;
    ctx.engine.set_tags(&a, &id, vec![]).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn tag_check(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path((id, tag)): Path<(String, String)>,
) -> R<StatusCode> {
    need(mv, 26)?;
    let s = get_server(&ctx, &a, &id).await?;
    if s.tags.contains(&tag) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Fault::not_found(format!(
            "Tag '{tag}' could not be found on instance {id}."
        )))
    }
}

async fn tag_add(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path((id, tag)): Path<(String, String)>,
) -> R<Response> {
    need(mv, 26)?;
    get_server(&ctx, &a, &id).await?;
    let created = ctx.engine.add_tag(&a, &id, &tag).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    };
    let mut resp = status.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}/servers/{id}/tags/{}",
        ctx.compute_url(),
        enc(&tag)
    )) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn tag_delete(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path((id, tag)): Path<(String, String)>,
) -> R<StatusCode> {
    need(mv, 26)?;
    get_server(&ctx, &a, &id).await?;
    ctx.engine
        .remove_tag(&a, &id, &tag)
        .await
        .map_err(|e| match e {
            lifeboat_engine::ComputeError::NotFound { kind: "Tag", .. } => {
                Fault::not_found(format!("Tag '{tag}' could not be found on instance {id}."))
            }
            e => e.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- ips, security groups, topology ----

async fn ips(State(ctx): State<Ctx>, Caller(a): Caller, Path(id): Path<String>) -> R<Json<Value>> {
    let s = get_server(&ctx, &a, &id).await?;
    Ok(Json(json!({"addresses": Render::addresses(&s, false)})))
}

async fn ips_network(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path((id, net)): Path<(String, String)>,
) -> R<Json<Value>> {
    let s = get_server(&ctx, &a, &id).await?;
    let all = Render::addresses(&s, false);
    let list = all
        .get(&net)
        .cloned()
        .ok_or_else(|| Fault::not_found("Instance is not a member of specified network"))?;
    Ok(Json(json!({ net: list })))
}

/// A stable id for a security group name (Lifeboat keeps groups by name).
pub fn security_group_id(project: &str, name: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(Sha256::digest(format!("sg:{project}:{name}")));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

async fn security_groups(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    let s = get_server(&ctx, &a, &id).await?;
    let groups: Vec<Value> = s
        .security_groups
        .iter()
        .map(|g| {
            json!({
                "id": security_group_id(&s.project_id, g),
                "name": g,
                "description": if g == "default" { "Default security group".to_string() } else { g.clone() },
                "tenant_id": s.project_id,
                "rules": [],
            })
        })
        .collect();
    Ok(Json(json!({"security_groups": groups})))
}

async fn topology(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    need(mv, 78)?;
    get_server(&ctx, &a, &id).await?;
    // Lifeboat servers have no NUMA topology: Nova's answer for those.
    Ok(Json(json!({"nodes": [], "pagesize_kb": null})))
}

// ---- instance actions ----

/// Nova's instance action name of a workflow kind.
pub fn action_name(kind: &str) -> &str {
    match kind {
        "soft_delete" | "force_delete" => "delete",
        "reboot_soft" | "reboot_hard" => "reboot",
        "confirm_resize" => "confirmResize",
        "revert_resize" => "revertResize",
        "create_image" => "createImage",
        "create_backup" => "backup",
        "change_password" => "changePassword",
        "shelve_offload" => "shelveOffload",
        "live_migrate" => "live-migration",
        "reset_state" => "resetState",
        other => other,
    }
}

fn action_json(w: &Workflow, server_id: &str, mv: Mv) -> Value {
    let failed = matches!(
        w.state,
        lifeboat_core::WorkflowState::Failed | lifeboat_core::WorkflowState::RolledBack
    );
    let mut v = json!({
        "action": action_name(&w.kind),
        "instance_uuid": server_id,
        "message": if failed { json!("Error") } else { Value::Null },
        "project_id": w.project_id,
        "request_id": w.request_id,
        "start_time": naive_time(&w.created_at),
        "user_id": w.user_id,
    });
    if mv.ge(58) {
        v["updated_at"] = json!(naive_time(&w.updated_at));
    }
    v
}

async fn instance_actions(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    let s = ctx.engine.server(&a, &id).await?;
    let wfs = ctx.engine.server_workflows(&a, &s.id).await?;
    Ok(Json(
        json!({"instanceActions": wfs.iter().map(|w| action_json(w, &s.id, mv)).collect::<Vec<_>>()}),
    ))
}

async fn instance_action(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path((id, req)): Path<(String, String)>,
) -> R<Json<Value>> {
    let s = ctx.engine.server(&a, &id).await?;
    let wfs = ctx.engine.server_workflows(&a, &s.id).await?;
    let w = wfs
        .iter()
        .find(|w| w.request_id == req)
        .ok_or_else(|| Fault::not_found(format!("Action {req} could not be found.")))?;
    let mut v = action_json(w, &s.id, mv);
    if a.is_admin() || mv.ge(51) {
        let events: Vec<Value> = w
            .steps
            .iter()
            .filter(|st| st.started_at.is_some())
            .map(|st| {
                let result = match st.state {
                    lifeboat_core::StepState::Done => json!("Success"),
                    lifeboat_core::StepState::Failed => json!("Error"),
                    lifeboat_core::StepState::Undone => json!("Error"),
                    _ => Value::Null,
                };
                let mut e = json!({
                    "event": format!("compute_{}", st.name),
                    "start_time": st.started_at.as_ref().map(naive_time),
                    "finish_time": st.finished_at.as_ref().map(naive_time),
                    "result": result,
                });
                if a.is_admin() {
                    e["traceback"] = Value::Null;
                }
                if mv.ge(62) {
                    if a.is_admin() {
                        e["host"] = json!(s.host);
                    }
                    e["hostId"] = json!(s.host_id());
                }
                if mv.ge(84) {
                    e["details"] = Value::Null;
                }
                e
            })
            .collect();
        v["events"] = json!(events);
    }
    Ok(Json(json!({"instanceAction": v})))
}

/// The server routes.
pub fn routes() -> Router<Ctx> {
    const P: &str = "/compute/v2.1/servers";
    Router::new()
        .route(P, get(list).post(create))
        .route(&format!("{P}/detail"), get(list_detail))
        .route(&format!("{P}/:id"), get(show).put(update).delete(delete))
        .route(
            &format!("{P}/:id/metadata"),
            get(metadata_get).put(metadata_replace).post(metadata_merge),
        )
        .route(
            &format!("{P}/:id/metadata/:key"),
            get(metadata_item_get)
                .put(metadata_item_put)
                .delete(metadata_item_delete),
        )
        .route(
            &format!("{P}/:id/tags"),
            get(tags_get).put(tags_put).delete(tags_delete_all),
        )
        .route(
            &format!("{P}/:id/tags/:tag"),
            get(tag_check).put(tag_add).delete(tag_delete),
        )
        .route(&format!("{P}/:id/ips"), get(ips))
        .route(&format!("{P}/:id/ips/:network"), get(ips_network))
        .route(&format!("{P}/:id/os-security-groups"), get(security_groups))
        .route(&format!("{P}/:id/topology"), get(topology))
        .route(
            &format!("{P}/:id/os-instance-actions"),
            get(instance_actions),
        )
        .route(
            &format!("{P}/:id/os-instance-actions/:req"),
            get(instance_action),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
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
            "os:scheduler_hints": {"group": "g"}});
        let (c, res) = parse_create(&body, Mv(52)).unwrap();
        assert!(!res);
        assert_eq!(c.image.as_deref(), Some("abc"));
        assert_eq!(c.flavor, "2");
        assert_eq!(c.networks[0].fixed_ip.as_deref(), Some("10.0.0.9"));
        assert_eq!((c.min_count, c.max_count), (2, 3));
        assert!(c.config_drive);
        assert_eq!(c.tags, vec!["t"]);
        assert_eq!(c.scheduler_hints["group"], "g");
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
}
