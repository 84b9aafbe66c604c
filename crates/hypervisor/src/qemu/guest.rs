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

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::time::timeout;

use crate::{HvError, HvResult};

/// Longest reply line accepted from a guest (a guest must not be able to
/// make the host buffer without bound).
pub const MAX_LINE: u64 = lifeboat_guest_proto::MAX_LINE as u64;

pub use lifeboat_guest_proto::output_of;
use lifeboat_guest_proto::{Answer, Request};

/// Reads one line of at most `max` bytes (without the newline); None at EOF.
pub(crate) async fn read_line_capped<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: u64,
) -> HvResult<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let n = r
        .take(max + 1)
        .read_until(b'\n', &mut buf)
        .await
        .map_err(|e| HvError::Other(format!("guest agent read: {e}")))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() as u64 > max {
        return Err(HvError::Other(format!(
            "guest agent sent a line longer than {max} bytes"
        )));
    }
    Ok(Some(buf))
}

/// Sends one request and returns the answer object.
pub async fn request(sock: &Path, cmd: &str, args: Value, deadline: Duration) -> HvResult<Value> {
    let id: u64 = rand::random::<u32>() as u64;
    let msg = Request::new(id, cmd, args).encode();
    let fut = async {
        let stream = UnixStream::connect(sock)
            .await
            .map_err(|e| HvError::Other(format!("guest agent {}: {e}", sock.display())))?;
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        w.write_all(format!("{msg}\n").as_bytes())
            .await
            .map_err(|e| HvError::Other(format!("guest agent write: {e}")))?;
        loop {
            let Some(line) = read_line_capped(&mut r, MAX_LINE).await? else {
                return Err(HvError::Other("guest agent closed the connection".into()));
            };
            let Some(answer) = Answer::parse(&line) else {
                continue;
            };
            if answer.id.as_u64() != Some(id) {
                continue;
            }
            if let Some(text) = answer.error {
                return Err(HvError::Other(format!("guest agent {cmd}: {text}")));
            }
            return Ok(answer.body);
        }
    };
    timeout(deadline, fut)
        .await
        .map_err(|_| HvError::Timeout(format!("guest agent {cmd}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::net::UnixListener;

    /// A fake guest that answers with one endless line: the request fails
    /// once the cap is passed, long before the deadline, and host memory
    /// stays bounded.
    #[tokio::test]
    async fn an_endless_reply_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ga.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let guest = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let chunk = vec![b'x'; 64 << 10];
            let mut sent: u64 = 0;
            while s.write_all(&chunk).await.is_ok() {
                sent += chunk.len() as u64;
            }
            sent
        });
        let t = std::time::Instant::now();
        let err = request(&path, "ping", json!({}), Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("longer than"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        let sent = guest.await.unwrap();
        assert!(sent > MAX_LINE, "the guest sent {sent} bytes");
    }

    #[tokio::test]
    async fn capped_lines_split_and_end() {
        let mut r = BufReader::new(&b"{\"a\":1}\nsecond\nlast"[..]);
        assert_eq!(
            read_line_capped(&mut r, 16).await.unwrap().unwrap(),
            b"{\"a\":1}"
        );
        assert_eq!(
            read_line_capped(&mut r, 16).await.unwrap().unwrap(),
            b"second"
        );
        assert_eq!(
            read_line_capped(&mut r, 16).await.unwrap().unwrap(),
            b"last"
        );
        assert_eq!(read_line_capped(&mut r, 16).await.unwrap(), None);
        let mut long = BufReader::new(&b"0123456789abcdefXYZ\n"[..]);
        assert!(read_line_capped(&mut long, 16).await.is_err());
    }
}
