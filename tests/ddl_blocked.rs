//! A table rename blocked behind a reader's lock on the replica, on a
//! paused clock: the inbox tries it again after pauses that double (each
//! attempt holds every table's replica writes for up to the lock timeout),
//! counts each blocked attempt and shows the wait on the status board
//! until the rename applies.

mod support;

use std::time::Duration;

use support::paused_ddl::{paused_system, until, Users};

const RENAME: &str =
    "<EVENT_INSTANCE><EventType>RENAME</EventType><DatabaseName>testct</DatabaseName>\
     <SchemaName>dbo</SchemaName><ObjectName>User</ObjectName><ObjectType>TABLE</ObjectType>\
     <NewObjectName>Member</NewObjectName></EVENT_INSTANCE>";

/// `ctsync_ddl_events_total{event_type="RENAME",result="blocked"}`.
fn blocked_metric(handle: &metrics_exporter_prometheus::PrometheusHandle) -> f64 {
    handle
        .render()
        .lines()
        .filter(|l| {
            l.starts_with(ctsync_actors::telemetry::DDL_EVENTS)
                && l.contains("event_type=\"RENAME\"")
                && l.contains("result=\"blocked\"")
        })
        .find_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Sleeps (simulated time) until `at`.
async fn at(at: tokio::time::Instant) {
    tokio::time::sleep_until(at).await;
}

#[test]
fn a_blocked_rename_backs_off_is_counted_and_shown_until_it_applies() {
    let metrics = ctsync::telemetry::install().expect("recorder");
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

        // Four lock timeouts, then the reader lets go.
        let timeouts = 4;
        replica.hold_lock_by_hand(
            &users_id,
            ctsync_actors::memory::SCHEMA_LOCK_TIMEOUT * timeouts + Duration::from_secs(1),
        );
        primary.rename_table(&users_id, &member);
        queue.push_event(RENAME);
        until(Duration::from_secs(60), "the first attempt", || {
            replica.lock_timeouts(&users_id) == 1
        })
        .await;
        // Its answer reaches the listener through the actors.
        until(Duration::from_millis(500), "the problem shown", || {
            run.board.ddl_problem().is_some()
        })
        .await;
        let first = tokio::time::Instant::now();
        let problem = run.board.ddl_problem().unwrap_or_default();
        assert!(
            problem
                .contains("the rename of dbo.User to dbo.Member waits for a lock on the replica"),
            "{problem}"
        );
        assert_eq!(blocked_metric(&metrics), 1.0);
        // Attempts at 0, 30, 90 and 210 s give up; the one at 450 s applies.
        let s = Duration::from_secs;
        for (when, attempts) in [
            (28, 1),
            (32, 2),
            (88, 2),
            (92, 3),
            (208, 3),
            (212, 4),
            (448, 4),
        ] {
            at(first + s(when)).await;
            assert_eq!(
                replica.lock_timeouts(&users_id),
                attempts,
                "attempts by {when} s after the first"
            );
            assert_eq!(blocked_metric(&metrics), attempts as f64, "at {when} s");
            assert!(run.board.ddl_problem().is_some(), "shown at {when} s");
            assert!(replica.has_table(&users_id), "not renamed at {when} s");
        }
        at(first + s(452)).await;
        until(s(10), "renamed", || {
            replica.has_table(&member)
                && state.get("mssql_sync:enabled:Member").as_deref() == Some("true")
        })
        .await;
        assert_eq!(replica.lock_timeouts(&users_id), 4);
        assert_eq!(run.board.ddl_problem(), None, "the problem clears");
        assert!(replica.inbox_parked().is_empty(), "never parked");
        System::current().stop();
    });
}

use actix::System;
