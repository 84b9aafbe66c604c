//! Lifeboat guest agent.
//!
//! Runs inside the guest, opens the virtio-serial port `org.lifeboat.agent.0`
//! and speaks line-delimited JSON with the host (see
//! `docs/guest-agent-protocol.md`, the types in `lifeboat-guest-proto`, shared
//! with the host's client). Its only dependencies are `serde_json`
//! (the protocol) and `sha-crypt` (password hashes for `/etc/shadow`), so the
//! binary stays small and links statically.

mod cloud;
mod commands;
mod shadow;
mod sys;

/// A JSON object from `(key, value)` pairs.
pub(crate) fn obj<K: Into<String>>(pairs: Vec<(K, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use commands::{After, Ctx};
use serde_json::Value;

const DEFAULT_PORT_NAME: &str = lifeboat_guest_proto::PORT_NAME;
/// Longest accepted request line; longer lines are answered with an error.
const MAX_LINE: usize = lifeboat_guest_proto::MAX_LINE;
/// Requests handled at the same time; more are refused with "busy".
const MAX_IN_FLIGHT: usize = 16;
pub use lifeboat_guest_proto::{Request, PROTOCOL_VERSION};

/// Parses one request line ([`Request::parse`]).
pub fn parse_request(line: &str) -> Result<Request, (Value, String)> {
    Request::parse(line)
}

/// Encodes an answer line (without the newline).
pub fn encode_response(id: &Value, result: &Result<Value, String>) -> String {
    lifeboat_guest_proto::encode_answer(id, result)
}

/// Encodes the `ready` event line.
pub fn encode_ready(boot_ms: u64) -> String {
    lifeboat_guest_proto::encode_ready(boot_ms, env!("CARGO_PKG_VERSION"))
}

enum Out {
    Line(String),
    /// Answered once every earlier line has been written.
    Barrier(mpsc::Sender<()>),
}

/// Finds `/dev/<port>` whose `/sys/class/virtio-ports/<port>/name` is `name`.
fn find_port(name: &str) -> Option<PathBuf> {
    for e in fs::read_dir("/sys/class/virtio-ports").ok()?.flatten() {
        let n = fs::read_to_string(e.path().join("name")).unwrap_or_default();
        if n.trim() == name {
            return Some(PathBuf::from("/dev").join(e.file_name()));
        }
    }
    None
}

/// Waits for the port to appear and opens it read-write.
fn open_port(name: &str) -> File {
    let started = Instant::now();
    let mut warned = false;
    loop {
        if let Some(p) = find_port(name) {
            match OpenOptions::new().read(true).write(true).open(&p) {
                Ok(f) => {
                    eprintln!("lifeboat-guest-agent: using {}", p.display());
                    return f;
                }
                Err(e) if !warned => {
                    eprintln!(
                        "lifeboat-guest-agent: opening {}: {e}; retrying",
                        p.display()
                    );
                    warned = true;
                }
                Err(_) => {}
            }
        } else if !warned && started.elapsed() > Duration::from_secs(5) {
            eprintln!("lifeboat-guest-agent: no virtio-serial port named {name}; waiting");
            warned = true;
        }
        // Poll fast at first (boot), slowly later (hot-plug).
        let pause = if started.elapsed() < Duration::from_secs(10) {
            20
        } else {
            1000
        };
        thread::sleep(Duration::from_millis(pause));
    }
}

fn usage() -> &'static str {
    "usage: lifeboat-guest-agent [--port-name NAME | --port PATH | --stdio]\n\
     \n\
     Default: open the virtio-serial port named org.lifeboat.agent.0.\n\
     --stdio reads requests from stdin and answers on stdout (testing; shutdown\n\
     and reboot are refused), exiting at end of input.\n\
     \n\
     lifeboat-guest-agent cloud-init [--wait SECS]: apply hostname, SSH keys and\n\
     user data from the config drive or the metadata service, then exit."
}

fn main() -> ExitCode {
    let mut port_name = DEFAULT_PORT_NAME.to_string();
    let mut port_path: Option<PathBuf> = None;
    let mut stdio = false;
    let mut argv = std::env::args().skip(1);
    while let Some(a) = argv.next() {
        match a.as_str() {
            "cloud-init" => {
                let wait = match (argv.next().as_deref(), argv.next()) {
                    (Some("--wait"), Some(n)) => n.parse().unwrap_or(10),
                    _ => 10,
                };
                return cloud::run(wait);
            }
            "--stdio" => stdio = true,
            "--port" => port_path = argv.next().map(PathBuf::from),
            "--port-name" => port_name = argv.next().unwrap_or_default(),
            "--version" => {
                println!("lifeboat-guest-agent {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "-h" | "--help" => {
                println!("{}", usage());
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("{}", usage());
                return ExitCode::from(2);
            }
        }
    }

    let boot_ms = commands::uptime_s().map_or(0, |s| (s * 1000.0) as u64);
    let ctx = Arc::new(Ctx {
        boot_ms,
        started: Instant::now(),
        allow_power: !stdio,
        maintenance_dir: PathBuf::from("/etc/lifeboat/maintenance.d"),
        shadow_path: PathBuf::from("/etc/shadow"),
    });

    let (reader, writer): (Box<dyn Read + Send>, Box<dyn Write + Send>) = if stdio {
        (Box::new(io::stdin()), Box::new(io::stdout()))
    } else {
        let f = match &port_path {
            Some(p) => match OpenOptions::new().read(true).write(true).open(p) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("lifeboat-guest-agent: {}: {e}", p.display());
                    return ExitCode::FAILURE;
                }
            },
            None => open_port(&port_name),
        };
        let w = match f.try_clone() {
            Ok(w) => w,
            Err(e) => {
                eprintln!("lifeboat-guest-agent: dup: {e}");
                return ExitCode::FAILURE;
            }
        };
        (Box::new(f), Box::new(w))
    };

    let (tx, rx) = mpsc::channel::<Out>();
    thread::spawn(move || write_loop(writer, rx, stdio));
    // On a virtio port this write blocks in the kernel until the host side is
    // connected, so the host always sees it first.
    let _ = tx.send(Out::Line(encode_ready(boot_ms)));
    eprintln!(
        "lifeboat-guest-agent {}: started {boot_ms} ms after boot",
        env!("CARGO_PKG_VERSION")
    );

    let in_flight = Arc::new(AtomicUsize::new(0));
    read_loop(reader, stdio, &tx, &ctx, &in_flight);

    // End of input (stdio mode): finish running requests, flush, exit.
    while in_flight.load(Ordering::SeqCst) > 0 {
        thread::sleep(Duration::from_millis(10));
    }
    let (btx, brx) = mpsc::channel();
    let _ = tx.send(Out::Barrier(btx));
    let _ = brx.recv_timeout(Duration::from_secs(5));
    ExitCode::SUCCESS
}

fn write_loop(mut w: Box<dyn Write + Send>, rx: mpsc::Receiver<Out>, stdio: bool) {
    for out in rx {
        match out {
            Out::Line(mut line) => {
                line.push('\n');
                if let Err(e) = w.write_all(line.as_bytes()).and_then(|()| w.flush()) {
                    eprintln!("lifeboat-guest-agent: write: {e}");
                    if stdio {
                        std::process::exit(1);
                    }
                    thread::sleep(Duration::from_millis(200));
                }
            }
            Out::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Reads request lines until end of input (stdio) or forever (virtio port,
/// where reads return 0 while the host side is not connected).
fn read_loop(
    mut r: Box<dyn Read + Send>,
    stdio: bool,
    tx: &mpsc::Sender<Out>,
    ctx: &Arc<Ctx>,
    in_flight: &Arc<AtomicUsize>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let mut overlong = false;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) if stdio => return,
            Ok(0) => {
                // Host not connected: drop any partial line and wait.
                line.clear();
                overlong = false;
                thread::sleep(Duration::from_millis(50));
                continue;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("lifeboat-guest-agent: read: {e}");
                if stdio {
                    return;
                }
                // The port went away (hot-unplug): exit and let init respawn us.
                std::process::exit(1);
            }
        };
        let mut chunk = &buf[..n];
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n') {
            if !overlong {
                line.extend_from_slice(&chunk[..pos]);
                handle_line(&line, tx, ctx, in_flight);
            } else {
                let msg = format!("request line longer than {MAX_LINE} bytes");
                let _ = tx.send(Out::Line(encode_response(&Value::Null, &Err(msg))));
            }
            line.clear();
            overlong = false;
            chunk = &chunk[pos + 1..];
        }
        if !overlong {
            line.extend_from_slice(chunk);
            if line.len() > MAX_LINE {
                line.clear();
                overlong = true;
            }
        }
    }
}

fn handle_line(raw: &[u8], tx: &mpsc::Sender<Out>, ctx: &Arc<Ctx>, in_flight: &Arc<AtomicUsize>) {
    let Ok(text) = std::str::from_utf8(raw) else {
        let err = Err("request is not valid UTF-8".to_string());
        let _ = tx.send(Out::Line(encode_response(&Value::Null, &err)));
        return;
    };
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    let req = match parse_request(text) {
        Ok(r) => r,
        Err((id, e)) => {
            let _ = tx.send(Out::Line(encode_response(&id, &Err(e))));
            return;
        }
    };
    if req.cmd == "hello" {
        let _ = tx.send(Out::Line(encode_ready(ctx.boot_ms)));
        if req.id != Value::Null {
            let r = Ok(obj(vec![("boot_ms", ctx.boot_ms.into())]));
            let _ = tx.send(Out::Line(encode_response(&req.id, &r)));
        }
        return;
    }
    if in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
        in_flight.fetch_sub(1, Ordering::SeqCst);
        let err = Err(format!("busy: {MAX_IN_FLIGHT} requests already running"));
        let _ = tx.send(Out::Line(encode_response(&req.id, &err)));
        return;
    }
    let (tx, ctx, in_flight) = (tx.clone(), Arc::clone(ctx), Arc::clone(in_flight));
    thread::spawn(move || {
        let outcome = commands::handle(&req.cmd, &req.args, &ctx);
        let after = outcome.as_ref().map_or(After::Nothing, |(_, a)| *a);
        if let Err(e) = &outcome {
            // Errors never contain secrets (passwords are not echoed).
            eprintln!("lifeboat-guest-agent: {} failed: {e}", req.cmd);
        }
        let result = outcome.map(|(v, _)| v);
        let _ = tx.send(Out::Line(encode_response(&req.id, &result)));
        in_flight.fetch_sub(1, Ordering::SeqCst);
        if after != After::Nothing {
            // Make sure the answer is on its way before the machine stops.
            let (btx, brx) = mpsc::channel();
            let _ = tx.send(Out::Barrier(btx));
            let _ = brx.recv_timeout(Duration::from_secs(3));
            thread::sleep(Duration::from_millis(100));
            eprintln!("lifeboat-guest-agent: {}", req.cmd);
            commands::perform(after);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_with_args_object() {
        let r = parse_request(
            r#"{"id":12,"cmd":"set-password","args":{"user":"root","password":"x"}}"#,
        )
        .unwrap();
        assert_eq!(r.id, Value::from(12u64));
        assert_eq!(r.cmd, "set-password");
        assert_eq!(r.args.get("user").and_then(Value::as_str), Some("root"));
    }

    #[test]
    fn request_with_top_level_args_and_no_id() {
        let r = parse_request(r#"{"cmd":"run-maintenance","name":"fstrim"}"#).unwrap();
        assert_eq!(r.id, Value::Null);
        assert_eq!(r.args.get("name").and_then(Value::as_str), Some("fstrim"));
        // The args object wins over a top-level duplicate.
        let r = parse_request(r#"{"cmd":"x","name":"b","args":{"name":"a"}}"#).unwrap();
        assert_eq!(r.args.get("name").and_then(Value::as_str), Some("a"));
        // String ids are echoed as given.
        let r = parse_request(r#"{"id":"abc","cmd":"ping","args":null}"#).unwrap();
        assert_eq!(r.id, Value::String("abc".into()));
    }

    #[test]
    fn bad_requests_keep_the_id_when_possible() {
        assert_eq!(parse_request("nope").unwrap_err().0, Value::Null);
        assert_eq!(parse_request("[1]").unwrap_err().0, Value::Null);
        let (id, e) = parse_request(r#"{"id":5}"#).unwrap_err();
        assert_eq!(id, Value::from(5u64));
        assert!(e.contains("cmd"));
        let (id, _) = parse_request(r#"{"id":6,"cmd":7}"#).unwrap_err();
        assert_eq!(id, Value::from(6u64));
        let (id, _) = parse_request(r#"{"id":7,"cmd":"x","args":[1]}"#).unwrap_err();
        assert_eq!(id, Value::from(7u64));
        assert!(parse_request(r#"{"id":[1],"cmd":"x"}"#).is_err());
    }

    #[test]
    fn responses_and_events_are_single_json_lines() {
        let id = Value::from(9u64);
        let ok = encode_response(&id, &Ok(obj(vec![("pong", true.into())])));
        assert_eq!(ok, r#"{"id":9,"ok":true,"result":{"pong":true}}"#);
        let err = encode_response(&id, &Err("bad \"thing\"\nhere".into()));
        assert_eq!(
            serde_json::from_str::<Value>(&err).unwrap(),
            serde_json::json!({"id": 9, "ok": false, "error": "bad \"thing\"\nhere"})
        );
        assert!(!err.contains('\n'));
        let ready = encode_ready(1234);
        let v = serde_json::from_str::<Value>(&ready).unwrap();
        assert_eq!(v.get("event").and_then(Value::as_str), Some("ready"));
        assert_eq!(v.get("boot_ms").and_then(Value::as_u64), Some(1234));
        assert_eq!(
            v.get("protocol").and_then(Value::as_u64),
            Some(PROTOCOL_VERSION)
        );
    }
}
