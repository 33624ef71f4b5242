//! Connection settings and connections. Accepts the original tool's
//! `mssql://user:pass@host:port/db` URLs and ADO.NET strings; TLS is on and
//! validated by default. `Connection` keeps one session (a tiberius client
//! in production, see `session`), opens it on demand and discards it after
//! any error (a failed request can leave the TDS stream out of sync) and
//! when a lease is dropped mid-request or mid-transaction.

use std::sync::Arc;

use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, MutexGuard};
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::session::{Connector, Session};
use super::MssqlError;

pub type TdsClient = Client<Compat<TcpStream>>;

/// TLS choices applied to both endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsSettings {
    pub encrypt: EncryptionLevel,
    /// Accept any server certificate (development only: no chain or host
    /// name validation).
    pub trust_server_certificate: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            encrypt: EncryptionLevel::Required,
            trust_server_certificate: false,
        }
    }
}

/// How long one request may go without an answer from the server. tiberius
/// defaults to 30 s, too short for an ALTER COLUMN on a large replica table.
pub const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// What ctsync takes from an ADO.NET string. `Encrypt` and
/// `TrustServerCertificate` in the string are read but ctsync's own TLS
/// settings (`CTSYNC_ENCRYPT`, `CTSYNC_TRUST_SERVER_CERTIFICATE`) decide.
struct AdoFields {
    host: String,
    port: u16,
    database: String,
    user: String,
    password: String,
    /// `TrustServerCertificateCA`: validate against this CA file.
    trust_ca: Option<String>,
    /// `ApplicationIntent=ReadOnly` (an availability group's readable
    /// secondary).
    read_only: bool,
}

impl AdoFields {
    fn read(name: &str, value: &str, tls: TlsSettings) -> Result<Self, MssqlError> {
        use super::ado;
        let err = |m: String| config_err(name, m);
        let pairs = ado::parse(value)
            .map_err(|e| err(format!("the ADO.NET connection string cannot be read: {e}")))?;
        let server = ado::get(
            &pairs,
            &[
                "server",
                "data source",
                "address",
                "addr",
                "network address",
            ],
        )
        .ok_or_else(|| err("the ADO.NET string has no server=host,port".into()))?;
        let server = ado::server(server).ok_or_else(|| {
            err("server= is not of the form [tcp:]host[,port] or host\\instance,port".into())
        })?;
        if let (Some(instance), None) = (&server.instance, server.port) {
            return Err(err(format!(
                "server= names the instance {instance} without a port; ctsync does not ask SQL \
                 Browser (UDP 1434) for it: give the instance's TCP port, \
                 server={}\\{instance},<port> (SQL Server Configuration Manager shows it)",
                server.host
            )));
        }
        let flag = |keys: &[&str]| ado::get(&pairs, keys).map(|v| v.trim().to_ascii_lowercase());
        if flag(&["integrated security", "trusted_connection"])
            .is_some_and(|v| matches!(v.as_str(), "true" | "yes" | "sspi"))
        {
            return Err(err(
                "Windows (integrated) authentication is not supported; use SQL authentication \
                 (user id=…;password=…)"
                    .into(),
            ));
        }
        match flag(&["encrypt"]).as_deref() {
            None | Some("true" | "false" | "yes" | "no" | "mandatory" | "optional") => {}
            Some("strict") => {
                return Err(err(
                    "Encrypt=Strict (TDS 8.0) is not supported by ctsync's SQL Server driver; use \
                     Encrypt=Mandatory (ctsync encrypts as CTSYNC_ENCRYPT says, `required` by \
                     default)"
                        .into(),
                ))
            }
            Some(_) => {
                return Err(err(
                    "Encrypt= expects true, false, mandatory, optional or strict".into(),
                ))
            }
        }
        let trust_ca = ado::get(&pairs, &["trustservercertificateca"]).map(str::to_string);
        if trust_ca.is_some() && tls.trust_server_certificate {
            return Err(err(
                "TrustServerCertificateCA=… validates the server against a CA, while \
                 CTSYNC_TRUST_SERVER_CERTIFICATE=true accepts any certificate: drop one of them"
                    .into(),
            ));
        }
        let user = ado::get(&pairs, &["user id", "uid", "user", "username"])
            .filter(|u| !u.is_empty())
            .ok_or_else(|| err("the ADO.NET string has no user id=…".into()))?;
        Ok(Self {
            host: server.host,
            port: server.port.unwrap_or(1433),
            database: ado::get(&pairs, &["database", "initial catalog"])
                .unwrap_or_default()
                .to_string(),
            user: user.to_string(),
            password: ado::get(&pairs, &["password", "pwd"])
                .unwrap_or_default()
                .to_string(),
            trust_ca,
            read_only: flag(&["applicationintent", "application intent"]).as_deref()
                == Some("readonly"),
        })
    }
}

/// SQL authentication with an empty password is refused: it is almost
/// always a value cut short (an unset variable in a template, a password
/// lost to quoting), and a server that accepts it should not.
fn no_empty_password(name: &str, password: &str) -> Result<(), MssqlError> {
    if password.is_empty() {
        return Err(config_err(
            name,
            "no password: ctsync logs in with SQL authentication, give the login's password \
             (mssql://user:password@host/db or password=… in the ADO.NET form)",
        ));
    }
    Ok(())
}

/// A parsed connection target. `Display` shows `host:port/db` only.
#[derive(Clone)]
pub struct Endpoint {
    config: Config,
    display: String,
    /// How long the TCP connect, and then the login, may each take.
    connect_timeout: std::time::Duration,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({})", self.display)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

fn config_err(name: &str, message: impl Into<String>) -> MssqlError {
    MssqlError::Config {
        name: name.to_string(),
        message: message.into(),
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

impl Endpoint {
    /// Parses `value` (named `name` in error messages, e.g. the environment
    /// variable). Error messages never contain the value itself.
    pub fn parse(name: &str, value: &str, tls: TlsSettings) -> Result<Self, MssqlError> {
        let value = value.trim();
        let lower = value.to_ascii_lowercase();
        let (mut config, display) = if lower.starts_with("mssql://") {
            Self::from_url(name, value)?
        } else if lower.starts_with("sqlserver://") || lower.starts_with("jdbc:sqlserver://") {
            // JDBC's and Prisma's strings are `host:port;key=value;…`, not
            // a URL, and go-mssqldb's URL puts the instance in the path:
            // read by ctsync's URL rules any of them would be misread.
            return Err(config_err(
                name,
                "sqlserver:// (the JDBC, Prisma and go-mssqldb forms) is not supported; write \
                 mssql://user:password@host:port/database or an ADO.NET string \
                 (server=host,port;database=…;user id=…;password=…)",
            ));
        } else if value.contains('=') {
            Self::from_ado(name, value, tls)?
        } else {
            return Err(config_err(
                name,
                "expected mssql://user:password@host:port/database or an ADO.NET string (server=…;database=…;user id=…;password=…)",
            ));
        };
        config.encryption(tls.encrypt);
        if tls.trust_server_certificate {
            config.trust_cert();
        }
        config.application_name("ctsync");
        config.command_timeout(Some(COMMAND_TIMEOUT));
        // The login is bounded by `connect_timeout` (ours, naming the
        // setting), not by the driver's own bound.
        config.handshake_timeout(None);
        Ok(Self {
            config,
            display,
            connect_timeout: CONNECT_TIMEOUT,
        })
    }

    fn from_url(name: &str, value: &str) -> Result<(Config, String), MssqlError> {
        // An unencoded '/', '?' or '#' in the password ends the user part
        // early, and the rest reads as another host (or a bad port):
        // refused, never guessed.
        let ambiguous = || {
            config_err(
                name,
                "the URL is ambiguous: its user name or password holds a slash, question \
                 mark, hash or at sign; percent-encode them (%2F, %3F, %23, %40) or use the \
                 ADO.NET form with password={…}",
            )
        };
        let rest = value.split_once("://").map_or(value, |(_, rest)| rest);
        if rest
            .rsplit_once('@')
            .is_some_and(|(user_info, _)| user_info.contains(['/', '?', '#']))
        {
            return Err(ambiguous());
        }
        let url = url::Url::parse(value)
            .map_err(|e| config_err(name, format!("not a valid URL ({e})")))?;
        let after_host = &url[url::Position::AfterPort..];
        if after_host.contains('@') {
            return Err(ambiguous());
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| config_err(name, "the URL has no host"))?;
        let port = url.port().unwrap_or(1433);
        let database = decode(url.path().trim_start_matches('/'));
        if database.is_empty() {
            return Err(config_err(
                name,
                "the URL has no database (mssql://user:password@host:port/database)",
            ));
        }
        let user = decode(url.username());
        if user.is_empty() {
            return Err(config_err(name, "the URL has no user name"));
        }
        let password = url.password().map(decode).unwrap_or_default();
        no_empty_password(name, &password)?;
        let mut config = Config::new();
        config.host(host);
        config.port(port);
        config.database(&database);
        config.authentication(AuthMethod::sql_server(user, password));
        Ok((config, format!("{host}:{port}/{database}")))
    }

    fn from_ado(name: &str, value: &str, tls: TlsSettings) -> Result<(Config, String), MssqlError> {
        let fields = AdoFields::read(name, value, tls)?;
        no_empty_password(name, &fields.password)?;
        let mut config = Config::new();
        config.host(&fields.host);
        config.port(fields.port);
        config.database(&fields.database);
        config.authentication(AuthMethod::sql_server(&fields.user, &fields.password));
        if let Some(ca) = &fields.trust_ca {
            config.trust_cert_ca(ca);
        }
        config.readonly(fields.read_only);
        let display = format!("{}:{}/{}", fields.host, fields.port, fields.database);
        Ok((config, display))
    }

    /// This endpoint with requests allowed to go unanswered for `limit`
    /// (at least [`COMMAND_TIMEOUT`]).
    pub fn with_command_timeout(mut self, limit: std::time::Duration) -> Self {
        self.config
            .command_timeout(Some(limit.max(COMMAND_TIMEOUT)));
        self
    }

    /// This endpoint with the TCP connect and the login each allowed
    /// `limit` (`CTSYNC_CONNECT_TIMEOUT_SECS`).
    pub fn with_connect_timeout(mut self, limit: std::time::Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    pub async fn connect(&self) -> Result<TdsClient, MssqlError> {
        self.connect_within(self.connect_timeout).await
    }

    /// Connects, giving up when the TCP connect or the login (TLS
    /// handshake included) takes longer than `limit`: a server that
    /// accepts the TCP connection and then says nothing must not hang a
    /// caller forever.
    pub async fn connect_within(
        &self,
        limit: std::time::Duration,
    ) -> Result<TdsClient, MssqlError> {
        let mut config = self.config.clone();
        let err = |message: String| MssqlError::Connect {
            endpoint: self.display.clone(),
            message,
        };
        let secs = limit.as_secs_f64();
        for _ in 0..2 {
            let addr = config.get_addr();
            let tcp = tokio::time::timeout(limit, TcpStream::connect(&addr))
                .await
                .map_err(|_| {
                    err(format!(
                        "the TCP connect to {addr} did not finish within {secs} s \
                         ({CONNECT_TIMEOUT_SETTING}): check the host, the port and firewalls"
                    ))
                })?
                .map_err(|e| err(e.to_string()))?;
            tcp.set_nodelay(true).map_err(|e| err(e.to_string()))?;
            keepalive(&tcp).map_err(|e| err(format!("enabling TCP keepalive: {e}")))?;
            let connected =
                tokio::time::timeout(limit, Client::connect(config.clone(), tcp.compat_write()))
                    .await
                    .map_err(|_| {
                        err(format!(
                            "no answer to the login within {secs} s ({CONNECT_TIMEOUT_SETTING}): \
                             {addr} accepted the connection but did not answer as SQL Server \
                             does; check that it is SQL Server's port and that the server is \
                             not overloaded"
                        ))
                    })?;
            match connected {
                Ok(client) => return Ok(client),
                // Azure-style redirect: connect once more to the given address.
                Err(tiberius::error::Error::Routing { host, port }) => {
                    config.host(&host);
                    config.port(port);
                }
                Err(e) => return Err(err(login_failure(&addr, e))),
            }
        }
        Err(err("redirected more than once".into()))
    }
}

/// The setting that bounds the TCP connect and the login.
pub const CONNECT_TIMEOUT_SETTING: &str = "CTSYNC_CONNECT_TIMEOUT_SECS";

/// How long the TCP connect, and then the TDS login (pre-login, TLS,
/// authentication), may each take by default.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// What a failed login says: a peer whose bytes are not TDS at all
/// (another service on the port) is named as such, not by the decoder's
/// words; every other failure keeps the driver's text, since a real SQL
/// Server's refusals (an encryption level it does not allow, a CA file that
/// cannot be read, an old TDS version) come as protocol and I/O errors too.
fn login_failure(addr: &str, e: tiberius::error::Error) -> String {
    use tiberius::error::Error as E;
    // Only what tiberius raises while framing packets (its header decoder,
    // and a packet whose length the bytes do not fill).
    let not_tds = match &e {
        E::Protocol(message) => message.starts_with("header:"),
        E::Io { kind, message } => {
            *kind == std::io::ErrorKind::Other && message.contains("bytes remaining on stream")
        }
        _ => false,
    };
    if not_tds {
        tracing::debug!(error = %e, "the login's answer could not be read as TDS");
        format!(
            "{addr} did not answer as SQL Server does: check the host and port \
             (SQL Server listens on 1433 unless configured otherwise; a named instance \
             has its own port)"
        )
    } else {
        e.to_string()
    }
}

/// TCP keepalive on every connection: a connection the network dropped
/// silently (a failover, a NAT timeout) is noticed within about a minute
/// and a half instead of when the command timeout runs out.
pub const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
pub const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

fn keepalive(tcp: &TcpStream) -> std::io::Result<()> {
    let params = socket2::TcpKeepalive::new().with_time(KEEPALIVE_IDLE);
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    let params = params.with_interval(KEEPALIVE_INTERVAL);
    socket2::SockRef::from(tcp).set_tcp_keepalive(&params)
}

/// One lazily opened connection, used by one caller at a time.
pub struct Connection {
    connector: Arc<dyn Connector>,
    session: Mutex<Option<Box<dyn Session>>>,
}

/// One caller's use of a connection. A lease dropped while a request is in
/// flight or a transaction is open (its caller's future was dropped: the
/// core's call limit, a stop) discards the session instead of handing it
/// to the next caller: its TDS stream would still hold the abandoned
/// answer (tiberius drains it before the next request, waiting as long as
/// the server takes) and its transaction would still be open (the next
/// caller's work would join it). Closing the connection makes the server
/// roll that transaction back.
pub struct Lease<'a> {
    guard: MutexGuard<'a, Option<Box<dyn Session>>>,
    /// A request was sent ([`Lease::session`]) and has not answered yet.
    in_request: bool,
    /// A transaction was begun and not yet ended (`pool::begin_transaction`).
    in_transaction: bool,
    /// The pool's permit for this connection, released after the guard
    /// (fields drop in order).
    permit: Option<tokio::sync::SemaphorePermit<'a>>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.in_request || self.in_transaction {
            self.guard.take();
        }
    }
}

impl<'a> Lease<'a> {
    /// This lease, holding the pool's permit until it ends.
    pub fn holding(mut self, permit: tokio::sync::SemaphorePermit<'a>) -> Self {
        self.permit = Some(permit);
        self
    }
}

impl Lease<'_> {
    /// The open session, for one request; an error once it was discarded.
    /// The lease counts as in a request until [`Lease::answered`]: dropped
    /// before that, it discards the session.
    pub fn session(&mut self) -> Result<&mut dyn Session, MssqlError> {
        match self.guard.as_mut() {
            Some(session) => {
                self.in_request = true;
                Ok(session.as_mut())
            }
            None => Err(MssqlError::Unexpected("connection was discarded".into())),
        }
    }

    /// The request sent on [`Lease::session`] has answered (or failed).
    pub fn answered(&mut self) {
        self.in_request = false;
    }

    /// A transaction is open on the session from now on (marked before its
    /// `BEGIN` is sent) until [`Lease::transaction_ended`].
    pub fn transaction_begun(&mut self) {
        self.in_transaction = true;
    }

    /// The transaction was committed or rolled back.
    pub fn transaction_ended(&mut self) {
        self.in_transaction = false;
    }

    /// The session is still open (no request on it has failed).
    pub fn is_open(&self) -> bool {
        self.guard.is_some()
    }

    /// Drops the connection; the next lease opens a new one.
    pub fn discard(&mut self) {
        self.guard.take();
    }
}

impl Connection {
    pub fn new(connector: Arc<dyn Connector>) -> Self {
        Self {
            connector,
            session: Mutex::new(None),
        }
    }

    pub async fn lease(&self) -> Result<Lease<'_>, MssqlError> {
        let guard = self.session.lock().await;
        self.open(guard).await
    }

    /// A lease if the connection is free now, else `None`.
    pub async fn try_lease(&self) -> Result<Option<Lease<'_>>, MssqlError> {
        match self.session.try_lock() {
            Ok(guard) => self.open(guard).await.map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn open<'a>(
        &'a self,
        mut guard: MutexGuard<'a, Option<Box<dyn Session>>>,
    ) -> Result<Lease<'a>, MssqlError> {
        if guard.is_none() {
            *guard = Some(self.connector.open().await?);
        }
        Ok(Lease {
            guard,
            in_request: false,
            in_transaction: false,
            permit: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_form_shows_host_port_and_database_but_never_the_password() {
        let e = Endpoint::parse(
            "MSSQL_PRIMARY_URL",
            "mssql://sa:S3cr%40t!@mssql_primary:1433/testct",
            TlsSettings::default(),
        )
        .expect("valid URL");
        assert_eq!(e.to_string(), "mssql_primary:1433/testct");
        assert!(!format!("{e:?}").contains("S3cr"));
    }

    #[test]
    fn ado_form_is_accepted() {
        let e = Endpoint::parse(
            "MSSQL_REPLICA_URL",
            "server=tcp:replica,1435;database=testct;user id=sa;password=x;TrustServerCertificate=true",
            TlsSettings::default(),
        )
        .expect("valid ADO string");
        assert_eq!(e.to_string(), "replica:1435/testct");
    }

    #[test]
    fn bad_values_name_the_variable_and_not_the_value() {
        for bad in [
            "postgres://u:hunter2@h/db",
            "mssql://u:hunter2@h:1433/",
            "mssql://:hunter2@h/db",
        ] {
            let err = Endpoint::parse("MSSQL_PRIMARY_URL", bad, TlsSettings::default())
                .expect_err(bad)
                .to_string();
            assert!(err.contains("MSSQL_PRIMARY_URL"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    fn ado(value: &str, trust: bool) -> Result<Endpoint, String> {
        let tls = TlsSettings {
            trust_server_certificate: trust,
            ..TlsSettings::default()
        };
        Endpoint::parse("MSSQL_PRIMARY_URL", value, tls).map_err(|e| e.to_string())
    }

    #[test]
    fn current_drivers_encrypt_values_are_accepted_and_strict_is_refused_clearly() {
        for v in ["Mandatory", "Optional", "true", "False", "yes"] {
            let e = ado(
                &format!("server=h,1;database=d;user id=u;password=p;Encrypt={v}"),
                false,
            )
            .expect(v);
            assert_eq!(e.to_string(), "h:1/d");
        }
        let err = ado(
            "server=h;database=d;user id=u;password=p;Encrypt=Strict",
            false,
        )
        .expect_err("strict");
        assert!(
            err.contains("Encrypt=Strict (TDS 8.0) is not supported"),
            "{err}"
        );
        let err = ado("server=h;user id=u;password=p;Encrypt=maybe", false).expect_err("bad");
        assert!(err.contains("Encrypt= expects"), "{err}");
    }

    #[test]
    fn a_named_instance_without_a_port_is_refused_with_the_fix() {
        let err = ado(
            "server=db\\SQLEXPRESS;database=d;user id=u;password=p",
            false,
        )
        .expect_err("no port");
        assert!(err.contains("instance SQLEXPRESS without a port"), "{err}");
        assert!(err.contains("server=db\\SQLEXPRESS,<port>"), "{err}");
        let e = ado(
            "server=db\\SQLEXPRESS,1500;database=d;user id=u;password=p",
            false,
        )
        .expect("with a port");
        assert_eq!(e.to_string(), "db:1500/d");
    }

    #[test]
    fn a_ca_file_with_trust_any_certificate_is_a_config_error_not_a_panic() {
        let value = "server=h,1;database=d;user id=u;password=p;TrustServerCertificateCA=/ca.pem";
        let err = ado(value, true).expect_err("contradiction");
        assert!(
            err.contains("CTSYNC_TRUST_SERVER_CERTIFICATE=true"),
            "{err}"
        );
        assert!(ado(value, false).is_ok(), "a CA file alone is fine");
    }

    #[test]
    fn a_brace_quoted_password_is_never_read_as_the_database() {
        let e = ado(
            "server=h,1;database=real;user id=u;password={x;database=S3cr3t}",
            false,
        )
        .expect("valid");
        assert_eq!(e.to_string(), "h:1/real");
        let e = ado(
            "server=h,1;user id=u;password={x;database=S3cr3t};database=real",
            false,
        )
        .expect("valid");
        assert_eq!(e.to_string(), "h:1/real");
    }

    #[test]
    fn urls_whose_password_holds_url_delimiters_are_refused() {
        for bad in [
            "mssql://sa:p@ss/w0rd@dbhost/db",
            "mssql://sa:12/w0rd@dbhost/db",
            "mssql://sa:12?w0rd@dbhost/db",
            "mssql://sa:12#w0rd@dbhost/db",
        ] {
            let err = Endpoint::parse("MSSQL_PRIMARY_URL", bad, TlsSettings::default())
                .expect_err(bad)
                .to_string();
            assert!(err.contains("percent-encode"), "{bad}: {err}");
        }
        let e = Endpoint::parse(
            "MSSQL_PRIMARY_URL",
            "mssql://sa:p%40ss%2Fw0rd@dbhost/db",
            TlsSettings::default(),
        )
        .expect("encoded");
        assert_eq!(e.to_string(), "dbhost:1433/db");
    }

    /// Passwords made of every character that has a meaning in either form,
    /// in well-formed and malformed strings: whatever ctsync answers (the
    /// endpoint it shows, its Debug form, the error), no run of 4 or more
    /// characters of the password appears in it.
    #[test]
    fn no_fragment_of_a_password_appears_in_any_output() {
        const ALPHABET: &[char] = &[
            'a', 'B', '7', ';', '{', '}', '=', '\'', '"', '@', '/', '?', '#', '%', ':', ' ', '\\',
            ',', 'h', 'd', 'b', '.',
        ];
        let mut seed: u64 = 0x5EED;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let leaks = |password: &str, output: &str| -> Option<String> {
            let chars: Vec<char> = password.chars().collect();
            chars
                .windows(4)
                .map(|w| w.iter().collect::<String>())
                .find(|f| output.contains(f.as_str()))
        };
        for _ in 0..3_000 {
            let len = 4 + (next() % 12) as usize;
            let password: String = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            let encoded: String = percent_encoding::utf8_percent_encode(
                &password,
                percent_encoding::NON_ALPHANUMERIC,
            )
            .to_string();
            let candidates = [
                format!(
                    "server=host,1433;database=db;user id=u;password={{{}}}",
                    password.replace('}', "}}")
                ),
                format!("server=host,1433;database=db;user id=u;password={password}"),
                format!(
                    "server=host,1433;user id=u;password=\"{}\";database=db",
                    password.replace('"', "\"\"")
                ),
                format!("mssql://u:{encoded}@host:1433/db"),
                format!("mssql://u:{password}@host:1433/db"),
            ];
            for (i, value) in candidates.iter().enumerate() {
                let output =
                    match Endpoint::parse("MSSQL_PRIMARY_URL", value, TlsSettings::default()) {
                        Ok(e) => {
                            if i == 0 || i == 2 || i == 3 {
                                assert_eq!(e.to_string(), "host:1433/db", "{value:?}");
                            }
                            format!("{e} {e:?}")
                        }
                        Err(err) => format!("{err} {err:?}"),
                    };
                if let Some(fragment) = leaks(&password, &output) {
                    panic!("{fragment:?} of the password shows in {output:?} (from {value:?})");
                }
            }
        }
    }

    #[tokio::test]
    async fn connections_have_tcp_keepalive_on() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let sock = socket2::SockRef::from(&tcp);
        assert!(!sock.keepalive().expect("read"), "off by default");
        keepalive(&tcp).expect("set");
        assert!(sock.keepalive().expect("read"));
        #[cfg(target_os = "linux")]
        {
            assert_eq!(sock.tcp_keepalive_time().expect("idle"), KEEPALIVE_IDLE);
            assert_eq!(
                sock.tcp_keepalive_interval().expect("interval"),
                KEEPALIVE_INTERVAL
            );
        }
    }

    #[tokio::test]
    async fn a_server_that_accepts_and_never_answers_fails_the_login_in_time() {
        // Accepts every connection and never says a word.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let e = Endpoint::parse(
            "MSSQL_PRIMARY_URL",
            &format!("server=127.0.0.1,{port};database=d;user id=u;password=p"),
            TlsSettings::default(),
        )
        .expect("valid");
        let limit = std::time::Duration::from_millis(300);
        let outcome =
            tokio::time::timeout(std::time::Duration::from_secs(20), e.connect_within(limit))
                .await
                .expect("connect_within returns by itself");
        let message = outcome.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("no answer to the login within"),
            "{message}"
        );
    }

    #[test]
    fn application_intent_read_only_is_kept() {
        let read = |v: &str| AdoFields::read("MSSQL_PRIMARY_URL", v, TlsSettings::default());
        let ro = read("server=h,1;user id=u;password=p;ApplicationIntent=ReadOnly").expect("valid");
        assert!(ro.read_only);
        let rw = read("server=h,1;user id=u;password=p").expect("valid");
        assert!(!rw.read_only);
    }
}
