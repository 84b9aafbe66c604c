//! Backup benchmark: Lifeboat's snapshot store beside restic and borg on one disk image.
//!
//! Builds a disk image (default 4 GiB) of random, log-like compressible and zero regions of 4–32 MiB as the raw
//! data file of a qcow2 (`data_file_raw=on`) with a persistent dirty bitmap, so restic, borg and `dd` read the
//! same plain file while writes go through QEMU (`qemu-storage-daemon`, written over NBD) and the bitmap records
//! them. In one run it prints, for Lifeboat, restic and borg: full backup time, incremental after 5% rewritten as
//! 1 MiB extents, incremental after 5% rewritten as scattered 4 KiB blocks, restore time, stored sizes; the `dd`
//! read rate; Lifeboat's incremental without a bitmap (hash mode); and instant restore's time until the restored
//! disk answers a booting VM's first reads beside the full restore's. The last line is one JSON object of ratios.
//! Asserts nothing; not run in CI.
//!
//! `cargo run --release -p lifeboat-bench --bin backup -- [--size-mib N] [--chunk-kib K] [--level L]
//!  [--plain] [--lifeboat-only] [--dir D]`

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use lifeboat_datastore::backup::{BackupRequest, DiskSource, FileReader};
use lifeboat_datastore::nbd::{dirty_extents, NbdClient, NbdReader};
use lifeboat_datastore::qsd::QsdExport;
use lifeboat_datastore::restore::RestoreFormat;
use lifeboat_datastore::{DataStore, FsBackend, ManifestBody, SnapshotKind, SnapshotMeta};
use rand::{Rng, RngCore, SeedableRng};
use rayon::prelude::*;
use serde_json::json;

const MIB: u64 = 1 << 20;

struct Opts {
    size: u64,
    chunk: u64,
    level: i32,
    encrypt: bool,
    tools: bool,
    dir: PathBuf,
}

fn parse() -> Result<Opts> {
    let mut o = Opts {
        size: 4096 * MIB,
        chunk: MIB,
        level: lifeboat_datastore::chunk_store::ZSTD_LEVEL,
        encrypt: true,
        tools: true,
        dir: std::env::temp_dir().join("lifeboat-bench-backup"),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let val = || args.get(i + 1).cloned().context("missing value");
        match args[i].as_str() {
            "--size-mib" => o.size = val()?.parse::<u64>()? * MIB,
            "--chunk-kib" => o.chunk = val()?.parse::<u64>()? << 10,
            "--level" => o.level = val()?.parse()?,
            "--dir" => o.dir = PathBuf::from(val()?),
            "--plain" => {
                o.encrypt = false;
                i -= 1;
            }
            "--lifeboat-only" => {
                o.tools = false;
                i -= 1;
            }
            a => anyhow::bail!("unknown argument {a}"),
        }
        i += 2;
    }
    Ok(o)
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
    let t = Instant::now();
    let r = f()?;
    Ok((t.elapsed().as_secs_f64(), r))
}

fn du(p: &Path) -> u64 {
    let out = Command::new("du").arg("-sb").arg(p).output().ok();
    out.and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
    .unwrap_or(0)
}

fn drop_dir(p: &Path) {
    let _ = std::fs::remove_dir_all(p);
}

/// Fill one region with log-like text.
fn text(buf: &mut [u8], rng: &mut rand::rngs::StdRng) {
    const MSGS: [&str; 8] = [
        "sshd: Accepted publickey for deploy from 10.0.3.17 port 52214 ssh2",
        "kernel: EXT4-fs (vda1): re-mounted. Opts: errors=remount-ro",
        "nginx: 192.168.1.20 - - \"GET /api/v1/items?page=3 HTTP/1.1\" 200 5123",
        "postgres: LOG:  checkpoint complete: wrote 913 buffers (5.6%)",
        "systemd: Started Session 4213 of user app.",
        "cron: (root) CMD (run-parts /etc/cron.hourly)",
        "app: INFO request_id=8f3a2 user=42 latency_ms=17 status=ok",
        "dockerd: level=info msg=\"Container health status changed\" status=healthy",
    ];
    let mut pos = 0;
    let mut line = Vec::with_capacity(160);
    while pos < buf.len() {
        line.clear();
        let t: u32 = rng.gen_range(0..86_400);
        use std::io::Write;
        let _ = writeln!(
            line,
            "2026-11-{:02}T{:02}:{:02}:{:02}.{:03}Z host-{:02} {}[{}]: {}",
            rng.gen_range(1..30),
            t / 3600,
            t / 60 % 60,
            t % 60,
            rng.gen_range(0..1000),
            rng.gen_range(0..40),
            rng.gen_range(1000..99_999),
            rng.gen_range(1..65_000),
            MSGS[rng.gen_range(0..MSGS.len())]
        );
        let n = line.len().min(buf.len() - pos);
        buf[pos..pos + n].copy_from_slice(&line[..n]);
        pos += n;
    }
}

/// Write the realistic image content into `raw` (which already has its size): regions of 4–32 MiB, about 35%
/// random, 35% text, 30% zeros.
fn fill_image(raw: &Path, size: u64) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let mut regions = Vec::new();
    let mut pos = 0;
    while pos < size {
        let len = (rng.gen_range(4..=32) * MIB).min(size - pos);
        let r: f64 = rng.gen();
        let kind = if r < 0.35 {
            0
        } else if r < 0.70 {
            1
        } else {
            2
        };
        regions.push((pos, len, kind, rng.gen::<u64>()));
        pos += len;
    }
    let f = std::fs::OpenOptions::new().write(true).open(raw)?;
    regions
        .par_iter()
        .try_for_each(|&(off, len, kind, seed)| -> Result<()> {
            if kind == 2 {
                return Ok(());
            }
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut buf = vec![0u8; len as usize];
            if kind == 0 {
                rng.fill_bytes(&mut buf);
            } else {
                text(&mut buf, &mut rng);
            }
            f.write_all_at(&buf, off)?;
            Ok(())
        })?;
    f.sync_all()?;
    Ok(())
}

/// Rewrite 5% of the disk through QEMU over NBD, as `len`-byte blocks at random 4 KiB-aligned offsets.
fn rewrite(qsd: &QsdExport, size: u64, len: usize, seed: u64) -> Result<usize> {
    let mut c = NbdClient::connect(&qsd.addr(), &qsd.name, None)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let count = (size / 20) as usize / len;
    let mut buf = vec![0u8; len];
    for _ in 0..count {
        let off = rng.gen_range(0..(size - len as u64) / 4096) * 4096;
        rng.fill_bytes(&mut buf);
        c.write_at(&buf, off)?;
    }
    c.flush()?;
    c.disconnect();
    Ok(count)
}

/// Instant restore as a host does it (`hypervisor/src/qemu/instant.rs`): the snapshot's disk is
/// served over NBD from the store (`nbd_server::NbdServer`, chunks fetched on demand), an empty
/// qcow2 is made with that export as its backing and opened by QEMU (`qemu-storage-daemon`
/// standing in for the VM's QEMU); timed from the start until it has answered a booting VM's
/// first reads: the first MiB and 32 scattered 64 KiB reads. Returns (seconds, whether the
/// bytes equal the disk's, reads).
fn instant_first_reads(
    ds: &DataStore,
    snap: &str,
    disk: &str,
    size: u64,
    dir: &Path,
    raw: &Path,
) -> Result<(f64, bool, usize)> {
    use lifeboat_datastore::DiskReader;
    let sock = dir.join("instant.sock");
    let top = dir.join("instant-top.qcow2");
    let t0 = Instant::now();
    let srv =
        lifeboat_datastore::nbd_server::NbdServer::start(ds.clone(), snap, disk, &sock, "root")?;
    let backing = format!(
        r#"json:{{"file":{{"driver":"nbd","server":{{"type":"unix","path":"{}"}},"export":"root"}}}}"#,
        sock.display()
    );
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b", &backing])
        .arg(&top)
        .arg(size.to_string()))?;
    let qsd = QsdExport::start(&top, "qcow2", &[], false)?;
    let r = NbdReader::connect(&qsd.addr(), &qsd.name, 1)?;
    let mut reads = vec![(0u64, vec![0u8; MIB as usize])];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..32 {
        reads.push((rng.gen_range(0..size / 65536) * 65536, vec![0u8; 64 << 10]));
    }
    for (off, buf) in reads.iter_mut() {
        r.read_at(buf, *off)?;
    }
    let t = t0.elapsed().as_secs_f64();
    let f = std::fs::File::open(raw)?;
    let ok = reads.iter().all(|(off, data)| {
        let mut want = vec![0u8; data.len()];
        f.read_exact_at(&mut want, *off).is_ok() && &want == data
    });
    drop(r);
    qsd.stop()?;
    srv.stop();
    let _ = std::fs::remove_file(&top);
    Ok((t, ok, reads.len()))
}

struct Lb {
    ds: DataStore,
    dir: PathBuf,
}

fn lb_meta() -> SnapshotMeta {
    let mut m = SnapshotMeta::new(SnapshotKind::Backup);
    m.server = Some("bench".into());
    m.backup_type = Some("daily".into());
    m
}

impl Lb {
    fn full(&self, raw: &Path) -> Result<ManifestBody> {
        let reader = Arc::new(FileReader::open(raw)?);
        Ok(self.ds.backup(
            BackupRequest {
                meta: lb_meta(),
                parent: None,
                disks: vec![DiskSource {
                    name: "vda".into(),
                    reader,
                    dirty: None,
                }],
            },
            &|_| {},
        )?)
    }

    /// Incremental from the QEMU dirty bitmap, read over NBD (block status + reads of the dirty chunks).
    fn bitmap_incr(&self, qsd: &QsdExport, parent: &str) -> Result<ManifestBody> {
        let dirty = dirty_extents(&qsd.addr(), &qsd.name, "bm0")?;
        let reader = Arc::new(NbdReader::connect(&qsd.addr(), &qsd.name, 2)?);
        Ok(self.ds.backup(
            BackupRequest {
                meta: lb_meta(),
                parent: Some(parent.into()),
                disks: vec![DiskSource {
                    name: "vda".into(),
                    reader,
                    dirty: Some(dirty),
                }],
            },
            &|_| {},
        )?)
    }

    fn hash_incr(&self, raw: &Path, parent: &str) -> Result<ManifestBody> {
        let reader = Arc::new(FileReader::open(raw)?);
        Ok(self.ds.backup(
            BackupRequest {
                meta: lb_meta(),
                parent: Some(parent.into()),
                disks: vec![DiskSource {
                    name: "vda".into(),
                    reader,
                    dirty: None,
                }],
            },
            &|_| {},
        )?)
    }
}

fn restic(repo: &Path, args: &[&str], cwd: Option<&Path>) -> Result<()> {
    let mut c = Command::new("restic");
    c.arg("-r")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD", "bench")
        .env("RESTIC_CACHE_DIR", repo.with_extension("cache"));
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    run(&mut c)
}

fn borg(args: &[&str], cwd: &Path) -> Result<()> {
    run(Command::new("borg")
        .args(args)
        .current_dir(cwd)
        .env("BORG_PASSPHRASE", "bench")
        .env("BORG_BASE_DIR", cwd.join("borg-home"))
        .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
        .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes"))
}

fn same_file(a: &Path, b: &Path) -> Result<bool> {
    let (fa, fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (la, lb) = (fa.metadata()?.len(), fb.metadata()?.len());
    if la != lb {
        return Ok(false);
    }
    let mut off = 0u64;
    let mut ba = vec![0u8; 8 << 20];
    let mut bb = vec![0u8; 8 << 20];
    while off < la {
        let n = ((la - off) as usize).min(ba.len());
        fa.read_exact_at(&mut ba[..n], off)?;
        fb.read_exact_at(&mut bb[..n], off)?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
        off += n as u64;
    }
    Ok(true)
}

fn gb(b: u64) -> String {
    format!("{:.2} GB", b as f64 / 1e9)
}

fn main() -> Result<()> {
    let o = parse()?;
    for tool in ["qemu-img", "qemu-storage-daemon"]
        .iter()
        .chain(if o.tools {
            ["restic", "borg"].iter()
        } else {
            [].iter()
        })
    {
        ensure!(
            Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output()?.status.success(),
            "{tool} is not installed (apt-get install qemu-utils qemu-system-x86 restic borgbackup)"
        );
    }
    drop_dir(&o.dir);
    std::fs::create_dir_all(&o.dir)?;
    let d = &o.dir;
    let raw = d.join("disk.raw");
    let qcow = d.join("disk.qcow2");
    println!(
        "# backup bench: {} MiB image, chunk {} KiB, zstd level {}, encrypted {}, {} cores",
        o.size / MIB,
        o.chunk >> 10,
        o.level,
        o.encrypt,
        rayon::current_num_threads()
    );
    let (t, ()) = timed(|| {
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-o"])
            .arg(format!("data_file={},data_file_raw=on", raw.display()))
            .arg(&qcow)
            .arg(o.size.to_string()))?;
        fill_image(&raw, o.size)?;
        run(Command::new("qemu-img")
            .args(["bitmap", "--add"])
            .arg(&qcow)
            .arg("bm0"))
    })?;
    println!("image built in {t:.1} s ({} on disk)", gb(du(&raw)));

    // dd read rate (warm: read once first, as every tool below reads from the page cache too).
    run(Command::new("dd")
        .arg(format!("if={}", raw.display()))
        .args(["of=/dev/null", "bs=4M"]))?;
    let (t_dd, ()) = timed(|| {
        run(Command::new("dd")
            .arg(format!("if={}", raw.display()))
            .args(["of=/dev/null", "bs=4M"]))
    })?;
    let dd_rate = o.size as f64 / t_dd;
    println!("dd read: {t_dd:.2} s = {:.2} GB/s", dd_rate / 1e9);

    // Lifeboat full.
    let store = d.join("lifeboat");
    let key = if o.encrypt {
        Some(lifeboat_datastore::create_key(&d.join("lifeboat.key"))?)
    } else {
        None
    };
    let mut ds = DataStore::open(Arc::new(FsBackend::open(&store)?), key, o.chunk)?;
    ds.set_compression_level(o.level);
    let lb = Lb {
        ds,
        dir: store.clone(),
    };
    let (lb_full_t, full) = timed(|| lb.full(&raw))?;
    let lb_full_size = du(&lb.dir);
    println!(
        "lifeboat full: {lb_full_t:.2} s ({:.2} GB/s), store {}",
        o.size as f64 / lb_full_t / 1e9,
        gb(lb_full_size)
    );

    let (mut restic_full_t, mut borg_full_t, mut restic_full_size, mut borg_full_size) =
        (f64::NAN, f64::NAN, 0, 0);
    let restic_repo = d.join("restic");
    let borg_repo = d.join("borg");
    if o.tools {
        restic(&restic_repo, &["init", "--repository-version", "2"], None)?;
        let (t, ()) = timed(|| restic(&restic_repo, &["backup", "disk.raw"], Some(d)))?;
        restic_full_t = t;
        restic_full_size = du(&restic_repo);
        println!("restic full: {t:.2} s, repo {}", gb(restic_full_size));
        borg(&["init", "-e", "repokey", "borg"], d)?;
        let (t, ()) = timed(|| borg(&["create", "borg::full", "disk.raw"], d))?;
        borg_full_t = t;
        borg_full_size = du(&borg_repo);
        println!("borg full: {t:.2} s, repo {}", gb(borg_full_size));
    }

    // 5% as 1 MiB extents through QEMU; the persistent bitmap records them.
    let mut rows = Vec::new();
    let mut parent = full.id.clone();
    let mut lb_incr_t = Vec::new();
    for (round, len) in [(1, MIB as usize), (2, 4096)] {
        let qsd = QsdExport::start(&qcow, "qcow2", &["bm0"], true)?;
        let n = rewrite(&qsd, o.size, len, 100 + round)?;
        let before = du(&lb.dir);
        let (t_inc, inc) = timed(|| lb.bitmap_incr(&qsd, &parent))?;
        qsd.stop()?;
        let added = du(&lb.dir).saturating_sub(before);
        let what = if len == 4096 {
            "scattered 4 KiB blocks"
        } else {
            "1 MiB extents"
        };
        println!(
            "5% as {what} ({n} writes via qemu-storage-daemon/NBD): lifeboat bitmap incremental {t_inc:.2} s, read {}, +{}",
            gb(inc.disks[0].read_bytes),
            gb(added)
        );
        let (t_hash, _h) = timed(|| lb.hash_incr(&raw, &parent))?;
        println!(
            "  lifeboat without bitmap (hash incremental of the detached file): {t_hash:.2} s"
        );
        lb_incr_t.push(t_inc);
        let (mut rt, mut bt, mut rs, mut bs) = (f64::NAN, f64::NAN, 0, 0);
        if o.tools {
            let before = du(&restic_repo);
            rt = timed(|| restic(&restic_repo, &["backup", "disk.raw"], Some(d)))?.0;
            rs = du(&restic_repo).saturating_sub(before);
            let before = du(&borg_repo);
            bt = timed(|| borg(&["create", &format!("borg::inc{round}"), "disk.raw"], d))?.0;
            bs = du(&borg_repo).saturating_sub(before);
            println!(
                "  restic {rt:.2} s, +{}; borg {bt:.2} s, +{}",
                gb(rs),
                gb(bs)
            );
        }
        rows.push(json!({"pattern": what, "lifeboat_s": t_inc, "lifeboat_hash_s": t_hash, "lifeboat_added": added, "restic_s": rt, "restic_added": rs, "borg_s": bt, "borg_added": bs}));
        parent = inc.id.clone();
        // The next incremental is relative to this backup: start a new bitmap generation.
        run(Command::new("qemu-img")
            .args(["bitmap", "--clear"])
            .arg(&qcow)
            .arg("bm0"))?;
    }

    // Restores of the last snapshot.
    let out = d.join("restore.raw");
    let (lb_restore_t, _) = timed(|| {
        Ok(lb
            .ds
            .restore_disk(&parent, "vda", &out, RestoreFormat::Raw, &|_| {})?)
    })?;
    let ok = same_file(&out, &raw)?;
    println!(
        "lifeboat restore: {lb_restore_t:.2} s ({:.2} GB/s), identical to the disk: {ok}",
        o.size as f64 / lb_restore_t / 1e9
    );
    let _ = std::fs::remove_file(&out);
    let (mut restic_restore_t, mut borg_restore_t) = (f64::NAN, f64::NAN);
    if o.tools {
        let rdir = d.join("restic-restore");
        restic_restore_t = timed(|| {
            restic(
                &restic_repo,
                &["restore", "latest", "--target", rdir.to_str().unwrap()],
                Some(d),
            )
        })?
        .0;
        drop_dir(&rdir);
        let bdir = d.join("borg-restore");
        std::fs::create_dir_all(&bdir)?;
        borg_restore_t = timed(|| {
            run(Command::new("borg")
                .args(["extract", &format!("{}::inc2", borg_repo.display())])
                .current_dir(&bdir)
                .env("BORG_PASSPHRASE", "bench")
                .env("BORG_BASE_DIR", d.join("borg-home")))
        })?
        .0;
        drop_dir(&bdir);
        println!("restic restore: {restic_restore_t:.2} s; borg restore: {borg_restore_t:.2} s");
    }
    // Instant restore of the same snapshot, as a host does it.
    let (instant_t, instant_ok, instant_reads) =
        instant_first_reads(&lb.ds, &parent, "vda", o.size, d, &raw)?;
    println!(
        "lifeboat instant restore: the restored disk answered a booting VM's first reads ({instant_reads} reads) \
         after {instant_t:.3} s (full restore {lb_restore_t:.2} s: {:.4} of it), data correct: {instant_ok}",
        instant_t / lb_restore_t
    );
    println!(
        "stored after full: lifeboat {}, restic {}, borg {}; after both incrementals: lifeboat {}, restic {}, borg {}",
        gb(lb_full_size),
        gb(restic_full_size),
        gb(borg_full_size),
        gb(du(&lb.dir)),
        gb(du(&restic_repo)),
        gb(du(&borg_repo))
    );
    let r = |x: f64| {
        if x.is_finite() {
            json!((x * 1000.0).round() / 1000.0)
        } else {
            json!(null)
        }
    };
    let summary = json!({
        "full_vs_restic": r(restic_full_t / lb_full_t),
        "full_vs_borg": r(borg_full_t / lb_full_t),
        "full_vs_dd_read": r((o.size as f64 / lb_full_t) / dd_rate),
        "incr_1m_vs_full": r(lb_incr_t[0] / lb_full_t),
        "incr_4k_vs_full": r(lb_incr_t[1] / lb_full_t),
        "restore_vs_restic": r(restic_restore_t / lb_restore_t),
        "instant_vs_full_restore": r(instant_t / lb_restore_t),
        "detail": {"lifeboat_full_s": lb_full_t, "restic_full_s": restic_full_t, "borg_full_s": borg_full_t, "dd_s": t_dd,
                   "lifeboat_restore_s": lb_restore_t, "lifeboat_instant_first_reads_s": instant_t, "restic_restore_s": restic_restore_t, "borg_restore_s": borg_restore_t,
                   "chunk_kib": o.chunk >> 10, "zstd_level": o.level, "encrypted": o.encrypt, "incrementals": rows},
    });
    drop_dir(&o.dir);
    println!("{summary}");
    Ok(())
}
