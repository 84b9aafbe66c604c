//! OpenAPI links (utoipa 4 cannot declare them): from each operation that
//! makes or lists a resource to the operations on that resource, so a
//! client (or a stateful fuzzer) can follow real ids instead of guessing.

use serde_json::{json, Value};

/// One link: from the answer `status` of `method path` to the operation
/// `target` (its operationId), with its path parameters and a partial
/// request body taken from the answer (runtime expressions).
struct Link {
    path: &'static str,
    method: &'static str,
    status: &'static str,
    target: &'static str,
    params: &'static [(&'static str, &'static str)],
    body: Option<(&'static str, &'static str)>,
}

const fn to(
    path: &'static str,
    method: &'static str,
    status: &'static str,
    target: &'static str,
    params: &'static [(&'static str, &'static str)],
) -> Link {
    Link {
        path,
        method,
        status,
        target,
        params,
        body: None,
    }
}

const SERVER: &[(&str, &str)] = &[("id", "$response.body#/0/server/id")];
const LISTED: &[(&str, &str)] = &[("id", "$response.body#/0/id")];
const MADE: &[(&str, &str)] = &[("id", "$response.body#/id")];

const LINKS: &[Link] = &[
    to("/api/v1/servers", "post", "202", "show_server", SERVER),
    to("/api/v1/servers", "post", "202", "update_server", SERVER),
    to("/api/v1/servers", "post", "202", "server_action", SERVER),
    to("/api/v1/servers", "post", "202", "server_workflows", SERVER),
    to("/api/v1/servers", "post", "202", "delete_server", SERVER),
    to(
        "/api/v1/servers",
        "post",
        "202",
        "show_workflow",
        &[("id", "$response.body#/0/workflow_id")],
    ),
    to(
        "/api/v1/servers/{id}/actions",
        "post",
        "202",
        "delete_image",
        &[("id", "$response.body#/image_id")],
    ),
    to(
        "/api/v1/servers/{id}/actions",
        "post",
        "202",
        "server_workflows",
        &[("id", "$request.path.id")],
    ),
    to("/api/v1/workflows", "get", "200", "show_workflow", LISTED),
    to(
        "/api/v1/servers/{id}/workflows",
        "get",
        "200",
        "show_workflow",
        LISTED,
    ),
    to(
        "/api/v1/keypairs",
        "post",
        "201",
        "delete_keypair",
        &[("name", "$response.body#/name")],
    ),
    to("/api/v1/networks", "post", "201", "show_network", MADE),
    to("/api/v1/networks", "post", "201", "delete_network", MADE),
    Link {
        body: Some(("network", "$response.body#/id")),
        ..to("/api/v1/networks", "post", "201", "create_subnet", &[])
    },
    Link {
        body: Some(("network", "$response.body#/id")),
        ..to("/api/v1/networks", "post", "201", "create_port", &[])
    },
    to("/api/v1/subnets", "post", "201", "delete_subnet", MADE),
    Link {
        body: Some(("port", "$response.body#/id")),
        ..to("/api/v1/ports", "post", "201", "create_floating_ip", &[])
    },
    to(
        "/api/v1/routers",
        "post",
        "201",
        "add_router_interface",
        MADE,
    ),
    to(
        "/api/v1/routers/{id}/interfaces",
        "post",
        "200",
        "remove_router_interface",
        &[
            ("id", "$response.body#/id"),
            ("key", "$response.body#/interfaces/0/subnet_id"),
        ],
    ),
    to("/api/v1/ports", "post", "201", "show_port", MADE),
    to("/api/v1/ports", "post", "201", "update_port", MADE),
    to("/api/v1/ports", "post", "201", "delete_port", MADE),
    to(
        "/api/v1/floating-ips",
        "post",
        "201",
        "show_floating_ip",
        MADE,
    ),
    to(
        "/api/v1/floating-ips",
        "post",
        "201",
        "update_floating_ip",
        MADE,
    ),
    to(
        "/api/v1/floating-ips",
        "post",
        "201",
        "delete_floating_ip",
        MADE,
    ),
    to(
        "/api/v1/security-groups",
        "post",
        "201",
        "show_security_group",
        MADE,
    ),
    to(
        "/api/v1/security-groups",
        "post",
        "201",
        "create_rule",
        MADE,
    ),
    to(
        "/api/v1/security-groups",
        "post",
        "201",
        "delete_security_group",
        MADE,
    ),
    to(
        "/api/v1/security-groups/{id}/rules",
        "post",
        "201",
        "delete_rule",
        MADE,
    ),
    to(
        "/api/v1/server-groups",
        "post",
        "201",
        "show_server_group",
        MADE,
    ),
    to(
        "/api/v1/server-groups",
        "post",
        "201",
        "delete_server_group",
        MADE,
    ),
];

/// Adds [`LINKS`] to the answers of `doc` (an OpenAPI 3 document as JSON).
/// Panics when a link names an operation or answer the document lacks, so
/// the table cannot drift from the routes (see the test).
pub fn add(doc: &mut Value) {
    for l in LINKS {
        let resp = doc
            .pointer_mut(&format!(
                "/paths/{}/{}/responses/{}",
                l.path.replace('~', "~0").replace('/', "~1"),
                l.method,
                l.status
            ))
            .unwrap_or_else(|| panic!("no answer {} {} {}", l.method, l.path, l.status));
        let mut link = json!({
            "operationId": l.target,
            "parameters": l.params.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        });
        if let Some((field, expr)) = l.body {
            link["requestBody"] = json!({ field: expr });
        }
        let name = format!("{}{}", l.target, l.params.first().map_or("", |_| "ById"));
        if !resp["links"].is_object() {
            resp["links"] = json!({});
        }
        resp["links"][name.as_str()] = link;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_link_names_a_real_operation_and_parameter() {
        let doc = crate::document();
        let mut ops = std::collections::BTreeMap::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (_, op) in item.as_object().unwrap() {
                if let Some(id) = op["operationId"].as_str() {
                    ops.insert(id.to_string(), (path.clone(), op.clone()));
                }
            }
        }
        for l in LINKS {
            let (path, op) = ops
                .get(l.target)
                .unwrap_or_else(|| panic!("no operation {}", l.target));
            for (p, _) in l.params {
                assert!(
                    path.contains(&format!("{{{p}}}")),
                    "{} has no path parameter {p}",
                    l.target
                );
            }
            if l.body.is_some() {
                assert!(
                    op.get("requestBody").is_some(),
                    "{} takes no body",
                    l.target
                );
            }
        }
    }
}
