//! Two ctsync instances (two supervisors with their own instance ids, one
//! actor system) over one in-memory primary and replica and one real
//! redis-server: they split the tables by lease, a dead or frozen one's
//! tables move to the other, and nothing the old owner sends afterwards
//! lands. The in-memory replica records the token of every commit, so
//! "never written by two owners" is checked as "a table's commit tokens
//! never go down".

mod support;

use std::sync::Arc;
use std::time::Duration;

use ctsync::state::RedisState;
use ctsync_actors::actors::ownership::preferred_owner;
use ctsync_actors::actors::{self, Ports, Running};
use ctsync_actors::keys;
use ctsync_actors::memory::faults::{Fault, FaultPlan, Faulty, Rule, Site};
use ctsync_actors::model::{TableId, TableSchema};
use ctsync_actors::ports::{DdlQueue, Primary, Replica, StateStore};
use ctsync_actors::sync::SyncConfig;
use support::fixtures::{user, user_table};
use support::{eventually, fast_config, Harness};

const WAIT: Duration = Duration::from_secs(20);
const TTL: Duration = Duration::from_millis(600);

struct Instance {
    id: String,
    plan: Arc<FaultPlan>,
    running: Running,
}

fn config(id: &str) -> SyncConfig {
    let mut c = fast_config();
    c.instance.id = id.into();
    c.instance.lease_ttl = TTL;
    c.full_load_page_size = 200;
    c.change_page_size = 50;
    c
}

/// An instance with its own Redis connection, its ports wrapped in its own
/// fault plan (to kill or freeze it).
fn start(h: &Harness, id: &str) -> Instance {
    start_with(h, config(id))
}

/// [`start`] with its own settings.
fn start_with(h: &Harness, config: SyncConfig) -> Instance {
    let id = config.instance.id.clone();
    let plan = FaultPlan::new();
    let primary: Arc<dyn Primary> = h.primary.clone();
    let replica: Arc<dyn Replica> = h.replica.clone();
    let state: Arc<dyn StateStore> = Arc::new(RedisState::new(&h.redis.url()).expect("redis url"));
    let queue: Arc<dyn DdlQueue> = h.queue.clone();
    let running = actors::start(
        Ports {
            primary: Arc::new(Faulty::new(primary, plan.clone())),
            replica: Arc::new(Faulty::new(replica, plan.clone())),
            state: Arc::new(Faulty::new(state, plan.clone())),
            ddl_queue: Some(Arc::new(Faulty::new(queue, plan.clone()))),
        },
        config,
    );
    Instance { id, plan, running }
}

fn table(name: &str) -> TableSchema {
    let mut s = user_table();
    s.id = TableId::new("dbo", name);
    s
}

/// `n` table names whose preferred owner among `instances` is `owner`.
fn names_owned_by(owner: &str, instances: &[String], prefix: &str, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|name| {
            preferred_owner(&TableId::new("dbo", name.as_str()), instances) == Some(owner)
        })
        .take(n)
        .collect()
}

/// Instances "a" and "b" and one loaded table (named from `prefix`) that
/// rendezvous hashing gives to "a", once "a" runs it and has claimed it.
async fn one_table_run_by_a(h: &Harness, prefix: &str) -> (TableId, Instance, Instance) {
    let both = vec!["a".to_string(), "b".to_string()];
    let names = names_owned_by("a", &both, prefix, 1);
    let t = h
        .enabled_table(table(&names[0]), (1..=20).map(|k| user(k, "x")))
        .await;
    let a = start(h, "a");
    let b = start(h, "b");
    h.wait_loaded(&t).await;
    // Started together, either may take the table first; it settles on "a".
    eventually(WAIT, "a runs the table", || async {
        owner(h, &t).await.as_deref() == Some("a")
            && h.replica.fence_of(&t).is_some_and(|c| c.owner == "a")
    })
    .await;
    (t, a, b)
}

/// The instance holding the table's lease, if any.
async fn owner(h: &Harness, t: &TableId) -> Option<String> {
    h.get(&keys::table_lease(t))
        .await
        .and_then(|v| v.split(' ').next().map(str::to_string))
}

fn assert_tokens_never_go_down(h: &Harness, t: &TableId) {
    let tokens = h.replica.commit_tokens(t);
    assert!(!tokens.is_empty(), "{t} was never written");
    assert!(
        tokens.windows(2).all(|w| w[0] <= w[1]),
        "{t} was written by an older owner after a newer one: {tokens:?}"
    );
}

/// `GET /api/tables` as the instance's HTTP server answers it.
async fn api_tables(h: &Harness, inst: &Instance) -> serde_json::Value {
    use actix_web::{test, web, App};
    let mut shared = h.http_state(inst.running.board.clone());
    shared.instance = inst.id.clone();
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(shared))
            .configure(ctsync::http::routes),
    )
    .await;
    test::call_and_read_body_json(
        &app,
        test::TestRequest::get().uri("/api/tables").to_request(),
    )
    .await
}

fn fenced_metric(handle: &metrics_exporter_prometheus::PrometheusHandle, t: &TableId) -> f64 {
    let prefix = format!(
        "{}{{table=\"{}\"}} ",
        ctsync_actors::telemetry::FENCED_WRITES,
        t.key_name()
    );
    handle
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[actix_rt::test]
async fn two_instances_split_the_tables_and_never_write_one_table_together() {
    let h = Harness::new();
    let both = vec!["a".to_string(), "b".to_string()];
    let mut ids = Vec::new();
    for i in 0..8 {
        let id = h
            .enabled_table(table(&format!("T{i}")), (1..=40).map(|k| user(k, "x")))
            .await;
        ids.push(id);
    }
    // "a" alone takes every table; "b" joins and gets its share handed over.
    let a = start(&h, "a");
    for t in &ids {
        h.wait_equal(t).await;
    }
    for t in &ids {
        assert_eq!(owner(&h, t).await.as_deref(), Some("a"));
    }
    let b = start(&h, "b");
    eventually(
        WAIT,
        "the tables are split as rendezvous hashing says",
        || async {
            for t in &ids {
                let want = preferred_owner(t, &both).map(str::to_string);
                if owner(&h, t).await != want {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let owned_by = |who: &str| {
        ids.iter()
            .filter(|t| preferred_owner(t, &both) == Some(who))
            .count()
    };
    assert!(owned_by("a") > 0 && owned_by("b") > 0, "both got tables");

    // Changes on every table replicate, whoever owns it.
    for (i, t) in ids.iter().enumerate() {
        h.primary.upsert(t, user(1, &format!("changed {i}")));
        h.primary.upsert(t, user(100 + i as i32, "new"));
    }
    for t in &ids {
        h.wait_equal(t).await;
        assert_tokens_never_go_down(&h, t);
    }
    // Each instance's page shows only its own tables.
    let shown_a: Vec<String> = a.running.board.snapshot().into_keys().collect();
    let shown_b: Vec<String> = b.running.board.snapshot().into_keys().collect();
    assert!(
        shown_a.iter().all(|k| !shown_b.contains(k)),
        "{shown_a:?} / {shown_b:?}"
    );
    assert_eq!(h.replica.fenced_commits(), 0, "no write had to be refused");

    // Either instance's API lists every table with the instance running it.
    for inst in [&a, &b] {
        let listed = api_tables(&h, inst).await;
        assert_eq!(listed["instance"], inst.id.as_str());
        let tables = listed["tables"].as_array().expect("tables");
        assert_eq!(tables.len(), ids.len(), "{listed}");
        for t in &ids {
            let row = tables
                .iter()
                .find(|r| r["name"] == t.key_name().as_str())
                .expect("listed");
            assert_eq!(
                row["instance"].as_str().map(str::to_string),
                preferred_owner(t, &both).map(str::to_string),
                "{t} on {}'s page",
                inst.id
            );
            assert_eq!(row["state"], "incremental");
        }
    }
    // So does `ctsync tables`, from what the instances published in Redis,
    // when no daemon answers its --api.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ctsync"))
        .args(["tables", "--json", "--api", "127.0.0.1:9"])
        .env("REDIS_URL", h.redis.url())
        .output()
        .expect("ctsync tables");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for t in &ids {
        let row = listed
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == t.key_name().as_str()))
            .expect("listed");
        assert_eq!(
            row["instance"].as_str().map(str::to_string),
            preferred_owner(t, &both).map(str::to_string)
        );
        assert_eq!(row["state"], "incremental");
    }

    // A graceful stop gives the leases back: "b" runs everything at once.
    a.running.shutdown().await;
    eventually(WAIT, "b took every table", || async {
        for t in &ids {
            if owner(&h, t).await.as_deref() != Some("b") {
                return false;
            }
        }
        true
    })
    .await;
    for t in &ids {
        h.primary.upsert(t, user(2, "after the handover"));
    }
    for t in &ids {
        h.wait_equal(t).await;
        assert_tokens_never_go_down(&h, t);
    }
    b.running.shutdown().await;
}

#[actix_rt::test]
async fn a_killed_instance_loses_its_load_and_backlog_to_the_other_and_cannot_commit_when_revived()
{
    let metrics = ctsync::telemetry::install().expect("recorder");
    let h = Harness::new();
    let both = vec!["a".to_string(), "b".to_string()];
    let names = names_owned_by("a", &both, "Owned", 2);
    let load = TableId::new("dbo", names[0].as_str());
    let backlog = TableId::new("dbo", names[1].as_str());
    h.enabled_table(table(&names[1]), (1..=10).map(|k| user(k, "x")))
        .await;
    h.primary.create_table(table(&names[0]), true);
    h.primary
        .insert_many(&load, (1..=2_000).map(|k| user(k, "row")));
    let a = start(&h, "a");
    let b = start(&h, "b");
    h.wait_loaded(&backlog).await;
    // Started together, either may take a table first; it settles on "a".
    eventually(WAIT, "a runs the table", || async {
        owner(&h, &backlog).await.as_deref() == Some("a")
    })
    .await;

    // A backlog of 600 changes (12 pages) and a 2,000-row load (10 pages),
    // both slow enough to be caught in the middle.
    h.primary
        .delay_changes_pages(&backlog, Duration::from_millis(30));
    h.replica.set_insert_delay(Duration::from_millis(30));
    for k in 1..=600 {
        h.primary.upsert(&backlog, user(k, "backlog"));
    }
    let before = h.replica.commit_tokens(&backlog).len();
    h.set(&keys::enabled(&load), "true").await;
    eventually(
        WAIT,
        "a is in the middle of the load and the backlog",
        || async {
            let loading = h
                .replica
                .table_record(&load)
                .load
                .is_some_and(|l| l.rows > 0 && l.rows < 2_000);
            let applying = h.replica.commit_tokens(&backlog).len() >= before + 2
                && h.replica.rows(&backlog) != h.primary.rows(&backlog);
            loading && applying
        },
    )
    .await;
    assert_eq!(owner(&h, &load).await.as_deref(), Some("a"));
    let a_claim = h.replica.fence_of(&load).expect("a's claim");

    // "a" dies just as its next write leaves: the write is held, unsent.
    a.plan.pause_on_next(Site::ReplicaWrite);
    eventually(WAIT, "a froze on a write", || async { a.plan.is_paused() }).await;
    a.plan.kill();
    h.replica.set_insert_delay(Duration::ZERO);
    h.primary.delay_changes_pages(&backlog, Duration::ZERO);

    // "b" takes both tables once a's leases run out, and finishes them.
    eventually(WAIT, "b took the tables over", || async {
        owner(&h, &load).await.as_deref() == Some("b")
            && owner(&h, &backlog).await.as_deref() == Some("b")
    })
    .await;
    h.wait_equal(&load).await;
    h.wait_equal(&backlog).await;
    assert_eq!(
        h.replica.loads_started(&load),
        1,
        "b resumed a's load from its last committed page instead of starting over"
    );
    let b_claim = h.replica.fence_of(&load).expect("b's claim");
    assert_eq!(b_claim.owner, "b");
    assert!(b_claim.token > a_claim.token);

    // "a" comes back with the state it had: its held write is refused by
    // the replica's fence, and counted.
    let refused_before = h.replica.fenced_commits();
    a.plan.revive();
    a.plan.resume();
    eventually(WAIT, "a's late write was refused", || async {
        h.replica.fenced_commits() > refused_before
    })
    .await;
    let counted: f64 = [&load, &backlog]
        .iter()
        .map(|t| fenced_metric(&metrics, t))
        .sum();
    assert!(counted >= 1.0, "ctsync_fenced_writes_total counts it");

    // Whatever runs the tables from now on, they stay equal.
    h.primary.upsert(&load, user(1, "after"));
    h.primary.upsert(&backlog, user(1, "after"));
    h.wait_equal(&load).await;
    h.wait_equal(&backlog).await;
    assert_tokens_never_go_down(&h, &load);
    assert_tokens_never_go_down(&h, &backlog);
    a.running.shutdown().await;
    b.running.shutdown().await;
    assert_eq!(a.id, "a");
}

#[actix_rt::test]
async fn an_instance_frozen_past_its_lease_lands_no_write_when_it_wakes() {
    let h = Harness::new();
    let (t, a, b) = one_table_run_by_a(&h, "Frozen").await;

    // "a" freezes (its Redis connection and everything else) just as it
    // sends the write of a change, and stays frozen past its TTL.
    a.plan.pause_on_next(Site::ReplicaWrite);
    h.primary.upsert(&t, user(1, "while a sleeps"));
    eventually(WAIT, "a froze on a write", || async { a.plan.is_paused() }).await;
    eventually(WAIT, "b took the table over", || async {
        owner(&h, &t).await.as_deref() == Some("b")
    })
    .await;
    h.wait_equal(&t).await;
    let b_tokens = h.replica.commit_tokens(&t);
    let version = h.get(&keys::version(&t)).await;

    // "a" wakes up: the write it was sending is refused, nothing of it lands.
    let refused_before = h.replica.fenced_commits();
    a.plan.resume();
    eventually(WAIT, "a's late write was refused", || async {
        h.replica.fenced_commits() > refused_before
    })
    .await;
    assert_eq!(
        h.replica.commit_tokens(&t),
        b_tokens,
        "no commit of a landed"
    );
    assert_eq!(h.get(&keys::version(&t)).await, version);
    assert_eq!(h.replica.rows(&t), h.primary.rows(&t));

    // Both keep working afterwards (the table may move back to "a").
    h.primary.upsert(&t, user(2, "later"));
    h.wait_equal(&t).await;
    assert_tokens_never_go_down(&h, &t);
    a.running.shutdown().await;
    b.running.shutdown().await;
}

/// "a"'s discovery hangs in a Redis call (it never answers) for longer
/// than its lease: "b" takes the table over, nothing "a"'s table sends
/// afterwards lands (the fence refuses it), and the hung call ends at the
/// core's call limit, after which "a" runs its discoveries again.
#[actix_rt::test]
async fn a_call_hung_past_the_lease_ends_at_its_limit_and_lands_no_write() {
    let h = Harness::new();
    let both = vec!["a".to_string(), "b".to_string()];
    let name = names_owned_by("a", &both, "Hung", 1).remove(0);
    let t = h
        .enabled_table(table(&name), (1..=20).map(|k| user(k, "x")))
        .await;
    // Past the lease: a call hung this long meets the fencing first.
    let limited = |id: &str| {
        let mut c = config(id);
        c.call_limits = ctsync_actors::ports::CallLimits::all(TTL * 3);
        c
    };
    let a = start_with(&h, limited("a"));
    let b = start_with(&h, limited("b"));
    eventually(WAIT, "a runs the table", || async {
        owner(&h, &t).await.as_deref() == Some("a")
            && h.replica.fence_of(&t).is_some_and(|c| c.owner == "a")
    })
    .await;
    let discoveries = |i: &Instance| {
        i.plan
            .calls()
            .get(&(Site::StateWrite, "discovery_start"))
            .copied()
            .unwrap_or(0)
    };
    a.plan.inject(
        Rule::fault(Fault::Hang { effect: false })
            .at(Site::StateWrite)
            .method("discovery_start"),
    );
    eventually(WAIT, "a's discovery hung", || async {
        !a.plan.injected().is_empty()
    })
    .await;
    let hung_at = discoveries(&a);
    h.primary.upsert(&t, user(1, "while a hangs"));
    eventually(WAIT, "b took the table over", || async {
        owner(&h, &t).await.as_deref() == Some("b")
    })
    .await;
    h.wait_equal(&t).await;
    eventually(
        WAIT,
        "a's hung call ended and a discovers again",
        || async { discoveries(&a) > hung_at },
    )
    .await;
    assert_eq!(
        a.plan.injected().get(&(Site::StateWrite, "hang_before")),
        Some(&1)
    );
    h.primary.upsert(&t, user(2, "later"));
    h.wait_equal(&t).await;
    assert_tokens_never_go_down(&h, &t);
    a.running.shutdown().await;
    b.running.shutdown().await;
}

#[actix_rt::test]
async fn an_instance_that_cannot_reach_the_primary_keeps_its_tables() {
    let h = Harness::new();
    let (t, a, b) = one_table_run_by_a(&h, "Kept").await;
    let claim = h.replica.fence_of(&t).expect("a's claim");

    // Every catalog call of "a" fails for several TTLs (a primary blip seen
    // by one instance): its leases are still renewed, nothing moves.
    let rejects = 150;
    for _ in 0..rejects {
        a.plan.push(Site::PrimaryMeta, Fault::Reject);
    }
    eventually(WAIT, "the primary answered a again", || async {
        let struck: u64 = a
            .plan
            .injected()
            .iter()
            .filter(|((site, _), _)| *site == Site::PrimaryMeta)
            .map(|(_, n)| *n)
            .sum();
        assert_eq!(owner(&h, &t).await.as_deref(), Some("a"), "the table moved");
        struck >= rejects
    })
    .await;
    assert_eq!(
        h.replica.fence_of(&t),
        Some(claim),
        "nobody claimed the table"
    );
    h.primary.upsert(&t, user(3, "after the blip"));
    h.wait_equal(&t).await;
    a.running.shutdown().await;
    b.running.shutdown().await;
}
