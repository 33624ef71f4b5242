//! `ctsync healthcheck`: asks the local daemon's `/healthz` over plain
//! HTTP (for Docker's HEALTHCHECK; the runtime image has no curl).

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

pub fn check(addr: SocketAddr) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .context("reading the answer")?;
    let status = response.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("/healthz answered {status:?}");
    }
    Ok(())
}
