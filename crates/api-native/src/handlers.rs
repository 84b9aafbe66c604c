//! Handlers: parse, call the engine, render.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use lifeboat_core::{Event, Flavor, Host, Image, Keypair, Project, Role, Server, Status, Workflow};
use lifeboat_engine::{
    ActionOutcome, CreateServer, Engine, ListServers, ServerAction, UpdateServer,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::ApiError;
#[allow(unused_imports)]
use crate::error::ErrorBody;
use crate::extract::Body;

type R<T> = Result<T, ApiError>;

/// A server with its derived status (`Server` in the document, see
/// [`crate::document`]).
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerView {
    /// The server.
    #[serde(flatten)]
    pub server: Server,
    /// API status from vm_state and task_state.
    pub status: Status,
    /// The instant restore whose background copy still runs (or just
    /// finished), in the view of one server; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreView>,
}

/// Progress of a server's instant restore (`restore_backup` with `instant`):
/// the server runs from the snapshot store while its disk is copied.
#[derive(Debug, Serialize, ToSchema)]
pub struct RestoreView {
    /// Snapshot restored from.
    pub snapshot: String,
    /// Its disk.
    pub disk: String,
    /// The copy is complete: the disk no longer needs the store, and the
    /// actions that need the whole disk are allowed again.
    pub done: bool,
    /// A copy job runs now (false while the VM is off: it resumes at boot).
    pub copying: bool,
    /// Bytes the current copy job has done.
    pub copied: u64,
    /// Disk size in bytes.
    pub total: u64,
    /// Copy jobs started (more than one: resumed after a failure or restart).
    pub jobs: u32,
    /// Reads of the store export answered on the host.
    pub served_reads: u64,
    /// Milliseconds the copy took, once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<u64>,
    /// The last failure of the copy or of asking the host (administrators only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RestoreView {
    /// The view of `p` for `actor`.
    pub fn new(p: lifeboat_engine::RestoreProgress, actor: &lifeboat_core::Actor) -> Self {
        RestoreView {
            snapshot: p.snapshot,
            disk: p.disk,
            done: p.done,
            copying: p.copying,
            copied: p.copied,
            total: p.total,
            jobs: p.jobs,
            served_reads: p.served_reads,
            took_ms: p.took_ms,
            error: p.error.filter(|_| actor.is_admin()),
        }
    }
}

impl ServerView {
    /// The view `actor` may see: only admins see where and how the server
    /// runs (host, node, instance_name, scheduler hints) and a fault's
    /// details (Nova's `os_compute_api:os-extended-server-attributes`).
    pub fn new(mut s: Server, actor: &lifeboat_core::Actor) -> ServerView {
        if !actor.is_admin() {
            s.host = None;
            s.node = None;
            s.source_host = None;
            s.instance_name = String::new();
            s.scheduler_hints = Default::default();
            s.kernel_id = None;
            s.ramdisk_id = None;
            if let Some(f) = &mut s.fault {
                f.details = None;
            }
        }
        ServerView {
            status: s.status(),
            server: s,
            restore: None,
        }
    }
}

/// A created server with its admin password (shown once).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedView {
    /// The server.
    pub server: ServerView,
    /// Admin password.
    pub admin_pass: String,
    /// The create workflow.
    pub workflow_id: String,
}

/// Login request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Project name or id (the user's default when absent).
    pub project: Option<String>,
}

/// Login response.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Bearer token for `X-Auth-Token`.
    pub token: String,
    /// Expiry (RFC 3339).
    pub expires_at: String,
    /// User id.
    pub user_id: String,
    /// Project id.
    pub project_id: String,
    /// Role on the project.
    pub role: Role,
}

/// Log in with a password.
#[utoipa::path(post, path = "/api/v1/auth/tokens", request_body = LoginRequest,
    responses((status = 201, body = LoginResponse), (status = 401, body = ErrorBody)))]
pub async fn login(
    State(e): State<Engine>,
    Body(req): Body<LoginRequest>,
) -> R<(StatusCode, Json<LoginResponse>)> {
    let a = e
        .authenticate(&req.username, &req.password, req.project.as_deref())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(LoginResponse {
            token: a.token,
            expires_at: a.expires_at.to_rfc3339(),
            user_id: a.actor.user_id,
            project_id: a.actor.project_id,
            role: a.actor.role,
        }),
    ))
}

/// Server list filters.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ServerListQuery {
    /// Admin: every project.
    #[serde(default)]
    pub all_projects: bool,
    /// Admin: one project.
    pub project_id: Option<String>,
    /// Status (ACTIVE, SHUTOFF, ...), comma separated.
    pub status: Option<String>,
    /// Name substring.
    pub name: Option<String>,
    /// Host (admin).
    pub host: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
    /// Last id of the previous page.
    pub marker: Option<String>,
}

/// List servers, newest first.
#[utoipa::path(get, path = "/api/v1/servers", params(ServerListQuery),
    responses((status = 200, body = [ServerView])), security(("token" = [])))]
pub async fn list_servers(
    State(e): State<Engine>,
    Caller(a): Caller,
    Query(q): Query<ServerListQuery>,
) -> R<Json<Vec<ServerView>>> {
    let status = match &q.status {
        Some(s) => Some(
            s.split(',')
                .map(|x| {
                    Status::parse(&x.trim().to_uppercase())
                        .ok_or_else(|| ApiError::bad_request(format!("unknown status {x}")))
                })
                .collect::<R<Vec<_>>>()?,
        ),
        None => None,
    };
    let list = e
        .list_servers(
            &a,
            &ListServers {
                all_projects: q.all_projects,
                project_id: q.project_id,
                status,
                name: q.name,
                host: q.host,
                limit: q.limit,
                marker: q.marker,
                ..Default::default()
            },
        )
        .await?;
    Ok(Json(
        list.into_iter().map(|s| ServerView::new(s, &a)).collect(),
    ))
}

/// Create servers (`max_count` > 1 creates several).
#[utoipa::path(post, path = "/api/v1/servers", request_body = CreateServer,
    responses((status = 202, body = [CreatedView]), (status = 400, body = ErrorBody)), security(("token" = [])))]
pub async fn create_server(
    State(e): State<Engine>,
    Caller(a): Caller,
    Body(req): Body<CreateServer>,
) -> R<(StatusCode, Json<Vec<CreatedView>>)> {
    let created = e.create_servers(&a, req).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(
            created
                .into_iter()
                .map(|c| CreatedView {
                    server: ServerView::new(c.server, &a),
                    admin_pass: c.admin_pass,
                    workflow_id: c.workflow_id,
                })
                .collect(),
        ),
    ))
}

/// Show a server.
#[utoipa::path(get, path = "/api/v1/servers/{id}", params(("id" = String, Path, description = "Resource id")),
    responses((status = 200, body = ServerView), (status = 404, body = ErrorBody)), security(("token" = [])))]
pub async fn show_server(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<ServerView>> {
    let s = e.server(&a, &id).await?;
    let restore = e
        .restore_progress(&s)
        .await
        .map(|p| RestoreView::new(p, &a));
    let mut v = ServerView::new(s, &a);
    v.restore = restore;
    Ok(Json(v))
}

/// Update name, description, access IPs, hostname.
#[utoipa::path(patch, path = "/api/v1/servers/{id}", params(("id" = String, Path, description = "Resource id")), request_body = UpdateServer,
    responses((status = 200, body = ServerView)), security(("token" = [])))]
pub async fn update_server(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
    Body(u): Body<UpdateServer>,
) -> R<Json<ServerView>> {
    Ok(Json(ServerView::new(
        e.update_server(&a, &id, u).await?,
        &a,
    )))
}

/// Delete a server.
#[utoipa::path(delete, path = "/api/v1/servers/{id}", params(("id" = String, Path, description = "Resource id")),
    responses((status = 202, body = ActionOutcome), (status = 409, body = ErrorBody)), security(("token" = [])))]
pub async fn delete_server(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<(StatusCode, Json<ActionOutcome>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(e.server_action(&a, &id, ServerAction::Delete).await?),
    ))
}

/// Run an action (reboot, stop, resize, ...): 202 when it started a
/// workflow, 200 when it is done at once (console output, a remote console,
/// lock, tags, ...).
#[utoipa::path(post, path = "/api/v1/servers/{id}/actions", params(("id" = String, Path, description = "Resource id")), request_body = ServerAction,
    responses((status = 202, body = ActionOutcome, description = "A workflow was started"),
        (status = 200, body = ActionOutcome, description = "Done at once"),
        (status = 409, body = ErrorBody)), security(("token" = [])))]
pub async fn server_action(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
    Body(req): Body<ServerAction>,
) -> R<(StatusCode, Json<ActionOutcome>)> {
    let out = e.server_action(&a, &id, req).await?;
    let status = if matches!(out, ActionOutcome::Accepted { .. }) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(out)))
}

/// Workflows of a server, newest first.
#[utoipa::path(get, path = "/api/v1/servers/{id}/workflows", params(("id" = String, Path, description = "Resource id")),
    responses((status = 200, body = [Workflow])), security(("token" = [])))]
pub async fn server_workflows(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Vec<Workflow>>> {
    Ok(Json(e.server_workflows(&a, &id).await?))
}

/// One workflow with its steps.
#[utoipa::path(get, path = "/api/v1/workflows/{id}", params(("id" = String, Path, description = "Resource id")),
    responses((status = 200, body = Workflow), (status = 404, body = ErrorBody)), security(("token" = [])))]
pub async fn show_workflow(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Workflow>> {
    Ok(Json(e.workflow(&a, &id).await?))
}

/// Limit query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct LimitQuery {
    /// At most this many.
    pub limit: Option<i64>,
}

/// Recent workflows.
#[utoipa::path(get, path = "/api/v1/workflows", params(LimitQuery),
    responses((status = 200, body = [Workflow])), security(("token" = [])))]
pub async fn list_workflows(
    State(e): State<Engine>,
    Caller(a): Caller,
    Query(q): Query<LimitQuery>,
) -> R<Json<Vec<Workflow>>> {
    Ok(Json(e.workflows(&a, q.limit.unwrap_or(100)).await?))
}

/// Event filters.
#[derive(Debug, Deserialize, IntoParams)]
pub struct EventsQuery {
    /// Only this server.
    pub server_id: Option<String>,
    /// Only this workflow.
    pub workflow_id: Option<String>,
    /// Only events after this id (follow).
    pub after: Option<i64>,
    /// The newest N.
    pub limit: Option<i64>,
}

/// The event log, oldest first.
#[utoipa::path(get, path = "/api/v1/events", params(EventsQuery),
    responses((status = 200, body = [Event])), security(("token" = [])))]
pub async fn list_events(
    State(e): State<Engine>,
    Caller(a): Caller,
    Query(q): Query<EventsQuery>,
) -> R<Json<Vec<Event>>> {
    Ok(Json(
        e.events(
            &a,
            lifeboat_store::EventQuery {
                server_id: q.server_id,
                project_id: None,
                workflow_id: q.workflow_id,
                after_id: q.after,
                limit: Some(q.limit.unwrap_or(200).clamp(1, 10_000)),
            },
        )
        .await?,
    ))
}

/// Flavors.
#[utoipa::path(get, path = "/api/v1/flavors", responses((status = 200, body = [Flavor])), security(("token" = [])))]
pub async fn list_flavors(State(e): State<Engine>, Caller(a): Caller) -> R<Json<Vec<Flavor>>> {
    Ok(Json(e.flavors(&a).await?))
}

/// A flavor to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlavorCreate {
    /// Flavor id (a UUID when absent).
    #[schema(min_length = 1, max_length = 255, pattern = "^[A-Za-z0-9_.-]+$")]
    pub id: Option<String>,
    /// Unique name.
    #[schema(min_length = 1, max_length = 255, pattern = "\\S")]
    pub name: String,
    /// Virtual CPUs.
    #[schema(minimum = 1)]
    pub vcpus: u32,
    /// Memory in MiB.
    #[schema(minimum = 1)]
    pub ram: u64,
    /// Root disk in GiB.
    #[serde(default)]
    pub disk: u64,
    /// Ephemeral disk in GiB.
    #[serde(default)]
    pub ephemeral: u64,
    /// Swap in MiB (0 = none).
    #[serde(default)]
    pub swap: u64,
    /// RX/TX factor (default 1).
    #[schema(minimum = 0.0)]
    pub rxtx_factor: Option<f64>,
    /// Visible to every project (default true).
    pub is_public: Option<bool>,
    /// Disabled flavors cannot be used for new servers.
    #[serde(default)]
    pub disabled: bool,
    /// Description.
    pub description: Option<String>,
    /// Extra specs.
    #[serde(default)]
    pub extra_specs: std::collections::BTreeMap<String, String>,
}

/// Create a flavor (admin).
#[utoipa::path(post, path = "/api/v1/flavors", request_body = FlavorCreate,
    responses((status = 201, body = Flavor), (status = 403, body = ErrorBody)), security(("token" = [])))]
pub async fn create_flavor(
    State(e): State<Engine>,
    Caller(a): Caller,
    Body(f): Body<FlavorCreate>,
) -> R<(StatusCode, Json<Flavor>)> {
    if f.rxtx_factor.is_some_and(|r| r.is_nan() || r < 0.0) {
        return Err(ApiError::bad_request("rxtx_factor must not be negative"));
    }
    let f = Flavor {
        id: f.id.unwrap_or_else(lifeboat_core::ids::uuid),
        name: f.name,
        vcpus: f.vcpus,
        ram: f.ram,
        disk: f.disk,
        ephemeral: f.ephemeral,
        swap: f.swap,
        rxtx_factor: f.rxtx_factor.unwrap_or(1.0),
        is_public: f.is_public.unwrap_or(true),
        disabled: f.disabled,
        description: f.description,
        extra_specs: f.extra_specs,
    };
    Ok((StatusCode::CREATED, Json(e.create_flavor(&a, f).await?)))
}

/// Images, snapshots and backups.
#[utoipa::path(get, path = "/api/v1/images", responses((status = 200, body = [Image])), security(("token" = [])))]
pub async fn list_images(State(e): State<Engine>, Caller(a): Caller) -> R<Json<Vec<Image>>> {
    Ok(Json(e.images(&a).await?))
}

/// Delete an image (the default image is protected: 403).
#[utoipa::path(delete, path = "/api/v1/images/{id}", params(("id" = String, Path, description = "Resource id")),
    responses((status = 204)), security(("token" = [])))]
pub async fn delete_image(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<StatusCode> {
    e.delete_image(&a, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A host and whether it is up.
#[derive(Debug, Serialize, ToSchema)]
pub struct HostView {
    /// The host.
    #[serde(flatten)]
    pub host: Host,
    /// Reachable.
    pub up: bool,
}

/// Hosts (admin).
#[utoipa::path(get, path = "/api/v1/hosts", responses((status = 200, body = [HostView])), security(("token" = [])))]
pub async fn list_hosts(State(e): State<Engine>, Caller(a): Caller) -> R<Json<Vec<HostView>>> {
    if !a.is_admin() {
        return Err(lifeboat_engine::ComputeError::Forbidden(
            "hosts are visible to admins only".into(),
        )
        .into());
    }
    Ok(Json(
        e.hosts()
            .await
            .into_iter()
            .map(|(host, up)| HostView { host, up })
            .collect(),
    ))
}

/// Key pair import.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeypairRequest {
    /// Name: letters, digits, space and `_-.@`.
    #[schema(min_length = 1, max_length = 255, pattern = "^[A-Za-z0-9 _.@-]+$")]
    pub name: String,
    /// OpenSSH public key (`TYPE BASE64 [COMMENT]`, type `ssh-*` or `ecdsa-*`).
    #[schema(
        pattern = "^(ssh-|ecdsa-)[!-~]* +([A-Za-z0-9+/]{4})+([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?( [ -~]*)?$",
        example = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGk5bWc0cmFuZG9tZXhhbXBsZWtleWJ5dGVzMDE= fuzz"
    )]
    pub public_key: String,
}

/// Key pairs of the caller.
#[utoipa::path(get, path = "/api/v1/keypairs", responses((status = 200, body = [Keypair])), security(("token" = [])))]
pub async fn list_keypairs(State(e): State<Engine>, Caller(a): Caller) -> R<Json<Vec<Keypair>>> {
    Ok(Json(e.keypairs(&a).await?))
}

/// Import a key pair.
#[utoipa::path(post, path = "/api/v1/keypairs", request_body = KeypairRequest,
    responses((status = 201, body = Keypair)), security(("token" = [])))]
pub async fn create_keypair(
    State(e): State<Engine>,
    Caller(a): Caller,
    Body(k): Body<KeypairRequest>,
) -> R<(StatusCode, Json<Keypair>)> {
    Ok((
        StatusCode::CREATED,
        Json(e.import_keypair(&a, &k.name, &k.public_key, "ssh").await?),
    ))
}

/// Delete a key pair.
#[utoipa::path(delete, path = "/api/v1/keypairs/{name}", params(("name" = String, Path, description = "Key pair name")),
    responses((status = 204)), security(("token" = [])))]
pub async fn delete_keypair(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(name): Path<String>,
) -> R<StatusCode> {
    e.delete_keypair(&a, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn admin_only(a: &lifeboat_core::Actor) -> R<()> {
    if a.is_admin() {
        Ok(())
    } else {
        Err(lifeboat_engine::ComputeError::Forbidden("admin only".into()).into())
    }
}

/// Project creation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectRequest {
    /// Name.
    #[schema(min_length = 1, max_length = 64, pattern = "\\S")]
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
}

/// Projects (admin).
#[utoipa::path(get, path = "/api/v1/projects", responses((status = 200, body = [Project])), security(("token" = [])))]
pub async fn list_projects(State(e): State<Engine>, Caller(a): Caller) -> R<Json<Vec<Project>>> {
    admin_only(&a)?;
    Ok(Json(e.projects().await?))
}

/// Create a project (admin).
#[utoipa::path(post, path = "/api/v1/projects", request_body = ProjectRequest,
    responses((status = 201, body = Project)), security(("token" = [])))]
pub async fn create_project(
    State(e): State<Engine>,
    Caller(a): Caller,
    Body(p): Body<ProjectRequest>,
) -> R<(StatusCode, Json<Project>)> {
    admin_only(&a)?;
    Ok((
        StatusCode::CREATED,
        Json(e.create_project(&p.name, &p.description).await?),
    ))
}

/// User creation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    /// Name (an existing user gets the role on the project).
    #[schema(min_length = 1, max_length = 255, pattern = "\\S")]
    pub name: String,
    /// Password (at least 8 characters).
    #[schema(min_length = 8)]
    pub password: String,
    /// Project name or id.
    #[schema(min_length = 1, example = "admin")]
    pub project: String,
    /// Role on the project.
    pub role: Role,
}

/// A created user.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Project id.
    pub project_id: String,
    /// Role.
    pub role: Role,
}

/// Create a user with a role on a project (admin).
#[utoipa::path(post, path = "/api/v1/users", request_body = UserRequest,
    responses((status = 201, body = UserView)), security(("token" = [])))]
pub async fn create_user(
    State(e): State<Engine>,
    Caller(a): Caller,
    Body(u): Body<UserRequest>,
) -> R<(StatusCode, Json<UserView>)> {
    admin_only(&a)?;
    let p = e.project(&u.project).await?;
    let user = match e.user(&u.name).await {
        Ok(existing) => {
            e.assign_role(&existing.id, &p.id, u.role).await?;
            existing
        }
        Err(_) => e.create_user(&u.name, &u.password, &p.id, u.role).await?,
    };
    Ok((
        StatusCode::CREATED,
        Json(UserView {
            id: user.id,
            name: user.name,
            project_id: p.id,
            role: u.role,
        }),
    ))
}
