use std::time::Duration;

use async_trait::async_trait;
use lifeboat_hypervisor::{
    HostInfo, HvError, HvResult, Hypervisor, ImageRef, MigrationTarget, SnapshotInfo, VmSize,
    VmSpec, VmStatus,
};
use serde::de::DeserializeOwned;

use crate::protocol::{AgentRequest, AgentResponse};

/// A host agent reached over HTTP. Implements [`Hypervisor`] by sending each
/// call to the agent.
pub struct RemoteAgent {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl RemoteAgent {
    /// An agent at `base` (`http://127.0.0.2:8775`).
    pub fn new(base: &str, token: &str) -> RemoteAgent {
        RemoteAgent {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(900))
                .build()
                .expect("http client"),
        }
    }

    async fn call<T: DeserializeOwned>(&self, req: AgentRequest) -> HvResult<T> {
        let resp = self
            .http
            .post(format!("{}/v1/rpc", self.base))
            .bearer_auth(&self.token)
            .json(&req)
            .send()
            .await
            .map_err(|e| HvError::Unreachable(format!("{}: {e}", self.base)))?;
        if !resp.status().is_success() {
            return Err(HvError::Other(format!(
                "agent {} answered {}",
                self.base,
                resp.status()
            )));
        }
        match resp
            .json::<AgentResponse>()
            .await
            .map_err(|e| HvError::Other(format!("bad agent answer: {e}")))?
        {
            AgentResponse::Ok(v) => serde_json::from_value(v)
                .map_err(|e| HvError::Other(format!("bad agent result: {e}"))),
            AgentResponse::Err(e) => Err(e),
        }
    }
}

fn n(s: &str) -> String {
    s.to_string()
}

#[async_trait]
impl Hypervisor for RemoteAgent {
    fn driver(&self) -> &'static str {
        "remote"
    }
    async fn host_info(&self) -> HvResult<HostInfo> {
        self.call(AgentRequest::HostInfo).await
    }
    async fn define(&self, spec: &VmSpec) -> HvResult<()> {
        self.call(AgentRequest::Define { spec: spec.clone() }).await
    }
    async fn destroy(&self, name: &str) -> HvResult<()> {
        self.call(AgentRequest::Destroy { name: n(name) }).await
    }
    async fn start(&self, name: &str) -> HvResult<()> {
        self.call(AgentRequest::Start { name: n(name) }).await
    }
    async fn stop(&self, name: &str, timeout_secs: u64) -> HvResult<()> {
        self.call(AgentRequest::Stop {
            name: n(name),
            timeout_secs,
        })
        .await
    }
    async fn reboot(&self, name: &str, hard: bool) -> HvResult<()> {
        self.call(AgentRequest::Reboot {
            name: n(name),
            hard,
        })
        .await
    }
    async fn pause(&self, name: &str) -> HvResult<()> {
        self.call(AgentRequest::Pause { name: n(name) }).await
    }
    async fn unpause(&self, name: &str) -> HvResult<()> {
        self.call(AgentRequest::Unpause { name: n(name) }).await
    }
    async fn suspend(&self, name: &str) -> HvResult<()> {
        self.call(AgentRequest::Suspend { name: n(name) }).await
    }
    async fn resume(&self, name: &str) -> HvResult<()> {
        self.call(AgentRequest::Resume { name: n(name) }).await
    }
    async fn rescue(&self, name: &str, image: &ImageRef) -> HvResult<()> {
        self.call(AgentRequest::Rescue {
            name: n(name),
            image: image.clone(),
        })
        .await
    }
    async fn unrescue(&self, name: &str) -> HvResult<()> {
        self.call(AgentRequest::Unrescue { name: n(name) }).await
    }
    async fn rebuild(&self, name: &str, image: &ImageRef) -> HvResult<()> {
        self.call(AgentRequest::Rebuild {
            name: n(name),
            image: image.clone(),
        })
        .await
    }
    async fn resize(&self, name: &str, size: &VmSize) -> HvResult<()> {
        self.call(AgentRequest::Resize {
            name: n(name),
            size: *size,
        })
        .await
    }
    async fn confirm_resize(&self, name: &str) -> HvResult<()> {
        self.call(AgentRequest::ConfirmResize { name: n(name) })
            .await
    }
    async fn revert_resize(&self, name: &str) -> HvResult<()> {
        self.call(AgentRequest::RevertResize { name: n(name) })
            .await
    }
    async fn snapshot_disk(&self, name: &str, dest: &str) -> HvResult<SnapshotInfo> {
        self.call(AgentRequest::SnapshotDisk {
            name: n(name),
            dest: n(dest),
        })
        .await
    }
    async fn console_output(&self, name: &str, lines: Option<usize>) -> HvResult<String> {
        self.call(AgentRequest::ConsoleOutput {
            name: n(name),
            lines,
        })
        .await
    }
    async fn crash_dump(&self, name: &str) -> HvResult<()> {
        self.call(AgentRequest::CrashDump { name: n(name) }).await
    }
    async fn set_password(&self, name: &str, user: &str, password: &str) -> HvResult<()> {
        self.call(AgentRequest::SetPassword {
            name: n(name),
            user: n(user),
            password: n(password),
        })
        .await
    }
    async fn run_maintenance(&self, name: &str, procedure: &str) -> HvResult<String> {
        self.call(AgentRequest::RunMaintenance {
            name: n(name),
            procedure: n(procedure),
        })
        .await
    }
    async fn offload(&self, name: &str) -> HvResult<()> {
        self.call(AgentRequest::Offload { name: n(name) }).await
    }
    async fn prepare_incoming(&self, spec: &VmSpec) -> HvResult<MigrationTarget> {
        self.call(AgentRequest::PrepareIncoming { spec: spec.clone() })
            .await
    }
    async fn migrate_to(&self, name: &str, target: &MigrationTarget) -> HvResult<()> {
        self.call(AgentRequest::MigrateTo {
            name: n(name),
            target: target.clone(),
        })
        .await
    }
    async fn finish_incoming(&self, name: &str) -> HvResult<()> {
        self.call(AgentRequest::FinishIncoming { name: n(name) })
            .await
    }
    async fn console_socket(&self, name: &str) -> HvResult<String> {
        self.call(AgentRequest::ConsoleSocket { name: n(name) })
            .await
    }
    async fn status(&self, name: &str) -> HvResult<VmStatus> {
        self.call(AgentRequest::Status { name: n(name) }).await
    }
    async fn list(&self) -> HvResult<Vec<VmStatus>> {
        self.call(AgentRequest::List).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_hypervisor::fake::{FakeConfig, FakeDriver};
    use std::sync::Arc;

    #[tokio::test]
    async fn remote_calls_reach_the_driver_over_http() {
        let fake = Arc::new(FakeDriver::new(FakeConfig::from_env("h2")));
        let app = crate::router(fake.clone(), "secret".into());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let remote = RemoteAgent::new(&format!("http://{addr}"), "secret");
        assert_eq!(remote.host_info().await.unwrap().hostname, "h2");
        let spec = VmSpec {
            name: "vm1".into(),
            server_id: "x".into(),
            hostname: "x".into(),
            size: VmSize::default(),
            image: ImageRef::default(),
            nics: vec![],
            user_data: None,
            root_disk: None,
        };
        remote.define(&spec).await.unwrap();
        remote.start("vm1").await.unwrap();
        remote.stop("vm1", 0).await.unwrap();
        assert!(matches!(
            remote.pause("vm1").await,
            Err(HvError::InvalidState(_))
        ));
        assert_eq!(remote.list().await.unwrap().len(), 1);
        assert!(matches!(
            remote.status("nope").await,
            Err(HvError::NotFound(_))
        ));
        let wrong = RemoteAgent::new(&format!("http://{addr}"), "wrong");
        assert!(matches!(wrong.list().await, Err(HvError::Other(_))));
        let down = RemoteAgent::new("http://127.0.0.1:1", "x");
        assert!(matches!(down.list().await, Err(HvError::Unreachable(_))));
    }

    #[tokio::test]
    async fn empty_token_is_refused_and_checked_before_the_body() {
        let fake = Arc::new(FakeDriver::new(FakeConfig::from_env("h3")));
        let serve = |token: &str| {
            let app = crate::router(fake.clone(), token.to_string());
            async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
                format!("http://{addr}")
            }
        };
        let http = reqwest::Client::new();
        let post = |url: String, auth: &'static str, body: &'static str| {
            http.post(format!("{url}/v1/rpc"))
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        // An agent whose token file was empty admits nobody, "Bearer " included.
        let empty = serve("").await;
        let r = post(empty.clone(), "Bearer ", r#"{"op":"list"}"#)
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(RemoteAgent::new(&empty, "").list().await.is_err());
        // The token is checked first: a malformed body without the token is
        // 401, not a parse error; with the token it is 400.
        let real = serve("t0ken").await;
        let r = post(real.clone(), "Bearer nope", "{not json")
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = post(real.clone(), "Bearer t0ken", "{not json")
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = post(real, "Bearer t0ken", r#"{"op":"list"}"#)
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}
