//! OpenStack Networking API v2.0 (Neutron) at `/network/v2.0`: networks,
//! subnets, ports, floating IPs, security groups and rules, routers,
//! extensions, tags, filters, `fields`, sorting and pagination.
//!
//! Handlers parse and render; the rules are the engine's
//! ([`lifeboat_engine::neutron`]). Errors use Neutron's fault body
//! `{"NeutronError": {"type", "message", "detail"}}`.

pub mod extensions;
pub mod floating_ips;
pub mod networks;
pub mod ports;
pub mod routers;
pub mod security_groups;
pub mod subnets;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use lifeboat_core::{Actor, Time};
use lifeboat_engine::neutron::{NetError, NetErrorKind};
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::Ctx;

/// A Neutron fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeutronFault(pub NetError);

/// Result of a networking handler.
pub type NR<T> = Result<T, NeutronFault>;

impl From<NetError> for NeutronFault {
    fn from(e: NetError) -> Self {
        NeutronFault(e)
    }
}

impl IntoResponse for NeutronFault {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = match e.kind {
            NetErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            NetErrorKind::Forbidden => StatusCode::FORBIDDEN,
            NetErrorKind::NotFound => StatusCode::NOT_FOUND,
            NetErrorKind::Conflict => StatusCode::CONFLICT,
            NetErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (
            status,
            Json(json!({"NeutronError": {"type": e.reason, "message": e.message, "detail": ""}})),
        )
            .into_response()
    }
}

/// `{public}/network`.
pub fn network_url(ctx: &Ctx) -> String {
    format!("{}/network", ctx.public_url)
}

/// Neutron's timestamps: `2016-03-08T20:19:41Z`.
pub fn ts(t: &Time) -> Value {
    Value::String(crate::isotime(t))
}

/// Query string as repeated pairs.
pub type Pairs = Vec<(String, String)>;

/// Parses `{"<resource>": {...}}`, refusing attributes not in `allowed`.
pub fn body_of(body: &Bytes, resource: &str, allowed: &[&str]) -> NR<Map<String, Value>> {
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        NetError::bad_request("Malformed request body: The server could not comply with the request since it is either malformed or otherwise incorrect.")
    })?;
    let Some(Value::Object(m)) = v.get(resource).cloned() else {
        return Err(
            NetError::bad_request(format!("Unable to find '{resource}' in request body")).into(),
        );
    };
    let unknown: Vec<&String> = m
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .collect();
    if !unknown.is_empty() {
        let names: Vec<String> = unknown.iter().map(|k| format!("'{k}'")).collect();
        return Err(NetError::bad_request(format!(
            "Unrecognized attribute(s) {}",
            names.join(", ")
        ))
        .into());
    }
    Ok(m)
}

/// A string attribute.
pub fn opt_str(m: &Map<String, Value>, k: &str) -> NR<Option<String>> {
    match m.get(k) {
        None => Ok(None),
        Some(Value::String(s)) => {
            if s.len() > 255 && (k == "name" || k.ends_with("_id")) {
                return Err(NetError::invalid_attr(
                    k,
                    format!("'{s}' exceeds maximum length of 255"),
                )
                .into());
            }
            Ok(Some(s.clone()))
        }
        Some(Value::Null) if k == "description" => Ok(Some(String::new())),
        Some(v) => Err(NetError::invalid_attr(k, format!("'{v}' is not a valid string")).into()),
    }
}

/// A nullable string attribute: None absent, Some(None) null.
pub fn opt_nullable(m: &Map<String, Value>, k: &str) -> NR<Option<Option<String>>> {
    match m.get(k) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(v) => Err(NetError::invalid_attr(k, format!("'{v}' is not a valid string")).into()),
    }
}

/// A boolean attribute (Neutron's `convert_to_boolean`).
pub fn opt_bool(m: &Map<String, Value>, k: &str) -> NR<Option<bool>> {
    match m.get(k) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") || s == "1" => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") || s == "0" => Ok(Some(false)),
        Some(Value::Number(n)) if n.as_i64() == Some(1) => Ok(Some(true)),
        Some(Value::Number(n)) if n.as_i64() == Some(0) => Ok(Some(false)),
        Some(v) => {
            let s = match v {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            Err(NetError::invalid_attr(k, format!("'{s}' cannot be converted to boolean")).into())
        }
    }
}

/// An integer attribute (numbers or numeric strings).
pub fn opt_u32(m: &Map<String, Value>, k: &str) -> NR<Option<u32>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|x| x <= u32::MAX as u64) => {
            Ok(Some(n.as_u64().unwrap_or(0) as u32))
        }
        Some(Value::String(s)) if s.parse::<u32>().is_ok() => Ok(s.parse().ok()),
        Some(v) => {
            let s = match v {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            Err(NetError::invalid_attr(k, format!("'{s}' is not an integer")).into())
        }
    }
}

/// A list attribute deserialised into `T`.
pub fn opt_list<T: serde::de::DeserializeOwned>(
    m: &Map<String, Value>,
    k: &str,
) -> NR<Option<Vec<T>>> {
    match m.get(k) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(vec![])),
        Some(v @ Value::Array(_)) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|_| NetError::invalid_attr(k, format!("'{v}' is not a valid list")).into()),
        Some(v) => Err(NetError::invalid_attr(k, format!("'{v}' is not a list")).into()),
    }
}

/// The project named in a body (`project_id` or `tenant_id`).
pub fn project_of(m: &Map<String, Value>) -> NR<Option<String>> {
    Ok(opt_str(m, "project_id")?.or(opt_str(m, "tenant_id")?))
}

/// Adds the owner, tags and standard attributes to a rendered resource.
pub fn standard(
    mut v: Map<String, Value>,
    project: &str,
    tags: Vec<String>,
    created: &Time,
    updated: &Time,
    revision: u64,
) -> Value {
    v.insert("tenant_id".into(), json!(project));
    v.insert("project_id".into(), json!(project));
    v.insert("tags".into(), json!(tags));
    v.insert("created_at".into(), ts(created));
    v.insert("updated_at".into(), ts(updated));
    v.insert("revision_number".into(), json!(revision));
    Value::Object(v)
}

const RESERVED: &[&str] = &[
    "limit",
    "marker",
    "page_reverse",
    "sort_key",
    "sort_dir",
    "fields",
    "tags",
    "tags-any",
    "not-tags",
    "not-tags-any",
];

fn matches(item: &Value, key: &str, wanted: &[&str]) -> bool {
    let Some(have) = item.get(key) else {
        return true; // unknown filters are ignored
    };
    if key == "fixed_ips" {
        // fixed_ips=ip_address=10.0.0.5 / fixed_ips=subnet_id=...
        return wanted.iter().all(|w| {
            let (k, val) = w.split_once('=').unwrap_or(("ip_address", w));
            have.as_array().is_some_and(|a| {
                a.iter().any(|f| {
                    f.get(k).and_then(|x| x.as_str()).is_some_and(|s| {
                        if k == "ip_address_substr" {
                            s.contains(val)
                        } else {
                            s == val
                        }
                    })
                })
            })
        });
    }
    wanted.iter().any(|w| match have {
        Value::String(s) => s == w,
        Value::Bool(b) => w.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Value::Number(n) => n.to_string() == *w,
        Value::Null => w.is_empty() || w.eq_ignore_ascii_case("none"),
        Value::Array(a) => a.iter().any(|x| x.as_str() == Some(w)),
        _ => false,
    })
}

/// Renders a collection: filters, tag filters, sorting, marker/limit with
/// `<plural>_links`, and `fields`.
pub fn collection(ctx: &Ctx, plural: &str, items: Vec<Value>, q: &Pairs) -> NR<Response> {
    let mut filters: Vec<(String, Vec<String>)> = vec![];
    for (k, v) in q {
        if RESERVED.contains(&k.as_str()) {
            continue;
        }
        match filters.iter_mut().find(|(fk, _)| fk == k) {
            Some((_, vs)) => vs.push(v.clone()),
            None => filters.push((k.clone(), vec![v.clone()])),
        }
    }
    let tag_list = |key: &str| -> Vec<String> {
        q.iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let (all_tags, any_tags, not_tags, not_any) = (
        tag_list("tags"),
        tag_list("tags-any"),
        tag_list("not-tags"),
        tag_list("not-tags-any"),
    );
    let has = |i: &Value, t: &str| {
        i.get("tags")
            .and_then(|x| x.as_array())
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(t)))
    };
    let mut items: Vec<Value> = items
        .into_iter()
        .filter(|i| {
            filters.iter().all(|(k, vs)| {
                let vs: Vec<&str> = vs.iter().map(String::as_str).collect();
                matches(i, k, &vs)
            })
        })
        .filter(|i| all_tags.iter().all(|t| has(i, t)))
        .filter(|i| any_tags.is_empty() || any_tags.iter().any(|t| has(i, t)))
        .filter(|i| not_tags.is_empty() || !not_tags.iter().all(|t| has(i, t)))
        .filter(|i| !not_any.iter().any(|t| has(i, t)))
        .collect();
    let sort_keys: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "sort_key")
        .map(|(_, v)| v.as_str())
        .collect();
    let sort_dirs: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "sort_dir")
        .map(|(_, v)| v.as_str())
        .collect();
    for d in &sort_dirs {
        if *d != "asc" && *d != "desc" {
            return Err(
                NetError::bad_request(format!("Sort direction {d} is not supported")).into(),
            );
        }
    }
    let key_of = |v: &Value, k: &str| -> String {
        match v.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => format!("{:020}", n.as_u64().unwrap_or(0)),
            Some(x) => x.to_string(),
            None => String::new(),
        }
    };
    let limit: Option<usize> = match q.iter().find(|(k, _)| k == "limit") {
        Some((_, v)) => Some(v.parse().map_err(|_| {
            NetError::bad_request(format!(
                "Invalid input for limit. Reason: '{v}' is not an integer."
            ))
        })?),
        None => None,
    };
    if !sort_keys.is_empty() || limit.is_some() {
        let mut keys: Vec<(String, bool)> = sort_keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.to_string(), sort_dirs.get(i).copied() == Some("desc")))
            .collect();
        if !keys.iter().any(|(k, _)| k == "id") {
            keys.push(("id".into(), false));
        }
        items.sort_by(|a, b| {
            for (k, desc) in &keys {
                let o = key_of(a, k).cmp(&key_of(b, k));
                let o = if *desc { o.reverse() } else { o };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            std::cmp::Ordering::Equal
        });
    }
    let marker = q
        .iter()
        .find(|(k, _)| k == "marker")
        .map(|(_, v)| v.clone());
    if let Some(m) = &marker {
        match items.iter().position(|i| i["id"].as_str() == Some(m)) {
            Some(p) => {
                items.drain(..=p);
            }
            None => {
                return Err(NetError::bad_request(format!("Marker {m} not found")).into());
            }
        }
    }
    let mut links = vec![];
    if let Some(l) = limit.filter(|l| *l > 0) {
        if items.len() > l {
            items.truncate(l);
            let last = items.last().and_then(|i| i["id"].as_str()).unwrap_or("");
            let mut qs: Vec<String> = q
                .iter()
                .filter(|(k, _)| k != "marker" && k != "page_reverse")
                .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
                .collect();
            qs.push(format!("marker={last}"));
            links.push(json!({"rel": "next", "href": format!("{}/v2.0/{plural}?{}", network_url(ctx), qs.join("&"))}));
        }
        if let (Some(_), Some(first)) = (&marker, items.first().and_then(|i| i["id"].as_str())) {
            let mut qs: Vec<String> = q
                .iter()
                .filter(|(k, _)| k != "marker" && k != "page_reverse")
                .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
                .collect();
            qs.push(format!("marker={first}&page_reverse=True"));
            links.push(json!({"rel": "previous", "href": format!("{}/v2.0/{plural}?{}", network_url(ctx), qs.join("&"))}));
        }
    }
    let items: Vec<Value> = items.into_iter().map(|i| select_fields(i, q)).collect();
    let mut body = Map::new();
    body.insert(plural.into(), Value::Array(items));
    if !links.is_empty() {
        body.insert(format!("{plural}_links"), Value::Array(links));
    }
    Ok(Json(Value::Object(body)).into_response())
}

fn enc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                o.push(b as char)
            }
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

/// Keeps only the `fields` asked for, if any.
pub fn select_fields(v: Value, q: &Pairs) -> Value {
    let fields: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "fields")
        .flat_map(|(_, v)| v.split(','))
        .collect();
    if fields.is_empty() {
        return v;
    }
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| fields.contains(&k.as_str()))
                .collect(),
        ),
        v => v,
    }
}

/// One resource: `{"<singular>": ...}` with `fields` applied.
pub fn one(singular: &str, v: Value, q: &Pairs) -> Response {
    Json(json!({ singular: select_fields(v, q) })).into_response()
}

/// 201 with `{"<singular>": ...}`.
pub fn created(singular: &str, v: Value) -> Response {
    (StatusCode::CREATED, Json(json!({ singular: v }))).into_response()
}

/// Checks that `id` names a resource of `kind` the actor may change and
/// returns it (for the tag routes).
async fn tag_target(ctx: &Ctx, a: &Actor, kind: &str, id: &str, write: bool) -> NR<()> {
    let e = &ctx.engine;
    let owner = match kind {
        "networks" => e.net_get(a, id).await?.attrs.project_id,
        "subnets" => e.subnet_get(a, id).await?.project_id,
        "ports" => e.port_get(a, id).await?.port.project_id,
        "floatingips" => e.fip_get(a, id).await?.fip.project_id,
        "security-groups" => e.sg_get(a, id).await?.project_id,
        "routers" => e.router_get(a, id).await?.project_id,
        _ => return Err(NeutronFault(resource_not_found())),
    };
    if write && !(a.is_admin() || (a.role >= lifeboat_core::Role::Member && a.project_id == owner))
    {
        return Err(NeutronFault(NetError {
            kind: NetErrorKind::Forbidden,
            reason: "PolicyNotAuthorized",
            message: "rule:update_tags is disallowed by policy".into(),
        }));
    }
    Ok(())
}

fn resource_not_found() -> NetError {
    NetError {
        kind: NetErrorKind::NotFound,
        reason: "HTTPNotFound",
        message: "The resource could not be found.".into(),
    }
}

/// (kind, id, tag) of a `/network/v2.0/{kind}/{id}/tags[/{tag}]` path.
fn tag_path(uri: &Uri) -> (String, String, String) {
    let parts: Vec<&str> = uri.path().split('/').collect();
    // ["", "network", "v2.0", kind, id, "tags", tag?]
    let at = |i: usize| parts.get(i).map(|s| s.to_string()).unwrap_or_default();
    (at(3), at(4), at(6))
}

async fn tags_get(State(ctx): State<Ctx>, Caller(a): Caller, uri: Uri) -> NR<Response> {
    let (kind, id, _) = tag_path(&uri);
    tag_target(&ctx, &a, &kind, &id, false).await?;
    Ok(Json(json!({"tags": ctx.engine.tags_get(&id).await?})).into_response())
}

async fn tags_put_all(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    uri: Uri,
    body: Bytes,
) -> NR<Response> {
    let (kind, id, _) = tag_path(&uri);
    tag_target(&ctx, &a, &kind, &id, true).await?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|_| NetError::bad_request("Malformed request body"))?;
    let tags: Vec<String> = serde_json::from_value(v["tags"].clone()).map_err(|_| {
        NetError::bad_request("Invalid input for tags. Reason: 'tags' must be a list of strings.")
    })?;
    let t = ctx.engine.tags_set(&id, tags).await?;
    Ok(Json(json!({"tags": t})).into_response())
}

async fn tags_delete_all(State(ctx): State<Ctx>, Caller(a): Caller, uri: Uri) -> NR<Response> {
    let (kind, id, _) = tag_path(&uri);
    tag_target(&ctx, &a, &kind, &id, true).await?;
    ctx.engine.tags_set(&id, vec![]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn tag_check(State(ctx): State<Ctx>, Caller(a): Caller, uri: Uri) -> NR<Response> {
    let (kind, id, tag) = tag_path(&uri);
    tag_target(&ctx, &a, &kind, &id, false).await?;
    if ctx.engine.tags_get(&id).await?.contains(&tag) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(NetError {
            kind: NetErrorKind::NotFound,
            reason: "TagNotFound",
            message: format!("Tag {tag} could not be found."),
        }
        .into())
    }
}

async fn tag_put(State(ctx): State<Ctx>, Caller(a): Caller, uri: Uri) -> NR<Response> {
    let (kind, id, tag) = tag_path(&uri);
    tag_target(&ctx, &a, &kind, &id, true).await?;
    ctx.engine.tag_add(&id, &tag).await?;
    Ok(StatusCode::CREATED.into_response())
}

async fn tag_delete(State(ctx): State<Ctx>, Caller(a): Caller, uri: Uri) -> NR<Response> {
    let (kind, id, tag) = tag_path(&uri);
    tag_target(&ctx, &a, &kind, &id, true).await?;
    ctx.engine.tag_remove(&id, &tag).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn versions(State(ctx): State<Ctx>) -> Json<Value> {
    Json(json!({"versions": [{
        "id": "v2.0",
        "status": "CURRENT",
        "links": [{"href": format!("{}/v2.0/", network_url(&ctx)), "rel": "self"}],
    }]}))
}

async fn resources(State(ctx): State<Ctx>) -> Json<Value> {
    let base = format!("{}/v2.0", network_url(&ctx));
    let r: Vec<Value> = [
        ("network", "networks"),
        ("subnet", "subnets"),
        ("port", "ports"),
        ("floatingip", "floatingips"),
        ("security_group", "security-groups"),
        ("security_group_rule", "security-group-rules"),
        ("router", "routers"),
    ]
    .iter()
    .map(|(n, c)| json!({"name": n, "collection": c, "links": [{"href": format!("{base}/{c}"), "rel": "self"}]}))
    .collect();
    Json(json!({ "resources": r }))
}

/// Query pairs extractor alias.
pub type Q = Query<Pairs>;

/// Neutron's 404 for an unknown path under `/network`.
pub fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"NeutronError": {"type": "HTTPNotFound", "message": "The resource could not be found.", "detail": ""}})),
    )
        .into_response()
}

fn tag_routes() -> Router<Ctx> {
    let mut r = Router::new();
    for kind in [
        "networks",
        "subnets",
        "ports",
        "floatingips",
        "security-groups",
        "routers",
    ] {
        r = r
            .route(
                &format!("/network/v2.0/{kind}/:id/tags"),
                get(tags_get).put(tags_put_all).delete(tags_delete_all),
            )
            .route(
                &format!("/network/v2.0/{kind}/:id/tags/:tag"),
                put(tag_put).delete(tag_delete).get(tag_check),
            );
    }
    r
}

/// The networking routes.
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/network", get(versions))
        .route("/network/", get(versions))
        .route("/network/v2.0", get(resources))
        .route("/network/v2.0/", get(resources))
        .merge(tag_routes())
        .merge(extensions::routes())
        .merge(networks::routes())
        .merge(subnets::routes())
        .merge(ports::routes())
        .merge(floating_ips::routes())
        .merge(security_groups::routes())
        .merge(routers::routes())
}
