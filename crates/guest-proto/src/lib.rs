//! The guest agent protocol (`docs/guest-agent-protocol.md`): line-delimited
//! JSON over the virtio-serial port [`PORT_NAME`]. Both sides use this
//! crate: the guest agent (`lifeboat-guest-agent`) parses [`Request`]s and
//! encodes answers and the `ready` event; the host's client
//! (`lifeboat-hypervisor`'s QEMU driver) encodes requests and reads
//! [`Answer`]s. Only `serde_json`, so the static guest binary stays small.

use serde_json::{Map, Value};

/// The virtio-serial port name the guest agent opens.
pub const PORT_NAME: &str = "org.lifeboat.agent.0";
/// The protocol version the `ready` event announces.
pub const PROTOCOL_VERSION: u64 = 1;
/// Longest line either side accepts.
pub const MAX_LINE: usize = 1 << 20;

/// The commands the host sends.
pub mod cmd {
    /// Liveness: answers `{"pong": true}`.
    pub const PING: &str = "ping";
}

/// A JSON object from `(key, value)` pairs.
fn obj<K: Into<String>>(pairs: Vec<(K, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

/// A request line: `{"id": N, "cmd": "...", ...args}`.
#[derive(Debug, PartialEq)]
pub struct Request {
    /// Echoed verbatim in the answer; `null` when absent.
    pub id: Value,
    /// The command.
    pub cmd: String,
    /// The `args` object, plus any other top-level members (so both
    /// `{"cmd":"x","args":{"a":1}}` and `{"cmd":"x","a":1}` work).
    pub args: Value,
}

impl Request {
    /// A request of `cmd` with the members of `args` inline.
    pub fn new(id: u64, cmd: &str, args: Value) -> Request {
        Request {
            id: id.into(),
            cmd: cmd.into(),
            args,
        }
    }

    /// The request line (without the newline): the args inline.
    pub fn encode(&self) -> String {
        let mut m = Map::new();
        m.insert("id".into(), self.id.clone());
        m.insert("cmd".into(), self.cmd.clone().into());
        if let Some(a) = self.args.as_object() {
            for (k, v) in a {
                m.insert(k.clone(), v.clone());
            }
        }
        Value::Object(m).to_string()
    }

    /// Parses one request line. On error returns the id (if one could be
    /// read) and a message.
    pub fn parse(line: &str) -> Result<Request, (Value, String)> {
        let v = serde_json::from_str::<Value>(line)
            .map_err(|e| (Value::Null, format!("invalid JSON: {e}")))?;
        let Value::Object(mut members) = v else {
            return Err((Value::Null, "request must be a JSON object".into()));
        };
        let id = members.remove("id").unwrap_or(Value::Null);
        let cmd = members.remove("cmd");
        let mut args = match members.remove("args") {
            Some(Value::Object(a)) => a,
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err((id, "\"args\" must be an object".into())),
        };
        let extra: Vec<(String, Value)> = members.into_iter().collect();
        if matches!(id, Value::Array(_) | Value::Object(_)) {
            return Err((
                Value::Null,
                "\"id\" must be a number, string or null".into(),
            ));
        }
        let cmd = match cmd {
            Some(Value::String(c)) => c,
            _ => return Err((id, "missing string member \"cmd\"".into())),
        };
        // The args object wins over a top-level duplicate.
        for (k, v) in extra {
            args.entry(k).or_insert(v);
        }
        Ok(Request {
            id,
            cmd,
            args: Value::Object(args),
        })
    }
}

/// Encodes an answer line (without the newline):
/// `{"id", "ok": true, "result"}` or `{"id", "ok": false, "error"}`.
pub fn encode_answer(id: &Value, result: &Result<Value, String>) -> String {
    let v = match result {
        Ok(r) => obj(vec![
            ("id", id.clone()),
            ("ok", true.into()),
            ("result", r.clone()),
        ]),
        Err(e) => obj(vec![
            ("id", id.clone()),
            ("ok", false.into()),
            ("error", e.as_str().into()),
        ]),
    };
    v.to_string()
}

/// Encodes the `ready` event line the agent sends when a host connects.
pub fn encode_ready(boot_ms: u64, agent_version: &str) -> String {
    obj(vec![
        ("event", "ready".into()),
        ("boot_ms", boot_ms.into()),
        ("agent_version", agent_version.into()),
        ("protocol", PROTOCOL_VERSION.into()),
    ])
    .to_string()
}

/// An answer line, as the host reads it.
#[derive(Debug, PartialEq)]
pub struct Answer {
    /// The request's id.
    pub id: Value,
    /// The whole answer object (`result`, and older agents' `output`).
    pub body: Value,
    /// The error text when the command failed.
    pub error: Option<String>,
}

impl Answer {
    /// Parses a line; None for a line that is no answer (an event, noise).
    pub fn parse(line: &[u8]) -> Option<Answer> {
        let v = serde_json::from_slice::<Value>(line).ok()?;
        let id = v.get("id")?.clone();
        let error = match v.get("error").filter(|e| !e.is_null()) {
            Some(e) => Some(
                e.as_str()
                    .map(str::to_string)
                    .or_else(|| e.get("message").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_else(|| e.to_string()),
            ),
            None if v.get("ok").and_then(Value::as_bool) == Some(false) => {
                Some(format!("failed: {v}"))
            }
            None => None,
        };
        Some(Answer { id, body: v, error })
    }

    /// The textual output of an answer (`output`, or `result` as text).
    pub fn output(&self) -> String {
        output_of(&self.body)
    }
}

/// The textual output of an answer object (`output`, or `result` as text).
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What the host encodes, the guest parses, and what the guest answers,
    /// the host reads.
    #[test]
    fn both_sides_agree() {
        let line = Request::new(7, "run-maintenance", json!({"name": "fstrim"})).encode();
        let r = Request::parse(&line).unwrap();
        assert_eq!(r.id, json!(7));
        assert_eq!(r.cmd, "run-maintenance");
        assert_eq!(r.args, json!({"name": "fstrim"}));
        let ok = encode_answer(&r.id, &Ok(json!({"output": "trimmed"})));
        let a = Answer::parse(ok.as_bytes()).unwrap();
        assert_eq!((a.id.clone(), a.error.clone()), (json!(7), None));
        assert_eq!(a.output(), "trimmed");
        let err = encode_answer(&r.id, &Err("no such procedure".into()));
        let a = Answer::parse(err.as_bytes()).unwrap();
        assert_eq!(a.error.as_deref(), Some("no such procedure"));
        // Events and noise are no answers.
        assert!(Answer::parse(encode_ready(5, "0.1.0").as_bytes()).is_none());
        assert!(Answer::parse(b"garbage").is_none());
        // An error object's message is the text.
        let a = Answer::parse(br#"{"id":1,"error":{"message":"m"}}"#).unwrap();
        assert_eq!(a.error.as_deref(), Some("m"));
    }
}
