//! DdlListenerActor: receives DDL events from the Service Broker queue and
//! records them durably in the replica's inbox (`[ctsync].[ddl_inbox]`)
//! before the receive commits; only then, with no primary transaction open,
//! it applies each recorded event through its table's actor. One runs on
//! every instance: only the holder of the `ddl_listener` lease receives,
//! and each drains the inbox for the tables it owns (an event for a table
//! another instance owns waits there for it). An event that
//! cannot be applied is parked (in the inbox, and in `mssql_sync:ddl_failed`
//! when Redis answers), never dropped and never rolled back into the queue.
//! While the inbox cannot be written the listener stops receiving. An
//! `Error` message on the notification's conversation (SQL Server dropped
//! the notification) ends that conversation and is reported loudly.

pub use crate::config::ListenerConfig;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use tracing::{debug, error, info, warn};

use super::ownership::SingletonLease;
use super::supervisor::{RouteSchemaChange, Routed, SupervisorActor};
use crate::ddl::{parse_event, DdlEvent, ParkedDdl, EVENT_NOTIFICATION};
use crate::model::TableId;
use crate::ports::{DdlQueue, InboxMessage, InboxOutcome, QueueMessage, StateStore};
use crate::sink::SinkHandle;
use crate::status::StatusBoard;
use crate::telemetry;

/// Service Broker's message type for a failed conversation.
pub const BROKER_ERROR: &str = "http://schemas.microsoft.com/SQL/ServiceBroker/Error";
/// Service Broker's message type for a conversation the far end closed.
pub const BROKER_END_DIALOG: &str = "http://schemas.microsoft.com/SQL/ServiceBroker/EndDialog";
/// Attempts to apply an inbox message before it is parked.
const MAX_ATTEMPTS: u32 = 5;

/// What the page, `/readyz` and the log say when DDL capture stopped.
pub fn capture_stopped_message(detail: &str) -> String {
    format!(
        "DDL capture stopped: Service Broker ended the event notification's conversation \
         ({detail}); SQL Server drops such a notification, so schema changes are no longer \
         received (each cycle's reconcile still catches column changes; renames then pause the \
         table). Recreate it on the primary: DROP EVENT NOTIFICATION [SyncDDLEvents] ON \
         DATABASE; CREATE EVENT NOTIFICATION [SyncDDLEvents] ON DATABASE FOR \
         DDL_TABLE_EVENTS, RENAME TO SERVICE 'SyncDDLService', 'current database'; (use your \
         notification's name from sys.event_notifications)"
    )
}

pub struct DdlListenerActor {
    queue: Arc<dyn DdlQueue>,
    state: Arc<dyn StateStore>,
    sink: SinkHandle,
    board: StatusBoard,
    supervisor: Addr<SupervisorActor>,
    config: ListenerConfig,
    /// Only the holder of this lease receives from the queue; every
    /// instance drains the inbox for the tables it owns.
    lease: SingletonLease,
    stopped: bool,
    /// The last receive error, to log each distinct one once.
    failing: Option<String>,
    /// Inbox messages whose apply gave up behind a replica lock.
    waits: Waits,
}

/// Inbox messages (by id) whose apply gave up behind a lock on the replica,
/// each with when it is tried next and the pause that led there. Kept in
/// memory only: after a restart each is tried at once and backs off anew.
type Waits = Arc<Mutex<HashMap<String, Wait>>>;

#[derive(Debug, Clone, Copy)]
struct Wait {
    next: tokio::time::Instant,
    delay: Duration,
    attempts: u32,
    /// When (wall clock, Unix milliseconds) the last attempt gave up
    /// behind the lock, for the page once the message waits otherwise.
    blocked_at: u64,
}

/// What applying one recorded message came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Handled {
    Done,
    /// Redis did not answer: tried again later, not counted as an attempt
    /// (an event must not be parked only because Redis was down).
    Unavailable(String),
    /// Applying waited past its bound behind another session's locks and
    /// changed nothing ([`crate::error::Error::Blocked`]): not counted as
    /// an attempt (a rename behind a long reader must not be parked for the
    /// reader), tried again after a pause that doubles
    /// ([`ListenerConfig::blocked`]), since each attempt holds every
    /// table's replica writes for up to the lock timeout.
    Blocked {
        /// What waits, for the page: "the rename of dbo.A to dbo.B".
        what: String,
        event_type: &'static str,
        error: String,
    },
    /// Applying failed; counted, parked after `MAX_ATTEMPTS`.
    Failed(String),
    /// Will never work (the message cannot be read).
    Unreadable(String),
    /// The table is owned by another instance (or by none right now): it
    /// waits in the inbox for its owner.
    Elsewhere,
}

/// What one receive brought, for the actor to report.
#[derive(Debug, Default)]
struct Received {
    /// Event notifications arrived: capture works.
    events: bool,
    /// The notification's conversation failed (Service Broker's error text).
    broker_error: Option<String>,
}

/// The parts of the listener its async work needs.
#[derive(Clone)]
struct Parts {
    queue: Arc<dyn DdlQueue>,
    state: Arc<dyn StateStore>,
    sink: SinkHandle,
    supervisor: Addr<SupervisorActor>,
    config: ListenerConfig,
    /// This instance holds the listener's lease: it receives this round.
    receive: bool,
    board: StatusBoard,
    waits: Waits,
}

impl DdlListenerActor {
    pub fn new(
        queue: Arc<dyn DdlQueue>,
        state: Arc<dyn StateStore>,
        sink: SinkHandle,
        board: StatusBoard,
        supervisor: Addr<SupervisorActor>,
        config: ListenerConfig,
        lease: SingletonLease,
    ) -> Self {
        Self {
            queue,
            state,
            sink,
            board,
            supervisor,
            config,
            lease,
            stopped: false,
            failing: None,
            waits: Waits::default(),
        }
    }

    fn schedule(&self, delay: Duration, ctx: &mut Context<Self>) {
        if !self.stopped {
            ctx.run_later(delay, |act, ctx| act.poll(ctx));
        }
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.stopped {
            return;
        }
        let parts = Parts {
            queue: self.queue.clone(),
            state: self.state.clone(),
            sink: self.sink.clone(),
            supervisor: self.supervisor.clone(),
            config: self.config.clone(),
            receive: self.lease.held(),
            board: self.board.clone(),
            waits: self.waits.clone(),
        };
        ctx.wait(
            round(parts)
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok(received) => {
                        if act.failing.take().is_some() {
                            info!("receiving from the DDL queue works again");
                        }
                        act.report(received);
                        act.schedule(Duration::ZERO, ctx)
                    }
                    Err(e) => {
                        telemetry::error("ddl_listener");
                        let message = e.to_string();
                        // Said once per distinct error, not every few seconds.
                        if act.failing.as_deref() != Some(message.as_str()) {
                            warn!(error = %message, "DDL listener: receiving or recording failed; no message is lost, retrying every few seconds");
                        } else {
                            debug!(error = %message, "DDL listener still failing");
                        }
                        act.failing = Some(message);
                        act.schedule(act.config.retry_delay, ctx);
                    }
                }),
        );
    }

    fn report(&mut self, received: Received) {
        if let Some(detail) = received.broker_error {
            let message = capture_stopped_message(&detail);
            error!("{message}");
            telemetry::ddl_capture_stopped(true);
            self.board.set_ddl_problem(Some(message));
        } else if received.events && self.board.ddl_capture_problem().is_some() {
            info!("DDL events arrive again: capture works");
            telemetry::ddl_capture_stopped(false);
            self.board.set_ddl_problem(None);
        }
    }
}

/// One round: apply what the inbox holds, then receive, record and commit.
async fn round(parts: Parts) -> crate::error::Result<Received> {
    // The inbox first: it also holds what a crash or a stop left behind.
    // If it cannot be read, nothing is received either.
    let pending = parts.sink.inbox_pending().await?;
    forget_settled(&parts, &pending);
    // Tables (old and new names) of earlier messages left pending this
    // round: a later event for any of them waits behind it, so events for
    // one table apply in the order they happened (a column rename on the
    // new name never runs before the table rename it follows).
    let mut held: HashSet<TableId> = HashSet::new();
    for m in pending {
        let tables = tables_of(&m.message);
        if tables.iter().any(|t| held.contains(t)) {
            debug!(id = %m.message.id, "DDL event waits behind an earlier event for its table");
            held.extend(tables);
            continue;
        }
        if waiting(&parts.waits, &m.message.id) {
            held.extend(tables);
            continue;
        }
        let handled = handle(&m.message, &parts.state, &parts.supervisor).await;
        // Redis down or the table between owners says nothing of the lock:
        // the pause and the problem stay until the message is settled.
        if !matches!(
            handled,
            Handled::Blocked { .. } | Handled::Unavailable(_) | Handled::Elsewhere
        ) {
            unblocked(&parts, &m.message.id);
        }
        let outcome = match handled {
            Handled::Done => InboxOutcome::Done,
            Handled::Unavailable(e) => {
                debug!(id = %m.message.id, error = %e, "DDL event waits for Redis");
                waits_otherwise(
                    &parts,
                    &m.message,
                    "Redis (the table's flags cannot be read)",
                );
                held.extend(tables);
                continue;
            }
            Handled::Blocked {
                what,
                event_type,
                error,
            } => {
                blocked(&parts, &m.message.id, &what, event_type, &error);
                held.extend(tables);
                continue;
            }
            Handled::Elsewhere => {
                waits_otherwise(
                    &parts,
                    &m.message,
                    "the table's owner (another instance holds the table, or none does right now)",
                );
                held.extend(tables);
                continue;
            }
            Handled::Failed(e) if m.attempts + 1 < MAX_ATTEMPTS => {
                debug!(id = %m.message.id, error = %e, "DDL event not applied yet; will retry");
                held.extend(tables);
                InboxOutcome::Retry(e)
            }
            Handled::Failed(e) | Handled::Unreadable(e) => park(&parts.state, &m, e).await,
        };
        parts
            .sink
            .inbox_settle(m.message.id.clone(), outcome)
            .await?;
    }
    if !parts.receive {
        // Another instance receives; this one only drains the inbox.
        tokio::time::sleep(parts.config.wait).await;
        return Ok(Received::default());
    }
    let queue = &parts.queue;
    let messages = queue.receive(parts.config.batch, parts.config.wait).await?;
    let mut received = Received::default();
    let mut record = Vec::with_capacity(messages.len());
    for m in messages {
        match m.message_type.as_str() {
            EVENT_NOTIFICATION => {
                received.events = true;
                record.push(m);
            }
            BROKER_ERROR | BROKER_END_DIALOG => {
                if m.message_type == BROKER_ERROR {
                    received.broker_error =
                        Some(m.body.clone().unwrap_or_else(|| "no error text".into()));
                }
                telemetry::ddl_event("other", "ignored");
                if let Err(e) = queue.end_conversation(&m.conversation).await {
                    let _ = queue.rollback().await;
                    return Err(e);
                }
            }
            other => {
                info!(message_type = %other, "DDL queue message of an unknown type; acknowledged");
                telemetry::ddl_event("other", "ignored");
            }
        }
    }
    if !record.is_empty() {
        // Durable before the receive commits: a failure here returns the
        // messages to the queue (the next round first needs a working inbox).
        if let Err(e) = parts.sink.inbox_add(record).await {
            let _ = queue.rollback().await;
            return Err(e);
        }
    }
    // Ends the receive transaction, with or without messages.
    queue.commit().await?;
    Ok(received)
}

/// The tables (old and new names) a recorded message changes; none when
/// it is not a schema change or cannot be read.
fn tables_of(m: &QueueMessage) -> Vec<TableId> {
    match m.body.as_deref().map(parse_event) {
        Some(Ok(DdlEvent::Change(c))) => c.tables().into_iter().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Whether inbox message `id` waits out its pause after a blocked apply.
fn waiting(waits: &Waits, id: &str) -> bool {
    let waits = waits.lock().unwrap_or_else(|e| e.into_inner());
    waits
        .get(id)
        .is_some_and(|w| tokio::time::Instant::now() < w.next)
}

/// Inbox message `id`'s apply gave up behind a lock on the replica: it
/// waits a pause that doubles each time, counted and shown on the page.
fn blocked(parts: &Parts, id: &str, what: &str, event_type: &'static str, error: &str) {
    let backoff = parts.config.blocked;
    let wait = {
        let mut waits = parts.waits.lock().unwrap_or_else(|e| e.into_inner());
        let delay = waits
            .get(id)
            .map_or(backoff.first, |w| (w.delay * 2).min(backoff.max));
        let wait = Wait {
            next: tokio::time::Instant::now() + delay,
            delay,
            attempts: waits.get(id).map_or(0, |w| w.attempts) + 1,
            blocked_at: crate::clock::now_millis(),
        };
        waits.insert(id.to_string(), wait);
        wait
    };
    telemetry::ddl_event(event_type, "blocked");
    warn!(%id, %error, attempts = wait.attempts, retry_in_secs = wait.delay.as_secs(), "{what} waits for a lock on the replica table; not counted as a failed attempt, tried again after a pause");
    parts.board.set_ddl_blocked(
        id,
        Some(format!(
            "{what} waits for a lock on the replica table (a long-running reader or an open \
             transaction there holds it): {} attempt(s) gave up after the lock timeout, next \
             in {} s; while it waits, each attempt holds every table's replica writes for up \
             to the lock timeout. Last error: {error}",
            wait.attempts,
            wait.delay.as_secs()
        )),
    );
}

/// Inbox message `m`, which gave up behind a lock before, now waits for
/// something else (`on`: the table's owner, or Redis): the page says so,
/// with when the lock last stopped it, instead of a lock wait and a next
/// attempt that no longer hold. Nothing for a message never blocked.
fn waits_otherwise(parts: &Parts, m: &QueueMessage, on: &str) {
    let wait = parts
        .waits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&m.id)
        .copied();
    let Some(wait) = wait else {
        return;
    };
    let what = match m.body.as_deref().map(parse_event) {
        Some(Ok(DdlEvent::Change(c))) => describe(&c),
        _ => "a DDL event".to_string(),
    };
    parts.board.set_ddl_blocked(
        &m.id,
        Some(format!(
            "{what} waits for {on}; before that, {} attempt(s) gave up after the lock timeout \
             behind a lock on the replica table, the last at {}",
            wait.attempts,
            utc(wait.blocked_at)
        )),
    );
}

/// Unix milliseconds as `2026-12-03 15:04:05 UTC`.
fn utc(millis: u64) -> String {
    let secs = millis / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// What a change is, for the page: "the rename of dbo.A to dbo.B".
fn describe(change: &crate::ddl::SchemaChange) -> String {
    match change {
        crate::ddl::SchemaChange::Columns { table, .. } => format!("the column change of {table}"),
        crate::ddl::SchemaChange::RenameColumn { table, from, to } => {
            format!("the rename of column {from} of {table} to {to}")
        }
        crate::ddl::SchemaChange::RenameTable { from, to } => {
            format!("the rename of {from} to {to}")
        }
    }
}

/// Inbox message `id` was applied or failed otherwise (it is settled now):
/// its pause and its problem on the page end.
fn unblocked(parts: &Parts, id: &str) {
    let was = parts
        .waits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id);
    if was.is_some() {
        info!(%id, "DDL event no longer waits for a lock on the replica");
        parts.board.set_ddl_blocked(id, None);
    }
}

/// Drops the pauses (and page problems) of messages no longer pending
/// (settled by another instance, or parked).
fn forget_settled(parts: &Parts, pending: &[InboxMessage]) {
    let ids: HashSet<&str> = pending.iter().map(|m| m.message.id.as_str()).collect();
    parts
        .waits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|id, _| ids.contains(id.as_str()));
    parts.board.retain_ddl_blocked(&ids);
}

async fn handle(
    m: &QueueMessage,
    state: &Arc<dyn StateStore>,
    supervisor: &Addr<SupervisorActor>,
) -> Handled {
    let Some(body) = m.body.as_deref() else {
        return Handled::Unreadable("the event notification has an empty body".into());
    };
    let change = match parse_event(body) {
        Ok(DdlEvent::Change(c)) => c,
        Ok(DdlEvent::Ignored { event_type, reason }) => {
            debug!(%event_type, %reason, "DDL event ignored");
            telemetry::ddl_event(&event_type, "ignored");
            return Handled::Done;
        }
        Err(e) => return Handled::Unreadable(e.to_string()),
    };
    let event_type = match &change {
        crate::ddl::SchemaChange::Columns { .. } => "ALTER_TABLE",
        _ => "RENAME",
    };
    let table = change.table().clone();
    let what = describe(&change);
    match state.flags(&table).await {
        Ok(flags) if !flags.enabled => {
            debug!(table = %table, "DDL event for a table that is not enabled; ignored");
            telemetry::ddl_event(event_type, "ignored");
            return Handled::Done;
        }
        Ok(_) => {}
        Err(e) => return Handled::Unavailable(format!("could not read the flags of {table}: {e}")),
    }
    match supervisor.send(RouteSchemaChange(change)).await {
        Ok(Ok(Routed::Applied)) => {
            telemetry::ddl_event(event_type, "applied");
            Handled::Done
        }
        Ok(Ok(Routed::NotTracked)) => {
            telemetry::ddl_event(event_type, "ignored");
            Handled::Done
        }
        Ok(Ok(Routed::Elsewhere)) => Handled::Elsewhere,
        Ok(Err(e @ crate::error::Error::Blocked { .. })) => Handled::Blocked {
            what,
            event_type,
            error: e.to_string(),
        },
        Ok(Err(e)) => Handled::Failed(e.to_string()),
        Err(e) => Handled::Failed(format!("supervisor unavailable: {e}")),
    }
}

/// Parks a message: it stays in the inbox as parked (durable), and a copy
/// goes to `mssql_sync:ddl_failed` for operators when Redis answers.
async fn park(state: &Arc<dyn StateStore>, m: &InboxMessage, reason: String) -> InboxOutcome {
    let body = m.message.body.clone().unwrap_or_default();
    let entry = ParkedDdl {
        message_type: m.message.message_type.clone(),
        body: body.clone(),
        error: reason.clone(),
        parked_at: crate::clock::now_millis(),
    };
    let event_type = parse_event(&body)
        .ok()
        .map(|e| match e {
            DdlEvent::Change(crate::ddl::SchemaChange::Columns { .. }) => "ALTER_TABLE",
            DdlEvent::Change(_) => "RENAME",
            DdlEvent::Ignored { .. } => "other",
        })
        .unwrap_or("unparsed");
    telemetry::ddl_event(event_type, "parked");
    match state.park_ddl(&entry).await {
        Ok(()) => {
            warn!(id = %m.message.id, error = %reason, "DDL message could not be applied; parked in mssql_sync:ddl_failed and [ctsync].[ddl_inbox]")
        }
        Err(e) => {
            error!(id = %m.message.id, error = %reason, park_error = %e, "DDL message could not be applied; parked in [ctsync].[ddl_inbox] on the replica (Redis did not answer)")
        }
    }
    InboxOutcome::Parked(reason)
}

impl Actor for DdlListenerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.schedule(Duration::ZERO, ctx);
    }
}

impl Supervised for DdlListenerActor {}

/// Stops receiving; answered once the batch in flight is committed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopListening;

impl Handler<StopListening> for DdlListenerActor {
    type Result = ();

    fn handle(&mut self, _: StopListening, _ctx: &mut Self::Context) {
        self.stopped = true;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_unix_milliseconds() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc(1_796_310_245_999), "2026-12-03 15:04:05 UTC");
    }
}
