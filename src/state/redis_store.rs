//! `RedisState`: the state store on Redis. The connection is made lazily and
//! kept as a `ConnectionManager` (which reconnects by itself), so ctsync
//! starts even while Redis is down and recovers when it returns. A command
//! that meets a dropped connection is sent once more after the reconnect
//! (every command here is safe to repeat).
//!
//! A command whose future is dropped mid-way (the core's call limit,
//! `ctsync_actors::ports::limits`) leaves the connection usable: in redis
//! 1.8.1 a request is handed over a channel to the connection's driver
//! task, which owns the socket, writes requests and reads every answer in
//! order; an answer whose caller is gone is read and dropped
//! (`src/aio/multiplexed_connection.rs` lines 419–423), a request whose
//! caller left before it was written is not sent (lines 475–480), and the
//! type is documented as cancellation-safe (line 673); the manager clones
//! a shared connection future (`src/aio/connection_manager.rs` line 705).
//! So nothing needs fixing here; what a dropped command had already sent
//! may still take effect, as with any lost answer (repeatable, and table
//! writes are fenced).

use std::time::Duration;

use async_trait::async_trait;
use ctsync_actors::ddl::ParkedDdl;
use ctsync_actors::fence::{refused, CheckedBy, Claim};
use ctsync_actors::keys;
use ctsync_actors::model::{PrimaryIdentity, SyncVersion, TableId};
use ctsync_actors::ports::{
    Advance, CycleKeys, LeaseGrant, LoadProgress, Marker, StateStore, TableFlags,
};
use ctsync_actors::{Error, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError};
use tokio::sync::Mutex;

use super::scripts;

pub struct RedisState {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    flags: super::flags::Flags,
    /// The server was found to be a Redis Cluster node (refused).
    cluster: std::sync::atomic::AtomicBool,
}

fn state_err(what: &str, e: RedisError) -> Error {
    Error::State(format!("{what}: {e}"))
}

fn worth_retrying(e: &RedisError) -> bool {
    e.is_connection_dropped() || e.is_io_error() || e.is_connection_refusal() || e.is_timeout()
}

/// A command or an atomic pipeline.
enum Request<'a> {
    Cmd(&'a Cmd),
    Pipe(&'a Pipeline),
}

impl RedisState {
    /// Parses the URL; does not connect yet.
    pub fn new(url: &str) -> std::result::Result<Self, RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            conn: Mutex::new(None),
            flags: Default::default(),
            cluster: Default::default(),
        })
    }

    /// `host:port` of the server (never the password), for messages.
    fn addr(&self) -> String {
        self.client.get_connection_info().addr().to_string()
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
            .map_err(|e| state_err(&format!("connecting to Redis at {}", self.addr()), e))?;
        self.refuse_cluster(&mut c.clone()).await?;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Refuses a Redis Cluster node: ctsync's Lua scripts and `MULTI`
    /// blocks span keys that Cluster puts in different hash slots, and hash
    /// tags would change the public key names. A server that does not
    /// answer `INFO cluster` (a managed Redis may rename it) is taken as
    /// standalone.
    async fn refuse_cluster(&self, c: &mut ConnectionManager) -> Result<()> {
        let info: std::result::Result<String, RedisError> =
            redis::cmd("INFO").arg("cluster").query_async(c).await;
        match info {
            Ok(info) if cluster_enabled(&info) => {
                self.cluster
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Err(Error::State(format!(
                "Redis at {} is a Redis Cluster node (cluster_enabled:1): ctsync needs a standalone Redis (or a Sentinel-managed primary), because its Lua scripts and MULTI blocks span keys that Cluster would put in different hash slots. Point REDIS_URL at a standalone Redis",
                self.addr()
            )))
            }
            _ => Ok(()),
        }
    }

    /// Connects now, so that a Redis ctsync cannot use stops it at start;
    /// a Redis that does not answer yet is not an error here (ctsync
    /// retries, as on any outage).
    pub async fn check_usable(&self) -> Result<()> {
        match self.conn().await {
            Err(e) if self.cluster.load(std::sync::atomic::Ordering::Relaxed) => Err(e),
            _ => Ok(()),
        }
    }

    async fn send<T: FromRedisValue>(&self, what: &str, request: Request<'_>) -> Result<T> {
        let mut last = None;
        for attempt in 0..2 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let mut c = self.conn().await?;
            let result = match &request {
                Request::Cmd(cmd) => cmd.query_async::<T>(&mut c).await,
                Request::Pipe(pipe) => pipe.query_async::<T>(&mut c).await,
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) if worth_retrying(&e) => last = Some(e),
                Err(e) => return Err(state_err(what, e)),
            }
        }
        Err(match last {
            Some(e) => state_err(&format!("{what} (Redis at {})", self.addr()), e),
            None => Error::State(format!("{what}: no answer")),
        })
    }

    pub(super) async fn cmd<T: FromRedisValue>(&self, what: &str, cmd: &Cmd) -> Result<T> {
        self.send(what, Request::Cmd(cmd)).await
    }

    pub(super) async fn pipe<T: FromRedisValue>(&self, what: &str, pipe: &Pipeline) -> Result<T> {
        self.send(what, Request::Pipe(pipe)).await
    }

    /// `PING`: used by readiness checks.
    pub async fn ping(&self) -> Result<()> {
        self.cmd::<String>("PING", &redis::cmd("PING"))
            .await
            .map(|_| ())
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        self.cmd(&format!("GET {key}"), redis::cmd("GET").arg(key))
            .await
    }

    pub async fn set(&self, key: &str, value: &str) -> Result<()> {
        self.cmd(&format!("SET {key}"), redis::cmd("SET").arg(key).arg(value))
            .await
    }

    pub async fn del(&self, key: &str) -> Result<()> {
        self.cmd(&format!("DEL {key}"), redis::cmd("DEL").arg(key))
            .await
    }

    /// All items of a Redis list (e.g. `mssql_sync:ddl_failed`).
    pub async fn list(&self, key: &str) -> Result<Vec<String>> {
        self.cmd(
            &format!("LRANGE {key}"),
            redis::cmd("LRANGE").arg(key).arg(0).arg(-1),
        )
        .await
    }

    /// Names of every table that has an `enabled` flag, sorted.
    pub async fn table_names(&self) -> Result<Vec<String>> {
        let prefix = format!("{}:enabled:", keys::PREFIX);
        let mut names: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let scan = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(500)
                .clone();
            let (next, batch): (u64, Vec<String>) = self.cmd("SCAN enabled flags", &scan).await?;
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
}

fn flag(v: bool) -> &'static str {
    if v {
        "true"
    } else {
        "false"
    }
}

/// Whether an `INFO cluster` answer says cluster mode is on.
fn cluster_enabled(info: &str) -> bool {
    info.lines().any(|l| l.trim() == "cluster_enabled:1")
}

#[async_trait]
impl StateStore for RedisState {
    async fn ensure_flags(&self, tables: &[TableId]) -> Result<Marker> {
        let mut pipe = redis::pipe();
        flags_and_marker(&mut pipe, tables);
        let (created,): (Option<String>,) = self
            .send(
                &format!("SET NX flags of {} tables", tables.len()),
                Request::Pipe(&pipe),
            )
            .await?;
        Ok(marker(created))
    }

    async fn discovery_start(
        &self,
        new: Option<&[TableId]>,
        instance: &str,
        ttl: Duration,
    ) -> Result<(Option<Marker>, Vec<String>)> {
        let mut pipe = redis::pipe();
        if let Some(tables) = new {
            flags_and_marker(&mut pipe, tables);
        }
        pipe.add_command(heartbeat(instance, ttl));
        let what = "renewing this instance's heartbeat (and the new tables' flags)";
        Ok(match new {
            Some(_) => {
                let (created, instances): (Option<String>, Vec<String>) =
                    self.send(what, Request::Pipe(&pipe)).await?;
                (Some(marker(created)), instances)
            }
            None => {
                let (instances,): (Vec<String>,) = self.send(what, Request::Pipe(&pipe)).await?;
                (None, instances)
            }
        })
    }

    async fn discovery_finish(
        &self,
        leases: &[String],
        owner: &str,
        ttl: Duration,
        statuses: &str,
        advances: &[Advance],
    ) -> Result<(Vec<LeaseGrant>, Vec<TableId>)> {
        let mut pipe = redis::pipe();
        pipe.add_command(status_set(owner, statuses, ttl)).ignore();
        pipe.add_command(acquire(leases, owner, ttl));
        pipe.add_command(advance(advances));
        let what = format!(
            "taking or renewing {} leases, publishing the statuses and moving {} idle versions",
            leases.len(),
            advances.len()
        );
        let (answers, moved): (Vec<String>, Vec<i64>) =
            self.send(&what, Request::Pipe(&pipe)).await?;
        Ok((grants(&what, answers)?, advanced(advances, &moved)))
    }

    async fn advance_versions(&self, advances: &[Advance]) -> Result<Vec<TableId>> {
        if advances.is_empty() {
            return Ok(Vec::new());
        }
        let moved: Vec<i64> = self
            .cmd(
                &format!("moving {} idle versions", advances.len()),
                &advance(advances),
            )
            .await?;
        Ok(advanced(advances, &moved))
    }

    async fn statuses_and_keys(
        &self,
        tables: &[TableId],
    ) -> Result<(Vec<(String, String)>, Vec<(TableFlags, Option<String>)>)> {
        let mut pipe = redis::pipe();
        pipe.add_command(statuses_cmd());
        if tables.is_empty() {
            let (flat,): (Vec<String>,) = self
                .send(
                    "reading every instance's table statuses",
                    Request::Pipe(&pipe),
                )
                .await?;
            return Ok((pairs(flat), Vec::new()));
        }
        pipe.add_command(keys_mget(tables));
        let (flat, values): (Vec<String>, Vec<Option<String>>) = self
            .send(
                &format!(
                    "reading the statuses and the keys of {} tables",
                    tables.len()
                ),
                Request::Pipe(&pipe),
            )
            .await?;
        Ok((pairs(flat), table_flags(&self.flags, tables, values)))
    }

    async fn publish(&self, pairs: &[(String, String)]) -> Result<()> {
        let mut mset = redis::cmd("MSET");
        for (k, v) in pairs {
            mset.arg(k).arg(v);
        }
        if pairs.is_empty() {
            return Ok(());
        }
        self.cmd("MSET config keys", &mset).await
    }

    async fn flags(&self, table: &TableId) -> Result<TableFlags> {
        let mget = redis::cmd("MGET")
            .arg(keys::enabled(table))
            .arg(keys::force_full_load(table))
            .arg(keys::force_requests(table))
            .clone();
        let (enabled, force, requests): (Option<String>, Option<String>, Option<String>) = self
            .cmd(&format!("MGET flags of {}", table.key_name()), &mget)
            .await?;
        Ok(TableFlags {
            enabled: self.flags.read(|| keys::enabled(table), enabled.as_deref()),
            force_full_load: self
                .flags
                .read(|| keys::force_full_load(table), force.as_deref()),
            force_requests: keys::parse_count(requests.as_deref()),
        })
    }

    async fn cycle_keys(&self, table: &TableId) -> Result<CycleKeys> {
        let version_key = keys::version(table);
        let mget = redis::cmd("MGET")
            .arg(keys::enabled(table))
            .arg(keys::force_full_load(table))
            .arg(keys::force_requests(table))
            .arg(&version_key)
            .arg(keys::primary_identity(table))
            .clone();
        type Five = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let (enabled, force, requests, version, identity): Five = self
            .cmd(&format!("MGET the keys of {}", table.key_name()), &mget)
            .await?;
        Ok(CycleKeys {
            flags: TableFlags {
                enabled: self.flags.read(|| keys::enabled(table), enabled.as_deref()),
                force_full_load: self
                    .flags
                    .read(|| keys::force_full_load(table), force.as_deref()),
                force_requests: keys::parse_count(requests.as_deref()),
            },
            version: keys::parse_version(&version_key, version.as_deref())?,
            identity: identity.and_then(|s| PrimaryIdentity::decode(&s)),
        })
    }

    async fn set_enabled(&self, table: &TableId, enabled: bool) -> Result<()> {
        self.set(&keys::enabled(table), flag(enabled)).await
    }

    async fn set_force_full_load(&self, table: &TableId, force: bool) -> Result<()> {
        self.set(&keys::force_full_load(table), flag(force)).await
    }

    async fn request_full_load(&self, table: &TableId) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set(keys::force_full_load(table), "true")
            .ignore()
            .incr(keys::force_requests(table), 1)
            .ignore();
        self.send(
            &format!("requesting a full load of {}", table.key_name()),
            Request::Pipe(&pipe),
        )
        .await
    }

    async fn version(&self, table: &TableId) -> Result<Option<SyncVersion>> {
        let key = keys::version(table);
        keys::parse_version(&key, self.get(&key).await?.as_deref())
    }

    async fn set_version(
        &self,
        table: &TableId,
        version: SyncVersion,
        claim: &Claim,
    ) -> Result<()> {
        self.guarded_set(table, claim, &keys::version(table), &version.to_string())
            .await
    }

    async fn finish_full_load(
        &self,
        table: &TableId,
        version: SyncVersion,
        identity: &PrimaryIdentity,
        forced: bool,
        claim: &Claim,
    ) -> Result<()> {
        let cmd = redis::cmd("EVAL")
            .arg(scripts::FINISH_FULL_LOAD)
            .arg(4)
            .arg(keys::version(table))
            .arg(keys::force_full_load(table))
            .arg(keys::primary_identity(table))
            .arg(keys::table_lease(table))
            .arg(version.to_string())
            .arg(identity.encode())
            .arg(if forced { "1" } else { "0" })
            .arg(claim.lease_value())
            .clone();
        let what = format!("finishing the full load of {}", table.key_name());
        let done: i64 = self.cmd(&what, &cmd).await?;
        self.fenced_if_refused(done, table, claim).await
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
        claim: &Claim,
    ) -> Result<()> {
        let key = keys::primary_identity(table);
        self.guarded_set(table, claim, &key, &identity.encode())
            .await
    }

    async fn set_progress(
        &self,
        table: &TableId,
        progress: &LoadProgress,
        claim: &Claim,
    ) -> Result<()> {
        let json = serde_json::to_string(progress).map_err(|e| Error::State(e.to_string()))?;
        self.guarded_set(table, claim, &keys::progress(table), &json)
            .await
    }

    async fn park_ddl(&self, entry: &ParkedDdl) -> Result<()> {
        let json = serde_json::to_string(entry).map_err(|e| Error::State(e.to_string()))?;
        let rpush = redis::cmd("RPUSH").arg(keys::DDL_FAILED).arg(json).clone();
        self.cmd::<i64>(&format!("RPUSH {}", keys::DDL_FAILED), &rpush)
            .await
            .map(|_| ())
    }

    async fn rename_table(&self, from: &TableId, to: &TableId, claim: &Claim) -> Result<()> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(scripts::RENAME)
            .arg(13)
            .arg(keys::table_lease(from));
        for key in keys::table_keys(from)
            .into_iter()
            .chain(keys::table_keys(to))
        {
            cmd.arg(key);
        }
        cmd.arg(claim.lease_value());
        let what = format!(
            "moving the keys of {} to {}",
            from.key_name(),
            to.key_name()
        );
        let done: i64 = self.cmd(&what, &cmd).await?;
        self.fenced_if_refused(done, from, claim).await
    }

    async fn heartbeat(&self, instance: &str, ttl: Duration) -> Result<Vec<String>> {
        self.cmd(
            "renewing this instance's heartbeat",
            &heartbeat(instance, ttl),
        )
        .await
    }

    async fn leave(&self, instance: &str) -> Result<()> {
        let cmd = redis::cmd("ZREM")
            .arg(keys::INSTANCES)
            .arg(instance)
            .clone();
        self.cmd::<i64>("leaving the live instances", &cmd)
            .await
            .map(|_| ())
    }

    async fn acquire_leases(
        &self,
        leases: &[String],
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<LeaseGrant>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let what = format!("taking or renewing {} leases", leases.len());
        let answers: Vec<String> = self.cmd(&what, &acquire(leases, owner, ttl)).await?;
        grants(&what, answers)
    }

    async fn set_lease_claim(&self, lease: &str, claim: &Claim) -> Result<bool> {
        let cmd = redis::cmd("EVAL")
            .arg(scripts::SET_CLAIM)
            .arg(1)
            .arg(lease)
            .arg(&claim.owner)
            .arg(claim.lease_value())
            .clone();
        let set: i64 = self
            .cmd(&format!("recording the claim in {lease}"), &cmd)
            .await?;
        Ok(set == 1)
    }

    async fn release_leases(&self, leases: &[String], owner: &str) -> Result<()> {
        if leases.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(scripts::RELEASE).arg(leases.len());
        for lease in leases {
            cmd.arg(lease);
        }
        cmd.arg(owner);
        self.cmd::<i64>("giving leases back", &cmd)
            .await
            .map(|_| ())
    }

    async fn publish_status(&self, instance: &str, json: &str, ttl: Duration) -> Result<()> {
        self.cmd(
            "publishing this instance's table statuses",
            &status_set(instance, json, ttl),
        )
        .await
    }

    async fn table_keys(&self, tables: &[TableId]) -> Result<Vec<(TableFlags, Option<String>)>> {
        if tables.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> = self
            .cmd(
                &format!("MGET the keys of {} tables", tables.len()),
                &keys_mget(tables),
            )
            .await?;
        Ok(table_flags(&self.flags, tables, values))
    }

    async fn statuses(&self) -> Result<Vec<(String, String)>> {
        let flat: Vec<String> = self
            .cmd("reading every instance's table statuses", &statuses_cmd())
            .await?;
        Ok(pairs(flat))
    }
}

/// SET NX of both flags of every table, then of the marker (whose reply,
/// OK or nil, is the pipeline's one answer).
fn flags_and_marker(pipe: &mut redis::Pipeline, tables: &[TableId]) {
    for table in tables {
        for key in [keys::enabled(table), keys::force_full_load(table)] {
            pipe.cmd("SET").arg(key).arg("false").arg("NX").ignore();
        }
    }
    pipe.cmd("SET").arg(keys::MARKER).arg("ctsync").arg("NX");
}

/// The reply of the marker's SET NX: OK when it set the key, nil when it
/// existed.
fn marker(created: Option<String>) -> Marker {
    match created {
        Some(_) => Marker::Created,
        None => Marker::Present,
    }
}

fn heartbeat(instance: &str, ttl: Duration) -> Cmd {
    redis::cmd("EVAL")
        .arg(scripts::HEARTBEAT)
        .arg(1)
        .arg(keys::INSTANCES)
        .arg(instance)
        .arg(millis(ttl))
        .clone()
}

fn acquire(leases: &[String], owner: &str, ttl: Duration) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(scripts::ACQUIRE).arg(leases.len());
    for lease in leases {
        cmd.arg(lease);
    }
    cmd.arg(owner).arg(millis(ttl));
    cmd
}

fn advance(advances: &[Advance]) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(scripts::ADVANCE).arg(2 * advances.len());
    for a in advances {
        cmd.arg(keys::table_lease(&a.table))
            .arg(keys::version(&a.table));
    }
    for a in advances {
        cmd.arg(a.claim.lease_value())
            .arg(a.from.to_string())
            .arg(a.to.to_string());
    }
    cmd
}

/// The tables at the (1-based) positions [`scripts::ADVANCE`] returned.
fn advanced(advances: &[Advance], moved: &[i64]) -> Vec<TableId> {
    moved
        .iter()
        .filter_map(|i| usize::try_from(*i).ok()?.checked_sub(1))
        .filter_map(|i| advances.get(i).map(|a| a.table.clone()))
        .collect()
}

fn grants(what: &str, answers: Vec<String>) -> Result<Vec<LeaseGrant>> {
    answers
        .into_iter()
        .map(|a| match a.as_str() {
            "acquired" => Ok(LeaseGrant::Acquired),
            "renewed" => Ok(LeaseGrant::Renewed),
            held => held
                .strip_prefix("held ")
                .map(|v| LeaseGrant::Held(v.to_string()))
                .ok_or_else(|| Error::State(format!("{what}: unexpected answer {held:?}"))),
        })
        .collect()
}

fn status_set(instance: &str, json: &str, ttl: Duration) -> Cmd {
    redis::cmd("SET")
        .arg(keys::instance_status(instance))
        .arg(json)
        .arg("PX")
        .arg(millis(ttl))
        .clone()
}

fn statuses_cmd() -> Cmd {
    redis::cmd("EVAL")
        .arg(scripts::STATUSES)
        .arg(1)
        .arg(keys::INSTANCES)
        .arg(keys::instance_status(""))
        .clone()
}

fn pairs(flat: Vec<String>) -> Vec<(String, String)> {
    flat.chunks(2)
        .filter_map(|pair| match pair {
            [id, json] => Some((id.clone(), json.clone())),
            _ => None,
        })
        .collect()
}

fn keys_mget(tables: &[TableId]) -> Cmd {
    let mut mget = redis::cmd("MGET");
    for t in tables {
        mget.arg(keys::enabled(t))
            .arg(keys::force_full_load(t))
            .arg(keys::force_requests(t))
            .arg(keys::version(t));
    }
    mget
}

/// Per table, its flags and its version key's raw value (MGET of
/// [`keys_mget`] for `tables`).
fn table_flags(
    flags: &super::flags::Flags,
    tables: &[TableId],
    values: Vec<Option<String>>,
) -> Vec<(TableFlags, Option<String>)> {
    values
        .chunks(4)
        .zip(tables)
        .map(|(v, t)| {
            let at = |i: usize| v.get(i).cloned().flatten();
            (
                TableFlags {
                    enabled: flags.read(|| keys::enabled(t), at(0).as_deref()),
                    force_full_load: flags.read(|| keys::force_full_load(t), at(1).as_deref()),
                    force_requests: keys::parse_count(at(2).as_deref()),
                },
                at(3),
            )
        })
        .collect()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisState {
    /// SET of one of the table's keys by its owner (checked in Lua).
    async fn guarded_set(
        &self,
        table: &TableId,
        claim: &Claim,
        key: &str,
        value: &str,
    ) -> Result<()> {
        let cmd = redis::cmd("EVAL")
            .arg(scripts::GUARDED_SET)
            .arg(2)
            .arg(keys::table_lease(table))
            .arg(key)
            .arg(claim.lease_value())
            .arg(value)
            .clone();
        let done: i64 = self.cmd(&format!("SET {key}"), &cmd).await?;
        self.fenced_if_refused(done, table, claim).await
    }

    /// A script's -1 (the lease no longer holds the claim) as the fence's
    /// error, naming who holds the lease now.
    async fn fenced_if_refused(&self, answer: i64, table: &TableId, claim: &Claim) -> Result<()> {
        if answer >= 0 {
            return Ok(());
        }
        let held = self.get(&keys::table_lease(table)).await.ok().flatten();
        let e = refused(table, claim, CheckedBy::Lease, held.as_deref());
        ctsync_actors::telemetry::fenced_write(&e);
        Err(e)
    }
}
