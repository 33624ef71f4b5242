//! A cursor of the replica's record that cannot be read (a hand-edited
//! row, a value another ctsync version wrote) and what a cycle does about
//! it, so that it never costs a row and never stalls the table: an
//! unreadable load cursor starts the load over from row 0 under a start
//! version read now; an unreadable backlog cursor starts the backlog over
//! from the stored version (its pages delete and insert, so replaying them
//! is harmless). Said once per table and cursor at WARN, and counted.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tracing::warn;

use crate::model::TableId;
use crate::ports::{CursorKind, Unreadable};
use crate::telemetry;

/// The unreadable cursor said last per table, so each is said once (until
/// a record reads clean again).
#[derive(Debug, Default)]
pub struct UnreadableCursors {
    said: Mutex<HashMap<TableId, Unreadable>>,
}

impl UnreadableCursors {
    fn lock(&self) -> MutexGuard<'_, HashMap<TableId, Unreadable>> {
        self.said.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The replica's record of `table` was read with `unreadable`: says
    /// what ctsync does about it, once, and returns the cursor kind.
    pub fn settle(&self, table: &TableId, unreadable: Option<&Unreadable>) -> Option<CursorKind> {
        let Some(u) = unreadable else {
            self.lock().remove(table);
            return None;
        };
        if self.lock().get(table) != Some(u) {
            let what = match u.cursor {
                CursorKind::Load => {
                    "where the pending full load stands cannot be known, so it starts over \
                     from row 0 under a start version read now"
                }
                CursorKind::Backlog => {
                    "the backlog starts over from the stored version (its pages delete and \
                     insert each key, so the replayed ones change nothing)"
                }
            };
            warn!(
                table = %table,
                cursor = u.cursor.as_str(),
                error = %u.error,
                "the {} cursor recorded in ctsync's record on the replica cannot be read \
                 (edited by hand, or written by another ctsync version?); {what}",
                u.cursor.as_str()
            );
            telemetry::unreadable_cursor(&table.key_name(), u.cursor.as_str());
            self.lock().insert(table.clone(), u.clone());
        }
        Some(u.cursor)
    }
}
