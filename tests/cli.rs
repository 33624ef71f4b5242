//! The binary through its public surface: configuration errors, operator
//! commands against a real Redis, and a daemon that publishes its sanitized
//! endpoints, keeps running while SQL Server is unreachable, never logs a
//! password, and exits cleanly on SIGTERM.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::RedisServer;

fn ctsync() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ctsync"));
    for (k, _) in std::env::vars() {
        if k.starts_with("MSSQL_") || k.starts_with("CTSYNC_") || k == "REDIS_URL" {
            c.env_remove(k);
        }
    }
    c
}

fn redis_get(url: &str, key: &str) -> Option<String> {
    let client = redis::Client::open(url).expect("url");
    let mut con = client.get_connection().expect("connect");
    redis::cmd("GET").arg(key).query(&mut con).expect("GET")
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

#[test]
fn operator_commands_flip_the_documented_redis_keys() {
    let redis = RedisServer::start();
    let url = redis.url();
    let run = |args: &[&str]| {
        let out = ctsync()
            .args(args)
            .env("REDIS_URL", &url)
            .output()
            .expect("run ctsync");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    run(&["enable", "User"]);
    assert_eq!(
        redis_get(&url, "mssql_sync:enabled:User").as_deref(),
        Some("true")
    );
    run(&["disable", "User"]);
    assert_eq!(
        redis_get(&url, "mssql_sync:enabled:User").as_deref(),
        Some("false")
    );
    run(&["force-full-load", "sales.Order"]);
    assert_eq!(
        redis_get(&url, "mssql_sync:force_full_load:sales.Order").as_deref(),
        Some("true")
    );
    run(&["set-version", "User", "475"]);
    assert_eq!(
        redis_get(&url, "mssql_sync:version:User").as_deref(),
        Some("475")
    );
    let listing = run(&["tables"]);
    assert!(
        listing.contains("User\tenabled=false\tforce_full_load=false\tversion=475"),
        "{listing}"
    );
}

#[test]
fn daemon_survives_an_unreachable_sql_server_and_stops_cleanly_on_sigterm() {
    let redis = RedisServer::start();
    let url = redis.url();
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .to_string();
    let child = ctsync()
        .arg("run")
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
        .env("CTSYNC_HTTP_ADDR", &http)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ctsync");

    let deadline = Instant::now() + Duration::from_secs(20);
    while redis_get(&url, "mssql_sync:config:primary_url").is_none() {
        assert!(Instant::now() < deadline, "endpoints not published");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        redis_get(&url, "mssql_sync:config:primary_url").as_deref(),
        Some("127.0.0.1:1/testct")
    );
    assert_eq!(
        redis_get(&url, "mssql_sync:config:replica_url").as_deref(),
        Some("127.0.0.1:1/testct")
    );
    std::thread::sleep(Duration::from_millis(2_500)); // a few failed discoveries
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

    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "exit {:?}: {log}", out.status);
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
