//! A `ctsync` child process whose log (stdout and stderr) is collected
//! while it runs, so a test waits for the line that says the daemon got
//! where the test needs it, instead of sleeping and hoping it did.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The `binary` (`env!("CARGO_BIN_EXE_ctsync")`), with no `MSSQL_*`,
/// `CTSYNC_*` or `REDIS_URL` inherited from the environment the tests run
/// in.
pub fn clean_command(binary: &str) -> Command {
    let mut c = Command::new(binary);
    for (k, _) in std::env::vars() {
        if k.starts_with("MSSQL_") || k.starts_with("CTSYNC_") || k == "REDIS_URL" {
            c.env_remove(k);
        }
    }
    c
}

/// A loopback address nobody listens on now (`127.0.0.1:<free port>`).
pub fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .to_string()
}

/// `ctsync run` (`binary`) on `redis_url` with `settings`, its SQL Servers
/// nowhere (no table is this instance's), once its HTTP server listens.
pub fn run_reaching_no_sql_server(
    binary: &str,
    redis_url: &str,
    settings: &[(&str, &str)],
) -> (Daemon, std::net::SocketAddr) {
    let http = free_addr();
    let nowhere = format!("mssql://sa:x@{}/testct", free_addr());
    let mut c = clean_command(binary);
    c.arg("run")
        .env("MSSQL_PRIMARY_URL", &nowhere)
        .env("MSSQL_REPLICA_URL", &nowhere)
        .env("REDIS_URL", redis_url)
        .env("CTSYNC_HTTP_ADDR", &http);
    for (k, v) in settings {
        c.env(k, v);
    }
    let mut daemon = Daemon::spawn(c);
    daemon.wait_for_log("HTTP server listening");
    (daemon, http.parse().expect("addr"))
}

/// How long a wait on the daemon may last before the test gives up: a
/// failsafe for a daemon that hangs, never the thing a test measures.
pub const FAILSAFE: Duration = Duration::from_secs(60);

pub struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// Appends everything `from` says to `log` until it closes.
fn collect(mut from: impl Read + Send + 'static, log: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
}

impl Daemon {
    /// Spawns `command` with its stdout and stderr collected.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ctsync");
        let log = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().expect("stdout"), log.clone()),
            collect(child.stderr.take().expect("stderr"), log.clone()),
        ];
        Self {
            child,
            log,
            readers,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until the log contains `text` (panics, with the log, if the
    /// daemon exits first or [`FAILSAFE`] passes).
    pub fn wait_for_log(&mut self, text: &str) {
        self.wait_until(&format!("{text:?} in the log"), |log| log.contains(text));
    }

    /// Waits until `check` holds for the log (see [`Daemon::wait_for_log`]).
    pub fn wait_until(&mut self, what: &str, mut check: impl FnMut(&str) -> bool) {
        let deadline = Instant::now() + FAILSAFE;
        loop {
            if check(&self.log()) {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.join_readers();
                panic!("ctsync exited ({status}) before {what}: {}", self.log());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "timed out after {FAILSAFE:?} waiting for {what}: {}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// Sends SIGTERM and waits for the exit (killing the daemon and
    /// panicking if it is still running after [`FAILSAFE`]); returns the
    /// exit status, how long the stop took (a figure to print) and the
    /// whole log.
    pub fn terminate(mut self) -> (ExitStatus, Duration, String) {
        let sent = Instant::now();
        assert!(Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success());
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if sent.elapsed() > FAILSAFE {
                let _ = self.child.kill();
                panic!(
                    "ctsync did not exit within {FAILSAFE:?} of SIGTERM: {}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = sent.elapsed();
        self.join_readers();
        (status, took, self.log())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
