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

impl Store {
    /// Inserts or replaces a workflow (called before and after every step).
    pub async fn put_workflow(&self, w: &Workflow) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        put(&mut conn, w).await
    }

    /// A workflow by id.
    pub async fn get_workflow(&self, id: &str) -> StoreResult<Option<Workflow>> {
        let rows = sqlx::query("SELECT data FROM workflows WHERE id = $1")
            .bind(id)
            .fetch_all(&self.pool)
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
        .fetch_all(&self.pool)
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
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query("SELECT data FROM workflows ORDER BY created_at DESC, id DESC LIMIT $1")
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        decode(rows)
    }
}
