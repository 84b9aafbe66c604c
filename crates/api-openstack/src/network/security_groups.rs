//! `/v2.0/security-groups` and `/v2.0/security-group-rules`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use lifeboat_engine::neutron::{RuleReq, SecurityGroup, SecurityGroupRule};
use serde_json::{json, Map, Value};

use super::{
    body_of, collection, created, one, opt_list, opt_str, opt_u32, project_of, standard, NR, Q,
};
use crate::auth::Caller;
use crate::Ctx;

/// Renders a rule as Neutron does.
pub fn render_rule(r: &SecurityGroupRule) -> Value {
    json!({
        "id": r.id,
        "security_group_id": r.security_group_id,
        "direction": r.direction,
        "ethertype": r.ethertype,
        "protocol": r.protocol,
        "port_range_min": r.port_range_min,
        "port_range_max": r.port_range_max,
        "remote_ip_prefix": r.remote_ip_prefix,
        "normalized_cidr": r.remote_ip_prefix,
        "remote_group_id": r.remote_group_id,
        "remote_address_group_id": null,
        "description": r.description,
        "tenant_id": r.project_id,
        "project_id": r.project_id,
        "created_at": super::ts(&r.created_at),
        "updated_at": super::ts(&r.updated_at),
        "revision_number": r.revision_number,
    })
}

/// Renders a group with its rules.
pub fn render(g: &SecurityGroup, rules: &[SecurityGroupRule], tags: Vec<String>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(g.id));
    m.insert("name".into(), json!(g.name));
    m.insert("description".into(), json!(g.description));
    m.insert("stateful".into(), json!(g.stateful));
    m.insert("shared".into(), json!(false));
    m.insert(
        "security_group_rules".into(),
        Value::Array(rules.iter().map(render_rule).collect()),
    );
    standard(
        m,
        &g.project_id,
        tags,
        &g.created_at,
        &g.updated_at,
        g.revision_number,
    )
}

async fn rendered(ctx: &Ctx, g: &SecurityGroup) -> NR<Value> {
    let rules = ctx.engine.sg_rules_of(&g.id).await?;
    let tags = ctx.engine.tags_get(&g.id).await?;
    Ok(render(g, &rules, tags))
}

const SG: &[&str] = &[
    "name",
    "description",
    "project_id",
    "tenant_id",
    "stateful",
    "tags",
];

async fn list(State(ctx): State<Ctx>, Caller(a): Caller, q: Q) -> NR<Response> {
    let groups = ctx.engine.sg_list(&a).await?;
    let rules = ctx.engine.sg_rule_list(&a).await?;
    let tags: HashMap<String, Vec<String>> = ctx.engine.tags_all().await?;
    let items = groups
        .iter()
        .map(|g| {
            let rs: Vec<SecurityGroupRule> = rules
                .iter()
                .filter(|r| r.security_group_id == g.id)
                .cloned()
                .collect();
            render(g, &rs, tags.get(&g.id).cloned().unwrap_or_default())
        })
        .collect();
    collection(&ctx, "security_groups", items, &q.0)
}

async fn create(State(ctx): State<Ctx>, Caller(a): Caller, body: Bytes) -> NR<Response> {
    let m = body_of(&body, "security_group", SG)?;
    let name = opt_str(&m, "name")?.unwrap_or_default();
    let g = ctx
        .engine
        .sg_create(
            &a,
            name,
            opt_str(&m, "description")?.unwrap_or_default(),
            project_of(&m)?,
        )
        .await?;
    if let Some(t) = opt_list::<String>(&m, "tags")? {
        ctx.engine.tags_set(&g.id, t).await?;
    }
    Ok(created("security_group", rendered(&ctx, &g).await?))
}

async fn show(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    q: Q,
) -> NR<Response> {
    let g = ctx.engine.sg_get(&a, &id).await?;
    Ok(one("security_group", rendered(&ctx, &g).await?, &q.0))
}

async fn update(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> NR<Response> {
    let m = body_of(&body, "security_group", SG)?;
    let g = ctx
        .engine
        .sg_update(&a, &id, opt_str(&m, "name")?, opt_str(&m, "description")?)
        .await?;
    Ok(one("security_group", rendered(&ctx, &g).await?, &vec![]))
}

async fn delete(State(ctx): State<Ctx>, Caller(a): Caller, Path(id): Path<String>) -> NR<Response> {
    ctx.engine.sg_delete(&a, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

const RULE: &[&str] = &[
    "security_group_id",
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
    "remote_group_id",
    "remote_address_group_id",
    "description",
    "project_id",
    "tenant_id",
];

async fn rule_list(State(ctx): State<Ctx>, Caller(a): Caller, q: Q) -> NR<Response> {
    let rules = ctx.engine.sg_rule_list(&a).await?;
    collection(
        &ctx,
        "security_group_rules",
        rules.iter().map(render_rule).collect(),
        &q.0,
    )
}

async fn rule_create(State(ctx): State<Ctx>, Caller(a): Caller, body: Bytes) -> NR<Response> {
    let m = body_of(&body, "security_group_rule", RULE)?;
    let protocol = match m.get("protocol") {
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => opt_str(&m, "protocol")?.map(|p| p.to_ascii_lowercase()),
    };
    let r = RuleReq {
        security_group_id: opt_str(&m, "security_group_id")?,
        direction: opt_str(&m, "direction")?,
        ethertype: opt_str(&m, "ethertype")?,
        protocol,
        port_range_min: opt_u32(&m, "port_range_min")?,
        port_range_max: opt_u32(&m, "port_range_max")?,
        remote_ip_prefix: opt_str(&m, "remote_ip_prefix")?,
        remote_group_id: opt_str(&m, "remote_group_id")?,
        description: opt_str(&m, "description")?,
        project_id: project_of(&m)?,
    };
    let rule = ctx.engine.sg_rule_create(&a, r).await?;
    Ok(created("security_group_rule", render_rule(&rule)))
}

async fn rule_show(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    q: Q,
) -> NR<Response> {
    let r = ctx.engine.sg_rule_get(&a, &id).await?;
    Ok(one("security_group_rule", render_rule(&r), &q.0))
}

async fn rule_delete(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> NR<Response> {
    ctx.engine.sg_rule_delete(&a, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Routes.
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/network/v2.0/security-groups", get(list).post(create))
        .route(
            "/network/v2.0/security-groups/:id",
            get(show).put(update).delete(delete),
        )
        .route(
            "/network/v2.0/security-group-rules",
            get(rule_list).post(rule_create),
        )
        .route(
            "/network/v2.0/security-group-rules/:id",
            get(rule_show).delete(rule_delete),
        )
}
