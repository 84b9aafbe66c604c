//! Lifeboat native REST API at `/api/v1`, with its OpenAPI 3 document at
//! `/api/v1/openapi.json` generated from the code. Handlers only parse,
//! authenticate, call the [`Engine`] and render; errors are
//! `{"error": {"code": "...", "message": "..."}}` with a stable code.

mod auth;
mod console;
mod error;
mod extract;
mod handlers;
mod links;
mod network;
mod server_groups;

use axum::routing::{get, post};
use axum::Router;
use lifeboat_engine::Engine;
use utoipa::OpenApi;

use auth::SecurityAddon;
pub use error::{not_found, not_found_response, ApiError};

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Lifeboat native API", version = "1", description = "Servers, actions, server groups, workflows and events."),
    paths(
        handlers::login, handlers::list_servers, handlers::create_server, handlers::show_server,
        handlers::update_server, handlers::delete_server, handlers::server_action,
        handlers::server_workflows, handlers::show_workflow, handlers::list_workflows,
        handlers::list_events, handlers::list_flavors, handlers::create_flavor, handlers::list_images,
        handlers::delete_image, handlers::list_hosts,
        network::list_networks, network::create_network, network::show_network, network::delete_network,
        network::list_subnets, network::create_subnet, network::delete_subnet,
        network::list_ports, network::create_port, network::show_port, network::update_port,
        network::delete_port, network::list_floating_ips, network::create_floating_ip,
        network::show_floating_ip, network::update_floating_ip, network::delete_floating_ip,
        network::list_security_groups, network::create_security_group,
        network::show_security_group, network::delete_security_group, network::create_rule,
        network::delete_rule, network::list_routers, network::create_router, network::show_router,
        network::update_router, network::delete_router, network::add_router_interface,
        network::remove_router_interface,
        handlers::list_keypairs, handlers::create_keypair, handlers::delete_keypair,
        handlers::list_projects, handlers::create_project, handlers::create_user,
        server_groups::list_server_groups, server_groups::create_server_group,
        server_groups::show_server_group, server_groups::delete_server_group,
    ),
    components(schemas(
        lifeboat_core::Server, lifeboat_core::Flavor, lifeboat_core::FlavorSnapshot, lifeboat_core::Image,
        lifeboat_core::ImageKind, lifeboat_core::ImageStatus, lifeboat_core::Workflow,
        lifeboat_core::WorkflowState, lifeboat_core::StepRecord, lifeboat_core::StepState,
        lifeboat_core::Event, lifeboat_core::Level, lifeboat_core::Fault, lifeboat_core::FaultReason, lifeboat_core::Attachment,
        lifeboat_core::LockedBy, lifeboat_core::VmState, lifeboat_core::TaskState,
        lifeboat_core::PowerState, lifeboat_core::Status, lifeboat_core::Keypair, lifeboat_core::Project, lifeboat_core::Host,
        lifeboat_core::Role,
        lifeboat_engine::CreateServer, lifeboat_engine::NetworkRequest, lifeboat_engine::UpdateServer,
        lifeboat_engine::ServerAction, lifeboat_engine::ActionOutcome,
        handlers::ServerView, handlers::RestoreView, handlers::CreatedView, handlers::FlavorCreate, handlers::LoginRequest, handlers::LoginResponse,
        handlers::KeypairRequest, handlers::ProjectRequest, handlers::UserRequest, handlers::UserView,
        handlers::HostView, error::ErrorBody,
        network::NetworkOut, network::NetworkCreate, network::Pool, network::SubnetOut,
        network::SubnetCreate, network::FixedIpOut, network::FixedIpIn, network::PortOut,
        network::PortCreate, network::PortUpdate, network::FloatingIpOut, network::FloatingIpCreate,
        network::FloatingIpUpdate, network::RuleOut, network::SecurityGroupOut,
        network::SecurityGroupCreate, network::RuleCreate, network::RouterOut,
        network::GatewayOut, network::RouterInterfaceOut, network::RouterCreate,
        network::RouterUpdate, network::RouterInterfaceIn,
        error::ErrorDetail,
        lifeboat_core::placement::GroupPolicy, server_groups::ServerGroupOut,
        server_groups::ServerGroupCreate,
    )),
    modifiers(&SecurityAddon, &ErrorResponses),
)]
pub struct ApiDoc;

/// Documents the error answers every operation can give, all with the
/// [`error::ErrorBody`] shape: 400 (bad query, malformed JSON or a body
/// that does not fit the request type), 401, 403, 404, 409, 413 and 415.
pub struct ErrorResponses;

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        // `lifeboat_core::Time` (a chrono UTC time) is sent as RFC 3339.
        let components = openapi.components.get_or_insert_with(Default::default);
        components.schemas.insert(
            "Time".into(),
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::SchemaType::String)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::DateTime,
                )))
                .into(),
        );
        let errors: &[(&str, &str)] = &[
            (
                "400",
                "Bad query parameters, malformed JSON or a body of the wrong shape",
            ),
            ("401", "Missing or invalid token"),
            ("403", "Not allowed for this caller, or over quota"),
            ("404", "No such resource"),
            ("409", "Conflicts with the resource's state"),
            ("413", "Request body too large"),
            ("415", "Body is not JSON"),
        ];
        for item in openapi.paths.paths.values_mut() {
            for op in item.operations.values_mut() {
                let public = op.security.is_none();
                let has_body = op.request_body.is_some();
                for (code, desc) in errors {
                    if op.responses.responses.contains_key(*code)
                        || (public && *code == "403")
                        || (!has_body && matches!(*code, "413" | "415"))
                    {
                        continue;
                    }
                    let resp = ResponseBuilder::new()
                        .description(*desc)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Ref::from_schema_name("ErrorBody"))
                                .build(),
                        )
                        .build();
                    op.responses.responses.insert(code.to_string(), resp.into());
                }
            }
        }
    }
}

/// The OpenAPI document served at `/api/v1/openapi.json`: [`ApiDoc`] with
/// links from the operations that make or list resources to those that
/// use them.
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document is JSON");
    name_server_schemas(&mut doc);
    links::add(&mut doc);
    doc
}

/// Names the server object every server operation takes and returns
/// ([`handlers::ServerView`]) `Server`, and the stored record it flattens
/// (`lifeboat_core::Server`) `ServerRecord`, so a client (or a fuzzer)
/// binds the ids of `/servers/{id}/...` to servers, not to server groups.
fn name_server_schemas(doc: &mut serde_json::Value) {
    const PREFIX: &str = "#/components/schemas/";
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k == "$ref" {
                        let to = match x.as_str().and_then(|r| r.strip_prefix(PREFIX)) {
                            Some("Server") => "ServerRecord",
                            Some("ServerView") => "Server",
                            _ => continue,
                        };
                        *x = serde_json::Value::String(format!("{PREFIX}{to}"));
                    } else {
                        walk(x);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(doc);
    let schemas = doc["components"]["schemas"]
        .as_object_mut()
        .expect("the document has schemas");
    let record = schemas.remove("Server").expect("a Server schema");
    let view = schemas.remove("ServerView").expect("a ServerView schema");
    schemas.insert("ServerRecord".into(), record);
    schemas.insert("Server".into(), view);
}

/// The native API router (mount at the root; routes start with `/api/v1`).
pub fn router(engine: Engine) -> Router {
    use handlers::*;
    Router::new()
        .route(
            "/api/v1/openapi.json",
            get(|| async { axum::Json(document()) }),
        )
        .route("/api/v1/auth/tokens", post(login))
        .route("/api/v1/servers", get(list_servers).post(create_server))
        .route(
            "/api/v1/servers/:id",
            get(show_server).patch(update_server).delete(delete_server),
        )
        .route("/api/v1/servers/:id/actions", post(server_action))
        .route("/api/v1/servers/:id/workflows", get(server_workflows))
        .route("/api/v1/workflows", get(list_workflows))
        .route("/api/v1/workflows/:id", get(show_workflow))
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/flavors", get(list_flavors).post(create_flavor))
        .route("/api/v1/images", get(list_images))
        .route("/api/v1/images/:id", axum::routing::delete(delete_image))
        .route("/api/v1/hosts", get(list_hosts))
        .route(
            "/api/v1/networks",
            get(network::list_networks).post(network::create_network),
        )
        .route(
            "/api/v1/networks/:id",
            get(network::show_network).delete(network::delete_network),
        )
        .route(
            "/api/v1/subnets",
            get(network::list_subnets).post(network::create_subnet),
        )
        .route(
            "/api/v1/subnets/:id",
            axum::routing::delete(network::delete_subnet),
        )
        .route(
            "/api/v1/ports",
            get(network::list_ports).post(network::create_port),
        )
        .route(
            "/api/v1/ports/:id",
            get(network::show_port)
                .patch(network::update_port)
                .delete(network::delete_port),
        )
        .route(
            "/api/v1/floating-ips",
            get(network::list_floating_ips).post(network::create_floating_ip),
        )
        .route(
            "/api/v1/floating-ips/:id",
            get(network::show_floating_ip)
                .patch(network::update_floating_ip)
                .delete(network::delete_floating_ip),
        )
        .route(
            "/api/v1/security-groups",
            get(network::list_security_groups).post(network::create_security_group),
        )
        .route(
            "/api/v1/security-groups/:id",
            get(network::show_security_group).delete(network::delete_security_group),
        )
        .route(
            "/api/v1/security-groups/:id/rules",
            post(network::create_rule),
        )
        .route(
            "/api/v1/security-group-rules/:id",
            axum::routing::delete(network::delete_rule),
        )
        .route(
            "/api/v1/routers",
            get(network::list_routers).post(network::create_router),
        )
        .route(
            "/api/v1/routers/:id",
            get(network::show_router)
                .patch(network::update_router)
                .delete(network::delete_router),
        )
        .route(
            "/api/v1/routers/:id/interfaces",
            post(network::add_router_interface),
        )
        .route(
            "/api/v1/routers/:id/interfaces/:key",
            axum::routing::delete(network::remove_router_interface),
        )
        .route("/api/v1/keypairs", get(list_keypairs).post(create_keypair))
        .route(
            "/api/v1/keypairs/:name",
            axum::routing::delete(delete_keypair),
        )
        .route("/api/v1/projects", get(list_projects).post(create_project))
        .route("/api/v1/users", post(create_user))
        .route(
            "/api/v1/server-groups",
            get(server_groups::list_server_groups).post(server_groups::create_server_group),
        )
        .route(
            "/api/v1/server-groups/:id",
            get(server_groups::show_server_group).delete(server_groups::delete_server_group),
        )
        .route("/console/serial", get(console::serial_console))
        .layer(axum::extract::DefaultBodyLimit::max(extract::MAX_BODY))
        .layer(axum::middleware::from_fn(extract::json_errors))
        .with_state(engine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "$ref" {
                        out.push(x.as_str().unwrap_or_default().to_string());
                    }
                    refs(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn openapi_document_is_true() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        for d in [&doc, &document()] {
            let mut all = vec![];
            refs(d, &mut all);
            assert!(!all.is_empty());
            for r in &all {
                let name = r.strip_prefix("#/components/schemas/").expect(r);
                let schemas = &d["components"]["schemas"];
                assert!(schemas.get(name).is_some(), "dangling $ref {r}");
            }
        }
        // Enums as sent on the wire.
        let vm = serde_json::to_value(lifeboat_core::VmState::Active).unwrap();
        assert!(schemas["VmState"]["enum"].as_array().unwrap().contains(&vm));
        let st = serde_json::to_value(lifeboat_core::Status::Active).unwrap();
        assert!(schemas["Status"]["enum"].as_array().unwrap().contains(&st));
        assert_eq!(schemas["PowerState"]["type"], "integer");
        let ps = serde_json::to_value(lifeboat_core::PowerState::Running).unwrap();
        assert!(schemas["PowerState"]["enum"]
            .as_array()
            .unwrap()
            .contains(&ps));
        // Error answers are documented.
        let show = &doc["paths"]["/api/v1/servers/{id}"]["get"]["responses"];
        for code in ["401", "404"] {
            assert!(show.get(code).is_some(), "GET /servers/{{id}} lacks {code}");
        }
        let create = &doc["paths"]["/api/v1/servers"]["post"]["responses"];
        for code in ["400", "403", "413", "415"] {
            assert!(create.get(code).is_some(), "POST /servers lacks {code}");
        }
    }
    #[test]
    fn served_document_names_servers_and_says_what_interfaces_take() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        // The server object is `Server` (its stored record `ServerRecord`),
        // so `/servers/{id}/...` ids bind to servers, not server groups.
        assert!(
            schemas["Server"]["allOf"].is_array(),
            "{}",
            schemas["Server"]
        );
        assert_eq!(
            schemas["Server"]["allOf"][0]["$ref"],
            "#/components/schemas/ServerRecord"
        );
        assert!(schemas.get("ServerView").is_none());
        let show = &doc["paths"]["/api/v1/servers/{id}"]["get"]["responses"]["200"];
        assert_eq!(
            show["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Server"
        );
        // A router interface takes exactly one of a subnet and a port.
        let iface = &schemas["RouterInterfaceIn"];
        let branches = iface["oneOf"].as_array().expect("oneOf");
        let required: Vec<&Value> = branches.iter().map(|b| &b["required"][0]).collect();
        assert_eq!(required, [&Value::from("subnet"), &Value::from("port")]);
        for b in branches {
            assert_eq!(b["additionalProperties"], false, "{b}");
        }
        // A fixed IP takes a subnet, an address or both; ip_version 4 or 6;
        // a floating IP's address is an IP.
        assert_eq!(schemas["FixedIpIn"]["anyOf"].as_array().unwrap().len(), 2);
        let subnet = &schemas["SubnetCreate"]["properties"];
        assert_eq!(subnet["ip_version"]["enum"], serde_json::json!([4, 6]));
        assert_eq!(subnet["network"]["example"], "private");
        let fip = &schemas["FloatingIpCreate"]["properties"]["address"];
        let formats: Vec<&Value> = fip["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| &b["format"])
            .collect();
        assert_eq!(formats, [&Value::from("ipv4"), &Value::from("ipv6")]);
    }
}
