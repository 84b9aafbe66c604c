//! `GET /limits`: the project's quotas (`lifeboat_engine` enforces them)
//! and its usage, in Nova's absolute-limits names.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use lifeboat_engine::{Limits, QuotaUsage};
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::fault::R;
use crate::microversion::Mv;
use crate::Ctx;

/// The absolute limits at a microversion, given limits and usage.
pub fn absolute(mv: Mv, q: &Limits, used: &QuotaUsage) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: i64| {
        m.insert(k.into(), json!(v));
    };
    let l = |k: &str| q.get(k).copied().unwrap_or(-1);
    put("maxServerMeta", l("metadata_items"));
    put("maxTotalInstances", l("instances"));
    put("maxTotalCores", l("cores"));
    put("maxTotalRAMSize", l("ram"));
    put("maxTotalKeypairs", l("key_pairs"));
    put("maxServerGroups", l("server_groups"));
    put("maxServerGroupMembers", l("server_group_members"));
    put("totalInstancesUsed", used.instances);
    put("totalCoresUsed", used.cores);
    put("totalRAMUsed", used.ram);
    put("totalServerGroupsUsed", used.server_groups);
    if !mv.ge(36) {
        put("maxSecurityGroups", -1);
        put("maxSecurityGroupRules", -1);
        put("maxTotalFloatingIps", -1);
        put("totalFloatingIpsUsed", 0);
        put("totalSecurityGroupsUsed", 0);
    }
    if !mv.ge(39) {
        put("maxImageMeta", 128);
    }
    if !mv.ge(57) {
        put("maxPersonality", 5);
        put("maxPersonalitySize", 10240);
    }
    Value::Object(m)
}

async fn limits(State(ctx): State<Ctx>, mv: Mv, Caller(a): Caller) -> R<Json<Value>> {
    let q = ctx.engine.project_quotas(&a.project_id).await?;
    let used = ctx.engine.quota_usage(&a, &a.project_id).await?;
    Ok(Json(json!({"limits": {
        "rate": [],
        "absolute": absolute(mv, &q, &used),
    }})))
}

/// The limits route.
pub fn routes() -> Router<Ctx> {
    Router::new().route("/compute/v2.1/limits", get(limits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_by_version() {
        let q: Limits = lifeboat_engine::QUOTA_DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let used = QuotaUsage {
            instances: 1,
            cores: 2,
            ram: 3,
            key_pairs: 0,
            server_groups: 0,
        };
        let v = absolute(Mv(1), &q, &used);
        assert_eq!(v["maxTotalInstances"], 10);
        assert_eq!(v["maxTotalRAMSize"], 51200);
        assert!(v.get("maxPersonality").is_some());
        assert!(v.get("maxSecurityGroups").is_some());
        let v = absolute(Mv(57), &q, &used);
        assert!(v.get("maxPersonality").is_none());
        assert!(v.get("maxImageMeta").is_none());
        assert!(v.get("maxSecurityGroups").is_none());
        assert_eq!(v["totalCoresUsed"], 2);
    }
}
