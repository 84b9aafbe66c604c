//! A small NBD client (fixed newstyle handshake, structured replies, `NBD_CMD_BLOCK_STATUS`) for reading
//! QEMU NBD exports (`qemu-storage-daemon`, `qemu-nbd`, QEMU's built-in server) and their
//! `qemu:dirty-bitmap:<name>` metadata context — what makes dirty bitmaps usable for incremental backups.
//!
//! One connection serves one request at a time (a mutex); [`NbdReader`] keeps a few connections so rayon
//! workers read in parallel.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::backup::{DiskReader, Extent};
use crate::Error;

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQ_MAGIC: u32 = 0x2560_9513;
const SIMPLE_MAGIC: u32 = 0x6744_6698;
const STRUCT_MAGIC: u32 = 0x668e_33ef;

const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;

const OPT_GO: u32 = 7;
const OPT_STRUCTURED_REPLY: u32 = 8;
const OPT_SET_META_CONTEXT: u32 = 10;

const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const REP_META_CONTEXT: u32 = 4;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_BLOCK_STATUS: u16 = 7;

const TFLAG_READ_ONLY: u16 = 1 << 1;

const RT_NONE: u16 = 0;
const RT_OFFSET_DATA: u16 = 1;
const RT_OFFSET_HOLE: u16 = 2;
const RT_BLOCK_STATUS: u16 = 5;

/// Largest single read or write request sent (32 MiB, QEMU's limit).
pub const MAX_REQUEST: usize = 32 << 20;

/// Where an NBD server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NbdAddr {
    /// Unix socket path.
    Unix(PathBuf),
    /// `host:port` (use 127.0.0.1 in tests).
    Tcp(String),
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// One NBD connection to one export.
pub struct NbdClient {
    s: Box<dyn Stream>,
    size: u64,
    read_only: bool,
    bitmap_ctx: Option<u32>,
    handle: u64,
}

impl std::fmt::Debug for NbdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdClient")
            .field("size", &self.size)
            .field("read_only", &self.read_only)
            .finish()
    }
}

fn proto(m: impl Into<String>) -> Error {
    Error::Backend(format!("NBD: {}", m.into()))
}

fn nio(e: io::Error) -> Error {
    Error::io("NBD connection".into(), e)
}

fn rd_u16(s: &mut dyn Stream) -> Result<u16, Error> {
    let mut b = [0u8; 2];
    s.read_exact(&mut b).map_err(nio)?;
    Ok(u16::from_be_bytes(b))
}
fn rd_u32(s: &mut dyn Stream) -> Result<u32, Error> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b).map_err(nio)?;
    Ok(u32::from_be_bytes(b))
}
fn rd_u64(s: &mut dyn Stream) -> Result<u64, Error> {
    let mut b = [0u8; 8];
    s.read_exact(&mut b).map_err(nio)?;
    Ok(u64::from_be_bytes(b))
}
fn rd_vec(s: &mut dyn Stream, n: usize) -> Result<Vec<u8>, Error> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v).map_err(nio)?;
    Ok(v)
}

impl NbdClient {
    /// Connect to `export`; when `bitmap` is given, negotiate the `qemu:dirty-bitmap:<bitmap>` context
    /// (an error if the server does not offer it).
    pub fn connect(addr: &NbdAddr, export: &str, bitmap: Option<&str>) -> Result<Self, Error> {
        let s: Box<dyn Stream> = match addr {
            NbdAddr::Unix(p) => Box::new(
                UnixStream::connect(p)
                    .map_err(|e| Error::io(format!("connect to NBD socket {}", p.display()), e))?,
            ),
            NbdAddr::Tcp(a) => {
                let t = TcpStream::connect(a)
                    .map_err(|e| Error::io(format!("connect to NBD server {a}"), e))?;
                let _ = t.set_nodelay(true);
                Box::new(t)
            }
        };
        let mut c = Self {
            s,
            size: 0,
            read_only: true,
            bitmap_ctx: None,
            handle: 1,
        };
        c.handshake(export, bitmap)?;
        Ok(c)
    }

    /// Export size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn send_opt(&mut self, opt: u32, data: &[u8]) -> Result<(), Error> {
        let mut b = Vec::with_capacity(16 + data.len());
        b.extend_from_slice(&IHAVEOPT.to_be_bytes());
        b.extend_from_slice(&opt.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
        self.s.write_all(&b).map_err(nio)
    }

    /// Read one option reply: (reply type, data).
    fn opt_reply(&mut self, opt: u32) -> Result<(u32, Vec<u8>), Error> {
        if rd_u64(&mut *self.s)? != REPLY_MAGIC {
            return Err(proto("bad option reply magic"));
        }
        let o = rd_u32(&mut *self.s)?;
        let ty = rd_u32(&mut *self.s)?;
        let len = rd_u32(&mut *self.s)? as usize;
        if len > 1 << 20 {
            return Err(proto("option reply too long"));
        }
        let data = rd_vec(&mut *self.s, len)?;
        if o != opt {
            return Err(proto(format!("reply to option {o}, expected {opt}")));
        }
        if ty & (1 << 31) != 0 {
            return Err(proto(format!(
                "server refused option {opt} (error {:#x}): {}",
                ty,
                String::from_utf8_lossy(&data)
            )));
        }
        Ok((ty, data))
    }

    fn handshake(&mut self, export: &str, bitmap: Option<&str>) -> Result<(), Error> {
        if rd_u64(&mut *self.s)? != NBDMAGIC || rd_u64(&mut *self.s)? != IHAVEOPT {
            return Err(proto("not a newstyle NBD server"));
        }
        let flags = rd_u16(&mut *self.s)?;
        if flags & FLAG_FIXED_NEWSTYLE == 0 {
            return Err(proto("server lacks fixed newstyle negotiation"));
        }
        let cflags = (flags & (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)) as u32;
        self.s.write_all(&cflags.to_be_bytes()).map_err(nio)?;

        let mut want_ctx = None;
        if let Some(bm) = bitmap {
            self.send_opt(OPT_STRUCTURED_REPLY, &[])?;
            self.opt_reply(OPT_STRUCTURED_REPLY)?;
            let q = format!("qemu:dirty-bitmap:{bm}");
            let mut d = Vec::new();
            d.extend_from_slice(&(export.len() as u32).to_be_bytes());
            d.extend_from_slice(export.as_bytes());
            d.extend_from_slice(&1u32.to_be_bytes());
            d.extend_from_slice(&(q.len() as u32).to_be_bytes());
            d.extend_from_slice(q.as_bytes());
            self.send_opt(OPT_SET_META_CONTEXT, &d)?;
            loop {
                let (ty, data) = self.opt_reply(OPT_SET_META_CONTEXT)?;
                match ty {
                    REP_META_CONTEXT if data.len() >= 4 => {
                        let id = u32::from_be_bytes(data[..4].try_into().expect("4 bytes"));
                        if data[4..] == *q.as_bytes() {
                            want_ctx = Some(id);
                        }
                    }
                    REP_ACK => break,
                    _ => {}
                }
            }
            if want_ctx.is_none() {
                return Err(proto(format!(
                    "export {export:?} does not offer dirty bitmap {bm:?}"
                )));
            }
        }
        let mut d = Vec::new();
        d.extend_from_slice(&(export.len() as u32).to_be_bytes());
        d.extend_from_slice(export.as_bytes());
        d.extend_from_slice(&0u16.to_be_bytes());
        self.send_opt(OPT_GO, &d)?;
        let mut got_info = false;
        loop {
            let (ty, data) = self.opt_reply(OPT_GO)?;
            match ty {
                REP_INFO if data.len() >= 12 && data[..2] == [0, 0] => {
                    self.size = u64::from_be_bytes(data[2..10].try_into().expect("8 bytes"));
                    let tflags = u16::from_be_bytes(data[10..12].try_into().expect("2 bytes"));
                    self.read_only = tflags & TFLAG_READ_ONLY != 0;
                    got_info = true;
                }
                REP_ACK => break,
                _ => {}
            }
        }
        if !got_info {
            return Err(proto("server sent no export size"));
        }
        self.bitmap_ctx = want_ctx;
        Ok(())
    }

    fn request(&mut self, ty: u16, offset: u64, len: u32, data: &[u8]) -> Result<u64, Error> {
        self.handle += 1;
        let mut b = Vec::with_capacity(28 + data.len());
        b.extend_from_slice(&REQ_MAGIC.to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&ty.to_be_bytes());
        b.extend_from_slice(&self.handle.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        self.s.write_all(&b).map_err(nio)?;
        if !data.is_empty() {
            self.s.write_all(data).map_err(nio)?;
        }
        Ok(self.handle)
    }

    /// Read replies for `handle` until done. `on_chunk(type, payload)` sees each structured chunk (read data
    /// is written into `read_buf` directly).
    fn replies(
        &mut self,
        handle: u64,
        mut read_buf: Option<(&mut [u8], u64)>,
        on_status: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        loop {
            let magic = rd_u32(&mut *self.s)?;
            if magic == SIMPLE_MAGIC {
                let err = rd_u32(&mut *self.s)?;
                let h = rd_u64(&mut *self.s)?;
                if h != handle {
                    return Err(proto("reply for an unknown request"));
                }
                if err != 0 {
                    return Err(Error::io(
                        "NBD request".into(),
                        io::Error::from_raw_os_error(err as i32),
                    ));
                }
                if let Some((buf, _)) = read_buf.as_mut() {
                    self.s.read_exact(buf).map_err(nio)?;
                }
                return Ok(());
            }
            if magic != STRUCT_MAGIC {
                return Err(proto(format!("bad reply magic {magic:#x}")));
            }
            let flags = rd_u16(&mut *self.s)?;
            let ty = rd_u16(&mut *self.s)?;
            let h = rd_u64(&mut *self.s)?;
            let len = rd_u32(&mut *self.s)? as usize;
            if h != handle {
                return Err(proto("reply for an unknown request"));
            }
            match ty {
                RT_NONE => {}
                RT_OFFSET_DATA => {
                    let off = rd_u64(&mut *self.s)?;
                    let n = len
                        .checked_sub(8)
                        .ok_or_else(|| proto("short data chunk"))?;
                    let (buf, base) = read_buf
                        .as_mut()
                        .ok_or_else(|| proto("data for a non-read"))?;
                    let start = off
                        .checked_sub(*base)
                        .ok_or_else(|| proto("data outside the request"))?
                        as usize;
                    let dst = buf
                        .get_mut(start..start + n)
                        .ok_or_else(|| proto("data outside the request"))?;
                    self.s.read_exact(dst).map_err(nio)?;
                }
                RT_OFFSET_HOLE => {
                    let off = rd_u64(&mut *self.s)?;
                    let n = rd_u32(&mut *self.s)? as usize;
                    let (buf, base) = read_buf
                        .as_mut()
                        .ok_or_else(|| proto("hole for a non-read"))?;
                    let start = off
                        .checked_sub(*base)
                        .ok_or_else(|| proto("hole outside the request"))?
                        as usize;
                    buf.get_mut(start..start + n)
                        .ok_or_else(|| proto("hole outside the request"))?
                        .fill(0);
                }
                RT_BLOCK_STATUS => {
                    let p = rd_vec(&mut *self.s, len)?;
                    on_status(&p)?;
                }
                t if t & 0x8000 != 0 => {
                    let p = rd_vec(&mut *self.s, len)?;
                    let code = if p.len() >= 4 {
                        u32::from_be_bytes(p[..4].try_into().expect("4"))
                    } else {
                        0
                    };
                    let msg = if p.len() >= 6 {
                        String::from_utf8_lossy(&p[6..]).into_owned()
                    } else {
                        String::new()
                    };
                    // Drain to the final chunk so the connection stays usable, then fail.
                    if flags & 1 == 0 {
                        let _ = self.replies(handle, None, &mut |_| Ok(()));
                    }
                    return Err(proto(format!("server error {code}: {msg}")));
                }
                _ => {
                    rd_vec(&mut *self.s, len)?;
                }
            }
            if flags & 1 != 0 {
                return Ok(());
            }
        }
    }

    /// Read `buf.len()` bytes at `offset`.
    pub fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        let mut pos = 0;
        while pos < buf.len() {
            let n = (buf.len() - pos).min(MAX_REQUEST);
            let h = self.request(CMD_READ, offset + pos as u64, n as u32, &[])?;
            self.replies(
                h,
                Some((&mut buf[pos..pos + n], offset + pos as u64)),
                &mut |_| Ok(()),
            )?;
            pos += n;
        }
        Ok(())
    }

    /// Write `data` at `offset` (writable exports).
    pub fn write_at(&mut self, data: &[u8], offset: u64) -> Result<(), Error> {
        if self.read_only {
            return Err(proto("export is read-only"));
        }
        let mut pos = 0;
        while pos < data.len() {
            let n = (data.len() - pos).min(MAX_REQUEST);
            let h = self.request(
                CMD_WRITE,
                offset + pos as u64,
                n as u32,
                &data[pos..pos + n],
            )?;
            self.replies(h, None, &mut |_| Ok(()))?;
            pos += n;
        }
        Ok(())
    }

    /// Flush the export to stable storage.
    pub fn flush(&mut self) -> Result<(), Error> {
        let h = self.request(CMD_FLUSH, 0, 0, &[])?;
        self.replies(h, None, &mut |_| Ok(()))
    }

    /// The dirty extents of the negotiated bitmap over the whole export (merged, sorted).
    pub fn dirty_extents(&mut self) -> Result<Vec<Extent>, Error> {
        let ctx = self
            .bitmap_ctx
            .ok_or_else(|| proto("no dirty bitmap was negotiated"))?;
        let mut out: Vec<Extent> = Vec::new();
        let mut pos = 0u64;
        while pos < self.size {
            let len = (self.size - pos).min(1 << 30) as u32;
            let h = self.request(CMD_BLOCK_STATUS, pos, len, &[])?;
            let mut cur = pos;
            let mut advanced = 0u64;
            self.replies(h, None, &mut |p| {
                if p.len() < 4 || u32::from_be_bytes(p[..4].try_into().expect("4")) != ctx {
                    return Ok(());
                }
                for d in p[4..].chunks_exact(8) {
                    let l = u32::from_be_bytes(d[..4].try_into().expect("4")) as u64;
                    let flags = u32::from_be_bytes(d[4..].try_into().expect("4"));
                    if flags & 1 != 0 && l > 0 {
                        match out.last_mut() {
                            Some(e) if e.offset + e.len == cur => e.len += l,
                            _ => out.push(Extent {
                                offset: cur,
                                len: l,
                            }),
                        }
                    }
                    cur += l;
                    advanced += l;
                }
                Ok(())
            })?;
            if advanced == 0 {
                return Err(proto("block status made no progress"));
            }
            pos += advanced;
        }
        Ok(out)
    }

    /// Politely disconnect.
    pub fn disconnect(mut self) {
        let _ = self.request(CMD_DISC, 0, 0, &[]);
    }
}

/// A [`DiskReader`] over an NBD export, with a small pool of connections for parallel reads.
pub struct NbdReader {
    conns: Vec<Mutex<NbdClient>>,
    size: u64,
}

impl std::fmt::Debug for NbdReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdReader")
            .field("size", &self.size)
            .field("connections", &self.conns.len())
            .finish()
    }
}

impl NbdReader {
    /// Open `connections` connections (at least 1) to the export.
    pub fn connect(addr: &NbdAddr, export: &str, connections: usize) -> Result<Self, Error> {
        let conns = (0..connections.max(1))
            .map(|_| NbdClient::connect(addr, export, None).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let size = conns[0].lock().expect("lock").size();
        Ok(Self { conns, size })
    }
}

impl DiskReader for NbdReader {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        // Pick a free connection, else wait on one chosen by offset.
        let n = self.conns.len();
        let start = (offset / (1 << 20)) as usize % n;
        for k in 0..n {
            if let Ok(mut c) = self.conns[(start + k) % n].try_lock() {
                return c.read_at(buf, offset).map_err(io::Error::other);
            }
        }
        let mut c = self.conns[start].lock().expect("NBD connection lock");
        c.read_at(buf, offset).map_err(io::Error::other)
    }
}

/// Dirty extents of bitmap `bitmap` of an export (one short connection).
pub fn dirty_extents(addr: &NbdAddr, export: &str, bitmap: &str) -> Result<Vec<Extent>, Error> {
    let mut c = NbdClient::connect(addr, export, Some(bitmap))?;
    let r = c.dirty_extents();
    c.disconnect();
    r
}
