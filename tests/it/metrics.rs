//! `/metrics`: exact prebuild values after a scripted scenario, a real exposition-format parser,
//! bounded labels, the listener only when enabled, and docs/metrics.md kept in step with what is
//! served.

use std::collections::{BTreeMap, BTreeSet};

use coder::config::ServerConfig;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{Client, TestApp};
use crate::prebuilds::{enable, pool_template, pool_tf, tick, wait_prebuilds, PREBUILDS_USER};

fn with_metrics(c: &mut ServerConfig) {
    enable(c);
    c.prometheus_enable = true;
    c.prometheus_collect_agent_stats = true;
    c.prometheus_collect_db_metrics = true;
    c.prebuilds_failure_hard_limit = 1;
}

/// One sample: family-level name with its labels, and the value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A small parser for the text format (the Python parser below is the authoritative check).
fn parse(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        // Label values here never contain `",`; good enough for our own output.
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").unwrap();
            map.insert(k.to_string(), v.trim_end_matches('"').to_string());
        }
        samples.push(Sample {
            name: name.to_string(),
            labels: map,
            value: value.parse().unwrap(),
        });
    }
    (types, samples)
}

async fn scrape(app: &TestApp) -> String {
    let addr = app.metrics_addr.expect("metrics enabled");
    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    resp.text().await.unwrap()
}

/// Refreshes the database-backed series, then scrapes.
async fn fresh_scrape(app: &TestApp) -> String {
    app.state.metrics.db_cache.refresh(&app.state).await;
    scrape(app).await
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

async fn preset_id(owner: &Client, version: &str) -> String {
    let presets: Value = owner
        .get(&format!("/api/v2/templateversions/{version}/presets"))
        .await
        .json();
    presets[0]["ID"].as_str().unwrap().to_string()
}

async fn report_ready(app: &TestApp) -> Vec<Uuid> {
    let tokens: Vec<Uuid> = sqlx::query_scalar(
        "SELECT a.auth_token FROM workspaces w
         JOIN LATERAL (SELECT job_id FROM workspace_builds b WHERE b.workspace_id = w.id
                       ORDER BY build_number DESC LIMIT 1) lb ON true
         JOIN workspace_resources r ON r.job_id = lb.job_id
         JOIN workspace_agents a ON a.resource_id = r.id
         WHERE w.owner_id = $1 AND NOT w.deleted AND a.lifecycle_state <> 'ready'",
    )
    .bind(PREBUILDS_USER.parse::<Uuid>().unwrap())
    .fetch_all(app.pool())
    .await
    .unwrap();
    for t in &tokens {
        let agent = app.client().with_token(&t.to_string());
        let resp = agent
            .post(
                "/api/v2/workspaceagents/me/report-lifecycle",
                &json!({"state": "ready"}),
            )
            .await;
        assert_eq!(resp.status, 204);
    }
    tokens
}

/// Pool of 2 (one claimed, refilled), plus a preset whose only prebuild fails on quota.
async fn scenario(app: &TestApp) -> Client {
    let owner = app.owner().await;
    let (template, version) = pool_template(&owner, &pool_tf(2, ""), "echo", "pool").await;
    let costly = pool_tf(
        1,
        r#"
resource "coder_metadata" "cost" {
  resource_id = null_resource.box.id
  daily_cost  = 1
}"#,
    );
    pool_template(&owner, &costly, "echo", "costly").await;
    assert_eq!(tick(app).await.created(), 3);
    wait_prebuilds(&owner, "2 running, 1 failed", |l| {
        l.iter()
            .filter(|w| w["latest_build"]["status"] == "running")
            .count()
            == 2
            && l.iter()
                .filter(|w| w["latest_build"]["status"] == "failed")
                .count()
                == 1
    })
    .await;
    let tokens = report_ready(app).await;
    // Agent statistics, as an agent reports them.
    let agent = app.client().with_token(&tokens[0].to_string());
    let resp = agent
        .post(
            "/api/v2/workspaceagents/me/report-stats",
            &json!({"connection_count": 2, "rx_bytes": 100, "tx_bytes": 50, "session_count_ssh": 1,
                    "connection_median_latency_ms": 12.5}),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let preset = preset_id(&owner, &version).await;
    let resp = owner
        .post(
            "/api/v2/users/me/workspaces",
            &json!({"template_id": template, "name": "claimed", "template_version_preset_id": preset}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM prebuild_claims")
            .fetch_one(app.pool())
            .await
            .unwrap(),
        1
    );
    // Refill: one more prebuild for the pool (not ready yet); the costly preset is hard-limited.
    assert_eq!(tick(app).await.created(), 1);
    wait_prebuilds(&owner, "refilled", |l| {
        l.iter()
            .filter(|w| w["latest_build"]["status"] == "running")
            .count()
            == 2
    })
    .await;
    owner
}

#[tokio::test]
async fn prebuild_series_match_the_database_exactly() {
    let app = TestApp::with_config(with_metrics).await;
    let owner = scenario(&app).await;
    let text = fresh_scrape(&app).await;
    let (types, samples) = parse(&text);
    let pool = [
        ("template_name", "pool"),
        ("preset_name", "pool"),
        ("organization_name", "coder"),
    ];
    let costly = [
        ("template_name", "costly"),
        ("preset_name", "pool"),
        ("organization_name", "coder"),
    ];
    let v = |name: &str, l: &[(&str, &str)]| value(&samples, name, l);
    assert_eq!(
        v("coderd_prebuilt_workspaces_created_total", &pool),
        Some(3.0)
    );
    assert_eq!(
        v("coderd_prebuilt_workspaces_claimed_total", &pool),
        Some(1.0)
    );
    assert_eq!(
        v("coderd_prebuilt_workspaces_failed_total", &pool),
        Some(0.0)
    );
    assert_eq!(v("coderd_prebuilt_workspaces_desired", &pool), Some(2.0));
    assert_eq!(v("coderd_prebuilt_workspaces_running", &pool), Some(2.0));
    // The refill's agent has not reported yet.
    assert_eq!(v("coderd_prebuilt_workspaces_eligible", &pool), Some(1.0));
    assert_eq!(
        v("coderd_prebuilt_workspaces_preset_hard_limited", &pool),
        None
    );
    assert_eq!(
        v("coderd_prebuilt_workspaces_created_total", &costly),
        Some(1.0)
    );
    assert_eq!(
        v("coderd_prebuilt_workspaces_failed_total", &costly),
        Some(1.0)
    );
    assert_eq!(
        v("coderd_prebuilt_workspaces_claimed_total", &costly),
        Some(0.0)
    );
    assert_eq!(v("coderd_prebuilt_workspaces_running", &costly), Some(0.0));
    assert_eq!(
        v("coderd_prebuilt_workspaces_preset_hard_limited", &costly),
        Some(1.0)
    );
    assert_eq!(
        v("coderd_prebuilt_workspaces_reconciliation_paused", &[]),
        Some(0.0)
    );
    let updated = v("coderd_prebuilt_workspaces_metrics_last_updated", &[]).unwrap();
    assert!((chrono::Utc::now().timestamp() as f64 - updated).abs() < 60.0);
    assert_eq!(
        v(
            "coderd_prebuilt_workspace_claim_duration_seconds_count",
            &pool
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "coderd_workspace_creation_duration_seconds_count",
            &[("template_name", "pool"), ("type", "prebuild")]
        ),
        Some(3.0)
    );
    assert_eq!(types["coderd_prebuilt_workspaces_created_total"], "counter");
    assert_eq!(types["coderd_prebuilt_workspaces_eligible"], "gauge");
    assert_eq!(
        types["coderd_prebuilt_workspace_claim_duration_seconds"],
        "histogram"
    );
    // Agent statistics aggregated by the default labels.
    assert_eq!(v("coderd_agentstats_connection_count", &[]), Some(2.0));
    assert_eq!(v("coderd_agentstats_session_count_ssh", &[]), Some(1.0));

    // Paused shows at once after a refresh; the pause flag is not per replica.
    let resp = owner
        .put(
            "/api/v2/prebuilds/settings",
            &json!({"reconciliation_paused": true}),
        )
        .await;
    assert_eq!(resp.status, 200);
    let other = app.replica(with_metrics).await;
    other.state.metrics.db_cache.refresh(&other.state).await;
    let (_, samples) = parse(&scrape(&other).await);
    assert_eq!(
        value(
            &samples,
            "coderd_prebuilt_workspaces_reconciliation_paused",
            &[]
        ),
        Some(1.0)
    );
    // Counters come from the database: a replica that never saw the claim reports it.
    assert_eq!(
        value(&samples, "coderd_prebuilt_workspaces_claimed_total", &pool),
        Some(1.0)
    );
}

#[tokio::test]
async fn output_passes_the_python_exposition_parser_and_matches_the_docs() {
    let app = TestApp::with_config(with_metrics).await;
    scenario(&app).await;
    // A request the API counts, so every API series exists.
    app.client().get("/api/v2/buildinfo").await;
    let text = fresh_scrape(&app).await;

    let path = std::env::temp_dir().join(format!("metrics-{}.txt", Uuid::new_v4()));
    std::fs::write(&path, &text).unwrap();
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(open(sys.argv[1]).read()))
names = [f.name for f in families]
assert len(names) == len(set(names)), "duplicate families"
seen = set()
for f in families:
    for s in f.samples:
        key = (s.name, tuple(sorted(s.labels.items())))
        assert key not in seen, "duplicate series %r" % (key,)
        seen.add(key)
print(len(families), len(seen))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .expect("python3 with prometheus_client (scripts/test installs it)");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "parser rejected the output: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        text
    );

    // docs/metrics.md lists exactly the families served.
    let (types, _) = parse(&text);
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
    let mut documented = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() >= 5 && cells[1].starts_with('`') {
            documented.insert(cells[1].trim_matches('`').to_string(), cells[2].to_string());
        }
    }
    let served: BTreeSet<&String> = types.keys().collect();
    let listed: BTreeSet<&String> = documented.keys().collect();
    assert_eq!(
        served.difference(&listed).collect::<Vec<_>>(),
        Vec::<&&String>::new(),
        "served but not documented"
    );
    assert_eq!(
        listed.difference(&served).collect::<Vec<_>>(),
        Vec::<&&String>::new(),
        "documented but not served"
    );
    for (name, kind) in &types {
        assert_eq!(&documented[name], kind, "type of {name} in docs/metrics.md");
    }
}

#[tokio::test]
async fn path_labels_are_route_templates_and_stay_bounded() {
    let app = TestApp::with_config(with_metrics).await;
    let owner = app.owner().await;
    let paths = |text: &str| -> BTreeSet<String> {
        parse(text)
            .1
            .into_iter()
            .filter(|s| s.name == "coderd_api_requests_processed_total")
            .filter_map(|s| s.labels.get("path").cloned())
            .collect()
    };
    owner
        .get(&format!("/api/v2/workspaces/{}", Uuid::new_v4()))
        .await;
    owner
        .get(&format!("/api/v2/nothing-here/{}", Uuid::new_v4()))
        .await;
    let before = paths(&scrape(&app).await);
    for _ in 0..250 {
        let resp = owner
            .get(&format!("/api/v2/workspaces/{}", Uuid::new_v4()))
            .await;
        assert_eq!(resp.status, 404);
        let resp = owner
            .get(&format!("/api/v2/nothing-here/{}", Uuid::new_v4()))
            .await;
        assert_eq!(resp.status, 404);
    }
    let after_text = scrape(&app).await;
    let after = paths(&after_text);
    assert_eq!(before, after, "500 distinct ids added path values");
    assert!(
        after.contains("/api/v2/workspaces/{workspace}"),
        "{after:?}"
    );
    assert!(after.contains("unmatched"), "{after:?}");
    let (_, samples) = parse(&after_text);
    assert_eq!(
        value(
            &samples,
            "coderd_api_requests_processed_total",
            &[
                ("path", "/api/v2/workspaces/{workspace}"),
                ("code", "404"),
                ("method", "GET")
            ]
        ),
        Some(251.0)
    );
    // `/metrics` is not part of the API port.
    assert_eq!(owner.get("/metrics").await.status, 404);
}
