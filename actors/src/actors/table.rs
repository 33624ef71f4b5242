//! TableActor: runs one table's cycle every poll. A cycle runs atomically
//! (`ctx.wait`), so a shutdown request waits for the batch in flight. On an
//! error the actor records it and stops; actix supervision restarts it after
//! an exponential backoff, counted in `ctsync_actor_restarts_total`. Every
//! replica write carries the fence token the supervisor gave this actor; once
//! the supervisor retires it, its writes are refused (see `crate::fence`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::{debug, error};

use crate::ddl::SchemaChange;
use crate::error::Error;
use crate::model::TableId;
use crate::status::TableState;
use crate::sync::{apply_schema_change, run_cycle, Outcome, Pipeline};
use crate::telemetry;

pub struct TableActor {
    table: TableId,
    key: String,
    pipeline: Arc<Pipeline>,
    /// This owner's fence token.
    token: u64,
    /// Consecutive failed cycles; drives the restart backoff.
    failures: u32,
    first_delay: Duration,
    retired: bool,
    /// Lag is counted from here until the table first catches up.
    created: Instant,
    /// The next scheduled cycle (cancelled when the table is woken).
    next: Option<SpawnHandle>,
}

impl TableActor {
    pub fn new(table: TableId, pipeline: Arc<Pipeline>, token: u64) -> Self {
        Self {
            key: table.key_name(),
            table,
            pipeline,
            token,
            failures: 0,
            first_delay: Duration::ZERO,
            retired: false,
            created: Instant::now(),
            next: None,
        }
    }

    /// Lag in seconds = time since the table was last fully caught up.
    fn report_lag(&self) {
        let board = &self.pipeline.board;
        let Some(status) = board.get(&self.key) else {
            return;
        };
        if status.state == TableState::Paused {
            telemetry::lag(&self.key, 0.0, None);
            return;
        }
        let since = status.caught_up_at.unwrap_or(self.created);
        let seconds = if status.state == TableState::Incremental && status.lag_versions == Some(0) {
            0.0
        } else {
            since.elapsed().as_secs_f64()
        };
        board.update(&self.key, |s| s.lag_seconds = seconds);
        telemetry::lag(&self.key, seconds, self.pipeline.facts().retention);
    }

    fn backoff(&self) -> Duration {
        let cfg = &self.pipeline.config;
        let exp = self.failures.saturating_sub(1).min(16);
        cfg.restart_backoff
            .saturating_mul(1u32 << exp)
            .min(cfg.restart_backoff_max)
    }

    fn schedule(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        if let Some(previous) = self.next.take() {
            ctx.cancel_future(previous);
        }
        self.next = Some(ctx.run_later(delay, |act, ctx| {
            act.next = None;
            act.tick(ctx)
        }));
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        let pipeline = self.pipeline.clone();
        let table = self.table.clone();
        let token = self.token;
        let work = async move { run_cycle(&pipeline, &table, token).await };
        ctx.wait(work.into_actor(self).map(|result, act, ctx| match result {
            Ok(outcome) => {
                act.failures = 0;
                act.report_lag();
                debug!(table = %act.table, ?outcome, "cycle done");
                // A finished load goes straight on to catch up with changes.
                let delay = match outcome {
                    Outcome::Loaded => Duration::ZERO,
                    _ => act.pipeline.config.poll_interval,
                };
                act.schedule(delay, ctx);
            }
            Err(e @ Error::Fenced { .. }) => {
                // Retired while the cycle ran: another owner has the table.
                debug!(table = %act.table, error = %e, "retired table actor stops");
                act.retired = true;
                ctx.stop();
            }
            Err(e) => {
                act.failures += 1;
                let message = e.to_string();
                error!(table = %act.table, error = %message, "table cycle failed; restarting the table actor");
                telemetry::error("table");
                telemetry::table_state(&act.key, TableState::Error.as_str());
                act.pipeline.board.update(&act.key, |s| {
                    if s.state == TableState::FullLoad {
                        s.progress = None; // the partial load will start over
                    }
                    s.state = TableState::Error;
                    s.last_error = Some(message);
                });
                act.report_lag();
                ctx.stop();
            }
        }));
    }
}

impl Actor for TableActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let delay = self.first_delay;
        self.schedule(delay, ctx);
    }
}

impl Supervised for TableActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.first_delay = self.backoff();
        telemetry::actor_restart("table", &self.key);
        self.pipeline.board.update(&self.key, |s| s.restarts += 1);
        debug!(table = %self.table, delay = ?self.first_delay, "table actor restarting");
    }
}

/// Applies a schema change from a DDL event between two cycles (atomic:
/// no row change of the table runs meanwhile).
pub struct ApplySchemaChange(pub SchemaChange);

impl Message for ApplySchemaChange {
    type Result = crate::error::Result<()>;
}

impl Handler<ApplySchemaChange> for TableActor {
    type Result = AtomicResponse<Self, crate::error::Result<()>>;

    fn handle(&mut self, msg: ApplySchemaChange, _ctx: &mut Self::Context) -> Self::Result {
        let pipeline = self.pipeline.clone();
        let sink = pipeline.sink.fenced(self.token);
        AtomicResponse::new(Box::pin(
            async move { apply_schema_change(&pipeline, &sink, &msg.0).await }.into_actor(self),
        ))
    }
}

/// Stops scheduling cycles; answered after the cycle in flight finished.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

impl Handler<Retire> for TableActor {
    type Result = ();

    fn handle(&mut self, _: Retire, _ctx: &mut Self::Context) {
        self.retired = true;
    }
}

/// One of the table's operator keys changed (Redis keyspace notification):
/// run the next cycle now instead of at the next poll. A cycle in flight
/// finishes first (the actor processes messages between cycles).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

impl Handler<Wake> for TableActor {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        self.schedule(Duration::ZERO, ctx);
    }
}
