//! The `restore_backup` action (AWS OpsWorks CM's RestoreServer): the
//! server's VM is replaced by one made from a backup or image snapshot of
//! it in the snapshot store. The server keeps its id and its ports (MAC,
//! fixed and floating IPs); the new VM is defined on the server's host when
//! it has room, or where placement puts it.
//!
//! Plan (its row in `lifeboat_core::server_actions!`): `schedule_dest`,
//! [`DESTROY_OLD`], [`RESTORE_DEFINE`], `power_on`, `ready`. With `instant`
//! the VM boots at once from an NBD export of the snapshot that its host
//! agent serves from the store, while a block job copies the disk into the
//! local qcow2 ([`StoreDisk::instant`]); an [`InstantRestore`] record says
//! so until the copy is done. Meanwhile the actions that need the whole
//! disk on the host (row guard `DiskLocal`: backup, snapshot, shelve,
//! migrations, resize, rebuild) are refused with
//! [`ActionDenied::Restoring`](lifeboat_core::ActionDenied::Restoring), and
//! the native server view shows the copy's progress
//! ([`Engine::restore_progress`]). Without `instant` the define restores the
//! whole disk first. Every step is idempotent: a crash re-runs it.

use lifeboat_core::{now, Action, Actor, Level, NewEvent, PowerState, Server, Time};
use lifeboat_datastore::SnapshotKind;
use lifeboat_hypervisor::{HvError, RestoreProgress, StoreDisk};
use lifeboat_store::Record;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::backup::parse_store_location;
use crate::compute::workflows::WorkflowKind;
use crate::error::StepResult;
use crate::requests::accepted;
use crate::steps::step::{step, wrong_kind, Cx};
use crate::{ActionOutcome, ComputeError, Engine, Reason, Resource};

/// An instant restore whose background copy may still run: written before
/// the VM is defined from the store, removed once its host reports the copy
/// done (or with the VM).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstantRestore {
    /// Server id.
    pub server_id: String,
    /// Snapshot restored from.
    pub snapshot: String,
    /// Its disk.
    pub disk: String,
    /// Host the VM was defined on.
    pub host: String,
    /// The VM's name on that host.
    pub instance_name: String,
    /// The restore_backup workflow.
    pub workflow_id: String,
    /// When.
    pub created_at: Time,
}

impl Record for InstantRestore {
    const KIND: &'static str = "instant_restore";
    fn id(&self) -> String {
        self.server_id.clone()
    }
    fn ref_id(&self) -> Option<String> {
        Some(self.server_id.clone())
    }
    fn created(&self) -> Time {
        self.created_at
    }
}

/// The action's handler: checks the snapshot, then starts the workflow.
pub(crate) async fn start(
    e: &Engine,
    actor: &Actor,
    s: Server,
    action: Action,
    snapshot: String,
    instant: bool,
) -> Result<ActionOutcome, ComputeError> {
    let (snap, disk) = e.restorable_snapshot(actor, &s, &snapshot).await?;
    Ok(accepted(
        e.begin_workflow(
            actor,
            s,
            action,
            json!({"snapshot": snap, "disk": disk, "instant": instant}),
        )
        .await?,
    ))
}

impl Engine {
    /// The store snapshot and disk `key` names for restoring `s`: a store
    /// snapshot id, or the id of an image (createImage/createBackup) whose
    /// data is such a snapshot. It must be a backup or image snapshot of
    /// this very server, with a disk.
    async fn restorable_snapshot(
        &self,
        actor: &Actor,
        s: &Server,
        key: &str,
    ) -> Result<(String, String), ComputeError> {
        let bad = || Reason::BadReference {
            kind: Resource::Snapshot,
            id: key.to_string(),
        };
        let snap = match self.image(actor, key).await {
            Ok(img) => match img.location.as_deref().and_then(parse_store_location) {
                Some((snap, _)) => snap,
                None => {
                    return Err(Reason::SnapshotNotRestorable {
                        snapshot: key.into(),
                    }
                    .into())
                }
            },
            Err(_) => key.to_string(),
        };
        if lifeboat_datastore::check_id(&snap).is_err() {
            return Err(bad().into());
        }
        let id = snap.clone();
        let m = match self.with_snapstore(move |ds| Ok(ds.manifest(&id))).await? {
            Ok(m) => m,
            Err(lifeboat_datastore::Error::NotFound(_) | lifeboat_datastore::Error::Invalid(_)) => {
                return Err(bad().into())
            }
            Err(lifeboat_datastore::Error::Corrupt(_)) => {
                return Err(Reason::SnapshotDamaged { snapshot: snap }.into())
            }
            Err(err) => return Err(ComputeError::Internal(format!("snapshot store: {err}"))),
        };
        if m.meta.server.as_deref() != Some(s.id.as_str()) {
            return Err(Reason::SnapshotOfAnotherServer {
                snapshot: snap,
                server: s.id.clone(),
            }
            .into());
        }
        if !matches!(m.meta.kind, SnapshotKind::Backup | SnapshotKind::Image) {
            return Err(Reason::SnapshotNotRestorable { snapshot: snap }.into());
        }
        let Some(d) = m
            .disks
            .iter()
            .find(|d| d.name == "root")
            .or(m.disks.first())
        else {
            return Err(Reason::SnapshotNotRestorable { snapshot: snap }.into());
        };
        Ok((snap, d.name.clone()))
    }

    /// Where the instant restore of server `s` is (None: no restore of it
    /// is copying, or it is done). Asks its host, which also moves the copy
    /// on; a finished copy is logged and forgotten. A host that does not
    /// answer gives the last state unknown, with the error.
    pub async fn restore_progress(&self, s: &Server) -> Option<RestoreProgress> {
        let rec = match self.inner.store.get::<InstantRestore>(&s.id).await {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(server = %s.id, "instant restore record: {e}");
                return None;
            }
        };
        let unknown = |error: String| RestoreProgress {
            snapshot: rec.snapshot.clone(),
            disk: rec.disk.clone(),
            error: Some(error),
            ..Default::default()
        };
        let agent = match self.agent_for(&rec.host).await {
            Ok(a) => a,
            Err(e) => return Some(unknown(e.to_string())),
        };
        let p = match agent.restore_status(&rec.instance_name).await {
            Ok(Some(p)) => p,
            // The restore's own workflow is defining the VM: not there yet.
            Ok(None) | Err(HvError::NotFound(_))
                if s.task_workflow.as_deref() == Some(rec.workflow_id.as_str()) =>
            {
                return Some(RestoreProgress {
                    snapshot: rec.snapshot.clone(),
                    disk: rec.disk.clone(),
                    ..Default::default()
                });
            }
            // The VM is not restoring from the store (any more): nothing to wait for.
            Ok(None) | Err(HvError::NotFound(_)) => {
                let _ = self.inner.store.delete::<InstantRestore>(&s.id).await;
                return None;
            }
            Err(e) => return Some(unknown(e.to_string())),
        };
        if p.done {
            if let Ok(true) = self.inner.store.delete::<InstantRestore>(&s.id).await {
                self.event(NewEvent {
                    level: Level::Info,
                    server_id: Some(s.id.clone()),
                    project_id: Some(s.project_id.clone()),
                    workflow_id: Some(rec.workflow_id.clone()),
                    step: None,
                    message: format!(
                        "instant restore of snapshot {} complete: {} bytes copied into the local disk{} ({} copy job{}); it no longer needs the store",
                        rec.snapshot,
                        p.total,
                        p.took_ms
                            .map(|t| format!(" in {:.1} s", t as f64 / 1000.0))
                            .unwrap_or_default(),
                        p.jobs,
                        if p.jobs == 1 { "" } else { "s" }
                    ),
                })
                .await;
            }
        }
        Some(p)
    }

    /// Whether server `s`'s disk is still being copied from the store (an
    /// unreachable host counts as still copying).
    pub(crate) async fn disk_restoring(&self, s: &Server) -> bool {
        self.restore_progress(s).await.is_some_and(|p| !p.done)
    }
}

step!(
    /// Removes the server's current VM and its disks (the restore replaces them).
    DESTROY_OLD = "destroy_old", destroy_old
);
step!(
    /// Defines the new VM from the snapshot on the destination, with the server's ports.
    RESTORE_DEFINE = "restore", restore_define
);

async fn destroy_old(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    if let Some(h) = &cx.s.host {
        match e.agent_for(h).await?.destroy(&cx.s.instance_name).await {
            Ok(()) | Err(HvError::NotFound(_)) => {}
            Err(err) => return Err(err.into()),
        }
        e.event(Engine::step_event(
            cx.wf,
            Level::Info,
            Some(cx.step),
            format!("the server's old VM and its disks are removed from {h}"),
        ))
        .await;
    }
    // What an earlier instant restore of it recorded went with its VM.
    e.inner.store.delete::<InstantRestore>(&cx.id).await?;
    e.hang_after(cx.wf, cx.step).await;
    e.mutate_server(&cx.id, |s| {
        s.power_state = PowerState::Shutdown;
        Ok(())
    })
    .await?;
    Ok(())
}

async fn restore_define(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    let WorkflowKind::RestoreBackup(p) = &cx.k else {
        return Err(wrong_kind(&cx.k, cx.step));
    };
    let p = p.clone();
    let dest = cx.k.need_dest()?;
    let mut moved = cx.s.clone();
    moved.host = Some(dest.clone());
    // The ports' taps exist on the destination before the VM is defined.
    e.sync_dataplane_for(&dest, Some((&cx.id, &dest))).await?;
    let mut spec = e.vm_spec(&moved).await?;
    spec.root_from = Some(StoreDisk {
        store: e.snapstore(),
        snapshot: p.snapshot.clone(),
        disk: p.disk.clone(),
        format: None,
        instant: p.instant,
    });
    if p.instant {
        e.inner
            .store
            .put(&InstantRestore {
                server_id: cx.id.clone(),
                snapshot: p.snapshot.clone(),
                disk: p.disk.clone(),
                host: dest.clone(),
                instance_name: cx.s.instance_name.clone(),
                workflow_id: cx.wf.id.clone(),
                created_at: now(),
            })
            .await?;
    }
    let started = std::time::Instant::now();
    e.agent_for(&dest).await?.define(&spec).await?;
    e.event(Engine::step_event(cx.wf, Level::Info, Some(cx.step), if p.instant {
            format!(
                "VM defined on {dest} from snapshot {} disk {} (instant: it boots from the store, the disk is copied in the background)",
                p.snapshot, p.disk
            )
        } else {
            format!(
                "VM defined on {dest} with disk {} of snapshot {} restored in full in {:.1} s",
                p.disk,
                p.snapshot,
                started.elapsed().as_secs_f64()
            )
        },
    ))
    .await;
    e.hang_after(cx.wf, cx.step).await;
    e.mutate_server(&cx.id, |s| {
        s.host = Some(dest.clone());
        s.node = Some(dest.clone());
        s.power_state = PowerState::Shutdown;
        Ok(())
    })
    .await?;
    // The old host drops the ports' taps if the server moved.
    e.move_done(&cx.id).await;
    Ok(())
}
