//! First contact with the binary (issue 28, item 10): what an operator sees
//! when a setting is wrong, a server is not what it should be, or a table
//! name is mistyped. Each message names the setting or the fix, and never
//! shows a fragment of a password.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

use support::RedisServer;

fn ctsync() -> Command {
    let mut c = support::daemon::clean_command(env!("CARGO_BIN_EXE_ctsync"));
    // No daemon's API: a free port nobody listens on.
    c.env("CTSYNC_HTTP_ADDR", closed_addr());
    c
}

/// A loopback address nobody listens on (connections are refused at once).
fn closed_addr() -> String {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .to_string()
}

/// (success, stdout, stderr) of `c`.
fn output(c: &mut Command) -> (bool, String, String) {
    let out = c.output().expect("run ctsync");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A run of 4 characters of `password` found in `text`.
fn leaked(password: &str, text: &str) -> Option<String> {
    let chars: Vec<char> = password.chars().collect();
    chars
        .windows(4)
        .map(|w| w.iter().collect::<String>())
        .find(|f| text.contains(f.as_str()))
}

/// A listener that accepts every connection and never says a word.
fn silent_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept() {
            held.push(s);
        }
    });
    port
}

/// A listener that answers like a web server, then closes.
fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        while let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    port
}

/// A server that answers the pre-login as SQL Server does, saying it does
/// not support encryption (ENCRYPT_NOT_SUP), then holds the connection.
fn unencrypted_sql_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        while let Ok((mut s, _)) = listener.accept() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                // PRELOGIN options: VERSION (offset 11, 6 bytes), ENCRYPTION
                // (offset 17, 1 byte), terminator; then their data.
                let mut payload = vec![0x00, 0, 11, 0, 6, 0x01, 0, 17, 0, 1, 0xFF];
                payload.extend([0x10, 0, 0, 0, 0, 0]); // version 16.0
                payload.push(0x02); // ENCRYPT_NOT_SUP
                let len = (8 + payload.len()) as u16;
                let mut packet = vec![0x04, 0x01];
                packet.extend(len.to_be_bytes());
                packet.extend([0, 0, 1, 0]);
                packet.extend(payload);
                let _ = s.write_all(&packet);
                std::thread::sleep(std::time::Duration::from_secs(30));
            });
        }
    });
    port
}

/// A daemon API at a local port answering `/api/tables` with `body`.
fn fake_api(body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        while let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

fn ado(port: u16) -> String {
    format!("server=tcp:127.0.0.1,{port};database=testct;user id=sa;password={{Pw-Secret9}}")
}

#[test]
fn a_url_password_with_a_raw_delimiter_is_told_to_percent_encode() {
    for password in ["ab/cd9Qz", "ab#cd9Qz", "ab?cd9Qz", "12/cd9Qz"] {
        let (ok, out, err) = output(
            ctsync()
                .arg("check-config")
                .env(
                    "MSSQL_PRIMARY_URL",
                    format!("mssql://sa:{password}@dbhost:1433/testct"),
                )
                .env("MSSQL_REPLICA_URL", ado(1)),
        );
        assert!(!ok, "{out}");
        assert!(err.contains("MSSQL_PRIMARY_URL"), "{password}: {err}");
        assert!(err.contains("percent-encode"), "{password}: {err}");
        assert!(!err.contains("invalid port"), "{password}: {err}");
        if let Some(f) = leaked(password, &format!("{out}{err}")) {
            panic!("{f:?} of the password shows in {err}");
        }
    }
}

/// `ctsync doctor` against the server at `port` (both URLs) with the
/// connect timeout `secs`: whether it succeeded, stdout, stderr.
fn doctor(port: u16, secs: &str) -> (bool, String, String) {
    output(
        ctsync()
            .arg("doctor")
            .env("MSSQL_PRIMARY_URL", ado(port))
            .env("MSSQL_REPLICA_URL", ado(port))
            .env("CTSYNC_CONNECT_TIMEOUT_SECS", secs),
    )
}

#[test]
fn doctor_names_the_connect_timeout_setting_when_the_server_never_answers() {
    let port = silent_server();
    let (ok, out, err) = doctor(port, "1");
    assert!(!ok, "{out}");
    assert!(err.contains("CTSYNC_CONNECT_TIMEOUT_SECS"), "{err}");
    assert!(!err.contains("Config::handshake_timeout"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("Pw-Secret9"), "{err}");
}

#[test]
fn doctor_and_check_config_wait_the_same_documented_time() {
    let port = silent_server();
    let settings = |c: &mut Command| {
        c.env("MSSQL_PRIMARY_URL", ado(port))
            .env("MSSQL_REPLICA_URL", ado(port))
            .env("REDIS_URL", format!("redis://{}/", closed_addr()))
            .env("CTSYNC_CONNECT_TIMEOUT_SECS", "1");
    };
    let mut doctor = ctsync();
    doctor.arg("doctor");
    settings(&mut doctor);
    let (_, _, doctor_err) = output(&mut doctor);
    let mut check = ctsync();
    check.args(["check-config", "--connect"]);
    settings(&mut check);
    let (ok, check_out, _) = output(&mut check);
    assert!(!ok, "{check_out}");
    let said = "no answer to the login within 1 s (CTSYNC_CONNECT_TIMEOUT_SECS)";
    assert!(doctor_err.contains(said), "doctor: {doctor_err}");
    let primary = check_out
        .lines()
        .find(|l| l.starts_with("primary: FAILED"))
        .unwrap_or_default();
    assert!(primary.contains(said), "check-config: {check_out}");
    let documented = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .expect("docs");
    assert!(
        documented.contains("| `CTSYNC_CONNECT_TIMEOUT_SECS` |"),
        "the setting is documented"
    );
}

#[test]
fn a_listener_that_is_not_sql_server_is_named_as_such() {
    let port = http_server();
    let (ok, out, err) = doctor(port, "5");
    assert!(!ok, "{out}");
    assert!(
        err.contains(&format!(
            "127.0.0.1:{port} did not answer as SQL Server does"
        )),
        "{err}"
    );
    assert!(err.contains("check the host and port"), "{err}");
    assert!(!err.contains("bytes remaining"), "{err}");
}

/// A real SQL Server's refusal keeps its words: one that answers the
/// pre-login but does not allow the encryption ctsync requires (the
/// default) is not called "not SQL Server" (found by a review of the
/// message above: every protocol error was).
#[test]
fn a_sql_server_refusing_encryption_is_not_called_another_service() {
    let port = unencrypted_sql_server();
    let (ok, out, err) = doctor(port, "5");
    assert!(!ok, "{out}");
    assert!(err.contains("encryption"), "{err}");
    assert!(!err.contains("did not answer as SQL Server does"), "{err}");
}

/// The connect timeout is bounded: a huge value is refused naming the
/// setting, not a panic computing the limits from it.
#[test]
fn a_huge_connect_timeout_is_refused_naming_the_setting() {
    let (ok, out, err) = output(
        ctsync()
            .args(["check-config", "--connect"])
            .env("MSSQL_PRIMARY_URL", ado(1))
            .env("MSSQL_REPLICA_URL", ado(1))
            .env("CTSYNC_CONNECT_TIMEOUT_SECS", "18446744073709551615"),
    );
    assert!(!ok, "{out}");
    let text = format!("{out}{err}");
    assert!(text.contains("CTSYNC_CONNECT_TIMEOUT_SECS"), "{text}");
    assert!(text.contains("at most 3600"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn doctor_json_errors_are_json() {
    let port: u16 = closed_addr()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let (ok, out, _) = output(
        ctsync()
            .args(["doctor", "--json"])
            .env("MSSQL_PRIMARY_URL", ado(port))
            .env("MSSQL_REPLICA_URL", ado(port)),
    );
    assert!(!ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let error = v["error"].as_str().unwrap_or_default();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{v}");
    assert!(!out.contains("Pw-Secret9"), "{out}");

    let (ok, out, _) = output(ctsync().args(["doctor", "--json"]));
    assert!(!ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("MSSQL_PRIMARY_URL")),
        "{v}"
    );
}

#[test]
fn every_missing_variable_is_reported_at_once() {
    let (ok, out, err) = output(ctsync().arg("check-config"));
    assert!(!ok, "{out}");
    assert!(err.contains("MSSQL_PRIMARY_URL"), "{err}");
    assert!(err.contains("MSSQL_REPLICA_URL"), "{err}");
}

#[test]
fn an_empty_password_is_refused_naming_the_variable() {
    for value in [
        "mssql://sa@dbhost:1433/testct",
        "mssql://sa:@dbhost:1433/testct",
        "server=dbhost,1433;database=testct;user id=sa;password=",
        "server=dbhost,1433;database=testct;user id=sa",
    ] {
        let (ok, out, err) = output(
            ctsync()
                .arg("check-config")
                .env("MSSQL_PRIMARY_URL", ado(1))
                .env("MSSQL_REPLICA_URL", value),
        );
        assert!(!ok, "{value}: {out}");
        assert!(
            err.contains("MSSQL_REPLICA_URL") && err.contains("no password: ctsync logs in"),
            "{value}: {err}"
        );
    }
}

#[test]
fn the_sqlserver_scheme_is_refused_with_the_supported_forms() {
    for value in [
        "sqlserver://sa:Pw-Secret9@dbhost:1433/testct",
        "sqlserver://dbhost:1433;databaseName=testct;user=sa;password=Pw-Secret9",
    ] {
        let (ok, out, err) = output(
            ctsync()
                .arg("check-config")
                .env("MSSQL_PRIMARY_URL", value)
                .env("MSSQL_REPLICA_URL", ado(1)),
        );
        assert!(!ok, "{value}: {out}");
        assert!(err.contains("MSSQL_PRIMARY_URL"), "{err}");
        assert!(err.contains("sqlserver://"), "{err}");
        assert!(
            err.contains("mssql://user:password@host:port/database"),
            "{err}"
        );
        assert!(!err.contains("Pw-Secret9"), "{err}");
    }
}

#[test]
fn a_redis_connection_error_names_the_host() {
    let addr = closed_addr();
    let (ok, out, err) = output(
        ctsync()
            .args(["enable", "User"])
            .env("REDIS_URL", format!("redis://:R3dis-Secret@{addr}/")),
    );
    assert!(!ok, "{out}");
    assert!(err.contains(&format!("Redis at {addr}")), "{err}");
    assert!(!err.contains("R3dis-Secret"), "{err}");
}

#[test]
fn a_table_name_in_the_wrong_case_gets_the_right_one_suggested() {
    let redis = RedisServer::start();
    let state = redis::Client::open(redis.url()).expect("url");
    let mut con = state.get_connection().expect("connect");
    for key in ["mssql_sync:enabled:User", "mssql_sync:enabled:sales.Order"] {
        redis::cmd("SET")
            .arg(key)
            .arg("false")
            .query::<()>(&mut con)
            .expect("SET");
    }
    for (typed, meant) in [("user", "User"), ("SALES.order", "sales.Order")] {
        let (ok, out, err) = output(
            ctsync()
                .args(["enable", typed])
                .env("REDIS_URL", redis.url()),
        );
        assert!(!ok, "{out}");
        assert!(err.contains(&format!("did you mean `{meant}`?")), "{err}");
    }
    let value: Option<String> = redis::cmd("GET")
        .arg("mssql_sync:enabled:user")
        .query(&mut con)
        .expect("GET");
    assert_eq!(value, None, "nothing written");
}

#[test]
fn tables_explains_a_table_no_instance_reports() {
    let redis = RedisServer::start();
    let client = redis::Client::open(redis.url()).expect("url");
    let mut con = client.get_connection().expect("connect");
    for key in ["mssql_sync:enabled:User", "mssql_sync:enabled:Typo"] {
        redis::cmd("SET")
            .arg(key)
            .arg("true")
            .query::<()>(&mut con)
            .expect("SET");
    }
    let api = fake_api(
        r#"{"tables":[{"name":"User","state":"syncing","lag_versions":0,"lag_seconds":0.0,"progress":null,"instance":"a"}]}"#,
    );
    let (ok, out, err) = output(
        ctsync()
            .args(["tables", "--api", &api])
            .env("REDIS_URL", redis.url()),
    );
    assert!(ok, "{err}");
    let typo = out
        .lines()
        .find(|l| l.starts_with("Typo "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(!typo.contains('?'), "{out}");
    assert!(typo.contains("unreported"), "{out}");
    assert!(
        out.contains("unreported: no running instance reports this table"),
        "{out}"
    );
}

/// Issue 33 item 2: the URLs and the token may come from files (`*_FILE`,
/// Docker and Kubernetes secrets), for the daemon's settings and the CLI
/// alike, and a file's content never shows in any output.
#[test]
fn urls_and_secrets_come_from_files_for_the_daemon_and_the_cli() {
    let redis = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("ctsync-secret-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let primary = file(
        "primary",
        "mssql://ctsync_reader:Qz8Xv2Kp9W@127.0.0.1:1/testct\n",
    );
    let replica = file(
        "replica",
        "mssql://ctsync_writer:Jh7Tq3Ln5R@127.0.0.1:1/testct\n",
    );
    let redis_file = file("redis", &format!("{}\n", redis.url()));
    let token = file("token", "Zx4Wm8Bv6Nc2\n");
    let (ok, out, err) = output(
        ctsync()
            .arg("check-config")
            .env("MSSQL_PRIMARY_URL_FILE", &primary)
            .env("MSSQL_REPLICA_URL_FILE", &replica)
            .env("REDIS_URL_FILE", &redis_file)
            .env("CTSYNC_API_TOKEN_FILE", &token),
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("primary:  127.0.0.1:1/testct"), "{out}");
    assert!(
        out.contains("API tokens: CTSYNC_API_TOKEN (operate)"),
        "{out}"
    );
    for secret in ["Qz8Xv2Kp9W", "Jh7Tq3Ln5R", "Zx4Wm8Bv6Nc2"] {
        assert!(
            leaked(secret, &(out.clone() + &err)).is_none(),
            "{secret}: {out}{err}"
        );
    }
    // The CLI reads REDIS_URL_FILE too.
    let (ok, out, err) = output(
        ctsync()
            .args(["enable", "User", "--force"])
            .env("REDIS_URL_FILE", &redis_file),
    );
    assert!(ok, "{out}{err}");
    let client = redis::Client::open(redis.url()).expect("url");
    let mut con = client.get_connection().expect("connect");
    let enabled: Option<String> = redis::cmd("GET")
        .arg("mssql_sync:enabled:User")
        .query(&mut con)
        .expect("GET");
    assert_eq!(enabled.as_deref(), Some("true"));
    // Both a value and its file: refused, naming both.
    let (ok, _, err) = output(
        ctsync()
            .arg("check-config")
            .env("MSSQL_PRIMARY_URL", "mssql://sa:x@127.0.0.1:1/testct")
            .env("MSSQL_PRIMARY_URL_FILE", &primary)
            .env("MSSQL_REPLICA_URL_FILE", &replica),
    );
    assert!(!ok);
    assert!(
        err.contains("MSSQL_PRIMARY_URL_FILE")
            && err.contains("set one of MSSQL_PRIMARY_URL and MSSQL_PRIMARY_URL_FILE"),
        "{err}"
    );
    assert!(leaked("Qz8Xv2Kp9W", &err).is_none(), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
