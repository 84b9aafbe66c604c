//! The steps of create_image, create_backup and shelve (their bodies are
//! in `crate::backup`).

use super::power::POWER_OFF;
use super::{step, wrong_kind, Cx, Step};
use crate::compute::workflows::WorkflowKind;
use crate::error::StepResult;
use lifeboat_core::ImageStatus;

step!(
    /// Backs the root disk up into the snapshot store and fills the image;
    /// undone by killing the image.
    SNAPSHOT = "snapshot", snapshot, kill_image
);
step!(ROTATE = "rotate", rotate);
step!(SHELVE_SNAPSHOT = "shelve_snapshot", shelve_snapshot);
step!(OFFLOAD = "offload", offload);
step!(FORGET_SHELVED = "forget_shelved", forget_shelved);

/// The plan of shelve: offloaded at once when `shelved_offload_time` is 0.
pub(crate) fn shelve_plan(k: &WorkflowKind) -> Vec<&'static Step> {
    let mut v: Vec<&'static Step> = vec![&POWER_OFF, &SHELVE_SNAPSHOT];
    if matches!(k, WorkflowKind::Shelve(p) if p.offload) {
        v.push(&OFFLOAD);
    }
    v
}

/// See [`crate::backup::snapshot`].
async fn snapshot(cx: &mut Cx<'_>) -> StepResult<()> {
    crate::backup::snapshot(cx.e, cx.wf, &cx.s).await
}

/// Undoes `snapshot`.
async fn kill_image(cx: &mut Cx<'_>) -> StepResult<()> {
    if let Some(img) = cx.k.image_id() {
        cx.e.set_image_status(img, ImageStatus::Killed, None)
            .await?;
        // A backup that finished before the step failed leaves no orphan in the store.
        cx.e.forget_image_snapshots(img).await?;
    }
    Ok(())
}

/// Deletes the oldest backups of the type beyond the rotation.
async fn rotate(cx: &mut Cx<'_>) -> StepResult<()> {
    let WorkflowKind::CreateBackup(p) = &cx.k else {
        return Err(wrong_kind(&cx.k, cx.step));
    };
    cx.e.rotate_backups(&cx.s, &p.backup_type, p.rotation as usize)
        .await?;
    Ok(())
}

/// See [`crate::backup::shelve_snapshot`].
async fn shelve_snapshot(cx: &mut Cx<'_>) -> StepResult<()> {
    crate::backup::shelve_snapshot(cx.e, cx.wf, &cx.s).await
}

/// See [`crate::backup::offload`].
async fn offload(cx: &mut Cx<'_>) -> StepResult<()> {
    crate::backup::offload(cx.e, &cx.s).await
}

/// Deletes the shelved disk once the server runs again.
async fn forget_shelved(cx: &mut Cx<'_>) -> StepResult<()> {
    cx.e.forget_shelved(&cx.s.id).await
}
