//! The event log.

use lifeboat_core::{Event, Level, NewEvent};
use sqlx::Row;

use crate::db::ts;
use crate::{Store, StoreError, StoreResult};

/// Filters for reading events, oldest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only this server.
    pub server_id: Option<String>,
    /// Only this project.
    pub project_id: Option<String>,
    /// Only this workflow.
    pub workflow_id: Option<String>,
    /// Only ids greater than this (follow mode).
    pub after_id: Option<i64>,
    /// At most this many (the newest ones).
    pub limit: Option<i64>,
}

/// Appends an event on `conn`; returns its id.
pub(crate) async fn insert(conn: &mut sqlx::AnyConnection, e: &NewEvent) -> StoreResult<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO events (time, level, server_id, project_id, workflow_id, step, message)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(ts(&lifeboat_core::now()))
    .bind(e.level.as_str())
    .bind(e.server_id.clone())
    .bind(e.project_id.clone())
    .bind(e.workflow_id.clone())
    .bind(e.step.clone())
    .bind(&e.message)
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

impl Store {
    /// Appends an event; returns its id.
    pub async fn append_event(&self, e: &NewEvent) -> StoreResult<i64> {
        let _turn = self.write_turn().await;
        let mut conn = self.pool.acquire().await?;
        insert(&mut conn, e).await
    }

    /// Reads events matching `q`, oldest first.
    pub async fn events(&self, q: &EventQuery) -> StoreResult<Vec<Event>> {
        let mut sql = String::from(
            "SELECT id, time, level, server_id, project_id, workflow_id, step, message FROM events WHERE 1 = 1",
        );
        let mut args: Vec<String> = vec![];
        for (col, v) in [
            ("server_id", &q.server_id),
            ("project_id", &q.project_id),
            ("workflow_id", &q.workflow_id),
        ] {
            if let Some(v) = v {
                args.push(v.clone());
                sql.push_str(&format!(" AND {col} = ${}", args.len()));
            }
        }
        if let Some(a) = q.after_id {
            sql.push_str(&format!(" AND id > {a}"));
        }
        sql.push_str(" ORDER BY id DESC");
        if let Some(l) = q.limit {
            sql.push_str(&format!(" LIMIT {}", l.max(0)));
        }
        let mut query = sqlx::query(&sql);
        for a in &args {
            query = query.bind(a);
        }
        let mut out = query
            .fetch_all(&self.reader)
            .await?
            .into_iter()
            .map(|r| {
                let time: String = r.try_get("time")?;
                let level: String = r.try_get("level")?;
                Ok(Event {
                    id: r.try_get("id")?,
                    time: time
                        .parse()
                        .map_err(|e| StoreError::Corrupt(format!("event time {time}: {e}")))?,
                    level: Level::parse(&level).unwrap_or(Level::Info),
                    server_id: r.try_get("server_id")?,
                    project_id: r.try_get("project_id")?,
                    workflow_id: r.try_get("workflow_id")?,
                    step: r.try_get("step")?,
                    message: r.try_get("message")?,
                })
            })
            .collect::<StoreResult<Vec<Event>>>()?;
        out.reverse();
        Ok(out)
    }
}
