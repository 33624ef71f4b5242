//! Write order per table: reads of the replica run beside the SinkActor's
//! writes, yet a read of a table must not overtake that table's writes
//! queued before it. Each table write holds a ticket from queue to finish.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::model::TableId;

/// One table's writes: `next` numbers them in the order they were queued;
/// `open` holds the number of every write queued and not yet finished
/// (committed, failed, or dropped without being run).
///
/// The invariant: a read that began when `next` was n returns only once no
/// number below n is open, so it sees every write of the table that was
/// queued before it began (and waits for no write queued after it).
#[derive(Debug, Default)]
struct Writes {
    next: u64,
    open: BTreeSet<u64>,
    /// Wakes the reads waiting on the table when one of its writes
    /// finishes, in the order they began to wait: the same runs go the
    /// same way (a `watch` channel wakes its waiters in a random order).
    finished: Arc<Notify>,
}

impl Writes {
    /// Whether every write queued before ticket `before` finished.
    fn done_before(&self, before: u64) -> bool {
        self.open.first().is_none_or(|&open| open >= before)
    }
}

/// Cloneable registry of the tables' open writes (entries stay once made:
/// one small entry per table ever written).
#[derive(Debug, Clone, Default)]
pub(super) struct WriteOrder {
    tables: Arc<Mutex<BTreeMap<TableId, Writes>>>,
}

/// A write of some tables, open from [`WriteOrder::queue`] until dropped.
/// It travels inside the write's message, so it finishes when the actor
/// has run the write, and also when the message is dropped unrun (the
/// caller gave up, the actor stopped).
#[derive(Debug)]
pub(super) struct Queued {
    order: WriteOrder,
    tickets: Vec<(TableId, u64)>,
}

impl WriteOrder {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<TableId, Writes>> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a write of `tables`; call it before the write is sent.
    pub(super) fn queue(&self, tables: &[TableId]) -> Queued {
        let mut map = self.lock();
        let tickets = tables
            .iter()
            .map(|table| {
                let writes = map.entry(table.clone()).or_default();
                let ticket = writes.next;
                writes.next += 1;
                writes.open.insert(ticket);
                (table.clone(), ticket)
            })
            .collect();
        Queued {
            order: self.clone(),
            tickets,
        }
    }

    /// Waits until every write of `table` queued before this call finished.
    pub(super) async fn after_writes(&self, table: &TableId) {
        let (before, finished) = {
            let map = self.lock();
            match map.get(table) {
                Some(writes) => (writes.next, writes.finished.clone()),
                None => return, // never written: nothing to wait for
            }
        };
        loop {
            // Waiting before looking: a write finishing in between is not
            // missed.
            let mut notified = std::pin::pin!(finished.notified());
            notified.as_mut().enable();
            let done = self
                .lock()
                .get(table)
                .is_none_or(|writes| writes.done_before(before));
            if done {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        let mut map = self.order.lock();
        for (table, ticket) in &self.tickets {
            if let Some(writes) = map.get_mut(table) {
                writes.open.remove(ticket);
                writes.finished.notify_waiters();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    /// Whether a read of `table` beginning now ends within a moment.
    fn read_ends(order: &WriteOrder, table: &TableId) -> bool {
        runtime().block_on(async {
            tokio::time::timeout(Duration::from_millis(20), order.after_writes(table))
                .await
                .is_ok()
        })
    }

    #[test]
    fn a_read_waits_for_the_earlier_writes_of_its_own_table() {
        let order = WriteOrder::default();
        let (a, b) = (TableId::new("dbo", "A"), TableId::new("dbo", "B"));
        assert!(read_ends(&order, &a), "a table never written");
        let first = order.queue(std::slice::from_ref(&a));
        let second = order.queue(std::slice::from_ref(&a));
        assert!(read_ends(&order, &b), "another table's writes hold no read");
        assert!(!read_ends(&order, &a));
        drop(second);
        assert!(!read_ends(&order, &a), "the first write is still open");
        drop(first);
        assert!(read_ends(&order, &a));
    }

    #[test]
    fn a_write_queued_after_a_read_began_does_not_hold_it() {
        let order = WriteOrder::default();
        let a = TableId::new("dbo", "A");
        let earlier = order.queue(std::slice::from_ref(&a));
        runtime().block_on(async {
            let read = tokio::spawn({
                let (order, a) = (order.clone(), a.clone());
                async move { order.after_writes(&a).await }
            });
            tokio::task::yield_now().await; // the read has begun
            let _later = order.queue(std::slice::from_ref(&a));
            drop(earlier);
            let ended = tokio::time::timeout(Duration::from_millis(200), read).await;
            assert!(
                matches!(ended, Ok(Ok(()))),
                "the read waited for a later write"
            );
        });
    }
}
