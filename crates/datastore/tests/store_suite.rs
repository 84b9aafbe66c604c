//! The store suite, run on the filesystem backend and on a real S3 server (moto on 127.0.0.1).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{make_disk, random_writes, Env, Kind};
use lifeboat_datastore::backup::{BackupRequest, DiskReader, DiskSource, FileReader};
use lifeboat_datastore::chunk_store::{chunk_key, ZERO_ID};
use lifeboat_datastore::gc::GcOptions;
use lifeboat_datastore::restore::RestoreFormat;
use lifeboat_datastore::{create_key, DataStore, Error, ManifestBody, SnapshotKind, SnapshotMeta};

fn meta(server: &str) -> SnapshotMeta {
    let mut m = SnapshotMeta::new(SnapshotKind::Backup);
    m.server = Some(server.into());
    m.backup_type = Some("daily".into());
    m.flavor = Some("m1.small".into());
    m.ports = vec![serde_json::json!({"id": "p1", "mac": "fa:16:3e:00:00:01"})];
    m
}

fn backup_file(
    ds: &DataStore,
    path: &std::path::Path,
    parent: Option<&str>,
    dirty: Option<Vec<lifeboat_datastore::Extent>>,
) -> ManifestBody {
    let reader = Arc::new(FileReader::open(path).unwrap());
    ds.backup(
        BackupRequest {
            meta: meta("srv-1"),
            parent: parent.map(str::to_string),
            disks: vec![DiskSource {
                name: "vda".into(),
                reader,
                dirty,
            }],
        },
        &|_| {},
    )
    .unwrap()
}

fn restore_bytes(env: &Env, ds: &DataStore, id: &str, name: &str) -> Vec<u8> {
    let out = env.path(name);
    ds.restore_disk(id, "vda", &out, RestoreFormat::Raw, &|_| {})
        .unwrap();
    std::fs::read(out).unwrap()
}

/// Compare two disks without printing megabytes on failure.
fn same(a: &[u8], b: &[u8], what: &str) {
    let first = a.iter().zip(b).position(|(x, y)| x != y);
    assert!(
        a.len() == b.len() && first.is_none(),
        "{what}: lengths {} vs {}, first difference at {first:?}",
        a.len(),
        b.len()
    );
}

fn chunk_objects(ds: &DataStore) -> usize {
    ds.backend().list("chunks/").unwrap().len()
}

fn round_trip(kind: Kind) {
    let env = Env::new(kind);
    let ds = env.store(None);
    // Not a multiple of the chunk size: the last chunk is short.
    let size = 9 * (1 << 20) + 12_345;
    let disk = env.path("disk.raw");
    let data = make_disk(&disk, size, 1);
    let progress = std::sync::Mutex::new(Vec::new());
    let m = ds
        .backup(
            BackupRequest {
                meta: meta("srv-1"),
                parent: None,
                disks: vec![DiskSource {
                    name: "vda".into(),
                    reader: Arc::new(FileReader::open(&disk).unwrap()),
                    dirty: None,
                }],
            },
            &|p| progress.lock().unwrap().push((p.done, p.total)),
        )
        .unwrap();
    let p = progress.into_inner().unwrap();
    assert_eq!(
        p.last().copied(),
        Some((size, size)),
        "progress ends at total"
    );
    assert_eq!(m.disks[0].size, size);
    assert_eq!(m.disks[0].mode, "full");
    let idx = ds.index(&m, "vda").unwrap();
    let distinct: std::collections::HashSet<_> =
        idx.ids.iter().filter(|i| **i != ZERO_ID).collect();
    assert!(m.disks[0].zero_chunks > 0, "the disk has zero chunks");
    assert_eq!(
        chunk_objects(&ds),
        distinct.len(),
        "zero chunks are never stored"
    );
    same(&restore_bytes(&env, &ds, &m.id, "r1.raw"), &data, "restore");
    // Sparse: the restored file allocates less than its size (fs holes for zero chunks).
    if kind == Kind::Fs {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(env.path("r1.raw")).unwrap();
        assert!(md.blocks() * 512 < size, "restored file is sparse");
    }
    // A fully sparse disk stores nothing.
    let zero = env.path("zero.raw");
    std::fs::File::create(&zero)
        .unwrap()
        .set_len(5 << 20)
        .unwrap();
    let before = chunk_objects(&ds);
    let mz = backup_file(&ds, &zero, None, None);
    assert_eq!(chunk_objects(&ds), before);
    assert_eq!(mz.disks[0].zero_chunks, mz.disks[0].chunks);
    same(
        &restore_bytes(&env, &ds, &mz.id, "rz.raw"),
        &vec![0u8; 5 << 20],
        "zero disk",
    );
    // A second full of the same disk writes no chunk (dedup across snapshots).
    let m2 = backup_file(&ds, &disk, None, None);
    assert_eq!(m2.disks[0].new_chunks, 0);
    // qcow2 restore.
    let q = env.path("r.qcow2");
    ds.restore_disk(&m.id, "vda", &q, RestoreFormat::Qcow2, &|_| {})
        .unwrap();
    let back = env.path("back.raw");
    let st = std::process::Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(&q)
        .arg(&back)
        .status()
        .unwrap();
    assert!(st.success());
    // qcow2 sizes are whole 512-byte sectors: the odd tail is padded with zeros.
    let back = std::fs::read(back).unwrap();
    assert_eq!(back.len() as u64, size.div_ceil(512) * 512);
    same(&back[..size as usize], &data, "qcow2 restore");
    assert!(back[size as usize..].iter().all(|b| *b == 0));
    // Listing and metadata.
    assert_eq!(ds.snapshot_ids().unwrap().len(), 3);
    let got = ds.manifest(&m.id).unwrap();
    assert_eq!(got.meta, meta("srv-1"));
}

fn incremental_equals_full(kind: Kind) {
    let env = Env::new(kind);
    let ds = env.store(None);
    let disk = env.path("disk.raw");
    let mut data = make_disk(&disk, 8 << 20, 2);
    let full = backup_file(&ds, &disk, None, None);
    let dirty = random_writes(&disk, &mut data, 20, 4096, 3);
    let mut dirty2 = random_writes(&disk, &mut data, 3, 300_000, 4);
    let mut all = dirty.clone();
    all.append(&mut dirty2);
    let inc = backup_file(&ds, &disk, Some(&full.id), Some(all));
    assert_eq!(inc.disks[0].mode, "bitmap");
    assert!(
        inc.disks[0].read_bytes < (8 << 20) / 2,
        "bitmap incremental reads only dirty chunks: {}",
        inc.disks[0].read_bytes
    );
    assert_eq!(inc.parent.as_deref(), Some(full.id.as_str()));
    let hash = backup_file(&ds, &disk, Some(&full.id), None);
    assert_eq!(hash.disks[0].mode, "hash");
    let fresh = backup_file(&ds, &disk, None, None);
    let (ii, hi, fi) = (
        ds.index(&inc, "vda").unwrap(),
        ds.index(&hash, "vda").unwrap(),
        ds.index(&fresh, "vda").unwrap(),
    );
    assert_eq!(ii, fi, "bitmap incremental index equals a fresh full");
    assert_eq!(hi, fi, "hash incremental index equals a fresh full");
    same(
        &restore_bytes(&env, &ds, &inc.id, "ri.raw"),
        &data,
        "incremental restores byte for byte",
    );
    // Deleting the parent does not break the child: every snapshot is complete.
    ds.delete_snapshot(&full.id).unwrap();
    ds.gc(&GcOptions {
        grace: Duration::ZERO,
        ..Default::default()
    })
    .unwrap();
    same(
        &restore_bytes(&env, &ds, &inc.id, "ri2.raw"),
        &data,
        "restore",
    );
    // Growing the disk: the new tail is read even though no extent covers it.
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&disk)
        .unwrap();
    use std::io::Write;
    (&f).write_all(&vec![7u8; 100_000]).unwrap();
    data.extend(vec![7u8; 100_000]);
    let grown = backup_file(&ds, &disk, Some(&inc.id), Some(vec![]));
    same(
        &restore_bytes(&env, &ds, &grown.id, "rg.raw"),
        &data,
        "restore",
    );
}

fn flip_byte(ds: &DataStore, key: &str, at: usize) {
    let mut b = ds.backend().get(key).unwrap().unwrap();
    let i = at % b.len();
    b[i] ^= 0x01;
    ds.backend().put(key, &b).unwrap();
}

fn damage_detected(kind: Kind) {
    let env = Env::new(kind);
    let key = create_key(&env.path("key.json")).unwrap();
    let ds = env.store(Some(key));
    let disk = env.path("disk.raw");
    make_disk(&disk, 4 << 20, 5);
    let a = backup_file(&ds, &disk, None, None);
    let b = backup_file(&ds, &disk, Some(&a.id), None);
    let other = env.path("other.raw");
    make_disk(&other, 2 << 20, 6);
    let c = backup_file(&ds, &other, None, None);
    assert!(ds.verify(None).unwrap().ok());
    // A flipped byte anywhere in a chunk (header, nonce, ciphertext, tag) is detected.
    let idx = ds.index(&a, "vda").unwrap();
    let target = *idx.ids.iter().find(|i| **i != ZERO_ID).unwrap();
    let ck = chunk_key(&target);
    let len = ds.backend().get(&ck).unwrap().unwrap().len();
    for at in [0, 5, 9, 13, 40, len / 2, len - 1] {
        let orig = ds.backend().get(&ck).unwrap().unwrap();
        flip_byte(&ds, &ck, at);
        let r = ds.verify(None).unwrap();
        assert_eq!(r.damaged_chunks.len(), 1, "flip at {at}");
        let broken: Vec<_> = r.broken_snapshots.iter().cloned().collect();
        let mut want = vec![a.id.clone(), b.id.clone()];
        want.sort();
        assert_eq!(broken, want, "exactly the snapshots that use the chunk");
        assert!(r.damaged_chunks[0]
            .snapshots
            .iter()
            .all(|s| s.ends_with("/vda")));
        let e = ds
            .restore_disk(
                &b.id,
                "vda",
                &env.path(&format!("bad{at}.raw")),
                RestoreFormat::Raw,
                &|_| {},
            )
            .unwrap_err();
        assert!(matches!(e, Error::Corrupt(_)), "{e}");
        assert!(
            !env.path(&format!("bad{at}.raw")).exists(),
            "partial restore is removed"
        );
        ds.backend().put(&ck, &orig).unwrap();
    }
    // A flipped byte in a manifest or an index.
    let mk = format!("snapshots/{}/manifest.json", c.id);
    let raw = ds.backend().get(&mk).unwrap().unwrap();
    for at in (0..raw.len()).step_by(raw.len() / 23 + 1) {
        flip_byte(&ds, &mk, at);
        let r = ds.verify(None).unwrap();
        let changed = ds.backend().get(&mk).unwrap().unwrap();
        // Some flips only change JSON whitespace or quoting style (still the same content).
        if ds.manifest(&c.id).is_ok() {
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&changed).ok(),
                serde_json::from_slice::<serde_json::Value>(&raw).ok(),
                "flip at {at} went unnoticed"
            );
        } else {
            assert!(r.broken_snapshots.contains(&c.id), "flip at {at}");
            assert!(ds
                .restore_disk(
                    &c.id,
                    "vda",
                    &env.path("m.raw"),
                    RestoreFormat::Raw,
                    &|_| {}
                )
                .is_err());
        }
        ds.backend().put(&mk, &raw).unwrap();
    }
    let ik = format!("snapshots/{}/vda.fidx", c.id);
    for at in [0, 8, 30, 33, 100] {
        let orig = ds.backend().get(&ik).unwrap().unwrap();
        flip_byte(&ds, &ik, at);
        let r = ds.verify(None).unwrap();
        assert_eq!(r.broken_snapshots.iter().collect::<Vec<_>>(), vec![&c.id]);
        assert!(ds
            .restore_disk(
                &c.id,
                "vda",
                &env.path("i.raw"),
                RestoreFormat::Raw,
                &|_| {}
            )
            .is_err());
        ds.backend().put(&ik, &orig).unwrap();
    }
    assert!(ds.verify(None).unwrap().ok());
    // A missing chunk too.
    ds.backend().delete(&ck).unwrap();
    let r = ds.verify(None).unwrap();
    assert_eq!(r.damaged_chunks.len(), 1);
    assert!(r.damaged_chunks[0].error.contains("missing"));
}

/// A reader that is slow, so GC runs many times while the backup is in progress.
struct Slow(FileReader);
impl DiskReader for Slow {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        std::thread::sleep(Duration::from_millis(15));
        self.0.read_at(buf, offset)
    }
}

fn gc_during_backup(kind: Kind) {
    let env = Env::new(kind);
    let ds = env.store(None);
    let disk = env.path("disk.raw");
    let data = make_disk(&disk, 6 << 20, 7);
    let other = env.path("other.raw");
    make_disk(&other, 2 << 20, 8);
    // Snapshot A of the same disk, then deleted: its chunks are garbage, but the running backup B reuses them.
    let a = backup_file(&ds, &disk, None, None);
    let keep = backup_file(&ds, &other, None, None);
    ds.delete_snapshot(&a.id).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let stop = Arc::new(AtomicBool::new(false));
    let gcs = {
        let (ds, stop) = (ds.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut runs = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                runs.push(
                    ds.gc(&GcOptions {
                        grace: Duration::ZERO,
                        ..Default::default()
                    })
                    .unwrap(),
                );
            }
            runs
        })
    };
    let b = ds
        .backup(
            BackupRequest {
                meta: meta("srv-1"),
                parent: None,
                disks: vec![DiskSource {
                    name: "vda".into(),
                    reader: Arc::new(Slow(FileReader::open(&disk).unwrap())),
                    dirty: None,
                }],
            },
            &|_| {},
        )
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    let runs = gcs.join().unwrap();
    assert!(
        runs.len() >= 2,
        "GC ran during the backup ({} runs)",
        runs.len()
    );
    assert!(
        runs.iter().any(|r| !r.active_writers.is_empty()),
        "GC saw the running writer"
    );
    let r = ds
        .gc(&GcOptions {
            grace: Duration::ZERO,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        r.removed_chunks, 0,
        "nothing of B or the kept snapshot is garbage"
    );
    assert!(ds.verify(None).unwrap().ok(), "GC lost nothing");
    same(&restore_bytes(&env, &ds, &b.id, "b.raw"), &data, "restore");
    // Delete everything: GC empties the store; a grace period keeps recent chunks.
    ds.delete_snapshot(&b.id).unwrap();
    ds.delete_snapshot(&keep.id).unwrap();
    let r = ds
        .gc(&GcOptions {
            grace: Duration::from_secs(3600),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.removed_chunks, 0);
    assert!(r.kept_recent > 0);
    std::thread::sleep(Duration::from_millis(1100)); // S3 times have 1 s resolution
    let r = ds
        .gc(&GcOptions {
            grace: Duration::ZERO,
            ..Default::default()
        })
        .unwrap();
    assert!(r.removed_chunks > 0);
    assert_eq!(chunk_objects(&ds), 0);
}

fn wrong_key(kind: Kind) {
    let env = Env::new(kind);
    let k1 = create_key(&env.path("k1.json")).unwrap();
    let fp1 = k1.fingerprint().to_string();
    assert!(
        create_key(&env.path("k1.json")).is_err(),
        "create_key never overwrites a key file"
    );
    let k2 = create_key(&env.path("k2.json")).unwrap();
    let ds = env.store(Some(k1));
    let disk = env.path("disk.raw");
    let data = make_disk(&disk, 2 << 20, 9);
    let m = backup_file(&ds, &disk, None, None);
    // The key never lands in the store; plaintext does not show.
    let key_hex =
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(env.path("k1.json")).unwrap())
            .unwrap()["key"]
            .as_str()
            .unwrap()
            .to_string();
    for (k, _) in ds.backend().list("").unwrap() {
        let b = ds.backend().get(&k).unwrap().unwrap();
        assert!(
            !String::from_utf8_lossy(&b).contains(&key_hex),
            "{k} holds the key"
        );
        assert!(
            !b.windows(20).any(|w| w == b"accepted key for us"),
            "{k} holds plaintext"
        );
    }
    let e = DataStore::open(env.backend.clone(), Some(k2.clone()), 64 << 10).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, Error::Key(_)) && msg.contains(&fp1) && msg.contains(k2.fingerprint()),
        "{msg}"
    );
    let e = DataStore::open(env.backend.clone(), None, 64 << 10).unwrap_err();
    assert!(
        matches!(e, Error::Key(_)) && e.to_string().contains("key file is needed"),
        "{e}"
    );
    let k1 = lifeboat_datastore::load_key(&env.path("k1.json")).unwrap();
    let ds = DataStore::open(env.backend.clone(), Some(k1), 64 << 10).unwrap();
    same(&restore_bytes(&env, &ds, &m.id, "r.raw"), &data, "restore");
    // Equal plaintexts get different ids under different keys.
    let k3 = create_key(&env.path("k3.json")).unwrap();
    assert_ne!(
        ds.chunk_store().id_of(b"same"),
        lifeboat_datastore::ChunkStore::new(env.backend.clone(), Some(Arc::new(k3))).id_of(b"same")
    );
}

fn rotation_and_prune(kind: Kind) {
    let env = Env::new(kind);
    let ds = env.store(None);
    let disk = env.path("disk.raw");
    make_disk(&disk, 1 << 20, 10);
    let ids: Vec<String> = (0..4)
        .map(|_| backup_file(&ds, &disk, None, None).id)
        .collect();
    let r = ds.rotate("srv-1", "daily", 2, false).unwrap();
    assert_eq!(
        r.iter()
            .filter(|e| e.mark == lifeboat_datastore::prune::Mark::Remove)
            .count(),
        2
    );
    assert_eq!(
        ds.snapshot_ids().unwrap(),
        ids[2..].to_vec(),
        "the two newest stay"
    );
    assert!(
        ds.rotate("srv-2", "daily", 0, false).unwrap().is_empty(),
        "other servers untouched"
    );
    let r = ds
        .prune(
            &Default::default(),
            &lifeboat_datastore::prune::KeepOptions {
                last: 1,
                ..Default::default()
            },
            true,
        )
        .unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(
        ds.snapshot_ids().unwrap().len(),
        2,
        "dry run removes nothing"
    );
    ds.prune(
        &Default::default(),
        &lifeboat_datastore::prune::KeepOptions {
            last: 1,
            ..Default::default()
        },
        false,
    )
    .unwrap();
    assert_eq!(ds.snapshot_ids().unwrap(), ids[3..].to_vec());
    assert!(matches!(
        ds.delete_snapshot("nope").unwrap_err(),
        Error::NotFound(_)
    ));
    assert!(matches!(
        ds.manifest("../x").unwrap_err(),
        Error::Invalid(_)
    ));
}

/// A backend whose `remove_if_older` is HEAD, then (for the first chunk GC
/// finds old) a pause until a writer has written its index, then DELETE: the
/// window S3's HEAD-then-DELETE leaves open, made to happen every time.
struct RacyGc {
    inner: lifeboat_datastore::BackendRef,
    /// 0 idle, 1 GC headed a chunk and waits, 2 writer's index written, 3 GC deleted.
    step: std::sync::Mutex<u8>,
    cv: std::sync::Condvar,
}

impl RacyGc {
    fn wait_for(&self, want: u8) -> bool {
        let g = self.step.lock().unwrap();
        let (g, t) = self
            .cv
            .wait_timeout_while(g, Duration::from_secs(20), |s| *s < want)
            .unwrap();
        drop(g);
        !t.timed_out()
    }
    fn set(&self, v: u8) {
        *self.step.lock().unwrap() = v;
        self.cv.notify_all();
    }
}

impl lifeboat_datastore::Backend for RacyGc {
    fn describe(&self) -> String {
        format!("racy-gc({})", self.inner.describe())
    }
    fn put(&self, key: &str, data: &[u8]) -> Result<(), Error> {
        self.inner.put(key, data)?;
        if key.ends_with(".fidx") && *self.step.lock().unwrap() == 1 {
            // Index written (every reused chunk touched): let GC delete, wait for it.
            self.set(2);
            assert!(self.wait_for(3), "GC did not delete");
        }
        Ok(())
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.inner.get(key)
    }
    fn head(&self, key: &str) -> Result<Option<lifeboat_datastore::backend::ObjectMeta>, Error> {
        self.inner.head(key)
    }
    fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, lifeboat_datastore::backend::ObjectMeta)>, Error> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), Error> {
        self.inner.delete(key)
    }
    fn touch(&self, key: &str) -> Result<bool, Error> {
        self.inner.touch(key)
    }
    fn remove_if_older(&self, key: &str, cutoff: std::time::SystemTime) -> Result<bool, Error> {
        match self.inner.head(key)? {
            Some(m) if m.modified < cutoff => {
                if *self.step.lock().unwrap() == 0 {
                    self.set(1);
                    assert!(self.wait_for(2), "the writer never wrote its index");
                    self.inner.delete(key)?;
                    self.set(3);
                } else {
                    self.inner.delete(key)?;
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// GC's HEAD saw a garbage chunk as old, the running backup then reused
/// (touched) it, GC's DELETE removed it: the backup must notice before it
/// commits its manifest and store the chunk again. Deterministic.
fn gc_head_then_delete_race(kind: Kind) {
    let env = Env::new(kind);
    let racy = Arc::new(RacyGc {
        inner: env.backend.clone(),
        step: std::sync::Mutex::new(0),
        cv: std::sync::Condvar::new(),
    });
    let ds = DataStore::open(racy.clone(), None, 64 << 10).unwrap();
    let disk = env.path("disk.raw");
    let data = make_disk(&disk, 4 << 20, 21);
    // Snapshot A of the disk, deleted: its chunks are garbage, older than any cutoff.
    let a = backup_file(&ds, &disk, None, None);
    ds.delete_snapshot(&a.id).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let gc = {
        let ds = ds.clone();
        std::thread::spawn(move || {
            ds.gc(&GcOptions {
                grace: Duration::ZERO,
                ..Default::default()
            })
            .unwrap()
        })
    };
    // The backup starts once GC has looked at a chunk it is about to remove.
    assert!(racy.wait_for(1), "GC found no old chunk");
    let b = backup_file(&ds, &disk, None, None);
    let report = gc.join().unwrap();
    assert!(report.removed_chunks >= 1, "{report:?}");
    let v = ds.verify(None).unwrap();
    assert!(v.ok(), "every chunk of B is in the store: {v:?}");
    let out = env.path("restored.raw");
    ds.restore_disk(&b.id, "vda", &out, RestoreFormat::Raw, &|_| {})
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), data, "snapshot B is whole");
}

macro_rules! suite {
    ($($name:ident),*) => {
        mod fs { $( #[test] fn $name() { super::$name(super::Kind::Fs) } )* }
        mod s3 { $( #[test] fn $name() { super::$name(super::Kind::S3) } )* }
    };
}

suite!(
    round_trip,
    incremental_equals_full,
    damage_detected,
    gc_during_backup,
    gc_head_then_delete_race,
    wrong_key,
    rotation_and_prune
);
