//! What can be checked of the packaging without Docker or SQL Server: the
//! compose file parses and has every service the README names, every path it
//! mounts exists, Prometheus/Grafana files parse and agree with each other,
//! and every batch of the sql/ scripts parses with the same T-SQL parser the
//! core uses (batches it cannot parse are named below, with the reason).

use std::path::Path;

use sqlparser::dialect::MsSqlDialect;
use sqlparser::parser::Parser;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Yaml {
    let docs = YamlLoader::load_from_str(&read(path))
        .unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"));
    docs.into_iter()
        .next()
        .unwrap_or_else(|| panic!("{path} is empty"))
}

fn compose() -> Yaml {
    yaml("docker-compose.yml")
}

fn service<'a>(doc: &'a Yaml, name: &str) -> &'a Yaml {
    let s = &doc["services"][name];
    assert!(!s.is_badvalue(), "docker-compose.yml has no service {name}");
    s
}

/// What a hardened compose stack must be (issue 33 item 3): every
/// published port bound to loopback, every image pinned to a version,
/// long-running services restarted and memory-limited, Prometheus and
/// Grafana with healthchecks, Grafana's admin password from the
/// environment. The problems found, one line each.
fn hardening_problems(doc: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(services) = doc["services"].as_hash() else {
        return vec!["no services".into()];
    };
    for (name, s) in services {
        let name = name.as_str().unwrap_or("?");
        let one_shot = s["restart"].as_str() == Some("no");
        for port in s["ports"].as_vec().into_iter().flatten() {
            let port = port.as_str().unwrap_or_default();
            if !port.starts_with("127.0.0.1:") {
                problems.push(format!(
                    "{name}: port {port:?} is published on every interface"
                ));
            }
        }
        let image = s["image"].as_str().unwrap_or_default();
        if s["build"].is_badvalue() {
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            if tag.is_empty()
                || tag == "latest"
                || tag.ends_with("-latest")
                || !tag.chars().any(|c| c.is_ascii_digit())
            {
                problems.push(format!(
                    "{name}: image {image:?} is not pinned to a version"
                ));
            }
        }
        if !one_shot {
            if s["restart"].as_str() != Some("unless-stopped")
                && s["restart"].as_str() != Some("always")
            {
                problems.push(format!("{name}: no restart policy"));
            }
            if s["mem_limit"].is_badvalue() {
                problems.push(format!("{name}: no memory limit"));
            }
        }
        if matches!(name, "prometheus" | "grafana") && s["healthcheck"]["test"].is_badvalue() {
            problems.push(format!("{name}: no healthcheck"));
        }
    }
    let grafana = &doc["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"];
    if !grafana
        .as_str()
        .is_some_and(|p| p.starts_with("${GRAFANA_ADMIN_PASSWORD"))
    {
        problems.push("grafana: the admin password does not come from GRAFANA_ADMIN_PASSWORD (admin/admin otherwise)".into());
    }
    problems
}

#[test]
fn the_compose_stack_is_hardened_and_a_canary_is_not() {
    let problems = hardening_problems(&compose());
    assert!(
        problems.is_empty(),
        "docker-compose.yml:\n{}",
        problems.join("\n")
    );
    // The stack as it was before: every check must catch its part.
    let canary = read("docker-compose.yml")
        .replace("127.0.0.1:1434:1433", "1434:1433")
        .replace("prom/prometheus:v2.53.0", "prom/prometheus:latest")
        .replace("GF_SECURITY_ADMIN_PASSWORD", "GF_UNRELATED")
        .replace("    mem_limit: 512m\n", "");
    let canary = YamlLoader::load_from_str(&canary)
        .expect("canary YAML")
        .remove(0);
    let found = hardening_problems(&canary).join("\n");
    for want in [
        "mssql_primary: port \"1434:1433\" is published on every interface",
        "prometheus: image \"prom/prometheus:latest\" is not pinned",
        "grafana: the admin password",
        "redis: no memory limit",
        "ctsync: no memory limit",
    ] {
        assert!(
            found.contains(want),
            "the canary's {want:?} was not found in:\n{found}"
        );
    }
}

#[test]
fn compose_has_every_service_with_the_documented_ports_and_names() {
    let doc = compose();
    for name in [
        "mssql_primary",
        "mssql_replica",
        "mssql_init",
        "redis",
        "ctsync",
        "prometheus",
        "grafana",
    ] {
        service(&doc, name);
    }
    let ports = |name: &str| -> Vec<String> {
        service(&doc, name)["ports"]
            .as_vec()
            .map(|v| {
                v.iter()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(ports("mssql_primary"), ["127.0.0.1:1434:1433"]);
    assert_eq!(ports("mssql_replica"), ["127.0.0.1:1435:1433"]);
    // `--scale ctsync=2` works: no fixed container name, a host port each.
    assert!(
        service(&doc, "ctsync")["container_name"].is_badvalue(),
        "a fixed container name would stop a second instance"
    );
    assert_eq!(ports("ctsync"), ["127.0.0.1:8080-8081:8080"]);
    let redis = service(&doc, "redis");
    assert_eq!(redis["container_name"].as_str(), Some("redis_sync_state"));
    let command: Vec<&str> = redis["command"]
        .as_vec()
        .map(|v| v.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default();
    assert!(
        command.windows(2).any(|w| w == ["--appendonly", "yes"]),
        "Redis keeps versions across restarts: {command:?}"
    );
    // Redis is the control plane: a password, and not published on the host.
    assert!(
        ports("redis").is_empty(),
        "Redis must not be published on the host"
    );
    let password = command
        .windows(2)
        .find(|w| w[0] == "--requirepass")
        .map(|w| w[1])
        .expect("Redis has a password");
    assert!(password.starts_with("${REDIS_PASSWORD:-"), "{password}");
    assert_eq!(
        redis["environment"]["REDISCLI_AUTH"].as_str(),
        Some(password),
        "docker exec redis_sync_state redis-cli … authenticates by itself"
    );
    let ctsync = service(&doc, "ctsync");
    assert_eq!(ctsync["build"].as_str(), Some("."));
    assert_eq!(
        ctsync["depends_on"]["mssql_init"]["condition"].as_str(),
        Some("service_completed_successfully"),
        "ctsync starts after the databases are set up"
    );
    assert_eq!(
        ctsync["depends_on"]["redis"]["condition"].as_str(),
        Some("service_healthy")
    );
    let init = service(&doc, "mssql_init");
    for db in ["mssql_primary", "mssql_replica"] {
        assert_eq!(
            init["depends_on"][db]["condition"].as_str(),
            Some("service_healthy")
        );
        assert!(
            !service(&doc, db)["healthcheck"]["test"].is_badvalue(),
            "{db} has a healthcheck"
        );
    }
    let redis_url = ctsync["environment"]["REDIS_URL"]
        .as_str()
        .expect("REDIS_URL");
    assert_eq!(
        redis_url,
        format!("redis://:{password}@redis:6379/"),
        "ctsync's REDIS_URL carries the password"
    );
    assert!(
        ctsync["environment"]["CTSYNC_API_TOKEN"].as_str().is_some(),
        "the compose stack sets an API token"
    );
    // Every environment variable ctsync gets is one the config reads.
    let env = ctsync["environment"].as_hash().expect("ctsync environment");
    for key in env.keys().filter_map(Yaml::as_str) {
        assert!(
            ctsync::config::SETTINGS.iter().any(|s| s.env == key),
            "{key} is not a ctsync setting"
        );
    }
    let grafana = service(&doc, "grafana");
    assert_eq!(
        grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"].as_str(),
        Some("true")
    );
    assert_eq!(
        grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"].as_str(),
        Some("Viewer")
    );
}

#[test]
fn every_path_the_compose_file_mounts_exists() {
    let doc = compose();
    let services = doc["services"].as_hash().expect("services");
    let mut checked = 0;
    for (name, s) in services {
        for volume in s["volumes"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter_map(Yaml::as_str)
        {
            let host = volume.split(':').next().unwrap_or_default();
            if host.starts_with("./") {
                assert!(
                    root().join(host).exists(),
                    "{name:?} mounts {host}, which is not in the repository"
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 4,
        "expected the sql/, prometheus and grafana mounts, checked {checked}"
    );
    assert!(root().join("Dockerfile").exists());
}

#[test]
fn readme_commands_and_names_match_the_compose_file() {
    let readme = read("README.md");
    let doc = compose();
    assert!(readme.contains("docker compose up -d --build"));
    for name in [
        "mssql_primary",
        "mssql_replica",
        "redis_sync_state",
        "prometheus",
        "grafana",
    ] {
        assert!(readme.contains(name), "README should name {name}");
    }
    // `docker exec <container>` in the README must name a container of the file.
    let containers: Vec<String> = doc["services"]
        .as_hash()
        .expect("services")
        .iter()
        .filter_map(|(k, s)| {
            s["container_name"]
                .as_str()
                .or(k.as_str())
                .map(str::to_string)
        })
        .collect();
    for line in readme.lines().filter(|l| l.contains("docker exec ")) {
        let name = line
            .split("docker exec ")
            .nth(1)
            .and_then(|r| r.split_whitespace().find(|w| !w.starts_with('-')))
            .unwrap_or_default();
        assert!(
            containers.iter().any(|c| c == name),
            "README runs docker exec on unknown container {name}"
        );
    }
}

#[test]
fn prometheus_and_grafana_files_parse_and_agree() {
    let prom = yaml("prometheus/prometheus.yml");
    // Every instance of the scaled service is scraped, not one of them.
    let sd = &prom["scrape_configs"][0]["dns_sd_configs"][0];
    assert_eq!(sd["names"][0].as_str(), Some("ctsync"));
    assert_eq!(sd["type"].as_str(), Some("A"));
    assert_eq!(sd["port"].as_i64(), Some(8080));
    assert_eq!(
        prom["scrape_configs"][0]["metrics_path"].as_str(),
        Some("/metrics")
    );

    let ds = yaml("grafana/provisioning/datasources/prometheus.yml");
    let source = &ds["datasources"][0];
    assert_eq!(source["type"].as_str(), Some("prometheus"));
    assert_eq!(source["url"].as_str(), Some("http://prometheus:9090"));
    let uid = source["uid"].as_str().expect("datasource uid");

    let dash = yaml("grafana/provisioning/dashboards/ctsync.yml");
    assert_eq!(
        dash["providers"][0]["options"]["path"].as_str(),
        Some("/var/lib/grafana/dashboards")
    );

    let json: serde_json::Value =
        serde_json::from_str(&read("grafana/dashboards/ctsync.json")).expect("dashboard JSON");
    let panels = json["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    for p in panels {
        assert_eq!(
            p["datasource"]["uid"].as_str(),
            Some(uid),
            "panel {} uses the provisioned datasource",
            p["title"]
        );
        let expr = p["targets"][0]["expr"].as_str().unwrap_or_default();
        assert!(
            expr.contains("ctsync_") || expr.starts_with("ALERTS{job=\"ctsync\""),
            "panel {} queries ctsync metrics or ctsync's alerts: {expr}",
            p["title"]
        );
    }
    assert!(
        panels.iter().any(|p| p["targets"][0]["expr"].as_str()
            == Some("ALERTS{job=\"ctsync\", alertstate=\"firing\"}")),
        "the dashboard shows firing alerts"
    );
}

#[test]
fn alerting_rules_are_loaded_and_each_says_what_to_do() {
    let prom = yaml("prometheus/prometheus.yml");
    assert_eq!(prom["rule_files"][0].as_str(), Some("alerts.yml"));
    let compose = read("docker-compose.yml");
    assert!(compose.contains("./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro"));
    let rules = yaml("prometheus/alerts.yml");
    let rules = rules["groups"][0]["rules"].as_vec().expect("rules");
    assert!(rules.len() >= 12, "{} rules", rules.len());
    let alerts_doc = read("docs/monitoring.md");
    for r in rules {
        let name = r["alert"].as_str().expect("alert name");
        let severity = r["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            matches!(severity, "page" | "ticket"),
            "{name}: severity {severity}"
        );
        assert_eq!(r["labels"]["job"].as_str(), Some("ctsync"), "{name}");
        assert!(r["for"].as_str().is_some(), "{name} has a for:");
        assert!(!r["annotations"]["summary"]
            .as_str()
            .unwrap_or_default()
            .is_empty());
        let description = r["annotations"]["description"].as_str().unwrap_or_default();
        assert!(
            description.contains("docs/operating.md")
                || description.contains("docs/consistency.md"),
            "{name}: the description points to the runbook in docs/"
        );
        assert!(
            alerts_doc.contains(&format!("`{name}`")),
            "{name} is listed in docs/monitoring.md's Alerts section"
        );
    }
}

/// Splits a sqlcmd script into batches on lines that are just `GO`.
fn batches(script: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for line in script.lines() {
        if line.trim().eq_ignore_ascii_case("go") {
            out.push(String::new());
        } else if let Some(last) = out.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    out.into_iter()
        .filter(|b| {
            b.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
        })
        .collect()
}

/// Batches sqlparser cannot parse, by the statement they contain, and why.
const NOT_PARSEABLE: &[(&str, &str)] = &[
    (
        "SET ENABLE_BROKER",
        "ALTER DATABASE … SET options are not in sqlparser's grammar",
    ),
    (
        "SET ALLOW_SNAPSHOT_ISOLATION",
        "ALTER DATABASE … SET options are not in sqlparser's grammar",
    ),
    (
        "SET CHANGE_TRACKING",
        "ALTER DATABASE … SET CHANGE_TRACKING is not in sqlparser's grammar",
    ),
    (
        "ENABLE CHANGE_TRACKING",
        "ALTER TABLE … ENABLE CHANGE_TRACKING is not in sqlparser's grammar",
    ),
    (
        "CREATE QUEUE",
        "Service Broker DDL is not in sqlparser's grammar",
    ),
    (
        "CREATE SERVICE",
        "Service Broker DDL is not in sqlparser's grammar",
    ),
    (
        "CREATE EVENT NOTIFICATION",
        "Service Broker DDL is not in sqlparser's grammar",
    ),
    (
        "AS (Price * 1.2)",
        "computed columns are not in sqlparser's grammar",
    ),
];

#[test]
fn every_sql_script_batch_parses_or_is_named_as_unparseable() {
    let mut parsed = 0;
    let mut used = vec![false; NOT_PARSEABLE.len()];
    for file in [
        "sql/00-original-setup.sql",
        "sql/01-ctsync-demo-tables.sql",
        "sql/02-replica-setup.sql",
        "sql/03-ctsync-demo-data.sql",
    ] {
        for batch in batches(&read(file)) {
            match Parser::parse_sql(&MsSqlDialect {}, &batch) {
                Ok(_) => parsed += 1,
                Err(e) => {
                    let known = NOT_PARSEABLE
                        .iter()
                        .position(|(marker, _)| batch.contains(marker));
                    match known {
                        Some(i) => used[i] = true,
                        None => {
                            panic!("{file}: batch does not parse and is not listed ({e}):\n{batch}")
                        }
                    }
                }
            }
        }
    }
    assert!(parsed >= 5, "parsed {parsed} batches");
    for ((marker, _), used) in NOT_PARSEABLE.iter().zip(used) {
        assert!(
            used,
            "NOT_PARSEABLE lists {marker:?}, which no batch needs any more"
        );
    }
}
