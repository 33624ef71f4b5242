//! Flags act within a second: with a poll hours long, enabling, forcing a
//! load and disabling through redis-cli-style SETs take effect at once,
//! through Redis keyspace notifications (a real redis-server), which are
//! turned on and subscribed to again after Redis restarts.
//!
//! Nothing here is timed: with a poll that long only a notification can
//! make a table act, so the test waits for the listener's subscription to
//! be confirmed, counts the wakes each SET produced and waits for the
//! effect. (The time each step took is printed; the target is under a
//! second.)

mod support;

use std::time::{Duration, Instant};

use ctsync::state::keyspace::KeyspaceListener;
use ctsync_actors::keys;
use ctsync_actors::status::TableState;
use support::fixtures::*;
use support::{eventually, fast_config, Harness};

/// So long that no poll happens during the test: every effect comes from
/// a notification.
const POLL: Duration = Duration::from_secs(6 * 3600);
/// A failsafe only: every wait below ends on its event.
const FAILSAFE: Duration = Duration::from_secs(60);

fn notify_events(url: &str) -> String {
    let client = redis::Client::open(url).expect("url");
    let mut con = client.get_connection().expect("connect");
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query(&mut con)
        .expect("CONFIG GET");
    v.get(1).cloned().unwrap_or_default()
}

/// Pattern subscriptions the server has (`PUBSUB NUMPAT`).
fn numpat(url: &str) -> i64 {
    let client = redis::Client::open(url).expect("url");
    let mut con = client.get_connection().expect("connect");
    redis::cmd("PUBSUB")
        .arg("NUMPAT")
        .query(&mut con)
        .expect("PUBSUB NUMPAT")
}

/// Waits until the listener's `n`th subscription is confirmed, and checks
/// the server agrees: the notification classes are on and the pattern
/// subscription is there.
async fn subscribed(listener: &KeyspaceListener, url: &str, n: u64) {
    eventually(FAILSAFE, &format!("subscription {n} confirmed"), || async {
        listener.subscriptions() >= n
    })
    .await;
    assert!(notify_events(url).contains('K'), "{}", notify_events(url));
    assert!(numpat(url) >= 1, "the server has no pattern subscription");
}

/// Waits until the listener delivered a wake after `before` (its count
/// before the SET just written).
async fn woken(listener: &KeyspaceListener, before: u64, what: &str) {
    eventually(FAILSAFE, &format!("a wake for {what}"), || async {
        listener.wakes() > before
    })
    .await;
}

/// (Named for the 30 s poll it once ran with; the poll is hours long now.)
#[actix_rt::test]
async fn flags_act_within_a_second_with_a_30_second_poll() {
    let mut h = Harness::new();
    let users = user_table();
    h.primary.create_table(users.clone(), true);
    h.primary
        .insert_many(&users.id, (1..=100).map(|i| user(i, "n")));
    let mut config = fast_config();
    config.poll_interval = POLL;
    let run = h.start(config);
    eventually(FAILSAFE, "discovered and paused", || async {
        run.board.get("User").map(|s| s.state) == Some(TableState::Paused)
    })
    .await;
    let wake = ctsync::state::keyspace::wake_tables(run.supervisor.clone());
    let listener = ctsync::state::keyspace::start(&h.redis.url(), wake).expect("listener");
    subscribed(&listener, &h.redis.url(), 1).await;

    let began = Instant::now();
    let before = listener.wakes();
    h.set(&keys::enabled(&users.id), "true").await;
    woken(&listener, before, "enable").await;
    eventually(FAILSAFE, "initial load", || async {
        h.get(&keys::version(&users.id)).await.is_some()
    })
    .await;
    let enable = began.elapsed();
    let enable_wakes = listener.wakes() - before;
    h.wait_equal(&users.id).await;

    let loads = h.replica.loads_started(&users.id);
    let began = Instant::now();
    let before = listener.wakes();
    h.set(&keys::force_full_load(&users.id), "true").await;
    woken(&listener, before, "force").await;
    eventually(FAILSAFE, "forced load ran", || async {
        h.replica.loads_started(&users.id) > loads
    })
    .await;
    let force = began.elapsed();
    let force_wakes = listener.wakes() - before;

    let began = Instant::now();
    let before = listener.wakes();
    h.set(&keys::enabled(&users.id), "false").await;
    woken(&listener, before, "disable").await;
    eventually(FAILSAFE, "paused", || async {
        run.board.get("User").map(|s| s.state) == Some(TableState::Paused)
    })
    .await;
    let disable = began.elapsed();
    let disable_wakes = listener.wakes() - before;
    println!(
        "with a 6 h poll: enable {:.3} s ({enable_wakes} wakes), force {:.3} s ({force_wakes}), disable {:.3} s ({disable_wakes})",
        enable.as_secs_f64(),
        force.as_secs_f64(),
        disable.as_secs_f64()
    );

    // A restarted Redis forgot the setting: the listener applies it again
    // and subscribes again, and a flag written after that acts at once.
    h.redis.restart();
    subscribed(&listener, &h.redis.url(), 2).await;
    let loads = h.replica.loads_started(&users.id);
    let before = listener.wakes();
    h.set(&keys::force_full_load(&users.id), "true").await;
    h.set(&keys::enabled(&users.id), "true").await;
    woken(&listener, before, "enable after the restart").await;
    eventually(FAILSAFE, "loaded again after the restart", || async {
        h.replica.loads_started(&users.id) > loads
            && h.get(&keys::version(&users.id)).await.is_some()
    })
    .await;
}
