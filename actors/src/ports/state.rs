//! The state store port (Redis in production): operator flags, versions,
//! progress, leases and the statuses instances publish.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Advance;
use crate::ddl::ParkedDdl;
use crate::error::Result;
use crate::fence::Claim;
use crate::model::{PrimaryIdentity, SyncVersion, TableId};

/// Operator switches for one table (`mssql_sync:enabled:<T>`,
/// `mssql_sync:force_full_load:<T>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFlags {
    pub enabled: bool,
    pub force_full_load: bool,
    /// `mssql_sync:force_requests:<T>`: Force Load requests made through
    /// the API or CLI (each one counts, even while the flag is "true").
    pub force_requests: u64,
}

/// Full-load progress, also written to `mssql_sync:progress:<T>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadProgress {
    pub synced: u64,
    pub total: u64,
    /// Unix milliseconds.
    pub started_at: u64,
    pub updated_at: u64,
    /// Rows already copied when an interrupted load resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_at: Option<u64>,
}

/// Whether the store still had ctsync's marker key (`mssql_sync:marker`).
/// The marker is created once and never deleted by ctsync, so finding it
/// gone means the store lost its data (FLUSHALL, a restart without
/// persistence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Present,
    /// It was missing and has just been created.
    Created,
}

/// The keys a table's cycle reads (`StateStore::cycle_keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleKeys {
    pub flags: TableFlags,
    pub version: Option<SyncVersion>,
    pub identity: Option<PrimaryIdentity>,
}

/// Where flags, versions and progress live (Redis in production).
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Creates both flags of every table as `"false"` unless they exist
    /// (never overwrites), and the marker key, in one round trip.
    async fn ensure_flags(&self, tables: &[TableId]) -> Result<Marker>;
    /// Sets plain keys ctsync publishes for operators (the sanitized
    /// endpoints `mssql_sync:config:*`).
    async fn publish(&self, pairs: &[(String, String)]) -> Result<()>;
    async fn flags(&self, table: &TableId) -> Result<TableFlags>;
    /// What one cycle of `table` reads, in one round trip: its flags, its
    /// version and the identity of the primary it was synced from.
    async fn cycle_keys(&self, table: &TableId) -> Result<CycleKeys> {
        Ok(CycleKeys {
            flags: self.flags(table).await?,
            version: self.version(table).await?,
            identity: self.primary_identity(table).await?,
        })
    }
    async fn set_enabled(&self, table: &TableId, enabled: bool) -> Result<()>;
    async fn set_force_full_load(&self, table: &TableId, force: bool) -> Result<()>;
    /// A Force Load request from the API or CLI: sets the flag to "true"
    /// and counts the request, so a load already running starts over.
    async fn request_full_load(&self, table: &TableId) -> Result<()>;
    async fn version(&self, table: &TableId) -> Result<Option<SyncVersion>>;
    /// Sets `mssql_sync:version:<T>` if `claim` still holds the table's
    /// lease (else [`crate::Error::Fenced`], nothing written); the same
    /// check guards every write of a table's state below.
    async fn set_version(&self, table: &TableId, version: SyncVersion, claim: &Claim)
        -> Result<()>;
    /// Stores the version and the primary identity in one atomic step, and
    /// in the same step resets `force_full_load` to `"false"` only if it
    /// still says what the load read at its start (`forced`): a request
    /// made during a load that started unforced is kept, so another load
    /// follows.
    async fn finish_full_load(
        &self,
        table: &TableId,
        version: SyncVersion,
        identity: &PrimaryIdentity,
        forced: bool,
        claim: &Claim,
    ) -> Result<()>;
    /// The identity of the primary this table was synced from.
    async fn primary_identity(&self, table: &TableId) -> Result<Option<PrimaryIdentity>>;
    async fn set_primary_identity(
        &self,
        table: &TableId,
        identity: &PrimaryIdentity,
        claim: &Claim,
    ) -> Result<()>;
    async fn set_progress(
        &self,
        table: &TableId,
        progress: &LoadProgress,
        claim: &Claim,
    ) -> Result<()>;
    /// Appends a DDL message that could not be applied to
    /// `mssql_sync:ddl_failed`.
    async fn park_ddl(&self, entry: &ParkedDdl) -> Result<()>;
    /// Moves the table's keys (flags, version, identity, progress) to its
    /// new name; `claim` is the owner's claim on `from`.
    async fn rename_table(&self, from: &TableId, to: &TableId, claim: &Claim) -> Result<()>;

    /// Registers `instance` as live for `ttl` (its heartbeat) and returns
    /// every live instance, sorted, in one round trip.
    async fn heartbeat(&self, instance: &str, ttl: Duration) -> Result<Vec<String>>;
    /// Removes `instance` from the live ones (graceful stop).
    async fn leave(&self, instance: &str) -> Result<()>;
    /// Takes each free lease and renews each one `owner` holds, for `ttl`,
    /// in one atomic round trip; says per lease what happened.
    async fn acquire_leases(
        &self,
        leases: &[String],
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<LeaseGrant>>;
    /// Records `claim` in a lease its owner holds (keeping its TTL), so the
    /// writes of the table's state can check it; `false`: not held.
    async fn set_lease_claim(&self, lease: &str, claim: &Claim) -> Result<bool>;
    /// Gives back the leases `owner` holds among `leases`.
    async fn release_leases(&self, leases: &[String], owner: &str) -> Result<()>;
    /// Publishes the statuses of the tables `instance` runs (JSON), for
    /// `ttl` (`mssql_sync:status:<instance>`).
    async fn publish_status(&self, instance: &str, json: &str, ttl: Duration) -> Result<()>;
    /// Every live instance's published statuses: (instance, JSON), in one
    /// round trip.
    async fn statuses(&self) -> Result<Vec<(String, String)>>;
    /// The operator keys of many tables in one round trip (the page and
    /// API): per table, its flags and its version key's raw value (read
    /// with [`crate::keys::parse_version`], so one bad value is that
    /// table's error only).
    async fn table_keys(&self, tables: &[TableId]) -> Result<Vec<(TableFlags, Option<String>)>>;

    /// The first round trip of a discovery: with `new` (the primary was
    /// listed), creates the flags of those tables (SET NX, as
    /// [`Self::ensure_flags`]) and the marker; renews `instance`'s
    /// heartbeat. Returns the marker (`None` without `new`) and the live
    /// instances.
    async fn discovery_start(
        &self,
        new: Option<&[TableId]>,
        instance: &str,
        ttl: Duration,
    ) -> Result<(Option<Marker>, Vec<String>)> {
        let marker = match new {
            Some(tables) => Some(self.ensure_flags(tables).await?),
            None => None,
        };
        Ok((marker, self.heartbeat(instance, ttl).await?))
    }
    /// The second round trip of a discovery: takes or renews `leases` (as
    /// [`Self::acquire_leases`]), publishes `owner`'s statuses (as
    /// [`Self::publish_status`]) and moves the versions of `advances` (as
    /// [`Self::advance_versions`]): the grants and the tables moved.
    async fn discovery_finish(
        &self,
        leases: &[String],
        owner: &str,
        ttl: Duration,
        statuses: &str,
        advances: &[Advance],
    ) -> Result<(Vec<LeaseGrant>, Vec<TableId>)> {
        let grants = self.acquire_leases(leases, owner, ttl).await?;
        self.publish_status(owner, statuses, ttl).await?;
        Ok((grants, self.advance_versions(advances).await?))
    }
    /// Moves each table's version key from `from` to `to` where the
    /// table's lease still holds the claim and the key still says `from`
    /// (read as a number); the others stay. Returns the tables moved.
    async fn advance_versions(&self, advances: &[Advance]) -> Result<Vec<TableId>> {
        let mut moved = Vec::new();
        for a in advances {
            if self.version(&a.table).await? != Some(a.from) {
                continue;
            }
            match self.set_version(&a.table, a.to, &a.claim).await {
                Ok(()) => moved.push(a.table.clone()),
                Err(crate::Error::Fenced { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }
    /// [`Self::statuses`] and [`Self::table_keys`] of `tables` in one round
    /// trip (the page and API).
    async fn statuses_and_keys(
        &self,
        tables: &[TableId],
    ) -> Result<(Vec<(String, String)>, Vec<(TableFlags, Option<String>)>)> {
        Ok((self.statuses().await?, self.table_keys(tables).await?))
    }
}

/// What asking for a lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseGrant {
    /// It was free: the asker holds it now (with no claim yet).
    Acquired,
    /// The asker held it; its TTL starts again.
    Renewed,
    /// Another instance holds it (its lease value: `<owner> <token>`).
    Held(String),
}

impl LeaseGrant {
    pub fn holds(&self) -> bool {
        matches!(self, LeaseGrant::Acquired | LeaseGrant::Renewed)
    }
}
