//! The durable workflow runner.
//!
//! A workflow is a list of named steps. The runner persists a step as
//! `running` before it runs and `done` after; a failed step turns the
//! workflow to `rolling_back`, which undoes the done steps in reverse, each
//! persisted as `undone`. Steps are idempotent, so after a crash
//! [`Engine::recover`] simply runs every unfinished workflow again from its
//! first step that is not done (or continues its rollback). The server's
//! task_state is set in the same transaction that records the workflow
//! (one active task per server), and cleared when the workflow ends.

use lifeboat_core::{now, Level, NewEvent, Server, StepRecord, StepState, Workflow, WorkflowState};

use crate::compute::workflows::WorkflowKind;
use crate::secrets::{AdminPass, ADMIN_PASS};
use crate::steps;
use crate::{ComputeError, Engine, Resource};

/// What a new workflow is launched with, besides its params: written in
/// the same transaction as the workflow.
#[derive(Default)]
pub(crate) struct LaunchWith {
    /// The admin password it applies (kept sealed, out of its params).
    pub admin_pass: Option<AdminPass>,
    /// New records it works on (a snapshot's image).
    pub records: Vec<lifeboat_store::RecordRow>,
}

use crate::error::StepResult;

/// At most this many workflows run steps at once; the others wait for a
/// slot in the order they were started. Thousands of workflows started
/// together otherwise all run at once and share the store's few
/// connections, so none finishes until nearly all do.
pub(crate) const MAX_RUNNING: usize = 128;

/// The step that waits for the workflows its request superseded: a
/// workflow in it gives its slot back while it waits, since those
/// workflows may be waiting for a slot themselves.
const WAIT_SUPERSEDED: &str = "wait_superseded";

impl Engine {
    /// A new workflow record for `server` with the given kind and params.
    pub(crate) fn new_workflow(
        &self,
        kind: &str,
        server: Option<&Server>,
        user_id: Option<&str>,
        params: serde_json::Value,
    ) -> Result<Workflow, ComputeError> {
        let now = now();
        // Every row is written in its kind's typed form (an unknown field
        // or a missing one is refused here, not defaulted later).
        let action = lifeboat_core::Action::parse(kind)
            .ok_or_else(|| ComputeError::Internal(format!("unknown workflow kind {kind}")))?;
        let typed = WorkflowKind::new_row(action, &params)?;
        let params = typed.store();
        let step_names = steps::plan(&typed);
        Ok(Workflow {
            id: lifeboat_core::ids::uuid(),
            kind: kind.to_string(),
            server_id: server.map(|s| s.id.clone()),
            project_id: server.map(|s| s.project_id.clone()),
            user_id: user_id.map(str::to_string),
            request_id: crate::current_request_id()
                .unwrap_or_else(|| format!("req-{}", lifeboat_core::ids::uuid())),
            state: WorkflowState::Running,
            steps: step_names
                .into_iter()
                .map(|n| StepRecord {
                    name: n.to_string(),
                    state: StepState::Pending,
                    started_at: None,
                    finished_at: None,
                    attempts: 0,
                })
                .collect(),
            params,
            error: None,
            reason: None,
            created_at: now,
            updated_at: now,
        })
    }

    /// Records `wf` as the owner of `server`'s new task (server already
    /// mutated by `actions::begin`) together with `with`'s secret and
    /// records in one transaction, then runs it in the background.
    pub(crate) async fn launch(
        &self,
        mut server: Server,
        wf: Workflow,
        with: LaunchWith,
    ) -> Result<Server, ComputeError> {
        server.task_workflow = Some(wf.id.clone());
        let extras = self.extras(&wf, with)?;
        let (saved, ids) = self
            .inner
            .store
            .cas_server_with_workflow(&server, &wf, &extras)
            .await?;
        self.announce(ids, extras);
        self.spawn_run(wf.id.clone());
        Ok(saved)
    }

    /// The rows written with a new workflow, its `accepted` event among
    /// them (one transaction with the workflow, not one more of its own).
    pub(crate) fn extras(
        &self,
        wf: &Workflow,
        with: LaunchWith,
    ) -> Result<lifeboat_store::WorkflowExtras, ComputeError> {
        let mut x = lifeboat_store::WorkflowExtras {
            records: with.records,
            events: vec![Self::step_event(
                wf,
                Level::Info,
                None,
                format!("{} accepted ({})", wf.kind, wf.request_id),
            )],
            ..Default::default()
        };
        if let Some(AdminPass(p)) = &with.admin_pass {
            x.secrets.push(self.seal_secret(&wf.id, ADMIN_PASS, p)?);
        }
        Ok(x)
    }

    /// Tells the event subscribers of the events written with a new
    /// workflow (`ids` as the store returned them).
    pub(crate) fn announce(&self, ids: Vec<i64>, extras: lifeboat_store::WorkflowExtras) {
        for (id, e) in ids.into_iter().zip(extras.events) {
            self.notify_event(id, e);
        }
    }

    /// Runs a workflow in the background (no-op if already running here).
    pub(crate) fn spawn_run(&self, id: String) {
        if !self.inner.running.lock().unwrap().insert(id.clone()) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.run(&id).await {
                tracing::error!(workflow = %id, "workflow runner: {e}");
            }
            me.inner.running.lock().unwrap().remove(&id);
            me.inner.run_ended.notify_waiters();
        });
    }

    /// Waits until workflow `id` is no longer run by this process, or until
    /// `deadline`: woken when a run ends, not polled.
    pub(crate) async fn wait_not_running(&self, id: &str, deadline: tokio::time::Instant) {
        loop {
            let ended = self.inner.run_ended.notified();
            tokio::pin!(ended);
            // Registered before the check, so an end in between still wakes it.
            ended.as_mut().enable();
            if !self.is_running(id) {
                return;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return;
            }
        }
    }

    /// Test hook `kind:step:after`: parks the runner for good once the
    /// step's side effect is done but before it is recorded (the step's own
    /// record update, or its `done`), so a SIGKILL there proves the step
    /// idempotent. Steps with a trailing record update call it themselves
    /// between the side effect and that update.
    pub(crate) async fn hang_after(&self, wf: &Workflow, step: &str) {
        if self.inner.cfg.hang_at.as_deref() == Some(&format!("{}:{}:after", wf.kind, step)) {
            eprintln!("LIFEBOAT-HANG {}:{}:after {}", wf.kind, step, wf.id);
            std::future::pending::<()>().await;
        }
    }

    /// Whether a workflow is being run by this process.
    pub(crate) fn is_running(&self, id: &str) -> bool {
        self.inner.running.lock().unwrap().contains(id)
    }

    async fn persist(&self, wf: &mut Workflow) -> StepResult<()> {
        self.persist_with(wf, vec![]).await
    }

    /// Writes the workflow and its new events in one transaction (one
    /// commit per step boundary instead of one per row), then tells the
    /// event subscribers.
    async fn persist_with(&self, wf: &mut Workflow, events: Vec<NewEvent>) -> StepResult<()> {
        wf.updated_at = now();
        let ids = self
            .inner
            .store
            .put_workflow_with_events(wf, &events)
            .await?;
        for (id, e) in ids.into_iter().zip(events) {
            self.notify_event(id, e);
        }
        Ok(())
    }

    /// An event of a workflow's step (or of the workflow when `step` is None).
    pub(crate) fn step_event(
        wf: &Workflow,
        level: Level,
        step: Option<&str>,
        message: String,
    ) -> NewEvent {
        NewEvent {
            level,
            server_id: wf.server_id.clone(),
            project_id: wf.project_id.clone(),
            workflow_id: Some(wf.id.clone()),
            step: step.map(str::to_string),
            message,
        }
    }

    /// Runs the workflow from its first step not done. A step is persisted
    /// as `running` (with its event) before it runs; its `done` (and event)
    /// is written in the same transaction as the next step's `running`, or
    /// with the workflow's end: one commit per step boundary. The server
    /// update a step leaves ([`steps::Cx::after`]) goes in that transaction
    /// too. A crash in between only re-runs that (idempotent) step.
    async fn run(&self, id: &str) -> StepResult<()> {
        let slots = &self.inner.slots;
        let mut slot = Some(slots.acquire().await.map_err(closed)?);
        let mut wf = self
            .inner
            .store
            .get_workflow(id)
            .await?
            .ok_or_else(|| ComputeError::Internal(format!("workflow {id} vanished")))?;
        // Events of a finished step, written with the next persist.
        let mut pending: Vec<NewEvent> = vec![];
        // The server update of a finished step, written with the next persist.
        let mut update: Option<steps::ServerUpdate> = None;
        while wf.state == WorkflowState::Running {
            // The server is read once per step: for this check, as the
            // base of the finished step's update and as the next step's
            // starting point.
            let mut server = match &wf.server_id {
                Some(sid) => self.inner.store.get_server(sid).await?,
                None => None,
            };
            // A workflow whose server task was taken over (delete during
            // build) stops at the next step boundary.
            if let Some(sid) = &wf.server_id {
                let owner = server.as_ref().and_then(|s| s.task_workflow.as_deref());
                if owner != Some(wf.id.as_str()) {
                    if let Some(mut u) = update.take() {
                        if server.is_some() {
                            self.mutate_server(sid, |s| {
                                u(s);
                                Ok(())
                            })
                            .await?;
                        }
                    }
                    wf.state = WorkflowState::RolledBack;
                    wf.error = Some("superseded by another request".into());
                    steps::scrub_secrets(&mut wf.params);
                    steps::abandon(self, &wf).await?;
                    pending.push(Self::step_event(
                        &wf,
                        Level::Warn,
                        None,
                        format!("{} superseded", wf.kind),
                    ));
                    self.persist_with(&mut wf, std::mem::take(&mut pending))
                        .await?;
                    self.forget_secrets(&wf.id).await;
                    return Ok(());
                }
            }
            let Some(i) = wf.steps.iter().position(|s| s.state != StepState::Done) else {
                return self.complete(&mut wf, pending, update).await;
            };
            let name = wf.steps[i].name.clone();
            wf.steps[i].state = StepState::Running;
            wf.steps[i].started_at = Some(now());
            wf.steps[i].attempts += 1;
            pending.push(Self::step_event(
                &wf,
                Level::Info,
                Some(&name),
                format!(
                    "{}: {} started (attempt {})",
                    wf.kind, name, wf.steps[i].attempts
                ),
            ));
            let events = std::mem::take(&mut pending);
            match (update.take(), server.take()) {
                (Some(u), Some(s)) => {
                    server = Some(self.persist_with_server(&mut wf, events, s, u).await?);
                }
                (_, s) => {
                    server = s;
                    self.persist_with(&mut wf, events).await?;
                }
            }
            if self.inner.cfg.hang_at.as_deref() == Some(&format!("{}:{}", wf.kind, name)) {
                eprintln!("LIFEBOAT-HANG {}:{} {}", wf.kind, name, wf.id);
                std::future::pending::<()>().await;
            }
            if name == WAIT_SUPERSEDED {
                slot = None;
            }
            let ran = steps::run(self, &mut wf, &name, server).await;
            if slot.is_none() {
                slot = Some(slots.acquire().await.map_err(closed)?);
            }
            match ran {
                Ok(after) => {
                    self.hang_after(&wf, &name).await;
                    update = after;
                    wf.steps[i].state = StepState::Done;
                    wf.steps[i].finished_at = Some(now());
                    pending.push(Self::step_event(
                        &wf,
                        Level::Info,
                        Some(&name),
                        format!("{}: {} done", wf.kind, name),
                    ));
                }
                Err(e) => {
                    wf.steps[i].state = StepState::Failed;
                    wf.steps[i].finished_at = Some(now());
                    wf.error = Some(e.to_string());
                    wf.reason = e.fault_reason();
                    wf.state = WorkflowState::RollingBack;
                    let ev = Self::step_event(
                        &wf,
                        Level::Error,
                        Some(&name),
                        format!("{}: {} failed: {e}", wf.kind, name),
                    );
                    self.persist_with(&mut wf, vec![ev]).await?;
                }
            }
        }
        if !pending.is_empty() {
            self.persist_with(&mut wf, pending).await?;
        }
        if wf.state == WorkflowState::RollingBack {
            return self.rollback(&mut wf).await;
        }
        drop(slot);
        Ok(())
    }

    /// [`Engine::persist_with`] and a finished step's server update in one
    /// transaction: `u` is applied to `s` (as read before) and written
    /// with compare-and-set, re-read and applied again on a conflict.
    /// Returns the server as written.
    async fn persist_with_server(
        &self,
        wf: &mut Workflow,
        events: Vec<NewEvent>,
        mut s: Server,
        mut u: steps::ServerUpdate,
    ) -> StepResult<Server> {
        wf.updated_at = now();
        let extras = lifeboat_store::WorkflowExtras {
            events,
            ..Default::default()
        };
        for _ in 0..50 {
            let mut next = s.clone();
            u(&mut next);
            match self
                .inner
                .store
                .cas_server_with_workflow(&next, wf, &extras)
                .await
            {
                Ok((saved, ids)) => {
                    self.announce(ids, extras);
                    return Ok(saved);
                }
                Err(lifeboat_store::StoreError::Conflict(_)) => {
                    tokio::task::yield_now().await;
                    s = self.inner.store.get_server(&s.id).await?.ok_or_else(|| {
                        ComputeError::NotFound {
                            kind: Resource::Server,
                            id: s.id.clone(),
                        }
                    })?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ComputeError::Conflict(format!(
            "server {} is too busy; retry",
            s.id
        )))
    }

    async fn rollback(&self, wf: &mut Workflow) -> StepResult<()> {
        let mut clean = true;
        for i in (0..wf.steps.len()).rev() {
            if !matches!(wf.steps[i].state, StepState::Done | StepState::Failed) {
                continue;
            }
            let name = wf.steps[i].name.clone();
            let ev = match steps::undo(self, wf, &name).await {
                Ok(()) => Self::step_event(
                    wf,
                    Level::Info,
                    Some(&name),
                    format!("{}: {} undone", wf.kind, name),
                ),
                Err(e) => {
                    clean = false;
                    Self::step_event(
                        wf,
                        Level::Error,
                        Some(&name),
                        format!("{}: undo of {} failed: {e}", wf.kind, name),
                    )
                }
            };
            wf.steps[i].state = StepState::Undone;
            self.persist_with(wf, vec![ev]).await?;
        }
        let error = wf.error.clone().unwrap_or_else(|| "failed".into());
        steps::abandon(self, wf).await?;
        let errored = steps::fail(self, wf, &error).await?;
        wf.state = if errored || !clean {
            WorkflowState::Failed
        } else {
            WorkflowState::RolledBack
        };
        let ev = Self::step_event(
            wf,
            Level::Error,
            None,
            format!(
                "{} {}: {error}",
                wf.kind,
                wf.state.as_str().replace('_', " ")
            ),
        );
        self.persist_with(wf, vec![ev]).await?;
        self.forget_secrets(&wf.id).await;
        Ok(())
    }

    async fn complete(
        &self,
        wf: &mut Workflow,
        mut pending: Vec<NewEvent>,
        update: Option<steps::ServerUpdate>,
    ) -> StepResult<()> {
        steps::complete(self, wf, update).await?;
        wf.state = WorkflowState::Completed;
        steps::scrub_secrets(&mut wf.params);
        pending.push(Self::step_event(
            wf,
            Level::Info,
            None,
            format!("{} completed", wf.kind),
        ));
        self.persist_with(wf, pending).await?;
        self.forget_secrets(&wf.id).await;
        Ok(())
    }

    /// Resumes every unfinished workflow, and clears a task left on a server
    /// whose workflow is gone or finished.
    pub(crate) async fn recover(&self) -> Result<(), ComputeError> {
        let mut unfinished = self.inner.store.unfinished_workflows().await?;
        for wf in &mut unfinished {
            // Workflows written before secrets left the params: move the
            // password into the sealed table.
            if let Some(p) = wf.params["admin_pass"].as_str().map(str::to_string) {
                let sec = self.seal_secret(&wf.id, ADMIN_PASS, &p)?;
                self.inner.store.put_workflow_secret(&wf.id, &sec).await?;
                steps::scrub_secrets(&mut wf.params);
                self.persist(wf).await?;
            }
            // Params of an older version are written again in this one's
            // (a row that does not load is left for its run to fail).
            if let Ok(k) = WorkflowKind::load(&wf.kind, &wf.params) {
                let current = k.store();
                if current != wf.params {
                    wf.params = current;
                    self.persist(wf).await?;
                }
            }
        }
        let orphans = self.inner.store.delete_orphan_secrets().await?;
        if orphans > 0 {
            tracing::info!("deleted the secrets of {orphans} finished workflows");
        }
        for wf in &unfinished {
            tracing::info!(workflow = %wf.id, kind = %wf.kind, "resuming workflow");
            self.event(Self::step_event(
                wf,
                Level::Warn,
                None,
                format!("{} resumed after restart", wf.kind),
            ))
            .await;
            self.spawn_run(wf.id.clone());
        }
        for s in self.inner.store.servers_with_tasks().await? {
            let live = match &s.task_workflow {
                Some(w) => unfinished.iter().any(|u| &u.id == w),
                None => false,
            };
            if !live {
                self.mutate_server(&s.id, |s| {
                    s.task_state = None;
                    s.task_workflow = None;
                    Ok(())
                })
                .await?;
                tracing::warn!(server = %s.id, "cleared orphan task_state");
            }
        }
        Ok(())
    }

    /// Read-modify-write of a server with compare-and-set, retried on conflict.
    pub(crate) async fn mutate_server(
        &self,
        id: &str,
        mut f: impl FnMut(&mut Server) -> StepResult<()>,
    ) -> StepResult<Server> {
        for _ in 0..50 {
            let mut s =
                self.inner
                    .store
                    .get_server(id)
                    .await?
                    .ok_or_else(|| ComputeError::NotFound {
                        kind: Resource::Server,
                        id: id.to_string(),
                    })?;
            f(&mut s)?;
            match self.inner.store.cas_server(&s).await {
                Ok(saved) => return Ok(saved),
                Err(lifeboat_store::StoreError::Conflict(_)) => {
                    tokio::task::yield_now().await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ComputeError::Conflict(format!(
            "server {id} is too busy; retry"
        )))
    }
}

/// The error of a closed slot semaphore (never closed: the engine owns it).
fn closed(_: tokio::sync::AcquireError) -> ComputeError {
    ComputeError::Internal("workflow slots closed".into())
}
