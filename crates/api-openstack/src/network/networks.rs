//! `/v2.0/networks`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use lifeboat_engine::neutron::{NetworkReq, NetworkView};
use serde_json::{json, Map, Value};

use super::{
    body_of, collection, created, one, opt_bool, opt_str, opt_u32, project_of, standard, NR, Q,
};
use crate::auth::Caller;
use crate::Ctx;

/// Renders a network as Neutron does.
pub fn render(v: &NetworkView, tags: Vec<String>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(v.network.id));
    m.insert("name".into(), json!(v.network.name));
    m.insert("admin_state_up".into(), json!(v.attrs.admin_state_up));
    m.insert("status".into(), json!("ACTIVE"));
    m.insert("subnets".into(), json!(v.subnets));
    m.insert("shared".into(), json!(v.attrs.shared));
    m.insert("router:external".into(), json!(v.network.external));
    m.insert("mtu".into(), json!(v.attrs.mtu));
    m.insert(
        "port_security_enabled".into(),
        json!(v.attrs.port_security_enabled),
    );
    m.insert("description".into(), json!(v.attrs.description));
    m.insert("availability_zone_hints".into(), json!([]));
    m.insert("availability_zones".into(), json!(["nova"]));
    m.insert("ipv4_address_scope".into(), Value::Null);
    m.insert("ipv6_address_scope".into(), Value::Null);
    m.insert("l2_adjacency".into(), json!(true));
    m.insert("qos_policy_id".into(), Value::Null);
    standard(
        m,
        &v.attrs.project_id,
        tags,
        &v.attrs.created_at,
        &v.attrs.updated_at,
        v.attrs.revision_number,
    )
}

const CREATE: &[&str] = &[
    "name",
    "description",
    "admin_state_up",
    "shared",
    "router:external",
    "mtu",
    "port_security_enabled",
    "project_id",
    "tenant_id",
    "availability_zone_hints",
    "tags",
];

fn parse(m: &Map<String, Value>) -> NR<NetworkReq> {
    Ok(NetworkReq {
        name: opt_str(m, "name")?,
        description: opt_str(m, "description")?,
        admin_state_up: opt_bool(m, "admin_state_up")?,
        shared: opt_bool(m, "shared")?,
        external: opt_bool(m, "router:external")?,
        mtu: opt_u32(m, "mtu")?,
        port_security_enabled: opt_bool(m, "port_security_enabled")?,
        project_id: project_of(m)?,
    })
}

async fn list(State(ctx): State<Ctx>, Caller(a): Caller, q: Q) -> NR<Response> {
    let nets = ctx.engine.net_list(&a).await?;
    let tags: HashMap<String, Vec<String>> = ctx.engine.tags_all().await?;
    let items = nets
        .iter()
        .map(|n| render(n, tags.get(&n.network.id).cloned().unwrap_or_default()))
        .collect();
    collection(&ctx, "networks", items, &q.0)
}

async fn create(State(ctx): State<Ctx>, Caller(a): Caller, body: Bytes) -> NR<Response> {
    let m = body_of(&body, "network", CREATE)?;
    let v = ctx.engine.net_create(&a, parse(&m)?).await?;
    let tags = match super::opt_list::<String>(&m, "tags")? {
        Some(t) => ctx.engine.tags_set(&v.network.id, t).await?,
        None => vec![],
    };
    Ok(created("network", render(&v, tags)))
}

async fn show(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    q: Q,
) -> NR<Response> {
    let v = ctx.engine.net_get(&a, &id).await?;
    let tags = ctx.engine.tags_get(&id).await?;
    Ok(one("network", render(&v, tags), &q.0))
}

async fn update(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> NR<Response> {
    let m = body_of(&body, "network", CREATE)?;
    if m.contains_key("project_id") || m.contains_key("tenant_id") {
        return Err(lifeboat_engine::neutron::NetError::bad_request(
            "Cannot update read-only attribute project_id",
        )
        .into());
    }
    let v = ctx.engine.net_update(&a, &id, parse(&m)?).await?;
    let tags = ctx.engine.tags_get(&id).await?;
    Ok(one("network", render(&v, tags), &vec![]))
}

async fn delete(State(ctx): State<Ctx>, Caller(a): Caller, Path(id): Path<String>) -> NR<Response> {
    ctx.engine.net_delete(&a, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Routes.
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/network/v2.0/networks", get(list).post(create))
        .route(
            "/network/v2.0/networks/:id",
            get(show).put(update).delete(delete),
        )
}
