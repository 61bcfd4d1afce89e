//! Watch streams (SSE), fed by LISTEN/NOTIFY so that changes on any replica reach every subscriber.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::templates::import_example;
use crate::harness::{Client, TestApp};

/// Reads server-sent events from a streaming response: (event type, data).
struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    async fn open(client: &Client, path: &str) -> Self {
        let resp = reqwest::Client::new()
            .get(format!("{}{path}", client.base))
            .header("Coder-Session-Token", client.token.clone().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Self {
            resp,
            buf: String::new(),
        }
    }

    /// The next event other than pings.
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let mut event = String::new();
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(v) = line
                        .strip_prefix("event: ")
                        .or_else(|| line.strip_prefix("event:"))
                    {
                        event = v.trim().to_string();
                    } else if let Some(v) = line
                        .strip_prefix("data: ")
                        .or_else(|| line.strip_prefix("data:"))
                    {
                        data.push_str(v.trim_start());
                    }
                }
                if event == "ping" || (event.is_empty() && data.is_empty()) {
                    continue;
                }
                let value = if data.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&data).unwrap()
                };
                return (event, value);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.resp.chunk())
                .await
                .expect("no event within 30 s")
                .unwrap()
                .expect("stream ended");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

async fn echo_template(owner: &Client) -> String {
    let v = import_example(owner, "local-shell").await;
    let t: Value = owner
        .post(
            "/api/v2/organizations/default/templates",
            &json!({"name": "shell", "template_version_id": v["id"]}),
        )
        .await
        .json();
    t["id"].as_str().unwrap().to_string()
}

async fn create_ws(client: &Client, template: &str, name: &str) -> String {
    let resp = client
        .post(
            "/api/v2/users/me/workspaces",
            &json!({"template_id": template, "name": name}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    resp.json::<Value>()["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn workspace_watch_sends_every_change_from_either_replica() {
    let a = TestApp::new().await;
    // The second replica runs no daemons: every build runs on replica A, yet B's stream sees it.
    let b = a.replica(|c| c.provisioner_daemons = 0).await;
    let owner_a = a.owner().await;
    let owner_b = b
        .client()
        .login(crate::harness::ADMIN_EMAIL, crate::harness::PASSWORD)
        .await;
    let template = echo_template(&owner_a).await;
    let id = create_ws(&owner_a, &template, "dev").await;
    let mut stream = SseReader::open(&owner_b, &format!("/api/v2/workspaces/{id}/watch")).await;
    let (event, first) = stream.next().await;
    assert_eq!(event, "data");
    assert_eq!(first["id"], id.as_str());
    // Wait for running, then stop from replica B and see it through to stopped on the same stream. Each event
    // carries the workspace as it is when the event is handled, so intermediate states may be skipped.
    let mut seen = Vec::new();
    let mut status = first["latest_build"]["status"]
        .as_str()
        .unwrap()
        .to_string();
    while status != "running" {
        let (_, w) = stream.next().await;
        status = w["latest_build"]["status"].as_str().unwrap().to_string();
        seen.push(status.clone());
    }
    let resp = owner_b
        .post(
            &format!("/api/v2/workspaces/{id}/builds"),
            &json!({"transition": "stop"}),
        )
        .await;
    assert_eq!(resp.status, 201);
    while status != "stopped" {
        let (_, w) = stream.next().await;
        status = w["latest_build"]["status"].as_str().unwrap().to_string();
        seen.push(status.clone());
    }
    assert_eq!(seen.last().map(String::as_str), Some("stopped"), "{seen:?}");
    // Renames are changes too.
    let resp = owner_a
        .patch(
            &format!("/api/v2/workspaces/{id}"),
            &json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(resp.status, 204);
    loop {
        let (_, w) = stream.next().await;
        if w["name"] == "renamed" {
            break;
        }
    }
}

#[tokio::test]
async fn watch_all_builds_delivers_each_status_change_in_order() {
    let app = TestApp::with_config(|c| {
        c.experiments = coder::config::Experiments::parse(&["workspace-build-updates".to_string()]);
    })
    .await;
    let owner = app.owner().await;
    let (alice, _) = app.user(&owner, "alice", &[]).await;
    let template = echo_template(&owner).await;
    assert_eq!(
        alice
            .get("/api/experimental/watch-all-workspacebuilds")
            .await
            .status,
        403,
        "owners only"
    );
    let mut stream = SseReader::open(&owner, "/api/experimental/watch-all-workspacebuilds").await;
    let w1 = create_ws(&owner, &template, "mine").await;
    let w2 = create_ws(&alice, &template, "hers").await;
    let mut statuses: HashMap<String, Vec<String>> = HashMap::new();
    while [&w1, &w2]
        .iter()
        .any(|w| statuses.get(*w).and_then(|s| s.last()).map(String::as_str) != Some("succeeded"))
    {
        let (event, e) = stream.next().await;
        assert_eq!(event, "data");
        let ws = e["workspace_id"].as_str().unwrap().to_string();
        statuses
            .entry(ws)
            .or_default()
            .push(e["job_status"].as_str().unwrap().to_string());
    }
    for w in [&w1, &w2] {
        assert_eq!(statuses[w], vec!["pending", "running", "succeeded"], "{w}");
    }
}

#[tokio::test]
async fn watch_all_requires_the_experiment() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let resp = owner
        .get("/api/experimental/watch-all-workspacebuilds")
        .await;
    assert_eq!(resp.status, 403);
    assert!(resp.error().message.contains("workspace-build-updates"));
}
