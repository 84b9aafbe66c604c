//! `os-quota-sets` and `os-quota-class-sets`, rendered per microversion as
//! `nova/api/openstack/compute/quota_sets.py` does. The limits and their
//! enforcement are the engine's (`lifeboat_engine::QUOTA_DEFAULTS`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use lifeboat_engine::{Limits, QuotaTarget, QuotaUsage};
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::fault::R;
use crate::microversion::Mv;
use crate::wire::{invalid, parse_body};
use crate::Ctx;

/// Resources Nova still shows before 2.57 (personality files) and before
/// 2.36 (network proxies); Lifeboat does not count them.
fn legacy(mv: Mv) -> Vec<(&'static str, i64)> {
    let mut v = vec![];
    if !mv.ge(57) {
        v.extend([
            ("injected_file_content_bytes", 10240),
            ("injected_file_path_bytes", 255),
            ("injected_files", 5),
        ]);
    }
    if !mv.ge(36) {
        v.extend([
            ("fixed_ips", -1),
            ("floating_ips", -1),
            ("security_group_rules", -1),
            ("security_groups", -1),
        ]);
    }
    v
}

/// The `quota_set` object: limits (and `id` when given).
pub fn quota_set(mv: Mv, id: Option<&str>, limits: &Limits) -> Value {
    let mut m = Map::new();
    if let Some(id) = id {
        m.insert("id".into(), json!(id));
    }
    for (k, v) in limits {
        m.insert(k.clone(), json!(v));
    }
    for (k, v) in legacy(mv) {
        m.insert(k.into(), json!(v));
    }
    Value::Object(m)
}

fn detail_set(mv: Mv, id: &str, limits: &Limits, used: &QuotaUsage) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    for (k, v) in limits {
        m.insert(
            k.clone(),
            json!({"in_use": used.get(k), "limit": v, "reserved": 0}),
        );
    }
    for (k, v) in legacy(mv) {
        m.insert(k.into(), json!({"in_use": 0, "limit": v, "reserved": 0}));
    }
    Value::Object(m)
}

async fn show(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    let l = ctx.engine.show_quotas(&a, &id).await?;
    Ok(Json(json!({"quota_set": quota_set(mv, Some(&id), &l)})))
}

async fn detail(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    let l = ctx.engine.show_quotas(&a, &id).await?;
    let used = ctx.engine.quota_usage(&a, &id).await?;
    Ok(Json(json!({"quota_set": detail_set(mv, &id, &l, &used)})))
}

async fn defaults(
    State(ctx): State<Ctx>,
    mv: Mv,
    _c: Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    let l = ctx.engine.quota_defaults().await?;
    Ok(Json(json!({"quota_set": quota_set(mv, Some(&id), &l)})))
}

/// Parses Nova's `quota_set` update body (`additionalProperties: false`,
/// integers or integer strings from -1 to 2^31-1, optional `force`).
pub fn parse_update(mv: Mv, body: &Value, wrapper: &str) -> R<(Limits, bool)> {
    let Some(o) = body.get(wrapper).and_then(Value::as_object) else {
        return Err(invalid(
            wrapper,
            &format!("'{wrapper}' is a required property"),
        ));
    };
    if let Some(extra) = body
        .as_object()
        .and_then(|b| b.keys().find(|k| *k != wrapper))
    {
        return Err(invalid(
            "root",
            &format!("Additional properties are not allowed ('{extra}' was unexpected)"),
        ));
    }
    let mut limits = Limits::new();
    let mut force = false;
    let legacy = legacy(mv);
    for (k, v) in o {
        if k == "force" && wrapper == "quota_set" {
            force = match v {
                Value::Bool(b) => *b,
                Value::String(s) if s.eq_ignore_ascii_case("true") => true,
                Value::String(s) if s.eq_ignore_ascii_case("false") => false,
                other => {
                    return Err(invalid(
                        "force",
                        &format!("Value: {other}. {other} is not of type 'boolean'"),
                    ))
                }
            };
            continue;
        }
        let known = lifeboat_engine::QUOTA_DEFAULTS.iter().any(|(r, _)| r == k);
        if !known && !legacy.iter().any(|(r, _)| r == k) {
            return Err(invalid(
                wrapper,
                &format!("Additional properties are not allowed ('{k}' was unexpected)"),
            ));
        }
        let n = match v {
            Value::Number(n) if n.is_i64() => n.as_i64().unwrap_or(0),
            Value::String(s) if s.parse::<i64>().is_ok() => s.parse().unwrap_or(0),
            other => {
                return Err(invalid(
                    k,
                    &format!("Value: {other}. {other} is not of type 'integer', 'string'"),
                ))
            }
        };
        if n < -1 {
            return Err(invalid(
                k,
                &format!("Value: {n}. {n} is less than the minimum of -1"),
            ));
        }
        if n > 0x7FFF_FFFF {
            return Err(invalid(
                k,
                &format!("Value: {n}. {n} is greater than the maximum of 2147483647"),
            ));
        }
        if known {
            limits.insert(k.clone(), n);
        }
    }
    Ok((limits, force))
}

async fn update(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> R<Json<Value>> {
    if !a.is_admin() {
        return Err(crate::fault::Fault::forbidden(
            "Policy doesn't allow os_compute_api:os-quota-sets:update to be performed.",
        ));
    }
    let body = parse_body(&body)?;
    let (changes, force) = parse_update(mv, &body, "quota_set")?;
    let l = ctx
        .engine
        .update_quotas(&a, QuotaTarget::Project(&id), &changes, force)
        .await?;
    Ok(Json(json!({"quota_set": quota_set(mv, None, &l)})))
}

async fn delete(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<StatusCode> {
    ctx.engine.delete_quotas(&a, &id).await?;
    Ok(StatusCode::ACCEPTED)
}

async fn class_show(
    State(ctx): State<Ctx>,
    mv: Mv,
    _c: Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    let l = ctx.engine.quota_defaults().await?;
    Ok(Json(
        json!({"quota_class_set": quota_set(mv, Some(&id), &l)}),
    ))
}

async fn class_update(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> R<Json<Value>> {
    if !a.is_admin() {
        return Err(crate::fault::Fault::forbidden(
            "Policy doesn't allow os_compute_api:os-quota-class-sets:update to be performed.",
        ));
    }
    let body = parse_body(&body)?;
    let (changes, _) = parse_update(mv, &body, "quota_class_set")?;
    // Nova only honours the `default` class; others are stored and ignored.
    let l = ctx
        .engine
        .update_quotas(&a, QuotaTarget::Class(&id), &changes, true)
        .await?;
    Ok(Json(json!({"quota_class_set": quota_set(mv, None, &l)})))
}

/// The quota routes.
pub fn routes() -> Router<Ctx> {
    const P: &str = "/compute/v2.1/os-quota-sets";
    Router::new()
        .route(&format!("{P}/:id"), get(show).put(update).delete(delete))
        .route(&format!("{P}/:id/defaults"), get(defaults))
        .route(&format!("{P}/:id/detail"), get(detail))
        .route(
            "/compute/v2.1/os-quota-class-sets/:id",
            get(class_show).put(class_update),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_bodies() {
        let (l, force) = parse_update(
            Mv(1),
            &json!({"quota_set": {"instances": "5", "cores": -1, "force": true}}),
            "quota_set",
        )
        .unwrap();
        assert_eq!(l["instances"], 5);
        assert_eq!(l["cores"], -1);
        assert!(force);
        // Legacy keys are accepted (and ignored) where Nova still has them.
        assert!(parse_update(
            Mv(1),
            &json!({"quota_set": {"floating_ips": 3}}),
            "quota_set"
        )
        .is_ok());
        let e = parse_update(
            Mv(57),
            &json!({"quota_set": {"floating_ips": 3}}),
            "quota_set",
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("Additional properties are not allowed ('floating_ips' was unexpected)"),
            "{}",
            e.message
        );
        let e = parse_update(Mv(57), &json!({"quota_set": {"ram": -2}}), "quota_set").unwrap_err();
        assert!(e.message.contains("-2 is less than the minimum of -1"));
        assert!(parse_update(Mv(57), &json!({"quota_set": {"ram": 1.5}}), "quota_set").is_err());
        assert!(parse_update(Mv(57), &json!({"quota": {}}), "quota_set").is_err());
    }

    #[test]
    fn keys_by_version() {
        let l: Limits = lifeboat_engine::QUOTA_DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let v = quota_set(Mv(1), Some("p"), &l);
        assert_eq!(v["instances"], 10);
        assert_eq!(v["cores"], 20);
        assert_eq!(v["ram"], 51200);
        assert_eq!(v["key_pairs"], 100);
        assert_eq!(v["metadata_items"], 128);
        assert_eq!(v["server_groups"], 10);
        assert_eq!(v["server_group_members"], 10);
        assert_eq!(v["floating_ips"], -1);
        assert_eq!(v["injected_files"], 5);
        let v = quota_set(Mv(57), None, &l);
        assert!(v.get("floating_ips").is_none() && v.get("injected_files").is_none());
        assert!(v.get("id").is_none());
    }
}
