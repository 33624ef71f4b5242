//! Modules in the simulated world: a fixed catalogue (a view over a view,
//! schema-bound views over replicated tables, a procedure, a function that
//! changes kind, a table-valued function, an encrypted procedure and a
//! trigger) created, altered and dropped on the primary while module sync
//! meets faults; and the check that at quiesce the replica holds exactly
//! the primary's modules, except encrypted ones and triggers.

use ctsync_actors::memory::faults::{Fault, Phase, Rule, Site};
use ctsync_actors::modules::{qualified_statement, ModuleDef, ModuleKind};

use crate::world::World;

/// Modules in the catalogue.
pub(crate) const MODULES: usize = 9;

/// Module `n` of the catalogue, its text varied by `salt`.
pub(crate) fn module(n: usize, salt: u32) -> ModuleDef {
    let s = salt % 1000;
    let (schema, name, kind, text) = match n % MODULES {
        // Sorts before the view it reads: module sync creates it in a
        // second pass.
        0 => (
            "dbo",
            "sim_a_over",
            ModuleKind::View,
            Some(format!(
                "CREATE VIEW [dbo].[sim_a_over] AS SELECT [Id], {s} AS [v] FROM [dbo].[sim_b_base]"
            )),
        ),
        1 => (
            "dbo",
            "sim_b_base",
            ModuleKind::View,
            Some(format!(
                "CREATE VIEW [dbo].[sim_b_base] AS SELECT [Id] FROM [dbo].[User] WHERE [Id] > {}",
                s % 10
            )),
        ),
        // Schema-bound over replicated tables: on the replica, they block
        // the tables' swaps (the in-place fallback).
        2 => (
            "dbo",
            "sim_bound_xy",
            ModuleKind::View,
            Some(format!(
                "CREATE VIEW [dbo].[sim_bound_xy] WITH SCHEMABINDING AS SELECT [Id], {s} AS [v] FROM [x].[y]"
            )),
        ),
        3 => (
            "sales",
            "sim_bound_lines",
            ModuleKind::View,
            Some(format!(
                "CREATE VIEW [sales].[sim_bound_lines] WITH SCHEMABINDING AS SELECT [OrderId], [Line] \
                 FROM [sales].[OrderLine] WHERE [Line] >= {}",
                s % 3
            )),
        ),
        4 => (
            "dbo",
            "sim_proc",
            ModuleKind::Procedure,
            Some(format!(
                "CREATE PROCEDURE [dbo].[sim_proc] AS SELECT {s} AS [v]"
            )),
        ),
        // A scalar function or an inline one (a kind change is a drop and
        // a create on the replica).
        5 if salt.is_multiple_of(2) => (
            "dbo",
            "sim_fn",
            ModuleKind::ScalarFunction,
            Some(format!(
                "CREATE FUNCTION [dbo].[sim_fn]() RETURNS int AS BEGIN RETURN {s} END"
            )),
        ),
        5 => (
            "dbo",
            "sim_fn",
            ModuleKind::InlineFunction,
            Some(format!(
                "CREATE FUNCTION [dbo].[sim_fn]() RETURNS TABLE AS RETURN SELECT [Id] FROM [dbo].[x.y] WHERE [Id] > {}",
                s % 10
            )),
        ),
        6 => (
            "x",
            "sim_tf",
            ModuleKind::TableFunction,
            Some(format!(
                "CREATE FUNCTION [x].[sim_tf]() RETURNS @t TABLE ([n] int) AS BEGIN INSERT @t VALUES ({s}) RETURN END"
            )),
        ),
        // Encrypted: its definition reads as NULL; skipped with a warning.
        7 => ("dbo", "sim_secret", ModuleKind::Procedure, None),
        // Triggers are never synced.
        _ => (
            "dbo",
            "sim_trg",
            ModuleKind::Trigger,
            Some(format!(
                "CREATE TRIGGER [dbo].[sim_trg] ON [dbo].[User] AFTER INSERT AS SELECT {s}"
            )),
        ),
    };
    ModuleDef::new(schema, name, kind, text.as_deref())
}

impl World {
    /// Creates or alters module `n` on the primary, or drops it.
    pub(crate) fn change_module(&mut self, n: usize, drop: bool, salt: u32) {
        let m = module(n, salt);
        if drop {
            self.primary.drop_module(&m.schema, &m.name);
            *self.figures.entry("module drops").or_insert(0) += 1;
        } else {
            self.primary.set_module(m);
            *self.figures.entry("module changes").or_insert(0) += 1;
        }
    }

    /// The next call of module sync at `site` meets `fault`: the primary's
    /// module list (PrimaryMeta), the replica's (ReplicaRead), or a module
    /// write (ReplicaWrite).
    pub(crate) fn module_fault(&mut self, site: Site, fault: Fault, during: Option<Phase>) {
        let method = match site {
            Site::ReplicaWrite => "apply_module",
            _ => "modules",
        };
        // A module call refused or unanswered has figures of its own; one
        // hung or slowed is a hung or slow call at its site like any other.
        let rule = Rule::fault(fault).at(site).method(method);
        let rule = match fault {
            Fault::LostAck => rule.label("module-lost_ack"),
            Fault::Reject => rule.label("module-reject"),
            _ => rule,
        };
        self.plan.inject(match during {
            Some(phase) => rule.during(phase),
            None => rule,
        });
    }

    /// The replica's modules are the primary's, text for text, except
    /// encrypted ones (skipped, and said so) and triggers (never synced);
    /// a module that cannot be created or altered (it reads a table or view
    /// the replica lacks) is reported on the board with its error. `Err`
    /// names the first difference.
    pub(crate) fn modules_match(&self) -> Result<(), String> {
        let primary = super::invariants::futures_lite_block(
            ctsync_actors::ports::Primary::modules(&*self.primary),
        )
        .map_err(|e| e.to_string())?;
        let boards = std::iter::once(&self.running.board)
            .chain(self.second.as_ref().map(|(r, _, _)| &r.board));
        let mut failing = std::collections::BTreeMap::new();
        let mut skipped = Vec::new();
        for board in boards {
            failing.extend(board.module_errors());
            skipped.extend(board.modules_skipped());
        }
        let synced: Vec<&ModuleDef> = primary
            .iter()
            .filter(|m| m.kind != ModuleKind::Trigger)
            .collect();
        for m in &synced {
            let name = m.qualified();
            let Some(text) = &m.definition else {
                if !skipped.contains(&name) {
                    return Err(format!("encrypted {name} is not said to be skipped"));
                }
                continue;
            };
            let stored = qualified_statement(text, &m.schema, &m.name, false)
                .unwrap_or_else(|| text.clone());
            match self.replica.module(&m.schema, &m.name) {
                Some(r) if r.kind == m.kind && r.definition.as_deref() == Some(&stored) => {}
                // It reads a table or view the replica lacks: SQL Server
                // refuses it too, and module sync says so.
                _ if failing
                    .get(&name)
                    .is_some_and(|e| e.contains("Invalid object name")) => {}
                other => {
                    return Err(format!(
                        "{name}: the replica holds {other:?}, the primary {m:?} (failing: {:?})",
                        failing.get(&name)
                    ))
                }
            }
        }
        for name in self.replica.module_names() {
            let on_primary = synced.iter().any(|m| m.qualified() == name);
            if !on_primary && !name.starts_with("ctsync.") {
                return Err(format!(
                    "{name} is on the replica, not on the primary (or only as a trigger)"
                ));
            }
        }
        Ok(())
    }
}
