//! One contract for both state stores: the simulation runs on
//! `MemoryState`, production on `RedisState` (a real redis-server here), so
//! every behaviour the pipeline relies on is checked against both: default
//! flags never overwrite, the marker key, versions and their errors, the
//! compare-and-set of `force_full_load`, renames, publishing, parking,
//! leases and the refusal of a former owner's writes.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ctsync::state::RedisState;
use ctsync_actors::ddl::ParkedDdl;
use ctsync_actors::fence::Claim;
use ctsync_actors::keys;
use ctsync_actors::memory::MemoryState;
use ctsync_actors::model::{PrimaryIdentity, TableId};
use ctsync_actors::ports::{Advance, LeaseGrant, LoadProgress, Marker, StateStore};
use ctsync_actors::Error;
use support::RedisServer;

/// Raw key access, as an operator's redis-cli has it.
#[async_trait]
trait Raw {
    async fn raw_get(&self, key: &str) -> Option<String>;
    async fn raw_set(&self, key: &str, value: &str);
    async fn raw_list(&self, key: &str) -> Vec<String>;
}

#[async_trait]
impl Raw for MemoryState {
    async fn raw_get(&self, key: &str) -> Option<String> {
        self.get(key)
    }
    async fn raw_set(&self, key: &str, value: &str) {
        self.set(key, value)
    }
    async fn raw_list(&self, key: &str) -> Vec<String> {
        self.list(key)
    }
}

#[async_trait]
impl Raw for RedisState {
    async fn raw_get(&self, key: &str) -> Option<String> {
        self.get(key).await.expect("GET")
    }
    async fn raw_set(&self, key: &str, value: &str) {
        self.set(key, value).await.expect("SET")
    }
    async fn raw_list(&self, key: &str) -> Vec<String> {
        self.list(key).await.expect("LRANGE")
    }
}

async fn contract<S: StateStore + Raw>(store: Arc<S>) {
    let user = TableId::new("dbo", "User");
    let dotted = TableId::new("dbo", "x.y");
    let identity = PrimaryIdentity {
        broker_guid: "g".into(),
        create_date: "d".into(),
    };

    // Default flags: created once, never overwritten; the marker too.
    store.raw_set(&keys::enabled(&user), "true").await;
    assert_eq!(
        store
            .ensure_flags(&[user.clone(), dotted.clone()])
            .await
            .expect("flags"),
        Marker::Created
    );
    assert_eq!(
        store
            .ensure_flags(std::slice::from_ref(&user))
            .await
            .expect("flags"),
        Marker::Present
    );
    assert_eq!(
        store.raw_get(&keys::enabled(&user)).await.as_deref(),
        Some("true")
    );
    assert_eq!(
        store.raw_get("mssql_sync:enabled:[x.y]").await.as_deref(),
        Some("false")
    );
    let flags = store.flags(&user).await.expect("flags");
    assert!(flags.enabled && !flags.force_full_load);
    // Many tables' keys at once read what the single reads read.
    store.raw_set(&keys::version(&dotted), "oops").await;
    let many = store
        .table_keys(&[user.clone(), dotted.clone(), TableId::new("dbo", "Unknown")])
        .await
        .expect("keys");
    assert_eq!(many.len(), 3);
    assert_eq!(many[0].0, flags);
    assert_eq!(many[0].1, None);
    assert_eq!(many[1].1.as_deref(), Some("oops"));
    assert!(!many[2].0.enabled);
    assert!(store.table_keys(&[]).await.expect("none").is_empty());

    // The owner's writes go through with its claim in the table's lease.
    let ttl = Duration::from_secs(30);
    let lease = keys::table_lease(&user);
    let grants = store
        .acquire_leases(std::slice::from_ref(&lease), "a", ttl)
        .await
        .expect("lease");
    assert_eq!(grants, vec![LeaseGrant::Acquired]);
    let claim = Claim::new("a", 7);
    assert!(store.set_lease_claim(&lease, &claim).await.expect("claim"));
    let claim = &claim;

    // Versions: absent, set, unreadable values are errors naming the key.
    assert_eq!(store.version(&user).await.expect("version"), None);
    store.set_version(&user, 42, claim).await.expect("set");
    assert_eq!(
        store.raw_get("mssql_sync:version:User").await.as_deref(),
        Some("42")
    );
    for bad in ["abc", "-5"] {
        store.raw_set("mssql_sync:version:User", bad).await;
        assert!(matches!(
            store.version(&user).await,
            Err(Error::BadValue { ref key, .. }) if key == "mssql_sync:version:User"
        ));
    }

    // finish_full_load: version + identity, and the force flag reset only
    // if the load started forced and it still says "true".
    store.raw_set(&keys::force_full_load(&user), "true").await;
    store
        .finish_full_load(&user, 50, &identity, false, claim)
        .await
        .expect("finish");
    assert_eq!(
        store
            .raw_get(&keys::force_full_load(&user))
            .await
            .as_deref(),
        Some("true")
    );
    assert_eq!(store.version(&user).await.expect("version"), Some(50));
    store.raw_set(&keys::force_full_load(&user), " TRUE ").await;
    store
        .finish_full_load(&user, 51, &identity, true, claim)
        .await
        .expect("finish");
    assert_eq!(
        store
            .raw_get(&keys::force_full_load(&user))
            .await
            .as_deref(),
        Some("false")
    );
    assert_eq!(
        store.primary_identity(&user).await.expect("id"),
        Some(identity.clone())
    );
    // A cycle's keys in one read say what the single reads say.
    let keys = store.cycle_keys(&user).await.expect("cycle keys");
    assert_eq!(keys.flags, store.flags(&user).await.expect("flags"));
    assert_eq!(keys.version, store.version(&user).await.expect("version"));
    assert_eq!(
        keys.identity,
        store.primary_identity(&user).await.expect("id")
    );
    // A version no one can read fails the read, as `version` does.
    assert!(matches!(
        store.cycle_keys(&dotted).await,
        Err(ctsync_actors::Error::BadValue { .. })
    ));
    assert_eq!(
        store.cycle_keys(&user).await.expect("cycle keys").identity,
        Some(identity.clone())
    );

    // Renames move every key; publish and park write what operators read.
    let progress = LoadProgress {
        synced: 1,
        total: 2,
        started_at: 3,
        updated_at: 4,
        resumed_at: Some(1),
    };
    store
        .set_progress(&user, &progress, claim)
        .await
        .expect("progress");
    let renamed = TableId::new("dbo", "Person");
    store
        .rename_table(&user, &renamed, claim)
        .await
        .expect("rename");
    assert_eq!(store.raw_get(&keys::version(&user)).await, None);
    assert_eq!(store.version(&renamed).await.expect("version"), Some(51));
    assert!(store
        .raw_get(&keys::progress(&renamed))
        .await
        .is_some_and(|p| p.contains("\"startedAt\":3") && p.contains("\"resumedAt\":1")));
    store
        .publish(&[(keys::CONFIG_PRIMARY_URL.into(), "h:1/db".into())])
        .await
        .expect("publish");
    assert_eq!(
        store.raw_get(keys::CONFIG_PRIMARY_URL).await.as_deref(),
        Some("h:1/db")
    );
    store
        .park_ddl(&ParkedDdl {
            message_type: "t".into(),
            body: "<x/>".into(),
            error: "e".into(),
            parked_at: 9,
        })
        .await
        .expect("park");
    assert_eq!(store.raw_list(keys::DDL_FAILED).await.len(), 1);
}

/// Leases: taken, renewed, refused to others, given back, expired; and a
/// claim that is no longer in the lease writes nothing.
async fn lease_contract<S: StateStore + Raw>(store: Arc<S>) {
    let t = TableId::new("dbo", "T");
    let lease = keys::table_lease(&t);
    let names = vec![lease.clone(), keys::singleton_lease("module_sync")];
    let ttl = Duration::from_millis(400);
    assert_eq!(
        store.heartbeat("a", ttl).await.expect("heartbeat"),
        vec!["a".to_string()]
    );
    assert_eq!(
        store.heartbeat("b", ttl).await.expect("heartbeat"),
        vec!["a".to_string(), "b".to_string()]
    );
    let a = store.acquire_leases(&names, "a", ttl).await.expect("a");
    assert_eq!(a, vec![LeaseGrant::Acquired, LeaseGrant::Acquired]);
    let claim_a = Claim::new("a", 1);
    assert!(store
        .set_lease_claim(&lease, &claim_a)
        .await
        .expect("claim"));
    let b = store.acquire_leases(&names, "b", ttl).await.expect("b");
    assert_eq!(b[0], LeaseGrant::Held("a 1".into()));
    assert!(!store
        .set_lease_claim(&lease, &Claim::new("b", 2))
        .await
        .expect("claim"));
    let again = store.acquire_leases(&names, "a", ttl).await.expect("renew");
    assert_eq!(again, vec![LeaseGrant::Renewed, LeaseGrant::Renewed]);
    store
        .set_version(&t, 5, &claim_a)
        .await
        .expect("owner writes");

    // "a" stops renewing (paused): its heartbeat and lease run out, "b"
    // takes the table, and a's late writes are refused, changing nothing.
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        store.heartbeat("b", ttl).await.expect("heartbeat"),
        vec!["b".to_string()]
    );
    let b = store.acquire_leases(&names, "b", ttl).await.expect("b");
    assert_eq!(b, vec![LeaseGrant::Acquired, LeaseGrant::Acquired]);
    let claim_b = Claim::new("b", 2);
    assert!(store
        .set_lease_claim(&lease, &claim_b)
        .await
        .expect("claim"));
    store
        .set_version(&t, 9, &claim_b)
        .await
        .expect("new owner writes");
    let identity = PrimaryIdentity {
        broker_guid: "g".into(),
        create_date: "d".into(),
    };
    let refused = [
        store.set_version(&t, 6, &claim_a).await,
        store
            .finish_full_load(&t, 6, &identity, true, &claim_a)
            .await,
        store.set_primary_identity(&t, &identity, &claim_a).await,
        store
            .set_progress(&t, &LoadProgress::default(), &claim_a)
            .await,
        store
            .rename_table(&t, &TableId::new("dbo", "U"), &claim_a)
            .await,
    ];
    for r in refused {
        assert!(matches!(r, Err(Error::Fenced { .. })), "{r:?}");
    }
    assert_eq!(store.version(&t).await.expect("version"), Some(9));
    assert_eq!(store.raw_get(&keys::primary_identity(&t)).await, None);
    assert_eq!(store.raw_get(&keys::progress(&t)).await, None);

    // Only the holder gives a lease back; then anyone may take it.
    store.release_leases(&names, "a").await.expect("release");
    let b = store.acquire_leases(&names, "b", ttl).await.expect("b");
    assert_eq!(b, vec![LeaseGrant::Renewed, LeaseGrant::Renewed]);
    store.release_leases(&names, "b").await.expect("release");
    store.leave("b").await.expect("leave");
    let c = store.acquire_leases(&names, "c", ttl).await.expect("c");
    assert_eq!(c, vec![LeaseGrant::Acquired, LeaseGrant::Acquired]);
    assert_eq!(
        store.heartbeat("c", ttl).await.expect("heartbeat"),
        vec!["c".to_string()]
    );
}

/// Discovery's two round trips and the API's one do what the separate
/// calls do.
async fn discovery_contract<S: StateStore + Raw>(store: Arc<S>) {
    let ttl = Duration::from_secs(5);
    let (t, u) = (TableId::new("dbo", "T"), TableId::new("sales", "U"));
    store.raw_set(&keys::enabled(&u), "true").await;
    let (marker, instances) = store
        .discovery_start(Some(&[t.clone(), u.clone()]), "a", ttl)
        .await
        .expect("start");
    assert_eq!(marker, Some(Marker::Created));
    assert_eq!(instances, vec!["a".to_string()]);
    // New tables' flags are created, an operator's value is kept.
    assert_eq!(
        store.raw_get(&keys::enabled(&t)).await.as_deref(),
        Some("false")
    );
    assert_eq!(
        store.raw_get(&keys::enabled(&u)).await.as_deref(),
        Some("true")
    );
    assert_eq!(
        store.raw_get(&keys::force_full_load(&u)).await.as_deref(),
        Some("false")
    );
    let (marker, _) = store
        .discovery_start(Some(&[]), "b", ttl)
        .await
        .expect("start");
    assert_eq!(marker, Some(Marker::Present));
    let (marker, instances) = store.discovery_start(None, "a", ttl).await.expect("start");
    assert_eq!(marker, None, "the marker is not touched without a listing");
    assert_eq!(instances, vec!["a".to_string(), "b".to_string()]);

    let names = vec![keys::table_lease(&t), keys::table_lease(&u)];
    let (grants, _) = store
        .discovery_finish(&names, "a", ttl, r#"{"T":{}}"#, &[])
        .await
        .expect("finish");
    assert_eq!(grants, vec![LeaseGrant::Acquired, LeaseGrant::Acquired]);
    let (grants, _) = store
        .discovery_finish(&names[..1], "b", ttl, "{}", &[])
        .await
        .expect("finish");
    assert_eq!(grants, vec![LeaseGrant::Held("a 0".into())]);

    // Idle advances ride along, each on its own terms: T moves (claim
    // held, key says 5), U's key says something else, a stranger's claim
    // is refused.
    let claim = Claim::new("a", 1);
    for table in [&t, &u] {
        assert!(store
            .set_lease_claim(&keys::table_lease(table), &claim)
            .await
            .expect("claim"));
    }
    store.set_version(&t, 5, &claim).await.expect("version");
    store.raw_set(&keys::version(&u), " 7 ").await;
    let advance = |table: &TableId, claim: &Claim, from: i64| Advance {
        table: table.clone(),
        claim: claim.clone(),
        from,
        to: 9,
    };
    let (grants, moved) = store
        .discovery_finish(
            &[],
            "a",
            ttl,
            r#"{"U":{}}"#,
            &[advance(&t, &claim, 5), advance(&u, &claim, 6)],
        )
        .await
        .expect("finish");
    assert!(grants.is_empty());
    assert_eq!(moved, vec![t.clone()]);
    assert_eq!(store.version(&t).await.expect("version"), Some(9));
    assert_eq!(
        store.raw_get(&keys::version(&u)).await.as_deref(),
        Some(" 7 ")
    );
    let moved = store
        .advance_versions(&[advance(&u, &Claim::new("b", 1), 7), advance(&u, &claim, 7)])
        .await
        .expect("advance");
    assert_eq!(moved, vec![u.clone()], "the stranger's claim moved nothing");
    assert_eq!(store.version(&u).await.expect("version"), Some(9));

    let (statuses, table_keys) = store
        .statuses_and_keys(&[t.clone(), u.clone()])
        .await
        .expect("overview");
    assert_eq!(statuses, store.statuses().await.expect("statuses"));
    assert!(statuses.contains(&("a".to_string(), r#"{"U":{}}"#.to_string())));
    assert_eq!(
        table_keys,
        store
            .table_keys(&[t.clone(), u.clone()])
            .await
            .expect("keys")
    );
    assert!(!table_keys[0].0.enabled && table_keys[1].0.enabled);
    let (_, none) = store.statuses_and_keys(&[]).await.expect("overview");
    assert!(none.is_empty());
}

#[actix_rt::test]
async fn discovery_round_trips_keep_the_contract_in_memory() {
    discovery_contract(Arc::new(MemoryState::new())).await;
}

#[actix_rt::test]
async fn discovery_round_trips_keep_the_contract_on_redis() {
    let redis = RedisServer::start();
    discovery_contract(Arc::new(RedisState::new(&redis.url()).expect("url"))).await;
}

#[actix_rt::test]
async fn leases_keep_the_contract_in_memory() {
    lease_contract(Arc::new(MemoryState::new())).await;
}

#[actix_rt::test]
async fn leases_keep_the_contract_on_redis() {
    let redis = RedisServer::start();
    lease_contract(Arc::new(RedisState::new(&redis.url()).expect("url"))).await;
}

#[actix_rt::test]
async fn the_memory_state_store_keeps_the_contract() {
    contract(Arc::new(MemoryState::new())).await;
}

#[actix_rt::test]
async fn the_redis_state_store_keeps_the_contract() {
    let redis = RedisServer::start();
    contract(Arc::new(RedisState::new(&redis.url()).expect("url"))).await;
}

/// The same contracts as the shipped ACL user (`redis/ctsync.acl`, without
/// CONFIG): every operation of the state store is allowed by it.
#[actix_rt::test]
async fn the_redis_state_store_keeps_every_contract_as_the_shipped_acl_user() {
    let acl_user = || {
        let (redis, url) = support::redis_server::start_with_shipped_acl(false, &[]);
        (redis, Arc::new(RedisState::new(&url).expect("url")))
    };
    let (_redis, store) = acl_user();
    contract(store).await;
    let (_redis, store) = acl_user();
    lease_contract(store).await;
    let (_redis, store) = acl_user();
    discovery_contract(store).await;
}

#[actix_rt::test]
async fn losing_redis_data_loses_the_marker_in_both() {
    let mut redis = RedisServer::start();
    let real = RedisState::new(&redis.url()).expect("url");
    let memory = MemoryState::new();
    let t = [TableId::new("dbo", "T")];
    assert_eq!(real.ensure_flags(&t).await.expect("flags"), Marker::Created);
    assert_eq!(
        memory.ensure_flags(&t).await.expect("flags"),
        Marker::Created
    );
    redis.restart(); // no persistence
    memory.flush();
    assert_eq!(real.ensure_flags(&t).await.expect("flags"), Marker::Created);
    assert_eq!(
        memory.ensure_flags(&t).await.expect("flags"),
        Marker::Created
    );
}
