//! Flags act within a second: with a 30 s poll, enabling, forcing a load and
//! disabling through redis-cli-style SETs take effect at once, through
//! Redis keyspace notifications (a real redis-server), which are turned on
//! again after Redis restarts.

mod support;

use std::time::{Duration, Instant};

use ctsync_actors::keys;
use ctsync_actors::status::TableState;
use support::fixtures::*;
use support::{eventually, fast_config, Harness};

/// The bound asserted (figures are printed; the target is under a second).
const BOUND: Duration = Duration::from_secs(3);

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

#[actix_rt::test]
async fn flags_act_within_a_second_with_a_30_second_poll() {
    let mut h = Harness::new();
    let users = user_table();
    h.primary.create_table(users.clone(), true);
    h.primary
        .insert_many(&users.id, (1..=100).map(|i| user(i, "n")));
    let mut config = fast_config();
    config.poll_interval = Duration::from_secs(30);
    let run = h.start(config);
    eventually(Duration::from_secs(10), "discovered and paused", || async {
        run.board.get("User").map(|s| s.state) == Some(TableState::Paused)
    })
    .await;
    let wake = ctsync::state::keyspace::wake_tables(run.supervisor.clone());
    let _listener = ctsync::state::keyspace::start(&h.redis.url(), wake).expect("listener");
    eventually(Duration::from_secs(10), "notifications enabled", || async {
        notify_events(&h.redis.url()).contains('K')
    })
    .await;

    let began = Instant::now();
    h.set(&keys::enabled(&users.id), "true").await;
    h.wait_loaded(&users.id).await;
    let enable = began.elapsed();

    let before = h.replica.loads_started(&users.id);
    let began = Instant::now();
    h.set(&keys::force_full_load(&users.id), "true").await;
    eventually(Duration::from_secs(10), "forced load ran", || async {
        h.replica.loads_started(&users.id) > before
    })
    .await;
    let force = began.elapsed();

    let began = Instant::now();
    h.set(&keys::enabled(&users.id), "false").await;
    eventually(Duration::from_secs(10), "paused", || async {
        run.board.get("User").map(|s| s.state) == Some(TableState::Paused)
    })
    .await;
    let disable = began.elapsed();
    println!(
        "with a 30 s poll: enable {:.3} s, force {:.3} s, disable {:.3} s",
        enable.as_secs_f64(),
        force.as_secs_f64(),
        disable.as_secs_f64()
    );
    for (what, took) in [("enable", enable), ("force", force), ("disable", disable)] {
        assert!(took < BOUND, "{what} took {took:?}");
    }

    // A restarted Redis forgot the setting: the listener applies it again.
    h.redis.restart();
    eventually(
        Duration::from_secs(15),
        "notifications enabled again",
        || async { notify_events(&h.redis.url()).contains('K') },
    )
    .await;
}
