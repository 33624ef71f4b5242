//! Flags that act within a second: a blocking subscriber on its own OS
//! thread listens to Redis keyspace notifications for `mssql_sync:*` and
//! hands each changed table to the actor system, which wakes that table
//! at once instead of at its next poll. It adds the classes it needs
//! (`K`, `$`, `g`) to the server's `notify-keyspace-events` without
//! removing any, applies them again after every reconnect (a restarted
//! Redis forgets them), and falls back to polling, saying so once, where
//! the server forbids `CONFIG` (managed Redis).
//!
//! Notifications reach ctsync only once the server has confirmed the
//! `PSUBSCRIBE`: a flag written before that, at start or while the
//! listener reconnects after a Redis restart, acts at the table's next poll.
//! [`KeyspaceListener::subscriptions`] counts the confirmed subscriptions
//! and [`KeyspaceListener::wakes`] the tables woken, so a caller (a test)
//! can wait for the subscription instead of guessing how long it takes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ctsync_actors::model::TableId;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, info, warn};

/// The keyspace classes ctsync needs: keyspace events (`K`) of string
/// commands (`$`: SET) and generic ones (`g`: DEL, RENAME).
const CLASSES: [char; 3] = ['K', '$', 'g'];

/// `current` with ctsync's classes added (order kept, nothing removed).
pub fn merged_classes(current: &str) -> String {
    let mut out = current.to_string();
    // `A` is an alias that covers `$` and `g`.
    for c in CLASSES {
        let covered = out.contains(c) || (c != 'K' && out.contains('A'));
        if !covered {
            out.push(c);
        }
    }
    out
}

/// The table whose operator key a keyspace channel names
/// (`__keyspace@0__:mssql_sync:enabled:User` → `User`).
pub fn table_of_channel(channel: &str) -> Option<TableId> {
    let key = channel.split_once("__:")?.1;
    let rest = key.strip_prefix("mssql_sync:")?;
    let (kind, table) = rest.split_once(':')?;
    match kind {
        "enabled" | "force_full_load" | "version" | "force_requests" => {
            TableId::from_key_name(table)
        }
        _ => None,
    }
}

/// The actor-system end of the bridge: every table received is woken
/// through the supervisor.
pub fn wake_tables(
    supervisor: actix::Addr<ctsync_actors::actors::SupervisorActor>,
) -> UnboundedSender<TableId> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<TableId>();
    actix_rt::spawn(async move {
        while let Some(table) = rx.recv().await {
            supervisor.do_send(ctsync_actors::actors::WakeTable(table));
        }
    });
    tx
}

/// What the subscriber thread has done so far.
#[derive(Default)]
struct Counters {
    subscriptions: AtomicU64,
    wakes: AtomicU64,
}

/// Stops the subscriber thread when dropped.
pub struct KeyspaceListener {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

impl KeyspaceListener {
    /// How many times the subscription to `mssql_sync:*` keyspace
    /// notifications became active, i.e. the server confirmed the
    /// `PSUBSCRIBE` (after `notify-keyspace-events` was applied on the same
    /// connection): 0 until the first, 1 after it, 2 once a reconnect (a
    /// restarted Redis) has subscribed again, and so on. A flag written
    /// while the count has not yet moved past a (re)connect acts at the
    /// table's next poll instead.
    pub fn subscriptions(&self) -> u64 {
        self.counters.subscriptions.load(Ordering::SeqCst)
    }

    /// How many wakes the listener has handed to the actor system: one per
    /// notification that named a table's operator key (`enabled`,
    /// `force_full_load`, `version`, `force_requests`), ctsync's own writes
    /// of those keys included. Counted when handed over; the table's cycle
    /// follows.
    pub fn wakes(&self) -> u64 {
        self.counters.wakes.load(Ordering::SeqCst)
    }
}

impl Drop for KeyspaceListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Starts the subscriber thread; every changed table goes to `wake`.
pub fn start(redis_url: &str, wake: UnboundedSender<TableId>) -> anyhow::Result<KeyspaceListener> {
    let client = redis::Client::open(redis_url)?;
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let (stopping, counting) = (stop.clone(), counters.clone());
    std::thread::Builder::new()
        .name("ctsync-keyspace".into())
        .spawn(move || run(client, wake, stopping, counting))?;
    Ok(KeyspaceListener { stop, counters })
}

fn run(
    client: redis::Client,
    wake: UnboundedSender<TableId>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) {
    let mut said_down = false;
    while !stop.load(Ordering::SeqCst) {
        match listen(&client, &wake, &stop, &counters) {
            Ok(Ending::Stopped) => return,
            Ok(Ending::Forbidden(e)) => {
                warn!(error = %e, "Redis refuses CONFIG SET notify-keyspace-events (managed Redis?): flags act at the next poll instead of within a second");
                return;
            }
            Err(e) => {
                if !said_down {
                    debug!(error = %e, "keyspace notifications unavailable; retrying");
                    said_down = true;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

enum Ending {
    Stopped,
    Forbidden(String),
}

fn listen(
    client: &redis::Client,
    wake: &UnboundedSender<TableId>,
    stop: &AtomicBool,
    counters: &Counters,
) -> redis::RedisResult<Ending> {
    let mut con = client.get_connection_with_timeout(Duration::from_secs(2))?;
    // Bounded, so a server that accepts and never answers is retried; long
    // enough for a busy server to confirm the subscription.
    con.set_read_timeout(Some(Duration::from_secs(5)))?;
    // Applied on every (re)connect: a restarted Redis forgot them.
    let current: Option<Vec<String>> = match redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query(&mut con)
    {
        Ok(v) => Some(v),
        Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => return Err(e),
        // An error reply: an ACL user without CONFIG, or a managed Redis.
        Err(_) => None,
    };
    match current {
        Some(current) => {
            let have = current.get(1).cloned().unwrap_or_default();
            let want = merged_classes(&have);
            if want != have {
                if let Err(e) = redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("notify-keyspace-events")
                    .arg(&want)
                    .query::<()>(&mut con)
                {
                    if e.is_io_error() || e.is_connection_dropped() {
                        return Err(e);
                    }
                    return Ok(Ending::Forbidden(e.to_string()));
                }
                info!(from = %have, to = %want, "enabled Redis keyspace notifications for mssql_sync:* (flags act within a second)");
            }
        }
        None => {
            if counters.subscriptions.load(Ordering::SeqCst) == 0 {
                info!("Redis refuses CONFIG (an ACL user without it, or a managed Redis): subscribed to keyspace notifications anyway; flags act within a second if the server's notify-keyspace-events includes K$g (set it there, docs/redis.md), else at the next poll");
            }
        }
    }
    let mut pubsub = con.as_pubsub();
    // Returns once the server has confirmed the subscription (the redis
    // crate reads replies until the `psubscribe` one, queueing any message
    // that comes first); from then on every SET of a flag is delivered.
    pubsub.psubscribe("__keyspace@*__:mssql_sync:*")?;
    counters.subscriptions.fetch_add(1, Ordering::SeqCst);
    debug!("subscribed to keyspace notifications for mssql_sync:*");
    // Short, so a stop is noticed within half a second.
    pubsub.set_read_timeout(Some(Duration::from_millis(500)))?;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(Ending::Stopped);
        }
        match pubsub.get_message() {
            Ok(msg) => {
                if let Some(table) = table_of_channel(msg.get_channel_name()) {
                    if wake.send(table).is_err() {
                        return Ok(Ending::Stopped); // the actor system is gone
                    }
                    counters.wakes.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_added_never_removed() {
        assert_eq!(merged_classes(""), "K$g");
        assert_eq!(merged_classes("Ex"), "ExK$g");
        assert_eq!(merged_classes("KEA"), "KEA");
        assert_eq!(merged_classes("K$"), "K$g");
    }

    #[test]
    fn channels_name_their_table() {
        assert_eq!(
            table_of_channel("__keyspace@0__:mssql_sync:enabled:User"),
            Some(TableId::new("dbo", "User"))
        );
        assert_eq!(
            table_of_channel("__keyspace@3__:mssql_sync:force_full_load:[x.y]"),
            Some(TableId::new("dbo", "x.y"))
        );
        assert_eq!(
            table_of_channel("__keyspace@0__:mssql_sync:progress:User"),
            None
        );
        assert_eq!(table_of_channel("__keyspace@0__:mssql_sync:marker"), None);
    }
}
