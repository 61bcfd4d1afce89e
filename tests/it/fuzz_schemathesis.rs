//! `scripts/fuzz --quick`: schemathesis against every operation of the OpenAPI document, on a server the
//! script starts itself (free port, temp cache dir, built-in PostgreSQL) and seeds with a template, a
//! version and a workspace. Passes only with zero 5xx answers and zero answers that break the documented
//! schema.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_coder");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
const TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test]
async fn schemathesis_finds_no_server_errors_or_schema_violations() {
    let dir = tempfile::Builder::new()
        .prefix("coder-fuzz-test-")
        .tempdir()
        .unwrap();
    let log_path = dir.path().join("fuzz.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(Path::new(REPO).join("scripts/fuzz"))
        .arg("--quick")
        .current_dir(REPO)
        // The binary cargo built for this test run: no cargo build inside cargo test.
        .env("CODER_BIN", BIN)
        .env("TMPDIR", dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("running scripts/fuzz");
    let status = match tokio::time::timeout(TIMEOUT, child.wait()).await {
        Ok(status) => status.unwrap(),
        Err(_) => {
            // SIGINT lets the script's EXIT trap stop the server (and its PostgreSQL).
            if let Some(pid) = child.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGINT);
            }
            let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
            let _ = child.kill().await;
            let output = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("scripts/fuzz --quick did not finish within {TIMEOUT:?}:\n{output}");
        }
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let summary: Vec<&str> = output
        .lines()
        .skip_while(|l| !l.starts_with("fuzz summary:"))
        .take_while(|l| l.starts_with("fuzz summary:") || l.starts_with("  "))
        .collect();
    println!("{} (wall {:.0?})", summary.join("\n"), started.elapsed());
    assert!(
        status.success(),
        "scripts/fuzz --quick failed ({status}): schemathesis found a 5xx or a schema violation \
         (reproduce with scripts/fuzz --quick):\n{output}"
    );
    assert!(
        !summary.is_empty(),
        "scripts/fuzz printed no summary:\n{output}"
    );
}
