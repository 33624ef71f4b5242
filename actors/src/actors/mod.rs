//! The actors: SupervisorActor (discovery, one TableActor per tracked table)
//! and TableActor (runs the table's cycles). The SinkActor lives in
//! [`crate::sink`].

mod ddl_listener;
mod module_sync;
mod supervisor;
mod table;

pub use ddl_listener::{
    capture_stopped_message, DdlListenerActor, ListenerConfig, StopListening, BROKER_END_DIALOG,
    BROKER_ERROR,
};
pub use module_sync::ModuleSyncActor;
pub use supervisor::{RouteSchemaChange, Shutdown, SupervisorActor};
pub use table::{ApplySchemaChange, Retire, TableActor};

use std::sync::Arc;

use actix::{Actor, Addr};

use crate::ports::{DdlQueue, Primary, Replica, StateStore};
use crate::sink::SinkHandle;
use crate::status::StatusBoard;
use crate::sync::{Pipeline, SyncConfig};

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

impl Running {
    /// Graceful stop: every table finishes its batch in flight and the DDL
    /// listener commits its receive; nothing new starts afterwards.
    pub async fn shutdown(&self) {
        if let Some(listener) = &self.listener {
            listener.send(StopListening).await.ok();
        }
        self.supervisor.send(Shutdown).await.ok();
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

/// Starts the SinkActor, the SupervisorActor, the ModuleSyncActor and (with
/// a queue) the DdlListenerActor on the current actix system.
pub fn start(ports: Ports, config: SyncConfig) -> Running {
    let Ports {
        primary,
        replica,
        state,
        ddl_queue,
    } = ports;
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
        facts: Default::default(),
        fence,
        cycles: Default::default(),
    });
    let cycles = pipeline.cycles.clone();
    let supervisor = SupervisorActor::new(pipeline).start();
    {
        let (sink, board) = (sink.clone(), board.clone());
        actix::Supervisor::start(move |_| {
            ModuleSyncActor::new(primary, sink, board, module_interval)
        });
    }
    let listener = ddl_queue.map(|queue| {
        let sup = supervisor.clone();
        let (sink, board) = (sink.clone(), board.clone());
        actix::Supervisor::start(move |_| {
            DdlListenerActor::new(queue, state, sink, board, sup, listener)
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
