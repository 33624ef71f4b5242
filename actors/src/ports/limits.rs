//! The core's call limits: how long each kind of port call may go without
//! an answer before the core abandons it (drops the adapter's future) and
//! the caller gets a transient error. Applied around every port in
//! `actors::start`, so a hung server, network or double never holds a
//! table, the sink or the listener for ever. Adapters keep their own
//! transport timeouts underneath (login, keepalive, tiberius's command
//! timeout, the Redis client's response timeout).

use std::future::Future;
use std::time::Duration;

use super::calls::{Call, Guard, Site};
use crate::error::{Error, Result};

/// A limit per kind of port call. Defaults are the limits the adapters
/// put on the same requests before the core had its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Catalog, versions, counts and the scout on the primary (the SQL
    /// Server adapter's 60 s `META_TIMEOUT` for these small reads).
    pub primary_meta: Duration,
    /// A full-load page (tiberius's 600 s command timeout: LOB-heavy pages).
    pub primary_page: Duration,
    /// A change set's open: its copy, which `CTSYNC_CHANGE_COPY_TIMEOUT_SECS`
    /// bounds (600 s), and a minute for the rest (the session's table, a
    /// free connection), so the adapter's own, clearer copy timeout comes
    /// first.
    pub change_open: Duration,
    /// A page read from an open change set (the 600 s command timeout).
    pub change_page: Duration,
    /// A replica write transaction (the 600 s command timeout an ALTER
    /// COLUMN on a large table needs).
    pub replica_write: Duration,
    /// A replica read (the 600 s command timeout).
    pub replica_read: Duration,
    /// A state store call: two attempts of the Redis client's 5 s response
    /// timeout, the pause between them and its 2 s connect.
    pub state: Duration,
    /// A DDL queue receive, on top of its `WAITFOR … TIMEOUT` wait (a
    /// minute, as for other small requests).
    pub queue_receive: Duration,
    /// Ending a conversation, committing or rolling back the receive (the
    /// 600 s command timeout).
    pub queue_commit: Duration,
}

const META: Duration = Duration::from_secs(60);
const COMMAND: Duration = Duration::from_secs(600);

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            primary_meta: META,
            primary_page: COMMAND,
            change_open: COMMAND + META,
            change_page: COMMAND,
            replica_write: COMMAND,
            replica_read: COMMAND,
            state: Duration::from_secs(2 * 5 + 2) + Duration::from_millis(200),
            queue_receive: META,
            queue_commit: COMMAND,
        }
    }
}

impl CallLimits {
    /// Every kind of call limited to `limit` (tests and the simulation).
    pub fn all(limit: Duration) -> Self {
        Self {
            primary_meta: limit,
            primary_page: limit,
            change_open: limit,
            change_page: limit,
            replica_write: limit,
            replica_read: limit,
            state: limit,
            queue_receive: limit,
            queue_commit: limit,
        }
    }

    /// The change set's open limited to the adapter's copy timeout
    /// (`CTSYNC_CHANGE_COPY_TIMEOUT_SECS`) and a minute.
    pub fn with_change_copy(mut self, copy_timeout: Duration) -> Self {
        self.change_open = copy_timeout + META;
        self
    }

    /// How long `call` may go unanswered.
    pub fn of(&self, call: &Call<'_>) -> Duration {
        let base = match call.site {
            Site::PrimaryMeta => self.primary_meta,
            Site::PrimaryPage => self.primary_page,
            Site::PrimaryChanges if call.method == "open_changes" => self.change_open,
            Site::PrimaryChanges => self.change_page,
            Site::ReplicaWrite | Site::ReplicaBulk => self.replica_write,
            Site::ReplicaRead => self.replica_read,
            Site::StateRead | Site::StateWrite => self.state,
            Site::QueueReceive => self.queue_receive,
            Site::QueueCommit => self.queue_commit,
        };
        base + call.waits
    }
}

impl Guard for CallLimits {
    async fn run<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        request: impl Future<Output = Result<T>> + Send + 'a,
    ) -> Result<T> {
        let limit = self.of(&call);
        match tokio::time::timeout(limit, request).await {
            Ok(answer) => answer,
            Err(_) => {
                let port = call.site.port();
                crate::telemetry::call_timeout(port.label(), call.method);
                let tables = call.tables();
                Err(Error::TimedOut {
                    port: port.to_string(),
                    method: call.method,
                    about: about(&tables),
                    limit,
                })
            }
        }
    }
}

/// The tables a timed-out call was about, as its error names them.
fn about(tables: &[crate::model::TableId]) -> String {
    match tables {
        [] => String::new(),
        [one] => format!(" (table {one})"),
        [first, rest @ ..] => format!(" (tables {first} and {} more)", rest.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TableId;

    fn call<'a>(
        site: Site,
        method: &'static str,
        about: super::super::calls::About<'a>,
    ) -> Call<'a> {
        Call::new(site, method, about)
    }

    #[test]
    fn each_kind_of_call_meets_its_own_limit() {
        let none = |_: &mut dyn FnMut(&TableId) -> bool| false;
        let limits = CallLimits::default().with_change_copy(Duration::from_secs(900));
        let of = |site, method| limits.of(&call(site, method, &none));
        assert_eq!(of(Site::PrimaryMeta, "scout"), Duration::from_secs(60));
        assert_eq!(
            of(Site::PrimaryChanges, "open_changes"),
            Duration::from_secs(960)
        );
        assert_eq!(
            of(Site::PrimaryChanges, "next_page"),
            Duration::from_secs(600)
        );
        assert_eq!(
            of(Site::StateWrite, "heartbeat"),
            Duration::from_millis(12_200)
        );
        let mut receive = call(Site::QueueReceive, "receive", &none);
        receive.waits = Duration::from_secs(5);
        assert_eq!(limits.of(&receive), Duration::from_secs(65));
    }

    /// A call that never answers ends at its limit with a transient error
    /// naming the port, the method, the table and the limit.
    #[tokio::test(start_paused = true)]
    async fn a_hung_call_ends_at_its_limit_as_a_transient_error() {
        let table = TableId::new("sales", "Order");
        let about = |visit: &mut dyn FnMut(&TableId) -> bool| visit(&table);
        let limits = CallLimits::all(Duration::from_secs(3));
        let started = tokio::time::Instant::now();
        let hung = std::future::pending::<Result<()>>();
        let e = limits
            .run(call(Site::ReplicaWrite, "apply_changes", &about), hung)
            .await
            .expect_err("it never answers");
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert_eq!(e.kind(), crate::error::ErrorKind::Transient);
        let text = e.to_string();
        for part in ["the replica", "apply_changes", "sales.Order", "3s"] {
            assert!(text.contains(part), "{part} in {text}");
        }
        let answered = limits
            .run(call(Site::ReplicaWrite, "apply_changes", &about), async {
                Ok(7)
            })
            .await;
        assert_eq!(answered.ok(), Some(7));
    }
}
