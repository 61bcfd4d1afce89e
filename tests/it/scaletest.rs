//! `coder scaletest` at a reduced size: the real binary against a test server (prebuilds enabled, 1 s
//! reconciliation), its `--json` report parsed and checked for the expected counts and no errors.

use std::time::Duration;

use serde_json::Value;

use crate::harness::TestApp;
use crate::prebuilds::enable;

const BIN: &str = env!("CARGO_BIN_EXE_coder");

async fn app() -> TestApp {
    TestApp::with_config(|c| {
        enable(c);
        c.prebuilds_reconciliation_interval = Duration::from_secs(1);
        c.prometheus_enable = true;
    })
    .await
}

/// Runs `coder scaletest <args> --json` against the app as its owner; the parsed report.
async fn scaletest(app: &TestApp, args: &[&str]) -> Value {
    let owner = app.owner().await;
    let config = tempfile::tempdir().unwrap();
    let metrics = format!(
        "http://{}/metrics",
        app.metrics_addr.expect("metrics listener")
    );
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("scaletest")
        .args(args)
        .args(["--json", "--cleanup", "--timeout", "40s"])
        .args(["--prometheus-url", &metrics])
        .env("CODER_URL", &app.base_url)
        .env("CODER_SESSION_TOKEN", owner.token())
        .env("CODER_CONFIG_DIR", config.path())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(55), cmd.output())
        .await
        .expect("scaletest finished within 55 s")
        .expect("run coder scaletest");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scaletest failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[tokio::test]
async fn scaletest_workspaces_drives_agents_without_errors() {
    let app = app().await;
    let r = scaletest(
        &app,
        &[
            "workspaces",
            "--count",
            "10",
            "--duration",
            "3s",
            "--metadata-interval",
            "1s",
        ],
    )
    .await;
    assert_eq!(r["errors"], 0, "{r:#}");
    assert_eq!(r["create"]["created"], 10, "{r:#}");
    assert_eq!(r["create"]["running"], 10, "{r:#}");
    assert_eq!(r["agents"]["agents"], 10, "{r:#}");
    // Per agent: lifecycle starting + ready when its workspace runs, then metadata + stats once a
    // second for 3 s.
    assert_eq!(r["agents"]["lifecycle"]["requests"], 20, "{r:#}");
    let requests = r["agents"]["requests"].as_u64().unwrap();
    assert!((40..=80).contains(&requests), "{requests} requests: {r:#}");
    for call in ["metadata", "report-stats"] {
        assert!(
            r["agents"]["by_call"][call]["count"].as_u64().unwrap() >= 20,
            "{call}: {r:#}"
        );
    }
    assert!(r["agents"]["latency_ms"]["p95"].as_f64().unwrap() > 0.0);
    assert!(
        r["server"]["agents"]["rss_mib_peak"].as_f64().unwrap() > 0.0,
        "{r:#}"
    );
    assert_eq!(r["cleanup"]["ok"], true, "{r:#}");
    // Everything it created is gone.
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM templates WHERE name LIKE 'scaletest-%' AND NOT deleted",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn scaletest_prebuilds_fills_claims_and_rolls_over() {
    let app = app().await;
    let r = scaletest(
        &app,
        &[
            "prebuilds",
            "--templates",
            "2",
            "--presets",
            "2",
            "--instances",
            "2",
            "--claims",
            "4",
        ],
    )
    .await;
    assert_eq!(r["errors"], 0, "{r:#}");
    assert_eq!(r["desired_total"], 8, "{r:#}");
    assert_eq!(r["fill"]["full"], true, "{r:#}");
    assert_eq!(r["fill"]["prebuilds"], 8, "{r:#}");
    assert_eq!(r["ready"]["agents"], 8, "{r:#}");
    assert_eq!(r["ready"]["eligible"], 8, "{r:#}");
    assert_eq!(r["claims"]["succeeded"], 4, "{r:#}");
    assert!(r["claims"]["claimed"].as_u64().unwrap() >= 1, "{r:#}");
    assert_eq!(
        r["claims"]["claimed"].as_u64().unwrap() + r["claims"]["fresh"].as_u64().unwrap(),
        4
    );
    assert_eq!(r["rollover"]["full"], true, "{r:#}");
    assert_eq!(r["rollover"]["prebuilds"], 8, "{r:#}");
    assert_eq!(r["cleanup"]["ok"], true, "{r:#}");
}
