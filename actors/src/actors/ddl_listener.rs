//! DdlListenerActor: receives DDL events from the Service Broker queue in a
//! transaction, turns each into a schema change for its table's actor, and
//! always commits: a message that cannot be applied is parked in
//! `mssql_sync:ddl_failed` (with its XML and the error), never rolled back,
//! so poison-message detection can never disable the queue.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::{debug, error, info, warn};

use super::supervisor::{RouteSchemaChange, SupervisorActor};
use crate::ddl::{parse_event, DdlEvent, ParkedDdl, EVENT_NOTIFICATION};
use crate::ports::{DdlQueue, QueueMessage, StateStore};
use crate::telemetry;

/// How the listener waits and retries.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// `WAITFOR (RECEIVE …), TIMEOUT` of one receive.
    pub wait: Duration,
    pub batch: usize,
    /// Pause after a failed receive (queue or primary unreachable).
    pub retry_delay: Duration,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(5),
            batch: 10,
            retry_delay: Duration::from_secs(5),
        }
    }
}

pub struct DdlListenerActor {
    queue: Arc<dyn DdlQueue>,
    state: Arc<dyn StateStore>,
    supervisor: Addr<SupervisorActor>,
    config: ListenerConfig,
    stopped: bool,
    /// The last receive error, to log each distinct one once.
    failing: Option<String>,
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    Applied,
    Ignored,
    Parked,
}

impl DdlListenerActor {
    pub fn new(
        queue: Arc<dyn DdlQueue>,
        state: Arc<dyn StateStore>,
        supervisor: Addr<SupervisorActor>,
        config: ListenerConfig,
    ) -> Self {
        Self {
            queue,
            state,
            supervisor,
            config,
            stopped: false,
            failing: None,
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
        let (queue, state, supervisor, config) = (
            self.queue.clone(),
            self.state.clone(),
            self.supervisor.clone(),
            self.config.clone(),
        );
        let work = async move {
            let messages = queue.receive(config.batch, config.wait).await?;
            for m in &messages {
                handle(m, &state, &supervisor).await;
            }
            // Ends the receive transaction, with or without messages.
            queue.commit().await?;
            Ok::<usize, crate::error::Error>(messages.len())
        };
        ctx.wait(work.into_actor(self).map(|result, act, ctx| match result {
            Ok(_) => {
                if act.failing.take().is_some() {
                    info!("receiving from the DDL queue works again");
                }
                act.schedule(Duration::ZERO, ctx)
            }
            Err(e) => {
                telemetry::error("ddl_listener");
                let message = e.to_string();
                // Said once per distinct error, not every few seconds.
                if act.failing.as_deref() != Some(message.as_str()) {
                    warn!(error = %message, "receiving from the DDL queue failed; retrying every few seconds");
                } else {
                    debug!(error = %message, "receiving from the DDL queue still fails");
                }
                act.failing = Some(message);
                act.schedule(act.config.retry_delay, ctx);
            }
        }));
    }
}

async fn handle(
    m: &QueueMessage,
    state: &Arc<dyn StateStore>,
    supervisor: &Addr<SupervisorActor>,
) -> Handled {
    if m.message_type != EVENT_NOTIFICATION {
        // EndDialog / Error messages of the notification's conversation.
        info!(message_type = %m.message_type, "DDL queue message that is not an event; acknowledged");
        telemetry::ddl_event("other", "ignored");
        return Handled::Ignored;
    }
    let Some(body) = m.body.as_deref() else {
        return park(
            state,
            m,
            "the event notification has an empty body".into(),
            "unparsed",
        )
        .await;
    };
    let change = match parse_event(body) {
        Ok(DdlEvent::Change(c)) => c,
        Ok(DdlEvent::Ignored { event_type, reason }) => {
            debug!(%event_type, %reason, "DDL event ignored");
            telemetry::ddl_event(&event_type, "ignored");
            return Handled::Ignored;
        }
        Err(e) => return park(state, m, e.to_string(), "unparsed").await,
    };
    let event_type = match &change {
        crate::ddl::SchemaChange::Columns { .. } => "ALTER_TABLE",
        _ => "RENAME",
    };
    let table = change.table().clone();
    match state.flags(&table).await {
        Ok(flags) if !flags.enabled => {
            debug!(table = %table, "DDL event for a table that is not enabled; ignored");
            telemetry::ddl_event(event_type, "ignored");
            return Handled::Ignored;
        }
        Ok(_) => {}
        Err(e) => {
            return park(
                state,
                m,
                format!("could not read the flags of {table}: {e}"),
                event_type,
            )
            .await
        }
    }
    match supervisor.send(RouteSchemaChange(change)).await {
        Ok(Ok(())) => {
            telemetry::ddl_event(event_type, "applied");
            Handled::Applied
        }
        Ok(Err(e)) => park(state, m, e.to_string(), event_type).await,
        Err(e) => park(state, m, format!("supervisor unavailable: {e}"), event_type).await,
    }
}

async fn park(
    state: &Arc<dyn StateStore>,
    m: &QueueMessage,
    reason: String,
    event_type: &str,
) -> Handled {
    let body = m.body.clone().unwrap_or_default();
    let entry = ParkedDdl {
        message_type: m.message_type.clone(),
        body: body.clone(),
        error: reason.clone(),
        parked_at: crate::sync::now_millis(),
    };
    telemetry::ddl_event(event_type, "parked");
    for attempt in 1..=3u64 {
        match state.park_ddl(&entry).await {
            Ok(()) => {
                warn!(error = %reason, "DDL message could not be applied; parked in mssql_sync:ddl_failed");
                return Handled::Parked;
            }
            Err(e) if attempt < 3 => {
                warn!(error = %e, attempt, "parking a DDL message failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => {
                // Last resort: the log keeps the message; the queue must move on.
                error!(error = %reason, park_error = %e, message = %body, "DDL message could not be applied nor parked; it is logged here");
            }
        }
    }
    Handled::Parked
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
