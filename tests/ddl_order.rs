//! DDL events for one table apply in the order they happened: a column
//! rename on a table's new name waits in the inbox behind the table rename
//! that is blocked behind a reader's lock on the replica (paused clock),
//! and both apply, in order, once the reader lets go.

mod support;

use std::time::Duration;

use actix::System;
use ctsync_actors::memory::faults::FaultPlan;
use ctsync_actors::memory::MemoryReplica;
use ctsync_actors::model::TableId;
use ctsync_actors::status::TableState;
use support::paused_ddl::{paused_system, rename_column_event, rename_table_event, until, Users};

fn column_names(replica: &MemoryReplica, id: &TableId) -> Vec<String> {
    replica
        .schema(id)
        .map(|s| s.columns.into_iter().map(|c| c.name).collect())
        .unwrap_or_default()
}

#[test]
fn a_column_rename_waits_behind_the_blocked_rename_of_its_table() {
    let system = paused_system();
    system.block_on(async move {
        let Users {
            primary,
            replica,
            state,
            queue,
            users_id,
            member,
            run,
        } = Users::loaded(None).await;

        // Two lock timeouts, then the reader lets go (the retries come
        // 30 s and 90 s after the first attempt).
        replica.hold_lock_by_hand(
            &users_id,
            ctsync_actors::memory::SCHEMA_LOCK_TIMEOUT * 2 + Duration::from_secs(1),
        );
        primary.rename_table(&users_id, &member);
        queue.push_event(&rename_table_event("User", "Member"));
        primary.rename_column(&member, "Name", "FullName");
        queue.push_event(&rename_column_event("Member", "Name", "FullName"));
        until(Duration::from_secs(60), "the first attempt", || {
            replica.lock_timeouts(&users_id) == 1
        })
        .await;
        // Both wait: the column rename is neither applied nor settled as
        // ignored while the table rename it follows waits.
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(replica.inbox_len(), 2, "both events still pending");
        assert!(replica.has_table(&users_id), "not renamed yet");

        until(Duration::from_secs(200), "renamed", || {
            replica.has_table(&member)
                && state.get("mssql_sync:enabled:Member").as_deref() == Some("true")
        })
        .await;
        until(Duration::from_secs(30), "the column renamed", || {
            column_names(&replica, &member).contains(&"FullName".to_string())
        })
        .await;
        assert_eq!(
            column_names(&replica, &member),
            ["Id", "FullName", "Email"],
            "the renamed table with the renamed column"
        );
        assert_eq!(replica.rows(&member).len(), 3, "data kept");
        until(Duration::from_secs(30), "the inbox drained", || {
            replica.inbox_len() == 0
        })
        .await;
        assert!(replica.inbox_parked().is_empty(), "nothing parked");
        assert_eq!(replica.lock_timeouts(&users_id), 2);
        until(Duration::from_secs(30), "syncing again", || {
            run.board
                .get("Member")
                .is_some_and(|s| s.state == TableState::Incremental)
        })
        .await;
        assert_eq!(run.board.ddl_problem(), None, "no problem left");
        System::current().stop();
    });
}

/// A blocked rename that then waits for Redis says so on the page, with
/// when the lock last stopped it, not a lock wait with a next attempt.
#[test]
fn a_blocked_rename_that_waits_for_redis_says_so() {
    let plan = FaultPlan::new();
    let system = paused_system();
    system.block_on(async move {
        let Users {
            primary,
            replica,
            state,
            queue,
            users_id,
            member,
            run,
        } = Users::loaded(Some(&plan)).await;

        // One lock timeout; the next attempt would apply.
        replica.hold_lock_by_hand(
            &users_id,
            ctsync_actors::memory::SCHEMA_LOCK_TIMEOUT + Duration::from_secs(1),
        );
        primary.rename_table(&users_id, &member);
        queue.push_event(&rename_table_event("User", "Member"));
        until(Duration::from_secs(60), "the first attempt", || {
            replica.lock_timeouts(&users_id) == 1
        })
        .await;
        until(Duration::from_millis(500), "the lock wait shown", || {
            run.board
                .ddl_problem()
                .is_some_and(|p| p.contains("waits for a lock on the replica table"))
        })
        .await;

        plan.set_state_down(true);
        until(Duration::from_secs(60), "the wait for Redis shown", || {
            run.board
                .ddl_problem()
                .is_some_and(|p| p.contains("waits for Redis"))
        })
        .await;
        let problem = run.board.ddl_problem().unwrap_or_default();
        assert!(
            problem.contains("the rename of dbo.User to dbo.Member waits for Redis"),
            "{problem}"
        );
        assert!(!problem.contains("next in"), "{problem}");
        assert!(
            !problem.contains("waits for a lock"),
            "the lock is not what it waits for now: {problem}"
        );
        assert!(
            problem.contains("1 attempt(s) gave up") && problem.contains(" UTC"),
            "when the lock last stopped it: {problem}"
        );
        assert!(
            replica.has_table(&users_id),
            "not renamed while Redis is down"
        );

        plan.set_state_down(false);
        until(Duration::from_secs(120), "renamed", || {
            replica.has_table(&member)
                && state.get("mssql_sync:enabled:Member").as_deref() == Some("true")
        })
        .await;
        until(Duration::from_secs(30), "the problem clears", || {
            run.board.ddl_problem().is_none()
        })
        .await;
        assert!(replica.inbox_parked().is_empty(), "nothing parked");
        System::current().stop();
    });
}
