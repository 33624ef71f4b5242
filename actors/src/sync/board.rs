//! Writes a table's state to the status board (and its gauge): the one
//! place a cycle, a load or an incremental run says where the table is.

use tracing::warn;

use super::Pipeline;
use crate::model::TableId;
use crate::status::TableState;
use crate::telemetry;

pub(super) fn set_state(p: &Pipeline, table: &TableId, state: TableState) {
    let key = table.key_name();
    p.board.update(&key, |s| {
        s.state = state;
        s.reason = None;
        if matches!(state, TableState::Incremental | TableState::Paused) {
            s.last_error = None;
        }
        if state != TableState::Incremental {
            s.lag_versions = None;
        }
    });
    telemetry::table_state(&key, state.as_str());
}

/// Puts the table in `state` with a reason, logging it once per change;
/// `true` when the reason is new.
pub(crate) fn hold(p: &Pipeline, table: &TableId, state: TableState, reason: String) -> bool {
    let key = table.key_name();
    let known = p.board.get(&key).and_then(|s| s.reason);
    let new = known.as_deref() != Some(reason.as_str());
    if new {
        warn!(table = %table, %reason, state = state.as_str(), "table is held; its version is not advanced");
    }
    set_state(p, table, state);
    p.board.update(&key, |s| s.reason = Some(reason));
    new
}
