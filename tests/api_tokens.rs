//! Named API tokens through the binary: `CTSYNC_API_TOKENS_FILE` gives each
//! token a name and a role; `ctsync run` says which at start, acts for an
//! `operate` token only, records the token's name in the audit trail and
//! shows a caller without a token no error text; `check-config` refuses a
//! bad file naming its line, and no output ever holds a token.

mod support;

use std::net::SocketAddr;

use ctsync_actors::status::TableStatus;
use serde_json::{json, Value};
use support::daemon::{free_addr, Daemon};
use support::http_client::Request;
use support::RedisServer;

const OPERATE: &str = "alice-0perate-T0ken-file";
const READ: &str = "bob-r3ad-T0ken-file-1234";

fn ctsync() -> std::process::Command {
    support::daemon::clean_command(env!("CARGO_BIN_EXE_ctsync"))
}

/// A token file, removed with the guard.
struct TokenFile(std::path::PathBuf);

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn token_file(text: &str) -> (TokenFile, String) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("ctsync-tokens-{}-{n}", std::process::id()));
    std::fs::write(&path, text).expect("write tokens");
    let shown = path.display().to_string();
    (TokenFile(path), shown)
}

/// Another instance runs `User` (the daemon under test reaches no SQL
/// Server), with an error that names a host.
async fn published_user(redis: &RedisServer) {
    let status = TableStatus {
        last_error: Some("sql-primary.corp.internal: login failed".into()),
        ..TableStatus::default()
    };
    support::redis_server::run_elsewhere(redis, "User", status).await;
}

fn run_daemon(redis: &RedisServer, tokens: &str) -> (Daemon, SocketAddr) {
    support::daemon::run_reaching_no_sql_server(
        env!("CARGO_BIN_EXE_ctsync"),
        &redis.url(),
        &[("CTSYNC_API_TOKENS_FILE", tokens)],
    )
}

#[actix_rt::test]
async fn a_token_file_names_each_token_and_its_role() {
    let redis = RedisServer::start();
    published_user(&redis).await;
    let (_dir, path) = token_file(&format!(
        "# ctsync API tokens\nalice operate {OPERATE}\nbob read {READ}\n"
    ));
    let (daemon, addr) = run_daemon(&redis, &path);
    let enable = |token: &str| {
        Request::new("enable", "POST", "/api/tables/User")
            .json(&json!({"action": "enable"}))
            .bearer(token)
    };
    let r = enable(READ).send(addr).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("read role"), "{}", r.body);
    let r = enable(OPERATE).send(addr).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let public: Value =
        serde_json::from_str(&Request::get("/api/tables").send(addr).await.body).expect("json");
    assert_eq!(public["tables"][0]["last_error"], Value::Null, "{public}");
    let read: Value = serde_json::from_str(
        &Request::get("/api/tables")
            .bearer(READ)
            .send(addr)
            .await
            .body,
    )
    .expect("json");
    assert!(
        read["tables"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("login failed")),
        "{read}"
    );

    let (status, _, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    assert!(
        log.contains(r#"tokens="alice (operate), bob (read)""#),
        "{log}"
    );
    assert!(!log.contains(OPERATE) && !log.contains(READ), "{log}");

    let out = ctsync()
        .args(["audit", "--json"])
        .env("REDIS_URL", redis.url())
        .output()
        .expect("audit");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let entries: Vec<Value> = serde_json::from_str(&text).expect("json");
    let accepted: Vec<&Value> = entries.iter().filter(|e| e["action"] == "enable").collect();
    assert_eq!(accepted.len(), 1, "{entries:#?}");
    assert_eq!(accepted[0]["token"], "alice");
    // The read token's 403 is tallied with the refusals.
    assert!(
        entries.iter().any(|e| e["action"] == "refused"
            && e["detail"].as_str().is_some_and(|d| d.contains("403×1"))),
        "{entries:#?}"
    );
    assert!(!text.contains(OPERATE) && !text.contains(READ));
}

#[test]
fn check_config_refuses_a_bad_token_file_naming_the_line_and_lists_the_names() {
    let settings = |c: &mut std::process::Command, path: &str| {
        c.arg("check-config")
            .env("MSSQL_PRIMARY_URL", "mssql://sa:x@127.0.0.1:1/testct")
            .env("MSSQL_REPLICA_URL", "mssql://sa:x@127.0.0.1:1/testct")
            .env("CTSYNC_HTTP_ADDR", free_addr())
            .env("CTSYNC_API_TOKEN", "the-single-T0ken")
            .env("CTSYNC_API_TOKENS_FILE", path);
    };
    let cases = [
        (
            format!("alice operate {OPERATE}\nbob reader {READ}\n"),
            "line 2: the role \"reader\" of bob",
        ),
        (
            format!("alice operate {OPERATE}\nbob read {OPERATE}\n"),
            "line 2: the token of bob is also the token of alice",
        ),
        (
            "carol read tiny\n".to_string(),
            "the token of carol has 4 characters; use at least 16",
        ),
        ("# nothing yet\n".to_string(), "names no token"),
        (format!("CTSYNC_API_TOKEN read {READ}\n"), "clash"),
    ];
    for (text, want) in cases {
        let (_dir, path) = token_file(&text);
        let mut c = ctsync();
        settings(&mut c, &path);
        let out = c.output().expect("check-config");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{text}: {all}");
        assert!(
            all.contains("CTSYNC_API_TOKENS_FILE") && all.contains(&path) && all.contains(want),
            "{text}: {all}"
        );
        for secret in [OPERATE, READ, "tiny", "the-single-T0ken"] {
            assert!(!all.contains(secret), "{secret} in {all}");
        }
    }
    let (_dir, path) = token_file(&format!("alice operate {OPERATE}\nbob read {READ}\n"));
    let mut c = ctsync();
    settings(&mut c, &path);
    let out = c.output().expect("check-config");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("API tokens: CTSYNC_API_TOKEN (operate), alice (operate), bob (read)"),
        "{text}"
    );
    let missing = {
        let mut c = ctsync();
        settings(&mut c, "/nonexistent/ctsync-tokens");
        c.output().expect("check-config")
    };
    let err = String::from_utf8_lossy(&missing.stderr).to_string();
    assert!(!missing.status.success());
    assert!(
        err.contains("CTSYNC_API_TOKENS_FILE")
            && err.contains("cannot read /nonexistent/ctsync-tokens"),
        "{err}"
    );
}
