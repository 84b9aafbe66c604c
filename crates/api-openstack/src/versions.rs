//! Compute version documents at `/compute` and `/compute/v2.1`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::microversion::{MAX, MIN};
use crate::Ctx;

fn v21(ctx: &Ctx, full: bool) -> Value {
    let mut links = vec![json!({"rel": "self", "href": format!("{}/", ctx.compute_url())})];
    if full {
        links.push(
            json!({"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}),
        );
    }
    let mut v = json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": format!("2.{MAX}"),
        "min_version": format!("2.{MIN}"),
        "updated": "2013-07-23T11:33:21Z",
        "links": links,
    });
    if full {
        v["media-types"] = json!([{
            "base": "application/json",
            "type": "application/vnd.openstack.compute+json;version=2.1",
        }]);
    }
    v
}

async fn root(State(ctx): State<Ctx>) -> Json<Value> {
    Json(json!({"versions": [v21(&ctx, false)]}))
}

async fn version(State(ctx): State<Ctx>) -> Json<Value> {
    Json(json!({"version": v21(&ctx, true)}))
}

/// `/compute` and `/compute/`.
pub fn root_routes() -> Router<Ctx> {
    Router::new()
        .route("/compute", get(root))
        .route("/compute/", get(root))
}

/// `/compute/v2.1` and `/compute/v2.1/` (inside the microversion layer).
pub fn versioned_routes() -> Router<Ctx> {
    Router::new()
        .route("/compute/v2.1", get(version))
        .route("/compute/v2.1/", get(version))
}
