//! The `ctsync` binary (placeholder until the daemon wiring lands).

fn main() {
    eprintln!("ctsync: the daemon is not wired yet in this build");
    std::process::exit(2);
}
