//! Garbage collection: mark and sweep with a grace period, never blocking a running backup.
//!
//! Protocol (the PBS scheme, with a writer registry instead of a process-local lock):
//! - a backup registers `writers/<id>.json` (its start time and parent) before it looks at any chunk, and
//!   touches every existing chunk it reuses that its parent does not hold (the parent cannot be deleted while
//!   the backup runs);
//! - GC notes its start `T0`, reads the writer registry, then marks every chunk of every snapshot;
//! - it sweeps unmarked chunks last modified before `cutoff = min(T0, oldest writer start) - grace`, each
//!   through [`crate::Backend::remove_if_older`], which re-checks the time at removal so a chunk touched
//!   meanwhile survives.
//!
//! A chunk a running backup uses was either written or touched after that backup started, so it is newer than
//! the cutoff, or it belongs to the backup's parent, which is marked. `remove_if_older` is not atomic on S3
//! (HEAD, then DELETE): a chunk whose old time GC read just before a writer touched it can be deleted after
//! the touch. So a writer, once every chunk it reuses is touched and its indexes are written, checks that each
//! chunk it only touched still exists and stores again any that is gone, before its manifest is committed
//! (test `store_suite::gc_head_then_delete_race`, which forces that interleaving). What is left is a GC
//! stalled between its HEAD and its DELETE for longer than the rest of the backup; `verify` finds such a loss. Writers older than `stale_writer_after`
//! (a crashed process) stop holding the cutoff back and are reported.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::chunk_store::{parse_chunk_key, ZERO_ID};
use crate::{DataStore, Error};

/// A running backup in the writer registry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WriterInfo {
    /// Snapshot id being written.
    pub id: String,
    /// Parent snapshot.
    #[serde(default)]
    pub parent: Option<String>,
    /// Start, seconds since the epoch (float).
    pub started_at: f64,
    /// Process id of the writer.
    pub pid: u32,
}

/// Removes the writer's registry entry when the backup ends (also on error or panic).
pub(crate) struct WriterGuard<'a> {
    ds: &'a DataStore,
    key: String,
}

fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl<'a> WriterGuard<'a> {
    pub(crate) fn register(
        ds: &'a DataStore,
        id: &str,
        parent: Option<&str>,
    ) -> Result<Self, Error> {
        let info = WriterInfo {
            id: id.to_string(),
            parent: parent.map(str::to_string),
            started_at: epoch_secs(SystemTime::now()),
            pid: std::process::id(),
        };
        let key = format!("writers/{id}.json");
        ds.backend().put(
            &key,
            &serde_json::to_vec(&info).expect("writer info serializes"),
        )?;
        Ok(Self { ds, key })
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        let _ = self.ds.backend().delete(&self.key);
    }
}

/// GC settings.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Chunks modified less than this long before the cutoff are kept (clock skew between host and S3).
    pub grace: Duration,
    /// Writers registered longer ago than this are treated as crashed.
    pub stale_writer_after: Duration,
    /// Only report what would be removed.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(600),
            stale_writer_after: Duration::from_secs(48 * 3600),
            dry_run: false,
        }
    }
}

/// What a GC run did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct GcReport {
    /// Snapshots marked.
    pub snapshots: usize,
    /// Distinct chunks referenced.
    pub referenced_chunks: usize,
    /// Chunks present in the store.
    pub total_chunks: usize,
    /// Chunks removed (or that would be, in a dry run).
    pub removed_chunks: usize,
    /// Bytes removed.
    pub removed_bytes: u64,
    /// Unreferenced chunks kept because they are newer than the cutoff (running backups, grace).
    pub kept_recent: usize,
    /// Writers holding the cutoff back.
    pub active_writers: Vec<String>,
    /// Writers ignored as stale.
    pub stale_writers: Vec<String>,
}

/// The coarsest modification-time granularity of a backend (S3 reports whole seconds).
const TIMESTAMP_SLACK: Duration = Duration::from_secs(2);

impl DataStore {
    /// Run garbage collection.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport, Error> {
        let t0 = SystemTime::now();
        let mut report = GcReport::default();
        let mut oldest = t0;
        for w in self.writers()? {
            let start = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(w.started_at.max(0.0));
            if t0.duration_since(start).unwrap_or_default() > opts.stale_writer_after {
                report.stale_writers.push(w.id);
                continue;
            }
            oldest = oldest.min(start);
            report.active_writers.push(w.id);
        }
        // A running writer refreshes the chunks it reuses; backends may keep whole-second modification times
        // (S3's Last-Modified), so a refresh just after a writer's start can read as older than it. Writers
        // therefore hold the cutoff back a further TIMESTAMP_SLACK: GC only ever keeps more for it.
        let slack = if report.active_writers.is_empty() {
            Duration::ZERO
        } else {
            TIMESTAMP_SLACK
        };
        let cutoff = oldest
            .checked_sub(opts.grace + slack)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        // Mark. Any unreadable manifest or index stops GC: it never removes what it cannot prove unused.
        let mut marked = HashSet::new();
        for id in self.snapshot_ids()? {
            let m = self.manifest(&id)?;
            for d in &m.disks {
                marked.extend(
                    self.index(&m, &d.name)?
                        .ids
                        .into_iter()
                        .filter(|c| *c != ZERO_ID),
                );
            }
            report.snapshots += 1;
        }
        report.referenced_chunks = marked.len();
        // Sweep.
        for (key, meta) in self.backend().list("chunks/")? {
            let Some(cid) = parse_chunk_key(&key) else {
                continue;
            };
            report.total_chunks += 1;
            if marked.contains(&cid) {
                continue;
            }
            if meta.modified >= cutoff {
                report.kept_recent += 1;
                continue;
            }
            if opts.dry_run || self.backend().remove_if_older(&key, cutoff)? {
                report.removed_chunks += 1;
                report.removed_bytes += meta.size;
            } else {
                report.kept_recent += 1;
            }
        }
        Ok(report)
    }
}
