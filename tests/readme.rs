//! The README and the docs it links are part of the contract: the README's
//! test command is the one `.ci/run` runs and its CLI list names every
//! command; docs/configuration.md lists exactly the settings the config
//! code reads; docs/monitoring.md the metrics and the API's fields; and the
//! README stays short enough to read in five minutes, linking every page.

use std::collections::BTreeSet;

use ctsync::config::SETTINGS;

fn read(path: &str) -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_string() + path)
        .expect(path)
}

#[test]
fn readme_test_command_is_what_ci_runs() {
    let readme = read("README.md");
    let ci = read(".ci/run");
    let section = readme
        .split("## Run the tests")
        .nth(1)
        .expect("a 'Run the tests' section");
    let command = section
        .split("```")
        .nth(1)
        .expect("a code block with the test command")
        .trim();
    assert_eq!(command, "cargo test --workspace --locked");
    // Exactly that command, its output kept for the correctness report.
    assert!(
        ci.lines().any(|l| {
            let l = l.trim();
            l == command
                || l.strip_prefix(command)
                    .is_some_and(|rest| rest.starts_with(" 2>&1 | tee "))
        }),
        ".ci/run must run `{command}`"
    );
}

#[test]
fn readme_configuration_table_matches_the_settings_read_by_the_code() {
    let readme = read("docs/configuration.md");
    let section = readme
        .split("# Configuration")
        .nth(1)
        .expect("a Configuration page");
    let section = section.split("\n## ").next().unwrap_or(section);
    let documented: BTreeSet<String> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('`').nth(1).map(str::to_string))
        .collect();
    let mut read_by_code: BTreeSet<String> = SETTINGS.iter().map(|s| s.env.to_string()).collect();
    read_by_code.insert("CTSYNC_CONFIG".into()); // read by the CLI (clap `env`)
    assert_eq!(documented, read_by_code);
    for s in SETTINGS {
        let row = section
            .lines()
            .find(|l| l.starts_with(&format!("| `{}`", s.env)))
            .expect("row");
        assert!(row.contains(&format!("`{}`", s.file_key)), "{row}");
        if let Some(default) = s.default {
            assert!(
                row.contains(&format!("`{default}`")),
                "default of {} in {row}",
                s.env
            );
        }
    }
}

/// The table of the README section starting at `heading`: the first cell
/// of each row, every backticked name in it.
fn first_cells(readme: &str, heading: &str) -> BTreeSet<String> {
    let section = readme
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let table = section
        .split("\n\n")
        .find(|block| block.trim_start().starts_with('|'))
        .expect("a table");
    table
        .lines()
        .skip(2)
        .filter_map(|row| row.split('|').nth(1))
        .flat_map(|cell| {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn readme_metric_table_lists_exactly_the_metrics_ctsync_exports() {
    let readme = read("docs/monitoring.md");
    let documented = first_cells(&readme, "Metrics (all `ctsync_`");
    let exported: BTreeSet<String> = ctsync_actors::telemetry::ALL
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(documented, exported);
}

#[test]
fn readme_cli_list_names_every_command() {
    use clap::CommandFactory;
    let readme = read("README.md");
    let block = readme
        .split("The CLI sets the same keys")
        .nth(1)
        .and_then(|s| s.split("```").nth(1))
        .expect("the CLI code block");
    let documented: BTreeSet<String> = block
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ctsync "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    let commands: BTreeSet<String> = ctsync::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    assert_eq!(documented, commands);
}

mod support;

#[actix_rt::test]
async fn readme_api_tables_list_exactly_the_fields_the_api_serves() {
    use actix_web::{test, web, App};
    use std::time::Duration;
    let readme = read("docs/monitoring.md");
    let per_table = first_cells(&readme, "Fields of each table in `GET /api/tables`");
    let top_level = first_cells(&readme, "Top-level fields of `GET /api/tables`");

    let h = support::Harness::new();
    h.primary
        .create_table(support::fixtures::user_table(), true);
    let run = h.start(support::fast_config());
    support::eventually(Duration::from_secs(10), "discovered", || async {
        run.board.get("User").is_some()
    })
    .await;
    let shared = h.http_state(run.board.clone());
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(shared))
            .configure(ctsync::http::routes),
    )
    .await;
    let body: serde_json::Value = test::call_and_read_body_json(
        &app,
        test::TestRequest::get().uri("/api/tables").to_request(),
    )
    .await;
    let keys = |v: &serde_json::Value| -> BTreeSet<String> {
        v.as_object().expect("object").keys().cloned().collect()
    };
    assert_eq!(keys(&body), top_level);
    assert_eq!(keys(&body["tables"][0]), per_table);
}

#[test]
fn the_readme_is_short_and_links_every_docs_page() {
    let readme = read("README.md");
    let lines = readme.lines().count();
    assert!(lines <= 250, "README.md has {lines} lines");
    let docs = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/docs")).expect("docs");
    for entry in docs.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".md") {
            assert!(
                readme.contains(&format!("](docs/{name})")),
                "README does not link docs/{name}"
            );
        }
    }
}
