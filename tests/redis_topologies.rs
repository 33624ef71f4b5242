//! Redis as operators run it (real `redis-server` processes): the shipped
//! ACL user (`redis/ctsync.acl`) runs the whole pipeline, the audit trail
//! and keyspace notifications (with CONFIG, or with the events set on the
//! server) and can touch nothing outside `mssql_sync:*`; a Redis Cluster
//! node is refused at start, naming why.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ctsync::state::RedisState;
use ctsync_actors::keys;
use ctsync_actors::model::TableId;
use support::fixtures::*;
use support::redis_server::{start_with_shipped_acl, RedisServer};
use support::{eventually, fast_config, Harness};

const FAILSAFE: Duration = Duration::from_secs(60);

/// Runs `args` on the server at `url`, as the user the URL names (the
/// `default` user without one).
fn run_as(url: &str, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_connection()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut con)
}

#[actix_rt::test]
async fn the_shipped_acl_user_runs_the_pipeline_and_touches_nothing_else() {
    let (redis, url) = start_with_shipped_acl(false, &[]);
    let state = Arc::new(RedisState::new(&url).expect("url"));
    let h = Harness::new();
    let users = user_table();
    h.primary.create_table(users.clone(), true);
    h.primary
        .insert_many(&users.id, (1..=20).map(|i| user(i, "n")));
    let run = h.start_with_state(fast_config(), state.clone());
    eventually(FAILSAFE, "discovered", || async {
        run.board.get("User").is_some()
    })
    .await;
    state
        .set(&keys::enabled(&users.id), "true")
        .await
        .expect("enable as the ACL user");
    eventually(FAILSAFE, "loaded", || async {
        state
            .get(&keys::version(&users.id))
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await;
    h.primary
        .insert_many(&users.id, (21..=30).map(|i| user(i, "later")));
    h.wait_equal(&users.id).await;
    assert!(run.board.get("User").and_then(|s| s.last_error).is_none());

    // The audit trail and the refusals' tallies.
    let entry = ctsync::state::audit::Entry::now("cli", "tester", "enable", "User");
    state.audit(&entry).await.expect("XADD as the ACL user");
    state
        .audit_refusals(&[ctsync::state::audit::Entry::now(
            "http", "10.0.0.1", "refused", "",
        )])
        .await
        .expect("XADD of a tally");
    assert_eq!(state.audit_entries(None).await.expect("XRANGE").len(), 2);

    // Nothing outside its keys, no dangerous command, no CONFIG.
    for args in [
        &["SET", "other:key", "x"][..],
        &["GET", "session:42"],
        &["DEL", "queue:jobs"],
        &["FLUSHALL"],
        &["KEYS", "*"],
        &["CONFIG", "SET", "notify-keyspace-events", "K$g"],
        &["SHUTDOWN"],
    ] {
        let refused = run_as(&url, args).err().map(|e| e.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|e| e.to_ascii_lowercase().contains("no permissions")),
            "{args:?}: {refused:?}"
        );
    }
    // The default user sees the keys ctsync wrote, and no other key.
    let written = run_as(&redis.url(), &["KEYS", "*"]).expect("KEYS");
    let written: Vec<String> = redis::from_redis_value(written).expect("names");
    assert!(!written.is_empty());
    assert!(
        written.iter().all(|k| k.starts_with("mssql_sync:")),
        "{written:?}"
    );
}

/// Waits until `listener` subscribed, sets the flag as an operator would,
/// and waits for the wake it causes.
async fn flag_wakes(url: &str, listener: &ctsync::state::keyspace::KeyspaceListener) {
    eventually(FAILSAFE, "subscribed", || async {
        listener.subscriptions() >= 1
    })
    .await;
    let before = listener.wakes();
    run_as(url, &["SET", "mssql_sync:enabled:User", "true"]).expect("SET");
    eventually(FAILSAFE, "a wake from the notification", || async {
        listener.wakes() > before
    })
    .await;
}

#[actix_rt::test]
async fn keyspace_notifications_reach_the_acl_user_with_config_or_with_the_events_set_on_the_server(
) {
    // The rule's CONFIG variant: ctsync turns the events on itself.
    let (redis, url) = start_with_shipped_acl(true, &[]);
    let (wake, mut woken) = tokio::sync::mpsc::unbounded_channel::<TableId>();
    let listener = ctsync::state::keyspace::start(&url, wake).expect("listener");
    flag_wakes(&url, &listener).await;
    assert_eq!(woken.recv().await.map(|t| t.name), Some("User".into()));
    drop(listener);
    drop(redis);

    // Without CONFIG: the operator set the events on the server.
    let (_redis, url) = start_with_shipped_acl(false, &["--notify-keyspace-events", "K$g"]);
    let (wake, mut woken) = tokio::sync::mpsc::unbounded_channel::<TableId>();
    let listener = ctsync::state::keyspace::start(&url, wake).expect("listener");
    flag_wakes(&url, &listener).await;
    assert_eq!(woken.recv().await.map(|t| t.name), Some("User".into()));
}

#[actix_rt::test]
async fn a_redis_cluster_node_is_refused_at_start_saying_why() {
    let redis = RedisServer::start_with(|dir| {
        vec![
            "--cluster-enabled".into(),
            "yes".into(),
            "--cluster-config-file".into(),
            dir.join("nodes.conf").display().to_string(),
        ]
    });
    let nowhere = format!("mssql://sa:x@{}/testct", support::daemon::free_addr());
    let out = support::daemon::clean_command(env!("CARGO_BIN_EXE_ctsync"))
        .arg("run")
        .env("MSSQL_PRIMARY_URL", &nowhere)
        .env("MSSQL_REPLICA_URL", &nowhere)
        .env("REDIS_URL", redis.url())
        .env("CTSYNC_HTTP_ADDR", support::daemon::free_addr())
        .output()
        .expect("ctsync run");
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{err}");
    for words in [
        "REDIS_URL",
        "Redis Cluster",
        "standalone Redis",
        "hash slots",
    ] {
        assert!(err.contains(words), "{words}: {err}");
    }
    assert!(
        !err.contains("HTTP server listening"),
        "it stopped before serving: {err}"
    );

    // The CLI says the same.
    let out = support::daemon::clean_command(env!("CARGO_BIN_EXE_ctsync"))
        .args(["enable", "User", "--force"])
        .env("REDIS_URL", redis.url())
        .env("CTSYNC_HTTP_ADDR", support::daemon::free_addr())
        .output()
        .expect("ctsync enable");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success() && err.contains("Redis Cluster"),
        "{err}"
    );
    // Nothing was written.
    let keys = run_as(&redis.url(), &["DBSIZE"]).expect("DBSIZE");
    assert_eq!(keys, redis::Value::Int(0));
}

#[test]
fn the_docs_show_the_shipped_rule_verbatim() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/redis.md"))
        .expect("docs/redis.md");
    let rule = support::redis_server::shipped_acl_rule(false).replace(
        &format!(">{}", support::redis_server::ACL_PASSWORD),
        ">CHANGE-ME",
    );
    assert!(
        docs.lines().any(|l| l == rule),
        "docs/redis.md lacks:\n{rule}"
    );
}
