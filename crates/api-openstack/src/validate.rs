//! Nova's request-body schemas (`nova/api/openstack/compute/schemas/
//! servers.py` and `nova/api/validation/parameter_types.py`) for server
//! create and the server actions: the keys each microversion allows
//! (`additionalProperties: false`) and the formats of the values, with
//! Nova's error texts.

use serde_json::{Map, Value};

use crate::fault::{Fault, R};
use crate::microversion::Mv;
use crate::wire::invalid;

/// Python's `str()` of a JSON value, as Nova's messages show it.
fn py(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        other => other.to_string(),
    }
}

/// Python's `repr()` of a JSON value (jsonschema's `%r`).
fn repr(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        other => py(other),
    }
}

/// `Invalid input for field/attribute F. Value: V. M`.
fn field(name: &str, v: &Value, msg: &str) -> Fault {
    invalid(name, &format!("Value: {}. {msg}", py(v)))
}

fn no_extra(obj: &Map<String, Value>, at: &str, allowed: &[&str]) -> R<()> {
    let mut extra: Vec<&String> = obj
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
    if at.is_empty() {
        Err(Fault::bad_request(msg))
    } else {
        Err(invalid(at, &msg))
    }
}

fn string<'a>(name: &str, v: &'a Value) -> R<&'a str> {
    v.as_str()
        .ok_or_else(|| field(name, v, &format!("{} is not of type 'string'", repr(v))))
}

fn length(name: &str, v: &Value, s: &str, min: usize, max: usize) -> R<()> {
    let n = s.chars().count();
    if n < min {
        return Err(field(name, v, &format!("{} is too short", repr(v))));
    }
    if n > max {
        return Err(field(name, v, &format!("{} is too long", repr(v))));
    }
    Ok(())
}

/// Nova's `_is_printable`: not a control/format/unassigned character and
/// not a line or paragraph separator.
fn printable(c: char) -> bool {
    let u = c as u32;
    !(c.is_control()
        || matches!(u, 0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E)
        || matches!(u, 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F)
        || matches!(u, 0xFEFF | 0xFFF9..=0xFFFB | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF)
        || (u & 0xFFFE) == 0xFFFE)
}

/// `parameter_types.name`: 1–255 printable characters, no leading or
/// trailing whitespace (`format: name`).
pub fn name(field_name: &str, v: &Value) -> R<()> {
    let s = string(field_name, v)?;
    length(field_name, v, s, 1, 255)?;
    let ok = s.chars().all(printable)
        && !s.starts_with(char::is_whitespace)
        && !s.ends_with(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(Fault::bad_request("An invalid 'name' value was provided. The name must be: printable characters. Can not start or end with whitespace."))
    }
}

fn ip(field_name: &str, v: &Value, six: bool) -> R<()> {
    let s = string(field_name, v)?;
    let ok = if six {
        s.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        s.parse::<std::net::Ipv4Addr>().is_ok()
    };
    if ok {
        Ok(())
    } else {
        let f = if six { "ipv6" } else { "ipv4" };
        Err(field(field_name, v, &format!("{} is not a '{f}'", repr(v))))
    }
}

/// `parameter_types.ip_address`: IPv4 or IPv6.
fn ip_address(field_name: &str, v: &Value) -> R<()> {
    let s = string(field_name, v)?;
    if s.parse::<std::net::IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(field(
            field_name,
            v,
            &format!("{} is not valid under any of the given schemas", repr(v)),
        ))
    }
}

/// Python's lenient `base64.decodebytes`: characters outside the
/// alphabet are dropped, the rest must decode with correct padding.
pub fn is_base64(s: &str) -> bool {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    use base64::Engine as _;
    let kept: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/' || *c == '=')
        .collect();
    // Data after the first complete padded quantum is ignored by Python.
    let data: String = kept.trim_end_matches('=').to_string();
    if data.contains('=') {
        return false;
    }
    let pad = (4 - data.len() % 4) % 4;
    if kept.len() < data.len() + pad {
        return false;
    }
    let padded = format!("{data}{}", "=".repeat(pad));
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    );
    engine.decode(padded).is_ok()
}

fn uuid(field_name: &str, v: &Value) -> R<()> {
    let s = string(field_name, v)?;
    if uuid::Uuid::parse_str(s).is_ok() {
        Ok(())
    } else {
        Err(field(
            field_name,
            v,
            &format!("{} is not a 'uuid'", repr(v)),
        ))
    }
}

fn boolean(field_name: &str, v: &Value) -> R<()> {
    const OK: &[&str] = &[
        "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "False", "FALSE",
        "false", "0", "OFF", "Off", "off", "NO", "No", "no",
    ];
    match v {
        Value::Bool(_) => Ok(()),
        Value::String(s) if OK.contains(&s.as_str()) => Ok(()),
        _ => Err(field(
            field_name,
            v,
            &format!("{} is not one of [True, 'True', 'TRUE', 'true', '1', 'ON', 'On', 'on', 'YES', 'Yes', 'yes', False, 'False', 'FALSE', 'false', '0', 'OFF', 'Off', 'off', 'NO', 'No', 'no']", repr(v)),
        )),
    }
}

/// `parameter_types.positive_integer`: an integer (or digit string) >= 1.
pub fn positive_integer(field_name: &str, v: &Value) -> R<()> {
    let n = match v {
        Value::Number(n) if n.is_u64() || n.is_i64() => n.as_i64().unwrap_or(i64::MAX),
        Value::String(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) => {
            s.parse::<i64>().unwrap_or(i64::MAX)
        }
        Value::String(_) => {
            return Err(field(
                field_name,
                v,
                &format!("{} does not match '^[0-9]*$'", repr(v)),
            ))
        }
        _ => {
            return Err(field(
                field_name,
                v,
                &format!("{} is not of type 'integer', 'string'", repr(v)),
            ))
        }
    };
    if n < 1 {
        return Err(field(
            field_name,
            v,
            &format!("{} is less than the minimum of 1", py(v)),
        ));
    }
    Ok(())
}

fn metadata(field_name: &str, v: &Value) -> R<()> {
    let Some(m) = v.as_object() else {
        return Err(field(
            field_name,
            v,
            &format!("{} is not of type 'object'", repr(v)),
        ));
    };
    for (k, x) in m {
        let key_ok = (1..=255).contains(&k.chars().count())
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_:. ".contains(c));
        if !key_ok {
            return Err(invalid(
                field_name,
                &format!("Additional properties are not allowed ('{k}' was unexpected)"),
            ));
        }
        let s = string(k, x)?;
        length(k, x, s, 0, 255)?;
    }
    Ok(())
}

fn hostname(v: &Value, max: usize) -> R<()> {
    let s = string("hostname", v)?;
    length("hostname", v, s, 1, max)?;
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    {
        Ok(())
    } else {
        Err(field(
            "hostname",
            v,
            &format!("{} does not match '^[a-zA-Z0-9-._]*$'", repr(v)),
        ))
    }
}

/// Keys of `server` in `POST /servers` at a microversion.
fn create_keys(mv: Mv) -> Vec<&'static str> {
    let mut k = vec![
        "name",
        "imageRef",
        "flavorRef",
        "adminPass",
        "metadata",
        "networks",
        "OS-DCF:diskConfig",
        "accessIPv4",
        "accessIPv6",
        "availability_zone",
        "block_device_mapping",
        "block_device_mapping_v2",
        "config_drive",
        "key_name",
        "min_count",
        "max_count",
        "return_reservation_id",
        "security_groups",
        "user_data",
    ];
    if !mv.ge(57) {
        k.push("personality");
    }
    if mv.ge(19) {
        k.push("description");
    }
    if mv.ge(52) {
        k.push("tags");
    }
    if mv.ge(63) {
        k.push("trusted_image_certificates");
    }
    if mv.ge(74) {
        k.extend(["host", "hypervisor_hostname"]);
    }
    if mv.ge(90) {
        k.push("hostname");
    }
    k
}

/// Validates `POST /servers` against Nova's schema at `mv`.
pub fn server_create(body: &Value, mv: Mv) -> R<()> {
    let Some(root) = body.as_object() else {
        return Err(Fault::bad_request(format!(
            "{} is not of type 'object'",
            repr(body)
        )));
    };
    no_extra(
        root,
        "",
        &["server", "os:scheduler_hints", "OS-SCH-HNT:scheduler_hints"],
    )?;
    for key in ["os:scheduler_hints", "OS-SCH-HNT:scheduler_hints"] {
        if let Some(g) = root.get(key).and_then(|h| h.get("group")) {
            // `{'oneOf': [array of uuid, uuid]}`
            let ok = match g {
                Value::Array(a) => a.iter().all(|u| uuid("group", u).is_ok()),
                other => uuid("group", other).is_ok(),
            };
            if !ok {
                return Err(field(
                    "group",
                    g,
                    &format!("{} is not valid under any of the given schemas", repr(g)),
                ));
            }
        }
    }
    let Some(s) = root.get("server").and_then(Value::as_object) else {
        return Ok(()); // parse_create reports the missing/invalid server.
    };
    no_extra(s, "server", &create_keys(mv))?;
    for (k, v) in s {
        match k.as_str() {
            "name" | "key_name" | "availability_zone" => name(k, v)?,
            "accessIPv4" => ip(k, v, false)?,
            "accessIPv6" => ip(k, v, true)?,
            "user_data" => {
                if v.is_null() {
                    continue;
                }
                let u = string(k, v)?;
                if u.len() > 65535 {
                    return Err(field(k, v, &format!("{} is too long", repr(v))));
                }
                if !is_base64(u) {
                    return Err(field(k, v, &format!("{} is not a 'base64'", repr(v))));
                }
            }
            "hostname" => hostname(v, if mv.ge(94) { 255 } else { 63 })?,
            "host" | "hypervisor_hostname" => hostname(v, 255).map_err(|_| {
                field(
                    k,
                    v,
                    &format!("{} does not match '^[a-zA-Z0-9-._]*$'", repr(v)),
                )
            })?,
            "metadata" => metadata(k, v)?,
            "config_drive" | "return_reservation_id" => boolean(k, v)?,
            "min_count" | "max_count" => positive_integer(k, v)?,
            "description" if v.is_null() => {}
            "adminPass" | "description" => {
                string(k, v)?;
            }
            "security_groups" => {
                let Some(list) = v.as_array() else {
                    return Err(field(k, v, &format!("{} is not of type 'array'", repr(v))));
                };
                for g in list {
                    let Some(o) = g.as_object() else {
                        return Err(field(k, g, &format!("{} is not of type 'object'", repr(g))));
                    };
                    no_extra(o, k, &["name"])?;
                    if let Some(n) = o.get("name") {
                        name("name", n)?;
                    }
                }
            }
            "networks" => {
                let Some(list) = v.as_array() else { continue };
                let mut keys = vec!["fixed_ip", "port", "uuid"];
                if mv.0 == 32 || mv.ge(42) {
                    keys.push("tag");
                }
                for n in list {
                    let Some(o) = n.as_object() else {
                        return Err(field(k, n, &format!("{} is not of type 'object'", repr(n))));
                    };
                    no_extra(o, k, &keys)?;
                    if let Some(ip) = o.get("fixed_ip") {
                        ip_address("fixed_ip", ip)?;
                    }
                    match o.get("port") {
                        None | Some(Value::Null) => {}
                        Some(p) => uuid("port", p).map_err(|_| {
                            field(
                                "port",
                                p,
                                &format!("{} is not valid under any of the given schemas", repr(p)),
                            )
                        })?,
                    }
                    if let Some(u) = o.get("uuid") {
                        if mv.ge(37) {
                            uuid("uuid", u)?;
                        } else {
                            string("uuid", u)?;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Keys Nova's schema allows in an action's object, where the schema has
/// `additionalProperties: false`; None when Nova does not restrict them.
pub fn action_keys(action: &str, mv: Mv) -> Option<Vec<&'static str>> {
    let mut k: Vec<&'static str> = match action {
        "reboot" => vec!["type"],
        "rebuild" => {
            let mut k = vec![
                "name",
                "imageRef",
                "adminPass",
                "metadata",
                "preserve_ephemeral",
                "OS-DCF:diskConfig",
                "accessIPv4",
                "accessIPv6",
            ];
            if !mv.ge(57) {
                k.push("personality");
            }
            if mv.ge(19) {
                k.push("description");
            }
            if mv.ge(54) {
                k.push("key_name");
            }
            if mv.ge(57) {
                k.push("user_data");
            }
            if mv.ge(63) {
                k.push("trusted_image_certificates");
            }
            if mv.ge(90) {
                k.push("hostname");
            }
            k
        }
        "resize" => vec!["flavorRef", "OS-DCF:diskConfig"],
        "createImage" => vec!["name", "metadata"],
        "createBackup" => vec!["name", "backup_type", "rotation", "metadata"],
        "changePassword" => vec!["adminPass"],
        "os-resetState" => vec!["state"],
        "rescue" => vec!["adminPass", "rescue_image_ref"],
        "os-getConsoleOutput" => vec!["length"],
        "addSecurityGroup" | "removeSecurityGroup" => vec!["name"],
        "addFixedIp" => vec!["networkId"],
        "removeFixedIp" => vec!["address"],
        "addFloatingIp" => vec!["address", "fixed_address"],
        "removeFloatingIp" => vec!["address"],
        "os-getVNCConsole" | "os-getSPICEConsole" | "os-getRDPConsole" | "os-getSerialConsole" => {
            vec!["type"]
        }
        "evacuate" => {
            let mut k = vec!["host", "adminPass"];
            if !mv.ge(14) {
                k.push("onSharedStorage");
            }
            if mv.ge(29) && mv.le(67) {
                k.push("force");
            }
            if mv.ge(95) {
                k.push("targetState");
            }
            k
        }
        "os-migrateLive" => {
            let mut k = vec!["host", "block_migration"];
            if !mv.ge(25) {
                k.push("disk_over_commit");
            }
            if mv.ge(30) && mv.le(67) {
                k.push("force");
            }
            k
        }
        "migrate" if mv.ge(56) => vec!["host"],
        "unshelve" if mv.ge(77) => {
            let mut k = vec!["availability_zone"];
            if mv.ge(91) {
                k.push("host");
            }
            k
        }
        "lock" if mv.ge(73) => vec!["locked_reason"],
        _ => return None,
    };
    k.sort();
    Some(k)
}

/// Refuses keys an action's schema does not allow.
pub fn action(action: &str, v: &Value, mv: Mv) -> R<()> {
    if let (Some(keys), Some(o)) = (action_keys(action, mv), v.as_object()) {
        no_extra(o, action, &keys)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create(extra: Value, mv: u16) -> R<()> {
        let mut s = json!({"name": "ok", "flavorRef": "1", "networks": "none"});
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        server_create(&json!({"server": s}), Mv(mv))
    }

    #[test]
    fn nova_create_schema() {
        assert!(create(json!({}), 100).is_ok());
        let e = create(json!({"accessIPv4": "not-an-ip"}), 100).unwrap_err();
        assert_eq!(
            e.message,
            "Invalid input for field/attribute accessIPv4. Value: not-an-ip. 'not-an-ip' is not a 'ipv4'"
        );
        assert!(create(json!({"accessIPv4": "10.0.0.1", "accessIPv6": "::1"}), 100).is_ok());
        let e = create(json!({"user_data": "not base64!"}), 100).unwrap_err();
        assert!(
            e.message.ends_with("'not base64!' is not a 'base64'"),
            "{}",
            e.message
        );
        assert!(create(json!({"user_data": "aGVsbG8="}), 100).is_ok());
        assert!(create(json!({"user_data": "aGVs\nbG8="}), 100).is_ok());
        let e = create(json!({"hostname": "bad host!"}), 100).unwrap_err();
        assert!(e.message.contains("does not match"), "{}", e.message);
        assert!(create(json!({"hostname": "good-host.example"}), 100).is_ok());
        for bad in ["a\u{0}b", "a\r\nb", " lead", "trail "] {
            let e = create(json!({"name": bad}), 100).unwrap_err();
            assert_eq!(e.message, "An invalid 'name' value was provided. The name must be: printable characters. Can not start or end with whitespace.");
        }
        assert!(create(json!({"name": "ünïcode name"}), 100).is_ok());
        let e = create(json!({"personality": []}), 100).unwrap_err();
        assert_eq!(e.message, "Invalid input for field/attribute server. Additional properties are not allowed ('personality' was unexpected)");
        assert!(create(json!({"personality": []}), 56).is_ok());
        let e = create(json!({"bogus": 1, "also": 2}), 100).unwrap_err();
        assert!(
            e.message.ends_with("('also', 'bogus' were unexpected)"),
            "{}",
            e.message
        );
        let e = server_create(
            &json!({"server": {"name": "x", "flavorRef": "1"}, "extra": 1}),
            Mv(1),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "Additional properties are not allowed ('extra' was unexpected)"
        );
        assert!(create(json!({"min_count": "2", "max_count": 3}), 100).is_ok());
        assert!(create(json!({"min_count": 0}), 100).is_err());
        assert!(create(json!({"networks": [{"uuid": "x", "foo": 1}]}), 100).is_err());
        assert!(create(json!({"networks": [{"uuid": "not-a-uuid"}]}), 100).is_err());
        assert!(create(json!({"metadata": {"k": 1}}), 100).is_err());
        assert!(
            create(json!({"hostname": "h"}), 89).is_err(),
            "hostname needs 2.90"
        );
    }

    #[test]
    fn action_schemas() {
        assert!(action("resize", &json!({"flavorRef": "2"}), Mv(1)).is_ok());
        let e = action("resize", &json!({"flavorRef": "2", "x": 1}), Mv(1)).unwrap_err();
        assert_eq!(e.message, "Invalid input for field/attribute resize. Additional properties are not allowed ('x' was unexpected)");
        assert!(action("reboot", &json!({"type": "HARD", "force": 1}), Mv(1)).is_err());
        assert!(action("pause", &json!({"anything": 1}), Mv(1)).is_ok());
        assert!(action(
            "os-migrateLive",
            &json!({"host": null, "block_migration": "auto", "disk_over_commit": false}),
            Mv(1)
        )
        .is_ok());
        assert!(action(
            "os-migrateLive",
            &json!({"host": null, "block_migration": "auto", "disk_over_commit": false}),
            Mv(25)
        )
        .is_err());
    }
}
