//! The core's call limits (`ports::limits`) around the in-memory ports
//! with hung calls injected: a call that never answers ends at its limit
//! as a transient error naming it, and a receive-transaction call that
//! timed out leaves no receive open (its messages return to the queue).

mod support;

use std::sync::Arc;
use std::time::Duration;

use ctsync_actors::error::ErrorKind;
use ctsync_actors::memory::faults::{Fault, FaultPlan, Faulty, Site};
use ctsync_actors::memory::{MemoryDdlQueue, MemoryPrimary};
use ctsync_actors::ports::{CallLimits, DdlQueue, Guarded, Primary};
use support::fixtures::{user, user_table};

const LIMIT: Duration = Duration::from_secs(2);

/// A receive that ran (its messages taken) and whose answer never came:
/// at its limit the core rolls the receive back, so the messages are
/// delivered again and the next receive is not refused as "already open".
#[tokio::test(start_paused = true)]
async fn a_receive_hung_after_its_effect_is_rolled_back_at_its_limit() {
    let queue = Arc::new(MemoryDdlQueue::new());
    queue.push_event("<EVENT_INSTANCE/>");
    let plan = FaultPlan::new();
    plan.push(Site::QueueReceive, Fault::Hang { effect: true });
    let inner: Arc<dyn DdlQueue> = queue.clone();
    let faulty: Arc<dyn DdlQueue> = Arc::new(Faulty::new(inner, plan.clone()));
    let limited = Guarded::new(faulty, CallLimits::all(LIMIT));
    let wait = Duration::from_millis(20);
    let started = tokio::time::Instant::now();
    let e = limited
        .receive(5, wait)
        .await
        .expect_err("it never answers");
    assert_eq!(started.elapsed(), LIMIT + wait, "the receive's limit");
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(
        e.to_string()
            .contains("the DDL queue did not answer receive"),
        "{e}"
    );
    assert_eq!(queue.rollbacks(), 1, "rolled back");
    assert_eq!(
        plan.injected().get(&(Site::QueueReceive, "hang_after")),
        Some(&1)
    );
    let again = limited.receive(5, wait).await.expect("delivered again");
    assert_eq!(again.len(), 1);
    limited.commit().await.expect("commit");
    assert_eq!(queue.pending(), 0);
}

/// A change page that never answers ends at the page's limit, naming the
/// table; the set's open met its own limit (the change-set open's).
#[tokio::test(start_paused = true)]
async fn a_hung_change_page_ends_at_its_limit_naming_the_table() {
    let primary = Arc::new(MemoryPrimary::new());
    let users = user_table();
    primary.create_table(users.clone(), true);
    let since = primary.version();
    primary.upsert(&users.id, user(1, "a"));
    let plan = FaultPlan::new();
    let inner: Arc<dyn Primary> = primary.clone();
    let faulty: Arc<dyn Primary> = Arc::new(Faulty::new(inner, plan.clone()));
    let mut limits = CallLimits::all(LIMIT);
    limits.change_page = Duration::from_secs(7);
    let limited = Guarded::new(faulty, limits);
    let mut set = limited
        .open_changes(&users, since, None)
        .await
        .expect("open");
    plan.push(Site::PrimaryChanges, Fault::Hang { effect: false });
    let started = tokio::time::Instant::now();
    let e = set
        .next_page(&users, 10)
        .await
        .expect_err("it never answers");
    assert_eq!(started.elapsed(), Duration::from_secs(7));
    let text = e.to_string();
    for part in ["the primary", "next_page", "dbo.User", "7s"] {
        assert!(text.contains(part), "{part} in {text}");
    }
}
