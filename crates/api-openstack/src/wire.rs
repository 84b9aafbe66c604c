//! Request helpers shared by every OpenStack resource: JSON bodies, Nova's
//! schema errors, references that may be URLs, query pairs and next links.

use axum::body::Bytes;
use serde_json::{json, Value};

use crate::fault::{Fault, R};
use crate::Ctx;

/// Parses a JSON request body.
pub fn parse_body(b: &Bytes) -> R<Value> {
    if b.is_empty() {
        return Err(Fault::bad_request("The server could not comply with the request since it is either malformed or otherwise incorrect."));
    }
    serde_json::from_slice(b).map_err(|_| Fault::bad_request("Malformed request body"))
}

/// `Invalid input for field/attribute X. ...` (Nova's schema errors).
pub fn invalid(field: &str, why: &str) -> Fault {
    Fault::bad_request(format!("Invalid input for field/attribute {field}. {why}"))
}

/// The id in a reference that may be a URL (`imageRef`, `flavorRef`).
pub fn id_from_href(r: &str) -> String {
    r.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(r)
        .to_string()
}

/// Query string as repeated pairs.
pub type Pairs = Vec<(String, String)>;

/// The `servers_links` next link when a page is full.
pub fn next_link(ctx: &Ctx, path: &str, q: &Pairs, last: &str) -> Value {
    let mut parts: Vec<String> = q
        .iter()
        .filter(|(k, _)| k != "marker")
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    parts.push(format!("marker={}", enc(last)));
    json!([{"rel": "next", "href": format!("{}/{path}?{}", ctx.compute_url(), parts.join("&"))}])
}

/// Percent-encodes a query component.
pub fn enc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}
