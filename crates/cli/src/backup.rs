//! `lifeboat backup …`: work directly on a snapshot store (a directory or an S3 bucket), with progress bars
//! and `--output json`. Format: docs/snapstore.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lifeboat_datastore::backup::{BackupRequest, DiskReader, DiskSource, FileReader, Progress};
use lifeboat_datastore::gc::GcOptions;
use lifeboat_datastore::nbd::NbdReader;
use lifeboat_datastore::prune::{KeepOptions, Selector};
use lifeboat_datastore::qsd::QsdExport;
use lifeboat_datastore::restore::RestoreFormat;
use lifeboat_datastore::{
    BackendRef, DataStore, FsBackend, S3Backend, S3Config, SnapshotKind, SnapshotMeta,
};
use serde_json::{json, Value};

use crate::output::{print_list, print_object};
use crate::OutputFormat;

/// Where the store is and how to open it.
#[derive(Debug, Clone, Args)]
pub struct StoreOpts {
    /// Store directory (default backend).
    #[arg(long, env = "LIFEBOAT_BACKUP_STORE", global = true)]
    pub store: Option<PathBuf>,
    /// S3 endpoint URL instead of a directory (with --s3-bucket; credentials from AWS_ACCESS_KEY_ID /
    /// AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "LIFEBOAT_BACKUP_S3_ENDPOINT", global = true)]
    pub s3_endpoint: Option<String>,
    /// S3 bucket.
    #[arg(long, env = "LIFEBOAT_BACKUP_S3_BUCKET", global = true)]
    pub s3_bucket: Option<String>,
    /// Key file (encrypted stores). Never keep it in the store.
    #[arg(long, env = "LIFEBOAT_BACKUP_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// Chunk size in KiB for a new store.
    #[arg(long, default_value_t = 1024, global = true)]
    pub chunk_kib: u64,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
    pub output: OutputFormat,
}

/// `lifeboat backup` subcommands.
#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Back up disks: `--disk vda=/path/disk.qcow2` (qcow2 is read through qemu-storage-daemon).
    Create(CreateArgs),
    /// List snapshots.
    List,
    /// Show one snapshot's manifest.
    Show {
        /// Snapshot id.
        id: String,
    },
    /// Restore one disk of a snapshot into a new file.
    Restore(RestoreArgs),
    /// Delete a snapshot (its chunks go at the next gc).
    Delete {
        /// Snapshot id.
        id: String,
    },
    /// Re-hash every chunk; report which snapshots a damaged chunk breaks.
    Verify,
    /// Apply keep-* rules (per kind, server, backup_type).
    Prune(PruneArgs),
    /// Remove chunks no snapshot references.
    Gc {
        /// Keep unreferenced chunks younger than this many seconds.
        #[arg(long, default_value_t = 600)]
        grace_secs: u64,
        /// Only report.
        #[arg(long)]
        dry_run: bool,
    },
    /// Key files.
    #[command(subcommand)]
    Key(KeyCmd),
}

/// `lifeboat backup key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Create a new key file (mode 0600; refuses to overwrite).
    Create {
        /// Where to write it.
        path: PathBuf,
    },
}

/// `lifeboat backup create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// `NAME=PATH` of a raw file, block device or qcow2 image (repeatable).
    #[arg(long = "disk", required = true)]
    pub disks: Vec<String>,
    /// Parent snapshot: unchanged chunks are found by hashing against it.
    #[arg(long)]
    pub parent: Option<String>,
    /// Kind: backup, image, shelve, dr, manager.
    #[arg(long, default_value = "backup")]
    pub kind: String,
    /// Server id.
    #[arg(long)]
    pub server: Option<String>,
    /// Nova backup_type (rotation group).
    #[arg(long)]
    pub backup_type: Option<String>,
    /// Keep only this many snapshots of the server's backup_type afterwards (Nova createBackup rotation).
    #[arg(long, requires_all = ["server", "backup_type"])]
    pub rotation: Option<usize>,
}

/// `lifeboat backup restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id.
    pub id: String,
    /// Disk name.
    #[arg(long, default_value = "vda")]
    pub disk: String,
    /// New file to write.
    #[arg(long)]
    pub to: PathBuf,
    /// raw or qcow2.
    #[arg(long, default_value = "qcow2")]
    pub format: String,
}

/// `lifeboat backup prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only this server.
    #[arg(long)]
    pub server: Option<String>,
    /// Only this kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this backup_type.
    #[arg(long)]
    pub backup_type: Option<String>,
    #[arg(long, default_value_t = 0)]
    /// Keep the newest N.
    pub keep_last: usize,
    #[arg(long, default_value_t = 0)]
    /// Keep one per hour for N hours.
    pub keep_hourly: usize,
    #[arg(long, default_value_t = 0)]
    /// Keep one per day for N days.
    pub keep_daily: usize,
    #[arg(long, default_value_t = 0)]
    /// Keep one per ISO week for N weeks.
    pub keep_weekly: usize,
    #[arg(long, default_value_t = 0)]
    /// Keep one per month for N months.
    pub keep_monthly: usize,
    #[arg(long, default_value_t = 0)]
    /// Keep one per year for N years.
    pub keep_yearly: usize,
    /// Only report.
    #[arg(long)]
    pub dry_run: bool,
}

fn open(o: &StoreOpts) -> Result<DataStore> {
    let backend: BackendRef = match (&o.store, &o.s3_endpoint) {
        (Some(dir), None) => Arc::new(FsBackend::open(dir)?),
        (None, Some(ep)) => Arc::new(S3Backend::open(&S3Config {
            endpoint: ep.clone(),
            bucket: o
                .s3_bucket
                .clone()
                .context("--s3-bucket is needed with --s3-endpoint")?,
            prefix: String::new(),
            region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
            access_key: std::env::var("AWS_ACCESS_KEY_ID")
                .context("AWS_ACCESS_KEY_ID is not set")?,
            secret_key: std::env::var("AWS_SECRET_ACCESS_KEY")
                .context("AWS_SECRET_ACCESS_KEY is not set")?,
        })?),
        (Some(_), Some(_)) => bail!("give either --store or --s3-endpoint, not both"),
        (None, None) => {
            bail!("no store: give --store DIR (or LIFEBOAT_BACKUP_STORE) or --s3-endpoint")
        }
    };
    let key = o
        .key
        .as_deref()
        .map(lifeboat_datastore::load_key)
        .transpose()?;
    Ok(DataStore::open(backend, key, o.chunk_kib << 10)?)
}

fn bar(fmt: OutputFormat) -> ProgressBar {
    if fmt == OutputFormat::Json {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>6} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

fn on_progress(pb: &ProgressBar) -> impl Fn(&Progress) + Sync + '_ {
    move |p: &Progress| {
        pb.set_message(p.disk.clone());
        pb.set_length(p.total);
        pb.set_position(p.done);
    }
}

fn is_qcow2(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    Ok(f.read(&mut magic)? == 4 && &magic == b"QFI\xfb")
}

/// Run a `lifeboat backup` command.
pub fn run(o: StoreOpts, cmd: BackupCmd) -> Result<()> {
    let fmt = o.output;
    if let BackupCmd::Key(KeyCmd::Create { path }) = &cmd {
        let k = lifeboat_datastore::create_key(path)?;
        print_object(
            fmt,
            &json!({"key_file": path.display().to_string(), "fingerprint": k.fingerprint()}),
        );
        return Ok(());
    }
    let ds = open(&o)?;
    match cmd {
        BackupCmd::Key(_) => unreachable!("handled above"),
        BackupCmd::Create(a) => {
            let mut meta = SnapshotMeta::new(a.kind.parse::<SnapshotKind>()?);
            meta.server = a.server.clone();
            meta.backup_type = a.backup_type.clone();
            let mut exports = Vec::new();
            let mut disks = Vec::new();
            for d in &a.disks {
                let (name, path) = d.split_once('=').context("--disk takes NAME=PATH")?;
                let path = PathBuf::from(path);
                let reader: Arc<dyn DiskReader> = if is_qcow2(&path)? {
                    let q = QsdExport::start(&path, "qcow2", &[], false)?;
                    let r = NbdReader::connect(&q.addr(), &q.name, 2)?;
                    exports.push(q);
                    Arc::new(r)
                } else {
                    Arc::new(
                        FileReader::open(&path)
                            .with_context(|| format!("open {}", path.display()))?,
                    )
                };
                disks.push(DiskSource {
                    name: name.to_string(),
                    reader,
                    dirty: None,
                });
            }
            let pb = bar(fmt);
            let m = ds.backup(
                BackupRequest {
                    meta,
                    parent: a.parent.clone(),
                    disks,
                },
                &on_progress(&pb),
            )?;
            pb.finish_and_clear();
            drop(exports);
            let mut out = serde_json::to_value(&m)?;
            if let (Some(n), Some(s), Some(t)) = (a.rotation, &a.server, &a.backup_type) {
                out["rotation"] = serde_json::to_value(ds.rotate(s, t, n, false)?)?;
            }
            print_object(fmt, &out);
        }
        BackupCmd::List => {
            let rows: Vec<Value> = ds
                .snapshots()?
                .into_iter()
                .map(|m| {
                    let size: u64 = m.disks.iter().map(|d| d.size).sum();
                    json!({"id": m.id, "kind": m.meta.kind.as_str(), "server": m.meta.server, "backup_type": m.meta.backup_type,
                           "created_at": m.created_at, "parent": m.parent, "disks": m.disks.iter().map(|d| d.name.clone()).collect::<Vec<_>>(), "size": size})
                })
                .collect();
            print_list(
                fmt,
                &rows,
                &[
                    ("ID", "/id"),
                    ("KIND", "/kind"),
                    ("SERVER", "/server"),
                    ("TYPE", "/backup_type"),
                    ("CREATED", "/created_at"),
                    ("DISKS", "/disks"),
                    ("SIZE", "/size"),
                ],
            );
        }
        BackupCmd::Show { id } => print_object(fmt, &serde_json::to_value(ds.manifest(&id)?)?),
        BackupCmd::Restore(a) => {
            let format = match a.format.as_str() {
                "raw" => RestoreFormat::Raw,
                "qcow2" => RestoreFormat::Qcow2,
                f => bail!("--format {f}: raw or qcow2"),
            };
            let pb = bar(fmt);
            let r = ds.restore_disk(&a.id, &a.disk, &a.to, format, &on_progress(&pb))?;
            pb.finish_and_clear();
            let mut v = serde_json::to_value(r)?;
            v["path"] = json!(a.to.display().to_string());
            print_object(fmt, &v);
        }
        BackupCmd::Delete { id } => {
            ds.delete_snapshot(&id)?;
            print_object(fmt, &json!({"deleted": id}));
        }
        BackupCmd::Verify => {
            let r = ds.verify(None)?;
            print_object(fmt, &serde_json::to_value(&r)?);
            if !r.ok() {
                bail!("{} snapshot(s) damaged", r.broken_snapshots.len());
            }
        }
        BackupCmd::Prune(a) => {
            let sel = Selector {
                server: a.server,
                kind: a.kind.as_deref().map(str::parse).transpose()?,
                backup_type: a.backup_type,
            };
            let keep = KeepOptions {
                last: a.keep_last,
                hourly: a.keep_hourly,
                daily: a.keep_daily,
                weekly: a.keep_weekly,
                monthly: a.keep_monthly,
                yearly: a.keep_yearly,
            };
            if !keep.any() {
                bail!("give at least one --keep-* rule");
            }
            let rows: Vec<Value> = ds
                .prune(&sel, &keep, a.dry_run)?
                .into_iter()
                .map(|e| serde_json::to_value(e).expect("json"))
                .collect();
            print_list(
                fmt,
                &rows,
                &[("ID", "/id"), ("MARK", "/mark"), ("ERROR", "/error")],
            );
        }
        BackupCmd::Gc {
            grace_secs,
            dry_run,
        } => {
            let r = ds.gc(&GcOptions {
                grace: Duration::from_secs(grace_secs),
                dry_run,
                ..Default::default()
            })?;
            print_object(fmt, &serde_json::to_value(r)?);
        }
    }
    Ok(())
}
