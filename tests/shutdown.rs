//! Stop in seconds, in every state: `ctsync run` with a SQL Server that
//! accepts connections and never answers, and with Redis stopped, exits 0
//! on SIGTERM within a generous bound; the in-process pipeline stops in the
//! middle of a change backlog and continues it on the next start. (A stop
//! mid-load is in `shadow_loads.rs`; the demo's SIGTERM in `.ci/demo-checks.sh`.)

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::fixtures::*;
use support::{Harness, RedisServer};

/// The bound asserted (the target is 5 s; figures are printed).
const BOUND: Duration = Duration::from_secs(15);

fn ctsync() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ctsync"));
    for (k, _) in std::env::vars() {
        if k.starts_with("MSSQL_") || k.starts_with("CTSYNC_") || k == "REDIS_URL" {
            c.env_remove(k);
        }
    }
    c
}

fn free_addr() -> String {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .to_string()
}

/// A hung "SQL Server" as an ADO `server=tcp:host,port` value.
fn hung_server() -> (TcpListener, String) {
    let (listener, addr) = support::hung::hung_server();
    (listener, format!("{},{}", addr.ip(), addr.port()))
}

fn start(server: &str, redis_url: &str) -> Child {
    start_on(server, redis_url, &free_addr())
}

fn start_on(server: &str, redis_url: &str, http: &str) -> Child {
    ctsync()
        .arg("run")
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
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ctsync")
}

/// SIGTERM after `after`; returns the exit status, how long the stop took,
/// and the log.
fn terminate(mut child: Child, after: Duration) -> (std::process::ExitStatus, Duration, String) {
    std::thread::sleep(after);
    let pid = child.id().to_string();
    let sent = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if sent.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("ctsync did not exit within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = sent.elapsed();
    let mut log = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut log);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut log);
    }
    (status, took, log)
}

#[test]
fn sigterm_with_a_hung_sql_server_exits_0_in_seconds() {
    let redis = RedisServer::start();
    let (_server, addr) = hung_server();
    let child = start(&addr, &redis.url());
    let (status, took, log) = terminate(child, Duration::from_secs(3));
    println!("shutdown, SQL Server hung: {:.2} s", took.as_secs_f64());
    assert!(status.success(), "exit {status:?}: {log}");
    assert!(took < BOUND, "took {took:?}: {log}");
    assert!(log.contains("ctsync stopped"), "{log}");
    assert!(!log.contains("Hung-Secret9"), "a password reached the log");
}

#[test]
fn sigterm_with_redis_down_exits_0_in_seconds() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.stop();
    let (_server, addr) = hung_server();
    let child = start(&addr, &url);
    let (status, took, log) = terminate(child, Duration::from_secs(3));
    println!("shutdown, Redis down: {:.2} s", took.as_secs_f64());
    assert!(status.success(), "exit {status:?}: {log}");
    assert!(took < BOUND, "took {took:?}: {log}");
    assert!(log.contains("ctsync stopped"), "{log}");
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
    let began = Instant::now();
    let report = run.stop(Duration::from_secs(4)).await;
    let took = began.elapsed();
    println!(
        "stop mid-backlog: {:.3} s; {}",
        took.as_secs_f64(),
        report.summary()
    );
    assert!(took < Duration::from_secs(4), "{took:?}");
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

#[test]
fn an_api_open_beyond_loopback_without_a_token_is_warned_about() {
    let redis = RedisServer::start();
    let (_server, addr) = hung_server();
    let port = free_addr()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let child = start_on(&addr, &redis.url(), &format!("0.0.0.0:{port}"));
    let (status, _, log) = terminate(child, Duration::from_secs(2));
    assert!(status.success(), "{log}");
    assert_eq!(
        log.matches("without CTSYNC_API_TOKEN").count(),
        1,
        "one WARN: {log}"
    );
}
