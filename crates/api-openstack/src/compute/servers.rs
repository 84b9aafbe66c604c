//! `/servers` handlers: create, list, show, update, delete, and the server
//! sub-resources (metadata, tags, ips, security groups, topology, instance
//! actions). Views are in `super::views`, parsing in `super::parse`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lifeboat_core::{Actor, Server, VmState, Workflow};
use serde_json::{json, Value};

use super::parse::{parse_create, parse_list, parse_update, string_map};
use super::views::{Render, View};
use crate::auth::Caller;
use crate::fault::{Fault, R};
use crate::microversion::Mv;
use crate::nova::instance_action_name;
use crate::wire::{enc, invalid, next_link, parse_body, Pairs};
use crate::{naive_time, Ctx};

async fn list_common(ctx: &Ctx, mv: Mv, a: &Actor, q: &Pairs, detail: bool) -> R<Json<Value>> {
    let Some(l) = parse_list(q, mv, a)? else {
        return Ok(Json(json!({"servers": []})));
    };
    let limit = l.limit;
    let servers = ctx.engine.list_servers(a, &l).await?;
    let r = Render::load(ctx, mv, a).await?;
    let list: Vec<Value> = servers
        .iter()
        .map(|s| if detail { r.detail(s) } else { r.basic(s) })
        .collect();
    let mut body = json!({ "servers": list });
    if let (Some(n), Some(last)) = (limit, servers.last()) {
        if servers.len() as i64 == n && n > 0 {
            let path = if detail { "servers/detail" } else { "servers" };
            body["servers_links"] = next_link(ctx, path, q, &last.id);
        }
    }
    Ok(Json(body))
}

async fn list(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Query(q): Query<Pairs>,
) -> R<Json<Value>> {
    list_common(&ctx, mv, &a, &q, false).await
}

async fn list_detail(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Query(q): Query<Pairs>,
) -> R<Json<Value>> {
    list_common(&ctx, mv, &a, &q, true).await
}

async fn create(State(ctx): State<Ctx>, mv: Mv, Caller(a): Caller, body: Bytes) -> R<Response> {
    let body = parse_body(&body)?;
    let (req, want_reservation) = parse_create(&body, mv)?;
    let disk_config = req.disk_config.clone().unwrap_or_else(|| "MANUAL".into());
    let groups = if req.security_groups.is_empty() {
        vec!["default".to_string()]
    } else {
        req.security_groups.clone()
    };
    let created = ctx.engine.create_servers(&a, req).await?;
    let first = created
        .first()
        .ok_or_else(|| Fault::bad_request("No server was created."))?;
    if want_reservation {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"reservation_id": first.server.reservation_id})),
        )
            .into_response());
    }
    let r = Render::load(&ctx, mv, &a).await?;
    let body = json!({"server": {
        "id": first.server.id,
        "links": r.links("servers", &first.server.id),
        "OS-DCF:diskConfig": disk_config,
        "security_groups": groups.iter().map(|g| json!({"name": g})).collect::<Vec<_>>(),
        "adminPass": first.admin_pass,
    }});
    let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}/servers/{}",
        ctx.compute_url(),
        first.server.id
    )) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// A visible, not deleted server (Nova's `common.get_instance`).
pub async fn get_server(ctx: &Ctx, a: &Actor, id: &str) -> R<Server> {
    let s = ctx.engine.server(a, id).await?;
    if s.vm_state == VmState::Deleted {
        return Err(Fault::not_found(format!(
            "Instance {id} could not be found."
        )));
    }
    Ok(s)
}

async fn show(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    let s = get_server(&ctx, &a, &id).await?;
    let r = Render::load(&ctx, mv, &a).await?;
    Ok(Json(json!({"server": r.show(&s, View::Show)})))
}

async fn update(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> R<Json<Value>> {
    let body = parse_body(&body)?;
    let u = parse_update(&body, mv)?;
    get_server(&ctx, &a, &id).await?;
    let s = ctx.engine.update_server(&a, &id, u).await?;
    let r = Render::load(&ctx, mv, &a).await?;
    Ok(Json(json!({"server": r.show(&s, View::Update)})))
}

async fn delete(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<StatusCode> {
    get_server(&ctx, &a, &id).await?;
    ctx.engine.delete_server(&a, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- metadata ----

async fn metadata_get(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    let s = get_server(&ctx, &a, &id).await?;
    Ok(Json(json!({"metadata": s.metadata})))
}

fn meta_body(body: &Bytes, key: &str) -> R<BTreeMap<String, String>> {
    let v = parse_body(body)?;
    if !v[key].is_object() {
        return Err(invalid(key, &format!("'{key}' is a required property")));
    }
    string_map(&v, key)
}

/// PUT replaces the metadata, POST merges into it.
async fn set_metadata(
    ctx: &Ctx,
    a: &Actor,
    id: &str,
    body: &Bytes,
    replace: bool,
) -> R<Json<Value>> {
    let m = meta_body(body, "metadata")?;
    get_server(ctx, a, id).await?;
    let out = ctx.engine.set_metadata(a, id, m, replace).await?;
    Ok(Json(json!({"metadata": out})))
}

async fn metadata_replace(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> R<Json<Value>> {
    set_metadata(&ctx, &a, &id, &body, true).await
}

async fn metadata_merge(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> R<Json<Value>> {
    set_metadata(&ctx, &a, &id, &body, false).await
}

async fn metadata_item_get(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path((id, key)): Path<(String, String)>,
) -> R<Json<Value>> {
    let s = get_server(&ctx, &a, &id).await?;
    let v = s
        .metadata
        .get(&key)
        .ok_or_else(|| Fault::not_found("Metadata item was not found"))?;
    Ok(Json(json!({"meta": {key: v}})))
}

async fn metadata_item_put(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path((id, key)): Path<(String, String)>,
    body: Bytes,
) -> R<Json<Value>> {
    let m = meta_body(&body, "meta")?;
    if m.len() != 1 {
        return Err(Fault::bad_request("Request body contains too many items"));
    }
    if !m.contains_key(&key) {
        return Err(Fault::bad_request("Request body and URI mismatch"));
    }
    get_server(&ctx, &a, &id).await?;
    ctx.engine.set_metadata(&a, &id, m.clone(), false).await?;
    Ok(Json(json!({"meta": m})))
}

async fn metadata_item_delete(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path((id, key)): Path<(String, String)>,
) -> R<StatusCode> {
    get_server(&ctx, &a, &id).await?;
    ctx.engine
        .delete_metadata(&a, &id, &key)
        .await
        .map_err(|e| match e {
            lifeboat_engine::ComputeError::NotFound {
                kind: lifeboat_engine::Resource::MetadataItem,
                ..
            } => Fault::not_found("Metadata item was not found"),
            e => e.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- tags (2.26+) ----

fn need(mv: Mv, min: u16) -> R<()> {
    if mv.ge(min) {
        Ok(())
    } else {
        Err(Fault::version_not_found())
    }
}

async fn tags_get(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    need(mv, 26)?;
    let s = get_server(&ctx, &a, &id).await?;
    Ok(Json(json!({"tags": s.tags})))
}

async fn tags_put(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> R<Json<Value>> {
    need(mv, 26)?;
    let v = parse_body(&body)?;
    let tags: Vec<String> = v["tags"]
        .as_array()
        .ok_or_else(|| invalid("tags", "'tags' is a required property"))?
        .iter()
        .map(|t| {
            t.as_str()
                .map(str::to_string)
                .ok_or_else(|| invalid("tags", "not a string"))
        })
        .collect::<R<_>>()?;
    get_server(&ctx, &a, &id).await?;
    let out = ctx.engine.set_tags(&a, &id, tags).await?;
    Ok(Json(json!({"tags": out})))
}

async fn tags_delete_all(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<StatusCode> {
    need(mv, 26)?;
    get_server(&ctx, &a, &id).await?;
    ctx.engine.set_tags(&a, &id, vec![]).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn tag_check(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path((id, tag)): Path<(String, String)>,
) -> R<StatusCode> {
    need(mv, 26)?;
    let s = get_server(&ctx, &a, &id).await?;
    if s.tags.contains(&tag) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Fault::not_found(format!(
            "Tag '{tag}' could not be found on instance {id}."
        )))
    }
}

async fn tag_add(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path((id, tag)): Path<(String, String)>,
) -> R<Response> {
    need(mv, 26)?;
    get_server(&ctx, &a, &id).await?;
    let created = ctx.engine.add_tag(&a, &id, &tag).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    };
    let mut resp = status.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}/servers/{id}/tags/{}",
        ctx.compute_url(),
        enc(&tag)
    )) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn tag_delete(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path((id, tag)): Path<(String, String)>,
) -> R<StatusCode> {
    need(mv, 26)?;
    get_server(&ctx, &a, &id).await?;
    ctx.engine
        .remove_tag(&a, &id, &tag)
        .await
        .map_err(|e| match e {
            lifeboat_engine::ComputeError::NotFound {
                kind: lifeboat_engine::Resource::Tag,
                ..
            } => Fault::not_found(format!("Tag '{tag}' could not be found on instance {id}.")),
            e => e.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- ips, security groups, topology ----

async fn ips(State(ctx): State<Ctx>, Caller(a): Caller, Path(id): Path<String>) -> R<Json<Value>> {
    let s = get_server(&ctx, &a, &id).await?;
    Ok(Json(json!({"addresses": Render::addresses(&s, false)})))
}

async fn ips_network(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path((id, net)): Path<(String, String)>,
) -> R<Json<Value>> {
    let s = get_server(&ctx, &a, &id).await?;
    let all = Render::addresses(&s, false);
    let list = all
        .get(&net)
        .cloned()
        .ok_or_else(|| Fault::not_found("Instance is not a member of specified network"))?;
    Ok(Json(json!({ net: list })))
}

/// A stable id for a security group name (Lifeboat keeps groups by name).
pub fn security_group_id(project: &str, name: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(Sha256::digest(format!("sg:{project}:{name}")));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

async fn security_groups(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    let s = get_server(&ctx, &a, &id).await?;
    let groups: Vec<Value> = s
        .security_groups
        .iter()
        .map(|g| {
            json!({
                "id": security_group_id(&s.project_id, g),
                "name": g,
                "description": if g == "default" { "Default security group".to_string() } else { g.clone() },
                "tenant_id": s.project_id,
                "rules": [],
            })
        })
        .collect();
    Ok(Json(json!({"security_groups": groups})))
}

async fn topology(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    need(mv, 78)?;
    get_server(&ctx, &a, &id).await?;
    // Lifeboat servers have no NUMA topology: Nova's answer for those.
    Ok(Json(json!({"nodes": [], "pagesize_kb": null})))
}

// ---- instance actions ----

fn action_json(w: &Workflow, server_id: &str, mv: Mv) -> Value {
    let failed = matches!(
        w.state,
        lifeboat_core::WorkflowState::Failed | lifeboat_core::WorkflowState::RolledBack
    );
    let mut v = json!({
        "action": instance_action_name(&w.kind),
        "instance_uuid": server_id,
        "message": if failed { json!("Error") } else { Value::Null },
        "project_id": w.project_id,
        "request_id": w.request_id,
        "start_time": naive_time(&w.created_at),
        "user_id": w.user_id,
    });
    if mv.ge(58) {
        v["updated_at"] = json!(naive_time(&w.updated_at));
    }
    v
}

async fn instance_actions(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    let s = ctx.engine.server(&a, &id).await?;
    let wfs = ctx.engine.server_workflows(&a, &s.id).await?;
    Ok(Json(
        json!({"instanceActions": wfs.iter().map(|w| action_json(w, &s.id, mv)).collect::<Vec<_>>()}),
    ))
}

async fn instance_action(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path((id, req)): Path<(String, String)>,
) -> R<Json<Value>> {
    let s = ctx.engine.server(&a, &id).await?;
    let wfs = ctx.engine.server_workflows(&a, &s.id).await?;
    let w = wfs
        .iter()
        .find(|w| w.request_id == req)
        .ok_or_else(|| Fault::not_found(format!("Action {req} could not be found.")))?;
    let mut v = action_json(w, &s.id, mv);
    if a.is_admin() || mv.ge(51) {
        let events: Vec<Value> = w
            .steps
            .iter()
            .filter(|st| st.started_at.is_some())
            .map(|st| {
                let result = match st.state {
                    lifeboat_core::StepState::Done => json!("Success"),
                    lifeboat_core::StepState::Failed => json!("Error"),
                    lifeboat_core::StepState::Undone => json!("Error"),
                    _ => Value::Null,
                };
                let mut e = json!({
                    "event": format!("compute_{}", st.name),
                    "start_time": st.started_at.as_ref().map(naive_time),
                    "finish_time": st.finished_at.as_ref().map(naive_time),
                    "result": result,
                });
                if a.is_admin() {
                    e["traceback"] = Value::Null;
                }
                if mv.ge(62) {
                    if a.is_admin() {
                        e["host"] = json!(s.host);
                    }
                    e["hostId"] = json!(s.host_id());
                }
                if mv.ge(84) {
                    e["details"] = Value::Null;
                }
                e
            })
            .collect();
        v["events"] = json!(events);
    }
    Ok(Json(json!({"instanceAction": v})))
}

/// The server routes.
pub fn routes() -> Router<Ctx> {
    const P: &str = "/compute/v2.1/servers";
    Router::new()
        .route(P, get(list).post(create))
        .route(&format!("{P}/detail"), get(list_detail))
        .route(&format!("{P}/:id"), get(show).put(update).delete(delete))
        .route(
            &format!("{P}/:id/metadata"),
            get(metadata_get).put(metadata_replace).post(metadata_merge),
        )
        .route(
            &format!("{P}/:id/metadata/:key"),
            get(metadata_item_get)
                .put(metadata_item_put)
                .delete(metadata_item_delete),
        )
        .route(
            &format!("{P}/:id/tags"),
            get(tags_get).put(tags_put).delete(tags_delete_all),
        )
        .route(
            &format!("{P}/:id/tags/:tag"),
            get(tag_check).put(tag_add).delete(tag_delete),
        )
        .route(&format!("{P}/:id/ips"), get(ips))
        .route(&format!("{P}/:id/ips/:network"), get(ips_network))
        .route(&format!("{P}/:id/os-security-groups"), get(security_groups))
        .route(&format!("{P}/:id/topology"), get(topology))
        .route(
            &format!("{P}/:id/os-instance-actions"),
            get(instance_actions),
        )
        .route(
            &format!("{P}/:id/os-instance-actions/:req"),
            get(instance_action),
        )
}
