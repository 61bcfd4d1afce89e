//! The claim path inside workspace creation: a create with a preset gets an eligible prebuild,
//! atomically renamed and re-owned; concurrency, eligibility, parameter precedence and resource
//! replacement reports.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::Duration as ChronoDuration;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{Client, TestApp};
use crate::prebuilds::{
    enable, ids, import, pool_template, pool_tf, prebuilds, promote, running_and_ready, tick,
    wait_prebuilds, PREBUILDS_USER,
};

/// The pool preset's id on `version`.
async fn preset_id(owner: &Client, version: &str, name: &str) -> String {
    let presets: Value = owner
        .get(&format!("/api/v2/templateversions/{version}/presets"))
        .await
        .json();
    presets
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["Name"] == name)
        .unwrap_or_else(|| panic!("preset {name} in {presets}"))["ID"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn create_with_preset(client: &Client, template: &str, preset: &str, name: &str) -> Value {
    let resp = client
        .post(
            "/api/v2/users/me/workspaces",
            &json!({"template_id": template, "name": name, "template_version_preset_id": preset}),
        )
        .await;
    assert_eq!(resp.status, 201, "create {name}: {}", resp.text());
    resp.json()
}

/// Plays the agents of every live prebuild on the echo runtime: each reports `ready` over the
/// agent API with its own token.
async fn report_prebuild_agents_ready(app: &TestApp) {
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
    for token in tokens {
        let resp = app
            .client()
            .with_token(&token.to_string())
            .post(
                "/api/v2/workspaceagents/me/report-lifecycle",
                &json!({"state": "ready", "changed_at": chrono::Utc::now()}),
            )
            .await;
        assert_eq!(resp.status, 204, "{}", resp.text());
    }
}

/// Fills an echo pool of `n` and makes every prebuild eligible (running, agents ready).
async fn ready_echo_pool(app: &TestApp, owner: &Client, n: usize) {
    assert_eq!(tick(app).await.created() as usize, n);
    wait_prebuilds(owner, "echo pool running", |l| {
        l.len() == n && l.iter().all(|w| w["latest_build"]["status"] == "running")
    })
    .await;
    report_prebuild_agents_ready(app).await;
}

async fn wait_workspace(
    client: &Client,
    id: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let w: Value = client.get(&format!("/api/v2/workspaces/{id}")).await.json();
        if pred(&w) {
            return w;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}: {w:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn first_agent(w: &Value) -> Value {
    w["latest_build"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["agents"].as_array().into_iter().flatten())
        .next()
        .cloned()
        .unwrap_or(Value::Null)
}

async fn claims_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM prebuild_claims")
        .fetch_one(app.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_create_with_the_preset_gets_a_ready_local_prebuild_without_a_fresh_startup() {
    let app = TestApp::with_config(enable).await;
    let owner = app.owner().await;
    let (alice, alice_id) = app.user(&owner, "alice", &[]).await;
    let (template, version) = pool_template(&owner, &pool_tf(2, ""), "terraform", "pool").await;
    let preset = preset_id(&owner, &version, "pool").await;
    assert_eq!(tick(&app).await.created(), 2);
    let pool = wait_prebuilds(&owner, "2 ready prebuilds", |l| {
        l.len() == 2 && l.iter().all(running_and_ready)
    })
    .await;
    let former = ids(&pool);
    let before: Vec<Value> = pool.iter().map(first_agent).collect();
    let agent_pids: Vec<(String, String)> = pool
        .iter()
        .map(|w| {
            let id = w["id"].as_str().unwrap().to_string();
            let pid = std::fs::read_to_string(
                app.state
                    .config
                    .cache_dir
                    .join("workspaces")
                    .join(&id)
                    .join("agent-main.pid"),
            )
            .unwrap();
            (id, pid)
        })
        .collect();

    let started = Instant::now();
    let w = create_with_preset(&alice, &template, &preset, "mine").await;
    let claim_latency = started.elapsed();
    let id = w["id"].as_str().unwrap().to_string();
    assert!(former.contains(&id), "the workspace is a former prebuild");
    assert_eq!(w["name"], "mine");
    assert_eq!(w["owner_id"], alice_id.to_string());
    assert_eq!(w["owner_name"], "alice");
    assert_eq!(w["latest_build"]["build_number"], 2);
    assert_eq!(w["latest_build"]["initiator_id"], alice_id.to_string());
    assert_eq!(
        w["latest_build"]["template_version_preset_id"],
        preset.as_str()
    );

    // The claim build finishes with the running agent handed over: ready, same process, same start.
    let done = wait_workspace(&alice, &id, "claim build done", |w| {
        w["latest_build"]["status"] == "running"
    })
    .await;
    let agent = first_agent(&done);
    assert_eq!(agent["lifecycle_state"], "ready", "{agent}");
    assert_eq!(agent["status"], "connected", "{agent}");
    let old = before
        .iter()
        .zip(&pool)
        .find(|(_, w)| w["id"] == id.as_str())
        .map(|(a, _)| a.clone())
        .unwrap();
    assert_eq!(agent["started_at"], old["started_at"], "no second startup");
    assert_eq!(agent["ready_at"], old["ready_at"], "no second startup");
    let dir = app.state.config.cache_dir.join("workspaces").join(&id);
    let pid_now = std::fs::read_to_string(dir.join("agent-main.pid")).unwrap();
    let pid_before = &agent_pids.iter().find(|(w, _)| *w == id).unwrap().1;
    assert_eq!(&pid_now, pid_before, "the agent process was kept");

    // The agent learned about its new owner (reinit event → manifest refresh).
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(dir.join("agent-main.log")).unwrap_or_default();
        if log.contains("prebuild claimed: agent main now serves workspace mine of alice") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "agent log: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It keeps heartbeating with its token under the claim build.
    let history: Value = alice
        .get(&format!("/api/v2/workspaces/{id}/builds"))
        .await
        .json();
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 2);
    let first = history.iter().find(|b| b["build_number"] == 1).unwrap();
    assert_eq!(first["initiator_id"], PREBUILDS_USER);
    assert_eq!(claims_count(&app).await, 1);

    // The reconciler leaves the claimed workspace alone and refills the pool.
    let refill = tick(&app).await;
    assert_eq!((refill.created(), refill.deleted()), (1, 0));
    let pool = wait_prebuilds(&owner, "pool refilled", |l| {
        l.len() == 2 && l.iter().all(running_and_ready)
    })
    .await;
    assert!(!ids(&pool).contains(&id));
    let still: Value = alice.get(&format!("/api/v2/workspaces/{id}")).await.json();
    assert_eq!(still["owner_name"], "alice");
    assert_eq!(still["latest_build"]["status"], "running");

    // A fresh local build of the same template, for comparison: the claim returned a workspace
    // whose agent was already ready.
    eprintln!("claim create latency {claim_latency:?}");
}

#[tokio::test]
async fn hundred_concurrent_creates_against_a_pool_of_ten() {
    let app = TestApp::with_config(enable).await;
    let owner = app.owner().await;
    let (template, version) = pool_template(&owner, &pool_tf(10, ""), "echo", "pool").await;
    let preset = preset_id(&owner, &version, "pool").await;
    ready_echo_pool(&app, &owner, 10).await;
    let former = ids(&prebuilds(&owner).await);

    let mut users = Vec::new();
    for i in 0..20 {
        users.push(app.user(&owner, &format!("user{i}"), &[]).await.0);
    }
    let mut tasks = Vec::new();
    for (u, client) in users.iter().enumerate() {
        for k in 0..5 {
            let client = client.clone();
            let template = template.clone();
            let preset = preset.clone();
            tasks.push(tokio::spawn(async move {
                let resp = client
                    .post(
                        "/api/v2/users/me/workspaces",
                        &json!({"template_id": template, "name": format!("ws-{u}-{k}"),
                                "template_version_preset_id": preset}),
                    )
                    .await;
                (resp.status, resp.text())
            }));
        }
    }
    let mut got = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 201, "{body}");
        let w: Value = serde_json::from_str(&body).unwrap();
        got.push(w["id"].as_str().unwrap().to_string());
    }
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), 100, "every create got its own workspace");
    let claimed: Vec<&String> = got.iter().filter(|id| former.contains(*id)).collect();
    assert_eq!(claimed.len(), 10, "exactly the 10 prebuilds were claimed");
    assert_eq!(claims_count(&app).await, 10);
    assert!(prebuilds(&owner).await.is_empty());
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM workspaces WHERE NOT deleted")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(total, 100);
}

#[tokio::test]
async fn only_eligible_prebuilds_are_claimed() {
    let app = TestApp::with_config(enable).await;
    let owner = app.owner().await;
    let (dev, _) = app.user(&owner, "dev", &[]).await;
    let expiring = r#"
data "coder_workspace_preset" "ttl" {
  name = "ttl"
  prebuilds {
    instances = 1
    expiration_policy {
      ttl = 3600
    }
  }
}"#;
    let (template, v1) = pool_template(&owner, &pool_tf(1, expiring), "echo", "pool").await;
    let pool_preset = preset_id(&owner, &v1, "pool").await;
    let ttl_preset = preset_id(&owner, &v1, "ttl").await;
    assert_eq!(tick(&app).await.created(), 2);
    let list = wait_prebuilds(&owner, "2 running", |l| {
        l.len() == 2 && l.iter().all(|w| w["latest_build"]["status"] == "running")
    })
    .await;
    let former = ids(&list);

    // Agents still `created`/`starting`: not eligible, the create builds fresh.
    let w = create_with_preset(&dev, &template, &pool_preset, "a").await;
    assert!(!former.contains(w["id"].as_str().unwrap()));
    report_prebuild_agents_ready(&app).await;

    // Expired (older than its ttl): never claimed.
    app.clock.advance(ChronoDuration::seconds(3601));
    let w = create_with_preset(&dev, &template, &ttl_preset, "b").await;
    assert!(!former.contains(w["id"].as_str().unwrap()));

    // Stopped: never claimed.
    let pool_ws = prebuilds(&owner)
        .await
        .into_iter()
        .find(|w| w["latest_build"]["template_version_preset_id"] == pool_preset.as_str())
        .unwrap();
    let pool_ws_id = pool_ws["id"].as_str().unwrap().to_string();
    let resp = owner
        .post(
            &format!("/api/v2/workspaces/{pool_ws_id}/builds"),
            &json!({"transition": "stop"}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    wait_workspace(&owner, &pool_ws_id, "stopped", |w| {
        w["latest_build"]["status"] == "stopped"
    })
    .await;
    let w = create_with_preset(&dev, &template, &pool_preset, "c").await;
    assert!(!former.contains(w["id"].as_str().unwrap()));
    let resp = owner
        .post(
            &format!("/api/v2/workspaces/{pool_ws_id}/builds"),
            &json!({"transition": "start"}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    wait_workspace(&owner, &pool_ws_id, "started", |w| {
        w["latest_build"]["status"] == "running"
    })
    .await;
    report_prebuild_agents_ready(&app).await;

    // Inactive version: after a promotion, the old version's ready prebuild is not claimed, not
    // even by a create that names the old version and preset.
    let v2 = import(&owner, &pool_tf(1, "# v2"), "echo", Some(&template)).await;
    promote(&owner, &template, &v2).await;
    let resp = dev
        .post(
            "/api/v2/users/me/workspaces",
            &json!({"template_version_id": v1, "name": "d", "template_version_preset_id": pool_preset}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert!(!former.contains(resp.json::<Value>()["id"].as_str().unwrap()));
    assert_eq!(claims_count(&app).await, 0);
    assert_eq!(
        ids(&prebuilds(&owner).await),
        former,
        "all prebuilds still unclaimed"
    );
}

#[tokio::test]
async fn name_collisions_fail_as_an_ordinary_create_and_claim_nothing() {
    let app = TestApp::with_config(enable).await;
    let owner = app.owner().await;
    let (template, version) = pool_template(&owner, &pool_tf(1, ""), "echo", "pool").await;
    let preset = preset_id(&owner, &version, "pool").await;
    let resp = owner
        .post(
            "/api/v2/users/me/workspaces",
            &json!({"template_id": template, "name": "taken"}),
        )
        .await;
    assert_eq!(resp.status, 201);
    ready_echo_pool(&app, &owner, 1).await;
    let resp = owner
        .post(
            "/api/v2/users/me/workspaces",
            &json!({"template_id": template, "name": "taken", "template_version_preset_id": preset}),
        )
        .await;
    assert_eq!(resp.status, 409, "{}", resp.text());
    assert_eq!(
        prebuilds(&owner).await.len(),
        1,
        "the prebuild is still in the pool"
    );
    assert_eq!(claims_count(&app).await, 0);
    // Bad input is refused before anything is claimed.
    let resp = owner
        .post(
            "/api/v2/users/me/workspaces",
            &json!({"template_id": template, "name": "Not A Name!", "template_version_preset_id": preset}),
        )
        .await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(prebuilds(&owner).await.len(), 1);
}

const PARAMS_TF: &str = r#"
data "coder_parameter" "greeting" {
  name    = "greeting"
  type    = "string"
  default = "hello"
  mutable = true
}
data "coder_parameter" "color" {
  name    = "color"
  type    = "string"
  default = "blue"
  mutable = true
}
resource "coder_agent" "main" {
  os   = "linux"
  arch = "amd64"
}
data "coder_workspace_preset" "pool" {
  name = "pool"
  parameters = {
    greeting = "from-preset"
  }
  prebuilds {
    instances = 1
  }
}
"#;

async fn build_params(client: &Client, w: &Value) -> Vec<(String, String)> {
    let build = w["latest_build"]["id"].as_str().unwrap();
    let params: Value = client
        .get(&format!("/api/v2/workspacebuilds/{build}/parameters"))
        .await
        .json();
    let mut out: Vec<(String, String)> = params
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn preset_values_win_over_the_requests_whether_claimed_or_fresh() {
    let app = TestApp::with_config(enable).await;
    let owner = app.owner().await;
    let (template, version) = pool_template(&owner, PARAMS_TF, "echo", "params").await;
    let preset = preset_id(&owner, &version, "pool").await;
    ready_echo_pool(&app, &owner, 1).await;
    let former = ids(&prebuilds(&owner).await);
    let body = |name: &str| {
        json!({"template_id": template, "name": name, "template_version_preset_id": preset,
               "rich_parameter_values": [{"name": "greeting", "value": "from-user"},
                                         {"name": "color", "value": "red"}]})
    };
    let expected = vec![
        ("color".to_string(), "red".to_string()),
        ("greeting".to_string(), "from-preset".to_string()),
    ];
    let claimed: Value = owner
        .post("/api/v2/users/me/workspaces", &body("claimed"))
        .await
        .json();
    assert!(
        former.contains(claimed["id"].as_str().unwrap()),
        "{claimed}"
    );
    assert_eq!(build_params(&owner, &claimed).await, expected);
    let fresh: Value = owner
        .post("/api/v2/users/me/workspaces", &body("fresh"))
        .await
        .json();
    assert!(!former.contains(fresh["id"].as_str().unwrap()));
    assert_eq!(build_params(&owner, &fresh).await, expected);
}

#[tokio::test]
async fn without_a_preset_id_matching_values_claim_too() {
    let app = TestApp::with_config(enable).await;
    let owner = app.owner().await;
    let (template, _) = pool_template(&owner, PARAMS_TF, "echo", "params").await;
    ready_echo_pool(&app, &owner, 1).await;
    let former = ids(&prebuilds(&owner).await);
    let w: Value = owner
        .post(
            "/api/v2/users/me/workspaces",
            &json!({"template_id": template, "name": "matched",
                    "rich_parameter_values": [{"name": "greeting", "value": "from-preset"}]}),
        )
        .await
        .json();
    assert!(former.contains(w["id"].as_str().unwrap()), "{w}");
    assert_eq!(claims_count(&app).await, 1);
}

fn owner_in_resource_tf(ignore: bool) -> String {
    let lifecycle = if ignore {
        "lifecycle {\n    ignore_changes = [triggers]\n  }"
    } else {
        ""
    };
    pool_tf(
        1,
        &format!(
            r#"
resource "null_resource" "home" {{
  triggers = {{
    owner = data.coder_workspace_owner.me.name
  }}
  {lifecycle}
}}"#
        ),
    )
}

async fn claim_one(app: &TestApp, owner: &Client, tf: &str, name: &str) -> Value {
    let (template, version) = pool_template(owner, tf, "echo", name).await;
    let preset = preset_id(owner, &version, "pool").await;
    ready_echo_pool(app, owner, 1).await;
    let former = ids(&prebuilds(owner).await);
    let w = create_with_preset(owner, &template, &preset, name).await;
    assert!(former.contains(w["id"].as_str().unwrap()));
    let id = w["id"].as_str().unwrap().to_string();
    wait_workspace(owner, &id, "claim build done", |w| {
        w["latest_build"]["status"] == "running"
    })
    .await
}

#[tokio::test]
async fn a_claim_that_changes_an_owner_dependent_attribute_reports_a_replacement() {
    let app = TestApp::with_config(enable).await;
    let owner = app.owner().await;
    let (template_admin, _) = app.user(&owner, "tmpl", &["template-admin"]).await;
    let (member, _) = app.user(&owner, "member", &[]).await;
    claim_one(&app, &owner, &owner_in_resource_tf(false), "replaced").await;

    let inbox: Value = template_admin
        .get("/api/v2/notifications/inbox")
        .await
        .json();
    let list = inbox["notifications"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{inbox:#}");
    assert_eq!(inbox["unread_count"], 1);
    let n = &list[0];
    assert_eq!(n["title"], "Prebuilt workspace resource replaced");
    let content = n["content"].as_str().unwrap();
    assert!(
        content.contains("null_resource.home (triggers)"),
        "{content}"
    );
    assert_eq!(
        n["payload"]["replacements"][0]["resource"],
        "null_resource.home"
    );
    assert_eq!(
        n["payload"]["replacements"][0]["attributes"],
        json!(["triggers"])
    );
    let for_owner: Value = owner.get("/api/v2/notifications/inbox").await.json();
    assert_eq!(for_owner["notifications"].as_array().unwrap().len(), 1);
    let for_member: Value = member.get("/api/v2/notifications/inbox").await.json();
    assert!(for_member["notifications"].as_array().unwrap().is_empty());
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM prebuild_resource_replacements")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(recorded, 1);
}

#[tokio::test]
async fn ignore_changes_on_the_attribute_means_no_replacement() {
    let app = TestApp::with_config(enable).await;
    let owner = app.owner().await;
    claim_one(&app, &owner, &owner_in_resource_tf(true), "ignored").await;
    let inbox: Value = owner.get("/api/v2/notifications/inbox").await.json();
    assert!(
        inbox["notifications"].as_array().unwrap().is_empty(),
        "{inbox:#}"
    );
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM prebuild_resource_replacements")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(recorded, 0);
}

#[tokio::test]
async fn prebuilds_disabled_means_no_claims() {
    let app = TestApp::with_config(enable).await;
    let owner = app.owner().await;
    let (template, version) = pool_template(&owner, &pool_tf(1, ""), "echo", "pool").await;
    let preset = preset_id(&owner, &version, "pool").await;
    ready_echo_pool(&app, &owner, 1).await;
    let former = ids(&prebuilds(&owner).await);
    // Same database, a replica without the experiment: its creates never claim.
    let plain = app.replica(|_| {}).await;
    let client = plain.client().with_token(owner.token());
    let w = create_with_preset(&client, &template, &preset, "plain").await;
    assert!(!former.contains(w["id"].as_str().unwrap()));
    assert_eq!(claims_count(&app).await, 0);
}

fn owner_in_agent_tf(ignore: bool) -> String {
    let lifecycle = if ignore {
        "lifecycle {\n    ignore_changes = [startup_script]\n  }"
    } else {
        ""
    };
    format!(
        r#"
data "coder_workspace_owner" "me" {{}}
resource "coder_agent" "main" {{
  os             = "linux"
  arch           = "amd64"
  startup_script = "echo hello ${{data.coder_workspace_owner.me.name}}"
  {lifecycle}
}}
data "coder_workspace_preset" "pool" {{
  name = "pool"
  prebuilds {{
    instances = 1
  }}
}}
"#
    )
}

#[tokio::test]
async fn an_agent_startup_script_with_the_owner_name_is_a_replacement_unless_ignored() {
    let app = TestApp::with_config(enable).await;
    let owner = app.owner().await;
    claim_one(&app, &owner, &owner_in_agent_tf(false), "agent-replaced").await;
    let inbox: Value = owner.get("/api/v2/notifications/inbox").await.json();
    let list = inbox["notifications"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{inbox:#}");
    assert_eq!(
        list[0]["payload"]["replacements"],
        json!([{"resource": "coder_agent.main", "attributes": ["startup_script"]}])
    );

    let app = TestApp::with_config(enable).await;
    let owner = app.owner().await;
    claim_one(&app, &owner, &owner_in_agent_tf(true), "agent-ignored").await;
    let inbox: Value = owner.get("/api/v2/notifications/inbox").await.json();
    assert!(
        inbox["notifications"].as_array().unwrap().is_empty(),
        "{inbox:#}"
    );
}

/// The create answer is built from what the write statement returned, not read back: it must be
/// exactly what a read of the workspace returns while its build is still queued, for a claim
/// and for a fresh workspace (a replica without provisioner daemons keeps the builds queued).
#[tokio::test]
async fn the_create_answer_is_what_a_read_returns() {
    let app = TestApp::with_config(enable).await;
    let owner = app.owner().await;
    let (alice, _) = app.user(&owner, "alice", &[]).await;
    let extra = r#"data "coder_parameter" "region" {
  name    = "region"
  type    = "string"
  default = "eu"
  mutable = true
}"#;
    let (template, version) = pool_template(&owner, &pool_tf(1, extra), "echo", "answer").await;
    let preset = preset_id(&owner, &version, "pool").await;
    ready_echo_pool(&app, &owner, 1).await;

    let quiet = app
        .replica(|c| {
            enable(c);
            c.provisioner_daemons = 0;
        })
        .await;
    drop(app);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alice = quiet.client().with_token(alice.token());

    // Each read right after its create: a later create would change the queue size.
    let claimed = create_with_preset(&alice, &template, &preset, "claimed").await;
    assert_eq!(
        claimed["latest_build"]["build_number"], 2,
        "a claim: {claimed}"
    );
    assert_answer_is_read(&alice, &claimed).await;
    let fresh = alice
        .post(
            "/api/v2/users/me/workspaces",
            &json!({"template_id": template, "name": "fresh",
                    "rich_parameter_values": [{"name": "region", "value": "us"}]}),
        )
        .await;
    assert_eq!(fresh.status, 201, "{}", fresh.text());
    let fresh: Value = fresh.json();
    assert_eq!(fresh["latest_build"]["build_number"], 1);
    assert_eq!(fresh["latest_build"]["job"]["queue_position"], 2, "{fresh}");
    assert_answer_is_read(&alice, &fresh).await;
}

async fn assert_answer_is_read(client: &Client, answer: &Value) {
    let id = answer["id"].as_str().unwrap();
    let read: Value = client.get(&format!("/api/v2/workspaces/{id}")).await.json();
    assert_eq!(read["latest_build"]["status"], "pending", "{read}");
    assert_eq!(answer, &read, "create answer vs read of {id}");
}

/// Creates after the first of a version use the replica's cache of the version's fixed part: they
/// still see a renamed version and a new active version, and choose presets as the first create did.
#[tokio::test]
async fn later_creates_follow_version_changes_and_choose_presets_alike() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let (template, v1) = pool_template(&owner, PARAMS_TF, "echo", "cached").await;
    let pool = preset_id(&owner, &v1, "pool").await;
    let create = |name: &str, params: Value| json!({"template_id": template, "name": name, "rich_parameter_values": params});
    let matching = json!([{"name": "greeting", "value": "from-preset"}]);
    for name in ["first", "second"] {
        let w: Value = owner
            .post(
                "/api/v2/users/me/workspaces",
                &create(name, matching.clone()),
            )
            .await
            .json();
        assert_eq!(w["latest_build"]["template_version_preset_id"], pool, "{w}");
        assert_eq!(w["latest_build"]["template_version_id"], v1.as_str());
    }
    let unmatched: Value = owner
        .post("/api/v2/users/me/workspaces", &create("third", json!([])))
        .await
        .json();
    assert!(
        unmatched["latest_build"]["template_version_preset_id"].is_null(),
        "{unmatched}"
    );
    // A preset of the version given by id, through the version rather than the template.
    let by_version: Value = owner
        .post(
            "/api/v2/users/me/workspaces",
            &json!({"template_version_id": v1, "name": "by-version", "template_version_preset_id": pool}),
        )
        .await
        .json();
    assert_eq!(
        by_version["latest_build"]["template_version_preset_id"], pool,
        "{by_version}"
    );
    let foreign = owner
        .post(
            "/api/v2/users/me/workspaces",
            &json!({"template_id": template, "name": "foreign",
                    "template_version_preset_id": Uuid::new_v4()}),
        )
        .await;
    assert_eq!(foreign.status, 400, "{}", foreign.text());

    let renamed = owner
        .patch(
            &format!("/api/v2/templateversions/{v1}"),
            &json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text());
    let w: Value = owner
        .post("/api/v2/users/me/workspaces", &create("fourth", json!([])))
        .await
        .json();
    assert_eq!(w["latest_build"]["template_version_name"], "renamed", "{w}");

    let v2_tf = PARAMS_TF
        .replace("\"from-preset\"", "\"v2\"")
        .replace("\"pool\"", "\"pool2\"");
    let v2 = import(&owner, &v2_tf, "echo", Some(&template)).await;
    promote(&owner, &template, &v2).await;
    let pool2 = preset_id(&owner, &v2, "pool2").await;
    for name in ["fifth", "sixth"] {
        let w: Value = owner
            .post(
                "/api/v2/users/me/workspaces",
                &create(name, json!([{"name": "greeting", "value": "v2"}])),
            )
            .await
            .json();
        assert_eq!(w["latest_build"]["template_version_id"], v2.as_str(), "{w}");
        assert_eq!(
            w["latest_build"]["template_version_preset_id"], pool2,
            "{w}"
        );
    }
}
