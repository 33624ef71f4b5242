//! Configuration: one struct with defaults, read once at start from the
//! environment, with an optional TOML file underneath (the environment
//! wins). Every setting is listed in [`SETTINGS`], which drives parsing and
//! the README's reference table. Errors name the variable, never its value.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ctsync_actors::config::Instance;
use ctsync_actors::sync::SyncConfig;
use tiberius::EncryptionLevel;

use crate::mssql::{ChangeIsolation, Endpoint, TlsSettings};

/// One setting: environment variable, TOML key, default, meaning.
pub struct Setting {
    pub env: &'static str,
    pub file_key: &'static str,
    pub default: Option<&'static str>,
    pub help: &'static str,
}

pub const SETTINGS: &[Setting] = &[
    Setting { env: "MSSQL_PRIMARY_URL", file_key: "primary_url", default: None, help: "Primary database: `mssql://user:password@host:port/database` or an ADO.NET string. Required." },
    Setting { env: "MSSQL_REPLICA_URL", file_key: "replica_url", default: None, help: "Replica database, same forms. Required." },
    Setting { env: "REDIS_URL", file_key: "redis_url", default: Some("redis://127.0.0.1:6379/"), help: "Redis holding flags and versions." },
    Setting { env: "MSSQL_PRIMARY_URL_FILE", file_key: "primary_url_file", default: None, help: "File holding MSSQL_PRIMARY_URL (Docker and Kubernetes secrets); trailing whitespace ignored. Set one of the two." },
    Setting { env: "MSSQL_REPLICA_URL_FILE", file_key: "replica_url_file", default: None, help: "File holding MSSQL_REPLICA_URL; as MSSQL_PRIMARY_URL_FILE." },
    Setting { env: "REDIS_URL_FILE", file_key: "redis_url_file", default: None, help: "File holding REDIS_URL; as MSSQL_PRIMARY_URL_FILE." },
    Setting { env: "CTSYNC_POLL_INTERVAL_SECS", file_key: "poll_interval_secs", default: Some("5"), help: "Seconds between discovery runs and between each table's change checks." },
    Setting { env: "CTSYNC_FULL_LOAD_PAGE_SIZE", file_key: "full_load_page_size", default: Some("5000"), help: "Rows per keyset page of a full load." },
    Setting { env: "CTSYNC_FULL_LOAD_MODE", file_key: "full_load_mode", default: Some("shadow"), help: "`shadow`: load into a shadow table swapped with the live one at the end (readers never see a half table); `in_place`: empty the live table and fill it." },
    Setting { env: "CTSYNC_CHANGE_PAGE_SIZE", file_key: "change_page_size", default: Some("5000"), help: "Changed keys per replica transaction of an incremental sync." },
    Setting { env: "CTSYNC_BULK_LOAD", file_key: "bulk_load", default: Some("on"), help: "`on`: rows reach the replica by TDS bulk copy where a table allows it (INSERT otherwise, said in the log); `off`: always one INSERT … OPENJSON per page (an escape hatch)." },
    Setting { env: "CTSYNC_AUTO_RELOAD_STALE", file_key: "auto_reload_stale", default: Some("false"), help: "`true`: full-load a stale table automatically instead of waiting for an operator." },
    Setting { env: "CTSYNC_ENCRYPT", file_key: "encrypt", default: Some("required"), help: "TLS to SQL Server: `required`, `on`, `off` (login only) or `not_supported`." },
    Setting { env: "CTSYNC_TRUST_SERVER_CERTIFICATE", file_key: "trust_server_certificate", default: Some("false"), help: "`true` accepts any server certificate (development only)." },
    Setting { env: "CTSYNC_MODULE_SYNC_SECS", file_key: "module_sync_secs", default: Some("30"), help: "Seconds between comparisons of views, procedures and functions." },
    Setting { env: "CTSYNC_DDL_QUEUE", file_key: "ddl_queue", default: Some("dbo.SyncDDLQueue"), help: "Service Broker queue of DDL events on the primary (`schema.name`); `off` disables the listener." },
    Setting { env: "CTSYNC_IDLE_ADVANCE_SECS", file_key: "idle_advance_secs", default: Some("60"), help: "Seconds between moves of an idle table's stored version while the primary is busy with other tables (all due tables move together, in one replica transaction per poll). Keep it far inside the CT retention." },
    Setting { env: "CTSYNC_CHANGE_COPY_TIMEOUT_SECS", file_key: "change_copy_timeout_secs", default: Some("600"), help: "Seconds a cycle's copy of its changed keys on the primary may take; past it the copy is abandoned (logged, counted, the table shows the error) and starts over next cycle. Raise it for a huge backlog, or force a full load." },
    Setting { env: "CTSYNC_CHANGE_ISOLATION", file_key: "change_isolation", default: Some("snapshot"), help: "`snapshot`: each change set is copied in a SNAPSHOT transaction, Microsoft's documented pattern (a primary without ALLOW_SNAPSHOT_ISOLATION puts incremental syncs in error, naming the fix, until it is enabled); `read-committed`: copy without it, accepting that CT cleanup can remove changes under the copy of a table near its retention limit (docs/consistency.md)." },
    Setting { env: "CTSYNC_PRIMARY_CONNECTIONS", file_key: "primary_connections", default: Some("4"), help: "Connections to the primary shared by the tables (at least 2: change sets keep at most all but one)." },
    Setting { env: "CTSYNC_CONNECT_TIMEOUT_SECS", file_key: "connect_timeout_secs", default: Some("15"), help: "Seconds the TCP connect to SQL Server, and then its login (pre-login, TLS, authentication), may each take before the attempt fails naming this setting; the daemon, `doctor`, `verify` and `check-config --connect` alike." },
    Setting { env: "CTSYNC_HTTP_ADDR", file_key: "http_addr", default: Some("0.0.0.0:8080"), help: "Address of the HTTP server (metrics, health, page)." },
    Setting { env: "CTSYNC_LOG", file_key: "log", default: Some("info"), help: "Log filter (tracing `EnvFilter` syntax, e.g. `info,ctsync=debug`)." },
    Setting { env: "CTSYNC_KEYSPACE_EVENTS", file_key: "keyspace_events", default: Some("on"), help: "`on`: subscribe to Redis keyspace notifications so flags act within a second (adds K$g to notify-keyspace-events); `off`: flags act at the next poll." },
    Setting { env: "CTSYNC_LOG_FORMAT", file_key: "log_format", default: Some("text"), help: "`text` (colour only on a terminal) or `json` (one object per line, for log shippers)." },
    Setting { env: "CTSYNC_API_TOKEN", file_key: "api_token", default: None, help: "Bearer token required by every state-changing HTTP request (enable, disable, force load, verify): one token with the `operate` role, named CTSYNC_API_TOKEN in the audit trail. Unset (and no CTSYNC_API_TOKENS_FILE): the API and page are read-only (writes get 403) unless CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES=true." },
    Setting { env: "CTSYNC_API_TOKEN_FILE", file_key: "api_token_file", default: None, help: "File holding CTSYNC_API_TOKEN; as MSSQL_PRIMARY_URL_FILE." },
    Setting { env: "CTSYNC_API_TOKENS_FILE", file_key: "api_tokens_file", default: None, help: "File of named API tokens, one `<name> <role> <token>` per line (role `read` or `operate`; `#` comments; tokens of 16 characters or more). `read` sees error messages and host names, `operate` may also act; without a token a caller sees tables, states, versions, lag and progress only. Used with or without CTSYNC_API_TOKEN." },
    Setting { env: "CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES", file_key: "api_allow_unauthenticated_writes", default: Some("false"), help: "`true`: without an API token, anyone who reaches the HTTP port may enable, disable, force-load and verify tables (a WARN at start). No effect when a token is set." },
    Setting { env: "CTSYNC_API_READ_ONLY", file_key: "api_read_only", default: Some("false"), help: "`true`: every state-changing HTTP request is refused (403)." },
    Setting { env: "CTSYNC_INSTANCE_ID", file_key: "instance_id", default: None, help: "This instance's id in leases and on the replica's fence (letters, digits, `.`, `_`, `-`, `:`; at most 100). Default: host name, process id and a random part, so every process is distinct." },
    Setting { env: "CTSYNC_LEASE_TTL_SECS", file_key: "lease_ttl_secs", default: Some("15"), help: "Seconds a table's lease lasts without renewal (renewed every poll; at least twice the poll interval). A dead instance's tables move to the others within it; an instance cut off from Redis stops writing before it runs out." },
    Setting { env: "CTSYNC_ALLOWED_HOSTS", file_key: "allowed_hosts", default: None, help: "Comma-separated `Host` names the page and API answer to (others get 421). Default: localhost, 127.0.0.1, ::1, the bind address, this machine's host name and `ctsync`." },
    Setting { env: "CTSYNC_TRUSTED_PROXIES", file_key: "trusted_proxies", default: None, help: "Comma-separated IP addresses of reverse proxies: from these peers only, `X-Forwarded-For` names the client in the audit trail and the log (elsewhere it is ignored)." },
];

/// Settings without which ctsync cannot start.
const REQUIRED: &[&str] = &["MSSQL_PRIMARY_URL", "MSSQL_REPLICA_URL"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not set; {help}")]
    Missing {
        name: &'static str,
        help: &'static str,
    },
    /// Several required settings are missing: all are named at once.
    #[error("{} are not set; {}", names.join(" and "), helps.join(" "))]
    MissingSeveral {
        names: Vec<&'static str>,
        helps: Vec<String>,
    },
    #[error("{name} is invalid: {message}")]
    Invalid { name: &'static str, message: String },
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
}

/// The daemon's settings. `Debug` never shows credentials.
#[derive(Debug, Clone)]
pub struct Config {
    pub primary: Endpoint,
    pub replica: Endpoint,
    pub redis_url: RedisUrl,
    pub sync: SyncConfig,
    pub primary_connections: usize,
    /// How long the TCP connect and the login to SQL Server may each take
    /// (`CTSYNC_CONNECT_TIMEOUT_SECS`).
    pub connect_timeout: Duration,
    /// How long a change set's copy may take (`CTSYNC_CHANGE_COPY_TIMEOUT_SECS`).
    pub change_copy_timeout: Duration,
    /// Whether change sets must be copied under SNAPSHOT (`CTSYNC_CHANGE_ISOLATION`).
    pub change_isolation: ChangeIsolation,
    /// `None` when the DDL listener is off.
    pub ddl_queue: Option<String>,
    pub http_addr: SocketAddr,
    pub log: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// API token, read-only mode, allowed hosts.
    pub access: crate::http::Access,
    /// TLS to SQL Server (both endpoints).
    pub tls: TlsSettings,
    /// Wake tables on Redis keyspace notifications.
    pub keyspace_events: bool,
    /// Write rows by bulk copy where a table allows it.
    pub bulk_load: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A Redis URL whose `Debug`/`Display` hide the password.
#[derive(Clone)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(u) => write!(
                f,
                "{}:{}",
                u.host_str().unwrap_or("?"),
                u.port().unwrap_or(6379)
            ),
            Err(_) => f.write_str("<unparsable redis url>"),
        }
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// Raw setting values by environment-variable name.
type Source = BTreeMap<&'static str, String>;

/// The settings whose value may come from a file instead (`<NAME>_FILE`:
/// Docker and Kubernetes secrets), one mechanism for all of them.
pub const FROM_FILE: &[(&str, &str)] = &[
    ("MSSQL_PRIMARY_URL", "MSSQL_PRIMARY_URL_FILE"),
    ("MSSQL_REPLICA_URL", "MSSQL_REPLICA_URL_FILE"),
    ("REDIS_URL", "REDIS_URL_FILE"),
    ("CTSYNC_API_TOKEN", "CTSYNC_API_TOKEN_FILE"),
];

/// `source` with every `<NAME>_FILE` replaced by `<NAME>` = the file's
/// content (trailing whitespace and newlines dropped). Setting both, an
/// unreadable file and an empty one are refused naming the setting and the
/// path, never the content.
pub fn with_secret_files(source: &Source) -> Result<Source, ConfigError> {
    let mut out = source.clone();
    for (name, file) in FROM_FILE {
        let Some(path) = out
            .remove(file)
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
        else {
            continue;
        };
        let invalid = |message: String| ConfigError::Invalid {
            name: file,
            message,
        };
        if out.get(name).is_some_and(|v| !v.trim().is_empty()) {
            return Err(invalid(format!(
                "{name} is set too: set one of {name} and {file}"
            )));
        }
        let value = std::fs::read_to_string(&path)
            .map_err(|e| invalid(format!("cannot read {path}: {e}")))?;
        let value = value.trim_end().to_string();
        if value.trim().is_empty() {
            return Err(invalid(format!("{path} is empty: it must hold {name}")));
        }
        out.insert(name, value);
    }
    Ok(out)
}

/// REDIS_URL as the CLI reads it: from the environment (or
/// `REDIS_URL_FILE`), else the default.
pub fn redis_url_from_env() -> Result<String, ConfigError> {
    let source = with_secret_files(&env_settings())?;
    Ok(source
        .get("REDIS_URL")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379/".into()))
}

fn read_file(path: &str) -> Result<Source, ConfigError> {
    let file_err = |message: String| ConfigError::File {
        path: path.to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_err(e.message().to_string()))?;
    let mut out = Source::new();
    for (key, value) in table {
        let setting = SETTINGS
            .iter()
            .find(|s| s.file_key == key)
            .ok_or_else(|| file_err(format!("unknown key `{key}`")))?;
        let raw = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(file_err(format!(
                    "`{key}` must be a string, integer or boolean, not {}",
                    other.type_str()
                )))
            }
        };
        out.insert(setting.env, raw);
    }
    Ok(out)
}

fn parse<T: std::str::FromStr>(
    name: &'static str,
    raw: &str,
    what: &str,
) -> Result<T, ConfigError> {
    raw.trim().parse().map_err(|_| ConfigError::Invalid {
        name,
        message: format!("expected {what}"),
    })
}

fn positive(name: &'static str, raw: &str) -> Result<usize, ConfigError> {
    let n: usize = parse(name, raw, "a positive whole number")?;
    if n == 0 {
        return Err(ConfigError::Invalid {
            name,
            message: "must be at least 1".into(),
        });
    }
    Ok(n)
}

/// The longest connect timeout accepted: an hour (a larger value is a
/// typo, and would overflow the limits computed from it).
const MAX_CONNECT_TIMEOUT_SECS: usize = 3600;

/// `n`, if it is at most `max`.
fn at_most(name: &'static str, n: usize, max: usize) -> Result<usize, ConfigError> {
    if n > max {
        return Err(ConfigError::Invalid {
            name,
            message: format!("must be at most {max}"),
        });
    }
    Ok(n)
}

/// At least 2: change sets keep a connection while their pages are read,
/// and one connection must always be left for discovery, catalog reads
/// and full loads.
fn primary_connections(raw: &str) -> Result<usize, ConfigError> {
    let name = "CTSYNC_PRIMARY_CONNECTIONS";
    let n = positive(name, raw)?;
    if n < 2 {
        return Err(ConfigError::Invalid {
            name,
            message: "must be at least 2: a table reading its change set keeps a connection, \
                      and one is always left for discovery, catalog reads and full loads"
                .into(),
        });
    }
    Ok(n)
}

fn on_off(name: &'static str, raw: &str) -> Result<bool, ConfigError> {
    match raw.trim() {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(ConfigError::Invalid {
            name,
            message: format!("{other:?}: expected on or off"),
        }),
    }
}

fn change_isolation(raw: &str) -> Result<ChangeIsolation, ConfigError> {
    match raw.trim() {
        "snapshot" => Ok(ChangeIsolation::Snapshot),
        "read-committed" => Ok(ChangeIsolation::ReadCommitted),
        other => Err(ConfigError::Invalid {
            name: "CTSYNC_CHANGE_ISOLATION",
            message: format!("{other:?}: expected snapshot or read-committed"),
        }),
    }
}

fn boolean(name: &'static str, raw: &str) -> Result<bool, ConfigError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ConfigError::Invalid {
            name,
            message: "expected true or false".into(),
        }),
    }
}

fn encryption(name: &'static str, raw: &str) -> Result<EncryptionLevel, ConfigError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "required" => Ok(EncryptionLevel::Required),
        "on" => Ok(EncryptionLevel::On),
        "off" => Ok(EncryptionLevel::Off),
        "not_supported" => Ok(EncryptionLevel::NotSupported),
        _ => Err(ConfigError::Invalid {
            name,
            message: "expected required, on, off or not_supported".into(),
        }),
    }
}

impl Config {
    /// Reads the process environment, over `file` if given.
    pub fn load(file: Option<&str>) -> Result<Self, ConfigError> {
        let mut source = match file {
            Some(path) => read_file(path)?,
            None => Source::new(),
        };
        for s in SETTINGS {
            if let Ok(v) = std::env::var(s.env) {
                source.insert(s.env, v);
            }
        }
        Self::from_source(&source)
    }

    /// Builds the config from raw values keyed by environment variable.
    pub fn from_source(source: &BTreeMap<&'static str, String>) -> Result<Self, ConfigError> {
        let source = &with_secret_files(source)?;
        let get = |name: &'static str| -> Result<String, ConfigError> {
            let setting = SETTINGS.iter().find(|s| s.env == name);
            match source.get(name).filter(|v| !v.trim().is_empty()) {
                Some(v) => Ok(v.clone()),
                None => setting.and_then(|s| s.default).map(str::to_string).ok_or(
                    ConfigError::Missing {
                        name,
                        help: setting.map(|s| s.help).unwrap_or(""),
                    },
                ),
            }
        };
        // Every required setting that is missing, named at once.
        let missing: Vec<&Setting> = SETTINGS
            .iter()
            .filter(|s| REQUIRED.contains(&s.env))
            .filter(|s| source.get(s.env).is_none_or(|v| v.trim().is_empty()))
            .collect();
        if missing.len() > 1 {
            return Err(ConfigError::MissingSeveral {
                names: missing.iter().map(|s| s.env).collect(),
                helps: missing
                    .iter()
                    .map(|s| format!("{}: {}", s.env, s.help))
                    .collect(),
            });
        }
        let connect_timeout = Duration::from_secs(at_most(
            "CTSYNC_CONNECT_TIMEOUT_SECS",
            positive(
                "CTSYNC_CONNECT_TIMEOUT_SECS",
                &get("CTSYNC_CONNECT_TIMEOUT_SECS")?,
            )?,
            MAX_CONNECT_TIMEOUT_SECS,
        )? as u64);
        let tls = TlsSettings {
            encrypt: encryption("CTSYNC_ENCRYPT", &get("CTSYNC_ENCRYPT")?)?,
            trust_server_certificate: boolean(
                "CTSYNC_TRUST_SERVER_CERTIFICATE",
                &get("CTSYNC_TRUST_SERVER_CERTIFICATE")?,
            )?,
        };
        let endpoint = |name: &'static str| -> Result<Endpoint, ConfigError> {
            Endpoint::parse(name, &get(name)?, tls)
                .map(|e| e.with_connect_timeout(connect_timeout))
                .map_err(|e| ConfigError::Invalid {
                    name,
                    message: e.to_string(),
                })
        };
        let redis = get("REDIS_URL")?;
        if redis::Client::open(redis.as_str()).is_err() {
            return Err(ConfigError::Invalid {
                name: "REDIS_URL",
                message: "expected redis://[:password@]host:port[/db]".into(),
            });
        }
        let poll: u64 = parse(
            "CTSYNC_POLL_INTERVAL_SECS",
            &get("CTSYNC_POLL_INTERVAL_SECS")?,
            "a whole number of seconds",
        )?;
        if poll == 0 {
            return Err(ConfigError::Invalid {
                name: "CTSYNC_POLL_INTERVAL_SECS",
                message: "must be at least 1".into(),
            });
        }
        let change_copy_timeout = Duration::from_secs(positive(
            "CTSYNC_CHANGE_COPY_TIMEOUT_SECS",
            &get("CTSYNC_CHANGE_COPY_TIMEOUT_SECS")?,
        )? as u64);
        let sync = SyncConfig {
            poll_interval: Duration::from_secs(poll),
            full_load_page_size: positive(
                "CTSYNC_FULL_LOAD_PAGE_SIZE",
                &get("CTSYNC_FULL_LOAD_PAGE_SIZE")?,
            )?,
            full_load_mode: match get("CTSYNC_FULL_LOAD_MODE")?.trim() {
                "shadow" => ctsync_actors::ports::LoadMode::Shadow,
                "in_place" => ctsync_actors::ports::LoadMode::InPlace,
                other => {
                    return Err(ConfigError::Invalid {
                        name: "CTSYNC_FULL_LOAD_MODE",
                        message: format!("{other:?}: expected shadow or in_place"),
                    })
                }
            },
            change_page_size: positive(
                "CTSYNC_CHANGE_PAGE_SIZE",
                &get("CTSYNC_CHANGE_PAGE_SIZE")?,
            )?,
            auto_reload_stale: boolean(
                "CTSYNC_AUTO_RELOAD_STALE",
                &get("CTSYNC_AUTO_RELOAD_STALE")?,
            )?,
            module_sync_interval: Duration::from_secs(positive(
                "CTSYNC_MODULE_SYNC_SECS",
                &get("CTSYNC_MODULE_SYNC_SECS")?,
            )? as u64),
            instance: Instance {
                id: match source
                    .get("CTSYNC_INSTANCE_ID")
                    .map(|v| v.trim().to_string())
                {
                    Some(id) if !id.is_empty() => valid_instance_id(&id)?,
                    _ => default_instance_id(),
                },
                lease_ttl: lease_ttl(&get("CTSYNC_LEASE_TTL_SECS")?, poll)?,
                published: Vec::new(),
            },
            idle_advance: Duration::from_secs(positive(
                "CTSYNC_IDLE_ADVANCE_SECS",
                &get("CTSYNC_IDLE_ADVANCE_SECS")?,
            )? as u64),
            // The core never abandons a copy the setting still allows.
            call_limits: ctsync_actors::ports::CallLimits::default()
                .with_change_copy(change_copy_timeout),
            ..SyncConfig::default()
        };
        let queue = get("CTSYNC_DDL_QUEUE")?;
        let ddl_queue = if queue.trim().eq_ignore_ascii_case("off") {
            None
        } else if queue.split('.').count() <= 2 && !queue.trim().is_empty() {
            Some(queue.trim().to_string())
        } else {
            return Err(ConfigError::Invalid {
                name: "CTSYNC_DDL_QUEUE",
                message: "expected schema.queue, queue or off".into(),
            });
        };
        let http_addr: SocketAddr = parse(
            "CTSYNC_HTTP_ADDR",
            &get("CTSYNC_HTTP_ADDR")?,
            "host:port, e.g. 0.0.0.0:8080",
        )?;
        let access = http_access(source, &http_addr)?;
        let log_format = match get("CTSYNC_LOG_FORMAT")?.trim() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::Invalid {
                    name: "CTSYNC_LOG_FORMAT",
                    message: format!("{other:?}: expected text or json"),
                })
            }
        };
        Ok(Self {
            primary: endpoint("MSSQL_PRIMARY_URL")?,
            replica: endpoint("MSSQL_REPLICA_URL")?,
            redis_url: RedisUrl(redis),
            sync,
            primary_connections: primary_connections(&get("CTSYNC_PRIMARY_CONNECTIONS")?)?,
            connect_timeout,
            change_copy_timeout,
            change_isolation: change_isolation(&get("CTSYNC_CHANGE_ISOLATION")?)?,
            ddl_queue,
            http_addr,
            log: get("CTSYNC_LOG")?,
            log_format,
            access,
            tls,
            keyspace_events: on_off("CTSYNC_KEYSPACE_EVENTS", &get("CTSYNC_KEYSPACE_EVENTS")?)?,
            bulk_load: on_off("CTSYNC_BULK_LOAD", &get("CTSYNC_BULK_LOAD")?)?,
        })
    }
}

/// The HTTP access rules from the API settings (`CTSYNC_API_*`,
/// `CTSYNC_ALLOWED_HOSTS`) for a server bound to `http_addr`; the daemon
/// and the demo read them alike.
pub fn http_access(
    source: &BTreeMap<&'static str, String>,
    http_addr: &SocketAddr,
) -> Result<crate::http::Access, ConfigError> {
    let source = &with_secret_files(source)?;
    let optional = |name: &'static str| {
        source
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let flag = |name: &'static str| -> Result<bool, ConfigError> {
        boolean(name, optional(name).as_deref().unwrap_or("false"))
    };
    let token = optional("CTSYNC_API_TOKEN");
    let allowed_hosts: Vec<String> = match optional("CTSYNC_ALLOWED_HOSTS") {
        Some(list) => list
            .split(',')
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect(),
        None => default_allowed_hosts(http_addr),
    };
    let trusted_proxies = optional("CTSYNC_TRUSTED_PROXIES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<std::net::IpAddr>()
                .map_err(|_| ConfigError::Invalid {
                    name: "CTSYNC_TRUSTED_PROXIES",
                    message: format!(
                        "{p:?} is not an IP address (list proxies' addresses, comma-separated)"
                    ),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tokens = match optional("CTSYNC_API_TOKENS_FILE") {
        None => crate::http::Tokens::single(token),
        Some(path) => {
            let invalid = |message: String| ConfigError::Invalid {
                name: "CTSYNC_API_TOKENS_FILE",
                message,
            };
            let text = std::fs::read_to_string(&path)
                .map_err(|e| invalid(format!("cannot read {path}: {e}")))?;
            let named =
                crate::http::Tokens::parse(&text).map_err(|e| invalid(format!("{path}, {e}")))?;
            if named.is_empty() {
                return Err(invalid(format!(
                    "{path} names no token: add lines `<name> <read|operate> <token>`, or unset the setting"
                )));
            }
            crate::http::Tokens::single(token)
                .with(named)
                .map_err(|e| invalid(format!("{path}: {e}")))?
        }
    };
    Ok(crate::http::Access::with_writes(
        None,
        flag("CTSYNC_API_READ_ONLY")?,
        flag(crate::http::ALLOW_UNAUTHENTICATED)?,
        &allowed_hosts,
    )
    .with_tokens(tokens)
    .with_trusted_proxies(trusted_proxies))
}

/// Every setting the environment sets, without a config file (the
/// demo's source for [`http_access`]).
pub fn env_settings() -> BTreeMap<&'static str, String> {
    SETTINGS
        .iter()
        .filter_map(|s| std::env::var(s.env).ok().map(|v| (s.env, v)))
        .collect()
}

/// An operator's instance id: it goes into lease values (`<id> <token>`),
/// so no spaces, and into `[ctsync].[fence]` (nvarchar(200)).
fn valid_instance_id(id: &str) -> Result<String, ConfigError> {
    let ok = id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if ok {
        Ok(id.to_string())
    } else {
        Err(ConfigError::Invalid {
            name: "CTSYNC_INSTANCE_ID",
            message: format!(
                "{id:?}: use at most 100 letters, digits, '.', '_', '-' or ':' (it must differ between processes)"
            ),
        })
    }
}

/// `<host>-<pid>-<random>`: distinct for every process, even two on one
/// host or a restart that reuses a pid.
fn default_instance_id() -> String {
    let host = this_hostname().unwrap_or_else(|| "ctsync".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(60)
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let random = std::collections::hash_map::RandomState::new();
    let mix = std::hash::BuildHasher::hash_one(&random, (nanos, std::process::id()));
    format!("{host}-{}-{:06x}", std::process::id(), mix & 0xff_ffff)
}

fn lease_ttl(value: &str, poll_secs: u64) -> Result<Duration, ConfigError> {
    let secs: u64 = parse("CTSYNC_LEASE_TTL_SECS", value, "a whole number of seconds")?;
    if secs < 2 * poll_secs {
        return Err(ConfigError::Invalid {
            name: "CTSYNC_LEASE_TTL_SECS",
            message: format!(
                "{secs} is less than twice the poll interval ({poll_secs} s): leases would expire \
                 between renewals; use at least {}",
                2 * poll_secs
            ),
        });
    }
    Ok(Duration::from_secs(secs))
}

fn this_hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// The `Host` names the page and API answer to by default: loopback, the
/// bind address, this machine's host name, and the compose service name.
fn default_allowed_hosts(addr: &SocketAddr) -> Vec<String> {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1", "ctsync"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if !addr.ip().is_unspecified() {
        hosts.push(addr.ip().to_string());
    }
    if let Some(name) = this_hostname() {
        hosts.push(name);
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> BTreeMap<&'static str, String> {
        let mut m = BTreeMap::new();
        m.insert(
            "MSSQL_PRIMARY_URL",
            "mssql://sa:Secret1!@primary:1433/testct".to_string(),
        );
        m.insert(
            "MSSQL_REPLICA_URL",
            "mssql://sa:Secret2!@replica:1433/testct".to_string(),
        );
        m
    }

    #[test]
    fn defaults_apply_when_only_the_endpoints_are_set() {
        let c = Config::from_source(&base()).expect("valid");
        assert_eq!(c.sync.poll_interval, Duration::from_secs(5));
        assert_eq!(c.sync.full_load_page_size, 5_000);
        assert!(!c.sync.auto_reload_stale);
        assert_eq!(c.sync.idle_advance, Duration::from_secs(60));
        assert_eq!(c.change_copy_timeout, Duration::from_secs(600));
        assert_eq!(c.change_isolation, ChangeIsolation::Snapshot);
        assert_eq!(c.http_addr.port(), 8080);
        // No token: the API and page are read-only.
        assert!(!c.access.writes().enabled);
        assert!(!c.access.unauthenticated_writes());
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("Secret1") && !shown.contains("Secret2"),
            "{shown}"
        );
    }

    #[test]
    fn writes_without_a_token_need_the_explicit_opt_in() {
        let mut m = base();
        m.insert("CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES", "true".into());
        let c = Config::from_source(&m).expect("valid");
        assert!(c.access.writes().enabled && c.access.unauthenticated_writes());
        m.insert("CTSYNC_API_TOKEN", "t0k".into());
        let c = Config::from_source(&m).expect("valid");
        assert!(c.access.writes().token_required && c.access.opt_in_ignored());
        m.insert("CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES", "maybe".into());
        let e = Config::from_source(&m).expect_err("invalid").to_string();
        assert!(e.contains("CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES"), "{e}");
    }

    #[test]
    fn secrets_come_from_files_by_one_rule() {
        let dir = std::env::temp_dir().join(format!("ctsync-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write");
            path.display().to_string()
        };
        let mut m = base();
        m.remove("MSSQL_PRIMARY_URL");
        m.insert(
            "MSSQL_PRIMARY_URL_FILE",
            file("primary", "mssql://sa:FromF1le@db1:1433/app\n"),
        );
        m.insert(
            "REDIS_URL_FILE",
            file("redis", "redis://:R3dis@r:6379/2\r\n"),
        );
        m.insert("CTSYNC_API_TOKEN_FILE", file("token", "t0ken-from-file\n"));
        let c = Config::from_source(&m).expect("valid");
        assert_eq!(c.primary.to_string(), "db1:1433/app");
        assert_eq!(c.redis_url.expose(), "redis://:R3dis@r:6379/2");
        assert!(c.access.has_token());
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("FromF1le") && !shown.contains("R3dis"),
            "{shown}"
        );

        let cases = [
            (
                "MSSQL_REPLICA_URL_FILE",
                file("replica", "mssql://sa:x@db2/app"),
                "MSSQL_REPLICA_URL is set too",
            ),
            (
                "REDIS_URL_FILE",
                dir.join("absent").display().to_string(),
                "cannot read",
            ),
            ("CTSYNC_API_TOKEN_FILE", file("empty", " \n"), "is empty"),
        ];
        for (name, path, want) in cases {
            let mut m = m.clone();
            if name == "MSSQL_REPLICA_URL_FILE" {
                m.insert("MSSQL_REPLICA_URL", "mssql://sa:Secret2@db2/app".into());
            }
            m.insert(name, path.clone());
            let e = Config::from_source(&m).expect_err(name).to_string();
            assert!(e.contains(name) && e.contains(want), "{e}");
            assert!(!e.contains("Secret2") && !e.contains("FromF1le"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The core's limit on a change set's open leaves the copy all the
    /// time `CTSYNC_CHANGE_COPY_TIMEOUT_SECS` gives it, and a minute.
    #[test]
    fn the_change_open_limit_follows_the_copy_timeout() {
        let c = Config::from_source(&base()).expect("valid");
        assert_eq!(c.sync.call_limits.change_open, Duration::from_secs(660));
        let mut m = base();
        m.insert("CTSYNC_CHANGE_COPY_TIMEOUT_SECS", "1800".to_string());
        let c = Config::from_source(&m).expect("valid");
        assert_eq!(c.change_copy_timeout, Duration::from_secs(1800));
        assert_eq!(c.sync.call_limits.change_open, Duration::from_secs(1860));
        assert_eq!(c.sync.call_limits.primary_meta, Duration::from_secs(60));
    }

    #[test]
    fn missing_and_invalid_values_name_the_variable() {
        let mut m = base();
        m.remove("MSSQL_REPLICA_URL");
        let e = Config::from_source(&m).expect_err("missing").to_string();
        assert!(e.contains("MSSQL_REPLICA_URL"), "{e}");

        for (name, bad) in [
            ("CTSYNC_POLL_INTERVAL_SECS", "0"),
            ("CTSYNC_IDLE_ADVANCE_SECS", "0"),
            ("CTSYNC_PRIMARY_CONNECTIONS", "1"),
            ("CTSYNC_CHANGE_COPY_TIMEOUT_SECS", "0"),
            ("CTSYNC_CHANGE_ISOLATION", "serializable"),
            ("CTSYNC_FULL_LOAD_PAGE_SIZE", "lots"),
            ("CTSYNC_AUTO_RELOAD_STALE", "maybe"),
            ("CTSYNC_ENCRYPT", "strictest"),
            ("CTSYNC_HTTP_ADDR", "nowhere"),
            ("REDIS_URL", "http://x"),
        ] {
            let mut m = base();
            m.insert(name, bad.to_string());
            let e = Config::from_source(&m).expect_err(name).to_string();
            assert!(e.contains(name), "{e}");
        }
    }

    #[test]
    fn toml_file_supplies_settings_and_rejects_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("ctsync-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "primary_url = \"mssql://sa:pw@p:1433/db\"\nreplica_url = \"mssql://sa:pw@r:1433/db\"\n\
             poll_interval_secs = 2\nauto_reload_stale = true\n",
        )
        .expect("write");
        let source = read_file(good.to_str().expect("utf-8 path")).expect("parses");
        let c = Config::from_source(&source).expect("valid");
        assert_eq!(c.sync.poll_interval, Duration::from_secs(2));
        assert!(c.sync.auto_reload_stale);
        assert_eq!(c.primary.to_string(), "p:1433/db");

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "pol_interval = 3\n").expect("write");
        let e = read_file(bad.to_str().expect("utf-8 path"))
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains("pol_interval"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
