//! A port call whose future is dropped mid-way (the core's call limit, a
//! stop) in the SQL Server adapter, over the recording session: the pooled
//! connection it was using is closed, never handed to the next caller with
//! an abandoned answer on its stream or a transaction still open (closing
//! it makes the server roll that transaction back). Before, the lease went
//! back to the pool as it was.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ctsync::mssql::recording::{Recorder, Reply, Request};
use ctsync::mssql::sql;
use ctsync::mssql::{MssqlDdlQueue, MssqlPrimary, MssqlReplica, Pool};
use ctsync_actors::fence::Claim;
use ctsync_actors::model::ChangeBatch;
use ctsync_actors::ports::{DdlQueue, Primary, Replica};
use support::fixtures::*;

/// A script that hangs the first request `hang` picks, once, and answers
/// the others with `answer`.
fn hang_once(
    hang: impl Fn(&Request) -> bool + Send + Sync + 'static,
    answer: impl Fn(&Request) -> Option<Reply> + Send + Sync + 'static,
) -> Recorder {
    let hung = AtomicBool::new(false);
    Recorder::new(move |r: &Request| {
        if hang(r) && !hung.swap(true, Ordering::SeqCst) {
            return Some(Reply::Hang);
        }
        answer(r)
    })
}

/// The session of the request that hung, after checking that it was
/// closed and that nothing was sent on it after it hung.
fn hung_session(recorder: &Recorder, hung: impl Fn(&Request) -> bool) -> usize {
    let log = recorder.log();
    let at = log.iter().position(hung).expect("the request that hung");
    let session = log[at].session;
    assert!(
        recorder.closed().contains(&session),
        "session {session} still open after its request was dropped: {:?}",
        recorder.closed()
    );
    let reused: Vec<&Request> = log[at + 1..]
        .iter()
        .filter(|r| r.session == session)
        .collect();
    assert!(
        reused.is_empty(),
        "sent on the abandoned session: {reused:#?}"
    );
    session
}

/// A read whose answer never comes, dropped: the next read on the
/// one-connection pool opens a new session.
#[tokio::test(start_paused = true)]
async fn a_request_dropped_mid_way_closes_its_session() {
    let is_read = |r: &Request| r.sql == sql::MIN_VALID_VERSION;
    let recorder = hang_once(is_read, |_| None);
    let primary = MssqlPrimary::new(Pool::with_connector(Arc::new(recorder.clone()), 1));
    let users = user_table();
    let dropped =
        tokio::time::timeout(Duration::from_secs(5), primary.min_valid_version(&users.id)).await;
    assert!(dropped.is_err(), "the hung read was dropped: {dropped:?}");
    primary
        .min_valid_version(&users.id)
        .await
        .expect("the next read is answered");
    let old = hung_session(&recorder, is_read);
    let log = recorder.log();
    let last = log.last().expect("requests");
    assert_eq!(last.sql, sql::MIN_VALID_VERSION);
    assert_ne!(last.session, old, "the next read reused the old session");
}

/// A replica write dropped between its BEGIN and its COMMIT (a statement
/// inside the transaction never answers): the connection is closed, so the
/// server rolls the transaction back, and the next caller gets a new one,
/// not a session inside the abandoned transaction.
#[tokio::test(start_paused = true)]
async fn a_transaction_dropped_before_its_commit_closes_its_session() {
    let fenced = Arc::new(AtomicBool::new(false));
    let seen = fenced.clone();
    // The first statement after the fence check (inside the transaction).
    let after_fence = move |r: &Request| {
        if r.sql == sql::CHECK_FENCE {
            seen.store(true, Ordering::SeqCst);
            return false;
        }
        seen.load(Ordering::SeqCst)
    };
    let recorder = hang_once(after_fence, |r| {
        (r.sql == sql::CHECK_FENCE).then_some(Reply::Count(1))
    });
    let users = user_table();
    recorder.describe(&users);
    let replica = MssqlReplica::new(Pool::with_connector(Arc::new(recorder.clone()), 1));
    let batch = ChangeBatch {
        table: users.id.clone(),
        keys: vec![user_key(1)],
        rows: vec![user(1, "a")],
        version: Some(5),
        backlog: None,
    };
    let dropped = tokio::time::timeout(
        Duration::from_secs(5),
        replica.apply_changes(&users, &batch, &Claim::new("a", 1)),
    )
    .await;
    assert!(dropped.is_err(), "the hung write was dropped: {dropped:?}");
    replica
        .record(&users.id)
        .await
        .expect("the next call is answered");

    let log = recorder.log();
    let begin = log
        .iter()
        .position(|r| r.sql == sql::BEGIN)
        .expect("the write began its transaction");
    let old = log[begin].session;
    assert!(
        !log[begin..]
            .iter()
            .any(|r| r.session == old && r.sql.contains("COMMIT")),
        "the abandoned transaction was never committed: {:#?}",
        &log[begin..]
    );
    let hung = log
        .iter()
        .skip_while(|r| r.sql != sql::CHECK_FENCE)
        .nth(1)
        .expect("the statement that hung")
        .clone();
    assert_eq!(hung_session(&recorder, |r| *r == hung), old);
    assert_ne!(log.last().map(|r| r.session), Some(old));
}

/// A receive dropped during its WAITFOR (its receive transaction open on
/// the queue's own connection): the connection is closed, so the server
/// rolls the receive back, and the next receive starts on a new session.
#[tokio::test(start_paused = true)]
async fn a_receive_dropped_while_it_waits_closes_its_session() {
    let is_receive = |r: &Request| r.sql.contains("RECEIVE TOP");
    let recorder = hang_once(is_receive, |_| None);
    let queue = MssqlDdlQueue::with_connector(Arc::new(recorder.clone()), "dbo.SyncDDLQueue");
    let dropped = tokio::time::timeout(
        Duration::from_secs(65),
        queue.receive(10, Duration::from_secs(5)),
    )
    .await;
    assert!(
        dropped.is_err(),
        "the hung receive was dropped: {dropped:?}"
    );
    let received = queue
        .receive(10, Duration::from_secs(5))
        .await
        .expect("the next receive is answered");
    assert!(received.is_empty());
    queue.commit().await.expect("commit");
    let old = hung_session(&recorder, is_receive);
    assert_ne!(recorder.log().last().map(|r| r.session), Some(old));
}

/// A lease that ends normally keeps its session: the change set's pages
/// and the next call reuse it (no connection is closed for nothing).
#[tokio::test]
async fn a_call_that_answered_keeps_its_session() {
    let recorder = Recorder::new(|_: &Request| None);
    let primary = MssqlPrimary::new(Pool::with_connector(Arc::new(recorder.clone()), 1));
    let users = user_table();
    primary.min_valid_version(&users.id).await.expect("read");
    primary.min_valid_version(&users.id).await.expect("read");
    let replica = MssqlReplica::new(Pool::with_connector(Arc::new(recorder.clone()), 1));
    replica.record(&users.id).await.expect("record");
    replica.record(&users.id).await.expect("record");
    assert!(recorder.closed().is_empty(), "{:?}", recorder.closed());
    let sessions: std::collections::BTreeSet<usize> =
        recorder.log().iter().map(|r| r.session).collect();
    assert_eq!(sessions.len(), 2, "one per pool: {sessions:?}");
}

/// A lease dropped with its transaction open and no request in flight
/// (its caller dropped between two statements) closes its session; one
/// whose transaction ended goes back to the pool. (The adapter marks its
/// transactions with `pool::begin_transaction`/`end_transaction`, which do
/// what this test does by hand.)
#[tokio::test]
async fn a_lease_dropped_inside_its_transaction_closes_its_session() {
    let recorder = Recorder::new(|_: &Request| None);
    let pool = Pool::with_connector(Arc::new(recorder.clone()), 1);
    async fn send(lease: &mut ctsync::mssql::conn::Lease<'_>, text: &str) {
        lease
            .session()
            .expect("open")
            .batch(text)
            .await
            .expect("answered");
        lease.answered();
    }
    {
        let mut lease = pool.lease().await.expect("lease");
        lease.transaction_begun();
        send(&mut lease, sql::BEGIN).await;
        send(&mut lease, sql::COMMIT).await;
        lease.transaction_ended();
    }
    assert!(recorder.closed().is_empty(), "{:?}", recorder.closed());
    {
        let mut lease = pool.lease().await.expect("lease");
        lease.transaction_begun();
        send(&mut lease, sql::BEGIN).await;
    }
    assert_eq!(recorder.closed(), vec![1]);
    let mut lease = pool.lease().await.expect("lease");
    send(&mut lease, "SELECT 1;").await;
    let sessions: Vec<usize> = recorder.log().iter().map(|r| r.session).collect();
    assert_eq!(sessions, vec![1, 1, 1, 2]);
}
