//! Generic records: every resource other than servers, workflows and events
//! is a row of `records` keyed by (kind, id) with an owner, an optional
//! unique name, an optional reference and the JSON record.

use lifeboat_core::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::ts;
use crate::{Store, StoreError, StoreResult};

/// A resource kept in the `records` table.
pub trait Record: Serialize + DeserializeOwned + Send + Sync {
    /// Kind tag.
    const KIND: &'static str;
    /// Primary key within the kind.
    fn id(&self) -> String;
    /// Owner (project or user); "" for global.
    fn owner(&self) -> String {
        String::new()
    }
    /// Name unique per (kind, owner), if names are unique for this kind.
    fn unique_name(&self) -> Option<String> {
        None
    }
    /// A reference used for lookups (e.g. the server a port is bound to).
    fn ref_id(&self) -> Option<String> {
        None
    }
    /// Creation time (ordering).
    fn created(&self) -> Time {
        Time::UNIX_EPOCH
    }
}

/// A key/value setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

impl Record for Setting {
    const KIND: &'static str = "setting";
    fn id(&self) -> String {
        self.key.clone()
    }
}

impl Record for Flavor {
    const KIND: &'static str = "flavor";
    fn id(&self) -> String {
        self.id.clone()
    }
    fn unique_name(&self) -> Option<String> {
        Some(self.name.clone())
    }
}

impl Record for Image {
    const KIND: &'static str = "image";
    fn id(&self) -> String {
        self.id.clone()
    }
    fn owner(&self) -> String {
        self.owner.clone().unwrap_or_default()
    }
    fn ref_id(&self) -> Option<String> {
        self.instance_uuid.clone()
    }
    fn created(&self) -> Time {
        self.created_at
    }
}

impl Record for Project {
    const KIND: &'static str = "project";
    fn id(&self) -> String {
        self.id.clone()
    }
    fn unique_name(&self) -> Option<String> {
        Some(self.name.clone())
    }
}

impl Record for User {
    const KIND: &'static str = "user";
    fn id(&self) -> String {
        self.id.clone()
    }
    fn unique_name(&self) -> Option<String> {
        Some(self.name.clone())
    }
}

impl Record for RoleAssignment {
    const KIND: &'static str = "role_assignment";
    fn id(&self) -> String {
        format!("{}:{}:{}", self.user_id, self.project_id, self.role)
    }
    fn owner(&self) -> String {
        self.user_id.clone()
    }
    fn ref_id(&self) -> Option<String> {
        Some(self.project_id.clone())
    }
}

impl Record for AccessKey {
    const KIND: &'static str = "access_key";
    fn id(&self) -> String {
        self.access_key_id.clone()
    }
    fn owner(&self) -> String {
        self.user_id.clone()
    }
    fn created(&self) -> Time {
        self.created_at
    }
}

impl Record for Token {
    const KIND: &'static str = "token";
    fn id(&self) -> String {
        self.id_hash.clone()
    }
    fn owner(&self) -> String {
        self.user_id.clone()
    }
    fn created(&self) -> Time {
        self.issued_at
    }
}

impl Record for Keypair {
    const KIND: &'static str = "keypair";
    fn id(&self) -> String {
        format!("{}:{}", self.user_id, self.name)
    }
    fn owner(&self) -> String {
        self.user_id.clone()
    }
    fn unique_name(&self) -> Option<String> {
        Some(self.name.clone())
    }
    fn created(&self) -> Time {
        self.created_at
    }
}

impl Record for Network {
    const KIND: &'static str = "network";
    fn id(&self) -> String {
        self.id.clone()
    }
    fn owner(&self) -> String {
        self.project_id.clone().unwrap_or_default()
    }
}

impl Record for Port {
    const KIND: &'static str = "port";
    fn id(&self) -> String {
        self.id.clone()
    }
    fn owner(&self) -> String {
        self.network_id.clone()
    }
    fn unique_name(&self) -> Option<String> {
        // one fixed IP per network (a port may have none)
        (!self.fixed_ip.is_empty()).then(|| self.fixed_ip.clone())
    }
    fn ref_id(&self) -> Option<String> {
        self.server_id.clone()
    }
}

impl Record for FloatingIp {
    const KIND: &'static str = "floating_ip";
    fn id(&self) -> String {
        self.id.clone()
    }
    fn unique_name(&self) -> Option<String> {
        Some(self.address.clone())
    }
    fn ref_id(&self) -> Option<String> {
        self.port_id.clone()
    }
}

impl Record for Host {
    const KIND: &'static str = "host";
    fn id(&self) -> String {
        self.name.clone()
    }
}

fn decode<R: Record>(rows: Vec<sqlx::any::AnyRow>) -> StoreResult<Vec<R>> {
    rows.into_iter()
        .map(|r| {
            let data: String = r.try_get("data")?;
            Ok(serde_json::from_str(&data)?)
        })
        .collect()
}

/// A record serialised for writing inside another transaction
/// (see [`crate::WorkflowExtras`]).
#[derive(Debug, Clone)]
pub struct RecordRow {
    kind: &'static str,
    id: String,
    owner: String,
    name: Option<String>,
    ref_id: Option<String>,
    created_at: String,
    data: String,
}

impl RecordRow {
    /// Serialises a record for insertion.
    pub fn of<R: Record>(r: &R) -> StoreResult<RecordRow> {
        Ok(RecordRow {
            kind: R::KIND,
            id: r.id(),
            owner: r.owner(),
            name: r.unique_name(),
            ref_id: r.ref_id(),
            created_at: ts(&r.created()),
            data: serde_json::to_string(r)?,
        })
    }

    /// The record's kind.
    pub(crate) fn kind(&self) -> &'static str {
        self.kind
    }

    pub(crate) async fn insert(&self, conn: &mut sqlx::AnyConnection) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO records (kind, id, owner, name, ref_id, created_at, data)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(self.kind)
        .bind(&self.id)
        .bind(&self.owner)
        .bind(self.name.clone())
        .bind(self.ref_id.clone())
        .bind(&self.created_at)
        .bind(&self.data)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

impl Store {
    async fn write<R: Record>(&self, r: &R, upsert: bool) -> StoreResult<()> {
        let sql = if upsert {
            "INSERT INTO records (kind, id, owner, name, ref_id, created_at, data)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (kind, id) DO UPDATE SET owner = excluded.owner, name = excluded.name,
             ref_id = excluded.ref_id, data = excluded.data"
        } else {
            "INSERT INTO records (kind, id, owner, name, ref_id, created_at, data)
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        };
        let _turn = self.write_turn().await;
        let res = sqlx::query(sql)
            .bind(R::KIND)
            .bind(r.id())
            .bind(r.owner())
            .bind(r.unique_name())
            .bind(r.ref_id())
            .bind(ts(&r.created()))
            .bind(serde_json::to_string(r)?)
            .execute(&self.pool)
            .await;
        self.identity_written(R::KIND);
        res?;
        Ok(())
    }

    /// Inserts a new record; [`StoreError::Duplicate`] if the id or unique name exists.
    pub async fn insert<R: Record>(&self, r: &R) -> StoreResult<()> {
        self.write(r, false).await
    }

    /// Inserts or replaces a record.
    pub async fn put<R: Record>(&self, r: &R) -> StoreResult<()> {
        self.write(r, true).await
    }

    /// A record by id.
    pub async fn get<R: Record>(&self, id: &str) -> StoreResult<Option<R>> {
        let rows = sqlx::query("SELECT data FROM records WHERE kind = $1 AND id = $2")
            .bind(R::KIND)
            .bind(id)
            .fetch_all(&self.reader)
            .await?;
        Ok(decode(rows)?.pop())
    }

    /// A record by id, or [`StoreError::NotFound`].
    pub async fn must_get<R: Record>(&self, id: &str) -> StoreResult<R> {
        self.get(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("{} {id}", R::KIND)))
    }

    /// Deletes a record; returns whether it existed.
    pub async fn delete<R: Record>(&self, id: &str) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let r = sqlx::query("DELETE FROM records WHERE kind = $1 AND id = $2")
            .bind(R::KIND)
            .bind(id)
            .execute(&self.pool)
            .await;
        self.identity_written(R::KIND);
        Ok(r?.rows_affected() > 0)
    }

    /// Every record of a kind, oldest first.
    pub async fn list<R: Record>(&self) -> StoreResult<Vec<R>> {
        let rows = sqlx::query("SELECT data FROM records WHERE kind = $1 ORDER BY created_at, id")
            .bind(R::KIND)
            .fetch_all(&self.reader)
            .await?;
        decode(rows)
    }

    /// Records of a kind with this owner.
    pub async fn list_by_owner<R: Record>(&self, owner: &str) -> StoreResult<Vec<R>> {
        let rows = sqlx::query(
            "SELECT data FROM records WHERE kind = $1 AND owner = $2 ORDER BY created_at, id",
        )
        .bind(R::KIND)
        .bind(owner)
        .fetch_all(&self.reader)
        .await?;
        decode(rows)
    }

    /// Records of a kind with this reference.
    pub async fn list_by_ref<R: Record>(&self, ref_id: &str) -> StoreResult<Vec<R>> {
        let rows = sqlx::query(
            "SELECT data FROM records WHERE kind = $1 AND ref_id = $2 ORDER BY created_at, id",
        )
        .bind(R::KIND)
        .bind(ref_id)
        .fetch_all(&self.reader)
        .await?;
        decode(rows)
    }

    /// The record of a kind with this owner and unique name.
    pub async fn find_by_name<R: Record>(&self, owner: &str, name: &str) -> StoreResult<Option<R>> {
        let rows =
            sqlx::query("SELECT data FROM records WHERE kind = $1 AND owner = $2 AND name = $3")
                .bind(R::KIND)
                .bind(owner)
                .bind(name)
                .fetch_all(&self.reader)
                .await?;
        Ok(decode(rows)?.pop())
    }

    /// A setting's value.
    pub async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(self.get::<Setting>(key).await?.map(|s| s.value))
    }

    /// Sets a setting.
    pub async fn set_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        self.put(&Setting {
            key: key.into(),
            value: value.into(),
        })
        .await
    }
}
