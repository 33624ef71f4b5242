//! `rediss://` as the shipped ACL user, against a real `redis-server` with
//! TLS and certificates this test makes: the daemon and the CLI work when
//! the server's certificate is trusted (a private CA through
//! `SSL_CERT_FILE`, docs/redis.md), and refuse, writing nothing, when it is
//! not.

mod support;

use std::path::Path;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};
use support::http_client::Request;
use support::redis_server::{free_port, shipped_acl_rule, RedisServer, ACL_PASSWORD};

fn key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("key")
}

fn cert(
    cn: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    serial: u32,
) -> X509 {
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", cn).expect("CN");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("v3");
    b.set_serial_number(
        &BigNum::from_u32(serial)
            .and_then(|n| n.to_asn1_integer())
            .expect("serial"),
    )
    .expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_pubkey(key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(2).expect("time"))
        .expect("na");
    match issuer {
        None => {
            b.set_issuer_name(&name).expect("issuer");
            b.append_extension(BasicConstraints::new().critical().ca().build().expect("ca"))
                .expect("ext");
            b.sign(key, MessageDigest::sha256()).expect("sign");
        }
        Some((ca, ca_key)) => {
            b.set_issuer_name(ca.subject_name()).expect("issuer");
            let san = SubjectAlternativeName::new()
                .dns("localhost")
                .ip("127.0.0.1")
                .build(&b.x509v3_context(Some(ca), None))
                .expect("san");
            b.append_extension(san).expect("ext");
            b.sign(ca_key, MessageDigest::sha256()).expect("sign");
        }
    }
    b.build()
}

/// Writes a CA and a server certificate for `localhost`/127.0.0.1 into
/// `dir`; returns the redis-server arguments for TLS on `tls_port`.
fn tls_files(dir: &Path, tls_port: u16) -> Vec<String> {
    let ca_key = key();
    let ca = cert("ctsync test CA", &ca_key, None, 1);
    let server_key = key();
    let server = cert("localhost", &server_key, Some((&ca, &ca_key)), 2);
    let write = |name: &str, pem: Vec<u8>| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write pem");
        path.display().to_string()
    };
    let ca_file = write("ca.pem", ca.to_pem().expect("pem"));
    let cert_file = write("server.pem", server.to_pem().expect("pem"));
    let key_file = write(
        "server.key",
        server_key.private_key_to_pem_pkcs8().expect("pem"),
    );
    vec![
        "--tls-port".into(),
        tls_port.to_string(),
        "--tls-cert-file".into(),
        cert_file,
        "--tls-key-file".into(),
        key_file,
        "--tls-ca-cert-file".into(),
        ca_file,
        "--tls-auth-clients".into(),
        "no".into(),
    ]
}

#[actix_rt::test]
async fn rediss_as_the_acl_user_works_with_a_trusted_certificate_and_refuses_an_untrusted_one() {
    let tls_port = free_port();
    let rule = shipped_acl_rule(false);
    let mut ca_file = String::new();
    let redis = RedisServer::start_with(|dir| {
        let acl = dir.join("users.acl");
        std::fs::write(
            &acl,
            format!("{rule}\nuser default on nopass ~* &* +@all\n"),
        )
        .expect("acl");
        ca_file = dir.join("ca.pem").display().to_string();
        let mut args = tls_files(dir, tls_port);
        args.extend(["--aclfile".to_string(), acl.display().to_string()]);
        args
    });
    let url = format!("rediss://ctsync:{ACL_PASSWORD}@localhost:{tls_port}/");
    let value = |key: &str| -> Option<String> {
        let client = redis::Client::open(redis.url()).expect("url");
        let mut con = client.get_connection().expect("connect");
        redis::cmd("GET").arg(key).query(&mut con).expect("GET")
    };
    let cli = |trust: bool, args: &[&str]| {
        let mut c = support::daemon::clean_command(env!("CARGO_BIN_EXE_ctsync"));
        c.args(args)
            .env("REDIS_URL", &url)
            .env("CTSYNC_HTTP_ADDR", support::daemon::free_addr());
        if trust {
            c.env("SSL_CERT_FILE", &ca_file);
        } else {
            c.env_remove("SSL_CERT_FILE");
        }
        c.output().expect("ctsync")
    };

    // Not trusted: refused, nothing written, no password shown.
    let out = cli(false, &["enable", "User", "--force"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{err}");
    assert!(err.to_ascii_lowercase().contains("certificate"), "{err}");
    assert!(!err.contains(ACL_PASSWORD), "{err}");
    assert_eq!(value("mssql_sync:enabled:User"), None);

    // Trusted (a private CA): the CLI writes, over TLS, as the ACL user.
    let out = cli(true, &["enable", "User", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(value("mssql_sync:enabled:User").as_deref(), Some("true"));

    // The daemon too: it lists what it reads from Redis.
    let nowhere = format!("mssql://sa:x@{}/testct", support::daemon::free_addr());
    let http = support::daemon::free_addr();
    let mut c = support::daemon::clean_command(env!("CARGO_BIN_EXE_ctsync"));
    c.arg("run")
        .env("MSSQL_PRIMARY_URL", &nowhere)
        .env("MSSQL_REPLICA_URL", &nowhere)
        .env("REDIS_URL", &url)
        .env("CTSYNC_HTTP_ADDR", &http)
        .env("SSL_CERT_FILE", &ca_file);
    let mut daemon = support::daemon::Daemon::spawn(c);
    daemon.wait_for_log("HTTP server listening");
    let addr = http.parse().expect("addr");
    let r = Request::get("/readyz").send(addr).await;
    assert!(r.body.contains(r#""redis":"ok""#), "{}", r.body);
    let (status, _, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    assert!(!log.contains(ACL_PASSWORD), "{log}");
}
