//! `RedisState`: the state store on Redis. The connection is made lazily and
//! kept as a `ConnectionManager` (which reconnects by itself), so ctsync
//! starts even while Redis is down and recovers when it returns.

use std::time::Duration;

use async_trait::async_trait;
use ctsync_actors::ddl::ParkedDdl;
use ctsync_actors::keys;
use ctsync_actors::model::{PrimaryIdentity, SyncVersion, TableId};
use ctsync_actors::ports::{LoadProgress, StateStore, TableFlags};
use ctsync_actors::{Error, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use tokio::sync::Mutex;

pub struct RedisState {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
}

fn state_err(what: &str, e: redis::RedisError) -> Error {
    Error::State(format!("{what}: {e}"))
}

impl RedisState {
    /// Parses the URL; does not connect yet.
    pub fn new(url: &str) -> std::result::Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            conn: Mutex::new(None),
        })
    }

    async fn conn(&self) -> Result<ConnectionManager> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let c = self
            .client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| state_err("connecting to Redis", e))?;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// `PING`: used by readiness checks.
    pub async fn ping(&self) -> Result<()> {
        let mut c = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(|_| ())
            .map_err(|e| state_err("PING", e))
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        let mut c = self.conn().await?;
        c.get(key)
            .await
            .map_err(|e| state_err(&format!("GET {key}"), e))
    }

    pub async fn set(&self, key: &str, value: &str) -> Result<()> {
        let mut c = self.conn().await?;
        c.set(key, value)
            .await
            .map_err(|e| state_err(&format!("SET {key}"), e))
    }

    /// Names of every table that has an `enabled` flag, sorted.
    pub async fn table_names(&self) -> Result<Vec<String>> {
        let mut c = self.conn().await?;
        let prefix = format!("{}:enabled:", keys::PREFIX);
        let mut names: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(500)
                .query_async(&mut c)
                .await
                .map_err(|e| state_err("SCAN enabled flags", e))?;
            names.extend(
                batch
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string)),
            );
            if next == 0 {
                break;
            }
            cursor = next;
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// All items of a Redis list (e.g. `mssql_sync:ddl_failed`).
    pub async fn list(&self, key: &str) -> Result<Vec<String>> {
        let mut c = self.conn().await?;
        c.lrange(key, 0, -1)
            .await
            .map_err(|e| state_err(&format!("LRANGE {key}"), e))
    }

    pub async fn del(&self, key: &str) -> Result<()> {
        let mut c = self.conn().await?;
        c.del(key)
            .await
            .map_err(|e| state_err(&format!("DEL {key}"), e))
    }
}

fn flag(v: bool) -> &'static str {
    if v {
        "true"
    } else {
        "false"
    }
}

#[async_trait]
impl StateStore for RedisState {
    async fn ensure_flags(&self, table: &TableId) -> Result<()> {
        let mut c = self.conn().await?;
        let mut pipe = redis::pipe();
        for key in [keys::enabled(table), keys::force_full_load(table)] {
            pipe.cmd("SET").arg(key).arg("false").arg("NX").ignore();
        }
        pipe.query_async::<()>(&mut c)
            .await
            .map_err(|e| state_err(&format!("SET NX flags of {}", table.key_name()), e))
    }

    async fn flags(&self, table: &TableId) -> Result<TableFlags> {
        let mut c = self.conn().await?;
        let (enabled, force): (Option<String>, Option<String>) = redis::cmd("MGET")
            .arg(keys::enabled(table))
            .arg(keys::force_full_load(table))
            .query_async(&mut c)
            .await
            .map_err(|e| state_err(&format!("MGET flags of {}", table.key_name()), e))?;
        Ok(TableFlags {
            enabled: keys::parse_flag(enabled.as_deref()),
            force_full_load: keys::parse_flag(force.as_deref()),
        })
    }

    async fn set_enabled(&self, table: &TableId, enabled: bool) -> Result<()> {
        self.set(&keys::enabled(table), flag(enabled)).await
    }

    async fn set_force_full_load(&self, table: &TableId, force: bool) -> Result<()> {
        self.set(&keys::force_full_load(table), flag(force)).await
    }

    async fn version(&self, table: &TableId) -> Result<Option<SyncVersion>> {
        let key = keys::version(table);
        match self.get(&key).await? {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                Error::State(format!(
                    "{key} holds {v:?}, not a version number; set it to an integer or delete it"
                ))
            }),
        }
    }

    async fn set_version(&self, table: &TableId, version: SyncVersion) -> Result<()> {
        self.set(&keys::version(table), &version.to_string()).await
    }

    async fn finish_full_load(
        &self,
        table: &TableId,
        version: SyncVersion,
        identity: &PrimaryIdentity,
    ) -> Result<()> {
        let mut c = self.conn().await?;
        redis::pipe()
            .atomic()
            .set(keys::version(table), version.to_string())
            .ignore()
            .set(keys::force_full_load(table), "false")
            .ignore()
            .set(keys::primary_identity(table), identity.encode())
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(|e| state_err(&format!("MULTI version+flag of {}", table.key_name()), e))
    }

    async fn primary_identity(&self, table: &TableId) -> Result<Option<PrimaryIdentity>> {
        Ok(self
            .get(&keys::primary_identity(table))
            .await?
            .and_then(|s| PrimaryIdentity::decode(&s)))
    }

    async fn set_primary_identity(
        &self,
        table: &TableId,
        identity: &PrimaryIdentity,
    ) -> Result<()> {
        self.set(&keys::primary_identity(table), &identity.encode())
            .await
    }

    async fn set_progress(&self, table: &TableId, progress: &LoadProgress) -> Result<()> {
        let json = serde_json::to_string(progress).map_err(|e| Error::State(e.to_string()))?;
        self.set(&keys::progress(table), &json).await
    }

    async fn park_ddl(&self, entry: &ParkedDdl) -> Result<()> {
        let json = serde_json::to_string(entry).map_err(|e| Error::State(e.to_string()))?;
        let mut c = self.conn().await?;
        c.rpush::<_, _, ()>(keys::DDL_FAILED, json)
            .await
            .map_err(|e| state_err(&format!("RPUSH {}", keys::DDL_FAILED), e))
    }

    async fn rename_table(&self, from: &TableId, to: &TableId) -> Result<()> {
        let mut c = self.conn().await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (old, new) in keys::table_keys(from).into_iter().zip(keys::table_keys(to)) {
            let exists: bool = c
                .exists(&old)
                .await
                .map_err(|e| state_err(&format!("EXISTS {old}"), e))?;
            if exists {
                pipe.cmd("RENAME").arg(old).arg(new).ignore();
            }
        }
        pipe.query_async::<()>(&mut c).await.map_err(|e| {
            state_err(
                &format!(
                    "moving the keys of {} to {}",
                    from.key_name(),
                    to.key_name()
                ),
                e,
            )
        })
    }
}
