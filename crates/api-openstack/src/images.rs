//! A minimal Image v2 (Glance) at `/image/v2`: list, show and delete of the
//! base image and the snapshots and backups createImage/createBackup make;
//! plus Nova's deprecated image proxy at `/compute/v2.1/images` (< 2.36).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lifeboat_core::{Image, ImageKind, ImageStatus};
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::fault::{Fault, R};
use crate::microversion::Mv;
use crate::wire::Pairs;
use crate::Ctx;

/// Glance's status string.
pub fn glance_status(s: ImageStatus) -> &'static str {
    match s {
        ImageStatus::Queued => "queued",
        ImageStatus::Saving => "saving",
        ImageStatus::Active => "active",
        ImageStatus::Deleted => "deleted",
        ImageStatus::Killed => "killed",
    }
}

fn glance_time(t: &lifeboat_core::Time) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// An image as Glance v2 renders it (custom properties are top-level keys).
pub fn glance_image(i: &Image) -> Value {
    let mut m = Map::new();
    for (k, v) in &i.properties {
        m.insert(k.clone(), json!(v));
    }
    match i.kind {
        ImageKind::Base => {}
        ImageKind::Snapshot => {
            m.insert("image_type".into(), json!("snapshot"));
        }
        ImageKind::Backup => {
            m.insert("image_type".into(), json!("backup"));
            m.insert("backup_type".into(), json!(i.backup_type));
        }
    }
    if let Some(u) = &i.instance_uuid {
        m.insert("instance_uuid".into(), json!(u));
        m.insert("user_id".into(), Value::Null);
    }
    let fixed = json!({
        "id": i.id,
        "name": i.name,
        "status": glance_status(i.status),
        "visibility": i.visibility,
        "protected": i.id == lifeboat_engine::DEFAULT_IMAGE_ID,
        "os_hidden": false,
        "checksum": i.checksum,
        "os_hash_algo": i.os_hash_value.as_ref().map(|_| "sha512"),
        "os_hash_value": i.os_hash_value,
        "owner": i.owner,
        "size": i.size,
        "virtual_size": null,
        "min_disk": i.min_disk,
        "min_ram": i.min_ram,
        "disk_format": (!i.disk_format.is_empty()).then_some(&i.disk_format),
        "container_format": (!i.container_format.is_empty()).then_some(&i.container_format),
        "created_at": glance_time(&i.created_at),
        "updated_at": glance_time(&i.updated_at),
        "tags": [],
        "self": format!("/v2/images/{}", i.id),
        "file": format!("/v2/images/{}/file", i.id),
        "schema": "/v2/schemas/image",
    });
    if let Value::Object(f) = fixed {
        m.extend(f);
    }
    Value::Object(m)
}

/// Glance's error body (`{"message", "code", "title"}`, webob style).
pub(crate) fn glance_error(status: StatusCode, msg: String) -> Response {
    let title = match status.as_u16() {
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        400 => "Bad Request",
        _ => status.canonical_reason().unwrap_or("Error"),
    };
    (
        status,
        Json(json!({"code": status.as_u16(), "title": title, "message": msg})),
    )
        .into_response()
}

fn from_engine(e: lifeboat_engine::ComputeError) -> Response {
    use lifeboat_engine::ComputeError as E;
    match e {
        E::NotFound { id, .. } => glance_error(
            StatusCode::NOT_FOUND,
            format!("No image found with ID {id}"),
        ),
        E::Forbidden(m) => glance_error(StatusCode::FORBIDDEN, m),
        E::Conflict(m) => glance_error(StatusCode::CONFLICT, m),
        E::Rejected(r) => glance_error(
            match r.class() {
                lifeboat_engine::Class::Invalid => StatusCode::BAD_REQUEST,
                lifeboat_engine::Class::Conflict => StatusCode::CONFLICT,
            },
            crate::nova::reason_message(&r),
        ),
        E::OverLimit(m) => glance_error(StatusCode::PAYLOAD_TOO_LARGE, m),
        E::Internal(m) => {
            tracing::error!("image service: {m}");
            glance_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server has either erred or is incapable of performing the requested operation."
                    .into(),
            )
        }
        other => glance_error(StatusCode::BAD_REQUEST, other.to_string()),
    }
}

async fn list(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Query(q): Query<Pairs>,
) -> Result<Json<Value>, Response> {
    let mut imgs = ctx.engine.images(&a).await.map_err(from_engine)?;
    for (k, v) in &q {
        match k.as_str() {
            "id" => {
                let ids: Vec<&str> = v.strip_prefix("in:").unwrap_or(v).split(',').collect();
                imgs.retain(|i| ids.contains(&i.id.as_str()));
            }
            "name" => {
                let names: Vec<&str> = v.strip_prefix("in:").unwrap_or(v).split(',').collect();
                imgs.retain(|i| names.contains(&i.name.as_str()));
            }
            "status" => imgs.retain(|i| glance_status(i.status) == v.as_str()),
            "visibility" if v != "all" => imgs.retain(|i| &i.visibility == v),
            "owner" => imgs.retain(|i| i.owner.as_deref() == Some(v.as_str())),
            "image_type" => imgs.retain(|i| {
                matches!(
                    (i.kind, v.as_str()),
                    (ImageKind::Snapshot, "snapshot") | (ImageKind::Backup, "backup")
                )
            }),
            "instance_uuid" => imgs.retain(|i| i.instance_uuid.as_deref() == Some(v.as_str())),
            _ => {}
        }
    }
    imgs.sort_by(|x, y| y.created_at.cmp(&x.created_at).then(y.id.cmp(&x.id)));
    let get = |k: &str| q.iter().rev().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    if let Some(m) = get("marker") {
        let pos = imgs.iter().position(|i| i.id == m).ok_or_else(|| {
            glance_error(StatusCode::BAD_REQUEST, format!("marker [{m}] not found"))
        })?;
        imgs.drain(..=pos);
    }
    let mut next = None;
    if let Some(l) = get("limit").and_then(|l| l.parse::<usize>().ok()) {
        if imgs.len() > l {
            imgs.truncate(l);
            next = imgs.last().map(|i| {
                let mut qs: Vec<String> = q
                    .iter()
                    .filter(|(k, _)| k != "marker")
                    .map(|(k, v)| format!("{}={}", crate::wire::enc(k), crate::wire::enc(v)))
                    .collect();
                qs.push(format!("marker={}", i.id));
                format!("/v2/images?{}", qs.join("&"))
            });
        }
    }
    let mut body = json!({
        "images": imgs.iter().map(glance_image).collect::<Vec<_>>(),
        "first": "/v2/images",
        "schema": "/v2/schemas/images",
    });
    if let Some(n) = next {
        body["next"] = json!(n);
    }
    Ok(Json(body))
}

async fn show(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Response> {
    let imgs = ctx.engine.images(&a).await.map_err(from_engine)?;
    let img = imgs.iter().find(|i| i.id == id).ok_or_else(|| {
        glance_error(
            StatusCode::NOT_FOUND,
            format!("No image found with ID {id}"),
        )
    })?;
    Ok(Json(glance_image(img)))
}

async fn delete(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Response> {
    let imgs = ctx.engine.images(&a).await.map_err(from_engine)?;
    if !imgs.iter().any(|i| i.id == id) {
        return Err(glance_error(
            StatusCode::NOT_FOUND,
            format!("No image found with ID {id}"),
        ));
    }
    ctx.engine
        .delete_image(&a, &id)
        .await
        .map_err(from_engine)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Image attributes Glance does not let a client set.
const READ_ONLY: &[&str] = &[
    "checksum",
    "created_at",
    "direct_url",
    "file",
    "os_hash_algo",
    "os_hash_value",
    "schema",
    "self",
    "size",
    "status",
    "updated_at",
    "virtual_size",
];

fn schema_error(msg: String) -> Response {
    glance_error(
        StatusCode::BAD_REQUEST,
        format!("Provided object does not match schema 'image': {msg}"),
    )
}

fn one_of(field: &str, v: &Value, allowed: &[&str]) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if allowed.contains(&s.as_str()) => Ok(Some(s.clone())),
        other => Err(format!(
            "{other} is not one of {allowed:?}\n\nFailed validating 'enum' in schema['properties']['{field}']"
        )),
    }
}

/// `POST /v2/images`: a new `queued` image (201 with a Location header).
async fn create(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    body: axum::body::Bytes,
) -> Result<Response, Response> {
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        glance_error(
            StatusCode::BAD_REQUEST,
            format!("Malformed JSON in request body: {e}"),
        )
    })?;
    let Value::Object(m) = v else {
        return Err(schema_error("the body is not an object".into()));
    };
    let mut n = lifeboat_engine::NewImage::default();
    for (k, v) in m {
        match k.as_str() {
            k if READ_ONLY.contains(&k) => {
                return Err(glance_error(
                    StatusCode::FORBIDDEN,
                    format!("Attribute '{k}' is read-only."),
                ))
            }
            "locations" | "location" => {
                return Err(glance_error(
                    StatusCode::FORBIDDEN,
                    "Attribute 'locations' is reserved.".into(),
                ))
            }
            "id" => match v.as_str() {
                Some(id) if uuid::Uuid::parse_str(id).is_ok() => n.id = Some(id.to_string()),
                _ => {
                    return Err(schema_error(format!(
                        "{v} does not match '^([0-9a-fA-F]){{8}}-([0-9a-fA-F]){{4}}-([0-9a-fA-F]){{4}}-([0-9a-fA-F]){{4}}-([0-9a-fA-F]){{12}}$'"
                    )))
                }
            },
            "name" => match v {
                Value::Null => {}
                Value::String(s) if s.chars().count() <= 255 => n.name = Some(s),
                other => return Err(schema_error(format!("{other} is not a valid name"))),
            },
            "disk_format" => n.disk_format = one_of("disk_format", &v, lifeboat_engine::DISK_FORMATS).map_err(schema_error)?,
            "container_format" => {
                n.container_format =
                    one_of("container_format", &v, lifeboat_engine::CONTAINER_FORMATS).map_err(schema_error)?
            }
            "visibility" => {
                n.visibility = one_of(
                    "visibility",
                    &v,
                    &["community", "public", "private", "shared"],
                ).map_err(schema_error)?
            }
            "min_disk" | "min_ram" => {
                let x = v.as_u64().filter(|x| *x <= i32::MAX as u64).ok_or_else(|| {
                    schema_error(format!("{v} is not of type 'integer' or is less than the minimum of 0 (field {k})"))
                })?;
                if k == "min_disk" {
                    n.min_disk = x
                } else {
                    n.min_ram = x
                }
            }
            "protected" | "os_hidden" => {
                if !v.is_boolean() {
                    return Err(schema_error(format!("{v} is not of type 'boolean'")));
                }
            }
            "tags" => {
                if !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
                    return Err(schema_error(format!("{v} is not of type 'array' of strings")));
                }
            }
            "owner" => {}
            _ => match v {
                Value::String(s) => {
                    n.properties.insert(k, s);
                }
                other => {
                    return Err(schema_error(format!(
                        "{other} is not of type 'string' (property {k})"
                    )))
                }
            },
        }
    }
    let img = ctx.engine.create_image(&a, n).await.map_err(from_engine)?;
    let mut resp = (StatusCode::CREATED, Json(glance_image(&img))).into_response();
    if let Ok(l) = axum::http::HeaderValue::from_str(&format!("/v2/images/{}", img.id)) {
        resp.headers_mut().insert(axum::http::header::LOCATION, l);
    }
    Ok(resp)
}

/// `PUT /v2/images/{id}/file`: the image's data, streamed into the store
/// (204). `Content-Type` must be `application/octet-stream` (415).
async fn upload(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<StatusCode, Response> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.split(';').next().unwrap_or("").trim() != "application/octet-stream" {
        drain(&mut stream).await;
        return Err(glance_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The request has a media type unsupported by the server (application/octet-stream expected).".into(),
        ));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, String>>(8);
    let feeder = tokio::spawn(async move {
        while let Some(frame) = stream.next().await {
            let item = frame.map(|b| b.to_vec()).map_err(|e| e.to_string());
            let stop = item.is_err();
            if stop {
                let _ = tx.send(item).await;
                return;
            }
            if tx.send(item).await.is_err() {
                // Refused early: read the rest, so the client sees the answer.
                drain(&mut stream).await;
                return;
            }
        }
    });
    let res = ctx.engine.upload_image(&a, &id, rx).await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), feeder).await;
    res.map_err(from_engine)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reads and drops what is left of a refused upload (at most 256 MiB and
/// 30 s), so the client reads the error instead of a broken pipe.
async fn drain(stream: &mut axum::body::BodyDataStream) {
    use futures_util::StreamExt;
    let mut left: u64 = 256 << 20;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(Ok(b)) = stream.next().await {
            left = left.saturating_sub(b.len() as u64);
            if left == 0 {
                break;
            }
        }
    })
    .await;
}

/// `GET /v2/images/{id}/file`: the image's raw bytes streamed from the
/// snapshot store, each chunk verified as it is read; 204 when the image has
/// no data (Glance's answer for an image without data).
async fn download(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    use std::io::Read;
    let Some((img, mut stream)) = ctx.engine.image_data(&a, &id).await.map_err(from_engine)? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let size = stream.size();
    let checksum = img.checksum.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || loop {
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0;
        let res = loop {
            match stream.read(&mut buf[n..]) {
                Ok(0) => break Ok(()),
                Ok(k) => {
                    n += k;
                    if n == buf.len() {
                        break Ok(());
                    }
                }
                Err(e) => break Err(e),
            }
        };
        match res {
            Ok(()) if n == 0 => return,
            Ok(()) => {
                buf.truncate(n);
                if tx.blocking_send(Ok(buf)).is_err() {
                    return;
                }
            }
            Err(e) => {
                // The body ends early: the client sees a short, failed transfer.
                tracing::error!(image = %img.id, "image download: {e}");
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    });
    let body = axum::body::Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|item| (item, rx))
    }));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(axum::http::header::CONTENT_LENGTH, size.into());
    if let Some(c) = checksum.and_then(|c| axum::http::HeaderValue::from_str(&c).ok()) {
        h.insert("content-md5", c);
    }
    Ok(resp)
}

fn version_doc(ctx: &Ctx) -> Value {
    let v = |id: &str, status: &str| json!({"id": id, "status": status, "links": [{"rel": "self", "href": format!("{}/v2/", ctx.image_url())}]});
    json!({"versions": [v("v2.16", "CURRENT"), v("v2.0", "SUPPORTED")]})
}

async fn versions(State(ctx): State<Ctx>) -> Response {
    (StatusCode::MULTIPLE_CHOICES, Json(version_doc(&ctx))).into_response()
}

async fn versions_ok(State(ctx): State<Ctx>) -> Json<Value> {
    Json(version_doc(&ctx))
}

async fn schema_image() -> Json<Value> {
    Json(json!({"name": "image", "additionalProperties": {"type": "string"}, "properties": {}}))
}

/// The image service routes (outside the compute microversion layer).
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/image", get(versions))
        .route("/image/", get(versions))
        .route("/image/versions", get(versions_ok))
        .route("/image/v2", get(versions_ok))
        .route("/image/v2/", get(versions_ok))
        .route("/image/v2/images", get(list).post(create))
        .route("/image/v2/images/:id", get(show).delete(delete))
        .route(
            "/image/v2/images/:id/file",
            get(download)
                .put(upload)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/image/v2/schemas/image", get(schema_image))
}

// ---- Nova's image proxy (deprecated; 404 from 2.36) ----

fn nova_status(s: ImageStatus) -> &'static str {
    match s {
        ImageStatus::Active => "ACTIVE",
        ImageStatus::Saving => "SAVING",
        ImageStatus::Queued => "SAVING",
        ImageStatus::Deleted => "DELETED",
        ImageStatus::Killed => "ERROR",
    }
}

fn nova_image(ctx: &Ctx, i: &Image, detail: bool) -> Value {
    let links = json!([
        {"rel": "self", "href": format!("{}/images/{}", ctx.compute_url(), i.id)},
        {"rel": "bookmark", "href": format!("{}/images/{}", ctx.bookmark_url(), i.id)},
        {"rel": "alternate", "type": "application/vnd.openstack.image", "href": format!("{}/images/{}", ctx.image_url(), i.id)},
    ]);
    let mut v = json!({"id": i.id, "name": i.name, "links": links});
    if detail {
        v["minRam"] = json!(i.min_ram);
        v["minDisk"] = json!(i.min_disk);
        v["progress"] = json!(if i.status == ImageStatus::Active {
            100
        } else {
            25
        });
        v["status"] = json!(nova_status(i.status));
        v["metadata"] = json!(i.properties);
        v["created"] = json!(crate::isotime(&i.created_at));
        v["updated"] = json!(crate::isotime(&i.updated_at));
        v["OS-EXT-IMG-SIZE:size"] = json!(i.size);
        if let Some(u) = &i.instance_uuid {
            v["server"] = json!({"id": u, "links": [
                {"rel": "self", "href": format!("{}/servers/{u}", ctx.compute_url())},
                {"rel": "bookmark", "href": format!("{}/servers/{u}", ctx.bookmark_url())},
            ]});
        }
    }
    v
}

async fn proxy_list(State(ctx): State<Ctx>, mv: Mv, Caller(a): Caller) -> R<Json<Value>> {
    if mv.ge(36) {
        return Err(Fault::version_not_found());
    }
    let imgs = ctx.engine.images(&a).await?;
    Ok(Json(
        json!({"images": imgs.iter().map(|i| nova_image(&ctx, i, false)).collect::<Vec<_>>()}),
    ))
}

async fn proxy_detail(State(ctx): State<Ctx>, mv: Mv, Caller(a): Caller) -> R<Json<Value>> {
    if mv.ge(36) {
        return Err(Fault::version_not_found());
    }
    let imgs = ctx.engine.images(&a).await?;
    Ok(Json(
        json!({"images": imgs.iter().map(|i| nova_image(&ctx, i, true)).collect::<Vec<_>>()}),
    ))
}

async fn proxy_show(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    if mv.ge(36) {
        return Err(Fault::version_not_found());
    }
    let imgs = ctx.engine.images(&a).await?;
    let i = imgs
        .iter()
        .find(|i| i.id == id)
        .ok_or_else(|| Fault::not_found("Image not found."))?;
    Ok(Json(json!({"image": nova_image(&ctx, i, true)})))
}

/// Nova's image proxy routes (inside the microversion layer).
pub fn compute_routes() -> Router<Ctx> {
    Router::new()
        .route("/compute/v2.1/images", get(proxy_list))
        .route("/compute/v2.1/images/detail", get(proxy_detail))
        .route("/compute/v2.1/images/:id", get(proxy_show))
}
