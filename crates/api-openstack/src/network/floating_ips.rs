//! `/v2.0/floatingips`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use lifeboat_engine::neutron::{FloatingIpReq, FloatingIpView, NetError};
use serde_json::{json, Map, Value};

use super::{
    body_of, collection, created, one, opt_list, opt_nullable, opt_str, project_of, standard, NR, Q,
};
use crate::auth::Caller;
use crate::Ctx;

/// Renders a floating IP as Neutron does.
pub fn render(f: &FloatingIpView, tags: Vec<String>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(f.fip.id));
    m.insert("floating_ip_address".into(), json!(f.fip.address));
    m.insert("floating_network_id".into(), json!(f.fip.network_id));
    m.insert("port_id".into(), json!(f.fip.port_id));
    m.insert("fixed_ip_address".into(), json!(f.fixed_ip_address));
    m.insert("router_id".into(), json!(f.router_id));
    m.insert("status".into(), json!(f.status));
    m.insert("description".into(), json!(f.attrs.description));
    m.insert("port_forwardings".into(), json!([]));
    m.insert("qos_policy_id".into(), Value::Null);
    standard(
        m,
        &f.fip.project_id,
        tags,
        &f.attrs.created_at,
        &f.attrs.updated_at,
        f.attrs.revision_number,
    )
}

const CREATE: &[&str] = &[
    "floating_network_id",
    "floating_ip_address",
    "port_id",
    "fixed_ip_address",
    "description",
    "project_id",
    "tenant_id",
    "subnet_id",
    "dns_name",
    "dns_domain",
    "qos_policy_id",
    "tags",
];

fn parse(m: &Map<String, Value>) -> NR<FloatingIpReq> {
    Ok(FloatingIpReq {
        floating_network_id: opt_str(m, "floating_network_id")?,
        floating_ip_address: opt_str(m, "floating_ip_address")?,
        port_id: opt_nullable(m, "port_id")?,
        fixed_ip_address: opt_str(m, "fixed_ip_address")?,
        description: opt_str(m, "description")?,
        project_id: project_of(m)?,
    })
}

async fn list(State(ctx): State<Ctx>, Caller(a): Caller, q: Q) -> NR<Response> {
    let fips = ctx.engine.fip_list(&a).await?;
    let tags: HashMap<String, Vec<String>> = ctx.engine.tags_all().await?;
    let items = fips
        .iter()
        .map(|f| render(f, tags.get(&f.fip.id).cloned().unwrap_or_default()))
        .collect();
    collection(&ctx, "floatingips", items, &q.0)
}

async fn create(State(ctx): State<Ctx>, Caller(a): Caller, body: Bytes) -> NR<Response> {
    let m = body_of(&body, "floatingip", CREATE)?;
    let f = ctx.engine.fip_create(&a, parse(&m)?).await?;
    let tags = match opt_list::<String>(&m, "tags")? {
        Some(t) => ctx.engine.tags_set(&f.fip.id, t).await?,
        None => vec![],
    };
    Ok(created("floatingip", render(&f, tags)))
}

async fn show(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    q: Q,
) -> NR<Response> {
    let f = ctx.engine.fip_get(&a, &id).await?;
    let tags = ctx.engine.tags_get(&id).await?;
    Ok(one("floatingip", render(&f, tags), &q.0))
}

async fn update(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> NR<Response> {
    let m = body_of(&body, "floatingip", CREATE)?;
    for ro in [
        "floating_network_id",
        "floating_ip_address",
        "project_id",
        "tenant_id",
    ] {
        if m.contains_key(ro) {
            return Err(
                NetError::bad_request(format!("Cannot update read-only attribute {ro}")).into(),
            );
        }
    }
    let f = ctx.engine.fip_update(&a, &id, parse(&m)?).await?;
    let tags = ctx.engine.tags_get(&id).await?;
    Ok(one("floatingip", render(&f, tags), &vec![]))
}

async fn delete(State(ctx): State<Ctx>, Caller(a): Caller, Path(id): Path<String>) -> NR<Response> {
    ctx.engine.fip_delete(&a, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Routes.
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/network/v2.0/floatingips", get(list).post(create))
        .route(
            "/network/v2.0/floatingips/:id",
            get(show).put(update).delete(delete),
        )
}
