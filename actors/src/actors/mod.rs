//! The actors: SupervisorActor (discovery, one TableActor per tracked table)
//! and TableActor (runs the table's cycles). The SinkActor lives in
//! [`crate::sink`].

mod supervisor;
mod table;

pub use supervisor::{Shutdown, SupervisorActor};
pub use table::{Retire, TableActor};

use std::sync::Arc;

use actix::{Actor, Addr};

use crate::ports::{Primary, Replica, StateStore};
use crate::sink::SinkHandle;
use crate::status::StatusBoard;
use crate::sync::{Pipeline, SyncConfig};

/// A running pipeline: the supervisor (send it [`Shutdown`]), the sink and
/// the status board.
pub struct Running {
    pub supervisor: Addr<SupervisorActor>,
    pub sink: SinkHandle,
    pub board: StatusBoard,
}

/// Starts the SinkActor and the SupervisorActor on the current actix system.
pub fn start(
    primary: Arc<dyn Primary>,
    replica: Arc<dyn Replica>,
    state: Arc<dyn StateStore>,
    config: SyncConfig,
) -> Running {
    let sink = SinkHandle::start(replica);
    let board = StatusBoard::default();
    let pipeline = Arc::new(Pipeline {
        primary,
        state,
        sink: sink.clone(),
        board: board.clone(),
        config,
    });
    let supervisor = SupervisorActor::new(pipeline).start();
    Running {
        supervisor,
        sink,
        board,
    }
}
