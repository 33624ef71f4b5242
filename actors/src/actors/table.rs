//! TableActor: runs one table's cycle every poll. A cycle runs atomically
//! (`ctx.wait`), so a shutdown request waits for the batch in flight. On a
//! transient error the actor records it and stops; actix supervision
//! restarts it after an exponential backoff, counted in
//! `ctsync_actor_restarts_total`. A definite error (`ErrorKind::Definite`)
//! holds the table in `error` with the reason instead, looked at again every
//! `restarts.max` or when one of its keys changes. Before
//! its first write it claims the table on the replica under the grant the
//! supervisor gave it and records the claim in the table's lease; every
//! write carries that claim, and once the supervisor retires the actor (or
//! another instance claims the table) its writes are refused (see
//! `crate::fence`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::{debug, error};

use crate::ddl::SchemaChange;
use crate::error::{Error, ErrorKind, Result};
use crate::fence::Claim;
use crate::keys;
use crate::model::TableId;
use crate::status::TableState;
use crate::sync::{apply_schema_change, run_cycle, Outcome, Pipeline};
use crate::telemetry;

pub struct TableActor {
    table: TableId,
    key: String,
    pipeline: Arc<Pipeline>,
    /// The supervisor's grant this actor runs under (see `Fence::grant`).
    generation: u64,
    /// The claim made under it, once made.
    claim: Option<Claim>,
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
    pub fn new(table: TableId, pipeline: Arc<Pipeline>, generation: u64) -> Self {
        Self {
            key: table.key_name(),
            table,
            pipeline,
            generation,
            claim: None,
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

    /// Holds the table in `error` with `e` as its reason (said once per
    /// reason) and looks again after `restarts.max`: asking sooner
    /// would get the same answer. The actor keeps running and its claim.
    fn hold(&mut self, e: Error, ctx: &mut Context<Self>) {
        self.failures = 0;
        let message = e.to_string();
        let board = &self.pipeline.board;
        if board.get(&self.key).map(|s| s.state) == Some(TableState::FullLoad) {
            board.update(&self.key, |s| s.progress = None);
        }
        if crate::sync::hold(
            &self.pipeline,
            &self.table,
            TableState::Error,
            message.clone(),
        ) {
            telemetry::error("table");
        }
        board.update(&self.key, |s| s.last_error = Some(message));
        self.report_lag();
        self.schedule(self.pipeline.config.restarts.max, ctx);
    }

    fn backoff(&self) -> Duration {
        let cfg = &self.pipeline.config;
        let exp = self.failures.saturating_sub(1).min(16);
        cfg.restarts
            .first
            .saturating_mul(1u32 << exp)
            .min(cfg.restarts.max)
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
        let (generation, claim) = (self.generation, self.claim.clone());
        let work = async move {
            let claim = match claim {
                Some(claim) => claim,
                None => match claim_table(&pipeline, &table, generation).await {
                    Ok(claim) => claim,
                    Err(e) => return (None, Err(e)),
                },
            };
            let result = run_cycle(&pipeline, &table, &claim).await;
            (Some(claim), result)
        };
        ctx.wait(work.into_actor(self).map(|(claim, result), act, ctx| {
            act.claim = claim;
            act.finish_cycle(result, ctx)
        }));
    }

    fn finish_cycle(&mut self, result: Result<Outcome>, ctx: &mut Context<Self>) {
        let act = self;
        match result {
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
            Err(e @ Error::Fenced { .. })
                if !act.pipeline.guards.fence.holds(&act.table, act.generation) =>
            {
                // Retired while the cycle ran: another owner has the table.
                debug!(table = %act.table, error = %e, "retired table actor stops");
                act.retired = true;
                ctx.stop();
            }
            Err(e) if e.kind() == ErrorKind::Definite => act.hold(e, ctx),
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
                if matches!(e, Error::Fenced { .. }) {
                    // Another instance claimed the table on the replica:
                    // claim again (the lease decides who may) or be retired.
                    act.claim = None;
                }
                act.report_lag();
                ctx.stop();
            }
        }
    }
}

/// Claims the table on the replica under `generation` and records the
/// claim in the table's lease, which this instance must still hold (the
/// table's actor before its first write; the supervisor to rename it).
pub(super) async fn claim_table(
    pipeline: &Pipeline,
    table: &TableId,
    generation: u64,
) -> Result<Claim> {
    let owner = pipeline.config.instance.id.clone();
    let claim = pipeline
        .sink
        .claim(table.clone(), owner, generation)
        .await?;
    let lease = keys::table_lease(table);
    if !pipeline.state.set_lease_claim(&lease, &claim).await? {
        pipeline.guards.fence.revoke(table);
        return Err(Error::Fenced {
            table: table.clone(),
            detail: format!("{lease} is no longer held by this instance"),
        });
    }
    // A new claim reads both catalogs and the replica's record afresh:
    // another owner may have changed them while this one did not hold it.
    pipeline.known.schemas.forget(table);
    pipeline.known.idle.forget_version(table);
    debug!(table = %table, token = claim.token, "claimed the table");
    Ok(claim)
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
        let (table, generation, claim) = (self.table.clone(), self.generation, self.claim.clone());
        AtomicResponse::new(Box::pin(
            async move {
                let claim = match claim {
                    Some(claim) => claim,
                    None => claim_table(&pipeline, &table, generation).await?,
                };
                let sink = pipeline.sink.fenced(claim.clone());
                apply_schema_change(&pipeline, &sink, &msg.0).await?;
                Ok(claim)
            }
            .into_actor(self)
            .map(|result: Result<Claim>, act, _| {
                result.map(|claim| {
                    act.claim = Some(claim);
                })
            }),
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
