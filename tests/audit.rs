//! The audit trail through the public surface: `ctsync run` logs each
//! accepted write at INFO and appends it to `mssql_sync:audit`, the CLI's
//! writes are recorded as `cli` with the OS user, `ctsync audit [--since]
//! [--json]` prints them, refused writes are not among them, the stream
//! stays capped, and the token appears nowhere.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ctsync_actors::status::TableStatus;
use serde_json::{json, Value};
use support::daemon::Daemon;
use support::fixtures::user_table;
use support::http_client::Request;
use support::{eventually, fast_config, Harness, RedisServer};

const TOKEN: &str = "Aud1t-T0ken-Never-Shown";
const STREAM: &str = "mssql_sync:audit";

fn ctsync() -> std::process::Command {
    support::daemon::clean_command(env!("CARGO_BIN_EXE_ctsync"))
}

use support::daemon::free_addr;

/// `ctsync run` with the token, on `redis`, its SQL Servers nowhere (no
/// table is this instance's), once its HTTP server listens.
fn run_daemon(redis: &RedisServer) -> (Daemon, SocketAddr) {
    support::daemon::run_reaching_no_sql_server(
        env!("CARGO_BIN_EXE_ctsync"),
        &redis.url(),
        &[("CTSYNC_API_TOKEN", TOKEN)],
    )
}

/// Runs a CLI command against `redis` as OS user `user`: success, stdout,
/// stderr.
fn cli(redis: &str, user: &str, args: &[&str]) -> (bool, String, String) {
    let out = ctsync()
        .args(args)
        .env("REDIS_URL", redis)
        .env("USER", user)
        .env("CTSYNC_HTTP_ADDR", free_addr())
        .output()
        .expect("run ctsync");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The raw stream, every field of every entry.
fn raw_stream(url: &str) -> Vec<(String, Vec<String>)> {
    let client = redis::Client::open(url).expect("url");
    let mut con = client.get_connection().expect("connect");
    redis::cmd("XRANGE")
        .arg(STREAM)
        .arg("-")
        .arg("+")
        .query(&mut con)
        .expect("XRANGE")
}

fn audit_json(url: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    let (ok, out, err) = cli(url, "reader", &all);
    assert!(ok, "{err}");
    assert!(!out.contains(TOKEN) && !err.contains(TOKEN), "{out}{err}");
    serde_json::from_str::<Vec<Value>>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[actix_rt::test]
async fn accepted_writes_over_http_and_the_cli_are_logged_and_listed_without_the_token() {
    let redis = RedisServer::start();
    // Another instance runs `User` (this daemon reaches no SQL Server).
    support::redis_server::run_elsewhere(&redis, "User", TableStatus::default()).await;
    let (mut daemon, addr) = run_daemon(&redis);
    let post = |action: &str| {
        Request::new(format!("POST {action}"), "POST", "/api/tables/User")
            .json(&json!({ "action": action }))
    };
    let r = post("enable").bearer(TOKEN).send(addr).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Refused: not an accepted write, not in the trail.
    let r = post("disable").bearer("wrong").send(addr).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = post("force_full_load").bearer(TOKEN).send(addr).await;
    assert_eq!(r.status, 200, "{}", r.body);
    daemon.wait_for_log("audit: force_full_load User");
    let (status, _, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("audit: enable User"))
        .unwrap_or_else(|| panic!("no audit line in {log}"));
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains("from=127.0.0.1:"), "the peer address: {line}");
    assert!(!log.contains("audit: disable"), "{log}");
    assert!(!log.contains(TOKEN), "{log}");

    let (ok, out, err) = cli(&redis.url(), "alice", &["set-version", "User", "42"]);
    assert!(ok, "{err}");
    assert!(!out.contains(TOKEN), "{out}");

    let all = audit_json(&redis.url(), &[]);
    // The wrong token's refusal: a tally, apart from the accepted entries.
    let tallies: Vec<&Value> = all.iter().filter(|e| e["action"] == "refused").collect();
    assert_eq!(tallies.len(), 1, "{all:#?}");
    assert!(
        tallies[0]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("1 refused: 401×1")),
        "{all:#?}"
    );
    let entries: Vec<Value> = all
        .into_iter()
        .filter(|e| e["action"] != "refused")
        .collect();
    let seen: Vec<(&str, &str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or("?"),
                e["action"].as_str().unwrap_or("?"),
                e["table"].as_str().unwrap_or("?"),
                e["outcome"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("http", "enable", "User", "ok"),
            ("http", "force_full_load", "User", "ok"),
            ("cli", "set_version", "User", "ok"),
        ],
        "{entries:#?}"
    );
    assert!(
        entries[0]["from"]
            .as_str()
            .is_some_and(|f| f.starts_with("127.0.0.1:")),
        "{entries:#?}"
    );
    assert_eq!(entries[2]["from"], "alice", "the OS user");
    assert_eq!(entries[0]["token"], "CTSYNC_API_TOKEN", "the token's name");
    assert_eq!(entries[2]["token"], "", "the CLI uses none");
    assert_eq!(entries[2]["detail"], "mssql_sync:version:User=42");
    assert!(
        entries[0]["at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{entries:#?}"
    );
    assert!(!format!("{:?}", raw_stream(&redis.url())).contains(TOKEN));

    // --since: a duration back from now, or an RFC 3339 time.
    assert_eq!(audit_json(&redis.url(), &["--since", "1h"]).len(), 4);
    assert!(audit_json(&redis.url(), &["--since", "2999-01-01T00:00:00Z"]).is_empty());
    let (ok, out, err) = cli(&redis.url(), "reader", &["audit", "--since", "1h"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.contains("cli alice  set_version User"), "{out}");
    assert!(
        out.contains("(token CTSYNC_API_TOKEN)  enable User"),
        "{out}"
    );
    let (ok, _, err) = cli(&redis.url(), "reader", &["audit", "--since", "yesterday"]);
    assert!(!ok);
    assert!(err.contains("--since") && err.contains("RFC 3339"), "{err}");
}

#[actix_rt::test]
async fn the_stream_stays_capped_and_keeps_the_newest() {
    let h = Harness::new();
    h.primary.create_table(user_table(), true);
    let run = h.start(fast_config());
    eventually(Duration::from_secs(10), "discovered", || async {
        run.board.get("User").is_some()
    })
    .await;
    // Twice the cap of old entries, written in one pipeline.
    let cap = ctsync::state::audit::CAP;
    {
        let client = redis::Client::open(h.redis.url()).expect("url");
        let mut con = client.get_connection().expect("connect");
        let mut pipe = redis::pipe();
        for i in 0..2 * cap {
            pipe.cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg("action")
                .arg(format!("old {i}"))
                .ignore();
        }
        pipe.query::<()>(&mut con).expect("fill");
    }
    let (addr, _server) = ctsync::http::serve(
        "127.0.0.1:0".parse().expect("addr"),
        h.http_state(run.board.clone()),
    )
    .expect("bind");
    let r = Request::new("enable", "POST", "/api/tables/User")
        .json(&json!({"action": "enable"}))
        .send(addr)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let stream = raw_stream(&h.redis.url());
    // `MAXLEN ~` trims whole nodes of the stream (100 entries each).
    assert!(
        stream.len() >= cap && stream.len() <= cap + 100,
        "{} entries",
        stream.len()
    );
    let last = &stream.last().expect("entries").1;
    assert!(
        last.windows(2).any(|kv| kv == ["action", "enable"]),
        "{last:?}"
    );
}

/// `ctsync_http_refused_total{status="<status>"}` in a `/metrics` answer.
fn refused_count(metrics: &str, status: u16) -> u64 {
    let prefix = format!("ctsync_http_refused_total{{status=\"{status}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[actix_rt::test]
async fn refused_requests_are_logged_at_warn_and_counted_without_the_token() {
    let redis = RedisServer::start();
    let (mut daemon, addr) = run_daemon(&redis);
    let enable = json!({"action": "enable"});
    let post = || Request::new("POST enable", "POST", "/api/tables/User");
    let cases = [
        (post().json(&enable).bearer("wrong"), 401),
        (post().json(&enable), 401),
        // The right token on a form post: refused, and never logged.
        (
            post()
                .bearer(TOKEN)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("action=enable"),
            415,
        ),
        (
            post()
                .bearer(TOKEN)
                .header("Host", "evil.example")
                .json(&enable),
            421,
        ),
    ];
    for (request, status) in &cases {
        let r = request.send(addr).await;
        assert_eq!(r.status, *status, "{}", r.body);
    }
    let metrics = Request::get("/metrics").send(addr).await.body;
    assert_eq!(refused_count(&metrics, 401), 2, "{metrics}");
    assert_eq!(refused_count(&metrics, 415), 1, "{metrics}");
    assert_eq!(refused_count(&metrics, 421), 1, "{metrics}");
    daemon.wait_until("four refusals logged", |log| {
        log.matches("HTTP request refused").count() >= 4
    });
    let (status, _, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("HTTP request refused"))
        .collect();
    for (line, code) in refused.iter().zip([401, 401, 415, 421]) {
        assert!(line.contains("WARN"), "{line}");
        assert!(line.contains(&format!("status={code}")), "{line}");
        assert!(line.contains("from=127.0.0.1:"), "{line}");
        assert!(line.contains("path=/api/tables/User"), "{line}");
    }
    assert!(!log.contains(TOKEN), "{log}");
    // Refused writes are no audit entries.
    assert!(raw_stream(&redis.url()).is_empty());
}

#[actix_rt::test]
async fn refused_requests_are_tallied_per_minute_and_address_apart_from_accepted_entries() {
    use ctsync::http::refusals::LOGGED_PER_ADDRESS;
    let redis = RedisServer::start();
    let (ok, _, err) = cli(
        &redis.url(),
        "alice",
        &["set-version", "User", "42", "--force"],
    );
    assert!(ok, "{err}");
    let (daemon, addr) = run_daemon(&redis);
    const FLOOD: usize = 300;
    for i in 0..FLOOD {
        let r = Request::new(format!("flood {i}"), "GET", "/api/tables")
            .bearer("not-the-token")
            .send(addr)
            .await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    let metrics = Request::get("/metrics").send(addr).await.body;
    assert_eq!(
        refused_count(&metrics, 401),
        FLOOD as u64,
        "every one is counted"
    );
    // Stopping stores the minute's tally (no later refusal will).
    let (status, _, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    let one_by_one = log
        .matches("HTTP request refused by the access rules")
        .count();
    // The first few of each minute (the flood may straddle two).
    let logged = LOGGED_PER_ADDRESS as usize;
    assert!(
        (logged..=2 * logged).contains(&one_by_one),
        "{one_by_one} logged one by one"
    );
    assert!(
        log.contains(&format!("only the first {logged} were logged one by one")),
        "{log}"
    );
    assert!(!log.contains("not-the-token") && !log.contains(TOKEN));

    // The accepted entry is still there, alone in its stream.
    assert_eq!(raw_stream(&redis.url()).len(), 1);
    let all = audit_json(&redis.url(), &[]);
    let tallies: Vec<&Value> = all.iter().filter(|e| e["action"] == "refused").collect();
    assert!((1..=2).contains(&tallies.len()), "{all:#?}");
    let counted: u64 = tallies
        .iter()
        .map(|t| {
            assert_eq!(t["from"], "127.0.0.1", "per address, not per connection");
            assert_eq!(t["outcome"], "refused");
            t["detail"]
                .as_str()
                .and_then(|d| d.split(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(counted, FLOOD as u64, "{tallies:#?}");
    assert_eq!(all.len(), tallies.len() + 1);
    assert!(!format!("{all:?}").contains("not-the-token"));
}

#[actix_rt::test]
async fn x_forwarded_for_names_the_client_only_from_a_trusted_proxy() {
    let h = Harness::new();
    h.primary.create_table(user_table(), true);
    let run = h.start(fast_config());
    eventually(Duration::from_secs(10), "discovered", || async {
        run.board.get("User").is_some()
    })
    .await;
    let access = |proxies: &str| {
        let source: BTreeMap<&'static str, String> = [
            (
                "CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES",
                "true".to_string(),
            ),
            ("CTSYNC_TRUSTED_PROXIES", proxies.to_string()),
        ]
        .into();
        ctsync::config::http_access(&source, &"127.0.0.1:8080".parse().expect("addr"))
    };
    let bad = access("proxy.internal").err().map(|e| e.to_string());
    assert!(
        bad.as_deref()
            .is_some_and(|e| e.contains("CTSYNC_TRUSTED_PROXIES") && e.contains("proxy.internal")),
        "{bad:?}"
    );
    let mut froms = Vec::new();
    for proxies in ["10.9.9.9, 127.0.0.1", ""] {
        let mut shared = h.http_state(run.board.clone());
        shared.access = access(proxies).expect("access");
        let (addr, _server) =
            ctsync::http::serve("127.0.0.1:0".parse().expect("addr"), shared).expect("bind");
        let r = Request::new("enable", "POST", "/api/tables/User")
            .header("X-Forwarded-For", "198.51.100.7, 203.0.113.9, 10.9.9.9")
            .json(&json!({"action": "enable"}))
            .send(addr)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let entries = h.state.audit_entries(None).await.expect("entries");
        froms.push(entries.last().map(|e| e.from.clone()).unwrap_or_default());
    }
    // The last address no trusted proxy added, via the proxy that said so.
    assert!(
        froms[0].starts_with("203.0.113.9 via 127.0.0.1:"),
        "{froms:?}"
    );
    // From any other peer the header is the client's own word: ignored.
    assert!(
        froms[1].starts_with("127.0.0.1:") && !froms[1].contains("203.0.113.9"),
        "{froms:?}"
    );
}
