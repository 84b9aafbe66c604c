//! Content-addressed chunk store: `chunks/<first 4 hex>/<64 hex>` objects.
//!
//! Blob format: 12-byte header `LBCK` + version 1 + type + 2 reserved bytes + plaintext length (u32 LE),
//! then the body.
//! Types: 0 plain, 1 zstd, 2 encrypted plain, 3 encrypted zstd. Encrypted bodies are
//! `nonce(24) || XChaCha20-Poly1305(ciphertext || tag)` with the chunk id as associated data.
//! Every load decrypts, decompresses and re-hashes, so a damaged or swapped chunk never comes back as data.

use std::sync::Arc;

use crate::backend::BackendRef;
use crate::crypto::{ct_eq, CryptKey};
use crate::Error;

/// A chunk id: BLAKE3 of the plaintext (keyed BLAKE3 in encrypted stores).
pub type ChunkId = [u8; 32];

/// The sentinel id of an all-zero chunk, which is never stored.
pub const ZERO_ID: ChunkId = [0u8; 32];

const MAGIC: &[u8; 4] = b"LBCK";
const T_PLAIN: u8 = 0;
const T_ZSTD: u8 = 1;
const T_ENC: u8 = 2;
const T_ENC_ZSTD: u8 = 3;

/// Largest chunk accepted (64 MiB).
pub const MAX_CHUNK: usize = 64 << 20;

/// zstd level used for chunks (measured in docs/snapstore.md: level 1 is the best speed/size point).
pub const ZSTD_LEVEL: i32 = 1;

/// Hex form of a chunk id.
pub fn id_hex(id: &ChunkId) -> String {
    hex::encode(id)
}

/// Object key of a chunk.
pub fn chunk_key(id: &ChunkId) -> String {
    let h = hex::encode(id);
    format!("chunks/{}/{}", &h[..4], h)
}

/// Parse a chunk object key back into an id.
pub fn parse_chunk_key(key: &str) -> Option<ChunkId> {
    let name = key.rsplit('/').next()?;
    let v = hex::decode(name).ok()?;
    v.try_into().ok()
}

/// True when every byte is zero (fast path on 16-byte words).
pub fn is_zero(buf: &[u8]) -> bool {
    let (pre, mid, post) = unsafe { buf.align_to::<u128>() };
    pre.iter().all(|&b| b == 0) && mid.iter().all(|&w| w == 0) && post.iter().all(|&b| b == 0)
}

/// Result of inserting one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The chunk was already there (and is now touched).
    Existed,
    /// The chunk was written; the number is the stored blob size.
    Written(u64),
}

/// Chunk store over a backend, with the store's optional key.
#[derive(Clone)]
pub struct ChunkStore {
    backend: BackendRef,
    key: Option<Arc<CryptKey>>,
    level: i32,
}

impl ChunkStore {
    /// New chunk store.
    pub fn new(backend: BackendRef, key: Option<Arc<CryptKey>>) -> Self {
        Self {
            backend,
            key,
            level: ZSTD_LEVEL,
        }
    }

    /// Set the zstd level for chunks written from now on (default [`ZSTD_LEVEL`]; negative = faster).
    pub fn set_level(&mut self, level: i32) {
        self.level = level;
    }

    /// The backend.
    pub fn backend(&self) -> &BackendRef {
        &self.backend
    }

    /// Chunk id of a plaintext under this store's key.
    pub fn id_of(&self, data: &[u8]) -> ChunkId {
        match &self.key {
            Some(k) => k.chunk_id(data),
            None => *blake3::hash(data).as_bytes(),
        }
    }

    /// Encode a plaintext into a stored blob (compress, maybe encrypt).
    pub fn encode(&self, id: &ChunkId, data: &[u8]) -> Vec<u8> {
        // Probe: when the first 64 KiB do not compress, the chunk is stored as is (random data, already
        // compressed files), which saves almost all the zstd time on such chunks.
        let probe = &data[..data.len().min(64 << 10)];
        let worth = data.len() <= probe.len()
            || zstd::bulk::compress(probe, self.level)
                .is_ok_and(|c| c.len() + c.len() / 32 < probe.len());
        let compressed = worth
            .then(|| zstd::bulk::compress(data, self.level).ok())
            .flatten()
            .filter(|c| c.len() + c.len() / 32 < data.len());
        let (ty, body): (u8, &[u8]) = match &compressed {
            Some(c) => (T_ZSTD, c),
            None => (T_PLAIN, data),
        };
        let mut out = Vec::with_capacity(body.len() + 48);
        out.extend_from_slice(MAGIC);
        out.push(1);
        out.push(if self.key.is_some() { ty + 2 } else { ty });
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        match &self.key {
            Some(k) => out.extend_from_slice(&k.encrypt(id, body)),
            None => out.extend_from_slice(body),
        }
        out
    }

    /// Decode a stored blob and check that it hashes to `id`.
    pub fn decode(&self, id: &ChunkId, blob: &[u8]) -> Result<Vec<u8>, Error> {
        let bad = |m: &str| Error::Corrupt(format!("chunk {}: {m}", id_hex(id)));
        if blob.len() < 12 || &blob[..4] != MAGIC || blob[4] != 1 {
            return Err(bad("bad header"));
        }
        let ty = blob[5];
        let expect_len = u32::from_le_bytes(blob[8..12].try_into().expect("4 bytes")) as usize;
        if expect_len > MAX_CHUNK {
            return Err(bad("length out of range"));
        }
        let body = &blob[12..];
        let plain_or_zstd;
        let inner: &[u8] = match (ty, &self.key) {
            (T_PLAIN | T_ZSTD, _) => body,
            (T_ENC | T_ENC_ZSTD, Some(k)) => {
                plain_or_zstd = k.decrypt(id, body).map_err(|e| bad(&e.to_string()))?;
                &plain_or_zstd
            }
            (T_ENC | T_ENC_ZSTD, None) => {
                return Err(Error::Key("chunk is encrypted and no key was given".into()))
            }
            _ => return Err(bad("unknown chunk type")),
        };
        if self.key.is_some() && (ty == T_PLAIN || ty == T_ZSTD) {
            return Err(bad("unencrypted chunk in an encrypted store"));
        }
        let data = if ty == T_ZSTD || ty == T_ENC_ZSTD {
            zstd::bulk::decompress(inner, expect_len.max(1))
                .map_err(|e| bad(&format!("zstd: {e}")))?
        } else {
            inner.to_vec()
        };
        if data.len() != expect_len {
            return Err(bad(&format!("length {} != {}", data.len(), expect_len)));
        }
        if !ct_eq(&self.id_of(&data), id) {
            return Err(bad("content does not match its id"));
        }
        Ok(data)
    }

    /// Store a chunk unless it exists; an existing chunk is touched so a running GC keeps it.
    pub fn insert(&self, id: &ChunkId, data: &[u8]) -> Result<Inserted, Error> {
        let key = chunk_key(id);
        if self.backend.touch(&key)? {
            return Ok(Inserted::Existed);
        }
        let blob = self.encode(id, data);
        self.backend.put(&key, &blob)?;
        Ok(Inserted::Written(blob.len() as u64))
    }

    /// Load and verify a chunk.
    pub fn load(&self, id: &ChunkId) -> Result<Vec<u8>, Error> {
        let blob = self
            .backend
            .get(&chunk_key(id))?
            .ok_or_else(|| Error::Corrupt(format!("chunk {} is missing", id_hex(id))))?;
        self.decode(id, &blob)
    }
}
