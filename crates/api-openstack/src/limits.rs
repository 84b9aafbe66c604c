//! `GET /limits`. Lifeboat enforces no per-project quotas on instances,
//! cores or RAM, so those maxima are -1 (Nova's "unlimited"); usage is real.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use lifeboat_engine::ListServers;
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::fault::R;
use crate::microversion::Mv;
use crate::Ctx;

/// The absolute limits at a microversion, given usage.
pub fn absolute(mv: Mv, instances: u64, cores: u64, ram: u64, keypairs: u64) -> Value {
    let _ = keypairs;
    let mut m = Map::new();
    let mut put = |k: &str, v: i64| {
        m.insert(k.into(), json!(v));
    };
    put("maxServerMeta", 128);
    put("maxTotalInstances", -1);
    put("maxTotalCores", -1);
    put("maxTotalRAMSize", -1);
    put("maxTotalKeypairs", -1);
    put("maxServerGroups", -1);
    put("maxServerGroupMembers", -1);
    put("totalInstancesUsed", instances as i64);
    put("totalCoresUsed", cores as i64);
    put("totalRAMUsed", ram as i64);
    put("totalServerGroupsUsed", 0);
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
    let servers = ctx.engine.list_servers(&a, &ListServers::default()).await?;
    let (mut cores, mut ram) = (0u64, 0u64);
    for s in &servers {
        cores += s.flavor.vcpus as u64;
        ram += s.flavor.ram;
    }
    let kps = ctx.engine.keypairs(&a).await?.len() as u64;
    Ok(Json(json!({"limits": {
        "rate": [],
        "absolute": absolute(mv, servers.len() as u64, cores, ram, kps),
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
        let v = absolute(Mv(1), 1, 2, 3, 0);
        assert!(v.get("maxPersonality").is_some());
        assert!(v.get("maxSecurityGroups").is_some());
        let v = absolute(Mv(57), 1, 2, 3, 0);
        assert!(v.get("maxPersonality").is_none());
        assert!(v.get("maxImageMeta").is_none());
        assert!(v.get("maxSecurityGroups").is_none());
        assert_eq!(v["totalCoresUsed"], 2);
    }
}
