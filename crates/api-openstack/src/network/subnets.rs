//! `/v2.0/subnets`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use lifeboat_engine::neutron::{NetError, Subnet, SubnetReq};
use serde_json::{json, Map, Value};

use super::{
    body_of, collection, created, one, opt_bool, opt_list, opt_nullable, opt_str, project_of,
    standard, NR, Q,
};
use crate::auth::Caller;
use crate::Ctx;

/// Renders a subnet as Neutron does.
pub fn render(s: &Subnet, tags: Vec<String>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(s.id));
    m.insert("name".into(), json!(s.name));
    m.insert("network_id".into(), json!(s.network_id));
    m.insert("ip_version".into(), json!(s.ip_version));
    m.insert("cidr".into(), json!(s.cidr));
    m.insert("gateway_ip".into(), json!(s.gateway_ip));
    m.insert("allocation_pools".into(), json!(s.allocation_pools));
    m.insert("dns_nameservers".into(), json!(s.dns_nameservers));
    m.insert("host_routes".into(), json!(s.host_routes));
    m.insert("enable_dhcp".into(), json!(s.enable_dhcp));
    m.insert("ipv6_ra_mode".into(), json!(s.ipv6_ra_mode));
    m.insert("ipv6_address_mode".into(), json!(s.ipv6_address_mode));
    m.insert("description".into(), json!(s.description));
    m.insert("service_types".into(), json!([]));
    m.insert("subnetpool_id".into(), Value::Null);
    m.insert("segment_id".into(), Value::Null);
    m.insert("dns_publish_fixed_ip".into(), json!(false));
    standard(
        m,
        &s.project_id,
        tags,
        &s.created_at,
        &s.updated_at,
        s.revision_number,
    )
}

const CREATE: &[&str] = &[
    "name",
    "description",
    "network_id",
    "ip_version",
    "cidr",
    "gateway_ip",
    "allocation_pools",
    "dns_nameservers",
    "host_routes",
    "enable_dhcp",
    "ipv6_ra_mode",
    "ipv6_address_mode",
    "project_id",
    "tenant_id",
    "service_types",
    "subnetpool_id",
    "prefixlen",
    "use_default_subnetpool",
    "segment_id",
    "tags",
    "dns_publish_fixed_ip",
];

fn parse(m: &Map<String, Value>) -> NR<SubnetReq> {
    let ip_version = match m.get("ip_version") {
        None => None,
        Some(v) => {
            let n = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            };
            match n {
                Some(4) => Some(4),
                Some(6) => Some(6),
                _ => {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        v => v.to_string(),
                    };
                    return Err(NetError::invalid_attr(
                        "ip_version",
                        format!("'{s}' is not in [4, 6]"),
                    )
                    .into());
                }
            }
        }
    };
    Ok(SubnetReq {
        network_id: opt_str(m, "network_id")?,
        name: opt_str(m, "name")?,
        description: opt_str(m, "description")?,
        ip_version,
        cidr: opt_str(m, "cidr")?,
        gateway_ip: opt_nullable(m, "gateway_ip")?,
        allocation_pools: opt_list(m, "allocation_pools")?,
        dns_nameservers: opt_list(m, "dns_nameservers")?,
        host_routes: opt_list(m, "host_routes")?,
        enable_dhcp: opt_bool(m, "enable_dhcp")?,
        ipv6_ra_mode: opt_str(m, "ipv6_ra_mode")?,
        ipv6_address_mode: opt_str(m, "ipv6_address_mode")?,
        project_id: project_of(m)?,
    })
}

async fn list(State(ctx): State<Ctx>, Caller(a): Caller, q: Q) -> NR<Response> {
    let subs = ctx.engine.subnet_list(&a).await?;
    let tags: HashMap<String, Vec<String>> = ctx.engine.tags_all().await?;
    let items = subs
        .iter()
        .map(|s| render(s, tags.get(&s.id).cloned().unwrap_or_default()))
        .collect();
    collection(&ctx, "subnets", items, &q.0)
}

async fn create(State(ctx): State<Ctx>, Caller(a): Caller, body: Bytes) -> NR<Response> {
    let m = body_of(&body, "subnet", CREATE)?;
    let s = ctx.engine.subnet_create(&a, parse(&m)?).await?;
    let tags = match opt_list::<String>(&m, "tags")? {
        Some(t) => ctx.engine.tags_set(&s.id, t).await?,
        None => vec![],
    };
    Ok(created("subnet", render(&s, tags)))
}

async fn show(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    q: Q,
) -> NR<Response> {
    let s = ctx.engine.subnet_get(&a, &id).await?;
    let tags = ctx.engine.tags_get(&id).await?;
    Ok(one("subnet", render(&s, tags), &q.0))
}

async fn update(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> NR<Response> {
    let m = body_of(&body, "subnet", CREATE)?;
    for ro in [
        "cidr",
        "ip_version",
        "network_id",
        "project_id",
        "tenant_id",
    ] {
        if m.contains_key(ro) {
            return Err(
                NetError::bad_request(format!("Cannot update read-only attribute {ro}")).into(),
            );
        }
    }
    let s = ctx.engine.subnet_update(&a, &id, parse(&m)?).await?;
    let tags = ctx.engine.tags_get(&id).await?;
    Ok(one("subnet", render(&s, tags), &vec![]))
}

async fn delete(State(ctx): State<Ctx>, Caller(a): Caller, Path(id): Path<String>) -> NR<Response> {
    ctx.engine.subnet_delete(&a, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Routes.
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/network/v2.0/subnets", get(list).post(create))
        .route(
            "/network/v2.0/subnets/:id",
            get(show).put(update).delete(delete),
        )
}
