//! Stop in seconds, in every state: `ctsync run` with a SQL Server that
//! accepts connections and never answers, and with Redis stopped, exits 0
//! on SIGTERM; the in-process pipeline stops in the middle of a change
//! backlog and continues it on the next start. (A stop mid-load is in
//! `shadow_loads.rs`; the demo's SIGTERM in `.ci/demo-checks.sh`.)
//!
//! Nothing here is a wall-clock bound a busy machine could miss: SIGTERM
//! is sent once the daemon's log and the hung server show it got where the
//! test needs it, and the stop is shown to be the bounded one by what its
//! summary line says it abandoned. The times are printed; the target is
//! 5 s (`PIPELINE_GRACE` + `HTTP_GRACE`); a daemon still running a minute
//! after SIGTERM fails the test.

mod support;

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::daemon::Daemon;
use support::fixtures::*;
use support::{Harness, RedisServer};

fn ctsync() -> std::process::Command {
    support::daemon::clean_command(env!("CARGO_BIN_EXE_ctsync"))
}

use support::daemon::free_addr;

/// A hung "SQL Server" as an ADO `server=tcp:host,port` value, with the
/// connections it has accepted.
fn hung_server() -> (TcpListener, String, Arc<AtomicUsize>) {
    let (listener, addr, accepted) = support::hung::counted_hung_server();
    (listener, format!("{},{}", addr.ip(), addr.port()), accepted)
}

fn start(server: &str, redis_url: &str) -> Daemon {
    start_on(server, redis_url, &free_addr(), &[])
}

fn start_on(server: &str, redis_url: &str, http: &str, env: &[(&str, &str)]) -> Daemon {
    let mut c = ctsync();
    c.arg("run")
        .env(
            "MSSQL_PRIMARY_URL",
            format!("server=tcp:{server};database=testct;user id=sa;password=Hung-Secret9"),
        )
        .env(
            "MSSQL_REPLICA_URL",
            format!("server=tcp:{server};database=testct;user id=sa;password=Hung-Secret9"),
        )
        .env("REDIS_URL", redis_url)
        .env("CTSYNC_POLL_INTERVAL_SECS", "1")
        .env("CTSYNC_HTTP_ADDR", http)
        .envs(env.iter().copied());
    Daemon::spawn(c)
}

/// Waits until the daemon is up (its signal handlers are installed before
/// its first log line) and waits on the hung server.
fn up_and_waiting_on(daemon: &mut Daemon, accepted: &AtomicUsize) {
    daemon.wait_for_log("HTTP server listening");
    daemon.wait_until("a connection to the hung SQL Server", |_| {
        accepted.load(Ordering::SeqCst) >= 1
    });
}

/// The stop summary (`ctsync::shutdown`), the line that says what the stop
/// interrupted.
fn summary(log: &str) -> &str {
    log.lines()
        .find(|l| l.contains("ctsync::shutdown:"))
        .unwrap_or_else(|| panic!("no stop summary: {log}"))
}

/// A stop while the daemon waits on a hung SQL Server goes the orderly way:
/// exit 0 after the stop summary, which says what (if anything) the grace
/// period abandoned. Whether a wait was still in flight when the signal
/// came depends on timing, so either summary is right; a wait without a
/// bound would never reach the summary at all (`terminate` fails after
/// 60 s).
fn assert_bounded_stop(status: std::process::ExitStatus, log: &str) {
    assert!(status.success(), "exit {status:?}: {log}");
    assert!(log.contains("shutdown requested"), "{log}");
    let summary = summary(log);
    assert!(
        summary.contains("abandoned") || summary.contains("nothing was interrupted"),
        "{summary}"
    );
    println!("{summary}");
    assert!(log.contains("ctsync stopped"), "{log}");
}

#[test]
fn sigterm_with_a_hung_sql_server_exits_0_in_seconds() {
    let redis = RedisServer::start();
    let (_server, addr, accepted) = hung_server();
    let mut daemon = start(&addr, &redis.url());
    up_and_waiting_on(&mut daemon, &accepted);
    let (status, took, log) = daemon.terminate();
    println!("shutdown, SQL Server hung: {:.2} s", took.as_secs_f64());
    assert_bounded_stop(status, &log);
    assert!(!log.contains("Hung-Secret9"), "a password reached the log");
}

#[test]
fn sigterm_with_redis_down_exits_0_in_seconds() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.stop();
    let (_server, addr, accepted) = hung_server();
    let mut daemon = start(&addr, &url);
    up_and_waiting_on(&mut daemon, &accepted);
    let (status, took, log) = daemon.terminate();
    println!("shutdown, Redis down: {:.2} s", took.as_secs_f64());
    assert_bounded_stop(status, &log);
}

#[actix_rt::test]
async fn a_stop_mid_backlog_takes_seconds_and_the_backlog_continues_next_time() {
    let h = Harness::new();
    let (users, config, run) = h.paged_users().await;
    // A backlog of 200 pages, each read slowly.
    h.primary
        .insert_many(&users.id, (11..=20_010).map(|i| user(i, "backlog")));
    h.primary
        .delay_changes_pages(&users.id, Duration::from_millis(20));
    support::eventually(
        Duration::from_secs(10),
        "the backlog is being applied",
        || async { h.primary.changes_pages_read(&users.id) >= 3 },
    )
    .await;
    // A grace far longer than a page takes: the stop ends when the backlog
    // has stopped between pages (nothing abandoned), not when time is up.
    let began = Instant::now();
    let report = run.stop(Duration::from_secs(60)).await;
    let took = began.elapsed();
    println!(
        "stop mid-backlog: {:.3} s; {}",
        took.as_secs_f64(),
        report.summary()
    );
    assert!(report.abandoned.is_empty(), "{report:?}");
    assert!(
        report.summary().contains("change backlog of User"),
        "{}",
        report.summary()
    );
    let applied = h.replica.rows(&users.id).len();
    assert!(
        applied < 20_010,
        "the backlog was interrupted, not finished"
    );

    h.primary.delay_changes_pages(&users.id, Duration::ZERO);
    let _again = h.start(config);
    h.wait_equal(&users.id).await;
}

/// Beyond loopback without a token the API is read-only (said once at
/// start); with the explicit opt-in to writes without one, a WARN says
/// anyone can steer ctsync.
#[test]
fn an_api_beyond_loopback_is_read_only_without_a_token_and_the_opt_in_is_warned_about() {
    let redis = RedisServer::start();
    let (_server, addr, _) = hung_server();
    for (env, said) in [
        (vec![], "HTTP API and page are read-only"),
        (
            vec![("CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES", "true")],
            "without CTSYNC_API_TOKEN: anyone who can reach the HTTP port",
        ),
    ] {
        let port = free_addr()
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_string();
        let mut daemon = start_on(&addr, &redis.url(), &format!("0.0.0.0:{port}"), &env);
        // The line follows this one before the daemon waits for a signal.
        daemon.wait_for_log("HTTP server listening");
        let (status, _, log) = daemon.terminate();
        assert!(status.success(), "{log}");
        assert_eq!(log.matches(said).count(), 1, "{env:?}: once: {log}");
        let warned = log
            .lines()
            .any(|l| l.contains("WARN") && l.contains("CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES"));
        assert_eq!(warned, !env.is_empty(), "{env:?}: {log}");
    }
}
