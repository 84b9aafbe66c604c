//! What every networking view shares: imports, the error mapping and the
//! resolution of names and ids.

pub(super) use axum::extract::{Path, State};
pub(super) use axum::http::StatusCode;
pub(super) use axum::Json;
pub(super) use lifeboat_core::Time;
pub(super) use lifeboat_engine::neutron::{
    AllocationPool, FixedIpReq, FloatingIpReq, FloatingIpView, GatewayReq, NetError, NetErrorKind,
    NetworkReq, NetworkView, PortReq, PortView, Router, RouterReq, RuleReq, SecurityGroup,
    SecurityGroupRule, Subnet, SubnetReq,
};
pub(super) use lifeboat_engine::Engine;
pub(super) use serde::{Deserialize, Deserializer, Serialize};
pub(super) use utoipa::ToSchema;

pub(super) use crate::auth::Caller;
pub(super) use crate::error::ApiError;
pub(super) use crate::extract::Body;

pub(super) type R<T> = Result<T, ApiError>;

impl From<NetError> for ApiError {
    fn from(e: NetError) -> Self {
        let (status, code) = match e.kind {
            NetErrorKind::BadRequest => (StatusCode::BAD_REQUEST, "bad_request"),
            NetErrorKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            NetErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            NetErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            NetErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("internal error: {}", e.message);
        }
        ApiError {
            status,
            code,
            message: e.message,
        }
    }
}

pub(super) fn not_found(what: &str, key: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: format!("no {what} with id or name {key}"),
    }
}

/// A 409 for a request the current state refuses.
pub(super) fn conflict(message: &str) -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        code: "conflict",
        message: message.into(),
    }
}

pub(super) fn ambiguous(what: &str, key: &str) -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        code: "conflict",
        message: format!("more than one {what} is named {key}: use its id"),
    }
}

/// Picks the one item whose id is `key`, else the one named `key`.
pub(super) fn pick<'a, T>(
    items: &'a [T],
    key: &str,
    id: impl Fn(&T) -> &str,
    name: impl Fn(&T) -> &str,
    what: &str,
) -> R<&'a T> {
    if let Some(x) = items.iter().find(|x| id(x) == key) {
        return Ok(x);
    }
    let mut named = items.iter().filter(|x| name(x) == key);
    match (named.next(), named.next()) {
        (Some(x), None) => Ok(x),
        (Some(_), Some(_)) => Err(ambiguous(what, key)),
        _ => Err(not_found(what, key)),
    }
}

pub(super) async fn network_view(
    e: &Engine,
    a: &lifeboat_core::Actor,
    key: &str,
) -> R<NetworkView> {
    let all = e.net_list(a).await?;
    pick(&all, key, |n| &n.network.id, |n| &n.network.name, "network").cloned()
}

pub(super) async fn subnet_id(e: &Engine, a: &lifeboat_core::Actor, key: &str) -> R<String> {
    let all = e.subnet_list(a).await?;
    Ok(pick(&all, key, |s| &s.id, |s| &s.name, "subnet")?
        .id
        .clone())
}

pub(super) async fn port_id(e: &Engine, a: &lifeboat_core::Actor, key: &str) -> R<String> {
    let all = e.port_list(a).await?;
    Ok(pick(&all, key, |p| &p.port.id, |p| &p.attrs.name, "port")?
        .port
        .id
        .clone())
}

pub(super) async fn group_id(e: &Engine, a: &lifeboat_core::Actor, key: &str) -> R<String> {
    let all = e.sg_list(a).await?;
    Ok(pick(&all, key, |g| &g.id, |g| &g.name, "security group")?
        .id
        .clone())
}

pub(super) async fn group_ids(
    e: &Engine,
    a: &lifeboat_core::Actor,
    keys: &[String],
) -> R<Vec<String>> {
    let mut out = vec![];
    for k in keys {
        out.push(group_id(e, a, k).await?);
    }
    Ok(out)
}

/// Deserialises a present field (null included) as `Some`, so an absent
/// field (`None`, by `default`) and `null` (`Some(None)`) differ.
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Whether `addr` is in the CIDR `cidr` (both already well formed).
pub(super) fn in_cidr(addr: std::net::IpAddr, cidr: &str) -> bool {
    use std::net::IpAddr;
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u32>()) else {
        return false;
    };
    let (a, n, bits) = match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u32::from(a) as u128, u32::from(n) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), 128),
        _ => return false,
    };
    if len > bits {
        return false;
    }
    let shift = bits - len;
    shift >= 128 || (a >> shift) == (n >> shift)
}

/// The network address of a well-formed CIDR (`10.1.0.0/24` -> 10.1.0.0);
/// None for a malformed one (`10.1.0.0/33`), which the engine refuses.
pub(super) fn cidr_addr(cidr: &str) -> Option<std::net::IpAddr> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: std::net::IpAddr = addr.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    let bits = if addr.is_ipv4() { 32 } else { 128 };
    (len <= bits).then_some(addr)
}
