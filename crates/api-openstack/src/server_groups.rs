//! `/os-server-groups` as `nova/api/openstack/compute/server_groups.py`
//! serves it: create (200), list (`all_projects` for admins, `limit`/`offset`),
//! show, delete (204). Before 2.64 a group has a `policies` list (2.15 adds
//! the soft policies) and an empty `metadata`; from 2.64 a `policy` and
//! `rules` (`max_server_per_host` for anti-affinity). 2.13 adds `project_id`
//! and `user_id`. The rules and quotas are the engine's
//! (`lifeboat_engine::ServerGroup`).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use lifeboat_core::placement::GroupPolicy;
use lifeboat_engine::{ComputeError, ServerGroup};
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::fault::{Fault, R};
use crate::microversion::Mv;
use crate::wire::{parse_body, Pairs};
use crate::Ctx;

/// Python's `repr()` of a JSON value, as jsonschema's messages show
/// instances (`{'name': 'g'}`, `['affinity']`, `True`, `None`).
fn pyrepr(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(pyrepr).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("'{k}': {}", pyrepr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Python's `str()`: strings bare, everything else as `repr`.
fn pystr(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => pyrepr(other),
    }
}

/// Nova's body schema error at `path` (the last element of jsonschema's path).
fn invalid_at(path: &str, instance: &Value, msg: &str) -> Fault {
    Fault::bad_request(format!(
        "Invalid input for field/attribute {path}. Value: {}. {msg}",
        pystr(instance)
    ))
}

fn extra(o: &Map<String, Value>, allowed: &[&str]) -> Option<String> {
    let mut extra: Vec<&String> = o
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .collect();
    if extra.is_empty() {
        return None;
    }
    extra.sort();
    let verb = if extra.len() == 1 { "was" } else { "were" };
    let list = extra
        .iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "Additional properties are not allowed ({list} {verb} unexpected)"
    ))
}

fn enum_list(ps: &[GroupPolicy]) -> String {
    format!(
        "[{}]",
        ps.iter()
            .map(|p| format!("'{}'", p.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A create request, checked against Nova's `create`, `create_v215` and
/// `create_v264` schemas.
#[derive(Debug, PartialEq)]
struct CreateGroup {
    name: String,
    policy: GroupPolicy,
    max_server_per_host: Option<u32>,
}

fn parse_create(body: &Value, mv: Mv) -> R<CreateGroup> {
    let Some(root) = body.as_object() else {
        return Err(Fault::bad_request(format!(
            "{} is not of type 'object'",
            pyrepr(body)
        )));
    };
    if let Some(m) = extra(root, &["server_group"]) {
        return Err(Fault::bad_request(m));
    }
    let Some(sgv) = root.get("server_group") else {
        return Err(Fault::bad_request("'server_group' is a required property"));
    };
    let Some(sg) = sgv.as_object() else {
        return Err(invalid_at(
            "server_group",
            sgv,
            &format!("{} is not of type 'object'", pyrepr(sgv)),
        ));
    };
    let v264 = mv.ge(64);
    let allowed: &[&str] = if v264 {
        &["name", "policy", "rules"]
    } else {
        &["name", "policies"]
    };
    if let Some(m) = extra(sg, allowed) {
        return Err(invalid_at("server_group", sgv, &m));
    }
    // jsonschema reports `properties` before `required`.
    if let Some(n) = sg.get("name") {
        crate::validate::name("name", n)?;
    }
    let choices: &[GroupPolicy] = match (v264, mv.ge(15)) {
        (true, _) => &[
            GroupPolicy::AntiAffinity,
            GroupPolicy::Affinity,
            GroupPolicy::SoftAntiAffinity,
            GroupPolicy::SoftAffinity,
        ],
        (false, true) => &[
            GroupPolicy::AntiAffinity,
            GroupPolicy::Affinity,
            GroupPolicy::SoftAntiAffinity,
            GroupPolicy::SoftAffinity,
        ],
        (false, false) => &[GroupPolicy::AntiAffinity, GroupPolicy::Affinity],
    };
    let one_of = |path: &str, v: &Value| -> R<GroupPolicy> {
        let p = v.as_str().and_then(GroupPolicy::parse);
        match (v.as_str(), p) {
            (Some(_), Some(p)) if choices.contains(&p) => Ok(p),
            (Some(_), _) => Err(invalid_at(
                path,
                v,
                &format!("{} is not one of {}", pyrepr(v), enum_list(choices)),
            )),
            (None, _) => Err(invalid_at(
                path,
                v,
                &format!("{} is not of type 'string'", pyrepr(v)),
            )),
        }
    };
    let mut policy = None;
    let mut max_server_per_host = None;
    if v264 {
        if let Some(p) = sg.get("policy") {
            policy = Some(one_of("policy", p)?);
        }
        if let Some(r) = sg.get("rules") {
            let Some(ro) = r.as_object() else {
                return Err(invalid_at(
                    "rules",
                    r,
                    &format!("{} is not of type 'object'", pyrepr(r)),
                ));
            };
            if let Some(m) = extra(ro, &["max_server_per_host"]) {
                return Err(invalid_at("rules", r, &m));
            }
            if let Some(m) = ro.get("max_server_per_host") {
                crate::validate::positive_integer("max_server_per_host", m)?;
                let n = match m {
                    Value::String(s) => s.parse::<u64>().unwrap_or(u64::MAX),
                    other => other.as_u64().unwrap_or(u64::MAX),
                };
                max_server_per_host = Some(u32::try_from(n).unwrap_or(u32::MAX));
            }
        }
    } else if let Some(pv) = sg.get("policies") {
        let Some(list) = pv.as_array() else {
            return Err(invalid_at(
                "policies",
                pv,
                &format!("{} is not of type 'array'", pyrepr(pv)),
            ));
        };
        if let Some(first) = list.first() {
            policy = Some(one_of("0", first)?);
        }
        if list.is_empty() {
            return Err(invalid_at(
                "policies",
                pv,
                &format!("{} is too short", pyrepr(pv)),
            ));
        }
        if list.len() > 1 {
            if list[1..].contains(&list[0]) {
                return Err(invalid_at(
                    "policies",
                    pv,
                    &format!("{} has non-unique elements", pyrepr(pv)),
                ));
            }
            return Err(invalid_at(
                "policies",
                pv,
                &format!("{} is too long", pyrepr(pv)),
            ));
        }
    }
    let required = if v264 { "policy" } else { "policies" };
    for k in ["name", required] {
        if !sg.contains_key(k) {
            return Err(invalid_at(
                "server_group",
                sgv,
                &format!("'{k}' is a required property"),
            ));
        }
    }
    Ok(CreateGroup {
        name: sg["name"].as_str().unwrap_or_default().to_string(),
        policy: policy.expect("required policy checked"),
        max_server_per_host,
    })
}

fn policy_denied(rule: &str) -> Fault {
    Fault::forbidden(format!(
        "Policy doesn't allow os_compute_api:os-server-groups:{rule} to be performed."
    ))
}

/// Engine errors of a group call: the engine's "not yours" and role
/// refusals are Nova's policy denial of `rule`.
fn fault(rule: &str) -> impl Fn(ComputeError) -> Fault + '_ {
    move |e| match e {
        ComputeError::Forbidden(_) => policy_denied(rule),
        e => e.into(),
    }
}

/// `_format_server_group`.
fn view(g: &ServerGroup, members: &[String], mv: Mv) -> Value {
    let mut v = json!({"id": g.id, "name": g.name, "members": members});
    if mv.ge(64) {
        v["policy"] = json!(g.policy.as_str());
        v["rules"] = match g.max_server_per_host {
            Some(n) => json!({"max_server_per_host": n}),
            None => json!({}),
        };
    } else {
        v["policies"] = json!([g.policy.as_str()]);
        v["metadata"] = json!({});
    }
    if mv.ge(13) {
        v["project_id"] = json!(g.project_id);
        v["user_id"] = json!(g.user_id);
    }
    v
}

async fn render(ctx: &Ctx, groups: &[ServerGroup], mv: Mv) -> R<Vec<Value>> {
    let members = ctx.engine.server_group_members(groups).await?;
    Ok(groups
        .iter()
        .map(|g| view(g, members.get(&g.id).map_or(&[][..], |m| m.as_slice()), mv))
        .collect())
}

/// `limit`/`offset` as Nova's `non_negative_integer` query parameters.
fn non_negative(q: &Pairs, key: &str) -> R<Option<usize>> {
    let Some((_, v)) = q.iter().rev().find(|(k, _)| k == key) else {
        return Ok(None);
    };
    if v.is_empty() || !v.chars().all(|c| c.is_ascii_digit()) {
        return Err(Fault::bad_request(format!(
            "Invalid input for query parameters {key}. Value: {v}. '{v}' does not match '^[0-9]*$'"
        )));
    }
    Ok(Some(v.parse::<usize>().unwrap_or(usize::MAX)))
}

async fn list(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Query(q): Query<Pairs>,
) -> R<Json<Value>> {
    if mv.ge(75) {
        let bad: Map<String, Value> = q
            .iter()
            .filter(|(k, _)| !["all_projects", "limit", "offset"].contains(&k.as_str()))
            .map(|(k, _)| (k.clone(), Value::Null))
            .collect();
        if let Some(m) = extra(&bad, &[]) {
            return Err(Fault::bad_request(m));
        }
    }
    let limit = non_negative(&q, "limit")?.unwrap_or(1000).min(1000);
    let offset = non_negative(&q, "offset")?.unwrap_or(0);
    let all = q.iter().any(|(k, _)| k == "all_projects");
    let groups = ctx
        .engine
        .server_groups(&a, all)
        .await
        .map_err(fault("index"))?;
    let page: Vec<ServerGroup> = groups.into_iter().skip(offset).take(limit).collect();
    Ok(Json(
        json!({"server_groups": render(&ctx, &page, mv).await?}),
    ))
}

async fn create(State(ctx): State<Ctx>, mv: Mv, Caller(a): Caller, body: Bytes) -> R<Json<Value>> {
    let body = parse_body(&body)?;
    let req = parse_create(&body, mv)?;
    let g = ctx
        .engine
        .create_server_group(&a, &req.name, req.policy, req.max_server_per_host)
        .await
        .map_err(fault("create"))?;
    Ok(Json(json!({"server_group": view(&g, &[], mv)})))
}

async fn show(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    let g = ctx
        .engine
        .server_group(&a, &id)
        .await
        .map_err(fault("show"))?;
    let v = render(&ctx, std::slice::from_ref(&g), mv).await?;
    Ok(Json(json!({"server_group": v[0]})))
}

async fn delete(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<StatusCode> {
    ctx.engine
        .delete_server_group(&a, &id)
        .await
        .map_err(fault("delete"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The server group routes.
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/compute/v2.1/os-server-groups", get(list).post(create))
        .route(
            "/compute/v2.1/os-server-groups/:id",
            get(show).delete(delete),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: Value, mv: u16) -> String {
        parse_create(&body, Mv(mv)).unwrap_err().message
    }

    #[test]
    fn create_schemas_per_microversion() {
        let ok = parse_create(
            &json!({"server_group": {"name": "g", "policies": ["affinity"]}}),
            Mv(1),
        )
        .unwrap();
        assert_eq!(ok.policy, GroupPolicy::Affinity);
        assert_eq!(
            err(json!({"server_group": {"name": "g", "policies": ["soft-affinity"]}}), 14),
            "Invalid input for field/attribute 0. Value: soft-affinity. 'soft-affinity' is not one of ['anti-affinity', 'affinity']"
        );
        assert!(parse_create(
            &json!({"server_group": {"name": "g", "policies": ["soft-affinity"]}}),
            Mv(15)
        )
        .is_ok());
        assert_eq!(
            err(json!({"server_group": {"name": "g", "policy": "affinity"}}), 63),
            "Invalid input for field/attribute server_group. Value: {'name': 'g', 'policy': 'affinity'}. Additional properties are not allowed ('policy' was unexpected)"
        );
        assert_eq!(
            err(json!({"server_group": {"name": "g"}}), 64),
            "Invalid input for field/attribute server_group. Value: {'name': 'g'}. 'policy' is a required property"
        );
        assert_eq!(
            err(json!({"server_group": {"name": "g", "policies": []}}), 2),
            "Invalid input for field/attribute policies. Value: []. [] is too short"
        );
        assert_eq!(err(json!({}), 64), "'server_group' is a required property");
        assert_eq!(
            err(json!({"server_group": {"name": "g", "policy": "legacy"}}), 64),
            "Invalid input for field/attribute policy. Value: legacy. 'legacy' is not one of ['anti-affinity', 'affinity', 'soft-anti-affinity', 'soft-affinity']"
        );
        assert_eq!(
            err(json!({"server_group": {"name": "g", "policy": "anti-affinity", "rules": {"max_server_per_host": 0}}}), 64),
            "Invalid input for field/attribute max_server_per_host. Value: 0. 0 is less than the minimum of 1"
        );
        assert_eq!(
            err(json!({"server_group": {"name": "g", "policy": "anti-affinity", "rules": {"x": 1}}}), 64),
            "Invalid input for field/attribute rules. Value: {'x': 1}. Additional properties are not allowed ('x' was unexpected)"
        );
        let r = parse_create(
            &json!({"server_group": {"name": "g", "policy": "anti-affinity", "rules": {"max_server_per_host": "3"}}}),
            Mv(64),
        )
        .unwrap();
        assert_eq!(r.max_server_per_host, Some(3));
    }
}
