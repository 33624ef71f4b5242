//! `ctsync healthcheck`: asks the local daemon's `/healthz` over plain
//! HTTP (for Docker's HEALTHCHECK; the runtime image has no curl). The same
//! small client reads the daemon's API for `ctsync tables`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context as _};

/// The address to ask: the configured bind address, with an unspecified
/// host (0.0.0.0 / ::) replaced by loopback.
pub fn target(bind: &str) -> anyhow::Result<SocketAddr> {
    let mut addr: SocketAddr = bind
        .parse()
        .with_context(|| format!("CTSYNC_HTTP_ADDR {bind:?} is not host:port"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(addr)
}

/// `GET path` over plain HTTP/1.0; returns the status code and body.
fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(String, String)> {
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .context("reading the answer")?;
    let status = response
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

pub fn check(addr: SocketAddr) -> anyhow::Result<()> {
    let (status, _) = get(addr, "/healthz")?;
    if status != "200" {
        bail!("/healthz answered {status:?}");
    }
    Ok(())
}

/// `GET path` on the daemon, parsed as JSON (for `ctsync tables`).
pub fn get_json(addr: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    let (status, body) = get(addr, path)?;
    if status != "200" {
        bail!("{path} answered {status}");
    }
    serde_json::from_str(&body).with_context(|| format!("{path} did not answer JSON"))
}
