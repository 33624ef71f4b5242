//! Faults inside the replica's own transactions and record: a bulk load
//! that fails part-way through its page (once, or for good on a table bulk
//! copy cannot take), a recorded cursor that cannot be read as the next
//! process starts; and the check that no write ever left part of itself
//! behind (the replica never refused a row for a duplicate key).

use std::time::Duration;

use crate::generator::KEYS;
use crate::rows::row_for;
use crate::world::{Divergence, World};
use ctsync_actors::keys;
use ctsync_actors::memory::faults::{Rule, Site};
use ctsync_actors::ports::CursorKind;

/// How long (simulated ms) `corrupt-cursor` waits at most for its table's
/// cursor to be recorded part-way before it stops the process anyway.
const CURSOR_WAIT_MS: u64 = 500;

impl World {
    /// The next bulk load of table `t` fails part-way (or every one does,
    /// `lasting`); `connection`: the connection drops instead of the load
    /// being refused.
    pub(crate) fn bulk_fail(&mut self, t: usize, lasting: bool, connection: bool) {
        let rule = if connection {
            Rule::lost_ack()
        } else {
            Rule::reject()
        };
        let rule = rule.at(Site::ReplicaBulk).object(&self.tables[t]);
        self.bulk_faults
            .inject(if lasting { rule.always() } else { rule });
    }

    /// Table `t` (or the next enabled one) runs a full load (`load`) or a
    /// backlog; once its cursor is recorded part-way the process dies, the
    /// cursor is made unreadable, and the next process starts. `!forced`:
    /// the load's `force_full_load` is "false" again by then.
    pub(crate) async fn corrupt_cursor(
        &mut self,
        t: usize,
        (load, forced): (bool, bool),
        salt: u32,
    ) {
        let n = self.tables.len();
        let t = (0..n)
            .map(|i| (t + i) % n)
            .find(|i| self.wanted.contains(i))
            .unwrap_or(t);
        let id = self.tables[t].clone();
        let cursor = if load {
            self.force(t);
            CursorKind::Load
        } else {
            if let Some(schema) = self.schema(t).await {
                for key in 0..KEYS as u8 {
                    self.primary.upsert(&id, row_for(&schema, key, salt));
                }
            }
            CursorKind::Backlog
        };
        // Bounded: a held or stalled table never gets there, and the
        // process stops all the same.
        let (mut part_way, mut seen) = (false, false);
        for _ in 0..CURSOR_WAIT_MS {
            let record = self.replica.table_record(&id);
            seen = record.load.as_ref().is_some_and(|l| l.forced);
            part_way = match cursor {
                CursorKind::Load => record.load.is_some_and(|l| l.rows > 0),
                CursorKind::Backlog => record.backlog.is_some(),
            };
            if part_way {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.stop_with(false, |world| {
            // Only a load that saw the request loses its flag; a request
            // not seen yet stays the operator's.
            if part_way && seen && load && !forced {
                world.state.set(&keys::force_full_load(&id), "false");
            }
            if world.replica.corrupt_cursor(&id, cursor) {
                *world.cursors_corrupted.entry(cursor.as_str()).or_insert(0) += 1;
            }
        })
        .await;
    }

    /// No replica write was refused for a duplicate key: ctsync deletes
    /// every changed key before it inserts and loads into an emptied
    /// target, so one can only come from a write that left part of itself
    /// behind (a page's rows without its cursor).
    pub(crate) fn check_no_duplicates(&self) -> Result<(), Divergence> {
        match self.replica.duplicate_key_refusals() {
            0 => {
                self.held(crate::invariants::NO_DUPLICATES);
                Ok(())
            }
            n => Err(Divergence(format!(
                "the replica refused {n} writes for a duplicate key: a failed write left rows behind"
            ))),
        }
    }

    /// The figures of these faults, for the run's note.
    pub(crate) fn replica_fault_figures(&self) -> Vec<(String, u64)> {
        let mut figures: Vec<(String, u64)> = self
            .bulk_faults
            .injected()
            .into_iter()
            .map(|((site, kind), n)| (format!("{site:?}/{kind}"), n))
            .collect();
        for (kind, n) in &self.cursors_corrupted {
            figures.push((format!("corrupt {kind} cursor"), *n));
        }
        figures.push((
            "unreadable cursor reads".into(),
            self.replica.unreadable_reads() as u64,
        ));
        figures
    }
}
