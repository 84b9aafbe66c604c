//! `/v2.0/ports`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use lifeboat_engine::neutron::{AddressPair, FixedIpReq, NetError, PortReq, PortView};
use serde_json::{json, Map, Value};

use super::{
    body_of, collection, created, one, opt_bool, opt_list, opt_str, project_of, standard, NR, Q,
};
use crate::auth::Caller;
use crate::Ctx;

/// Renders a port as Neutron does.
pub fn render(p: &PortView, tags: Vec<String>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(p.port.id));
    m.insert("name".into(), json!(p.attrs.name));
    m.insert("network_id".into(), json!(p.port.network_id));
    m.insert("mac_address".into(), json!(p.port.mac_address));
    m.insert("fixed_ips".into(), json!(p.fixed_ips));
    m.insert("device_id".into(), json!(p.device_id));
    m.insert("device_owner".into(), json!(p.device_owner));
    m.insert("status".into(), json!(p.status));
    m.insert("admin_state_up".into(), json!(p.attrs.admin_state_up));
    m.insert("security_groups".into(), json!(p.attrs.security_groups));
    m.insert(
        "allowed_address_pairs".into(),
        json!(p.attrs.allowed_address_pairs),
    );
    m.insert(
        "port_security_enabled".into(),
        json!(p.attrs.port_security_enabled),
    );
    m.insert("description".into(), json!(p.attrs.description));
    m.insert("binding:vnic_type".into(), json!("normal"));
    m.insert(
        "binding:vif_type".into(),
        json!(if p.port.server_id.is_some() {
            "tap"
        } else {
            "unbound"
        }),
    );
    m.insert("binding:host_id".into(), json!(p.host_id));
    m.insert("binding:profile".into(), json!({}));
    m.insert("binding:vif_details".into(), json!({}));
    m.insert("extra_dhcp_opts".into(), json!([]));
    m.insert("ip_allocation".into(), json!("immediate"));
    m.insert("qos_policy_id".into(), Value::Null);
    m.insert("data_plane_status".into(), Value::Null);
    standard(
        m,
        &p.port.project_id,
        tags,
        &p.attrs.created_at,
        &p.attrs.updated_at,
        p.attrs.revision_number,
    )
}

const CREATE: &[&str] = &[
    "name",
    "description",
    "network_id",
    "admin_state_up",
    "mac_address",
    "fixed_ips",
    "device_id",
    "device_owner",
    "security_groups",
    "allowed_address_pairs",
    "port_security_enabled",
    "project_id",
    "tenant_id",
    "binding:host_id",
    "binding:vnic_type",
    "binding:profile",
    "tags",
    "extra_dhcp_opts",
    "dns_name",
    "qos_policy_id",
];

fn parse(m: &Map<String, Value>) -> NR<PortReq> {
    let pairs: Option<Vec<Value>> = opt_list(m, "allowed_address_pairs")?;
    let pairs = match pairs {
        None => None,
        Some(v) => {
            let mut out = vec![];
            for p in v {
                let ip = p["ip_address"].as_str().ok_or_else(|| {
                    NetError::bad_request("Allowed address pair must contain ip_address")
                })?;
                out.push(AddressPair {
                    ip_address: ip.to_string(),
                    mac_address: p["mac_address"].as_str().unwrap_or("").to_string(),
                });
            }
            Some(out)
        }
    };
    Ok(PortReq {
        network_id: opt_str(m, "network_id")?,
        name: opt_str(m, "name")?,
        description: opt_str(m, "description")?,
        admin_state_up: opt_bool(m, "admin_state_up")?,
        mac_address: opt_str(m, "mac_address")?,
        fixed_ips: opt_list::<FixedIpReq>(m, "fixed_ips")?,
        device_id: opt_str(m, "device_id")?,
        device_owner: opt_str(m, "device_owner")?,
        security_groups: opt_list(m, "security_groups")?,
        allowed_address_pairs: pairs,
        port_security_enabled: opt_bool(m, "port_security_enabled")?,
        project_id: project_of(m)?,
    })
}

async fn list(State(ctx): State<Ctx>, Caller(a): Caller, q: Q) -> NR<Response> {
    let ports = ctx.engine.port_list(&a).await?;
    let tags: HashMap<String, Vec<String>> = ctx.engine.tags_all().await?;
    let items = ports
        .iter()
        .map(|p| render(p, tags.get(&p.port.id).cloned().unwrap_or_default()))
        .collect();
    collection(&ctx, "ports", items, &q.0)
}

async fn create(State(ctx): State<Ctx>, Caller(a): Caller, body: Bytes) -> NR<Response> {
    let m = body_of(&body, "port", CREATE)?;
    // Allowed address pairs without a MAC take the port's.
    let mut p = ctx.engine.port_create(&a, parse(&m)?).await?;
    if p.attrs
        .allowed_address_pairs
        .iter()
        .any(|x| x.mac_address.is_empty())
    {
        let pairs = p
            .attrs
            .allowed_address_pairs
            .iter()
            .cloned()
            .map(|mut x| {
                if x.mac_address.is_empty() {
                    x.mac_address = p.port.mac_address.clone();
                }
                x
            })
            .collect();
        p = ctx
            .engine
            .port_update(
                &a,
                &p.port.id.clone(),
                PortReq {
                    allowed_address_pairs: Some(pairs),
                    ..Default::default()
                },
            )
            .await?;
    }
    let tags = match opt_list::<String>(&m, "tags")? {
        Some(t) => ctx.engine.tags_set(&p.port.id, t).await?,
        None => vec![],
    };
    Ok(created("port", render(&p, tags)))
}

async fn show(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    q: Q,
) -> NR<Response> {
    let p = ctx.engine.port_get(&a, &id).await?;
    let tags = ctx.engine.tags_get(&id).await?;
    Ok(one("port", render(&p, tags), &q.0))
}

async fn update(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> NR<Response> {
    let m = body_of(&body, "port", CREATE)?;
    for ro in ["network_id", "project_id", "tenant_id"] {
        if m.contains_key(ro) {
            return Err(
                NetError::bad_request(format!("Cannot update read-only attribute {ro}")).into(),
            );
        }
    }
    let mut r = parse(&m)?;
    if let Some(pairs) = &mut r.allowed_address_pairs {
        let cur = ctx.engine.port_get(&a, &id).await?;
        for x in pairs.iter_mut() {
            if x.mac_address.is_empty() {
                x.mac_address = cur.port.mac_address.clone();
            }
        }
    }
    let p = ctx.engine.port_update(&a, &id, r).await?;
    let tags = ctx.engine.tags_get(&id).await?;
    Ok(one("port", render(&p, tags), &vec![]))
}

async fn delete(State(ctx): State<Ctx>, Caller(a): Caller, Path(id): Path<String>) -> NR<Response> {
    ctx.engine.port_delete(&a, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Routes.
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/network/v2.0/ports", get(list).post(create))
        .route(
            "/network/v2.0/ports/:id",
            get(show).put(update).delete(delete),
        )
}
