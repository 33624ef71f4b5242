//! Raw HTTP/1.1 against a real listening server (the daemon's, the demo's
//! or one started in-process), with any headers and body a browser of
//! another origin could send, and the cross-site probes every write and
//! action endpoint must refuse.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one request may take before the test gives up: a failsafe for
/// a server that stopped answering, never the thing a test measures.
pub const FAILSAFE: Duration = Duration::from_secs(60);

/// One request: method, path, headers (a `Host` among them, or
/// `127.0.0.1` is sent), body.
#[derive(Debug, Clone)]
pub struct Request {
    pub what: String,
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Request {
    pub fn new(what: impl Into<String>, method: &'static str, path: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            method,
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn get(path: &str) -> Self {
        Self::new(format!("GET {path}"), "GET", path)
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn json(self, body: &serde_json::Value) -> Self {
        self.header("Content-Type", "application/json")
            .body(body.to_string())
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }

    /// [`Request::send`], owning the request (to spawn).
    pub async fn sent(self, addr: SocketAddr) -> Response {
        self.send(addr).await
    }

    /// Sends it on a new connection and reads the whole answer.
    pub async fn send(&self, addr: SocketAddr) -> Response {
        match tokio::time::timeout(FAILSAFE, self.exchange(addr)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => panic!("{}: {e}", self.what),
            Err(_) => panic!(
                "{}: no answer from {addr} in {} s (the server is stuck)",
                self.what,
                FAILSAFE.as_secs()
            ),
        }
    }

    async fn exchange(&self, addr: SocketAddr) -> std::io::Result<Response> {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        if !self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("host"))
        {
            head.push_str(&format!("Host: 127.0.0.1:{}\r\n", addr.port()));
        }
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&self.body).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse(&raw).ok_or_else(|| {
            std::io::Error::other(format!(
                "not an HTTP answer: {:?}",
                String::from_utf8_lossy(&raw)
            ))
        })
    }
}

fn parse(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body)?;
    }
    Some(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = raw.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..line]).ok()?.trim(), 16).ok()?;
        raw = &raw[line + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

/// Every write and action endpoint of `table`, with the JSON body the page
/// sends.
pub fn write_endpoints(table: &str) -> Vec<(String, serde_json::Value)> {
    let one = format!("/api/tables/{table}");
    vec![
        (one.clone(), serde_json::json!({"action": "enable"})),
        (one.clone(), serde_json::json!({"action": "disable"})),
        (one, serde_json::json!({"action": "force_full_load"})),
        (format!("/api/tables/{table}/verify"), serde_json::json!({})),
    ]
}

/// What a page of another origin can send to every write endpoint without
/// a CORS preflight (forms, `text/plain`, a no-cors `fetch` of a blob
/// without type), each with `authorization` if given, and the
/// JSON requests a rebound name (`Host: evil.example`) would carry. The
/// expected refusal with each: 415 for the content types, 421 for the host.
pub fn cross_site_probes(table: &str, authorization: Option<&str>) -> Vec<(Request, u16)> {
    let mut probes = Vec::new();
    for (path, json) in write_endpoints(table) {
        let action = json["action"].as_str().unwrap_or("verify").to_string();
        let auth = |r: Request| match authorization {
            Some(a) => r.header("Authorization", a),
            None => r,
        };
        let post = |what: &str| Request::new(format!("{what} to {path} ({action})"), "POST", &path);
        probes.push((
            auth(post("form post"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Origin", "http://evil.example")
                .body(format!("action={action}")),
            415,
        ));
        probes.push((
            auth(post("multipart form post"))
                .header("Content-Type", "multipart/form-data; boundary=XyZ")
                .header("Origin", "http://evil.example")
                .body(format!(
                    "--XyZ\r\nContent-Disposition: form-data; name=\"action\"\r\n\r\n{action}\r\n--XyZ--\r\n"
                )),
            415,
        ));
        probes.push((
            auth(post("no-cors fetch, text/plain"))
                .header("Content-Type", "text/plain;charset=UTF-8")
                .header("Origin", "http://evil.example")
                .body(json.to_string()),
            415,
        ));
        probes.push((
            auth(post("no-cors fetch of an untyped blob"))
                .header("Origin", "null")
                .body(json.to_string()),
            415,
        ));
        probes.push((
            auth(post("rebound name"))
                .header("Host", "evil.example")
                .json(&json),
            421,
        ));
        probes.push((
            auth(post("rebound name with port"))
                .header("Host", "evil.example:8080")
                .json(&json),
            421,
        ));
    }
    probes
}

/// Sends every probe and checks each got its refusal (naming every one
/// that did not).
pub async fn refused(addr: SocketAddr, probes: &[(Request, u16)]) {
    let mut wrong = Vec::new();
    for (probe, expected) in probes {
        let r = probe.send(addr).await;
        if r.status == *expected {
            println!("refused {}: {}", probe.what, r.status);
        } else {
            wrong.push(format!(
                "{}: {} (expected {expected}) {}",
                probe.what, r.status, r.body
            ));
        }
    }
    assert!(wrong.is_empty(), "not refused:\n{}", wrong.join("\n"));
}
