//! Serial console proxy: a websocket (`/console/serial?token=...`, the URL
//! `remote-consoles` hands out) bridged to the VM's console stream
//! (`Hypervisor::open_console`: the local socket, or carried through the host
//! agent of the VM's host).

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use lifeboat_engine::{ConsoleTarget, Engine};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::ApiError;

/// Query of the console URL.
#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: String,
}

/// Upgrades to a websocket when the token is valid.
pub async fn serial_console(
    State(e): State<Engine>,
    Query(q): Query<TokenQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let (_server, target) = e.console_target(&q.token).await.ok_or(ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthorized",
        message: "invalid or expired console token".into(),
    })?;
    Ok(ws
        .protocols(["binary", "base64"])
        .on_upgrade(move |ws| bridge(ws, target)))
}

/// Bridges the websocket to the console stream (a local socket, or the
/// stream a remote host's agent carries).
async fn bridge(ws: WebSocket, target: ConsoleTarget) {
    let stream = match target.open().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("console unreachable: {e}");
            return;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (mut tx, mut rx) = ws.split();
    let to_ws = async {
        let mut buf = [0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Message::Binary(buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let to_vm = async {
        while let Some(Ok(msg)) = rx.next().await {
            let bytes = match msg {
                Message::Binary(b) => b,
                Message::Text(t) => t.into_bytes(),
                Message::Close(_) => break,
                _ => continue,
            };
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = to_ws => {}
        _ = to_vm => {}
    }
}
