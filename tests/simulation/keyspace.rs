//! Keyspace notifications as the simulation delivers them: an operator's
//! flag write wakes its table on every running instance (as
//! `src/state/keyspace.rs` does), unless a scheduled fault loses,
//! duplicates, delays or reorders it, or Redis is down (the subscriber's
//! connection is gone and the notification with it).

use std::collections::VecDeque;
use std::time::Duration;

use ctsync_actors::actors::WakeTable;
use ctsync_actors::model::TableId;

use crate::world::World;

/// What happens to the next notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    Lost,
    Duplicated,
    /// Delivered `ms` later (the subscriber thread was slow).
    Delayed(u64),
    /// Held back until the one after it was delivered.
    Reordered,
}

impl Fate {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Fate::Lost => "lost",
            Fate::Duplicated => "duplicated",
            Fate::Delayed(_) => "delayed",
            Fate::Reordered => "reordered",
        }
    }
}

impl std::fmt::Display for Fate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fate::Delayed(ms) => write!(f, "fate=delayed ms={ms}"),
            other => write!(f, "fate={} ms=0", other.name()),
        }
    }
}

impl Fate {
    pub(crate) fn parse(fate: &str, ms: u64) -> Result<Fate, String> {
        Ok(match fate {
            "lost" => Fate::Lost,
            "duplicated" => Fate::Duplicated,
            "delayed" => Fate::Delayed(ms),
            "reordered" => Fate::Reordered,
            v => {
                return Err(format!(
                    "fate={v}: not lost, duplicated, delayed or reordered"
                ))
            }
        })
    }
}

/// Notifications waiting on a fault, and the one held back.
#[derive(Default)]
pub(crate) struct Notifications {
    fates: VecDeque<Fate>,
    held: Option<TableId>,
}

impl World {
    /// The next notification meets `fate`.
    pub(crate) fn notification_fault(&mut self, fate: Fate) {
        self.notifications.fates.push_back(fate);
    }

    /// An operator wrote one of table `t`'s keys: its notification.
    pub(crate) fn notify(&mut self, t: usize) {
        let table = self.tables[t].clone();
        if self.plan.state_is_down() {
            self.count_fault("keyspace/lost-redis-down", Some(t));
            return;
        }
        match self.notifications.fates.pop_front() {
            None => self.wake(&table),
            Some(fate) => {
                let name = match fate {
                    Fate::Lost => "keyspace/lost",
                    Fate::Duplicated => "keyspace/duplicated",
                    Fate::Delayed(_) => "keyspace/delayed",
                    Fate::Reordered => "keyspace/reordered",
                };
                self.count_fault(name, Some(t));
                match fate {
                    Fate::Lost => {}
                    Fate::Duplicated => {
                        self.wake(&table);
                        self.wake(&table);
                    }
                    Fate::Delayed(ms) => {
                        let targets = self.supervisors();
                        actix_rt::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                            for s in targets {
                                s.do_send(WakeTable(table.clone()));
                            }
                        });
                    }
                    Fate::Reordered => {
                        // A second reorder in a row lets the first go.
                        if let Some(earlier) = self.notifications.held.replace(table) {
                            self.wake(&earlier);
                        }
                        return;
                    }
                }
            }
        }
        if let Some(held) = self.notifications.held.take() {
            self.wake(&held);
        }
    }

    fn supervisors(&self) -> Vec<actix::Addr<ctsync_actors::actors::SupervisorActor>> {
        std::iter::once(&self.running)
            .chain(self.second.as_ref().map(|(r, _, _)| r))
            .map(|r| r.supervisor.clone())
            .collect()
    }

    fn wake(&self, table: &TableId) {
        for s in self.supervisors() {
            s.do_send(WakeTable(table.clone()));
        }
    }

    /// Counts a fault the world itself injected, under the state of table
    /// `t` (of every table if none).
    pub(crate) fn count_fault(&mut self, name: &'static str, t: Option<usize>) {
        *self.figures.entry(name).or_insert(0) += 1;
        let now = self.phases_now();
        let phases: std::collections::BTreeSet<_> = match t {
            Some(t) => now.get(&self.tables[t]).copied().into_iter().collect(),
            None => now.values().copied().collect(),
        };
        for phase in phases {
            *self
                .world_fault_phases
                .entry((name.to_string(), phase))
                .or_insert(0) += 1;
        }
    }
}
