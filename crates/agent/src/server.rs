use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use lifeboat_hypervisor::{HvResult, Hypervisor};
use serde::Serialize;

use crate::protocol::{AgentRequest, AgentResponse};

fn json<T: Serialize>(r: HvResult<T>) -> AgentResponse {
    match r {
        Ok(v) => AgentResponse::Ok(serde_json::to_value(v).expect("serialisable")),
        Err(e) => AgentResponse::Err(e),
    }
}

/// Runs one request on a driver.
pub async fn dispatch(hv: &dyn Hypervisor, req: AgentRequest) -> AgentResponse {
    use AgentRequest as R;
    match req {
        R::HostInfo => json(hv.host_info().await),
        R::Define { spec } => json(hv.define(&spec).await),
        R::Destroy { name } => json(hv.destroy(&name).await),
        R::Start { name } => json(hv.start(&name).await),
        R::Stop { name, timeout_secs } => json(hv.stop(&name, timeout_secs).await),
        R::Reboot { name, hard } => json(hv.reboot(&name, hard).await),
        R::Pause { name } => json(hv.pause(&name).await),
        R::Unpause { name } => json(hv.unpause(&name).await),
        R::Suspend { name } => json(hv.suspend(&name).await),
        R::Resume { name } => json(hv.resume(&name).await),
        R::Rescue { name, image } => json(hv.rescue(&name, &image).await),
        R::Unrescue { name } => json(hv.unrescue(&name).await),
        R::Rebuild { name, image } => json(hv.rebuild(&name, &image).await),
        R::Resize { name, size } => json(hv.resize(&name, &size).await),
        R::ConfirmResize { name } => json(hv.confirm_resize(&name).await),
        R::RevertResize { name } => json(hv.revert_resize(&name).await),
        R::SnapshotDisk { name, dest } => json(hv.snapshot_disk(&name, &dest).await),
        R::ConsoleOutput { name, lines } => json(hv.console_output(&name, lines).await),
        R::CrashDump { name } => json(hv.crash_dump(&name).await),
        R::SetPassword {
            name,
            user,
            password,
        } => json(hv.set_password(&name, &user, &password).await),
        R::RunMaintenance { name, procedure } => json(hv.run_maintenance(&name, &procedure).await),
        R::Offload { name } => json(hv.offload(&name).await),
        R::PrepareIncoming { spec } => json(hv.prepare_incoming(&spec).await),
        R::MigrateTo { name, target } => json(hv.migrate_to(&name, &target).await),
        R::FinishIncoming { name } => json(hv.finish_incoming(&name).await),
        R::ConsoleSocket { name } => json(hv.console_socket(&name).await),
        R::Status { name } => json(hv.status(&name).await),
        R::List => json(hv.list().await),
    }
}

#[derive(Clone)]
struct AgentState {
    hv: Arc<dyn Hypervisor>,
    token: Arc<String>,
}

/// The agent's HTTP service: `POST /v1/rpc` (bearer token) and `GET /v1/health`.
pub fn router(hv: Arc<dyn Hypervisor>, token: String) -> Router {
    Router::new()
        .route("/v1/rpc", post(rpc))
        .route("/v1/health", get(|| async { "ok" }))
        .with_state(AgentState {
            hv,
            token: Arc::new(token),
        })
}

async fn rpc(
    State(st): State<AgentState>,
    headers: HeaderMap,
    Json(req): Json<AgentRequest>,
) -> Result<Json<AgentResponse>, StatusCode> {
    let ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.as_bytes(), st.token.as_bytes()));
    if !ok {
        return Err(StatusCode::UNAUTHORIZED);
    }
    Ok(Json(dispatch(st.hv.as_ref(), req).await))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
