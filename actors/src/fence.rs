//! Fencing: at most one owner of a table's cycle at a time, inside one
//! process and across instances. An owner writes under a [`Claim`]: its
//! instance id and a token claimed on the replica (per table, only grows,
//! so it survives Redis losing its data). Every replica transaction that
//! writes the table checks the claim against `[ctsync].[fence]` in the
//! same transaction, and Redis writes of the table's state check it against
//! the table's lease. In this process, [`Fence`] also refuses, before they
//! start, writes of an actor the supervisor retired or whose lease was not
//! renewed in time (the sink checks it inside its one atomic handler).
//!
//! Why the replica check, when a lease already says who owns a table: a
//! lease is only a promise about time. An owner paused (GC, a frozen VM, a
//! partition) past its TTL wakes up still believing it owns the table and
//! may be in the middle of a write; the new owner's claim raised the
//! table's token on the replica, so that write is refused where it would
//! land, whatever the clocks say.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::model::TableId;

/// Who writes a table: an instance id and the token it claimed on the
/// replica for this ownership.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Claim {
    pub owner: String,
    pub token: u64,
}

impl Claim {
    pub fn new(owner: impl Into<String>, token: u64) -> Self {
        Self {
            owner: owner.into(),
            token,
        }
    }

    /// The value of the table's lease key while this claim holds it
    /// (`<owner> <token>`; instance ids never contain spaces).
    pub fn lease_value(&self) -> String {
        format!("{} {}", self.owner, self.token)
    }
}

#[derive(Debug, Default, Clone)]
struct Entry {
    /// Bumped by every grant and revoke: a claim installed under an older
    /// generation belongs to a retired actor and is refused.
    generation: u64,
    /// The token of the current owner's claim, once installed.
    token: Option<u64>,
    /// Writes stop at this instant unless the lease is renewed first (a
    /// little before the lease itself expires in Redis).
    valid_until: Option<Instant>,
}

/// Cloneable handle to this process's table → owner registry.
#[derive(Debug, Clone, Default)]
pub struct Fence {
    entries: Arc<Mutex<BTreeMap<TableId, Entry>>>,
}

impl Fence {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<TableId, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The supervisor hands the table to a new actor (it holds the lease
    /// until `until`); returns the generation the actor installs its claim
    /// under. Any earlier actor's writes are refused from now on.
    pub fn grant(&self, table: &TableId, until: Instant) -> u64 {
        let mut entries = self.lock();
        let e = entries.entry(table.clone()).or_default();
        e.generation += 1;
        e.token = None;
        e.valid_until = Some(until);
        e.generation
    }

    /// The lease was renewed: writes may go on until `until`.
    pub fn extend(&self, table: &TableId, until: Instant) {
        if let Some(e) = self.lock().get_mut(table) {
            if e.valid_until.is_some() {
                e.valid_until = Some(until);
            }
        }
    }

    /// Refuses every write of the table until it is granted again.
    pub fn revoke(&self, table: &TableId) {
        let mut entries = self.lock();
        let e = entries.entry(table.clone()).or_default();
        e.generation += 1;
        e.token = None;
        e.valid_until = None;
    }

    /// Whether `generation` is still the table's current grant.
    pub fn holds(&self, table: &TableId, generation: u64) -> bool {
        self.lock()
            .get(table)
            .is_some_and(|e| e.generation == generation && e.valid_until.is_some())
    }

    /// Records the token an actor claimed on the replica; refused if the
    /// actor was retired meanwhile.
    pub fn install(&self, table: &TableId, generation: u64, token: u64) -> Result<()> {
        let mut entries = self.lock();
        match entries.get_mut(table) {
            Some(e) if e.generation == generation && e.valid_until.is_some() => {
                e.token = Some(token);
                Ok(())
            }
            _ => Err(Error::Fenced {
                table: table.clone(),
                detail: format!("the actor that claimed token {token} was retired"),
            }),
        }
    }

    /// `Ok` if `token` is the table's current token and the lease has not
    /// run out without renewal.
    pub fn check(&self, table: &TableId, token: u64) -> Result<()> {
        let entries = self.lock();
        let refused = |detail: String| {
            Err(Error::Fenced {
                table: table.clone(),
                detail,
            })
        };
        let Some(e) = entries.get(table) else {
            return refused(format!(
                "token {token}: this process does not own the table"
            ));
        };
        if e.token != Some(token) {
            return refused(match e.token {
                Some(current) => format!("token {token}, current {current}"),
                None => format!("token {token}: the table's owner was retired"),
            });
        }
        match e.valid_until {
            Some(until) if Instant::now() < until => Ok(()),
            _ => refused(format!(
                "token {token}: the table's lease was not renewed in time"
            )),
        }
    }
}

/// Where a claim is checked, for the refusal's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckedBy {
    /// `[ctsync].[fence]` on the replica.
    Replica,
    /// The table's lease in the state store.
    Lease,
}

/// The error a write of a table's old owner gets, saying where it was
/// refused and which claim holds the table there now.
pub fn refused(table: &TableId, claim: &Claim, by: CheckedBy, held: Option<&str>) -> Error {
    let place = match by {
        CheckedBy::Replica => "[ctsync].[fence]".to_string(),
        CheckedBy::Lease => crate::keys::table_lease(table),
    };
    Error::Fenced {
        table: table.clone(),
        detail: format!(
            "claim {} refused by {place}, which holds {}",
            claim.lease_value(),
            held.unwrap_or("no claim (expired or lost)")
        ),
    }
}

/// The tables whose cycle is running now, and how often a second cycle of
/// a table started while one ran (which the fence should make impossible:
/// counted, logged and checked by the simulation).
#[derive(Debug, Clone, Default)]
pub struct Cycles {
    running: Arc<Mutex<BTreeMap<TableId, u32>>>,
    overlaps: Arc<std::sync::atomic::AtomicU64>,
    /// Each table's slot: held by its cycle, or by the poll's batch of
    /// idle version advances (which skips a table whose cycle runs), so
    /// the two never interleave their steps.
    slots: Arc<Mutex<BTreeMap<TableId, Arc<tokio::sync::Mutex<()>>>>>,
}

/// A table's slot, held until dropped (see [`Cycles::slot`]).
pub type Slot = tokio::sync::OwnedMutexGuard<()>;

/// Marks a table's cycle as running until dropped.
pub struct CycleGuard {
    cycles: Cycles,
    table: TableId,
}

impl Cycles {
    /// Enters a cycle of `table`.
    pub fn enter(&self, table: &TableId) -> CycleGuard {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let n = running.entry(table.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            self.overlaps
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tracing::error!(table = %table, "two cycles of one table overlap; this is a bug");
        }
        CycleGuard {
            cycles: self.clone(),
            table: table.clone(),
        }
    }

    fn slot_of(&self, table: &TableId) -> Arc<tokio::sync::Mutex<()>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(table.clone()).or_default().clone()
    }

    /// Waits for `table`'s slot (a cycle waits for a batch step of its
    /// table in flight, which is short).
    pub async fn slot(&self, table: &TableId) -> Slot {
        self.slot_of(table).lock_owned().await
    }

    /// `table`'s slot if free now (the batch skips a table whose cycle
    /// runs; asked only by `sync::idle::move_queued`).
    pub fn try_slot(&self, table: &TableId) -> Option<Slot> {
        self.slot_of(table).try_lock_owned().ok()
    }

    /// The tables whose cycle runs now (key names).
    pub fn running(&self) -> Vec<String> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .map(TableId::key_name)
            .collect()
    }

    /// Cycles that started while another cycle of the same table ran.
    pub fn overlaps(&self) -> u64 {
        self.overlaps.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for CycleGuard {
    fn drop(&mut self) {
        let mut running = self
            .cycles
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = running.get_mut(&self.table) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.table);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_installed_token_of_the_current_grant_passes() {
        let fence = Fence::default();
        let t = TableId::new("dbo", "T");
        let u = TableId::new("dbo", "U");
        let later = Instant::now() + std::time::Duration::from_secs(60);
        let first = fence.grant(&t, later);
        fence.install(&t, first, 7).unwrap();
        let other = fence.grant(&u, later);
        fence.install(&u, other, 7).unwrap();
        assert!(fence.check(&t, 7).is_ok());
        assert!(fence.check(&t, 6).is_err());
        let second = fence.grant(&t, later);
        assert!(
            fence.check(&t, 7).is_err(),
            "a new grant retires the old owner"
        );
        assert!(
            fence.install(&t, first, 9).is_err(),
            "a retired actor cannot install a claim"
        );
        fence.install(&t, second, 8).unwrap();
        assert!(fence.check(&t, 8).is_ok());
        assert!(fence.check(&u, 7).is_ok(), "tables are fenced apart");
        fence.revoke(&t);
        assert!(fence.check(&t, 8).is_err());
        assert!(!fence.holds(&t, second));
    }

    #[test]
    fn a_lease_not_renewed_in_time_stops_the_writes() {
        let fence = Fence::default();
        let t = TableId::new("dbo", "T");
        let g = fence.grant(&t, Instant::now() + std::time::Duration::from_secs(60));
        fence.install(&t, g, 1).unwrap();
        assert!(fence.check(&t, 1).is_ok());
        fence.extend(&t, Instant::now());
        assert!(matches!(fence.check(&t, 1), Err(Error::Fenced { .. })));
        fence.extend(&t, Instant::now() + std::time::Duration::from_secs(60));
        assert!(fence.check(&t, 1).is_ok(), "a renewal lets it write again");
    }

    #[test]
    fn a_refusal_names_where_the_claim_was_refused() {
        let t = TableId::new("dbo", "T");
        let c = Claim::new("a", 3);
        let on_replica = refused(&t, &c, CheckedBy::Replica, Some("b 4")).to_string();
        assert!(on_replica.contains("claim a 3 refused by [ctsync].[fence], which holds b 4"));
        let in_redis = refused(&t, &c, CheckedBy::Lease, None).to_string();
        assert!(
            in_redis.contains("refused by mssql_sync:lease:table:T"),
            "{in_redis}"
        );
    }

    #[test]
    fn overlapping_cycles_of_one_table_are_counted() {
        let cycles = Cycles::default();
        let t = TableId::new("dbo", "T");
        let u = TableId::new("dbo", "U");
        {
            let _a = cycles.enter(&t);
            let _b = cycles.enter(&u);
            assert_eq!(cycles.overlaps(), 0);
            let _c = cycles.enter(&t);
            assert_eq!(cycles.overlaps(), 1);
        }
        let _d = cycles.enter(&t);
        assert_eq!(cycles.overlaps(), 1, "sequential cycles never count");
    }
}
