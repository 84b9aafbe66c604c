//! Keystone v3 subset at `/identity`: version discovery, password and token
//! authentication with a service catalog, token validation and revocation,
//! and read-only users, projects and roles.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lifeboat_core::{Actor, Project, Role, User};
use lifeboat_engine::{Authenticated, ComputeError};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::{keystone_time, Ctx};

/// A Keystone error: `{"error": {"code", "message", "title"}}`.
#[derive(Debug)]
pub struct KsError(pub StatusCode, pub String);

impl IntoResponse for KsError {
    fn into_response(self) -> Response {
        let title = match self.0.as_u16() {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            409 => "Conflict",
            _ => self.0.canonical_reason().unwrap_or("Error"),
        };
        (
            self.0,
            Json(json!({"error": {"code": self.0.as_u16(), "message": self.1, "title": title}})),
        )
            .into_response()
    }
}

impl From<ComputeError> for KsError {
    fn from(e: ComputeError) -> Self {
        match e {
            ComputeError::NotFound { kind, id } => KsError(
                StatusCode::NOT_FOUND,
                format!(
                    "Could not find {}: {id}.",
                    crate::nova::resource_name(kind).to_lowercase()
                ),
            ),
            ComputeError::Unauthorized(_) => unauthorized(),
            ComputeError::Forbidden(m) => KsError(StatusCode::FORBIDDEN, m),
            ComputeError::Rejected(r) => KsError(
                match r.class() {
                    lifeboat_engine::Class::Invalid => StatusCode::BAD_REQUEST,
                    lifeboat_engine::Class::Conflict => StatusCode::CONFLICT,
                },
                crate::nova::reason_message(&r),
            ),
            ComputeError::BadRequest(m) => KsError(StatusCode::BAD_REQUEST, m),
            ComputeError::Conflict(m) => KsError(StatusCode::CONFLICT, m),
            other => KsError(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

fn unauthorized() -> KsError {
    KsError(
        StatusCode::UNAUTHORIZED,
        "The request you have made requires authentication.".into(),
    )
}

type R<T> = Result<T, KsError>;

/// Keystone-style id of a role name (stable across restarts).
pub fn role_id(r: Role) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(format!("lifeboat-role-{}", r.as_str()))[..16])
}

/// Roles a token carries: the role held and the ones it implies
/// (admin ⇒ member ⇒ reader, as Keystone's default implied roles).
pub fn implied_roles(r: Role) -> Vec<Role> {
    [Role::Admin, Role::Member, Role::Reader]
        .into_iter()
        .filter(|x| *x <= r)
        .collect()
}

const DEFAULT_DOMAIN: fn() -> Value = || json!({"id": "default", "name": "Default"});

/// The identity routes.
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/identity", get(versions))
        .route("/identity/", get(versions))
        .route("/identity/v3", get(version))
        .route("/identity/v3/", get(version))
        .route(
            "/identity/v3/auth/tokens",
            get(validate).head(check_token).post(issue).delete(revoke),
        )
        .route("/identity/v3/auth/catalog", get(auth_catalog))
        .route("/identity/v3/auth/projects", get(auth_projects))
        .route("/identity/v3/projects", get(list_projects))
        .route("/identity/v3/projects/:id", get(show_project))
        .route("/identity/v3/users", get(list_users))
        .route("/identity/v3/users/:id", get(show_user))
        .route("/identity/v3/users/:id/projects", get(user_projects))
        .route("/identity/v3/roles", get(list_roles))
        .route("/identity/v3/domains", get(list_domains))
        .route("/identity/v3/domains/:id", get(show_domain))
}

fn version_body(ctx: &Ctx) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/", ctx.identity_url())}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}

async fn versions(State(ctx): State<Ctx>) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({"versions": {"values": [version_body(&ctx)]}})),
    )
        .into_response()
}

async fn version(State(ctx): State<Ctx>) -> Json<Value> {
    Json(json!({"version": version_body(&ctx)}))
}

/// The service catalog of this instance.
pub fn catalog(ctx: &Ctx) -> Value {
    let svc = |ty: &str, name: &str, url: String| {
        let id = |s: &str| {
            use sha2::{Digest, Sha256};
            hex::encode(&Sha256::digest(format!("{ty}-{s}"))[..16])
        };
        let endpoints: Vec<Value> = ["public", "internal", "admin"]
            .iter()
            .map(|i| {
                json!({
                    "id": id(i),
                    "interface": i,
                    "region": "RegionOne",
                    "region_id": "RegionOne",
                    "url": url,
                })
            })
            .collect();
        json!({
            "id": id("service"),
            "type": ty,
            "name": name,
            "endpoints": endpoints,
        })
    };
    json!([
        svc("compute", "nova", ctx.compute_url()),
        svc("identity", "keystone", ctx.identity_url()),
        svc("image", "glance", format!("{}/image", ctx.public_url)),
        svc("network", "neutron", format!("{}/network", ctx.public_url)),
    ])
}

async fn token_body(ctx: &Ctx, a: &Authenticated, methods: &[&str]) -> R<Value> {
    let project = ctx.engine.project(&a.actor.project_id).await?;
    let roles: Vec<Value> = implied_roles(a.actor.role)
        .into_iter()
        .map(|r| json!({"id": role_id(r), "name": r.as_str()}))
        .collect();
    let audit = {
        use sha2::{Digest, Sha256};
        let d = Sha256::digest(a.token.as_bytes());
        hex::encode(&d[..8])
    };
    Ok(json!({"token": {
        "methods": methods,
        "user": {
            "domain": DEFAULT_DOMAIN(),
            "id": a.actor.user_id,
            "name": a.actor.user_name,
            "password_expires_at": null,
        },
        "audit_ids": [audit],
        "expires_at": keystone_time(&a.expires_at),
        "issued_at": keystone_time(&a.issued_at),
        "project": {"domain": DEFAULT_DOMAIN(), "id": project.id, "name": project.name},
        "is_domain": false,
        "roles": roles,
        "catalog": catalog(ctx),
    }}))
}

fn with_subject(status: StatusCode, token: &str, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(token) {
        r.headers_mut().insert("x-subject-token", v);
    }
    r
}

/// Keystone's `ValidationError` text.
fn expecting(attribute: &str, target: &str) -> KsError {
    KsError(
        StatusCode::BAD_REQUEST,
        format!("Expecting to find {attribute} in {target}. The server could not comply with the request since it is either malformed or otherwise incorrect. The client is assumed to be in error."),
    )
}

/// Checks a `domain` reference (`{"id"}` or `{"name"}`) names the one
/// domain there is; Keystone answers an unknown domain with a plain 401.
fn check_domain(d: &Value, target: &str) -> R<()> {
    let Some(o) = d.as_object() else {
        return Err(expecting("domain", target));
    };
    let ok = match (o.get("id"), o.get("name")) {
        (Some(Value::String(id)), _) => id == "default",
        (None, Some(Value::String(n))) => n.eq_ignore_ascii_case("default"),
        _ => return Err(expecting("id or name", "domain")),
    };
    if ok {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

/// The project of `auth.scope` (id or name); None for an unscoped request.
/// Follows Keystone's `AuthInfo._validate_and_normalize_scope_data`:
/// exactly one of project, domain, system or unscoped.
fn scope_project(auth: &Value) -> R<Option<String>> {
    let scope = match auth.get("scope") {
        None | Some(Value::Null) => return Ok(None),
        Some(s) => s,
    };
    let has = |k: &str| match scope {
        // Keystone tests `k in scope`: a substring test on a string.
        Value::String(st) => st.contains(k),
        Value::Object(o) => o.contains_key(k),
        _ => false,
    };
    if !scope.is_object() && !scope.is_string() {
        return Err(KsError(
            StatusCode::BAD_REQUEST,
            format!("Invalid input for field 'scope': {scope} is not of type 'object', 'string'"),
        ));
    }
    let n = ["project", "domain", "unscoped", "system"]
        .iter()
        .filter(|k| has(k))
        .count();
    if n != 1 {
        return Err(expecting("project, domain, system or unscoped", "scope"));
    }
    if has("unscoped") {
        return Ok(None);
    }
    let p = &scope["project"];
    if !p.is_object() {
        if has("project") {
            return Err(expecting("project", "scope"));
        }
        return Err(KsError(
            StatusCode::UNAUTHORIZED,
            "Lifeboat issues project-scoped tokens only.".into(),
        ));
    }
    match (p["id"].as_str(), p["name"].as_str()) {
        (Some(id), _) => Ok(Some(id.to_string())),
        (None, Some(name)) => {
            if p.get("domain").is_none() {
                return Err(expecting("domain", "project"));
            }
            check_domain(&p["domain"], "project")?;
            Ok(Some(name.to_string()))
        }
        _ => Err(expecting("project id or name", "project")),
    }
}

async fn issue(State(ctx): State<Ctx>, body: Option<Json<Value>>) -> R<Response> {
    let Some(Json(body)) = body else {
        return Err(KsError(
            StatusCode::BAD_REQUEST,
            "The request body must be JSON.".into(),
        ));
    };
    let auth = &body["auth"];
    let identity = &auth["identity"];
    let methods: Vec<&str> = identity["methods"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m.as_str()).collect())
        .unwrap_or_default();
    let project = scope_project(auth)?;
    let a = if methods.contains(&"password") {
        let user = &identity["password"]["user"];
        let key = match (user["id"].as_str(), user["name"].as_str()) {
            (Some(id), _) => id,
            (None, Some(name)) => {
                if user.get("domain").is_none() {
                    return Err(expecting("domain", "user"));
                }
                check_domain(&user["domain"], "user")?;
                name
            }
            _ => return Err(expecting("id or name", "user")),
        };
        let password = user["password"].as_str().ok_or_else(unauthorized)?;
        ctx.engine
            .authenticate(key, password, project.as_deref())
            .await
            .map_err(|_| unauthorized())?
    } else if methods.contains(&"token") {
        let old = identity["token"]["id"].as_str().ok_or_else(unauthorized)?;
        let cur = ctx
            .engine
            .validate_token(old)
            .await
            .map_err(|_| unauthorized())?;
        let actor = match project {
            None => cur.actor,
            Some(p) => {
                let p = ctx.engine.project(&p).await.map_err(|_| unauthorized())?;
                let role = ctx
                    .engine
                    .roles_of(&cur.actor.user_id, &p.id)
                    .await?
                    .into_iter()
                    .max()
                    .ok_or_else(unauthorized)?;
                Actor {
                    project_id: p.id,
                    role,
                    ..cur.actor
                }
            }
        };
        // A rescoped token never outlives its parent (Keystone keeps the
        // parent's expires_at), so tokens cannot be chained forever.
        ctx.engine.issue_token_until(actor, cur.expires_at).await?
    } else {
        return Err(KsError(
            StatusCode::UNAUTHORIZED,
            "Unsupported authentication method; use password or token.".into(),
        ));
    };
    let m: Vec<&str> = if methods.contains(&"password") {
        vec!["password"]
    } else {
        vec!["token"]
    };
    let body = token_body(&ctx, &a, &m).await?;
    Ok(with_subject(StatusCode::CREATED, &a.token, body))
}

/// The token named by `X-Subject-Token`, if Keystone's policy lets the
/// caller (`X-Auth-Token`) act on it: an admin, or the token's own user
/// (`rule:token_subject`).
async fn subject(ctx: &Ctx, headers: &HeaderMap, action: &str) -> R<Authenticated> {
    let caller = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    let caller = ctx
        .engine
        .validate_token(caller)
        .await
        .map_err(|_| unauthorized())?;
    let subject = headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            KsError(
                StatusCode::NOT_FOUND,
                "Could not find token: (missing X-Subject-Token).".into(),
            )
        })?;
    let a = ctx.engine.validate_token(subject).await.map_err(|_| {
        KsError(
            StatusCode::NOT_FOUND,
            format!("Could not find token: {subject}."),
        )
    })?;
    if !caller.actor.is_admin() && caller.actor.user_id != a.actor.user_id {
        return Err(KsError(
            StatusCode::FORBIDDEN,
            format!("You are not authorized to perform the requested action: {action}."),
        ));
    }
    Ok(a)
}

async fn validate(State(ctx): State<Ctx>, headers: HeaderMap) -> R<Response> {
    let a = subject(&ctx, &headers, "identity:validate_token").await?;
    let body = token_body(&ctx, &a, &["password"]).await?;
    Ok(with_subject(StatusCode::OK, &a.token, body))
}

async fn check_token(State(ctx): State<Ctx>, headers: HeaderMap) -> R<StatusCode> {
    subject(&ctx, &headers, "identity:check_token").await?;
    Ok(StatusCode::OK)
}

async fn revoke(State(ctx): State<Ctx>, headers: HeaderMap) -> R<StatusCode> {
    let a = subject(&ctx, &headers, "identity:revoke_token").await?;
    ctx.engine.revoke_token(&a.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn auth_catalog(State(ctx): State<Ctx>, _c: Caller) -> Json<Value> {
    Json(
        json!({"catalog": catalog(&ctx), "links": {"self": format!("{}/auth/catalog", ctx.identity_url()), "next": null, "previous": null}}),
    )
}

fn project_json(ctx: &Ctx, p: &Project) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "enabled": p.enabled,
        "domain_id": "default",
        "parent_id": "default",
        "is_domain": false,
        "tags": [],
        "options": {},
        "links": {"self": format!("{}/projects/{}", ctx.identity_url(), p.id)},
    })
}

fn user_json(ctx: &Ctx, u: &User) -> Value {
    json!({
        "id": u.id,
        "name": u.name,
        "enabled": u.enabled,
        "domain_id": "default",
        "default_project_id": u.default_project_id,
        "password_expires_at": null,
        "options": {},
        "links": {"self": format!("{}/users/{}", ctx.identity_url(), u.id)},
    })
}

fn forbidden() -> KsError {
    KsError(
        StatusCode::FORBIDDEN,
        "You are not authorized to perform the requested action.".into(),
    )
}

async fn projects_of(ctx: &Ctx, user_id: &str) -> R<Vec<Project>> {
    let mut out = vec![];
    for p in ctx.engine.projects().await? {
        if !ctx.engine.roles_of(user_id, &p.id).await?.is_empty() {
            out.push(p);
        }
    }
    Ok(out)
}

async fn auth_projects(State(ctx): State<Ctx>, Caller(a): Caller) -> R<Json<Value>> {
    let ps = projects_of(&ctx, &a.user_id).await?;
    Ok(Json(json!({
        "projects": ps.iter().map(|p| project_json(&ctx, p)).collect::<Vec<_>>(),
        "links": {"self": format!("{}/auth/projects", ctx.identity_url()), "next": null, "previous": null},
    })))
}

async fn list_projects(State(ctx): State<Ctx>, Caller(a): Caller) -> R<Json<Value>> {
    let ps: Vec<Project> = if a.is_admin() {
        ctx.engine.projects().await?
    } else {
        vec![ctx.engine.project(&a.project_id).await?]
    };
    Ok(Json(json!({
        "projects": ps.iter().map(|p| project_json(&ctx, p)).collect::<Vec<_>>(),
        "links": {"self": format!("{}/projects", ctx.identity_url()), "next": null, "previous": null},
    })))
}

async fn show_project(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    let p = ctx.engine.project(&id).await?;
    if !a.is_admin() && p.id != a.project_id {
        return Err(forbidden());
    }
    Ok(Json(json!({"project": project_json(&ctx, &p)})))
}

async fn list_users(State(ctx): State<Ctx>, Caller(a): Caller) -> R<Json<Value>> {
    let us: Vec<User> = if a.is_admin() {
        ctx.engine.users().await?
    } else {
        vec![ctx.engine.user(&a.user_id).await?]
    };
    Ok(Json(json!({
        "users": us.iter().map(|u| user_json(&ctx, u)).collect::<Vec<_>>(),
        "links": {"self": format!("{}/users", ctx.identity_url()), "next": null, "previous": null},
    })))
}

async fn show_user(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    let u = ctx.engine.user(&id).await?;
    if !a.is_admin() && u.id != a.user_id {
        return Err(forbidden());
    }
    Ok(Json(json!({"user": user_json(&ctx, &u)})))
}

async fn user_projects(
    State(ctx): State<Ctx>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<Value>> {
    let u = ctx.engine.user(&id).await?;
    if !a.is_admin() && u.id != a.user_id {
        return Err(forbidden());
    }
    let ps = projects_of(&ctx, &u.id).await?;
    Ok(Json(json!({
        "projects": ps.iter().map(|p| project_json(&ctx, p)).collect::<Vec<_>>(),
        "links": {"self": format!("{}/users/{}/projects", ctx.identity_url(), u.id), "next": null, "previous": null},
    })))
}

async fn list_roles(State(ctx): State<Ctx>, _c: Caller) -> Json<Value> {
    let roles: Vec<Value> = [Role::Admin, Role::Member, Role::Reader]
        .into_iter()
        .map(|r| {
            json!({
                "id": role_id(r),
                "name": r.as_str(),
                "domain_id": null,
                "description": null,
                "options": {},
                "links": {"self": format!("{}/roles/{}", ctx.identity_url(), role_id(r))},
            })
        })
        .collect();
    Json(
        json!({"roles": roles, "links": {"self": format!("{}/roles", ctx.identity_url()), "next": null, "previous": null}}),
    )
}

fn domain_json(ctx: &Ctx) -> Value {
    json!({
        "id": "default",
        "name": "Default",
        "description": "The default domain",
        "enabled": true,
        "tags": [],
        "options": {},
        "links": {"self": format!("{}/domains/default", ctx.identity_url())},
    })
}

async fn list_domains(State(ctx): State<Ctx>, _c: Caller) -> Json<Value> {
    Json(
        json!({"domains": [domain_json(&ctx)], "links": {"self": format!("{}/domains", ctx.identity_url()), "next": null, "previous": null}}),
    )
}

async fn show_domain(State(ctx): State<Ctx>, _c: Caller, Path(id): Path<String>) -> R<Json<Value>> {
    if id != "default" && id != "Default" {
        return Err(KsError(
            StatusCode::NOT_FOUND,
            format!("Could not find domain: {id}."),
        ));
    }
    Ok(Json(json!({"domain": domain_json(&ctx)})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_imply() {
        assert_eq!(
            implied_roles(Role::Admin),
            vec![Role::Admin, Role::Member, Role::Reader]
        );
        assert_eq!(implied_roles(Role::Reader), vec![Role::Reader]);
        assert_eq!(role_id(Role::Admin).len(), 32);
        assert_ne!(role_id(Role::Admin), role_id(Role::Member));
    }

    #[test]
    fn scope_parsing() {
        let a = json!({"scope": {"project": {"name": "demo", "domain": {"name": "Default"}}}});
        assert_eq!(scope_project(&a).unwrap().as_deref(), Some("demo"));
        let a = json!({"scope": {"project": {"id": "abc"}}});
        assert_eq!(scope_project(&a).unwrap().as_deref(), Some("abc"));
        assert_eq!(scope_project(&json!({})).unwrap(), None);
        assert!(scope_project(&json!({"scope": {"domain": {"id": "default"}}})).is_err());
        assert_eq!(scope_project(&json!({"scope": "unscoped"})).unwrap(), None);
        let e = scope_project(&json!({"scope": "admin"})).unwrap_err();
        assert_eq!(e.0, StatusCode::BAD_REQUEST);
        assert!(e
            .1
            .starts_with("Expecting to find project, domain, system or unscoped in scope."));
        assert_eq!(
            scope_project(&json!({"scope": 5})).unwrap_err().0,
            StatusCode::BAD_REQUEST
        );
        let e = scope_project(
            &json!({"scope": {"project": {"name": "p", "domain": {"name": "Nope"}}}}),
        );
        assert_eq!(e.unwrap_err().0, StatusCode::UNAUTHORIZED);
    }
}
