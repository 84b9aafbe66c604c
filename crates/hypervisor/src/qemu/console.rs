//! The serial console log: qemu appends to `serial.log` (O_APPEND), the
//! driver appends its own `[lifeboat]` lines, rotates the file to
//! `serial.log.1` when it grows past a bound, and reads the tail.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::process::files;

/// Printed by the guest when it has booted and its agent runs.
pub const READY_MARKER: &str = "LIFEBOAT-READY";
/// Prefix of the lines the driver writes before a (re)boot.
pub const BOOT_LINE: &str = "[lifeboat] boot:";

/// Appends a driver line; returns the log length after it.
pub fn append_line(dir: &Path, line: &str) -> u64 {
    let path = dir.join(files::SERIAL);
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    else {
        return 0;
    };
    let _ = f.write_all(format!("\n{line}\n").as_bytes());
    f.metadata().map(|m| m.len()).unwrap_or(0)
}

/// Writes a boot line (`[lifeboat] boot: why`); returns the offset after it.
pub fn mark_boot(dir: &Path, why: &str) -> u64 {
    append_line(dir, &format!("{BOOT_LINE} {why}"))
}

/// Moves the log to `serial.log.1` when it is larger than `max` bytes.
/// qemu keeps appending to the (now empty) `serial.log`.
pub fn rotate(dir: &Path, max: u64) {
    let path = dir.join(files::SERIAL);
    let Ok(meta) = std::fs::metadata(&path) else {
        return;
    };
    if meta.len() <= max {
        return;
    }
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    else {
        return;
    };
    let mut buf = Vec::with_capacity(meta.len() as usize);
    if f.read_to_end(&mut buf).is_err() {
        return;
    }
    // Keep the newest `max` bytes, from a line start.
    let mut start = buf.len().saturating_sub(max as usize);
    if let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
        start += nl + 1;
    }
    let old = dir.join(files::SERIAL_OLD);
    let tmp = dir.join("serial.log.1.tmp");
    if std::fs::write(&tmp, &buf[start..]).is_ok() && std::fs::rename(&tmp, &old).is_ok() {
        let _ = f.set_len(0);
    }
}

fn read_from(path: &Path, offset: u64) -> Vec<u8> {
    let mut out = vec![];
    if let Ok(mut f) = std::fs::File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let off = if offset > len { 0 } else { offset };
        if f.seek(SeekFrom::Start(off)).is_ok() {
            let _ = f.read_to_end(&mut out);
        }
    }
    out
}

/// Current length of `serial.log`.
#[cfg(test)]
pub fn len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(files::SERIAL))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// `serial.log` after `offset` (from the start if the log was rotated
/// meanwhile).
pub fn since(dir: &Path, offset: u64) -> Vec<u8> {
    read_from(&dir.join(files::SERIAL), offset)
}

/// Whether `needle` appears in `serial.log` after `offset`.
#[cfg(test)]
pub fn seen_since(dir: &Path, offset: u64, needle: &str) -> bool {
    contains(&since(dir, offset), needle)
}

/// Whether `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &str) -> bool {
    memfind(hay, needle.as_bytes()).is_some()
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn memrfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// The whole retained log (old part first).
fn all(dir: &Path) -> Vec<u8> {
    let mut data = read_from(&dir.join(files::SERIAL_OLD), 0);
    data.extend(read_from(&dir.join(files::SERIAL), 0));
    data
}

/// Whether the guest printed the ready marker after the last boot line.
pub fn ready_since_boot(dir: &Path) -> bool {
    let data = all(dir);
    match memrfind(&data, READY_MARKER.as_bytes()) {
        None => false,
        Some(r) => match memrfind(&data, BOOT_LINE.as_bytes()) {
            Some(b) => r > b,
            None => true,
        },
    }
}

/// The last `lines` lines (all if None), `\r` removed, newline-terminated.
pub fn tail(dir: &Path, lines: Option<usize>) -> String {
    let data = all(dir);
    let text = String::from_utf8_lossy(&data).replace('\r', "");
    let mut v: Vec<&str> = text.lines().collect();
    while v.first().is_some_and(|l| l.is_empty()) {
        v.remove(0);
    }
    let n = lines.unwrap_or(v.len()).min(v.len());
    let mut s = v[v.len() - n..].join("\n");
    if n > 0 {
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_marks_and_tails() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let off = mark_boot(dir, "power on");
        assert!(!ready_since_boot(dir));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(files::SERIAL))
            .unwrap();
        for i in 0..2000 {
            writeln!(f, "line {i}\r").unwrap();
        }
        writeln!(f, "{READY_MARKER}").unwrap();
        assert!(seen_since(dir, off, READY_MARKER));
        assert!(ready_since_boot(dir));
        rotate(dir, 4096);
        assert_eq!(len(dir), 0);
        assert!(
            std::fs::metadata(dir.join(files::SERIAL_OLD))
                .unwrap()
                .len()
                <= 4096
        );
        writeln!(f, "after rotation").unwrap();
        assert_eq!(
            tail(dir, Some(3)),
            format!("line 1999\n{READY_MARKER}\nafter rotation\n")
        );
        assert!(ready_since_boot(dir));
        mark_boot(dir, "reset");
        assert!(!ready_since_boot(dir));
    }
}
