//! Lifeboat's OpenStack front: a Keystone v3 subset at `/identity`, Compute
//! v2.1 at `/compute/v2.1` (microversions 2.1–2.100) and a minimal Image v2
//! at `/image/v2`, for the real openstacksdk and `openstack` CLI.
//!
//! Handlers only parse, authenticate, translate and render: every rule is
//! the engine's ([`lifeboat_engine::Engine`]) and the action table's
//! (`lifeboat_core::actions`). Engine errors become Nova faults
//! ([`fault::Fault`]).

pub mod auth;
pub mod availability_zones;
pub mod compute;
pub mod fault;
pub mod flavors;
pub mod identity;
pub mod images;
pub mod keypairs;
pub mod limits;
pub mod microversion;
pub mod network;
pub mod nova;
pub mod quotas;
pub mod server_groups;
pub mod validate;
pub mod versions;
pub mod wire;

use axum::http::HeaderValue;
use axum::Router;
use lifeboat_core::Time;
use lifeboat_engine::Engine;

/// Shared state of the front.
#[derive(Clone)]
pub struct Ctx {
    /// The compute service.
    pub engine: Engine,
    /// Public base URL, e.g. `http://127.0.0.1:8774` (no trailing slash).
    pub public_url: String,
}

impl Ctx {
    /// `{public}/compute/v2.1`.
    pub fn compute_url(&self) -> String {
        format!("{}/compute/v2.1", self.public_url)
    }
    /// `{public}/compute` (bookmark links).
    pub fn bookmark_url(&self) -> String {
        format!("{}/compute", self.public_url)
    }
    /// `{public}/identity/v3`.
    pub fn identity_url(&self) -> String {
        format!("{}/identity/v3", self.public_url)
    }
    /// `{public}/image`.
    pub fn image_url(&self) -> String {
        format!("{}/image", self.public_url)
    }
}

/// Nova's `utils.isotime`: `2013-09-03T04:01:32Z`.
pub fn isotime(t: &Time) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A naive timestamp with microseconds, as Nova renders
/// `OS-SRV-USG:launched_at`: `2013-09-23T13:37:00.880302`.
pub fn naive_time(t: &Time) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// Keystone's token times: `2015-11-05T22:00:11.000000Z`.
pub fn keystone_time(t: &Time) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Adds `X-OpenStack-Request-Id` / `X-Compute-Request-Id` to every response.
async fn request_id(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let id = format!("req-{}", uuid::Uuid::new_v4());
    // The engine records the same id on the instance actions it starts.
    let mut resp = lifeboat_engine::with_request_id(id.clone(), next.run(req)).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut()
            .insert("x-openstack-request-id", v.clone());
        resp.headers_mut().insert("x-compute-request-id", v);
    }
    resp
}

/// Largest request body the front reads (oslo.middleware's
/// `max_request_body_size` default, which Nova deploys).
pub const MAX_BODY: usize = 114_688;

/// Gives every error the vendor's JSON body: axum's own rejections (405,
/// 413, 415, a path that is not UTF-8, ...) are plain text or empty.
async fn json_faults(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
    use axum::response::IntoResponse;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let st = resp.status();
    let json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !(st.is_client_error() || st.is_server_error()) || json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let msg = match st.as_u16() {
        405 => format!("The method {method} is not allowed for this resource."),
        413 => "Request is too large.".to_string(),
        _ if !text.is_empty() => text,
        _ => st.canonical_reason().unwrap_or("Error").to_string(),
    };
    let mut out = if path.starts_with("/identity") {
        identity::KsError(st, msg).into_response()
    } else if path.starts_with("/image") {
        images::glance_error(st, msg)
    } else {
        fault::Fault::new(st, msg).into_response()
    };
    for (k, v) in parts.headers.iter() {
        if k != CONTENT_TYPE && k != CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out.extensions_mut().extend(parts.extensions);
    out
}

/// The front's router; mount at the root of the listener.
/// The Nova-format 404 for an unknown path under this front's prefixes
/// (`/compute`, `/identity`, `/image`); None for other paths.
pub fn not_found(path: &str) -> Option<axum::response::Response> {
    use axum::response::IntoResponse;
    if path == "/network" || path.starts_with("/network/") {
        return Some(network::not_found());
    }
    ["/compute", "/identity", "/image"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
        .then(|| fault::Fault::not_found("The resource could not be found.").into_response())
}

/// The front's router (mount at the root of the listener).
pub fn router(engine: Engine, public_url: String) -> Router {
    let ctx = Ctx {
        engine,
        public_url: public_url.trim_end_matches('/').to_string(),
    };
    let compute = compute::routes()
        .merge(flavors::routes())
        .merge(keypairs::routes())
        .merge(limits::routes())
        .merge(quotas::routes())
        .merge(server_groups::routes())
        .merge(availability_zones::routes())
        .merge(images::compute_routes())
        .merge(versions::versioned_routes())
        .layer(axum::middleware::from_fn(microversion::layer));
    Router::new()
        .merge(identity::routes())
        .merge(versions::root_routes())
        .merge(images::routes())
        .merge(network::routes())
        .merge(compute)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(json_faults))
        .layer(axum::middleware::from_fn(request_id))
        .with_state(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_formats() {
        let t = chrono::DateTime::parse_from_rfc3339("2013-09-23T13:37:00.880302Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(isotime(&t), "2013-09-23T13:37:00Z");
        assert_eq!(naive_time(&t), "2013-09-23T13:37:00.880302");
        assert_eq!(keystone_time(&t), "2013-09-23T13:37:00.880302Z");
    }
}
