//! In-memory state store over the same key names as Redis, with leases and
//! heartbeats on tokio's clock. Faults (a Redis outage, a crash before a
//! version save) are injected around it (`memory::faults`).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use tokio::time::Instant;

use crate::ddl::ParkedDdl;
use crate::error::{Error, Result};
use crate::fence::{refused, CheckedBy, Claim};
use crate::keys;
use crate::model::{PrimaryIdentity, SyncVersion, TableId};
use crate::ports::{LeaseGrant, LoadProgress, Marker, StateStore, TableFlags};

/// A key/value map standing in for Redis.
#[derive(Debug, Default)]
pub struct MemoryState {
    map: Mutex<BTreeMap<String, String>>,
    lists: Mutex<BTreeMap<String, Vec<String>>>,
    /// Leases with their value and expiry (on tokio's clock, so paused
    /// clocks in tests move them).
    leases: Mutex<BTreeMap<String, (String, Instant)>>,
    /// Live instances and when their heartbeat expires.
    instances: Mutex<BTreeMap<String, Instant>>,
    /// Full-load ends applied per table, and when the last one was (what a
    /// test tells a load's Redis step by, as its replica step is told by
    /// the record).
    load_ends: Mutex<BTreeMap<TableId, (u64, Instant)>>,
}

impl MemoryState {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.lock().get(key).cloned()
    }

    pub fn set(&self, key: &str, value: &str) {
        self.lock().insert(key.to_string(), value.to_string());
    }

    /// How many full loads of `table` have ended here (their version
    /// stored, the force flag reset if still "true").
    pub fn load_ends(&self, table: &TableId) -> u64 {
        let ends = self.load_ends.lock().unwrap_or_else(|e| e.into_inner());
        ends.get(table).map_or(0, |(n, _)| *n)
    }

    /// When the last full load of `table` ended here (tokio's clock).
    pub fn last_load_end(&self, table: &TableId) -> Option<Instant> {
        let ends = self.load_ends.lock().unwrap_or_else(|e| e.into_inner());
        ends.get(table).map(|(_, at)| *at)
    }

    pub fn del(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Forgets every key, as a Redis FLUSHALL would.
    pub fn flush(&self) {
        self.lock().clear();
        self.lists.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.leases_now().clear();
        self.instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The leases, without the expired ones.
    fn leases_now(&self) -> MutexGuard<'_, BTreeMap<String, (String, Instant)>> {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        leases.retain(|_, (_, until)| *until > now);
        leases
    }

    /// A lease's value (`<owner> <token>`), if someone holds it.
    pub fn lease(&self, name: &str) -> Option<String> {
        self.leases_now().get(name).map(|(v, _)| v.clone())
    }

    /// Runs `write` on the keys if `claim` holds the table's lease, as the
    /// Redis scripts do atomically.
    fn guarded(
        &self,
        table: &TableId,
        claim: &Claim,
        write: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Result<()> {
        let leases = self.leases_now();
        let lease = keys::table_lease(table);
        let held = leases.get(&lease).map(|(v, _)| v.as_str());
        if held != Some(claim.lease_value().as_str()) {
            return Err(refused(table, claim, CheckedBy::Lease, held));
        }
        write(&mut self.lock());
        Ok(())
    }

    /// The items of a list key (e.g. `mssql_sync:ddl_failed`).
    pub fn list(&self, key: &str) -> Vec<String> {
        self.lists
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
            .unwrap_or_default()
    }
}

#[async_trait]
impl StateStore for MemoryState {
    async fn ensure_flags(&self, tables: &[TableId]) -> Result<Marker> {
        let mut map = self.lock();
        for table in tables {
            for key in [keys::enabled(table), keys::force_full_load(table)] {
                map.entry(key).or_insert_with(|| "false".to_string());
            }
        }
        if map.contains_key(keys::MARKER) {
            return Ok(Marker::Present);
        }
        map.insert(keys::MARKER.to_string(), "ctsync".to_string());
        Ok(Marker::Created)
    }

    async fn publish(&self, pairs: &[(String, String)]) -> Result<()> {
        let mut map = self.lock();
        for (k, v) in pairs {
            map.insert(k.clone(), v.clone());
        }
        Ok(())
    }

    async fn flags(&self, table: &TableId) -> Result<TableFlags> {
        let map = self.lock();
        Ok(TableFlags {
            enabled: keys::parse_flag(map.get(&keys::enabled(table)).map(String::as_str)),
            force_full_load: keys::parse_flag(
                map.get(&keys::force_full_load(table)).map(String::as_str),
            ),
            force_requests: keys::parse_count(
                map.get(&keys::force_requests(table)).map(String::as_str),
            ),
        })
    }

    async fn set_enabled(&self, table: &TableId, enabled: bool) -> Result<()> {
        self.set(
            &keys::enabled(table),
            if enabled { "true" } else { "false" },
        );
        Ok(())
    }

    async fn set_force_full_load(&self, table: &TableId, force: bool) -> Result<()> {
        self.set(
            &keys::force_full_load(table),
            if force { "true" } else { "false" },
        );
        Ok(())
    }

    async fn request_full_load(&self, table: &TableId) -> Result<()> {
        let mut map = self.lock();
        map.insert(keys::force_full_load(table), "true".into());
        let key = keys::force_requests(table);
        let n = keys::parse_count(map.get(&key).map(String::as_str)) + 1;
        map.insert(key, n.to_string());
        Ok(())
    }

    async fn version(&self, table: &TableId) -> Result<Option<SyncVersion>> {
        let key = keys::version(table);
        keys::parse_version(&key, self.get(&key).as_deref())
    }

    async fn set_version(
        &self,
        table: &TableId,
        version: SyncVersion,
        claim: &Claim,
    ) -> Result<()> {
        self.guarded(table, claim, |map| {
            map.insert(keys::version(table), version.to_string());
        })
    }

    async fn finish_full_load(
        &self,
        table: &TableId,
        version: SyncVersion,
        identity: &PrimaryIdentity,
        forced: bool,
        claim: &Claim,
    ) -> Result<()> {
        self.guarded(table, claim, |map| {
            map.insert(keys::version(table), version.to_string());
            let force_key = keys::force_full_load(table);
            let still_forced = keys::parse_flag(map.get(&force_key).map(String::as_str));
            if forced && still_forced {
                map.insert(force_key, "false".into());
            }
            map.insert(keys::primary_identity(table), identity.encode());
        })?;
        let mut ends = self.load_ends.lock().unwrap_or_else(|e| e.into_inner());
        let end = ends.entry(table.clone()).or_insert((0, Instant::now()));
        *end = (end.0 + 1, Instant::now());
        Ok(())
    }

    async fn primary_identity(&self, table: &TableId) -> Result<Option<PrimaryIdentity>> {
        Ok(self
            .get(&keys::primary_identity(table))
            .and_then(|s| PrimaryIdentity::decode(&s)))
    }

    async fn set_primary_identity(
        &self,
        table: &TableId,
        identity: &PrimaryIdentity,
        claim: &Claim,
    ) -> Result<()> {
        self.guarded(table, claim, |map| {
            map.insert(keys::primary_identity(table), identity.encode());
        })
    }

    async fn set_progress(
        &self,
        table: &TableId,
        progress: &LoadProgress,
        claim: &Claim,
    ) -> Result<()> {
        let json = serde_json::to_string(progress).map_err(|e| Error::State(e.to_string()))?;
        self.guarded(table, claim, |map| {
            map.insert(keys::progress(table), json);
        })
    }

    async fn park_ddl(&self, entry: &ParkedDdl) -> Result<()> {
        let json = serde_json::to_string(entry).map_err(|e| Error::State(e.to_string()))?;
        let mut lists = self.lists.lock().unwrap_or_else(|e| e.into_inner());
        lists
            .entry(keys::DDL_FAILED.to_string())
            .or_default()
            .push(json);
        Ok(())
    }

    async fn rename_table(&self, from: &TableId, to: &TableId, claim: &Claim) -> Result<()> {
        self.guarded(from, claim, |map| {
            for (old, new) in keys::table_keys(from).into_iter().zip(keys::table_keys(to)) {
                if let Some(v) = map.remove(&old) {
                    map.insert(new, v);
                }
            }
        })
    }

    async fn heartbeat(&self, instance: &str, ttl: Duration) -> Result<Vec<String>> {
        let mut instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        instances.retain(|_, until| *until > now);
        instances.insert(instance.to_string(), now + ttl);
        Ok(instances.keys().cloned().collect())
    }

    async fn leave(&self, instance: &str) -> Result<()> {
        self.instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(instance);
        Ok(())
    }

    async fn acquire_leases(
        &self,
        leases: &[String],
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<LeaseGrant>> {
        let mut held = self.leases_now();
        let until = Instant::now() + ttl;
        let mine = format!("{owner} ");
        Ok(leases
            .iter()
            .map(|name| match held.get_mut(name) {
                None => {
                    held.insert(name.clone(), (format!("{owner} 0"), until));
                    LeaseGrant::Acquired
                }
                Some((value, expiry)) if value.starts_with(&mine) => {
                    *expiry = until;
                    LeaseGrant::Renewed
                }
                Some((value, _)) => LeaseGrant::Held(value.clone()),
            })
            .collect())
    }

    async fn set_lease_claim(&self, lease: &str, claim: &Claim) -> Result<bool> {
        let mut held = self.leases_now();
        let mine = format!("{} ", claim.owner);
        match held.get_mut(lease) {
            Some((value, _)) if value.starts_with(&mine) => {
                *value = claim.lease_value();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_leases(&self, leases: &[String], owner: &str) -> Result<()> {
        let mut held = self.leases_now();
        let mine = format!("{owner} ");
        for name in leases {
            if held.get(name).is_some_and(|(v, _)| v.starts_with(&mine)) {
                held.remove(name);
            }
        }
        Ok(())
    }

    async fn publish_status(&self, instance: &str, json: &str, ttl: Duration) -> Result<()> {
        // Expiring keys share the leases' map.
        self.leases_now().insert(
            keys::instance_status(instance),
            (json.to_string(), Instant::now() + ttl),
        );
        Ok(())
    }

    async fn table_keys(&self, tables: &[TableId]) -> Result<Vec<(TableFlags, Option<String>)>> {
        let map = self.lock();
        Ok(tables
            .iter()
            .map(|t| {
                let get = |k: String| map.get(&k).map(String::as_str);
                (
                    TableFlags {
                        enabled: keys::parse_flag(get(keys::enabled(t))),
                        force_full_load: keys::parse_flag(get(keys::force_full_load(t))),
                        force_requests: keys::parse_count(get(keys::force_requests(t))),
                    },
                    map.get(&keys::version(t)).cloned(),
                )
            })
            .collect())
    }

    async fn statuses(&self) -> Result<Vec<(String, String)>> {
        let live: Vec<String> = {
            let now = Instant::now();
            let instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
            instances
                .iter()
                .filter(|(_, until)| **until > now)
                .map(|(id, _)| id.clone())
                .collect()
        };
        let held = self.leases_now();
        Ok(live
            .into_iter()
            .filter_map(|id| {
                let json = held.get(&keys::instance_status(&id))?.0.clone();
                Some((id, json))
            })
            .collect())
    }
}
