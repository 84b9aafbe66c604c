//! A small asynchronous QMP client over a Unix socket.
//!
//! Protocol: the server sends a greeting, the client negotiates with
//! `qmp_capabilities`, then sends `{"execute": .., "arguments": .., "id": ..}`
//! and reads lines until the `return`/`error` with the same id. Events that
//! arrive meanwhile are queued and can be waited for.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::time::{timeout, Instant};

/// A QMP failure.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// Socket I/O failed or the peer closed the connection.
    #[error("qmp i/o: {0}")]
    Io(String),
    /// The command returned an error object.
    #[error("qmp {command}: {class}: {desc}")]
    Command {
        /// Command executed.
        command: String,
        /// Error class (`GenericError`, `CommandNotFound`, ...).
        class: String,
        /// Human-readable description.
        desc: String,
    },
    /// No answer within the deadline.
    #[error("qmp timeout: {0}")]
    Timeout(String),
}

/// One connected, negotiated QMP session.
pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
    events: VecDeque<Value>,
    /// The server's greeting (`{"QMP": {"version": ..}}`).
    pub greeting: Value,
    /// Default deadline of one command.
    pub command_timeout: Duration,
}

impl Qmp {
    /// Connects to `path`, reads the greeting and negotiates capabilities.
    pub async fn connect(path: &Path, deadline: Duration) -> Result<Qmp, QmpError> {
        let fut = async {
            let stream = UnixStream::connect(path)
                .await
                .map_err(|e| QmpError::Io(format!("{}: {e}", path.display())))?;
            let (r, w) = stream.into_split();
            let mut q = Qmp {
                reader: BufReader::new(r),
                writer: w,
                next_id: 1,
                events: VecDeque::new(),
                greeting: Value::Null,
                command_timeout: Duration::from_secs(30),
            };
            q.greeting = q.read_msg().await?;
            if q.greeting.get("QMP").is_none() {
                return Err(QmpError::Io(format!("unexpected greeting {}", q.greeting)));
            }
            q.execute("qmp_capabilities", None).await?;
            Ok(q)
        };
        timeout(deadline, fut)
            .await
            .map_err(|_| QmpError::Timeout(format!("connect {}", path.display())))?
    }

    async fn read_msg(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .reader
                .read_line(&mut line)
                .await
                .map_err(|e| QmpError::Io(e.to_string()))?;
            if n == 0 {
                return Err(QmpError::Io("connection closed".into()));
            }
            if line.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(line.trim())
                .map_err(|e| QmpError::Io(format!("bad json {line:?}: {e}")));
        }
    }

    /// Runs `command` with optional `arguments`; returns its `return` value.
    pub async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        let d = self.command_timeout;
        self.execute_within(command, arguments, d).await
    }

    /// [`Qmp::execute`] with an explicit deadline.
    pub async fn execute_within(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        deadline: Duration,
    ) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"execute": command, "id": id});
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut text = msg.to_string();
        text.push('\n');
        let fut = async {
            self.writer
                .write_all(text.as_bytes())
                .await
                .map_err(|e| QmpError::Io(e.to_string()))?;
            loop {
                let m = self.read_msg().await?;
                if m.get("event").is_some() {
                    self.events.push_back(m);
                    continue;
                }
                if m.get("id").and_then(Value::as_u64) != Some(id) {
                    continue;
                }
                if let Some(r) = m.get("return") {
                    return Ok(r.clone());
                }
                let e = m.get("error").cloned().unwrap_or_default();
                return Err(QmpError::Command {
                    command: command.to_string(),
                    class: e["class"].as_str().unwrap_or("Unknown").to_string(),
                    desc: e["desc"].as_str().unwrap_or("").to_string(),
                });
            }
        };
        timeout(deadline, fut)
            .await
            .map_err(|_| QmpError::Timeout(command.to_string()))?
    }

    /// `getfd fdname`: hands `fd` to qemu (SCM_RIGHTS on the QMP socket) under `fdname`, for
    /// a later `netdev_add ... fd=<fdname>`.
    pub async fn send_fd(
        &mut self,
        fdname: &str,
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> Result<(), QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let text = format!(
            "{}\n",
            json!({"execute": "getfd", "arguments": {"fdname": fdname}, "id": id})
        );
        let deadline = self.command_timeout;
        let sock: &UnixStream = self.writer.as_ref();
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let send = async {
            loop {
                sock.writable()
                    .await
                    .map_err(|e| QmpError::Io(e.to_string()))?;
                match sock.try_io(tokio::io::Interest::WRITABLE, || {
                    send_with_fd(sock, text.as_bytes(), raw)
                }) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(QmpError::Io(format!("getfd: {e}"))),
                }
            }
        };
        timeout(deadline, send)
            .await
            .map_err(|_| QmpError::Timeout("getfd".into()))??;
        let fut = async {
            loop {
                let m = self.read_msg().await?;
                if m.get("event").is_some() {
                    self.events.push_back(m);
                    continue;
                }
                if m.get("id").and_then(Value::as_u64) != Some(id) {
                    continue;
                }
                if m.get("return").is_some() {
                    return Ok(());
                }
                let e = m.get("error").cloned().unwrap_or_default();
                return Err(QmpError::Command {
                    command: "getfd".into(),
                    class: e["class"].as_str().unwrap_or("Unknown").to_string(),
                    desc: e["desc"].as_str().unwrap_or("").to_string(),
                });
            }
        };
        timeout(deadline, fut)
            .await
            .map_err(|_| QmpError::Timeout("getfd".into()))?
    }

    /// Removes and returns every queued event.
    pub fn take_events(&mut self) -> Vec<Value> {
        self.events.drain(..).collect()
    }

    /// Waits for the next event (queued first), up to `deadline`.
    pub async fn next_event(&mut self, deadline: Duration) -> Result<Value, QmpError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(e);
        }
        match timeout(deadline, self.read_msg()).await {
            Ok(r) => r,
            Err(_) => Err(QmpError::Timeout("event".into())),
        }
    }

    /// Waits for an event named `name` for which `pred` holds; other events
    /// are kept in the queue in order.
    pub async fn wait_event(
        &mut self,
        name: &str,
        deadline: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, QmpError> {
        if let Some(pos) = self
            .events
            .iter()
            .position(|e| e["event"] == name && pred(e))
        {
            return Ok(self.events.remove(pos).expect("present"));
        }
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let m = match timeout(left, self.read_msg()).await {
                Ok(r) => r?,
                Err(_) => return Err(QmpError::Timeout(format!("event {name}"))),
            };
            if m["event"] == name && pred(&m) {
                return Ok(m);
            }
            if m.get("event").is_some() {
                self.events.push_back(m);
            }
        }
    }

    /// `query-status` → the run state string (`running`, `paused`, ...).
    pub async fn run_state(&mut self) -> Result<String, QmpError> {
        let r = self.execute("query-status", None).await?;
        Ok(r["status"].as_str().unwrap_or("unknown").to_string())
    }
}

/// One `sendmsg(2)` of all of `data` with `fd` as SCM_RIGHTS (QMP commands are small: a short
/// write is reported as an error rather than split, since the fd rides on the first byte).
fn send_with_fd(sock: &UnixStream, data: &[u8], fd: i32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at `space` bytes, enough for one cmsg carrying one int.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut i32, fd);
    }
    // SAFETY: a valid socket fd and a msghdr whose buffers are alive.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if n as usize != data.len() {
        return Err(std::io::Error::other(format!(
            "short write ({n} of {} bytes)",
            data.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    #[tokio::test]
    async fn negotiates_executes_and_queues_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut r = BufReader::new(r);
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .await
                .unwrap();
            let mut line = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await.unwrap() == 0 {
                    break;
                }
                let m: Value = serde_json::from_str(&line).unwrap();
                let id = m["id"].clone();
                let reply = match m["execute"].as_str().unwrap() {
                    "qmp_capabilities" => json!({"return": {}, "id": id}),
                    "query-status" => {
                        w.write_all(b"{\"event\": \"RESUME\", \"timestamp\": {}}\n")
                            .await
                            .unwrap();
                        json!({"return": {"status": "running", "running": true}, "id": id})
                    }
                    _ => json!({"error": {"class": "CommandNotFound", "desc": "nope"}, "id": id}),
                };
                w.write_all(format!("{reply}\n").as_bytes()).await.unwrap();
            }
        });
        let mut q = Qmp::connect(&path, Duration::from_secs(5)).await.unwrap();
        assert_eq!(q.run_state().await.unwrap(), "running");
        let err = q.execute("bogus", None).await.unwrap_err();
        assert!(matches!(err, QmpError::Command { ref class, .. } if class == "CommandNotFound"));
        let ev = q
            .wait_event("RESUME", Duration::from_secs(1), |_| true)
            .await
            .unwrap();
        assert_eq!(ev["event"], "RESUME");
        drop(q);
        server.await.unwrap();
    }
}
