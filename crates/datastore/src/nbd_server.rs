//! A small read-only NBD server over one disk of a snapshot: what instant restore boots from.
//!
//! QEMU opens the export as the backing node of a new local qcow2 (see the QEMU driver's
//! instant restore) and reads it on demand while a block job copies the rest; every chunk is
//! fetched from the store, decrypted, decompressed and verified when first read (a small
//! cache of decoded chunks serves the neighbouring reads), zero chunks cost nothing.
//!
//! Protocol: fixed newstyle handshake, `NBD_OPT_EXPORT_NAME`, `NBD_OPT_INFO`/`NBD_OPT_GO`
//! (export and block-size info), `NBD_OPT_LIST`, `NBD_OPT_ABORT`; simple replies only
//! (structured replies, metadata contexts and every other option are answered
//! `NBD_REP_ERR_UNSUP`); commands `READ`, `FLUSH` (a no-op), `DISC`; writes, trims and
//! write-zeroes get `EPERM` (the export is read-only). A chunk that fails its check gets
//! `EIO` — never wrong data. Each connection is served by its own thread, one request at a
//! time (replies in order, which the protocol allows).

use std::collections::VecDeque;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::chunk_store::ZERO_ID;
use crate::fixed_index::FixedIndex;
use crate::{DataStore, Error};

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQ_MAGIC: u32 = 0x2560_9513;
const SIMPLE_MAGIC: u32 = 0x6744_6698;

const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;

const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;

const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = (1 << 31) | 1;
const REP_ERR_INVALID: u32 = (1 << 31) | 3;
const REP_ERR_UNKNOWN: u32 = (1 << 31) | 6;

const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;

const TFLAG_HAS_FLAGS: u16 = 1;
const TFLAG_READ_ONLY: u16 = 1 << 1;
const TFLAG_SEND_FLUSH: u16 = 1 << 2;
const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;
const TFLAGS: u16 = TFLAG_HAS_FLAGS | TFLAG_READ_ONLY | TFLAG_SEND_FLUSH | TFLAG_CAN_MULTI_CONN;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_TRIM: u16 = 4;
const CMD_WRITE_ZEROES: u16 = 6;

const EPERM: u32 = 1;
const EIO: u32 = 5;
const EINVAL: u32 = 22;

/// Largest read served in one request (QEMU never asks for more than 32 MiB).
pub const MAX_READ: u32 = 32 << 20;
/// Decoded chunks kept per export (of the store's chunk size, 1 MiB by default).
pub const CACHE_CHUNKS: usize = 64;

/// Counters of an export, for progress and measurements.
#[derive(Debug, Default)]
pub struct ServeStats {
    /// Read requests answered.
    pub reads: AtomicU64,
    /// Bytes returned by reads.
    pub bytes: AtomicU64,
    /// Chunks fetched from the store (cache misses of non-zero chunks).
    pub chunks_fetched: AtomicU64,
    /// Reads that failed (damaged or missing chunks).
    pub errors: AtomicU64,
    /// Microseconds from the server's start to the first answered read (0: none yet).
    pub first_read_us: AtomicU64,
    /// The last failed read's error.
    pub last_error: Mutex<Option<String>>,
}

/// One disk of a snapshot as an on-demand byte source with a chunk cache.
pub struct ExportSource {
    ds: DataStore,
    idx: FixedIndex,
    cache: Mutex<VecDeque<(usize, Arc<Vec<u8>>)>>,
    desc: String,
}

impl ExportSource {
    /// Disk `disk` of snapshot `id` (manifest and index checked).
    pub fn open(ds: DataStore, id: &str, disk: &str) -> Result<Self, Error> {
        let m = ds.manifest(id)?;
        let idx = ds.index(&m, disk)?;
        Ok(Self {
            ds,
            idx,
            cache: Mutex::new(VecDeque::new()),
            desc: format!("{id}/{disk}"),
        })
    }

    /// Disk size.
    pub fn size(&self) -> u64 {
        self.idx.size
    }

    fn chunk(&self, i: usize, stats: &ServeStats) -> Result<Arc<Vec<u8>>, Error> {
        {
            let mut c = self.cache.lock().expect("cache lock");
            if let Some(pos) = c.iter().position(|(k, _)| *k == i) {
                let e = c.remove(pos).expect("present");
                let data = e.1.clone();
                c.push_front(e);
                return Ok(data);
            }
        }
        let data = Arc::new(self.ds.chunks.load(&self.idx.ids[i])?);
        let (_, len) = self.idx.range(i);
        if data.len() != len {
            return Err(Error::Corrupt(format!(
                "chunk {i} of {} has {} bytes, expected {len}",
                self.desc,
                data.len()
            )));
        }
        stats.chunks_fetched.fetch_add(1, Ordering::Relaxed);
        let mut c = self.cache.lock().expect("cache lock");
        if !c.iter().any(|(k, _)| *k == i) {
            c.push_front((i, data.clone()));
            c.truncate(CACHE_CHUNKS);
        }
        Ok(data)
    }

    /// Read `buf.len()` bytes at `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64, stats: &ServeStats) -> Result<(), Error> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.idx.size)
        {
            return Err(Error::Invalid(format!(
                "read past the end of {} ({} bytes)",
                self.desc, self.idx.size
            )));
        }
        let mut pos = 0usize;
        while pos < buf.len() {
            let abs = offset + pos as u64;
            let i = (abs / self.idx.chunk_size) as usize;
            let (coff, clen) = self.idx.range(i);
            let within = (abs - coff) as usize;
            let n = (clen - within).min(buf.len() - pos);
            if self.idx.ids[i] == ZERO_ID {
                buf[pos..pos + n].fill(0);
            } else {
                let data = self.chunk(i, stats)?;
                buf[pos..pos + n].copy_from_slice(&data[within..within + n]);
            }
            pos += n;
        }
        Ok(())
    }
}

/// A running NBD server on a Unix socket, exporting one disk under one name.
pub struct NbdServer {
    socket: PathBuf,
    export: String,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<UnixStream>>>,
    accept: Option<JoinHandle<()>>,
    stats: Arc<ServeStats>,
    size: u64,
}

impl std::fmt::Debug for NbdServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdServer")
            .field("socket", &self.socket)
            .field("export", &self.export)
            .finish()
    }
}

impl NbdServer {
    /// Serve disk `disk` of snapshot `id` of `ds` as export `export` on the Unix socket `socket`
    /// (a stale socket file there is replaced).
    pub fn start(
        ds: DataStore,
        id: &str,
        disk: &str,
        socket: &Path,
        export: &str,
    ) -> Result<Self, Error> {
        let src = Arc::new(ExportSource::open(ds, id, disk)?);
        Self::start_source(src, socket, export)
    }

    /// Serve `src` as export `export` on the Unix socket `socket`.
    pub fn start_source(
        src: Arc<ExportSource>,
        socket: &Path,
        export: &str,
    ) -> Result<Self, Error> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)
            .map_err(|e| Error::io(format!("listen on {}", socket.display()), e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let stats = Arc::new(ServeStats::default());
        let size = src.size();
        let started = Instant::now();
        let accept = {
            let (stop, conns, stats, export) = (
                stop.clone(),
                conns.clone(),
                stats.clone(),
                export.to_string(),
            );
            std::thread::Builder::new()
                .name("nbd-accept".into())
                .spawn(move || {
                    for s in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(s) = s else { continue };
                        if let Ok(c) = s.try_clone() {
                            let mut v = conns.lock().expect("conns lock");
                            v.retain(|c| c.peer_addr().is_ok());
                            v.push(c);
                        }
                        let (src, stats, export) = (src.clone(), stats.clone(), export.clone());
                        let _ =
                            std::thread::Builder::new()
                                .name("nbd-conn".into())
                                .spawn(move || {
                                    let _ = serve_conn(s, &src, &export, &stats, started);
                                });
                    }
                })
                .map_err(|e| Error::io("start NBD server thread".into(), e))?
        };
        Ok(Self {
            socket: socket.to_path_buf(),
            export: export.to_string(),
            stop,
            conns,
            accept: Some(accept),
            stats,
            size,
        })
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The export name.
    pub fn export(&self) -> &str {
        &self.export
    }

    /// Export size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The counters.
    pub fn stats(&self) -> &ServeStats {
        &self.stats
    }

    /// Stop accepting, close every connection and remove the socket.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = UnixStream::connect(&self.socket);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        for c in self.conns.lock().expect("conns lock").drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.shutdown();
        }
    }
}

fn rd_u16(r: &mut impl Read) -> io::Result<u16> {
    let mut b = [0u8; 2];
    r.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}
fn rd_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}
fn rd_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn opt_reply(w: &mut impl Write, opt: u32, ty: u32, data: &[u8]) -> io::Result<()> {
    let mut b = Vec::with_capacity(20 + data.len());
    b.extend_from_slice(&REPLY_MAGIC.to_be_bytes());
    b.extend_from_slice(&opt.to_be_bytes());
    b.extend_from_slice(&ty.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    w.write_all(&b)
}

fn bad(m: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.to_string())
}

/// Handshake, then transmission, on one connection.
fn serve_conn(
    s: UnixStream,
    src: &ExportSource,
    export: &str,
    stats: &ServeStats,
    started: Instant,
) -> io::Result<()> {
    let mut r = BufReader::with_capacity(1 << 16, s.try_clone()?);
    let mut w = BufWriter::with_capacity(1 << 16, s);
    w.write_all(&NBDMAGIC.to_be_bytes())?;
    w.write_all(&IHAVEOPT.to_be_bytes())?;
    w.write_all(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes())?;
    w.flush()?;
    let cflags = rd_u32(&mut r)?;
    let no_zeroes = cflags & FLAG_NO_ZEROES as u32 != 0;
    if cflags & FLAG_FIXED_NEWSTYLE as u32 == 0 {
        return Err(bad("client does not speak fixed newstyle"));
    }
    let size = src.size();
    // Options.
    loop {
        if rd_u64(&mut r)? != IHAVEOPT {
            return Err(bad("bad option magic"));
        }
        let opt = rd_u32(&mut r)?;
        let len = rd_u32(&mut r)? as usize;
        if len > 64 << 10 {
            return Err(bad("option too long"));
        }
        let mut data = vec![0u8; len];
        r.read_exact(&mut data)?;
        match opt {
            OPT_EXPORT_NAME => {
                if data != export.as_bytes() {
                    // The protocol's only answer to an unknown name here is to hang up.
                    return Err(bad("unknown export"));
                }
                w.write_all(&size.to_be_bytes())?;
                w.write_all(&TFLAGS.to_be_bytes())?;
                if !no_zeroes {
                    w.write_all(&[0u8; 124])?;
                }
                w.flush()?;
                break;
            }
            OPT_ABORT => {
                opt_reply(&mut w, opt, REP_ACK, &[])?;
                w.flush()?;
                return Ok(());
            }
            OPT_LIST => {
                let mut d = (export.len() as u32).to_be_bytes().to_vec();
                d.extend_from_slice(export.as_bytes());
                opt_reply(&mut w, opt, REP_SERVER, &d)?;
                opt_reply(&mut w, opt, REP_ACK, &[])?;
            }
            OPT_INFO | OPT_GO => {
                let name = (data.len() >= 4)
                    .then(|| u32::from_be_bytes(data[..4].try_into().expect("4 bytes")) as usize)
                    .and_then(|n| data.get(4..4 + n));
                let Some(name) = name else {
                    opt_reply(&mut w, opt, REP_ERR_INVALID, b"malformed request")?;
                    w.flush()?;
                    continue;
                };
                if name != export.as_bytes() {
                    opt_reply(&mut w, opt, REP_ERR_UNKNOWN, b"no such export")?;
                    w.flush()?;
                    continue;
                }
                let mut info = INFO_EXPORT.to_be_bytes().to_vec();
                info.extend_from_slice(&size.to_be_bytes());
                info.extend_from_slice(&TFLAGS.to_be_bytes());
                opt_reply(&mut w, opt, REP_INFO, &info)?;
                let mut bs = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                bs.extend_from_slice(&1u32.to_be_bytes());
                bs.extend_from_slice(&4096u32.to_be_bytes());
                bs.extend_from_slice(&MAX_READ.to_be_bytes());
                opt_reply(&mut w, opt, REP_INFO, &bs)?;
                opt_reply(&mut w, opt, REP_ACK, &[])?;
                w.flush()?;
                if opt == OPT_GO {
                    break;
                }
            }
            _ => {
                opt_reply(&mut w, opt, REP_ERR_UNSUP, &[])?;
                w.flush()?;
            }
        }
    }
    // Transmission.
    let mut buf = Vec::new();
    loop {
        if rd_u32(&mut r)? != REQ_MAGIC {
            return Err(bad("bad request magic"));
        }
        let _flags = rd_u16(&mut r)?;
        let ty = rd_u16(&mut r)?;
        let handle = rd_u64(&mut r)?;
        let offset = rd_u64(&mut r)?;
        let len = rd_u32(&mut r)?;
        let reply = |w: &mut BufWriter<UnixStream>, err: u32| -> io::Result<()> {
            w.write_all(&SIMPLE_MAGIC.to_be_bytes())?;
            w.write_all(&err.to_be_bytes())?;
            w.write_all(&handle.to_be_bytes())
        };
        match ty {
            CMD_READ => {
                if len > MAX_READ || offset.checked_add(len as u64).is_none_or(|e| e > size) {
                    reply(&mut w, EINVAL)?;
                } else {
                    buf.resize(len as usize, 0);
                    match src.read_at(&mut buf, offset, stats) {
                        Ok(()) => {
                            reply(&mut w, 0)?;
                            w.write_all(&buf)?;
                            let n = stats.reads.fetch_add(1, Ordering::Relaxed);
                            stats.bytes.fetch_add(len as u64, Ordering::Relaxed);
                            if n == 0 {
                                let us = started.elapsed().as_micros().max(1) as u64;
                                let _ = stats.first_read_us.compare_exchange(
                                    0,
                                    us,
                                    Ordering::Relaxed,
                                    Ordering::Relaxed,
                                );
                            }
                        }
                        Err(e) => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                            *stats.last_error.lock().expect("stats lock") = Some(e.to_string());
                            reply(&mut w, EIO)?;
                        }
                    }
                }
            }
            CMD_WRITE => {
                io::copy(&mut (&mut r).take(len as u64), &mut io::sink())?;
                reply(&mut w, EPERM)?;
            }
            CMD_TRIM | CMD_WRITE_ZEROES => reply(&mut w, EPERM)?,
            CMD_FLUSH => reply(&mut w, 0)?,
            CMD_DISC => {
                w.flush()?;
                return Ok(());
            }
            _ => reply(&mut w, EINVAL)?,
        }
        w.flush()?;
    }
}
