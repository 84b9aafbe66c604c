//! `/os-availability-zone` and `/os-availability-zone/detail`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::fault::{Fault, R};
use crate::{naive_time, Ctx};

async fn zones(ctx: &Ctx, detail: bool) -> Value {
    let mut by_zone: BTreeMap<String, Vec<(lifeboat_core::Host, bool)>> = BTreeMap::new();
    for (h, up) in ctx.engine.hosts().await {
        by_zone
            .entry(h.availability_zone.clone())
            .or_default()
            .push((h, up));
    }
    let info: Vec<Value> = by_zone
        .into_iter()
        .map(|(z, hosts)| {
            let available = hosts.iter().any(|(h, up)| *up && h.enabled);
            let hosts_v = if detail {
                let mut m = serde_json::Map::new();
                for (h, up) in &hosts {
                    m.insert(
                        h.name.clone(),
                        json!({"nova-compute": {
                            "available": up,
                            "active": h.enabled,
                            "updated_at": h.last_seen.as_ref().map(naive_time),
                        }}),
                    );
                }
                Value::Object(m)
            } else {
                Value::Null
            };
            json!({"zoneName": z, "zoneState": {"available": available}, "hosts": hosts_v})
        })
        .collect();
    json!({ "availabilityZoneInfo": info })
}

async fn index(State(ctx): State<Ctx>, _c: Caller) -> Json<Value> {
    Json(zones(&ctx, false).await)
}

async fn detail(State(ctx): State<Ctx>, Caller(a): Caller) -> R<Json<Value>> {
    if !a.is_admin() {
        return Err(Fault::forbidden(
            "Policy doesn't allow os_compute_api:os-availability-zone:detail to be performed.",
        ));
    }
    Ok(Json(zones(&ctx, true).await))
}

/// The availability zone routes.
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/compute/v2.1/os-availability-zone", get(index))
        .route("/compute/v2.1/os-availability-zone/detail", get(detail))
}
