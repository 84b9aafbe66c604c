//! `verify`: check every manifest MAC, index MAC and chunk (decrypt, decompress, re-hash), each distinct
//! chunk once, and report exactly which snapshots each damaged chunk breaks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use rayon::prelude::*;
use serde::Serialize;

use crate::chunk_store::{id_hex, ChunkId, ZERO_ID};
use crate::DataStore;

/// A damaged or missing chunk and the snapshots it breaks.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DamagedChunk {
    /// Chunk id (hex).
    pub chunk: String,
    /// What is wrong.
    pub error: String,
    /// Snapshots (and disks) that reference it: `<snapshot>/<disk>`.
    pub snapshots: Vec<String>,
}

/// Result of a verify run.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct VerifyReport {
    /// Snapshots checked.
    pub snapshots: usize,
    /// Distinct chunks checked.
    pub chunks: usize,
    /// Snapshots whose manifest or index is damaged: id → error.
    pub bad_snapshots: BTreeMap<String, String>,
    /// Damaged chunks.
    pub damaged_chunks: Vec<DamagedChunk>,
    /// Every snapshot that cannot be restored as stored.
    pub broken_snapshots: BTreeSet<String>,
}

impl VerifyReport {
    /// True when nothing is damaged.
    pub fn ok(&self) -> bool {
        self.broken_snapshots.is_empty()
    }
}

impl DataStore {
    /// Verify the whole store (or only the listed snapshots).
    pub fn verify(&self, only: Option<&[String]>) -> Result<VerifyReport, crate::Error> {
        let mut report = VerifyReport::default();
        let ids = match only {
            Some(ids) => ids.to_vec(),
            None => self.snapshot_ids()?,
        };
        let mut users: HashMap<ChunkId, Vec<String>> = HashMap::new();
        for id in &ids {
            report.snapshots += 1;
            let m = match self.manifest(id) {
                Ok(m) => m,
                Err(e) => {
                    report.bad_snapshots.insert(id.clone(), e.to_string());
                    continue;
                }
            };
            for d in &m.disks {
                match self.index(&m, &d.name) {
                    Ok(idx) => {
                        let mut seen = std::collections::HashSet::new();
                        for c in idx.ids.into_iter().filter(|c| *c != ZERO_ID) {
                            if seen.insert(c) {
                                users.entry(c).or_default().push(format!("{id}/{}", d.name));
                            }
                        }
                    }
                    Err(e) => {
                        report.bad_snapshots.insert(id.clone(), e.to_string());
                    }
                }
            }
        }
        report.chunks = users.len();
        let damaged = Mutex::new(Vec::new());
        users.par_iter().for_each(|(cid, snaps)| {
            if let Err(e) = self.chunks.load(cid) {
                let mut s = snaps.clone();
                s.sort();
                damaged.lock().expect("lock").push(DamagedChunk {
                    chunk: id_hex(cid),
                    error: e.to_string(),
                    snapshots: s,
                });
            }
        });
        let mut damaged = damaged.into_inner().expect("lock");
        damaged.sort_by(|a, b| a.chunk.cmp(&b.chunk));
        for d in &damaged {
            for s in &d.snapshots {
                report
                    .broken_snapshots
                    .insert(s.split('/').next().unwrap_or(s).to_string());
            }
        }
        report
            .broken_snapshots
            .extend(report.bad_snapshots.keys().cloned());
        report.damaged_chunks = damaged;
        Ok(report)
    }
}
