//! Parsing of `/servers` request bodies and query strings into the
//! engine's requests (schemas in `crate::validate`).

use std::collections::BTreeMap;

use lifeboat_core::{Actor, Status};
use lifeboat_engine::{CreateServer, ListServers, NetworkRequest, UpdateServer};
use serde_json::Value;

use crate::fault::{Fault, R};
use crate::microversion::Mv;
use crate::wire::{id_from_href, invalid, Pairs};

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

pub(crate) fn string_map(o: &Value, k: &str) -> R<BTreeMap<String, String>> {
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
    let mut auto_network = false;
    let mut networks = vec![];
    match &s["networks"] {
        Value::Null => {
            if mv.ge(37) {
                return Err(invalid("server", "'networks' is a required property"));
            }
        }
        Value::String(x) if x == "auto" && mv.ge(37) => auto_network = true,
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
        auto_network,
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
