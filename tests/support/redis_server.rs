//! Starts a private `redis-server` on a free loopback port in a temporary
//! directory; `stop`/`restart` simulate an outage; drop kills it and removes
//! the directory. Tests never use a Redis that happens to be running.

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Ports handed out in this test process: the OS may offer a just-released
/// port again to a test running in parallel.
static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Further `redis-server` arguments (an ACL file, cluster mode).
    extra: Vec<String>,
}

/// A loopback port no other server of this test process was given.
pub fn free_port() -> u16 {
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        if taken.insert(port) {
            return port;
        }
    }
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(|_| Vec::new())
    }

    /// A server with the further arguments `extra` gives for its private
    /// directory (where an ACL file may be written first).
    pub fn start_with(extra: impl FnOnce(&std::path::Path) -> Vec<String>) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("ctsync-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir for redis");
        let extra = extra(&dir);
        let mut server = Self {
            port,
            dir,
            child: None,
            extra,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whoever answers must be our own server, not one that held the port.
        std::thread::sleep(Duration::from_millis(50));
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "redis-server on port {} exited at start ({status}): the port is taken",
                    self.port
                );
            }
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The URL as the ACL user `user` with `password`.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("redis://{user}:{password}@127.0.0.1:{}/", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Another live instance (`other`, its heartbeat lasting to the year 2100)
/// runs `table` with `status`, paused: what a daemon that reaches no SQL
/// Server lists and may act on.
pub async fn run_elsewhere(
    redis: &RedisServer,
    table: &str,
    status: ctsync_actors::status::TableStatus,
) {
    use ctsync_actors::ports::StateStore;
    let state = ctsync::state::RedisState::new(&redis.url()).expect("url");
    let published: std::collections::BTreeMap<&str, ctsync_actors::status::TableStatus> =
        [(table, status)].into();
    state
        .publish_status(
            "other",
            &serde_json::to_string(&published).expect("json"),
            std::time::Duration::from_secs(600),
        )
        .await
        .expect("publish");
    state
        .set(&format!("mssql_sync:enabled:{table}"), "false")
        .await
        .expect("SET");
    let client = redis::Client::open(redis.url()).expect("url");
    let mut con = client.get_connection().expect("connect");
    redis::cmd("ZADD")
        .arg(ctsync_actors::keys::INSTANCES)
        .arg(4_102_444_800_000u64)
        .arg("other")
        .query::<()>(&mut con)
        .expect("ZADD");
}

/// The password the ACL tests give the shipped `ctsync` user.
pub const ACL_PASSWORD: &str = "acl-Test-pw-42";

/// The shipped ACL rule (`redis/ctsync.acl`): its first line (`with_config`
/// false) or its commented second line, which adds `CONFIG GET/SET`, with
/// the test password.
pub fn shipped_acl_rule(with_config: bool) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/redis/ctsync.acl"))
        .expect("redis/ctsync.acl");
    let rules: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("# user ctsync ")
                .map(|_| &l[2..])
                .or_else(|| l.starts_with("user ctsync ").then_some(l))
        })
        .collect();
    assert_eq!(
        rules.len(),
        2,
        "redis/ctsync.acl holds the rule and its CONFIG variant"
    );
    rules[usize::from(with_config)].replace(">CHANGE-ME", &format!(">{ACL_PASSWORD}"))
}

/// A server whose users are the shipped `ctsync` rule and a `default`
/// user for the test's own checks; the URL logs in as `ctsync`.
pub fn start_with_shipped_acl(with_config: bool, extra: &[&str]) -> (RedisServer, String) {
    let rule = shipped_acl_rule(with_config);
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let server = RedisServer::start_with(move |dir| {
        let file = dir.join("users.acl");
        std::fs::write(
            &file,
            format!("{rule}\nuser default on nopass ~* &* +@all\n"),
        )
        .expect("write ACL file");
        let mut args = vec!["--aclfile".to_string(), file.display().to_string()];
        args.extend(extra);
        args
    });
    let url = server.url_as("ctsync", ACL_PASSWORD);
    (server, url)
}
