//! In-memory state store over the same key names as Redis, and `FlakyState`,
//! a wrapper that makes any state store fail on demand (e.g. a crash between
//! the replica commit and the version save).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
        })
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

/// Wraps a state store and fails chosen calls: `fail_set_version(n)` makes
/// the next `n` version saves fail (after the replica committed, as a crash
/// there would).
pub struct FlakyState {
    inner: Arc<dyn StateStore>,
    fail_set_version: AtomicUsize,
    fail_ensure_flags: AtomicUsize,
    /// While set, reading flags and versions fails as if Redis were down
    /// (its data stays, unlike a restart without persistence).
    down: std::sync::atomic::AtomicBool,
}

impl FlakyState {
    pub fn new(inner: Arc<dyn StateStore>) -> Self {
        Self {
            inner,
            fail_set_version: AtomicUsize::new(0),
            fail_ensure_flags: AtomicUsize::new(0),
            down: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn fail_set_version(&self, n: usize) {
        self.fail_set_version.store(n, Ordering::SeqCst);
    }

    /// The next `n` flag creations (discovery) fail, as a Redis blip would.
    pub fn fail_ensure_flags(&self, n: usize) {
        self.fail_ensure_flags.store(n, Ordering::SeqCst);
    }

    /// Reads of flags and versions fail while `down` (Redis unreachable).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check_up(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::State("injected: Redis is unreachable".into()));
        }
        Ok(())
    }

    fn take(counter: &AtomicUsize) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

#[async_trait]
impl StateStore for FlakyState {
    async fn ensure_flags(&self, tables: &[TableId]) -> Result<Marker> {
        self.check_up()?;
        if Self::take(&self.fail_ensure_flags) {
            return Err(Error::State(
                "injected: connection reset creating flags".into(),
            ));
        }
        self.inner.ensure_flags(tables).await
    }
    async fn publish(&self, pairs: &[(String, String)]) -> Result<()> {
        self.inner.publish(pairs).await
    }
    async fn flags(&self, table: &TableId) -> Result<TableFlags> {
        self.check_up()?;
        self.inner.flags(table).await
    }
    async fn set_enabled(&self, table: &TableId, enabled: bool) -> Result<()> {
        self.inner.set_enabled(table, enabled).await
    }
    async fn set_force_full_load(&self, table: &TableId, force: bool) -> Result<()> {
        self.inner.set_force_full_load(table, force).await
    }
    async fn request_full_load(&self, table: &TableId) -> Result<()> {
        self.inner.request_full_load(table).await
    }
    async fn version(&self, table: &TableId) -> Result<Option<SyncVersion>> {
        self.check_up()?;
        self.inner.version(table).await
    }
    async fn set_version(
        &self,
        table: &TableId,
        version: SyncVersion,
        claim: &Claim,
    ) -> Result<()> {
        if Self::take(&self.fail_set_version) {
            return Err(Error::State(
                "injected: crash before the version was saved".into(),
            ));
        }
        self.inner.set_version(table, version, claim).await
    }
    async fn finish_full_load(
        &self,
        table: &TableId,
        version: SyncVersion,
        identity: &PrimaryIdentity,
        forced: bool,
        claim: &Claim,
    ) -> Result<()> {
        self.inner
            .finish_full_load(table, version, identity, forced, claim)
            .await
    }
    async fn primary_identity(&self, table: &TableId) -> Result<Option<PrimaryIdentity>> {
        self.inner.primary_identity(table).await
    }
    async fn set_primary_identity(
        &self,
        table: &TableId,
        identity: &PrimaryIdentity,
        claim: &Claim,
    ) -> Result<()> {
        self.inner
            .set_primary_identity(table, identity, claim)
            .await
    }
    async fn set_progress(
        &self,
        table: &TableId,
        progress: &LoadProgress,
        claim: &Claim,
    ) -> Result<()> {
        self.inner.set_progress(table, progress, claim).await
    }
    async fn park_ddl(&self, entry: &ParkedDdl) -> Result<()> {
        self.inner.park_ddl(entry).await
    }
    async fn rename_table(&self, from: &TableId, to: &TableId, claim: &Claim) -> Result<()> {
        self.inner.rename_table(from, to, claim).await
    }
    async fn heartbeat(&self, instance: &str, ttl: Duration) -> Result<Vec<String>> {
        self.check_up()?;
        self.inner.heartbeat(instance, ttl).await
    }
    async fn leave(&self, instance: &str) -> Result<()> {
        self.inner.leave(instance).await
    }
    async fn acquire_leases(
        &self,
        leases: &[String],
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<LeaseGrant>> {
        self.check_up()?;
        self.inner.acquire_leases(leases, owner, ttl).await
    }
    async fn set_lease_claim(&self, lease: &str, claim: &Claim) -> Result<bool> {
        self.check_up()?;
        self.inner.set_lease_claim(lease, claim).await
    }
    async fn release_leases(&self, leases: &[String], owner: &str) -> Result<()> {
        self.inner.release_leases(leases, owner).await
    }
    async fn publish_status(&self, instance: &str, json: &str, ttl: Duration) -> Result<()> {
        self.check_up()?;
        self.inner.publish_status(instance, json, ttl).await
    }
    async fn statuses(&self) -> Result<Vec<(String, String)>> {
        self.check_up()?;
        self.inner.statuses().await
    }
    async fn table_keys(&self, tables: &[TableId]) -> Result<Vec<(TableFlags, Option<String>)>> {
        self.check_up()?;
        self.inner.table_keys(tables).await
    }
}
