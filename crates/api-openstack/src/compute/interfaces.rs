//! `/servers/{id}/os-interface` (Nova's `attach_interfaces.py`): list, show, attach (200 with
//! the attachment, synchronous as in Nova) and detach (202).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lifeboat_core::Actor;
use lifeboat_engine::neutron::{NetError, NetErrorKind, PortView};
use lifeboat_engine::{ActionOutcome, ServerAction};
use serde_json::{json, Map, Value};

use super::get_server;
use crate::auth::Caller;
use crate::fault::{Fault, R};
use crate::microversion::Mv;
use crate::wire::{invalid, parse_body};
use crate::Ctx;

fn fault_of(e: NetError) -> Fault {
    match e.kind {
        NetErrorKind::NotFound => Fault::not_found(e.message),
        NetErrorKind::Conflict => Fault::conflict(e.message),
        NetErrorKind::Forbidden => Fault::forbidden(e.message),
        NetErrorKind::BadRequest => Fault::bad_request(e.message),
        NetErrorKind::Internal => Fault::new(StatusCode::INTERNAL_SERVER_ERROR, e.message),
    }
}

/// Nova's `_translate_interface_attachment_view`.
fn view(p: &PortView, mv: Mv) -> Value {
    let mut v = json!({
        "net_id": p.port.network_id,
        "port_id": p.port.id,
        "mac_addr": p.port.mac_address,
        "port_state": p.status,
        "fixed_ips": p.fixed_ips,
    });
    if mv.ge(70) {
        v["tag"] = Value::Null;
    }
    v
}

async fn index(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    let s = get_server(&ctx, &a, &id).await?;
    let ports = ctx.engine.port_list(&a).await.map_err(fault_of)?;
    let items: Vec<Value> = ports
        .iter()
        .filter(|p| p.device_id == s.id)
        .map(|p| view(p, mv))
        .collect();
    Ok(Json(json!({ "interfaceAttachments": items })))
}

async fn attachment(ctx: &Ctx, a: &Actor, server: &str, port: &str, mv: Mv) -> R<Value> {
    let p = ctx.engine.port_get(a, port).await.map_err(fault_of)?;
    if p.device_id != server {
        return Err(Fault::not_found(format!(
            "Instance {server} does not have a port with id {port}"
        )));
    }
    Ok(json!({ "interfaceAttachment": view(&p, mv) }))
}

async fn show(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path((id, port)): Path<(String, String)>,
) -> R<Json<Value>> {
    let s = get_server(&ctx, &a, &id).await?;
    Ok(Json(attachment(&ctx, &a, &s.id, &port, mv).await?))
}

/// `parameter_types.network_id` / `network_port_id`: a UUID string.
fn uuid_field(name: &str, v: &Value) -> R<String> {
    let s = v
        .as_str()
        .ok_or_else(|| invalid(name, &format!("Value: {v}. {v} is not of type 'string'")))?;
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let like = hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit());
    if !like {
        return Err(invalid(name, &format!("Value: {s}. '{s}' is not a 'uuid'")));
    }
    Ok(s.to_string())
}

fn no_extra(o: &Map<String, Value>, at: &str, allowed: &[&str]) -> R<()> {
    let mut extra: Vec<&String> = o
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .collect();
    if extra.is_empty() {
        return Ok(());
    }
    extra.sort();
    let list = extra
        .iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let verb = if extra.len() == 1 { "was" } else { "were" };
    let msg = format!("Additional properties are not allowed ({list} {verb} unexpected)");
    Err(if at.is_empty() {
        Fault::bad_request(msg)
    } else {
        invalid(at, &msg)
    })
}

/// Nova's `attach_interfaces.create` (2.0-2.48) and `create_v249` (adds `tag`) schemas.
fn parse_create(body: &Value, mv: Mv) -> R<ServerAction> {
    let top = body
        .as_object()
        .ok_or_else(|| Fault::bad_request(format!("{body} is not of type 'object'")))?;
    no_extra(top, "", &["interfaceAttachment"])?;
    let mut req = ServerAction::AttachInterface {
        network_id: None,
        port_id: None,
        fixed_ip: None,
    };
    let Some(att) = top.get("interfaceAttachment") else {
        return Ok(req);
    };
    let o = att.as_object().ok_or_else(|| {
        invalid(
            "interfaceAttachment",
            &format!("Value: {att}. {att} is not of type 'object'"),
        )
    })?;
    let mut allowed = vec!["net_id", "port_id", "fixed_ips"];
    if mv.ge(49) {
        allowed.push("tag");
    }
    no_extra(o, "interfaceAttachment", &allowed)?;
    let ServerAction::AttachInterface {
        network_id,
        port_id,
        fixed_ip,
    } = &mut req
    else {
        unreachable!("built above");
    };
    if let Some(v) = o.get("net_id") {
        *network_id = Some(uuid_field("net_id", v)?);
    }
    if let Some(v) = o.get("port_id") {
        *port_id = Some(uuid_field("port_id", v)?);
    }
    if let Some(v) = o.get("fixed_ips") {
        let list = v.as_array().ok_or_else(|| {
            invalid(
                "fixed_ips",
                &format!("Value: {v}. {v} is not of type 'array'"),
            )
        })?;
        if list.is_empty() {
            return Err(invalid("fixed_ips", "Value: []. [] should be non-empty"));
        }
        if list.len() > 1 {
            return Err(invalid(
                "fixed_ips",
                &format!("Value: {v}. {v} is too long"),
            ));
        }
        let item = list[0].as_object().ok_or_else(|| {
            invalid(
                "fixed_ips",
                &format!("Value: {}. {} is not of type 'object'", list[0], list[0]),
            )
        })?;
        no_extra(item, "fixed_ips", &["ip_address"])?;
        let ip = item
            .get("ip_address")
            .ok_or_else(|| invalid("fixed_ips", "'ip_address' is a required property"))?;
        let ok = ip
            .as_str()
            .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok());
        if !ok {
            let shown = ip.as_str().map(str::to_string).unwrap_or(ip.to_string());
            return Err(invalid(
                "ip_address",
                &format!("Value: {shown}. '{shown}' is not valid under any of the given schemas"),
            ));
        }
        *fixed_ip = ip.as_str().map(str::to_string);
    }
    if let Some(t) = o.get("tag") {
        let ok = t
            .as_str()
            .is_some_and(|s| s.chars().count() <= 60 && !s.contains([',', '/']));
        if !ok {
            return Err(invalid(
                "tag",
                &format!("Value: {t}. {t} does not match '^[^,/]*$'"),
            ));
        }
    }
    Ok(req)
}

async fn create(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> R<Json<Value>> {
    let s = get_server(&ctx, &a, &id).await?;
    let body = if body.is_empty() {
        json!({})
    } else {
        parse_body(&body)?
    };
    let req = parse_create(&body, mv)?;
    let out = ctx.engine.server_action(&a, &s.id, req).await?;
    let ActionOutcome::InterfaceAttached { port_id } = out else {
        return Err(Fault::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "attach returned no port",
        ));
    };
    Ok(Json(attachment(&ctx, &a, &s.id, &port_id, mv).await?))
}

async fn delete(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path((id, port)): Path<(String, String)>,
) -> R<Response> {
    let s = get_server(&ctx, &a, &id).await?;
    ctx.engine
        .server_action(&a, &s.id, ServerAction::DetachInterface { port_id: port })
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// The os-interface routes.
pub fn routes() -> Router<Ctx> {
    const P: &str = "/compute/v2.1/servers/:id/os-interface";
    Router::new()
        .route(P, get(index).post(create))
        .route(&format!("{P}/:port"), get(show).delete(delete))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bodies_follow_novas_schema() {
        let mv = Mv(2);
        assert!(matches!(
            parse_create(&json!({}), mv),
            Ok(ServerAction::AttachInterface {
                network_id: None,
                port_id: None,
                fixed_ip: None
            })
        ));
        let ok = parse_create(
            &json!({"interfaceAttachment": {"net_id": "3cb9bc59-5699-4588-a4b1-b87f96708bc6",
                "fixed_ips": [{"ip_address": "10.1.0.9"}]}}),
            mv,
        )
        .unwrap();
        assert_eq!(
            ok,
            ServerAction::AttachInterface {
                network_id: Some("3cb9bc59-5699-4588-a4b1-b87f96708bc6".into()),
                port_id: None,
                fixed_ip: Some("10.1.0.9".into()),
            }
        );
        let msg = |b: Value, mv: Mv| parse_create(&b, mv).unwrap_err().message;
        assert_eq!(
            msg(json!({"interfaceAttachment": {"net_id": "nope"}}), mv),
            "Invalid input for field/attribute net_id. Value: nope. 'nope' is not a 'uuid'"
        );
        assert_eq!(
            msg(json!({"interfaceAttachment": {"tag": "x"}}), Mv(48)),
            "Invalid input for field/attribute interfaceAttachment. Additional properties are not allowed ('tag' was unexpected)"
        );
        assert!(parse_create(&json!({"interfaceAttachment": {"tag": "x"}}), Mv(49)).is_ok());
        assert_eq!(
            msg(json!({"interfaceAttachment": {"fixed_ips": [{"ip_address": "1.2.3"}]}}), mv),
            "Invalid input for field/attribute ip_address. Value: 1.2.3. '1.2.3' is not valid under any of the given schemas"
        );
        assert_eq!(
            msg(json!({"other": 1}), mv),
            "Additional properties are not allowed ('other' was unexpected)"
        );
    }
}
