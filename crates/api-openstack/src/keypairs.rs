//! `/os-keypairs`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lifeboat_core::Keypair;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::fault::{Fault, R};
use crate::microversion::Mv;
use crate::wire::{invalid, parse_body};
use crate::{naive_time, Ctx};

/// A stable integer id (Nova's keypair ids are database integers).
fn int_id(k: &Keypair) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("{}:{}", k.user_id, k.name));
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) >> 33
}

fn brief(k: &Keypair, mv: Mv) -> Value {
    let mut v = json!({"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint});
    if mv.ge(2) {
        v["type"] = json!(k.key_type);
    }
    v
}

async fn list(State(ctx): State<Ctx>, mv: Mv, Caller(a): Caller) -> R<Json<Value>> {
    let ks = ctx.engine.keypairs(&a).await?;
    Ok(Json(
        json!({"keypairs": ks.iter().map(|k| json!({"keypair": brief(k, mv)})).collect::<Vec<_>>()}),
    ))
}

async fn show(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(name): Path<String>,
) -> R<Json<Value>> {
    let k = ctx.engine.keypair(&a, &name).await.map_err(|_| {
        Fault::not_found(format!("Keypair {name} not found for user {}", a.user_id))
    })?;
    let mut v = brief(&k, mv);
    v["user_id"] = json!(k.user_id);
    v["created_at"] = json!(naive_time(&k.created_at));
    v["deleted"] = json!(false);
    v["deleted_at"] = Value::Null;
    v["updated_at"] = Value::Null;
    v["id"] = json!(int_id(&k));
    Ok(Json(json!({"keypair": v})))
}

async fn create(State(ctx): State<Ctx>, mv: Mv, Caller(a): Caller, body: Bytes) -> R<Response> {
    let v = parse_body(&body)?;
    let kp = &v["keypair"];
    if !kp.is_object() {
        return Err(invalid("keypair", "'keypair' is a required property"));
    }
    let name = kp["name"]
        .as_str()
        .ok_or_else(|| invalid("keypair", "'name' is a required property"))?;
    let key_type = if mv.ge(2) {
        kp["type"].as_str().unwrap_or("ssh")
    } else {
        "ssh"
    };
    if key_type != "ssh" && key_type != "x509" {
        return Err(invalid(
            "type",
            &format!("Value: {key_type}. '{key_type}' is not one of ['ssh', 'x509']"),
        ));
    }
    // Below 2.92 a create without public_key generates the pair and returns
    // the private key once.
    let (k, private_key) = match kp["public_key"].as_str() {
        Some(public_key) => (
            ctx.engine
                .import_keypair(&a, name, public_key, key_type)
                .await?,
            None,
        ),
        None if mv.ge(92) => {
            return Err(invalid("keypair", "'public_key' is a required property"));
        }
        None => {
            let (k, private) = ctx.engine.generate_keypair(&a, name).await?;
            (k, Some(private))
        }
    };
    let mut out = brief(&k, mv);
    out["user_id"] = json!(k.user_id);
    if let Some(p) = private_key {
        out["private_key"] = json!(p);
    }
    let status = if mv.ge(2) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"keypair": out}))).into_response())
}

async fn delete(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(name): Path<String>,
) -> R<StatusCode> {
    ctx.engine
        .delete_keypair(&a, &name)
        .await
        .map_err(|e| match e {
            lifeboat_engine::ComputeError::NotFound { .. } => {
                Fault::not_found(format!("Keypair {name} not found for user {}", a.user_id))
            }
            e => e.into(),
        })?;
    Ok(if mv.ge(2) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::ACCEPTED
    })
}

/// The keypair routes.
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/compute/v2.1/os-keypairs", get(list).post(create))
        .route("/compute/v2.1/os-keypairs/:name", get(show).delete(delete))
}
