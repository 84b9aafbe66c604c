//! `/v2.0/extensions`: the API extensions this service implements.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lifeboat_engine::neutron::{NetError, NetErrorKind};
use serde_json::{json, Value};

use super::NR;
use crate::auth::Caller;
use crate::Ctx;

/// (alias, name, description) of every extension implemented.
pub const EXTENSIONS: &[(&str, &str, &str)] = &[
    ("external-net", "Neutron external network", "Adds external network attribute to network resource."),
    ("router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks via a NAT gateway."),
    ("ext-gw-mode", "Neutron L3 Configurable external gateway mode", "Extension of the router abstraction for specifying whether SNAT should occur on the external gateway"),
    ("security-group", "security-group", "The security groups extension."),
    ("stateful-security-group", "Stateful security group", "Extension adding possibility to set stateful or stateless security groups."),
    ("port-security", "Port Security", "Provides port security"),
    ("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs"),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    ("standard-attr-tag", "Tag support for resources with standard attribute: subnet, trunk, network_segment_range, router, network, policy, subnetpool, port, security_group, floatingip", "Enables to set tag on resources with standard attribute."),
    ("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
    ("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes."),
    ("standard-attr-revisions", "Resource revision numbers", "This extension will display the revision number of neutron resources."),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled."),
    ("pagination", "Pagination support", "Extension that indicates that pagination is enabled."),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
    ("fip-port-details", "Floating IP Port Details Extension", "Add port_details attribute to Floating IP resource"),
];

fn render(e: &(&str, &str, &str)) -> Value {
    json!({
        "alias": e.0,
        "name": e.1,
        "description": e.2,
        "updated": "2013-01-20T00:00:00-00:00",
        "links": [],
    })
}

async fn list(_c: Caller) -> Json<Value> {
    Json(json!({"extensions": EXTENSIONS.iter().map(render).collect::<Vec<_>>()}))
}

async fn show(_c: Caller, State(_ctx): State<Ctx>, Path(alias): Path<String>) -> NR<Response> {
    match EXTENSIONS.iter().find(|e| e.0 == alias) {
        Some(e) => Ok(Json(json!({"extension": render(e)})).into_response()),
        None => Err(NetError {
            kind: NetErrorKind::NotFound,
            reason: "HTTPNotFound",
            message: format!("Extension with alias {alias} does not exist"),
        }
        .into()),
    }
}

/// Routes.
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/network/v2.0/extensions", get(list))
        .route("/network/v2.0/extensions/:alias", get(show))
}
