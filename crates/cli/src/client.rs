//! HTTP client for the native API.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use crate::ClientOpts;

/// A logged-in client.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

fn default_credentials() -> PathBuf {
    std::env::var_os("LIFEBOAT_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("lifeboat-data"))
        .join("admin-credentials.json")
}

impl Client {
    /// Logs in with --user/--password or the credentials file.
    pub async fn login(o: &ClientOpts) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(120))
            .build()?;
        let (user, password, project) = match (&o.user, &o.password) {
            (Some(u), Some(p)) => (u.clone(), p.clone(), o.project.clone()),
            (Some(_), None) => bail!("--user needs --password (or LIFEBOAT_PASSWORD)"),
            _ => {
                let path = o.credentials.clone().unwrap_or_else(default_credentials);
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "no credentials: give --user/--password or --credentials (tried {})",
                        path.display()
                    )
                })?;
                let c: Value = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not JSON", path.display()))?;
                let s = |k: &str| {
                    c[k].as_str()
                        .map(str::to_string)
                        .ok_or_else(|| anyhow!("{} has no {k}", path.display()))
                };
                (
                    s("username")?,
                    s("password")?,
                    o.project
                        .clone()
                        .or(c["project"].as_str().map(str::to_string)),
                )
            }
        };
        let base = o.url.trim_end_matches('/').to_string();
        let resp = http
            .post(format!("{base}/api/v1/auth/tokens"))
            .json(&json!({"username": user, "password": password, "project": project}))
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach Lifeboat at {base}: {}", root_cause(&e)))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("login failed ({status}): {}", error_message(&body));
        }
        let token = body["token"]
            .as_str()
            .ok_or_else(|| anyhow!("login answered without a token"))?
            .to_string();
        Ok(Client { base, token, http })
    }

    /// Sends a request; returns the JSON body or the API's error message.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-Auth-Token", &self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach Lifeboat at {}: {}", self.base, root_cause(&e)))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            bail!("{} ({})", error_message(&body), status);
        }
        Ok(body)
    }

    /// GET.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// POST.
    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

fn error_message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string())
}

fn root_cause(e: &reqwest::Error) -> String {
    let mut s: &dyn std::error::Error = e;
    while let Some(src) = s.source() {
        s = src;
    }
    s.to_string()
}
