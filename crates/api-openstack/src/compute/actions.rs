//! `POST /servers/{id}/action` and `POST /servers/{id}/remote-consoles`:
//! parses Nova's action bodies into [`ServerAction`]s, calls the engine and
//! renders Nova's status codes and bodies.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use lifeboat_engine::{ActionOutcome, ServerAction};
use serde_json::{json, Value};

use super::{get_server, Render, View};
use crate::auth::Caller;
use crate::fault::{Fault, R};
use crate::microversion::Mv;
use crate::wire::{id_from_href, invalid, parse_body};
use crate::Ctx;

fn s(v: &Value, k: &str) -> R<Option<String>> {
    match &v[k] {
        Value::Null => Ok(None),
        Value::String(x) => Ok(Some(x.clone())),
        other => Err(invalid(
            k,
            &format!("Value: {other}. {other} is not of type 'string'"),
        )),
    }
}

fn required(v: &Value, action: &str, k: &str) -> R<String> {
    s(v, k)?.ok_or_else(|| invalid(action, &format!("'{k}' is a required property")))
}

fn object_or_null<'a>(v: &'a Value, action: &str) -> R<&'a Value> {
    if v.is_null() || v.is_object() {
        Ok(v)
    } else {
        Err(invalid(
            action,
            &format!("Value: {v}. {v} is not of type 'object', 'null'"),
        ))
    }
}

fn object<'a>(v: &'a Value, action: &str) -> R<&'a Value> {
    if v.is_object() {
        Ok(v)
    } else {
        Err(invalid(
            action,
            &format!("Value: {v}. {v} is not of type 'object'"),
        ))
    }
}

fn range(mv: Mv, min: u16, max: u16) -> R<()> {
    if mv.ge(min) && mv.le(max) {
        Ok(())
    } else {
        Err(Fault::version_not_found())
    }
}

/// The single action key of a body (Nova's `action_peek`).
pub fn action_key(body: &Value) -> R<(String, Value)> {
    let o = body
        .as_object()
        .ok_or_else(|| Fault::bad_request("Malformed request body"))?;
    if o.len() != 1 {
        return Err(Fault::bad_request("Malformed request body"));
    }
    let (k, v) = o.iter().next().expect("one key");
    Ok((k.clone(), v.clone()))
}

/// How the OpenStack front answers an accepted action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// 202, no body.
    Accepted,
    /// 204.
    NoContent,
    /// 202 with the server view (and its admin password).
    Rebuild,
    /// 202 with the image id or its Location.
    Image,
    /// 200 with the admin password.
    Rescue,
    /// 200, with the admin password before 2.14.
    Evacuate,
    /// 200 with the console text.
    ConsoleOutput,
    /// 200 with the console URL.
    RemoteConsole,
}

/// Parses one action key's value at a microversion (the key is passed for
/// the bodies several keys share).
type Parse = fn(&Value, Mv, &str) -> R<ServerAction>;

/// Every action key Nova's `/action` accepts: its parser into a
/// [`ServerAction`] and its reply. The one list of the OpenStack front's
/// server actions; a new action that Nova has is one line here plus its parser.
pub static NOVA_ACTIONS: &[(&str, Parse, Reply)] = &[
    ("reboot", reboot, Reply::Accepted),
    ("rebuild", rebuild, Reply::Rebuild),
    ("resize", resize, Reply::Accepted),
    ("confirmResize", confirm_resize, Reply::NoContent),
    ("revertResize", revert_resize, Reply::Accepted),
    ("createImage", create_image_or_backup, Reply::Image),
    ("createBackup", create_image_or_backup, Reply::Image),
    ("changePassword", change_password, Reply::Accepted),
    ("os-resetState", reset_state, Reply::Accepted),
    ("pause", pause, Reply::Accepted),
    ("unpause", unpause, Reply::Accepted),
    ("suspend", suspend, Reply::Accepted),
    ("resume", resume, Reply::Accepted),
    ("lock", lock, Reply::Accepted),
    ("unlock", unlock, Reply::Accepted),
    ("rescue", rescue, Reply::Rescue),
    ("unrescue", unrescue, Reply::Accepted),
    ("evacuate", evacuate, Reply::Evacuate),
    ("os-start", start, Reply::Accepted),
    ("os-stop", stop, Reply::Accepted),
    ("restore", restore, Reply::Accepted),
    ("forceDelete", force_delete, Reply::Accepted),
    ("shelve", shelve, Reply::Accepted),
    ("shelveOffload", shelve_offload, Reply::Accepted),
    ("unshelve", unshelve, Reply::Accepted),
    ("migrate", migrate, Reply::Accepted),
    ("os-migrateLive", live_migrate, Reply::Accepted),
    ("trigger_crash_dump", trigger_crash_dump, Reply::Accepted),
    ("os-getConsoleOutput", console_output, Reply::ConsoleOutput),
    ("os-getVNCConsole", remote_console, Reply::RemoteConsole),
    ("os-getSPICEConsole", remote_console, Reply::RemoteConsole),
    ("os-getRDPConsole", remote_console, Reply::RemoteConsole),
    ("os-getSerialConsole", remote_console, Reply::RemoteConsole),
    ("addSecurityGroup", security_group, Reply::Accepted),
    ("removeSecurityGroup", security_group, Reply::Accepted),
    ("addFixedIp", add_fixed_ip, Reply::Accepted),
    ("removeFixedIp", remove_fixed_ip, Reply::Accepted),
    ("addFloatingIp", add_floating_ip, Reply::Accepted),
    ("removeFloatingIp", remove_floating_ip, Reply::Accepted),
];

/// The parser and reply of a Nova action key.
fn nova_action(key: &str) -> Option<(Parse, Reply)> {
    NOVA_ACTIONS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, p, r)| (*p, *r))
}

/// Parses an action body at a microversion.
pub fn parse_action(body: &Value, mv: Mv) -> R<ServerAction> {
    parse_action_reply(body, mv).map(|(a, _)| a)
}

/// Parses an action body at a microversion, with how to answer it.
pub fn parse_action_reply(body: &Value, mv: Mv) -> R<(ServerAction, Reply)> {
    let (key, v) = action_key(body)?;
    crate::validate::action(&key, &v, mv)?;
    let Some((parse, reply)) = nova_action(&key) else {
        return Err(Fault::bad_request(format!(
            "There is no such action: {key}"
        )));
    };
    Ok((parse(&v, mv, &key)?, reply))
}

fn reboot(v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok({
        let o = object(v, "reboot")?;
        let t = required(o, "reboot", "type")?;
        match t.to_uppercase().as_str() {
        "SOFT" => ServerAction::Reboot { hard: false },
        "HARD" => ServerAction::Reboot { hard: true },
        _ => {
            return Err(invalid(
                "type",
                &format!("Value: {t}. '{t}' is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']"),
            ))
        }
    }
    })
}

fn rebuild(v: &Value, mv: Mv, _key: &str) -> R<ServerAction> {
    Ok({
        let o = object(v, "rebuild")?;
        let image = id_from_href(&required(o, "rebuild", "imageRef")?);
        let metadata = match &o["metadata"] {
            Value::Null => None,
            Value::Object(m) => Some(
                m.iter()
                    .map(|(k, x)| {
                        x.as_str()
                            .map(|x| (k.clone(), x.to_string()))
                            .ok_or_else(|| invalid("metadata", "values must be strings"))
                    })
                    .collect::<R<_>>()?,
            ),
            _ => return Err(invalid("metadata", "is not of type 'object'")),
        };
        let nullable = |k: &str, min: u16| -> R<Option<Option<String>>> {
            match o.get(k) {
                None => Ok(None),
                Some(_) if !mv.ge(min) => Err(invalid(
                    "rebuild",
                    &format!("Additional properties are not allowed ('{k}' was unexpected)"),
                )),
                Some(Value::Null) => Ok(Some(None)),
                Some(Value::String(x)) => Ok(Some(Some(x.clone()))),
                Some(other) => Err(invalid(k, &format!("Value: {other}."))),
            }
        };
        ServerAction::Rebuild {
            image,
            name: s(o, "name")?,
            admin_pass: s(o, "adminPass")?,
            metadata,
            description: nullable("description", 19)?,
            key_name: nullable("key_name", 54)?,
            user_data: nullable("user_data", 57)?,
            preserve_ephemeral: o["preserve_ephemeral"].as_bool().unwrap_or(false),
            hostname: if mv.ge(90) { s(o, "hostname")? } else { None },
        }
    })
}

fn resize(v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok({
        let o = object(v, "resize")?;
        let flavor = match &o["flavorRef"] {
            Value::String(f) => id_from_href(f),
            Value::Number(n) => n.to_string(),
            _ => return Err(invalid("resize", "'flavorRef' is a required property")),
        };
        ServerAction::Resize { flavor }
    })
}

fn confirm_resize(_v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok(ServerAction::ConfirmResize)
}

fn revert_resize(_v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok(ServerAction::RevertResize)
}

fn create_image_or_backup(v: &Value, _mv: Mv, key: &str) -> R<ServerAction> {
    Ok({
        let o = object(v, key)?;
        let name = required(o, key, "name")?;
        let metadata = match &o["metadata"] {
            Value::Object(m) => m
                .iter()
                .map(|(k, x)| {
                    (
                        k.clone(),
                        x.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| x.to_string()),
                    )
                })
                .collect(),
            _ => Default::default(),
        };
        if key == "createImage" {
            ServerAction::CreateImage { name, metadata }
        } else {
            let backup_type = required(o, key, "backup_type")?;
            let rotation = match &o["rotation"] {
                Value::Number(n) => n.as_i64(),
                Value::String(x) => x.parse().ok(),
                Value::Null => {
                    return Err(invalid("createBackup", "'rotation' is a required property"))
                }
                _ => None,
            }
            .filter(|r| *r >= 0)
            .ok_or_else(|| invalid("rotation", "Value must be a non-negative integer"))?;
            ServerAction::CreateBackup {
                name,
                backup_type,
                rotation: rotation as u32,
                metadata,
            }
        }
    })
}

fn change_password(v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok({
        let o = object(v, "changePassword")?;
        ServerAction::ChangePassword {
            admin_pass: required(o, "changePassword", "adminPass")?,
        }
    })
}

fn reset_state(v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok({
        let o = object(v, "os-resetState")?;
        ServerAction::ResetState {
            state: required(o, "os-resetState", "state")?,
        }
    })
}

fn pause(_v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok(ServerAction::Pause)
}

fn unpause(_v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok(ServerAction::Unpause)
}

fn suspend(_v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok(ServerAction::Suspend)
}

fn resume(_v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok(ServerAction::Resume)
}

fn lock(v: &Value, mv: Mv, _key: &str) -> R<ServerAction> {
    Ok({
        let o = object_or_null(v, "lock")?;
        let reason = if mv.ge(73) {
            s(o, "locked_reason")?
        } else {
            None
        };
        ServerAction::Lock { reason }
    })
}

fn unlock(_v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok(ServerAction::Unlock)
}

fn rescue(v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok({
        let o = object_or_null(v, "rescue")?;
        ServerAction::Rescue {
            admin_pass: s(o, "adminPass")?,
            image: s(o, "rescue_image_ref")?.map(|i| id_from_href(&i)),
        }
    })
}

fn unrescue(_v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok(ServerAction::Unrescue)
}

fn evacuate(v: &Value, mv: Mv, _key: &str) -> R<ServerAction> {
    Ok({
        let o = object_or_null(v, "evacuate")?;
        let host = s(o, "host")?;
        if mv.ge(29) && o["force"].as_bool() == Some(true) && host.is_none() {
            return Err(Fault::bad_request(
                "Can't force to a non-provided destination",
            ));
        }
        ServerAction::Evacuate {
            host,
            admin_pass: s(o, "adminPass")?,
        }
    })
}

fn start(_v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok(ServerAction::Start)
}

fn stop(_v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok(ServerAction::Stop)
}

fn restore(_v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok(ServerAction::Restore)
}

fn force_delete(_v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok(ServerAction::ForceDelete)
}

fn shelve(_v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok(ServerAction::Shelve)
}

fn shelve_offload(_v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok(ServerAction::ShelveOffload)
}

fn unshelve(v: &Value, mv: Mv, _key: &str) -> R<ServerAction> {
    Ok({
        if v.is_null() {
            ServerAction::Unshelve {
                availability_zone: None,
                host: None,
            }
        } else {
            if !mv.ge(77) {
                return Err(invalid(
                    "unshelve",
                    &format!("Value: {v}. {v} is not of type 'null'"),
                ));
            }
            let o = object(v, "unshelve")?;
            let availability_zone = match o.get("availability_zone") {
                None => None,
                Some(Value::Null) if mv.ge(91) => Some(None),
                Some(Value::String(z)) => Some(Some(z.clone())),
                Some(other) => {
                    return Err(invalid(
                        "availability_zone",
                        &format!("Value: {other}. {other} is not of type 'string'"),
                    ))
                }
            };
            let host = if mv.ge(91) { s(o, "host")? } else { None };
            ServerAction::Unshelve {
                availability_zone,
                host,
            }
        }
    })
}

fn migrate(v: &Value, mv: Mv, _key: &str) -> R<ServerAction> {
    Ok({
        let o = object_or_null(v, "migrate")?;
        let host = if mv.ge(56) { s(o, "host")? } else { None };
        ServerAction::Migrate { host }
    })
}

fn live_migrate(v: &Value, mv: Mv, _key: &str) -> R<ServerAction> {
    Ok({
        let o = object(v, "os-migrateLive")?;
        let host = s(o, "host")?;
        if mv.ge(30) && o["force"].as_bool() == Some(true) && host.is_none() {
            return Err(Fault::bad_request(
                "Can't force to a non-provided destination",
            ));
        }
        ServerAction::LiveMigrate { host }
    })
}

fn trigger_crash_dump(_v: &Value, mv: Mv, _key: &str) -> R<ServerAction> {
    Ok({
        range(mv, 17, u16::MAX)?;
        ServerAction::TriggerCrashDump
    })
}

fn console_output(v: &Value, _mv: Mv, _key: &str) -> R<ServerAction> {
    Ok({
        let o = object_or_null(v, "os-getConsoleOutput")?;
        let length = match &o["length"] {
            Value::Null => None,
            Value::Number(n) => Some(n.as_i64().ok_or_else(|| {
                invalid(
                    "length",
                    &format!("Value: {n}. {n} is not of type 'integer'"),
                )
            })?),
            Value::String(x) => Some(x.parse().map_err(|_| {
                invalid(
                    "length",
                    &format!("Value: {x}. '{x}' does not match '^-?[0-9]+$'"),
                )
            })?),
            other => {
                return Err(invalid(
                    "length",
                    &format!("Value: {other}. {other} is not of type 'integer'"),
                ))
            }
        };
        ServerAction::ConsoleOutput { length }
    })
}

fn remote_console(v: &Value, mv: Mv, key: &str) -> R<ServerAction> {
    Ok({
        range(mv, 1, 5)?;
        let o = object(v, key)?;
        let protocol = match key {
            "os-getVNCConsole" => "vnc",
            "os-getSPICEConsole" => "spice",
            "os-getRDPConsole" => "rdp",
            _ => "serial",
        };
        ServerAction::RemoteConsole {
            protocol: protocol.into(),
            console_type: required(o, key, "type")?,
        }
    })
}

fn security_group(v: &Value, _mv: Mv, key: &str) -> R<ServerAction> {
    Ok({
        let o = object(v, key)?;
        let name = required(o, key, "name")?;
        if key == "addSecurityGroup" {
            ServerAction::AddSecurityGroup { name }
        } else {
            ServerAction::RemoveSecurityGroup { name }
        }
    })
}

fn add_fixed_ip(v: &Value, mv: Mv, _key: &str) -> R<ServerAction> {
    Ok({
        range(mv, 1, 43)?;
        let o = object(v, "addFixedIp")?;
        let network_id = match &o["networkId"] {
            Value::String(x) => x.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(invalid("addFixedIp", "'networkId' is a required property")),
        };
        ServerAction::AddFixedIp { network_id }
    })
}

fn remove_fixed_ip(v: &Value, mv: Mv, _key: &str) -> R<ServerAction> {
    Ok({
        range(mv, 1, 43)?;
        let o = object(v, "removeFixedIp")?;
        ServerAction::RemoveFixedIp {
            address: required(o, "removeFixedIp", "address")?,
        }
    })
}

fn add_floating_ip(v: &Value, mv: Mv, _key: &str) -> R<ServerAction> {
    Ok({
        range(mv, 1, 43)?;
        let o = object(v, "addFloatingIp")?;
        ServerAction::AddFloatingIp {
            address: required(o, "addFloatingIp", "address")?,
            fixed_address: s(o, "fixed_address")?,
        }
    })
}

fn remove_floating_ip(v: &Value, mv: Mv, _key: &str) -> R<ServerAction> {
    Ok({
        range(mv, 1, 43)?;
        let o = object(v, "removeFloatingIp")?;
        ServerAction::RemoveFloatingIp {
            address: required(o, "removeFloatingIp", "address")?,
        }
    })
}

fn empty(status: StatusCode) -> Response {
    status.into_response()
}

fn with_location(mut r: Response, url: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

async fn action(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> R<Response> {
    let body = parse_body(&body)?;
    let (req, reply) = parse_action_reply(&body, mv)?;
    // Nova looks the server up first: an unknown or deleted id is a 404.
    // forceDelete and restore apply to soft-deleted servers, which are
    // still visible.
    get_server(&ctx, &a, &id).await?;
    let rotation = match &req {
        ServerAction::CreateBackup { rotation, .. } => *rotation,
        _ => 0,
    };
    let is_image = matches!(req, ServerAction::CreateImage { .. });
    let out = ctx.engine.server_action(&a, &id, req).await?;
    let image_url = |img: &str| format!("{}/v2/images/{img}", ctx.image_url());
    let resp = match reply {
        Reply::NoContent => empty(StatusCode::NO_CONTENT),
        Reply::Rebuild => {
            let s = ctx.engine.server(&a, &id).await?;
            let r = Render::load(&ctx, mv, &a).await?;
            let mut view = r.show(&s, View::Update);
            if mv.ge(57) {
                view["user_data"] = json!(s.user_data);
            }
            if let ActionOutcome::Accepted {
                admin_pass: Some(p),
                ..
            } = &out
            {
                view["adminPass"] = json!(p);
            }
            with_location(
                (StatusCode::ACCEPTED, Json(json!({"server": view}))).into_response(),
                &format!("{}/servers/{id}", ctx.compute_url()),
            )
        }
        Reply::Image => {
            let img = match &out {
                ActionOutcome::Accepted { image_id, .. } => image_id.clone(),
                _ => None,
            };
            match img {
                Some(i) if mv.ge(45) => {
                    (StatusCode::ACCEPTED, Json(json!({"image_id": i}))).into_response()
                }
                Some(i) if is_image || rotation > 0 => {
                    with_location(empty(StatusCode::ACCEPTED), &image_url(&i))
                }
                _ => empty(StatusCode::ACCEPTED),
            }
        }
        Reply::Rescue => {
            let pass = match &out {
                ActionOutcome::Accepted { admin_pass, .. } => admin_pass.clone(),
                _ => None,
            };
            let body = match pass {
                Some(p) => json!({"adminPass": p}),
                None => json!({}),
            };
            (StatusCode::OK, Json(body)).into_response()
        }
        Reply::Evacuate => {
            let pass = match &out {
                ActionOutcome::Accepted { admin_pass, .. } => admin_pass.clone(),
                _ => None,
            };
            match pass {
                Some(p) if !mv.ge(14) => {
                    (StatusCode::OK, Json(json!({"adminPass": p}))).into_response()
                }
                _ => empty(StatusCode::OK),
            }
        }
        Reply::ConsoleOutput => match out {
            ActionOutcome::ConsoleOutput { output } => {
                let clean: String = output
                    .chars()
                    .filter(|c| {
                        let u = *c as u32;
                        !(u <= 0x08 || (0x0B..=0x1F).contains(&u))
                    })
                    .collect();
                (StatusCode::OK, Json(json!({"output": clean}))).into_response()
            }
            _ => (StatusCode::OK, Json(json!({"output": ""}))).into_response(),
        },
        Reply::RemoteConsole => match out {
            ActionOutcome::RemoteConsole {
                console_type, url, ..
            } => (
                StatusCode::OK,
                Json(json!({"console": {"type": console_type, "url": url}})),
            )
                .into_response(),
            _ => return Err(Fault::not_found("Guest does not have a console available.")),
        },
        Reply::Accepted => empty(StatusCode::ACCEPTED),
    };
    Ok(resp)
}

async fn remote_consoles(
    State(ctx): State<Ctx>,
    mv: Mv,
    Caller(a): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> R<Response> {
    range(mv, 6, u16::MAX)?;
    let body = parse_body(&body)?;
    let rc = object(&body["remote_console"], "remote_console")?;
    let protocol = required(rc, "remote_console", "protocol")?;
    let console_type = required(rc, "remote_console", "type")?;
    const PROTOCOLS: &[&str] = &["vnc", "spice", "rdp", "serial", "mks", "spice-direct"];
    if !PROTOCOLS.contains(&protocol.as_str()) {
        return Err(invalid(
            "protocol",
            &format!("Value: {protocol}. '{protocol}' is not one of {PROTOCOLS:?}"),
        ));
    }
    get_server(&ctx, &a, &id).await?;
    let out = ctx
        .engine
        .server_action(
            &a,
            &id,
            ServerAction::RemoteConsole {
                protocol: protocol.clone(),
                console_type: console_type.clone(),
            },
        )
        .await?;
    match out {
        ActionOutcome::RemoteConsole {
            protocol,
            console_type,
            url,
        } => Ok((
            StatusCode::OK,
            Json(
                json!({"remote_console": {"protocol": protocol, "type": console_type, "url": url}}),
            ),
        )
            .into_response()),
        _ => Err(Fault::not_found("Guest does not have a console available.")),
    }
}

/// The action routes.
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/compute/v2.1/servers/:id/action", post(action))
        .route(
            "/compute/v2.1/servers/:id/remote-consoles",
            post(remote_consoles),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_action() {
        let mv = Mv(100);
        let cases = [
            (
                json!({"reboot": {"type": "hard"}}),
                ServerAction::Reboot { hard: true },
            ),
            (
                json!({"reboot": {"type": "SOFT"}}),
                ServerAction::Reboot { hard: false },
            ),
            (json!({"pause": null}), ServerAction::Pause),
            (json!({"os-start": null}), ServerAction::Start),
            (json!({"os-stop": null}), ServerAction::Stop),
            (json!({"confirmResize": null}), ServerAction::ConfirmResize),
            (
                json!({"resize": {"flavorRef": "http://x/flavors/3"}}),
                ServerAction::Resize { flavor: "3".into() },
            ),
            (
                json!({"lock": {"locked_reason": "maint"}}),
                ServerAction::Lock {
                    reason: Some("maint".into()),
                },
            ),
            (json!({"lock": null}), ServerAction::Lock { reason: None }),
            (
                json!({"unshelve": {"availability_zone": null}}),
                ServerAction::Unshelve {
                    availability_zone: Some(None),
                    host: None,
                },
            ),
            (
                json!({"unshelve": null}),
                ServerAction::Unshelve {
                    availability_zone: None,
                    host: None,
                },
            ),
            (
                json!({"os-getConsoleOutput": {"length": "5"}}),
                ServerAction::ConsoleOutput { length: Some(5) },
            ),
            (
                json!({"createBackup": {"name": "b", "backup_type": "daily", "rotation": 2}}),
                ServerAction::CreateBackup {
                    name: "b".into(),
                    backup_type: "daily".into(),
                    rotation: 2,
                    metadata: Default::default(),
                },
            ),
            (
                json!({"os-resetState": {"state": "error"}}),
                ServerAction::ResetState {
                    state: "error".into(),
                },
            ),
            (
                json!({"trigger_crash_dump": null}),
                ServerAction::TriggerCrashDump,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse_action(&body, mv).unwrap(), want, "{body}");
        }
    }

    #[test]
    fn microversion_bounds() {
        let body = json!({"addFloatingIp": {"address": "1.2.3.4"}});
        assert!(parse_action(&body, Mv(43)).is_ok());
        let e = parse_action(&body, Mv(44)).unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e = parse_action(&json!({"trigger_crash_dump": null}), Mv(16)).unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        // locked_reason is ignored before 2.73.
        assert_eq!(
            parse_action(&json!({"lock": {"locked_reason": "x"}}), Mv(72)).unwrap(),
            ServerAction::Lock { reason: None }
        );
        // unshelve with a body needs 2.77.
        assert!(parse_action(&json!({"unshelve": {"availability_zone": "nova"}}), Mv(76)).is_err());
    }

    #[test]
    fn bad_bodies() {
        let e = parse_action(&json!({"frobnicate": null}), Mv(1)).unwrap_err();
        assert_eq!(e.message, "There is no such action: frobnicate");
        let e = parse_action(&json!({"reboot": {}}), Mv(1)).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(parse_action(&json!({"pause": null, "unpause": null}), Mv(1)).is_err());
    }
}
