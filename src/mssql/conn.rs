//! Connection settings and connections. Accepts the original tool's
//! `mssql://user:pass@host:port/db` URLs and ADO.NET strings; TLS is on and
//! validated by default. `Connection` keeps one tiberius client, opens it on
//! demand and discards it after any error (a failed request can leave the
//! TDS stream out of sync).

use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, MutexGuard};
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

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

/// A parsed connection target. `Display` shows `host:port/db` only.
#[derive(Clone)]
pub struct Endpoint {
    config: Config,
    display: String,
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
        let (mut config, display) = if lower.starts_with("mssql://")
            || lower.starts_with("sqlserver://")
        {
            Self::from_url(name, value)?
        } else if value.contains('=') {
            Self::from_ado(name, value)?
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
        Ok(Self { config, display })
    }

    fn from_url(name: &str, value: &str) -> Result<(Config, String), MssqlError> {
        let url = url::Url::parse(value)
            .map_err(|e| config_err(name, format!("not a valid URL ({e})")))?;
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
        let mut config = Config::new();
        config.host(host);
        config.port(port);
        config.database(&database);
        config.authentication(AuthMethod::sql_server(user, password));
        Ok((config, format!("{host}:{port}/{database}")))
    }

    fn from_ado(name: &str, value: &str) -> Result<(Config, String), MssqlError> {
        // tiberius's message may quote the string, so it is not passed on.
        let config = Config::from_ado_string(value)
            .map_err(|_| config_err(name, "the ADO.NET connection string could not be parsed"))?;
        let database = value
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| {
                let k = k.trim().to_ascii_lowercase();
                k == "database" || k == "initial catalog"
            })
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let display = format!("{}/{}", config.get_addr(), database);
        Ok((config, display))
    }

    pub async fn connect(&self) -> Result<TdsClient, MssqlError> {
        let mut config = self.config.clone();
        let err = |message: String| MssqlError::Connect {
            endpoint: self.display.clone(),
            message,
        };
        for _ in 0..2 {
            let tcp = tokio::time::timeout(
                std::time::Duration::from_secs(15),
                TcpStream::connect(config.get_addr()),
            )
            .await
            .map_err(|_| err("TCP connect timed out after 15 s".into()))?
            .map_err(|e| err(e.to_string()))?;
            tcp.set_nodelay(true).map_err(|e| err(e.to_string()))?;
            match Client::connect(config.clone(), tcp.compat_write()).await {
                Ok(client) => return Ok(client),
                // Azure-style redirect: connect once more to the given address.
                Err(tiberius::error::Error::Routing { host, port }) => {
                    config.host(&host);
                    config.port(port);
                }
                Err(e) => return Err(err(e.to_string())),
            }
        }
        Err(err("redirected more than once".into()))
    }
}

/// One lazily opened connection, used by one caller at a time.
pub struct Connection {
    endpoint: Endpoint,
    client: Mutex<Option<TdsClient>>,
}

pub struct Lease<'a> {
    guard: MutexGuard<'a, Option<TdsClient>>,
}

impl Lease<'_> {
    pub fn client(&mut self) -> Result<&mut TdsClient, MssqlError> {
        self.guard
            .as_mut()
            .ok_or_else(|| MssqlError::Unexpected("connection was discarded".into()))
    }

    /// Drops the connection; the next lease opens a new one.
    pub fn discard(&mut self) {
        self.guard.take();
    }
}

impl Connection {
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            client: Mutex::new(None),
        }
    }

    pub async fn lease(&self) -> Result<Lease<'_>, MssqlError> {
        let guard = self.client.lock().await;
        self.open(guard).await
    }

    /// A lease if the connection is free now, else `None`.
    pub async fn try_lease(&self) -> Result<Option<Lease<'_>>, MssqlError> {
        match self.client.try_lock() {
            Ok(guard) => self.open(guard).await.map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn open<'a>(
        &'a self,
        mut guard: MutexGuard<'a, Option<TdsClient>>,
    ) -> Result<Lease<'a>, MssqlError> {
        if guard.is_none() {
            *guard = Some(self.endpoint.connect().await?);
        }
        Ok(Lease { guard })
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
}
