//! Servers, with compare-and-set on `version`.

use lifeboat_core::{Server, VmState, Workflow};
use sqlx::Row;

use crate::db::ts;
use crate::workflows::WorkflowExtras;
use crate::{Store, StoreError, StoreResult};

/// Filters for listing servers. Sorted newest first (Nova's default:
/// created_at desc, id desc).
#[derive(Debug, Clone, Default)]
pub struct ServerQuery {
    /// Only this project.
    pub project_id: Option<String>,
    /// Only these vm_states.
    pub vm_states: Option<Vec<VmState>>,
    /// Include vm_state `deleted`.
    pub include_deleted: bool,
    /// Substring of the name.
    pub name_contains: Option<String>,
    /// Only this host.
    pub host: Option<String>,
    /// Updated at or after (RFC 3339).
    pub changes_since: Option<lifeboat_core::Time>,
    /// Start after this server id.
    pub marker: Option<String>,
    /// At most this many.
    pub limit: Option<i64>,
}

fn decode(rows: Vec<sqlx::any::AnyRow>) -> StoreResult<Vec<Server>> {
    rows.into_iter()
        .map(|r| {
            let data: String = r.try_get("data")?;
            let version: i64 = r.try_get("version")?;
            let mut s: Server = serde_json::from_str(&data)?;
            s.version = version;
            Ok(s)
        })
        .collect()
}

/// Resources a server holds on its host and (during a resize/migration) on
/// its source host: (vcpus, ram MiB, disk GiB). Deleted servers hold nothing.
fn usage(s: &Server) -> ((i64, i64, i64), (i64, i64, i64)) {
    let r = |f: &lifeboat_core::FlavorSnapshot| {
        let x = f.resources();
        (x.vcpus as i64, x.ram_mb as i64, x.disk_gb as i64)
    };
    if s.vm_state == VmState::Deleted {
        return ((0, 0, 0), (0, 0, 0));
    }
    let here = r(&s.flavor);
    let src = match &s.source_host {
        Some(_) => r(s.old_flavor.as_ref().unwrap_or(&s.flavor)),
        None => (0, 0, 0),
    };
    (here, src)
}

async fn insert(conn: &mut sqlx::AnyConnection, s: &Server) -> StoreResult<Server> {
    let mut s = s.clone();
    s.version = 1;
    let (u, src) = usage(&s);
    sqlx::query(
        "INSERT INTO servers (id, project_id, name, vm_state, task_state, host, source_host,
         vcpus, ram_mb, disk_gb, src_vcpus, src_ram_mb, src_disk_gb, created_at,
         updated_at, version, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(&s.id)
    .bind(&s.project_id)
    .bind(&s.name)
    .bind(s.vm_state.as_str())
    .bind(s.task_state.map(|t| t.as_str()))
    .bind(s.host.clone())
    .bind(s.source_host.clone())
    .bind(u.0)
    .bind(u.1)
    .bind(u.2)
    .bind(src.0)
    .bind(src.1)
    .bind(src.2)
    .bind(ts(&s.created_at))
    .bind(ts(&s.updated_at))
    .bind(s.version)
    .bind(serde_json::to_string(&s)?)
    .execute(&mut *conn)
    .await?;
    Ok(s)
}

/// Writes `s` if the stored version is still `s.version`.
async fn cas(conn: &mut sqlx::AnyConnection, s: &Server) -> StoreResult<Server> {
    let mut next = s.clone();
    next.version = s.version + 1;
    next.updated_at = lifeboat_core::now();
    let (u, src) = usage(&next);
    let r = sqlx::query(
        "UPDATE servers SET project_id = $1, name = $2, vm_state = $3, task_state = $4,
         host = $5, source_host = $6, vcpus = $7, ram_mb = $8, disk_gb = $9, src_vcpus = $10,
         src_ram_mb = $11, src_disk_gb = $12, updated_at = $13, version = $14, data = $15
         WHERE id = $16 AND version = $17",
    )
    .bind(&next.project_id)
    .bind(&next.name)
    .bind(next.vm_state.as_str())
    .bind(next.task_state.map(|t| t.as_str()))
    .bind(next.host.clone())
    .bind(next.source_host.clone())
    .bind(u.0)
    .bind(u.1)
    .bind(u.2)
    .bind(src.0)
    .bind(src.1)
    .bind(src.2)
    .bind(ts(&next.updated_at))
    .bind(next.version)
    .bind(serde_json::to_string(&next)?)
    .bind(&s.id)
    .bind(s.version)
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 1 {
        return Ok(next);
    }
    let exists = sqlx::query("SELECT id FROM servers WHERE id = $1")
        .bind(&s.id)
        .fetch_optional(&mut *conn)
        .await?
        .is_some();
    Err(if exists {
        StoreError::Conflict(format!("server {}", s.id))
    } else {
        StoreError::NotFound(format!("server {}", s.id))
    })
}

impl Store {
    /// Inserts a new server (its `version` becomes 1).
    pub async fn insert_server(&self, s: &Server) -> StoreResult<Server> {
        let _turn = self.write_turn().await;
        let mut conn = self.pool.acquire().await?;
        insert(&mut conn, s).await
    }

    /// Inserts a new server, its first workflow and the workflow's extras
    /// in one transaction; returns the server and the ids of the extras'
    /// events.
    pub async fn insert_server_with_workflow(
        &self,
        s: &Server,
        w: &Workflow,
        extras: &WorkflowExtras,
    ) -> StoreResult<(Server, Vec<i64>)> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let out = insert(&mut tx, s).await?;
        crate::workflows::put(&mut tx, w).await?;
        let ids = crate::workflows::put_extras(&mut tx, w, extras).await?;
        tx.commit().await?;
        for r in &extras.records {
            self.identity_written(r.kind());
        }
        Ok((out, ids))
    }

    /// Writes `s` if the stored version is still `s.version`; returns the
    /// server with its new version, or [`StoreError::Conflict`].
    pub async fn cas_server(&self, s: &Server) -> StoreResult<Server> {
        let _turn = self.write_turn().await;
        let mut conn = self.pool.acquire().await?;
        cas(&mut conn, s).await
    }

    /// Compare-and-sets the server and records the workflow that owns its
    /// new task and the workflow's extras, in one transaction: all happen
    /// or none. Returns the server and the ids of the extras' events.
    pub async fn cas_server_with_workflow(
        &self,
        s: &Server,
        w: &Workflow,
        extras: &WorkflowExtras,
    ) -> StoreResult<(Server, Vec<i64>)> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let out = cas(&mut tx, s).await?;
        crate::workflows::put(&mut tx, w).await?;
        let ids = crate::workflows::put_extras(&mut tx, w, extras).await?;
        tx.commit().await?;
        for r in &extras.records {
            self.identity_written(r.kind());
        }
        Ok((out, ids))
    }

    /// A server by id.
    pub async fn get_server(&self, id: &str) -> StoreResult<Option<Server>> {
        let rows = sqlx::query("SELECT data, version FROM servers WHERE id = $1")
            .bind(id)
            .fetch_all(&self.reader)
            .await?;
        Ok(decode(rows)?.pop())
    }

    /// The servers with these ids (those that exist, in no order), in a few queries.
    pub async fn get_servers(&self, ids: &[String]) -> StoreResult<Vec<Server>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT data, version FROM servers WHERE id IN ({})",
                marks.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            out.extend(decode(q.fetch_all(&self.reader).await?)?);
        }
        Ok(out)
    }

    /// The workflow that owns a server's current task (None when it has no
    /// task or does not exist), read without decoding the whole record.
    pub async fn server_task_workflow(&self, id: &str) -> StoreResult<Option<String>> {
        let sql = match self.backend() {
            crate::Backend::Sqlite => {
                "SELECT json_extract(data, '$.task_workflow') FROM servers WHERE id = $1"
            }
            crate::Backend::Postgres => {
                "SELECT (data::json)->>'task_workflow' FROM servers WHERE id = $1"
            }
        };
        let v: Option<Option<String>> = sqlx::query_scalar(sql)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(v.flatten())
    }

    /// Removes a server row for good.
    pub async fn purge_server(&self, id: &str) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let r = sqlx::query("DELETE FROM servers WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Lists servers matching `q`, newest first.
    pub async fn list_servers(&self, q: &ServerQuery) -> StoreResult<Vec<Server>> {
        let mut sql = String::from("SELECT data, version FROM servers WHERE 1 = 1");
        let mut args: Vec<String> = Vec::new();
        let mut arg = |v: String, sql: &mut String, frag: &str| {
            args.push(v);
            sql.push_str(&frag.replace('?', &format!("${}", args.len())));
        };
        if let Some(p) = &q.project_id {
            arg(p.clone(), &mut sql, " AND project_id = ?");
        }
        if !q.include_deleted {
            sql.push_str(" AND vm_state <> 'deleted'");
        }
        if let Some(states) = &q.vm_states {
            if states.is_empty() {
                return Ok(vec![]);
            }
            sql.push_str(" AND vm_state IN (");
            for (i, st) in states.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                arg(st.as_str().to_string(), &mut sql, "?");
            }
            sql.push(')');
        }
        if let Some(n) = &q.name_contains {
            let escaped = n
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            arg(
                format!("%{escaped}%"),
                &mut sql,
                " AND name LIKE ? ESCAPE '\\'",
            );
        }
        if let Some(h) = &q.host {
            arg(h.clone(), &mut sql, " AND host = ?");
        }
        if let Some(t) = &q.changes_since {
            arg(ts(t), &mut sql, " AND updated_at >= ?");
        }
        if let Some(m) = &q.marker {
            let row = sqlx::query("SELECT created_at FROM servers WHERE id = $1")
                .bind(m)
                .fetch_optional(&self.reader)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("marker {m}")))?;
            let created: String = row.try_get("created_at")?;
            arg(created.clone(), &mut sql, " AND (created_at < ?");
            arg(created, &mut sql, " OR (created_at = ?");
            arg(m.clone(), &mut sql, " AND id < ?))");
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC");
        if let Some(l) = q.limit {
            sql.push_str(&format!(" LIMIT {}", l.max(0)));
        }
        let mut query = sqlx::query(&sql);
        for a in &args {
            query = query.bind(a);
        }
        decode(query.fetch_all(&self.reader).await?)
    }

    /// Resources allocated per host (servers on it plus resize/migration
    /// sources): host → (vcpus, ram MiB, disk GiB). Kept per host by
    /// triggers on `servers` (migration 0003), so this reads one row per
    /// host, not every server.
    pub async fn host_usage(
        &self,
    ) -> StoreResult<std::collections::HashMap<String, (i64, i64, i64)>> {
        let mut out: std::collections::HashMap<String, (i64, i64, i64)> = Default::default();
        for row in sqlx::query("SELECT host, vcpus, ram_mb, disk_gb FROM host_usage")
            .fetch_all(&self.reader)
            .await?
        {
            let h: String = row.try_get("host")?;
            let c: i64 = row.try_get("vcpus")?;
            let r: i64 = row.try_get("ram_mb")?;
            let d: i64 = row.try_get("disk_gb")?;
            out.insert(h, (c, r, d));
        }
        Ok(out)
    }

    /// Servers with a task in progress (crash recovery).
    pub async fn servers_with_tasks(&self) -> StoreResult<Vec<Server>> {
        let rows = sqlx::query("SELECT data, version FROM servers WHERE task_state IS NOT NULL")
            .fetch_all(&self.reader)
            .await?;
        decode(rows)
    }

    /// Number of servers not deleted.
    pub async fn count_servers(&self, project_id: Option<&str>) -> StoreResult<i64> {
        let n: i64 =
            match project_id {
                Some(p) => sqlx::query_scalar(
                    "SELECT COUNT(*) FROM servers WHERE vm_state <> 'deleted' AND project_id = $1",
                )
                .bind(p)
                .fetch_one(&self.reader)
                .await?,
                None => {
                    sqlx::query_scalar("SELECT COUNT(*) FROM servers WHERE vm_state <> 'deleted'")
                        .fetch_one(&self.reader)
                        .await?
                }
            };
        Ok(n)
    }
}
