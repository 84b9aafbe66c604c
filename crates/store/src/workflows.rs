//! Workflow records.

use lifeboat_core::{Workflow, WorkflowState};
use sqlx::Row;

use crate::db::ts;
use crate::{Store, StoreResult};

fn decode(rows: Vec<sqlx::any::AnyRow>) -> StoreResult<Vec<Workflow>> {
    rows.into_iter()
        .map(|r| {
            let data: String = r.try_get("data")?;
            Ok(serde_json::from_str(&data)?)
        })
        .collect()
}

pub(crate) async fn put(conn: &mut sqlx::AnyConnection, w: &Workflow) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO workflows (id, server_id, kind, state, created_at, data)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, data = excluded.data",
    )
    .bind(&w.id)
    .bind(w.server_id.clone())
    .bind(&w.kind)
    .bind(w.state.as_str())
    .bind(ts(&w.created_at))
    .bind(serde_json::to_string(w)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A secret of a workflow (e.g. its admin password), already sealed by the
/// engine. Kept in its own table, never in the workflow's params.
#[derive(Debug, Clone)]
pub struct SealedSecret {
    /// The secret's name within its workflow (`admin_pass`).
    pub name: String,
    /// The sealed (encrypted) value.
    pub sealed: String,
}

/// Rows written in the same transaction as a new workflow, so that a crash
/// or a lost compare-and-set leaves none of them behind.
#[derive(Debug, Clone, Default)]
pub struct WorkflowExtras {
    /// The workflow's secrets.
    pub secrets: Vec<SealedSecret>,
    /// New records the workflow works on (a snapshot's image record).
    pub records: Vec<crate::records::RecordRow>,
    /// Its first events (its `accepted`).
    pub events: Vec<lifeboat_core::NewEvent>,
}

/// Writes `x` on `conn`; returns the ids of its events.
pub(crate) async fn put_extras(
    conn: &mut sqlx::AnyConnection,
    w: &Workflow,
    x: &WorkflowExtras,
) -> StoreResult<Vec<i64>> {
    for sec in &x.secrets {
        sqlx::query(
            "INSERT INTO workflow_secrets (workflow_id, name, sealed) VALUES ($1, $2, $3)
             ON CONFLICT (workflow_id, name) DO UPDATE SET sealed = excluded.sealed",
        )
        .bind(&w.id)
        .bind(&sec.name)
        .bind(&sec.sealed)
        .execute(&mut *conn)
        .await?;
    }
    for r in &x.records {
        r.insert(&mut *conn).await?;
    }
    let mut ids = Vec::with_capacity(x.events.len());
    for e in &x.events {
        ids.push(crate::events::insert(&mut *conn, e).await?);
    }
    Ok(ids)
}

impl Store {
    /// A sealed secret of a workflow.
    pub async fn workflow_secret(
        &self,
        workflow_id: &str,
        name: &str,
    ) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT sealed FROM workflow_secrets WHERE workflow_id = $1 AND name = $2",
        )
        .bind(workflow_id)
        .bind(name)
        .fetch_optional(&self.reader)
        .await?)
    }

    /// Stores a sealed secret of an existing workflow.
    pub async fn put_workflow_secret(
        &self,
        workflow_id: &str,
        sec: &SealedSecret,
    ) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO workflow_secrets (workflow_id, name, sealed) VALUES ($1, $2, $3)
             ON CONFLICT (workflow_id, name) DO UPDATE SET sealed = excluded.sealed",
        )
        .bind(workflow_id)
        .bind(&sec.name)
        .bind(&sec.sealed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes every secret of a workflow (it ended or no longer needs them).
    pub async fn delete_workflow_secrets(&self, workflow_id: &str) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM workflow_secrets WHERE workflow_id = $1")
            .bind(workflow_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes the secrets of workflows that are finished or gone; returns how many.
    pub async fn delete_orphan_secrets(&self) -> StoreResult<u64> {
        let _turn = self.write_turn().await;
        let r = sqlx::query(
            "DELETE FROM workflow_secrets WHERE workflow_id NOT IN
             (SELECT id FROM workflows WHERE state IN ($1, $2))",
        )
        .bind(WorkflowState::Running.as_str())
        .bind(WorkflowState::RollingBack.as_str())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Inserts or replaces a workflow (called before and after every step).
    pub async fn put_workflow(&self, w: &Workflow) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        let mut conn = self.pool.acquire().await?;
        put(&mut conn, w).await
    }

    /// Inserts or replaces a workflow and appends its new events, in one
    /// transaction (the runner's one commit per step boundary); returns
    /// the events' ids.
    pub async fn put_workflow_with_events(
        &self,
        w: &Workflow,
        events: &[lifeboat_core::NewEvent],
    ) -> StoreResult<Vec<i64>> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        put(&mut tx, w).await?;
        let mut ids = Vec::with_capacity(events.len());
        for e in events {
            ids.push(crate::events::insert(&mut tx, e).await?);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// A workflow by id.
    pub async fn get_workflow(&self, id: &str) -> StoreResult<Option<Workflow>> {
        let rows = sqlx::query("SELECT data FROM workflows WHERE id = $1")
            .bind(id)
            .fetch_all(&self.reader)
            .await?;
        Ok(decode(rows)?.pop())
    }

    /// Workflows not finished (running or rolling back), oldest first.
    pub async fn unfinished_workflows(&self) -> StoreResult<Vec<Workflow>> {
        let rows = sqlx::query(
            "SELECT data FROM workflows WHERE state IN ($1, $2) ORDER BY created_at, id",
        )
        .bind(WorkflowState::Running.as_str())
        .bind(WorkflowState::RollingBack.as_str())
        .fetch_all(&self.reader)
        .await?;
        decode(rows)
    }

    /// Workflows of a server, newest first; or all, newest first, up to `limit`.
    pub async fn list_workflows(
        &self,
        server_id: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<Workflow>> {
        let rows = match server_id {
            Some(s) => {
                sqlx::query(
                    "SELECT data FROM workflows WHERE server_id = $1
                     ORDER BY created_at DESC, id DESC LIMIT $2",
                )
                .bind(s)
                .bind(limit)
                .fetch_all(&self.reader)
                .await?
            }
            None => {
                sqlx::query("SELECT data FROM workflows ORDER BY created_at DESC, id DESC LIMIT $1")
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await?
            }
        };
        decode(rows)
    }
}
