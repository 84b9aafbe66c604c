//! `/flavors` (and flavor management for admins).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use lifeboat_core::{Actor, Flavor};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::fault::{Fault, R};
use crate::microversion::Mv;
use crate::wire::{invalid, next_link, parse_body, Pairs};
use crate::Ctx;

fn links(ctx: &Ctx, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{}/flavors/{id}", ctx.compute_url())},
        {"rel": "bookmark", "href": format!("{}/flavors/{id}", ctx.bookmark_url())},
    ])
}

/// The brief flavor view.
pub fn basic(ctx: &Ctx, mv: Mv, f: &Flavor) -> Value {
    let mut v = json!({"id": f.id, "name": f.name, "links": links(ctx, &f.id)});
    if mv.ge(55) {
        v["description"] = json!(f.description);
    }
    v
}

/// The detailed flavor view.
pub fn detail(ctx: &Ctx, mv: Mv, f: &Flavor) -> Value {
    let mut v = json!({
        "id": f.id,
        "name": f.name,
        "ram": f.ram,
        "disk": f.disk,
        "vcpus": f.vcpus,
        "links": links(ctx, &f.id),
        "OS-FLV-EXT-DATA:ephemeral": f.ephemeral,
        "OS-FLV-DISABLED:disabled": f.disabled,
        // Before 2.75 a zero swap is rendered as an empty string.
        "swap": if f.swap == 0 && !mv.ge(75) { json!("") } else { json!(f.swap) },
        "rxtx_factor": f.rxtx_factor,
        "os-flavor-access:is_public": f.is_public,
    });
    if mv.ge(55) {
        v["description"] = json!(f.description);
    }
    if mv.ge(61) {
        v["extra_specs"] = json!(f.extra_specs);
    }
    v
}

fn get_q<'a>(q: &'a Pairs, k: &str) -> Option<&'a str> {
    q.iter()
        .rev()
        .find(|(x, _)| x == k)
        .map(|(_, v)| v.as_str())
}

async fn visible(ctx: &Ctx, a: &Actor, q: &Pairs) -> R<Vec<Flavor>> {
    let mut fs = ctx.engine.flavors(a).await?;
    if a.is_admin() {
        // Nova's _parse_is_public: absent means true, "none" means all;
        // true also includes the private flavors the admin's project was
        // given access to (nova/objects/flavor.py _flavor_get_all_from_db).
        let want = match get_q(q, "is_public").map(|v| v.to_lowercase()) {
            None => Some(true),
            Some(v) if v == "none" => None,
            Some(v) => Some(matches!(
                v.as_str(),
                "true" | "1" | "yes" | "t" | "on" | "y"
            )),
        };
        match want {
            None => {}
            Some(true) => {
                let granted = ctx.engine.flavors_granted_to(&a.project_id).await?;
                fs.retain(|f| f.is_public || granted.contains(&f.id));
            }
            Some(false) => fs.retain(|f| !f.is_public),
        }
    }
    if let Some(r) = get_q(q, "minRam") {
        let r: u64 = r
            .parse()
            .map_err(|_| Fault::bad_request(format!("Invalid minRam filter [{r}]")))?;
        fs.retain(|f| f.ram >= r);
    }
    if let Some(d) = get_q(q, "minDisk") {
        let d: u64 = d
            .parse()
            .map_err(|_| Fault::bad_request(format!("Invalid minDisk filter [{d}]")))?;
        fs.retain(|f| f.disk >= d);
    }
    fs.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some(m) = get_q(q, "marker") {
        let pos = fs
            .iter()
            .position(|f| f.id == m)
            .ok_or_else(|| Fault::bad_request(format!("marker [{m}] not found")))?;
        fs.drain(..=pos);
    }
    if let Some(l) = get_q(q, "limit") {
        let l: usize = l.parse().map_err(|_| {
            invalid(
                "limit",
                &format!("Value: {l}. '{l}' is not of type 'integer'"),
            )
        })?;
        fs.truncate(l);
    }
    Ok(fs)
}

fn paged(ctx: &Ctx, path: &str, q: &Pairs, items: Vec<Value>, last: Option<&Flavor>) -> Value {
    let mut body = json!({ "flavors": items });
    if let (Some(l), Some(last)) = (get_q(q, "limit"), last) {
        if l.parse::<usize>().ok() == Some(body["flavors"].as_array().map_or(0, |a| a.len())) {
            body["flavors_links"] = next_link(ctx, path, q, &last.id);
        }
    }
    body
}

async fn list(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Query(q): Query<Pairs>,
) -> R<Json<Value>> {
    let fs = visible(&ctx, &a, &q).await?;
    let items = fs.iter().map(|f| basic(&ctx, mv, f)).collect();
    Ok(Json(paged(&ctx, "flavors", &q, items, fs.last())))
}

async fn list_detail(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Query(q): Query<Pairs>,
) -> R<Json<Value>> {
    let fs = visible(&ctx, &a, &q).await?;
    let items = fs.iter().map(|f| detail(&ctx, mv, f)).collect();
    Ok(Json(paged(&ctx, "flavors/detail", &q, items, fs.last())))
}

async fn find(ctx: &Ctx, id: &str) -> R<Flavor> {
    ctx.engine
        .flavor(id)
        .await
        .ok()
        .filter(|f| f.id == id)
        .ok_or_else(|| Fault::not_found(format!("Flavor {id} could not be found.")))
}

async fn show(
    State(ctx): State<Ctx>,
    mv: Mv,
    _c: Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    let f = find(&ctx, &id).await?;
    Ok(Json(json!({"flavor": detail(&ctx, mv, &f)})))
}

async fn extra_specs(State(ctx): State<Ctx>, _c: Caller, Path(id): Path<String>) -> R<Json<Value>> {
    let f = find(&ctx, &id).await?;
    Ok(Json(json!({"extra_specs": f.extra_specs})))
}

async fn create(State(ctx): State<Ctx>, mv: Mv, Caller(a): Caller, body: Bytes) -> R<Json<Value>> {
    let v = parse_body(&body)?;
    let f = &v["flavor"];
    if !f.is_object() {
        return Err(invalid("flavor", "'flavor' is a required property"));
    }
    let num = |k: &str| -> R<u64> {
        match &f[k] {
            Value::Number(n) => n.as_u64().ok_or_else(|| invalid(k, "Value must be >= 0")),
            Value::String(s) => s.parse().map_err(|_| invalid(k, "not an integer")),
            Value::Null => Ok(0),
            _ => Err(invalid(k, "not an integer")),
        }
    };
    let name = f["name"]
        .as_str()
        .ok_or_else(|| invalid("flavor", "'name' is a required property"))?;
    let id = match &f["id"] {
        Value::String(s) if !s.is_empty() && s != "auto" => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => uuid::Uuid::new_v4().to_string(),
    };
    let flavor = Flavor {
        id,
        name: name.to_string(),
        vcpus: num("vcpus")? as u32,
        ram: num("ram")?,
        disk: num("disk")?,
        ephemeral: num("OS-FLV-EXT-DATA:ephemeral")?,
        swap: num("swap")?,
        rxtx_factor: f["rxtx_factor"].as_f64().unwrap_or(1.0),
        is_public: f["os-flavor-access:is_public"].as_bool().unwrap_or(true),
        disabled: false,
        description: if mv.ge(55) {
            f["description"].as_str().map(str::to_string)
        } else {
            None
        },
        extra_specs: Default::default(),
    };
    let saved = ctx.engine.create_flavor(&a, flavor).await?;
    Ok(Json(json!({"flavor": detail(&ctx, mv, &saved)})))
}

async fn delete(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<StatusCode> {
    ctx.engine.delete_flavor(&a, &id).await?;
    Ok(StatusCode::ACCEPTED)
}

fn access_body(list: &[lifeboat_engine::FlavorAccess]) -> Value {
    json!({"flavor_access": list.iter().map(|a| json!({
        "flavor_id": a.flavor_id,
        "tenant_id": a.project_id,
    })).collect::<Vec<_>>()})
}

/// `GET /flavors/{id}/os-flavor-access` (admin).
async fn access_list(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    match ctx.engine.flavor_access(&a, &id).await {
        Ok(l) => Ok(Json(access_body(&l))),
        Err(lifeboat_engine::ComputeError::NotFound { kind, .. })
            if kind != lifeboat_engine::Resource::Flavor =>
        {
            Err(Fault::not_found(
                "Access list not available for public flavors.",
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /flavors/{id}/action`: `addTenantAccess` / `removeTenantAccess`.
async fn access_action(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> R<Json<Value>> {
    let body = parse_body(&body)?;
    let Some(o) = body.as_object().filter(|o| o.len() == 1) else {
        return Err(Fault::bad_request(
            "Invalid request body: one action expected.",
        ));
    };
    let (action, arg) = o.iter().next().expect("one key");
    let tenant = match &arg["tenant"] {
        Value::String(t) if !t.is_empty() && t.len() <= 255 => t.clone(),
        Value::Null => return Err(invalid(action, "'tenant' is a required property")),
        other => {
            return Err(invalid(
                &format!("{action}/tenant"),
                &format!("Value: {other}. {other} is not of type 'string'"),
            ))
        }
    };
    if arg.as_object().is_some_and(|m| m.len() > 1) {
        let extra = arg
            .as_object()
            .unwrap()
            .keys()
            .find(|k| *k != "tenant")
            .cloned()
            .unwrap_or_default();
        return Err(invalid(
            action,
            &format!("Additional properties are not allowed ('{extra}' was unexpected)"),
        ));
    }
    use lifeboat_engine::ComputeError as E;
    let r = match action.as_str() {
        "addTenantAccess" => ctx.engine.add_flavor_access(&a, &id, &tenant).await,
        "removeTenantAccess" => ctx.engine.remove_flavor_access(&a, &id, &tenant).await,
        other => {
            return Err(Fault::bad_request(format!(
                "There is no such action: {other}"
            )))
        }
    };
    let r = r.map_err(|e| match e {
        E::NotFound {
            kind: lifeboat_engine::Resource::FlavorAccess,
            ..
        } => Fault::not_found(format!(
            "Flavor access not found for {id} / {tenant} combination."
        )),
        e => e.into(),
    });
    Ok(Json(access_body(&r?)))
}

/// The flavor routes.
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/compute/v2.1/flavors", get(list).post(create))
        .route("/compute/v2.1/flavors/detail", get(list_detail))
        .route("/compute/v2.1/flavors/:id", get(show).delete(delete))
        .route("/compute/v2.1/flavors/:id/os-extra_specs", get(extra_specs))
        .route(
            "/compute/v2.1/flavors/:id/os-flavor-access",
            get(access_list),
        )
        .route(
            "/compute/v2.1/flavors/:id/action",
            axum::routing::post(access_action),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_free_detail(mv: Mv) -> Value {
        // detail() only uses the ctx for links; build a throwaway value.
        let f = Flavor::defaults().remove(0);
        json!({
            "swap": if f.swap == 0 && !mv.ge(75) { json!("") } else { json!(f.swap) },
        })
    }

    #[test]
    fn swap_is_a_string_before_2_75() {
        assert_eq!(ctx_free_detail(Mv(74))["swap"], "");
        assert_eq!(ctx_free_detail(Mv(75))["swap"], 0);
    }
}
