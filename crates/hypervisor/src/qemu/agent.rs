//! Client of the Lifeboat guest agent: line-delimited JSON over the
//! virtio-serial port `org.lifeboat.agent.0`, which qemu exposes on the host
//! as the Unix socket `ga.sock`.
//!
//! Protocol (`docs/guest-agent-protocol.md`): a request is
//! `{"id": N, "cmd": "...", ...args}`; the answer carries the same id and
//! either `"ok": true, "result": ..` or `"ok": false, "error": ".."`. Lines
//! that do not answer the request (the `ready` event sent on connect, stale
//! answers) are skipped.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::time::timeout;

use crate::{HvError, HvResult};

/// Sends one request and returns the answer object.
pub async fn request(sock: &Path, cmd: &str, args: Value, deadline: Duration) -> HvResult<Value> {
    let id: u64 = rand::random::<u32>() as u64;
    let mut msg = json!({"id": id, "cmd": cmd});
    if let (Some(m), Some(a)) = (msg.as_object_mut(), args.as_object()) {
        for (k, v) in a {
            m.insert(k.clone(), v.clone());
        }
    }
    let fut = async {
        let stream = UnixStream::connect(sock)
            .await
            .map_err(|e| HvError::Other(format!("guest agent {}: {e}", sock.display())))?;
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        w.write_all(format!("{msg}\n").as_bytes())
            .await
            .map_err(|e| HvError::Other(format!("guest agent write: {e}")))?;
        let mut line = String::new();
        loop {
            line.clear();
            let n = r
                .read_line(&mut line)
                .await
                .map_err(|e| HvError::Other(format!("guest agent read: {e}")))?;
            if n == 0 {
                return Err(HvError::Other("guest agent closed the connection".into()));
            }
            let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
                continue;
            };
            if v.get("id").and_then(Value::as_u64) != Some(id) {
                continue;
            }
            if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
                let text = e
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| e.get("message").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_else(|| e.to_string());
                return Err(HvError::Other(format!("guest agent {cmd}: {text}")));
            }
            if v.get("ok").and_then(Value::as_bool) == Some(false) {
                return Err(HvError::Other(format!("guest agent {cmd} failed: {v}")));
            }
            return Ok(v);
        }
    };
    timeout(deadline, fut)
        .await
        .map_err(|_| HvError::Timeout(format!("guest agent {cmd}")))?
}

/// The textual output of an answer (`output`, or `result` as text).
pub fn output_of(v: &Value) -> String {
    for key in ["output", "result"] {
        match v.get(key) {
            Some(Value::String(s)) => return s.clone(),
            Some(Value::Null) | None => {}
            Some(other) => {
                if let Some(s) = other.get("output").and_then(Value::as_str) {
                    return s.to_string();
                }
                return other.to_string();
            }
        }
    }
    String::new()
}
