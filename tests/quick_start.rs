//! The original tool's quick start, word for word, on ctsync's stack: the
//! verbatim copy of its setup SQL in `sql/`, the compose defaults its
//! README names (password, ports, database, Redis container), and its
//! redis-cli commands naming exactly ctsync's keys. The original README is
//! kept in the repository as `docs/original-tool-readme.md`.

use std::path::PathBuf;

use ctsync::mssql::{Endpoint, TlsSettings};
use ctsync_actors::keys;
use ctsync_actors::model::TableId;
use yaml_rust2::{Yaml, YamlLoader};

fn read(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The fenced blocks of a Markdown text with the given language.
fn blocks(markdown: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        match &mut current {
            None if trimmed == format!("```{lang}") => current = Some(String::new()),
            Some(_) if trimmed == "```" => out.extend(current.take()),
            Some(text) => {
                text.push_str(line.strip_prefix("    ").unwrap_or(line.trim()));
                text.push('\n');
            }
            None => {}
        }
    }
    out
}

/// Lines of ctsync's own header above the verbatim copy.
const HEADER_LINES: usize = 4;

/// The script without ctsync's header.
fn without_header(script: &str) -> String {
    let lines: Vec<&str> = script.lines().collect();
    assert!(lines[..HEADER_LINES].iter().all(|l| l.starts_with("-- ")));
    lines[HEADER_LINES..].join("\n")
}

fn normalize(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

#[test]
fn the_original_setup_sql_is_kept_verbatim() {
    let readme = read("docs/original-tool-readme.md");
    let sql = blocks(&readme, "sql");
    let setup = sql.first().expect("the README's setup SQL block");
    assert!(setup.contains("CREATE EVENT NOTIFICATION SyncDDLEvents"));
    let copy = read("sql/00-original-setup.sql");
    assert!(copy.starts_with("-- The original tool's setup SQL, verbatim"));
    assert_eq!(normalize(&without_header(&copy)), normalize(setup));
}

fn compose() -> Yaml {
    YamlLoader::load_from_str(&read("docker-compose.yml"))
        .expect("compose YAML")
        .remove(0)
}

/// The value compose gives `${VAR:-default}` when VAR is not set.
fn with_defaults(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .expect("closing brace");
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map(|(_, d)| d).unwrap_or(""));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_compose_defaults_are_the_original_readmes() {
    let doc = compose();
    let services = &doc["services"];
    for (service, port) in [
        // Bound to loopback: the README's localhost:1434 still works.
        ("mssql_primary", "127.0.0.1:1434:1433"),
        ("mssql_replica", "127.0.0.1:1435:1433"),
    ] {
        let s = &services[service];
        assert_eq!(
            with_defaults(
                s["environment"]["MSSQL_SA_PASSWORD"]
                    .as_str()
                    .expect("password")
            ),
            "Password123!",
            "{service}: the original README connects with Password123!"
        );
        assert_eq!(s["ports"][0].as_str(), Some(port), "{service}");
    }
    assert_eq!(
        services["redis"]["container_name"].as_str(),
        Some("redis_sync_state")
    );
    let init = services["mssql_init"]["command"][0]
        .as_str()
        .expect("init command");
    assert!(
        init.contains("/sql/00-original-setup.sql"),
        "the init runs the original SQL"
    );
    assert!(
        init.contains("sys.databases WHERE name = N'testct'"),
        "…only when testct does not exist yet (it is not idempotent)"
    );
    assert!(init.contains("/sql/01-ctsync-demo-tables.sql"));
    for (var, host) in [
        ("MSSQL_PRIMARY_URL", "mssql_primary:1433/testct"),
        ("MSSQL_REPLICA_URL", "mssql_replica:1433/testct"),
    ] {
        let value = with_defaults(
            services["ctsync"]["environment"][var]
                .as_str()
                .expect("url"),
        );
        let endpoint = Endpoint::parse(var, &value, TlsSettings::default()).expect(var);
        assert_eq!(endpoint.to_string(), host);
        assert!(!endpoint.to_string().contains("Password123"));
        // A password with every character that breaks a URL (or an
        // unquoted ADO value) still reaches SQL Server as one password.
        let raw = services["ctsync"]["environment"][var]
            .as_str()
            .expect("url");
        let hostile = raw.replace("${MSSQL_SA_PASSWORD:-Password123!}", "p#a/s?s@w;o=r'd\"x}}");
        let endpoint = Endpoint::parse(var, &hostile, TlsSettings::default()).expect(var);
        assert_eq!(endpoint.to_string(), host, "{hostile}");
    }
}

#[test]
fn the_original_redis_commands_name_ctsyncs_keys() {
    let readme = read("docs/original-tool-readme.md");
    let mut seen = 0;
    for block in blocks(&readme, "bash") {
        for line in block.lines() {
            let Some(rest) = line
                .trim()
                .strip_prefix("docker exec redis_sync_state redis-cli SET ")
            else {
                continue;
            };
            let key = rest.split_whitespace().next().expect("key");
            let (kind, table) = key
                .strip_prefix("mssql_sync:")
                .and_then(|k| k.split_once(':'))
                .expect("mssql_sync:<kind>:<table>");
            let id = TableId::from_key_name(table).expect("a table name");
            let expected = match kind {
                "enabled" => keys::enabled(&id),
                "force_full_load" => keys::force_full_load(&id),
                "version" => keys::version(&id),
                other => panic!("unknown key kind {other}"),
            };
            assert_eq!(key, expected);
            seen += 1;
        }
    }
    assert!(seen >= 5, "{seen} commands checked");
}
