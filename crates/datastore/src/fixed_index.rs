//! Fixed-size chunk index of one disk: chunk `i` covers bytes `[i*chunk_size, min((i+1)*chunk_size, size))`.
//!
//! Binary layout (little endian): magic `LBFIDX01`, disk size u64, chunk size u64, chunk count u64,
//! then `count` 32-byte chunk ids. An all-zero id means an all-zero chunk (not stored).

use crate::chunk_store::{ChunkId, ZERO_ID};
use crate::Error;

const MAGIC: &[u8; 8] = b"LBFIDX01";

/// The chunk list of one disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedIndex {
    /// Disk size in bytes.
    pub size: u64,
    /// Chunk size in bytes (a multiple of the dirty-bitmap granularity).
    pub chunk_size: u64,
    /// One id per chunk ([`ZERO_ID`] for zero chunks).
    pub ids: Vec<ChunkId>,
}

impl FixedIndex {
    /// Number of chunks a disk of `size` bytes has.
    pub fn count_for(size: u64, chunk_size: u64) -> usize {
        size.div_ceil(chunk_size) as usize
    }

    /// An index with every chunk zero.
    pub fn zeroed(size: u64, chunk_size: u64) -> Self {
        Self {
            size,
            chunk_size,
            ids: vec![ZERO_ID; Self::count_for(size, chunk_size)],
        }
    }

    /// Byte range `(offset, len)` of chunk `i`.
    pub fn range(&self, i: usize) -> (u64, usize) {
        let off = i as u64 * self.chunk_size;
        (off, (self.size - off).min(self.chunk_size) as usize)
    }

    /// Serialize.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.ids.len() * 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.chunk_size.to_le_bytes());
        out.extend_from_slice(&(self.ids.len() as u64).to_le_bytes());
        for id in &self.ids {
            out.extend_from_slice(id);
        }
        out
    }

    /// Parse and sanity-check.
    pub fn from_bytes(b: &[u8]) -> Result<Self, Error> {
        let bad = |m: &str| Error::Corrupt(format!("index: {m}"));
        if b.len() < 32 || &b[..8] != MAGIC {
            return Err(bad("bad header"));
        }
        let u = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let (size, chunk_size, count) = (u(8), u(16), u(24));
        if chunk_size == 0
            || count as usize != Self::count_for(size, chunk_size)
            || b.len() as u64 != 32 + count * 32
        {
            return Err(bad("sizes do not add up"));
        }
        let ids = b[32..]
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32 bytes"))
            .collect();
        Ok(Self {
            size,
            chunk_size,
            ids,
        })
    }

    /// Number of non-zero chunks.
    pub fn stored_chunks(&self) -> usize {
        self.ids.iter().filter(|id| **id != ZERO_ID).count()
    }
}
