//! The actors: SupervisorActor (discovery, one TableActor per tracked table)
//! and TableActor (runs the table's cycles). The SinkActor lives in
//! [`crate::sink`].

mod ddl_listener;
mod module_sync;
pub mod ownership;
mod supervisor;
mod table;

pub use ddl_listener::{
    capture_stopped_message, DdlListenerActor, ListenerConfig, StopListening, BROKER_END_DIALOG,
    BROKER_ERROR,
};
pub use module_sync::ModuleSyncActor;
pub use supervisor::{RouteSchemaChange, Routed, Shutdown, SupervisorActor, WakeTable};
pub use table::{ApplySchemaChange, Retire, TableActor, Wake};

use std::sync::Arc;

use actix::{Actor, Addr};

use crate::ports::{DdlQueue, Primary, Replica, StateStore};
use crate::sink::SinkHandle;
use crate::status::StatusBoard;
use crate::sync::{Guards, Known, Pipeline, SyncConfig};

/// A running pipeline: the supervisor (send it [`Shutdown`]), the sink and
/// the status board.
pub struct Running {
    pub supervisor: Addr<SupervisorActor>,
    pub sink: SinkHandle,
    pub board: StatusBoard,
    pub listener: Option<Addr<DdlListenerActor>>,
    /// Which tables' cycles run now; counts overlaps (there must be none).
    pub cycles: crate::fence::Cycles,
}

/// What a stop interrupted, for the one log line the daemon writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Full loads stopped at a page boundary: (table, rows, total).
    pub loads: Vec<(String, u64, u64)>,
    /// Change backlogs stopped between pages: (table, versions behind).
    pub backlogs: Vec<(String, i64)>,
    /// Tables whose cycle was still running when the grace period ended
    /// (e.g. a primary that does not answer): abandoned, nothing half
    /// written (the replica rolls back what was not committed).
    pub abandoned: Vec<String>,
    /// The DDL listener did not finish its round in time.
    pub listener_abandoned: bool,
}

impl ShutdownReport {
    /// One line: what was interrupted and that it resumes.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (table, rows, total) in &self.loads {
            parts.push(format!(
                "the full load of {table} stopped at {rows} / {total} rows and resumes there on the next start"
            ));
        }
        for (table, behind) in &self.backlogs {
            parts.push(format!(
                "the change backlog of {table} ({behind} version{} behind) stopped between pages and continues from its stored version",
                if *behind == 1 { "" } else { "s" }
            ));
        }
        if !self.abandoned.is_empty() {
            parts.push(format!(
                "the cycles of {} did not finish in time and were abandoned (uncommitted work is rolled back; they continue from their stored versions)",
                self.abandoned.join(", ")
            ));
        }
        if self.listener_abandoned {
            parts.push(
                "the DDL listener's receive was abandoned (its messages stay in the queue)".into(),
            );
        }
        if parts.is_empty() {
            "stopped cleanly: nothing was interrupted".into()
        } else {
            format!("stopped: {}", parts.join("; "))
        }
    }
}

impl Running {
    /// Graceful stop with the default grace period (4 s, inside Docker's 10).
    pub async fn shutdown(&self) -> ShutdownReport {
        self.stop(std::time::Duration::from_secs(4)).await
    }

    /// Graceful stop: nothing new starts; loads and backlogs stop at their
    /// next page boundary; the replica transaction in flight commits or
    /// rolls back; the DDL listener commits its receive. Whatever has not
    /// finished within `grace` (a hung primary) is abandoned.
    pub async fn stop(&self, grace: std::time::Duration) -> ShutdownReport {
        let listener = self.listener.clone();
        let listening = async move {
            match listener {
                Some(l) => l.send(StopListening).await.is_ok(),
                None => true,
            }
        };
        let supervisor = self.supervisor.send(Shutdown);
        let (tables, listener) = tokio::join!(
            tokio::time::timeout(grace, supervisor),
            tokio::time::timeout(grace, listening),
        );
        let mut report = ShutdownReport {
            listener_abandoned: listener.is_err(),
            ..ShutdownReport::default()
        };
        if tables.is_err() {
            report.abandoned = self.cycles.running();
        }
        for (name, status) in self.board.snapshot() {
            match (status.state, status.progress, status.lag_versions) {
                (crate::status::TableState::FullLoad, Some((rows, total)), _) => {
                    report.loads.push((name, rows, total))
                }
                (crate::status::TableState::Incremental, _, Some(behind)) if behind > 0 => {
                    report.backlogs.push((name, behind))
                }
                _ => {}
            }
        }
        report
    }
}

/// The ports a pipeline runs on. Without a DDL queue, schema changes are
/// still picked up by each cycle's reconcile (renames then block the table).
pub struct Ports {
    pub primary: Arc<dyn Primary>,
    pub replica: Arc<dyn Replica>,
    pub state: Arc<dyn StateStore>,
    pub ddl_queue: Option<Arc<dyn DdlQueue>>,
}

/// `ports` with each one's calls limited by `limits`.
fn limited(ports: Ports, limits: crate::ports::CallLimits) -> Ports {
    use crate::ports::Guarded;
    Ports {
        primary: Arc::new(Guarded::new(ports.primary, limits)),
        replica: Arc::new(Guarded::new(ports.replica, limits)),
        state: Arc::new(Guarded::new(ports.state, limits)),
        ddl_queue: ports.ddl_queue.map(|q| {
            let q: Arc<dyn DdlQueue> = Arc::new(Guarded::new(q, limits));
            q
        }),
    }
}

/// Starts the SinkActor, the SupervisorActor, the ModuleSyncActor and (with
/// a queue) the DdlListenerActor on the current actix system, every call of
/// every port under its call limit (`config.call_limits`).
pub fn start(ports: Ports, config: SyncConfig) -> Running {
    let Ports {
        primary,
        replica,
        state,
        ddl_queue,
    } = limited(ports, config.call_limits);
    let fence = crate::fence::Fence::default();
    let sink = SinkHandle::start(replica, fence.clone());
    let board = StatusBoard::default();
    let module_interval = config.module_sync_interval;
    let listener = config.ddl_listener.clone();
    let pipeline = Arc::new(Pipeline {
        primary: primary.clone(),
        state: state.clone(),
        sink: sink.clone(),
        board: board.clone(),
        config,
        guards: Guards::new(fence),
        known: Known::default(),
    });
    let cycles = pipeline.guards.cycles.clone();
    // Module sync and the DDL queue's receive run on one instance at a
    // time, each under its own lease.
    let module_lease = ownership::SingletonLease::default();
    let listener_lease = ownership::SingletonLease::default();
    let mut singletons = vec![("module_sync", module_lease.clone())];
    if ddl_queue.is_some() {
        singletons.push(("ddl_listener", listener_lease.clone()));
    }
    let supervisor = SupervisorActor::new(pipeline, singletons).start();
    {
        let (sink, board) = (sink.clone(), board.clone());
        actix::Supervisor::start(move |_| {
            ModuleSyncActor::new(primary, sink, board, module_interval, module_lease)
        });
    }
    let listener = ddl_queue.map(|queue| {
        let sup = supervisor.clone();
        let (sink, board) = (sink.clone(), board.clone());
        actix::Supervisor::start(move |_| {
            DdlListenerActor::new(queue, state, sink, board, sup, listener, listener_lease)
        })
    });
    Running {
        supervisor,
        sink,
        board,
        listener,
        cycles,
    }
}
