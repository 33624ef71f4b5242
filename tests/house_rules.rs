//! House rules a reviewer would otherwise check by hand: every metric is
//! named in `ctsync_actors::telemetry` (so the README's metric table, the
//! dashboard and the alerts can be held to one list), never spelled out
//! where it is emitted.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_metric_is_named_in_telemetry() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("actors/src"), &mut files);
    let mut spelled_out = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        for (n, line) in text.lines().enumerate() {
            for mac in ["counter!(\"", "gauge!(\"", "histogram!(\""] {
                if line.contains(mac) {
                    spelled_out.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        spelled_out.is_empty(),
        "metrics named where they are emitted instead of in telemetry.rs:\n{}",
        spelled_out.join("\n")
    );
    // And every name telemetry exports follows Prometheus's conventions.
    for name in ctsync_actors::telemetry::ALL {
        assert!(name.starts_with("ctsync_"), "{name}");
    }
}
