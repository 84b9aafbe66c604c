//! `lifeboat-guest-agent cloud-init`: applies what the cloud tells this instance, as cloud-init
//! does, from the config drive (an ISO labelled `config-2`, mounted by /init at
//! /run/lifeboat/config-drive) or else the metadata service at 169.254.169.254 (OpenStack
//! format): the hostname, the SSH keys (`key_name`) into /root/.ssh/authorized_keys, and the
//! user data into /var/lib/cloud/user_data; user data starting with `#!` is run once, in the
//! background, its output in /var/log/user-data.log and on the console. /init runs it after
//! DHCP, before the ready marker. A summary line goes to stdout (the serial console).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

const METADATA: &str = "169.254.169.254:80";
const CONFIG_DRIVE: &str = "/run/lifeboat/config-drive";

/// One HTTP/1.0 GET; (status, body).
fn http_get(addr: &str, path: &str, timeout: Duration) -> std::io::Result<(u16, Vec<u8>)> {
    let sa: SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let mut s = TcpStream::connect_timeout(&sa, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let host = addr.split(':').next().unwrap_or(addr);
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: lifeboat-guest-agent\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.take(4 << 20).read_to_end(&mut buf)?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of HTTP headers"))?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad HTTP status line"))?;
    Ok((status, buf[end + 4..].to_vec()))
}

/// Where the documents come from.
enum Source {
    Drive,
    Service,
}

impl Source {
    fn name(&self) -> &'static str {
        match self {
            Source::Drive => "config-drive",
            Source::Service => "metadata-service",
        }
    }

    /// A document of `openstack/latest/`; None when missing.
    fn get(&self, file: &str) -> Option<Vec<u8>> {
        match self {
            Source::Drive => {
                std::fs::read(Path::new(CONFIG_DRIVE).join("openstack/latest").join(file)).ok()
            }
            Source::Service => {
                match http_get(
                    METADATA,
                    &format!("/openstack/latest/{file}"),
                    Duration::from_secs(5),
                ) {
                    Ok((200, b)) => Some(b),
                    _ => None,
                }
            }
        }
    }
}

/// Finds a source: the config drive, or the metadata service (retried up to `wait`).
fn find_source(wait: Duration) -> Option<(Source, Value)> {
    if let Ok(b) = std::fs::read(Path::new(CONFIG_DRIVE).join("openstack/latest/meta_data.json")) {
        if let Ok(v) = serde_json::from_slice(&b) {
            return Some((Source::Drive, v));
        }
    }
    let end = Instant::now() + wait;
    loop {
        if let Ok((200, b)) = http_get(
            METADATA,
            "/openstack/latest/meta_data.json",
            Duration::from_secs(3),
        ) {
            if let Ok(v) = serde_json::from_slice(&b) {
                return Some((Source::Service, v));
            }
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 63
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

fn write_private(path: &Path, body: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// The keys of `meta_data.json` (`public_keys` map, else `keys[].data`).
fn keys_of(md: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = md["public_keys"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, d)| Some((k.clone(), d.as_str()?.trim().to_string())))
                .collect()
        })
        .unwrap_or_default();
    if v.is_empty() {
        if let Some(a) = md["keys"].as_array() {
            for k in a {
                if let (Some(n), Some(d)) = (k["name"].as_str(), k["data"].as_str()) {
                    v.push((n.to_string(), d.trim().to_string()));
                }
            }
        }
    }
    v
}

/// Entry point of `cloud-init`; `wait_secs` bounds the wait for the metadata service.
pub fn run(wait_secs: u64) -> ExitCode {
    let Some((src, md)) = find_source(Duration::from_secs(wait_secs)) else {
        println!("lifeboat-cloud: no config drive and no metadata service");
        return ExitCode::from(1);
    };
    let _ = std::fs::create_dir_all("/run/lifeboat");
    let _ = std::fs::write("/run/lifeboat/cloud-source", src.name());
    let mut summary = vec![format!("source={}", src.name())];
    if let Some(h) = md["hostname"].as_str() {
        // Nova's hostname may be an FQDN; the short name is the host name.
        let short = h.split('.').next().unwrap_or(h);
        if valid_hostname(short) {
            let _ = std::process::Command::new("hostname").arg(short).status();
            let _ = std::fs::write("/etc/hostname", format!("{short}\n"));
            let _ = std::fs::write(
                "/etc/hosts",
                format!("127.0.0.1 localhost\n127.0.1.1 {short}\n"),
            );
            summary.push(format!("hostname={short}"));
        }
    }
    let keys = keys_of(&md);
    if !keys.is_empty() {
        let _ = std::fs::create_dir_all("/root/.ssh");
        let _ = std::fs::set_permissions("/root/.ssh", {
            use std::os::unix::fs::PermissionsExt;
            std::fs::Permissions::from_mode(0o700)
        });
        let body: String = keys.iter().map(|(_, k)| format!("{k}\n")).collect();
        match write_private(
            Path::new("/root/.ssh/authorized_keys"),
            body.as_bytes(),
            0o600,
        ) {
            Ok(()) => summary.push(format!(
                "keys={}",
                keys.iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            Err(e) => summary.push(format!("keys-error={e}")),
        }
    }
    if let Some(ud) = src.get("user_data") {
        let _ = std::fs::create_dir_all("/var/lib/cloud");
        let path = Path::new("/var/lib/cloud/user_data");
        if write_private(path, &ud, 0o700).is_ok() {
            summary.push(format!("user_data={}B", ud.len()));
            if ud.starts_with(b"#!") {
                // Run once in the background; output to a log and the console.
                let sh = "/var/lib/cloud/user_data 2>&1 | tee /var/log/user-data.log >/dev/console";
                match std::process::Command::new("setsid")
                    .args(["sh", "-c", sh])
                    .stdin(std::process::Stdio::null())
                    .spawn()
                {
                    Ok(_) => summary.push("user_data_run=started".into()),
                    Err(e) => summary.push(format!("user_data_run_error={e}")),
                }
            }
        }
    }
    println!("lifeboat-cloud: {}", summary.join(" "));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_either_form() {
        let md = serde_json::json!({"public_keys": {"k1": "ssh-ed25519 AAAA a\n"}});
        assert_eq!(
            keys_of(&md),
            vec![("k1".into(), "ssh-ed25519 AAAA a".into())]
        );
        let md = serde_json::json!({"keys": [{"name": "k2", "type": "ssh", "data": "ssh-rsa B"}]});
        assert_eq!(keys_of(&md), vec![("k2".into(), "ssh-rsa B".into())]);
        assert!(valid_hostname("vm-1") && !valid_hostname("a b") && !valid_hostname(""));
    }

    #[test]
    fn http_get_reads_status_and_body() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 512];
            let n = s.read(&mut b).unwrap();
            let req = String::from_utf8_lossy(&b[..n]).into_owned();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
                .unwrap();
            req
        });
        let (st, body) =
            http_get(&addr, "/openstack/latest/user_data", Duration::from_secs(2)).unwrap();
        assert_eq!((st, body.as_slice()), (200, &b"hi"[..]));
        assert!(t
            .join()
            .unwrap()
            .starts_with("GET /openstack/latest/user_data HTTP/1.0\r\n"));
    }
}
