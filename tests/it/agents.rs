//! The agent API (token auth, manifest, lifecycle, logs) and the local runtime with real `coder agent`
//! processes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::templates::{
    create_version_with, example_dir, tar_of_dir, tar_of_main_tf, upload, wait_import,
};
use crate::harness::{Client, TestApp};

async fn template_from(owner: &Client, tar: Vec<u8>, provisioner: &str, name: &str) -> String {
    let file = upload(owner, tar).await;
    let v = create_version_with(owner, file, None, provisioner).await;
    let v = wait_import(owner, v["id"].as_str().unwrap()).await;
    assert_eq!(v["job"]["status"], "succeeded", "{v}");
    let resp = owner
        .post(
            "/api/v2/organizations/default/templates",
            &json!({"name": name, "template_version_id": v["id"]}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    resp.json::<Value>()["id"].as_str().unwrap().to_string()
}

async fn create_ws(owner: &Client, template: &str, name: &str) -> String {
    let resp = owner
        .post(
            "/api/v2/users/me/workspaces",
            &json!({"template_id": template, "name": name}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    resp.json::<Value>()["id"].as_str().unwrap().to_string()
}

/// Polls the workspace until `pred` holds.
async fn wait_for(owner: &Client, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let w: Value = owner
            .get(&format!("/api/v2/workspaces/{id}?include_deleted=true"))
            .await
            .json();
        if pred(&w) {
            return w;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}: {w}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn first_agent(w: &Value) -> Option<&Value> {
    w["latest_build"]["resources"]
        .as_array()?
        .iter()
        .flat_map(|r| r["agents"].as_array().into_iter().flatten())
        .next()
}

fn agent_state(w: &Value) -> String {
    first_agent(w)
        .map(|a| {
            a["lifecycle_state"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
}

fn pid_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

fn agent_pid(dir: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("agent-main.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

#[tokio::test]
async fn local_runtime_end_to_end_with_real_agent() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let template = template_from(
        &owner,
        tar_of_dir(&example_dir("local-shell")),
        "terraform",
        "local",
    )
    .await;
    let id = create_ws(&owner, &template, "dev").await;
    let ready = wait_for(&owner, &id, "agent ready", |w| agent_state(w) == "ready").await;
    assert_eq!(ready["latest_build"]["status"], "running");
    let agent = first_agent(&ready).unwrap();
    assert_eq!(agent["status"], "connected");
    assert!(
        !agent["version"].as_str().unwrap().is_empty(),
        "startup reported"
    );
    // The startup script ran in the workspace directory with HOME set to it.
    let dir: PathBuf = app.state.config.cache_dir.join("workspaces").join(&id);
    let greeting =
        std::fs::read_to_string(dir.join("greeting.txt")).expect("startup script output");
    assert_eq!(greeting.trim(), "hello admin");
    let info = std::fs::read_to_string(dir.join("workspace.txt")).unwrap();
    assert_eq!(info.trim(), "workspace=dev size=1");
    let pid = agent_pid(&dir).expect("pid file");
    assert!(pid_alive(pid));

    // Stop ends the process.
    let resp = owner
        .post(
            &format!("/api/v2/workspaces/{id}/builds"),
            &json!({"transition": "stop"}),
        )
        .await;
    assert_eq!(resp.status, 201);
    wait_for(&owner, &id, "stopped", |w| {
        w["latest_build"]["status"] == "stopped"
    })
    .await;
    assert!(!pid_alive(pid), "agent process ended on stop");
    assert!(agent_pid(&dir).is_none());

    // Start brings it back, and the script runs again.
    std::fs::remove_file(dir.join("greeting.txt")).unwrap();
    owner
        .post(
            &format!("/api/v2/workspaces/{id}/builds"),
            &json!({"transition": "start"}),
        )
        .await;
    wait_for(&owner, &id, "ready again", |w| {
        w["latest_build"]["build_number"] == 3 && agent_state(w) == "ready"
    })
    .await;
    assert!(dir.join("greeting.txt").exists());
    let pid2 = agent_pid(&dir).unwrap();
    assert!(pid_alive(pid2));

    // Delete removes the directory, the process, and the workspace from the list.
    owner
        .post(
            &format!("/api/v2/workspaces/{id}/builds"),
            &json!({"transition": "delete"}),
        )
        .await;
    wait_for(&owner, &id, "deleted", |w| {
        w["latest_build"]["status"] == "deleted"
    })
    .await;
    assert!(!pid_alive(pid2));
    assert!(!dir.exists(), "workspace directory removed");
    let list: Value = owner.get("/api/v2/workspaces").await.json();
    assert_eq!(list["count"], 0);
}

#[tokio::test]
async fn failing_startup_script_is_start_error() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let tf = r#"
resource "coder_agent" "main" {
  os             = "linux"
  arch           = "amd64"
  startup_script = "echo about to fail; exit 1"
}
resource "null_resource" "box" {
  depends_on = [coder_agent.main]
}
"#;
    let template = template_from(&owner, tar_of_main_tf(tf), "terraform", "failing").await;
    let id = create_ws(&owner, &template, "bad").await;
    let w = wait_for(&owner, &id, "start_error", |w| {
        agent_state(w) == "start_error"
    })
    .await;
    let agent_id = first_agent(&w).unwrap()["id"].as_str().unwrap().to_string();
    // The script's output reached the server as logs.
    let start = Instant::now();
    loop {
        let logs: Value = owner
            .get(&format!("/api/v2/workspaceagents/{agent_id}/logs"))
            .await
            .json();
        if logs
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["output"] == "about to fail")
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "logs: {logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    owner
        .post(
            &format!("/api/v2/workspaces/{id}/builds"),
            &json!({"transition": "delete"}),
        )
        .await;
    wait_for(&owner, &id, "deleted", |w| {
        w["latest_build"]["status"] == "deleted"
    })
    .await;
}

#[tokio::test]
async fn agent_api_token_rules() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let template = template_from(
        &owner,
        tar_of_dir(&example_dir("local-shell")),
        "echo",
        "echo",
    )
    .await;
    let id = create_ws(&owner, &template, "dev").await;
    wait_for(&owner, &id, "running", |w| {
        w["latest_build"]["status"] == "running"
    })
    .await;
    let token: Uuid = sqlx::query_scalar(
        "SELECT a.auth_token FROM workspace_agents a JOIN workspace_resources r ON r.id = a.resource_id
         JOIN workspace_builds b ON b.job_id = r.job_id",
    )
        .fetch_one(app.pool())
        .await
        .unwrap();
    let agent = app.client().with_token(&token.to_string());

    let manifest: Value = agent
        .get("/api/v2/workspaceagents/me/manifest")
        .await
        .json();
    assert_eq!(manifest["agent_name"], "main");
    assert_eq!(manifest["workspace_name"], "dev");
    assert_eq!(manifest["owner_name"], "admin");
    assert_eq!(manifest["environment_variables"]["GREETING"], "hello");
    assert_eq!(manifest["metadata"][0]["key"], "greeting");
    assert!(manifest["scripts"][0]["script"]
        .as_str()
        .unwrap()
        .contains("greeting.txt"));
    assert_eq!(manifest["scripts"][0]["run_on_start"], true);

    for state in ["starting", "ready"] {
        let resp = agent
            .post(
                "/api/v2/workspaceagents/me/report-lifecycle",
                &json!({"state": state, "changed_at": chrono::Utc::now()}),
            )
            .await;
        assert_eq!(resp.status, 204, "{}", resp.text());
    }
    let resp = agent
        .post(
            "/api/v2/workspaceagents/me/report-lifecycle",
            &json!({"state": "dancing"}),
        )
        .await;
    assert_eq!(resp.status, 400);
    let resp = agent
        .post(
            "/api/v2/workspaceagents/me/metadata",
            &json!({"metadata": [{"key": "greeting", "value": "hi there", "error": "", "age": 0,
                                   "collected_at": chrono::Utc::now()}]}),
        )
        .await;
    assert_eq!(resp.status, 204);
    let stored: String = sqlx::query_scalar(
        "SELECT m.value FROM workspace_agent_metadata m JOIN workspace_agents a ON a.id = m.workspace_agent_id
         WHERE m.key = 'greeting' AND a.auth_token = $1",
    )
    .bind(token)
    .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(stored, "hi there");
    let stats: Value = agent
        .post("/api/v2/workspaceagents/me/report-stats", &json!({}))
        .await
        .json();
    assert!(stats["report_interval"].as_i64().unwrap() > 0);

    let w: Value = owner.get(&format!("/api/v2/workspaces/{id}")).await.json();
    let a = first_agent(&w).unwrap();
    assert_eq!(a["lifecycle_state"], "ready");
    assert_eq!(a["status"], "connected");
    assert!(a["ready_at"].is_string());

    // Agent tokens reach only agent endpoints; malformed and unknown tokens are refused.
    assert_eq!(agent.get("/api/v2/users/me").await.status, 401);
    assert_eq!(
        agent.get(&format!("/api/v2/workspaces/{id}")).await.status,
        401
    );
    let resp = app
        .client()
        .with_token("nope")
        .get("/api/v2/workspaceagents/me/manifest")
        .await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error().message, "Workspace agent token invalid.");
    let resp = app
        .client()
        .with_token(&Uuid::new_v4().to_string())
        .get("/api/v2/workspaceagents/me/manifest")
        .await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error().message, "Workspace agent not authorized.");
    // A user session is not an agent token.
    let resp = owner.get("/api/v2/workspaceagents/me/manifest").await;
    assert_eq!(resp.status, 401);

    // After a new build, the old agent's token stops working.
    owner
        .post(
            &format!("/api/v2/workspaces/{id}/builds"),
            &json!({"transition": "stop"}),
        )
        .await;
    wait_for(&owner, &id, "stopped", |w| {
        w["latest_build"]["status"] == "stopped"
    })
    .await;
    assert_eq!(
        agent
            .get("/api/v2/workspaceagents/me/manifest")
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn a_startup_script_past_its_timeout_is_start_timeout() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let tf = r#"
resource "coder_agent" "main" {
  os                     = "linux"
  arch                   = "amd64"
  startup_script         = "echo slow; sleep 30"
  startup_script_timeout = 1
}
resource "null_resource" "box" {
  depends_on = [coder_agent.main]
}
"#;
    let template = template_from(&owner, tar_of_main_tf(tf), "terraform", "slow").await;
    let id = create_ws(&owner, &template, "slow").await;
    let started = Instant::now();
    wait_for(&owner, &id, "start_timeout", |w| {
        agent_state(w) == "start_timeout"
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the 30 s script was cut off after its 1 s timeout"
    );
    // The timeout is recorded on the agent (the provider's default is 300 s).
    let recorded: i32 =
        sqlx::query_scalar("SELECT a.startup_script_timeout_secs FROM workspace_agents a LIMIT 1")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(recorded, 1);
    owner
        .post(
            &format!("/api/v2/workspaces/{id}/builds"),
            &json!({"transition": "delete"}),
        )
        .await;
}

#[tokio::test]
async fn the_real_agent_reports_metadata_on_each_items_interval() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let tf = r#"
resource "coder_agent" "main" {
  os   = "linux"
  arch = "amd64"
  metadata {
    key          = "tick"
    display_name = "Nanoseconds"
    script       = "date +%s%N"
    interval     = 1
    timeout      = 1
  }
}
resource "null_resource" "box" {
  depends_on = [coder_agent.main]
}
"#;
    let template = template_from(&owner, tar_of_main_tf(tf), "terraform", "ticking").await;
    let id = create_ws(&owner, &template, "ticking").await;
    wait_for(&owner, &id, "agent ready", |w| agent_state(w) == "ready").await;
    let read = || async {
        let row: Option<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
            "SELECT m.value, m.collected_at FROM workspace_agent_metadata m WHERE m.key = 'tick'
               AND m.collected_at > '2000-01-01'",
        )
        .fetch_optional(app.pool())
        .await
        .unwrap();
        row
    };
    // Three distinct values, each collected about a second after the previous one.
    let mut seen: Vec<(String, chrono::DateTime<chrono::Utc>)> = Vec::new();
    let start = Instant::now();
    while seen.len() < 3 {
        if let Some(v) = read().await {
            if seen.last().is_none_or(|last| last.0 != v.0) {
                seen.push(v);
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "metadata values: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for pair in seen.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(
            gap >= chrono::Duration::milliseconds(700) && gap <= chrono::Duration::seconds(5),
            "collected {gap} apart: {seen:?}"
        );
        assert!(pair[1].0.parse::<u128>().unwrap() > pair[0].0.parse::<u128>().unwrap());
    }
    owner
        .post(
            &format!("/api/v2/workspaces/{id}/builds"),
            &json!({"transition": "delete"}),
        )
        .await;
}
