//! The binary through its public surface: configuration errors, operator
//! commands against a real Redis, and a daemon that publishes its sanitized
//! endpoints, keeps running while SQL Server is unreachable, never logs a
//! password, and exits cleanly on SIGTERM.

mod support;

use std::io::{Read, Write};
use std::process::Command;

use support::daemon::Daemon;
use support::RedisServer;

fn ctsync() -> std::process::Command {
    support::daemon::clean_command(env!("CARGO_BIN_EXE_ctsync"))
}

fn redis_get(url: &str, key: &str) -> Option<String> {
    let client = redis::Client::open(url).expect("url");
    let mut con = client.get_connection().expect("connect");
    redis::cmd("GET").arg(key).query(&mut con).expect("GET")
}

/// `ctsync_discovery_runs_total{result="error"}` from the daemon's
/// `/metrics` at `http` (0 while it does not answer yet).
fn failed_discoveries(http: &str) -> u64 {
    let Ok(mut s) = std::net::TcpStream::connect(http) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let mut text = String::new();
    if s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .and_then(|_| s.read_to_string(&mut text))
        .is_err()
    {
        return 0;
    }
    text.lines()
        .find_map(|l| l.strip_prefix("ctsync_discovery_runs_total{result=\"error\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn missing_or_invalid_settings_exit_non_zero_naming_the_variable() {
    let out = ctsync().arg("run").output().expect("run ctsync");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MSSQL_PRIMARY_URL"), "{err}");

    let out = ctsync()
        .arg("check-config")
        .env("MSSQL_PRIMARY_URL", "mssql://sa:TopSecret9@h:1433/db")
        .env("MSSQL_REPLICA_URL", "mssql://sa:TopSecret9@h:1433/db")
        .env("CTSYNC_FULL_LOAD_PAGE_SIZE", "-5")
        .output()
        .expect("run ctsync");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CTSYNC_FULL_LOAD_PAGE_SIZE"), "{err}");
    assert!(!err.contains("TopSecret9"), "{err}");
}

fn redis_set(url: &str, key: &str, value: &str) {
    let client = redis::Client::open(url).expect("url");
    let mut con = client.get_connection().expect("connect");
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query::<()>(&mut con)
        .expect("SET");
}

/// Runs ctsync with `REDIS_URL` (and no daemon: the API address is a free
/// port nobody listens on); returns (success, stdout, stderr).
fn ctsync_with(url: &str, args: &[&str]) -> (bool, String, String) {
    let nobody = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .to_string();
    let out = ctsync()
        .args(args)
        .env("REDIS_URL", url)
        .env("CTSYNC_HTTP_ADDR", nobody)
        .output()
        .expect("run ctsync");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn operator_commands_flip_the_documented_redis_keys_and_say_what_changed() {
    let redis = RedisServer::start();
    let url = redis.url();
    // What discovery creates for the tables of the primary.
    for key in [
        "mssql_sync:enabled:User",
        "mssql_sync:force_full_load:User",
        "mssql_sync:enabled:sales.Order",
        "mssql_sync:force_full_load:sales.Order",
    ] {
        redis_set(&url, key, "false");
    }
    let run = |args: &[&str]| {
        let (ok, out, err) = ctsync_with(&url, args);
        assert!(ok, "{args:?}: {err}");
        out
    };
    assert_eq!(
        run(&["enable", "User"]),
        "mssql_sync:enabled:User = true (was false)\n"
    );
    assert_eq!(
        redis_get(&url, "mssql_sync:enabled:User").as_deref(),
        Some("true")
    );
    assert_eq!(
        run(&["disable", "User"]),
        "mssql_sync:enabled:User = false (was true)\n"
    );
    let forced = run(&["force-full-load", "sales.Order"]);
    assert!(
        forced.starts_with("mssql_sync:force_full_load:sales.Order = true (was false)\n"),
        "{forced}"
    );
    assert_eq!(
        redis_get(&url, "mssql_sync:force_requests:sales.Order").as_deref(),
        Some("1"),
        "the request is counted (a running load starts over)"
    );
    assert_eq!(
        run(&["set-version", "User", "475"]),
        "mssql_sync:version:User = 475 (was not set)\n"
    );
    assert_eq!(
        redis_get(&url, "mssql_sync:version:User").as_deref(),
        Some("475")
    );

    let listing = run(&["tables"]);
    let lines: Vec<&str> = listing.lines().collect();
    assert!(
        lines[0].contains("from Redis only: the daemon at"),
        "{listing}"
    );
    assert_eq!(
        lines[1],
        "TABLE        ENABLED  FORCE  VERSION  STATE  LAG  PROGRESS  INSTANCE"
    );
    assert_eq!(
        lines[2],
        "User         false    false  475      ?      ?    ?         ?"
    );
    assert_eq!(
        lines[3],
        "sales.Order  false    true   -        ?      ?    ?         ?"
    );
    let json: serde_json::Value =
        serde_json::from_str(&run(&["tables", "--json"])).expect("JSON listing");
    assert_eq!(json[0]["name"], "User");
    assert_eq!(json[0]["version"], "475");
    assert!(json[0]["state"].is_null());
}

#[test]
fn commands_refuse_a_table_ctsync_never_discovered_unless_forced() {
    let redis = RedisServer::start();
    let url = redis.url();
    redis_set(&url, "mssql_sync:enabled:User", "false");
    let (ok, out, err) = ctsync_with(&url, &["enable", "NoSuchTable"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("never discovered a table 'NoSuchTable'")
            && err.contains("known tables: User")
            && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        redis_get(&url, "mssql_sync:enabled:NoSuchTable"),
        None,
        "nothing written"
    );
    let (ok, _, err) = ctsync_with(&url, &["enable", "dbo.User"]);
    assert!(!ok);
    assert!(err.contains("is not a table name"), "{err}");
    let (ok, out, err) = ctsync_with(&url, &["enable", "NoSuchTable", "--force"]);
    assert!(ok, "{err}");
    assert_eq!(out, "mssql_sync:enabled:NoSuchTable = true (was not set)\n");

    let empty = RedisServer::start();
    let (ok, out, _) = ctsync_with(&empty.url(), &["tables"]);
    assert!(ok);
    assert!(out.contains("no tables known yet"), "{out}");
}

#[test]
fn check_config_prints_a_summary_and_connect_says_what_fails() {
    let redis = RedisServer::start();
    let settings = |c: &mut Command| {
        c.env(
            "MSSQL_PRIMARY_URL",
            "mssql://sa:TopSecret9@127.0.0.1:1/testct",
        )
        .env(
            "MSSQL_REPLICA_URL",
            "server=tcp:127.0.0.1,1;database=testct;user id=sa;password={TopSecret9}",
        )
        .env("REDIS_URL", redis.url())
        .env("CTSYNC_API_TOKEN", "T0ken-Secret");
    };
    let mut c = ctsync();
    c.arg("check-config");
    settings(&mut c);
    let out = c.output().expect("check-config");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("configuration is valid\n"), "{text}");
    assert!(
        text.contains("primary:  127.0.0.1:1/testct (TLS Required, server certificate validated)"),
        "{text}"
    );
    assert!(
        text.contains("API tokens: CTSYNC_API_TOKEN (operate)"),
        "{text}"
    );
    for secret in ["TopSecret9", "T0ken-Secret"] {
        assert!(!text.contains(secret), "{text}");
    }

    let mut c = ctsync();
    c.args(["check-config", "--connect"]);
    settings(&mut c);
    let out = c.output().expect("check-config --connect");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "SQL Server is unreachable: {text}");
    assert!(text.contains("primary: FAILED"), "{text}");
    assert!(text.contains("replica: FAILED"), "{text}");
    assert!(text.contains("redis: ok"), "{text}");
    assert!(!text.contains("TopSecret9"), "{text}");
}

#[test]
fn daemon_survives_an_unreachable_sql_server_and_stops_cleanly_on_sigterm() {
    let redis = RedisServer::start();
    let url = redis.url();
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .to_string();
    let mut c = ctsync();
    c.arg("run")
        // Port 1 on loopback refuses connections at once.
        .env(
            "MSSQL_PRIMARY_URL",
            "mssql://sa:TopSecret9@127.0.0.1:1/testct",
        )
        .env(
            "MSSQL_REPLICA_URL",
            "server=tcp:127.0.0.1,1;database=testct;user id=sa;password=TopSecret9",
        )
        .env("REDIS_URL", &url)
        .env("CTSYNC_POLL_INTERVAL_SECS", "1")
        .env("CTSYNC_HTTP_ADDR", &http);
    let mut daemon = Daemon::spawn(c);

    daemon.wait_until("the endpoints published", |_| {
        redis_get(&url, "mssql_sync:config:primary_url").is_some()
    });
    assert_eq!(
        redis_get(&url, "mssql_sync:config:primary_url").as_deref(),
        Some("127.0.0.1:1/testct")
    );
    assert_eq!(
        redis_get(&url, "mssql_sync:config:replica_url").as_deref(),
        Some("127.0.0.1:1/testct")
    );
    // It keeps running through a few failed discoveries.
    daemon.wait_for_log("HTTP server listening");
    daemon.wait_for_log("table discovery failed");
    daemon.wait_until("three failed discoveries", |_| {
        failed_discoveries(&http) >= 3
    });
    // Docker's HEALTHCHECK command: healthy while the daemon runs.
    let health = ctsync()
        .arg("healthcheck")
        .env("CTSYNC_HTTP_ADDR", &http)
        .output()
        .expect("healthcheck");
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );

    let (status, _, log) = daemon.terminate();
    assert!(status.success(), "exit {status:?}: {log}");
    assert!(log.contains("table discovery failed"), "{log}");
    assert!(log.contains("HTTP server listening"), "{log}");
    assert!(log.contains("ctsync stopped"), "{log}");
    assert!(
        !log.contains("TopSecret9"),
        "a password reached the log: {log}"
    );
    let health = ctsync()
        .arg("healthcheck")
        .env("CTSYNC_HTTP_ADDR", &http)
        .output()
        .expect("healthcheck");
    assert!(!health.status.success(), "unhealthy once stopped");
}

#[test]
fn doctor_and_verify_fail_clearly_when_sql_server_is_unreachable() {
    let redis = RedisServer::start();
    for args in [&["doctor"][..], &["verify", "User"][..]] {
        let out = ctsync()
            .args(args)
            .env(
                "MSSQL_PRIMARY_URL",
                "mssql://sa:TopSecret9@127.0.0.1:1/testct",
            )
            .env(
                "MSSQL_REPLICA_URL",
                "mssql://sa:TopSecret9@127.0.0.1:1/testct",
            )
            .env("REDIS_URL", redis.url())
            .output()
            .expect("run ctsync");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.starts_with("ctsync: "), "{args:?}: {err}");
        assert!(
            err.contains("127.0.0.1:1"),
            "{args:?} names the server: {err}"
        );
        assert!(!err.contains("TopSecret9"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Issue 28 item 9: a scheduled `ctsync verify` that verifies nothing (no
/// table enabled, or the wrong Redis database) must not report success:
/// it says so, naming the Redis it read, and exits 2; a server it cannot
/// reach is exit 2 too (0 is equal, 1 differences). Before, the first
/// printed nothing and exited 0, the second exited 1 like a difference.
#[test]
fn verify_exits_2_when_nothing_could_be_verified() {
    let redis = RedisServer::start();
    let unreachable = "mssql://sa:TopSecret9@127.0.0.1:1/testct";
    let out = ctsync()
        .arg("verify")
        .env("MSSQL_PRIMARY_URL", unreachable)
        .env("MSSQL_REPLICA_URL", unreachable)
        .env("REDIS_URL", format!("{}3", redis.url()))
        .output()
        .expect("run ctsync");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("nothing was verified"), "{err}");
    assert!(
        err.contains("database 3"),
        "names the Redis database: {err}"
    );

    let out = ctsync()
        .args(["verify", "User"])
        .env("MSSQL_PRIMARY_URL", unreachable)
        .env("MSSQL_REPLICA_URL", unreachable)
        .env("REDIS_URL", redis.url())
        .output()
        .expect("run ctsync");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "could not run: {err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
}
