//! Table renames in the simulated world: a table renamed on the primary
//! (at times while its shadow load copies), its RENAME event sent; and the
//! check that no shadow table is left behind or missing.

use std::collections::BTreeSet;

use ctsync_actors::keys;
use ctsync_actors::model::TableId;
use ctsync_actors::ports::LoadMode;

use crate::rows::{rename_table_event, table_defs};
use crate::world::{Divergence, World};

/// How long (simulated ms) a `mid_load` rename waits at most for its
/// forced load to copy into a shadow.
const MID_LOAD_WAIT_MS: u64 = 300;

/// How long (simulated ms) a rename waits at most for ctsync to apply it.
const APPLY_WAIT_MS: u64 = 1_000;

/// The invariant's name, as the figures and the report give it.
pub(crate) const SHADOWS: &str =
    "every shadow table belongs to a pending shadow load of a simulated table (under its name \
     or a former one), and every pending shadow load's copy exists (every step)";

impl World {
    /// Renames table `t` on the primary to a fresh name and sends the
    /// event; with `mid_load`, once a forced load of it copies into its
    /// shadow (or after `MID_LOAD_WAIT_MS` all the same). A table whose
    /// change tracking is off is left alone (discovery does not track it).
    pub(crate) async fn rename_table(&mut self, t: usize, mid_load: bool) {
        if self.ct_off.contains_key(&t) {
            return;
        }
        let from = self.tables[t].clone();
        if mid_load {
            self.force(t);
            for _ in 0..MID_LOAD_WAIT_MS {
                let copying = self
                    .replica
                    .table_record(&from)
                    .load
                    .is_some_and(|l| l.mode == LoadMode::Shadow && l.rows > 0);
                if copying {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        self.renames += 1;
        let base = &table_defs()[t].id;
        let to = TableId::new(
            base.schema.clone(),
            format!("{}_r{}", base.name, self.renames),
        );
        let shadow_load = self
            .replica
            .table_record(&from)
            .load
            .is_some_and(|l| l.mode == LoadMode::Shadow);
        if self.state.get(&keys::enabled(&from)).as_deref() != Some("true") {
            // ctsync ignores DDL events of a table not enabled: its keys
            // stay under the old name, and its Force Load requests with
            // them.
            self.force_requests.remove(&t);
            self.withdrawn.remove(&t);
        }
        self.primary.rename_table(&from, &to);
        self.former_names.push(from.clone());
        self.renamed_from.insert(t, from.clone());
        self.tables[t] = to.clone();
        *self.names.lock().unwrap_or_else(|e| e.into_inner()) = self.tables.clone();
        self.queue.push_event(&rename_table_event(&from, &to));
        self.count("rename-table");
        if shadow_load {
            self.count("rename-table mid shadow load");
        }
        // The operator's next steps on the table use the new name: give
        // the event time to apply (bounded: faults may hold it longer).
        for _ in 0..APPLY_WAIT_MS {
            if !self.rename_pending(t) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Table `t` was renamed on the primary and ctsync has not moved it
    /// yet: its old name is still enabled, and the replica still holds
    /// its table or record under that name (a table ctsync never wrote
    /// has nothing there to move, and its new name may be enabled at
    /// once). The operator leaves its flags alone meanwhile: enabling the
    /// new name would load a second copy that the rename then cannot move
    /// onto (it retries, then parks).
    pub(crate) fn rename_pending(&self, t: usize) -> bool {
        let Some(old) = self.renamed_from.get(&t) else {
            return false;
        };
        let record = self.replica.table_record(old);
        self.state.get(&keys::enabled(old)).as_deref() == Some("true")
            && (self.replica.has_table(old) || record.version.is_some() || record.load.is_some())
    }

    /// Every `[ctsync].[shadow_…]` on the replica is the copy of a pending
    /// shadow load of a simulated table, under its name or a former one
    /// (none is left behind by a rename,
    /// a swap given up, or a load started over in place), and every
    /// pending shadow load has its copy.
    pub(crate) fn check_shadows(&self) -> Result<(), Divergence> {
        let mut pending = BTreeSet::new();
        // A rename not applied yet leaves the load under the old name.
        for id in self.tables.iter().chain(&self.former_names) {
            let record = self.replica.table_record(id);
            if record.load.is_some_and(|l| l.mode == LoadMode::Shadow) {
                let shadow = id.shadow();
                if !self.replica.has_table(&shadow) {
                    return Err(Divergence(format!(
                        "{id}: its shadow load is pending but its copy {shadow} is missing"
                    )));
                }
                pending.insert(shadow);
            }
        }
        for shadow in self.replica.tables_in("ctsync") {
            if shadow.name.starts_with("shadow_") && !pending.contains(&shadow) {
                return Err(Divergence(format!(
                    "{shadow} is left on the replica: no pending shadow load of {:?} (or of \
                     their former names {:?}) writes it",
                    self.tables
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>(),
                    self.former_names
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                )));
            }
        }
        self.held(SHADOWS);
        Ok(())
    }
}
