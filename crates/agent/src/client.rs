use std::time::Duration;

use async_trait::async_trait;
use lifeboat_hypervisor::{ConsoleStream, HvError, HvResult, Hypervisor, Own};
use serde::de::DeserializeOwned;

use crate::protocol::{AgentRequest, AgentResponse};

/// A host agent reached over HTTPS. Implements [`Hypervisor`] by sending each
/// call to the agent.
pub struct RemoteAgent {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// An error's message with its causes (reqwest hides the TLS reason in them).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

impl RemoteAgent {
    /// An agent at `base` (`https://127.0.0.2:8775`), reached with `tls`
    /// (from [`crate::tls::client_config`]: the agent's pinned certificate and
    /// the manager's client certificate). Plain `http://` is refused.
    pub fn new(base: &str, token: &str, tls: rustls::ClientConfig) -> RemoteAgent {
        RemoteAgent {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::Client::builder()
                .use_preconfigured_tls(tls)
                .https_only(true)
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(900))
                .build()
                .expect("http client"),
        }
    }

    /// The agent's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The VM's console through the agent: `GET /v1/console/{name}`
    /// upgraded (HTTP/1.1 `Upgrade: lifeboat-console`) to a raw byte stream,
    /// inside the same pinned TLS.
    async fn console(&self, name: &str) -> HvResult<ConsoleStream> {
        let resp = self
            .http
            .get(format!("{}/v1/console/{name}", self.base))
            .bearer_auth(&self.token)
            .header("connection", "upgrade")
            .header("upgrade", crate::server::CONSOLE_UPGRADE)
            .send()
            .await
            .map_err(|e| HvError::Unreachable(format!("{}: {}", self.base, chain(&e))))?;
        if resp.status() != reqwest::StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status();
            // The agent answers a driver error as its JSON.
            return Err(match resp.json::<AgentResponse>().await {
                Ok(AgentResponse::Err(e)) => e,
                _ => HvError::Other(format!("agent {} answered {status}", self.base)),
            });
        }
        let up = resp
            .upgrade()
            .await
            .map_err(|e| HvError::Other(format!("console of {name}: {}", chain(&e))))?;
        Ok(Box::new(up))
    }

    async fn call<T: DeserializeOwned>(&self, req: AgentRequest) -> HvResult<T> {
        let resp = self
            .http
            .post(format!("{}/v1/rpc", self.base))
            .bearer_auth(&self.token)
            .json(&req)
            .send()
            .await
            .map_err(|e| HvError::Unreachable(format!("{}: {}", self.base, chain(&e))))?;
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

/// Generates the [`Hypervisor`] impl of [`RemoteAgent`] from
/// [`lifeboat_hypervisor::host_primitives!`]: each call becomes one
/// [`AgentRequest`].
macro_rules! define_remote_agent {
    ($( $(#[doc = $doc:literal])* $variant:ident => fn $method:ident( $( $arg:ident : $bty:ty as $oty:ty ),* ) -> $ret:ty; )*) => {
        #[async_trait]
        impl Hypervisor for RemoteAgent {
            fn driver(&self) -> &'static str {
                "remote"
            }
            async fn open_console(&self, name: &str) -> HvResult<ConsoleStream> {
                self.console(name).await
            }
            $(
                async fn $method(&self $(, $arg: $bty)*) -> HvResult<$ret> {
                    self.call(AgentRequest::$variant { $( $arg: Own::own($arg) ),* }).await
                }
            )*
        }
    };
}

lifeboat_hypervisor::host_primitives!(define_remote_agent);

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_hypervisor::fake::{FakeConfig, FakeDriver};
    use lifeboat_hypervisor::{ImageRef, VmSize, VmSpec};
    use std::sync::Arc;

    #[tokio::test]
    async fn remote_calls_reach_the_driver_over_tls() {
        let fake = Arc::new(FakeDriver::new(FakeConfig::from_env("h2")));
        let f = crate::tls::testutil::serve_app(crate::router(fake.clone(), "secret".into())).await;
        let remote = RemoteAgent::new(&f.url, "secret", f.client.clone());
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
            root_from: None,
            config_drive: None,
        };
        remote.define(&spec).await.unwrap();
        remote.start("vm1").await.unwrap();
        // SetPassword's hash crosses only inside TLS.
        remote
            .set_password("vm1", "root", "$6$salt$hash")
            .await
            .ok();
        // The serial console is carried through the agent.
        {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut con = remote.open_console("vm1").await.unwrap();
            con.write_all(b"\r").await.unwrap();
            let mut seen = String::new();
            let mut buf = [0u8; 256];
            while !seen.contains("x login:") {
                let n = tokio::time::timeout(Duration::from_secs(5), con.read(&mut buf))
                    .await
                    .expect("console answered")
                    .unwrap();
                assert!(n > 0, "console closed: {seen:?}");
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
        assert!(matches!(
            remote.open_console("nope").await,
            Err(HvError::NotFound(_))
        ));
        let intruder = RemoteAgent::new(&f.url, "wrong", f.client.clone());
        assert!(intruder.open_console("vm1").await.is_err());
        remote.stop("vm1", 0).await.unwrap();
        assert!(matches!(
            remote.open_console("vm1").await,
            Err(HvError::InvalidState(_))
        ));
        assert!(matches!(
            remote.pause("vm1").await,
            Err(HvError::InvalidState(_))
        ));
        assert_eq!(remote.list().await.unwrap().len(), 1);
        assert!(matches!(
            remote.status("nope").await,
            Err(HvError::NotFound(_))
        ));
        let wrong = RemoteAgent::new(&f.url, "wrong", f.client.clone());
        assert!(matches!(wrong.list().await, Err(HvError::Other(_))));
        let down = RemoteAgent::new("https://127.0.0.1:1", "x", f.client.clone());
        assert!(matches!(down.list().await, Err(HvError::Unreachable(_))));
        // Plain HTTP is refused by the client itself.
        let plain = RemoteAgent::new(
            &f.url.replacen("https://", "http://", 1),
            "secret",
            f.client.clone(),
        );
        assert!(plain.list().await.is_err());
    }

    #[tokio::test]
    async fn empty_token_is_refused_and_checked_before_the_body() {
        let fake = Arc::new(FakeDriver::new(FakeConfig::from_env("h3")));
        let serve = |token: &str| {
            let app = crate::router(fake.clone(), token.to_string());
            crate::tls::testutil::serve_app(app)
        };
        let post = |f: &crate::tls::testutil::Fixture, auth: &'static str, body: &'static str| {
            reqwest::Client::builder()
                .use_preconfigured_tls(f.client.clone())
                .build()
                .unwrap()
                .post(format!("{}/v1/rpc", f.url))
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        // An agent whose token file was empty admits nobody, "Bearer " included.
        let empty = serve("").await;
        let r = post(&empty, "Bearer ", r#"{"op":"list"}"#).await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(RemoteAgent::new(&empty.url, "", empty.client.clone())
            .list()
            .await
            .is_err());
        // The token is checked first: a malformed body without the token is
        // 401, not a parse error; with the token it is 400.
        let real = serve("t0ken").await;
        let r = post(&real, "Bearer nope", "{not json").await.unwrap();
        assert_eq!(r.status(), 401);
        let r = post(&real, "Bearer t0ken", "{not json").await.unwrap();
        assert_eq!(r.status(), 400);
        let r = post(&real, "Bearer t0ken", r#"{"op":"list"}"#)
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}
