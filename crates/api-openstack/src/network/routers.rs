//! `/v2.0/routers` with add/remove_router_interface.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use lifeboat_engine::neutron::{GatewayReq, NetError, RouterInterface, RouterReq};
use serde_json::{json, Map, Value};

use super::{
    body_of, collection, created, one, opt_bool, opt_list, opt_str, project_of, standard, NR, Q,
};
use crate::auth::Caller;
use crate::Ctx;

/// Renders a router as Neutron does.
pub fn render(r: &lifeboat_engine::neutron::Router, tags: Vec<String>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(r.id));
    m.insert("name".into(), json!(r.name));
    m.insert("description".into(), json!(r.description));
    m.insert("admin_state_up".into(), json!(r.admin_state_up));
    m.insert("status".into(), json!("ACTIVE"));
    m.insert(
        "external_gateway_info".into(),
        json!(r.external_gateway_info),
    );
    m.insert("routes".into(), json!([]));
    m.insert("availability_zone_hints".into(), json!([]));
    m.insert("availability_zones".into(), json!(["nova"]));
    m.insert("distributed".into(), json!(false));
    m.insert("ha".into(), json!(false));
    m.insert("flavor_id".into(), Value::Null);
    standard(
        m,
        &r.project_id,
        tags,
        &r.created_at,
        &r.updated_at,
        r.revision_number,
    )
}

const CREATE: &[&str] = &[
    "name",
    "description",
    "admin_state_up",
    "external_gateway_info",
    "project_id",
    "tenant_id",
    "availability_zone_hints",
    "distributed",
    "ha",
    "tags",
];

fn parse(m: &Map<String, Value>) -> NR<RouterReq> {
    let gw = match m.get("external_gateway_info") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::Object(g)) if g.is_empty() => Some(None),
        Some(v @ Value::Object(g)) => {
            if !g.contains_key("network_id") {
                return Err(NetError::invalid_attr(
                    "external_gateway_info",
                    "Validation of dictionary's keys failed. Expected keys: {'network_id'} Provided keys: set()",
                )
                .into());
            }
            let r: GatewayReq = serde_json::from_value(v.clone()).map_err(|_| {
                NetError::invalid_attr("external_gateway_info", format!("'{v}' is not valid"))
            })?;
            Some(Some(r))
        }
        Some(v) => {
            return Err(NetError::invalid_attr(
                "external_gateway_info",
                format!("'{v}' is not a dictionary"),
            )
            .into())
        }
    };
    Ok(RouterReq {
        name: opt_str(m, "name")?,
        description: opt_str(m, "description")?,
        admin_state_up: opt_bool(m, "admin_state_up")?,
        external_gateway_info: gw,
        project_id: project_of(m)?,
    })
}

async fn list(State(ctx): State<Ctx>, Caller(a): Caller, q: Q) -> NR<Response> {
    let rs = ctx.engine.router_list(&a).await?;
    let tags: HashMap<String, Vec<String>> = ctx.engine.tags_all().await?;
    let items = rs
        .iter()
        .map(|r| render(r, tags.get(&r.id).cloned().unwrap_or_default()))
        .collect();
    collection(&ctx, "routers", items, &q.0)
}

async fn create(State(ctx): State<Ctx>, Caller(a): Caller, body: Bytes) -> NR<Response> {
    let m = body_of(&body, "router", CREATE)?;
    let r = ctx.engine.router_create(&a, parse(&m)?).await?;
    let tags = match opt_list::<String>(&m, "tags")? {
        Some(t) => ctx.engine.tags_set(&r.id, t).await?,
        None => vec![],
    };
    Ok(created("router", render(&r, tags)))
}

async fn show(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    q: Q,
) -> NR<Response> {
    let r = ctx.engine.router_get(&a, &id).await?;
    let tags = ctx.engine.tags_get(&id).await?;
    Ok(one("router", render(&r, tags), &q.0))
}

async fn update(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> NR<Response> {
    let mut allowed = CREATE.to_vec();
    allowed.push("routes");
    let m = body_of(&body, "router", &allowed)?;
    let r = ctx.engine.router_update(&a, &id, parse(&m)?).await?;
    let tags = ctx.engine.tags_get(&id).await?;
    Ok(one("router", render(&r, tags), &vec![]))
}

async fn delete(State(ctx): State<Ctx>, Caller(a): Caller, Path(id): Path<String>) -> NR<Response> {
    ctx.engine.router_delete(&a, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn iface_body(body: &Bytes) -> NR<(Option<String>, Option<String>)> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| NetError::bad_request("Malformed request body"))?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    Ok((s("subnet_id"), s("port_id")))
}

fn render_iface(i: &RouterInterface) -> Value {
    json!({
        "id": i.id,
        "tenant_id": i.project_id,
        "project_id": i.project_id,
        "port_id": i.port_id,
        "network_id": i.network_id,
        "subnet_id": i.subnet_id,
        "subnet_ids": i.subnet_ids,
    })
}

async fn add_iface(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> NR<Response> {
    let (s, p) = iface_body(&body)?;
    let i = ctx.engine.router_add_interface(&a, &id, s, p).await?;
    Ok(Json(render_iface(&i)).into_response())
}

async fn remove_iface(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> NR<Response> {
    let (s, p) = iface_body(&body)?;
    let i = ctx.engine.router_remove_interface(&a, &id, s, p).await?;
    Ok(Json(render_iface(&i)).into_response())
}

/// Routes.
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/network/v2.0/routers", get(list).post(create))
        .route(
            "/network/v2.0/routers/:id",
            get(show).put(update).delete(delete),
        )
        .route(
            "/network/v2.0/routers/:id/add_router_interface",
            put(add_iface),
        )
        .route(
            "/network/v2.0/routers/:id/remove_router_interface",
            put(remove_iface),
        )
}
