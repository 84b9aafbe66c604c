//! Retention: Nova createBackup rotation and keep-last/hourly/daily/weekly/monthly/yearly pruning.
//!
//! The selection logic is pure ([`select_rotation`], [`select_prune`]) and follows PBS's `prune.rs`: rules
//! are applied in order (last, hourly, daily, weekly, monthly, yearly) to the snapshots of one group,
//! newest first; each rule keeps the newest snapshot of each of its next N time buckets not yet covered by
//! a kept snapshot; everything not kept is removed. Buckets are in UTC.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serialize;

use crate::manifest::{ManifestBody, SnapshotKind};
use crate::{DataStore, Error};

/// Keep rules; `None`/0 disables a rule. With every rule off, nothing is removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepOptions {
    /// Keep the newest N.
    pub last: usize,
    /// Keep the newest of each of the last N hours.
    pub hourly: usize,
    /// … days.
    pub daily: usize,
    /// … ISO weeks.
    pub weekly: usize,
    /// … months.
    pub monthly: usize,
    /// … years.
    pub yearly: usize,
}

impl KeepOptions {
    /// Whether any rule is on.
    pub fn any(&self) -> bool {
        self.last + self.hourly + self.daily + self.weekly + self.monthly + self.yearly > 0
    }
}

/// Mark of one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mark {
    /// Kept by a rule.
    Keep,
    /// To remove.
    Remove,
}

fn mark_selections(
    marks: &mut HashMap<String, Mark>,
    list: &[(String, DateTime<Utc>)],
    keep: usize,
    bucket: impl Fn(&DateTime<Utc>) -> String,
) {
    if keep == 0 {
        return;
    }
    let mut included = HashSet::new();
    let already: HashSet<String> = list
        .iter()
        .filter(|(id, _)| marks.get(id) == Some(&Mark::Keep))
        .map(|(_, t)| bucket(t))
        .collect();
    for (id, t) in list {
        if marks.contains_key(id) {
            continue;
        }
        let b = bucket(t);
        if already.contains(&b) {
            continue;
        }
        if !included.contains(&b) {
            if included.len() >= keep {
                break;
            }
            included.insert(b);
            marks.insert(id.clone(), Mark::Keep);
        } else {
            marks.insert(id.clone(), Mark::Remove);
        }
    }
}

/// Prune marks for one group of snapshots `(id, created_at)` (any order). Returns newest first.
pub fn select_prune(list: &[(String, DateTime<Utc>)], opts: &KeepOptions) -> Vec<(String, Mark)> {
    let mut list = list.to_vec();
    list.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    if !opts.any() {
        return list.into_iter().map(|(id, _)| (id, Mark::Keep)).collect();
    }
    let mut marks = HashMap::new();
    mark_selections(&mut marks, &list, opts.last, |t| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    });
    mark_selections(&mut marks, &list, opts.hourly, |t| {
        format!(
            "{}/{:02}/{:02}/{:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour()
        )
    });
    mark_selections(&mut marks, &list, opts.daily, |t| {
        format!("{}/{:02}/{:02}", t.year(), t.month(), t.day())
    });
    mark_selections(&mut marks, &list, opts.weekly, |t| {
        let w = t.iso_week();
        format!("{}/{:02}", w.year(), w.week())
    });
    mark_selections(&mut marks, &list, opts.monthly, |t| {
        format!("{}/{:02}", t.year(), t.month())
    });
    mark_selections(&mut marks, &list, opts.yearly, |t| t.year().to_string());
    list.into_iter()
        .map(|(id, _)| {
            let m = marks.get(&id).copied().unwrap_or(Mark::Remove);
            (id, m)
        })
        .collect()
}

/// Nova createBackup rotation: keep the newest `rotation` snapshots, remove the rest. Returns newest first.
pub fn select_rotation(list: &[(String, DateTime<Utc>)], rotation: usize) -> Vec<(String, Mark)> {
    let mut list = list.to_vec();
    list.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    list.into_iter()
        .enumerate()
        .map(|(i, (id, _))| {
            (
                id,
                if i < rotation {
                    Mark::Keep
                } else {
                    Mark::Remove
                },
            )
        })
        .collect()
}

/// Which snapshots a prune looks at (all given fields must match).
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// Server id.
    pub server: Option<String>,
    /// Kind.
    pub kind: Option<SnapshotKind>,
    /// backup_type.
    pub backup_type: Option<String>,
}

impl Selector {
    fn matches(&self, m: &ManifestBody) -> bool {
        self.server
            .as_ref()
            .is_none_or(|s| m.meta.server.as_ref() == Some(s))
            && self.kind.is_none_or(|k| m.meta.kind == k)
            && self
                .backup_type
                .as_ref()
                .is_none_or(|b| m.meta.backup_type.as_ref() == Some(b))
    }
}

/// Outcome for one snapshot of a prune or rotation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PruneEntry {
    /// Snapshot id.
    pub id: String,
    /// Keep or remove.
    pub mark: Mark,
    /// Set when a removal was refused or failed (e.g. the parent of a running backup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn created(m: &ManifestBody) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(&m.created_at)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            Error::Corrupt(format!(
                "snapshot {}: created_at {:?}: {e}",
                m.id, m.created_at
            ))
        })
}

/// A prune group: kind, server, backup_type.
type Group = (SnapshotKind, Option<String>, Option<String>);

impl DataStore {
    fn apply(&self, marks: Vec<(String, Mark)>, dry_run: bool) -> Vec<PruneEntry> {
        marks
            .into_iter()
            .map(|(id, mark)| {
                let error = if mark == Mark::Remove && !dry_run {
                    self.delete_snapshot(&id).err().map(|e| e.to_string())
                } else {
                    None
                };
                PruneEntry { id, mark, error }
            })
            .collect()
    }

    /// Prune per group (kind, server, backup_type) among the selected snapshots.
    pub fn prune(
        &self,
        sel: &Selector,
        keep: &KeepOptions,
        dry_run: bool,
    ) -> Result<Vec<PruneEntry>, Error> {
        let mut groups: HashMap<Group, Vec<(String, DateTime<Utc>)>> = HashMap::new();
        for m in self.snapshots()?.into_iter().filter(|m| sel.matches(m)) {
            let t = created(&m)?;
            groups
                .entry((
                    m.meta.kind,
                    m.meta.server.clone(),
                    m.meta.backup_type.clone(),
                ))
                .or_default()
                .push((m.id, t));
        }
        let mut keys: Vec<_> = groups.keys().cloned().collect();
        keys.sort();
        let mut out = Vec::new();
        for k in keys {
            out.extend(self.apply(select_prune(&groups[&k], keep), dry_run));
        }
        Ok(out)
    }

    /// Nova createBackup rotation: of the server's `kind=backup` snapshots with this backup_type keep the
    /// newest `rotation`.
    pub fn rotate(
        &self,
        server: &str,
        backup_type: &str,
        rotation: usize,
        dry_run: bool,
    ) -> Result<Vec<PruneEntry>, Error> {
        let sel = Selector {
            server: Some(server.to_string()),
            kind: Some(SnapshotKind::Backup),
            backup_type: Some(backup_type.to_string()),
        };
        let mut list = Vec::new();
        for m in self.snapshots()?.into_iter().filter(|m| sel.matches(m)) {
            list.push((m.id.clone(), created(&m)?));
        }
        Ok(self.apply(select_rotation(&list, rotation), dry_run))
    }
}
