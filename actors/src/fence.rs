//! In-process fencing: at most one owner of a table's cycle at a time. The
//! supervisor issues a token (a number that only grows) to each TableActor
//! it starts and revokes it when it retires the actor; the SinkActor
//! refuses a table write whose token is not the table's current one, so a
//! retired actor whose cycle is still running cannot write to the replica.
//! The check and the write happen inside the sink's one atomic handler.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::model::TableId;

#[derive(Debug, Default)]
struct Tokens {
    /// The table's current token (0: none was ever issued).
    current: BTreeMap<TableId, u64>,
    /// The last token issued for any table: tokens never repeat.
    last: u64,
}

/// Cloneable handle to the table → token registry.
#[derive(Debug, Clone, Default)]
pub struct Fence {
    tokens: Arc<Mutex<Tokens>>,
}

impl Fence {
    fn lock(&self) -> MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new token for `table`; every earlier one is refused from now on.
    pub fn issue(&self, table: &TableId) -> u64 {
        let mut t = self.lock();
        t.last += 1;
        let token = t.last;
        t.current.insert(table.clone(), token);
        token
    }

    /// Refuses every token of `table` until a new one is issued.
    pub fn revoke(&self, table: &TableId) {
        let mut t = self.lock();
        t.last += 1;
        let token = t.last;
        t.current.insert(table.clone(), token);
    }

    /// `Ok` if `token` is the table's current token.
    pub fn check(&self, table: &TableId, token: u64) -> Result<()> {
        let current = self.lock().current.get(table).copied().unwrap_or(0);
        if current == token {
            Ok(())
        } else {
            Err(Error::Fenced {
                table: table.clone(),
                token,
                current,
            })
        }
    }
}

/// The tables whose cycle is running now, and how often a second cycle of
/// a table started while one ran (which the fence should make impossible:
/// counted, logged and checked by the simulation).
#[derive(Debug, Clone, Default)]
pub struct Cycles {
    running: Arc<Mutex<BTreeMap<TableId, u32>>>,
    overlaps: Arc<std::sync::atomic::AtomicU64>,
}

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
    fn only_the_latest_token_of_a_table_passes() {
        let fence = Fence::default();
        let t = TableId::new("dbo", "T");
        let u = TableId::new("dbo", "U");
        let first = fence.issue(&t);
        let other = fence.issue(&u);
        assert!(fence.check(&t, first).is_ok());
        let second = fence.issue(&t);
        assert!(second > first);
        assert!(matches!(fence.check(&t, first), Err(Error::Fenced { .. })));
        assert!(fence.check(&t, second).is_ok());
        assert!(fence.check(&u, other).is_ok(), "tables are fenced apart");
        fence.revoke(&t);
        assert!(fence.check(&t, second).is_err());
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
