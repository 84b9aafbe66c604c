//! Lifeboat native REST API at `/api/v1`, with its OpenAPI 3 document at
//! `/api/v1/openapi.json` generated from the code. Handlers only parse,
//! authenticate, call the [`Engine`] and render; errors are
//! `{"error": {"code": "...", "message": "..."}}` with a stable code.

mod auth;
mod console;
mod error;
mod handlers;

use axum::routing::{get, post};
use axum::Router;
use lifeboat_engine::Engine;
use utoipa::OpenApi;

use auth::SecurityAddon;
pub use error::{not_found, not_found_response, ApiError};

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Lifeboat native API", version = "1", description = "Servers, actions, workflows and events."),
    paths(
        handlers::login, handlers::list_servers, handlers::create_server, handlers::show_server,
        handlers::update_server, handlers::delete_server, handlers::server_action,
        handlers::server_workflows, handlers::show_workflow, handlers::list_workflows,
        handlers::list_events, handlers::list_flavors, handlers::create_flavor, handlers::list_images,
        handlers::delete_image, handlers::list_hosts, handlers::list_networks,
        handlers::list_floating_ips, handlers::create_floating_ip, handlers::delete_floating_ip,
        handlers::list_keypairs, handlers::create_keypair, handlers::delete_keypair,
        handlers::list_projects, handlers::create_project, handlers::create_user,
    ),
    components(schemas(
        lifeboat_core::Server, lifeboat_core::Flavor, lifeboat_core::FlavorSnapshot, lifeboat_core::Image,
        lifeboat_core::ImageKind, lifeboat_core::ImageStatus, lifeboat_core::Workflow,
        lifeboat_core::WorkflowState, lifeboat_core::StepRecord, lifeboat_core::StepState,
        lifeboat_core::Event, lifeboat_core::Level, lifeboat_core::Fault, lifeboat_core::Attachment,
        lifeboat_core::LockedBy, lifeboat_core::VmState, lifeboat_core::TaskState,
        lifeboat_core::PowerState, lifeboat_core::Status, lifeboat_core::Network,
        lifeboat_core::FloatingIp, lifeboat_core::Keypair, lifeboat_core::Project, lifeboat_core::Host,
        lifeboat_core::Role,
        lifeboat_engine::CreateServer, lifeboat_engine::NetworkRequest, lifeboat_engine::UpdateServer,
        lifeboat_engine::ServerAction, lifeboat_engine::ActionOutcome,
        handlers::ServerView, handlers::CreatedView, handlers::LoginRequest, handlers::LoginResponse,
        handlers::KeypairRequest, handlers::ProjectRequest, handlers::UserRequest, error::ErrorBody,
        error::ErrorDetail,
    )),
    modifiers(&SecurityAddon),
)]
pub struct ApiDoc;

/// The native API router (mount at the root; routes start with `/api/v1`).
pub fn router(engine: Engine) -> Router {
    use handlers::*;
    Router::new()
        .route(
            "/api/v1/openapi.json",
            get(|| async { axum::Json(ApiDoc::openapi()) }),
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
        .route("/api/v1/networks", get(list_networks))
        .route(
            "/api/v1/floating-ips",
            get(list_floating_ips).post(create_floating_ip),
        )
        .route(
            "/api/v1/floating-ips/:id",
            axum::routing::delete(delete_floating_ip),
        )
        .route("/api/v1/keypairs", get(list_keypairs).post(create_keypair))
        .route(
            "/api/v1/keypairs/:name",
            axum::routing::delete(delete_keypair),
        )
        .route("/api/v1/projects", get(list_projects).post(create_project))
        .route("/api/v1/users", post(create_user))
        .route("/console/serial", get(console::serial_console))
        .with_state(engine)
}
