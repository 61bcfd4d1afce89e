//! Workspaces and builds on the echo runtime (resources and agents recorded, no processes).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::templates::{
    create_version, import_example, tar_of_main_tf, upload, wait_import,
};
use crate::harness::{Client, TestApp};

/// Imports local-shell and creates a template from it; returns the template id.
async fn local_shell_template(owner: &Client, name: &str) -> String {
    let v = import_example(owner, "local-shell").await;
    assert_eq!(v["job"]["status"], "succeeded");
    let resp = owner
        .post(
            "/api/v2/organizations/default/templates",
            &json!({"name": name, "template_version_id": v["id"]}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    resp.json::<Value>()["id"].as_str().unwrap().to_string()
}

async fn create_ws(client: &Client, template: &str, name: &str, params: Value) -> Value {
    let resp = client
        .post(
            "/api/v2/users/me/workspaces",
            &json!({"template_id": template, "name": name, "rich_parameter_values": params}),
        )
        .await;
    assert_eq!(resp.status, 201, "create workspace: {}", resp.text());
    resp.json()
}

/// Polls until the workspace's latest build is no longer pending or in progress.
async fn wait_build(client: &Client, workspace: &str) -> Value {
    let start = Instant::now();
    loop {
        let resp = client
            .get(&format!(
                "/api/v2/workspaces/{workspace}?include_deleted=true"
            ))
            .await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        let w: Value = resp.json();
        let status = w["latest_build"]["status"].as_str().unwrap().to_string();
        if !matches!(
            status.as_str(),
            "pending" | "starting" | "stopping" | "deleting"
        ) {
            return w;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "build stuck: {w}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn build(client: &Client, workspace: &str, body: Value) -> crate::harness::client::Resp {
    client
        .post(&format!("/api/v2/workspaces/{workspace}/builds"), &body)
        .await
}

#[tokio::test]
async fn create_stop_start_delete() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let template = local_shell_template(&owner, "shell").await;
    let created = create_ws(
        &owner,
        &template,
        "dev",
        json!([{"name": "greeting", "value": "yo"}]),
    )
    .await;
    assert_eq!(created["name"], "dev");
    assert_eq!(created["owner_name"], "admin");
    assert_eq!(created["template_name"], "shell");
    assert_eq!(created["latest_build"]["build_number"], 1);
    assert_eq!(created["latest_build"]["transition"], "start");
    assert_eq!(created["latest_build"]["status"], "pending");
    assert_eq!(created["latest_build"]["job"]["status"], "pending");
    assert_eq!(created["latest_build"]["initiator_name"], "admin");
    assert_eq!(created["latest_build"]["reason"], "initiator");
    assert_eq!(created["outdated"], false);
    let id = created["id"].as_str().unwrap().to_string();

    let running = wait_build(&owner, &id).await;
    assert_eq!(running["latest_build"]["status"], "running", "{running}");
    let resources = running["latest_build"]["resources"].as_array().unwrap();
    let home = resources
        .iter()
        .find(|r| r["type"] == "null_resource" && r["name"] == "home")
        .unwrap_or_else(|| panic!("null_resource.home in {resources:?}"));
    assert_eq!(home["workspace_transition"], "start");
    let agent = &home["agents"][0];
    assert_eq!(agent["name"], "main");
    assert_eq!(agent["lifecycle_state"], "created");
    assert_eq!(agent["status"], "connecting");
    assert_eq!(agent["operating_system"], "linux");
    assert_eq!(agent["environment_variables"]["GREETING"], "yo");
    assert_eq!(agent["environment_variables"]["WORKSPACE_NAME"], "dev");
    assert_eq!(agent["apps"][0]["slug"], "greeting");
    // Evaluated attributes are stored for drift detection.
    let attrs: Value = sqlx::query_scalar(
        "SELECT r.attributes FROM workspace_resources r JOIN workspace_builds b ON b.job_id = r.job_id
         WHERE r.type = 'null_resource' AND r.name = 'home'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(attrs["triggers"]["owner"], "admin");
    assert_eq!(attrs["triggers"]["workspace"], "dev");

    let build_id = running["latest_build"]["id"].as_str().unwrap().to_string();
    let params: Value = owner
        .get(&format!("/api/v2/workspacebuilds/{build_id}/parameters"))
        .await
        .json();
    assert_eq!(
        params,
        json!([{"name": "greeting", "value": "yo"}, {"name": "size", "value": "1"}])
    );
    let logs: Value = owner
        .get(&format!("/api/v2/workspacebuilds/{build_id}/logs"))
        .await
        .json();
    assert!(!logs.as_array().unwrap().is_empty());
    let by_name = owner.get("/api/v2/users/me/workspace/dev").await;
    assert_eq!(by_name.json::<Value>()["id"], id.as_str());

    // Stop: start_count = 0 removes the home resource and the agent with it.
    let resp = build(&owner, &id, json!({"transition": "stop"})).await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert_eq!(resp.json::<Value>()["build_number"], 2);
    let stopped = wait_build(&owner, &id).await;
    assert_eq!(stopped["latest_build"]["status"], "stopped");
    let agents: usize = stopped["latest_build"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["agents"].as_array().map(|a| a.len()).unwrap_or(0))
        .sum();
    assert_eq!(agents, 0);
    // Parameters carry over to later builds.
    let b2 = stopped["latest_build"]["id"].as_str().unwrap();
    let params: Value = owner
        .get(&format!("/api/v2/workspacebuilds/{b2}/parameters"))
        .await
        .json();
    assert_eq!(params[0]["value"], "yo");

    // Start again: a fresh agent with a fresh token.
    assert_eq!(
        build(&owner, &id, json!({"transition": "start"}))
            .await
            .status,
        201
    );
    let again = wait_build(&owner, &id).await;
    assert_eq!(again["latest_build"]["status"], "running");
    let tokens: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT a.auth_token) FROM workspace_agents a
         JOIN workspace_resources r ON r.id = a.resource_id JOIN workspace_builds b ON b.job_id = r.job_id",
    )
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(tokens, 2);
    let builds: Value = owner
        .get(&format!("/api/v2/workspaces/{id}/builds"))
        .await
        .json();
    let numbers: Vec<i64> = builds
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["build_number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, vec![3, 2, 1]);

    // Delete: gone from the list, 410 on direct read.
    assert_eq!(
        build(&owner, &id, json!({"transition": "delete"}))
            .await
            .status,
        201
    );
    let deleted = wait_build(&owner, &id).await;
    assert_eq!(deleted["latest_build"]["status"], "deleted");
    let resp = owner.get(&format!("/api/v2/workspaces/{id}")).await;
    assert_eq!(resp.status, 410);
    resp.error();
    let list: Value = owner.get("/api/v2/workspaces").await.json();
    assert_eq!(list["count"], 0);
    assert_eq!(list["workspaces"], json!([]));
    // The name is free again.
    create_ws(&owner, &template, "dev", json!([])).await;
}

#[tokio::test]
async fn create_and_build_validation() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let template = local_shell_template(&owner, "shell").await;
    let post = |body: Value| {
        let owner = owner.clone();
        async move { owner.post("/api/v2/users/me/workspaces", &body).await }
    };
    let resp = post(json!({"template_id": template, "name": "Not Valid!"})).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error().validations[0].field, "name");
    let resp = post(json!({"template_id": Uuid::new_v4(), "name": "a"})).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error().validations[0].field, "template_id");
    let resp = post(json!({"name": "a"})).await;
    assert_eq!(resp.status, 400);
    let resp = post(json!({"template_id": template, "name": "a",
        "rich_parameter_values": [{"name": "size", "value": "99"}]}))
    .await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(resp
        .error()
        .message
        .starts_with("Unable to validate parameter"));
    let resp = post(json!({"template_id": template, "name": "a", "ttl_ms": 1000})).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error().message, "Invalid Workspace Time to Shutdown.");
    let resp =
        post(json!({"template_id": template, "name": "a", "autostart_schedule": "every day"}))
            .await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error().message, "Invalid Autostart Schedule.");

    let ws = create_ws(&owner, &template, "a", json!([])).await;
    let id = ws["id"].as_str().unwrap().to_string();
    // Duplicate name for the same owner.
    let resp = post(json!({"template_id": template, "name": "A"})).await;
    assert_eq!(resp.status, 409);
    assert_eq!(resp.error().message, "Workspace \"A\" already exists.");
    // A build while one is active, then an immutable parameter change.
    let resp = build(&owner, &id, json!({"transition": "stop"})).await;
    assert!(resp.status == 409 || resp.status == 201, "{}", resp.text());
    wait_build(&owner, &id).await;
    let resp = build(
        &owner,
        &id,
        json!({"transition": "start", "rich_parameter_values": [{"name": "size", "value": "3"}]}),
    )
    .await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(
        resp.error().message,
        "Unable to validate parameter \"size\""
    );
    let resp = build(&owner, &id, json!({"transition": "explode"})).await;
    assert_eq!(resp.status, 400);
    // A preset id that names no preset of the version is a client mistake (found by schemathesis:
    // it used to reach the insert and answer 500).
    let resp = build(
        &owner,
        &id,
        json!({"transition": "stop", "template_version_preset_id": Uuid::new_v4()}),
    )
    .await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(
        resp.error().message,
        "The preset does not belong to the template version."
    );
    assert_eq!(owner.get("/api/v2/workspaces/not-a-uuid").await.status, 400);
    assert_eq!(
        owner
            .get(&format!("/api/v2/workspaces/{}", Uuid::new_v4()))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn fifty_concurrent_creates_of_one_name() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let template = local_shell_template(&owner, "shell").await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let c = owner.clone();
        let t = template.clone();
        tasks.push(tokio::spawn(async move {
            let resp = c
                .post(
                    "/api/v2/users/me/workspaces",
                    &json!({"template_id": t, "name": "same"}),
                )
                .await;
            let message = if resp.status == 201 {
                String::new()
            } else {
                resp.error().message
            };
            (resp.status, message)
        }));
    }
    let mut created = 0;
    for t in tasks {
        let (status, message) = t.await.unwrap();
        match status {
            201 => created += 1,
            409 => assert_eq!(message, "Workspace \"same\" already exists."),
            other => panic!("unexpected {other}: {message}"),
        }
    }
    assert_eq!(created, 1);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM workspaces")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1, "nothing half-created");
}

#[tokio::test]
async fn members_see_and_change_only_their_own() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let template = local_shell_template(&owner, "shell").await;
    let (alice, _) = app.user(&owner, "alice", &[]).await;
    let (bob, _) = app.user(&owner, "bob", &[]).await;
    let ws = create_ws(&alice, &template, "mine", json!([])).await;
    let id = ws["id"].as_str().unwrap().to_string();
    wait_build(&alice, &id).await;
    assert_eq!(
        bob.get(&format!("/api/v2/workspaces/{id}")).await.status,
        404
    );
    assert_eq!(
        bob.get("/api/v2/users/alice/workspace/mine").await.status,
        404
    );
    assert_eq!(
        build(&bob, &id, json!({"transition": "stop"})).await.status,
        404
    );
    assert_eq!(
        build(&bob, &id, json!({"transition": "delete"}))
            .await
            .status,
        404
    );
    let list: Value = bob.get("/api/v2/workspaces").await.json();
    assert_eq!(list["count"], 0);
    // Bob cannot create a workspace for Alice either.
    let resp = bob
        .post(
            "/api/v2/users/alice/workspaces",
            &json!({"template_id": template, "name": "x"}),
        )
        .await;
    assert!(resp.status == 404 || resp.status == 403, "{}", resp.text());
    // The owner sees it; Alice can stop it.
    assert_eq!(
        owner.get(&format!("/api/v2/workspaces/{id}")).await.status,
        200
    );
    assert_eq!(
        build(&alice, &id, json!({"transition": "stop"}))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn search_filters_and_pagination() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let shell = local_shell_template(&owner, "shell").await;
    let other = local_shell_template(&owner, "other").await;
    let (alice, _) = app.user(&owner, "alice", &[]).await;
    let a1 = create_ws(&owner, &shell, "alpha", json!([])).await;
    let a2 = create_ws(&owner, &other, "beta", json!([])).await;
    let a3 = create_ws(&alice, &shell, "gamma", json!([])).await;
    for w in [&a1, &a2, &a3] {
        wait_build(&owner, w["id"].as_str().unwrap()).await;
    }
    // Stop one so statuses differ.
    build(
        &owner,
        a2["id"].as_str().unwrap(),
        json!({"transition": "stop"}),
    )
    .await;
    wait_build(&owner, a2["id"].as_str().unwrap()).await;

    let names = |v: Value| -> Vec<String> {
        v["workspaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["name"].as_str().unwrap().to_string())
            .collect()
    };
    let q = |query: &str| {
        let owner = owner.clone();
        let query = query.to_string();
        async move {
            let resp = owner.get(&format!("/api/v2/workspaces?q={query}")).await;
            assert_eq!(resp.status, 200, "{query}: {}", resp.text());
            resp.json::<Value>()
        }
    };
    assert_eq!(names(q("owner:me").await), vec!["alpha", "beta"]);
    assert_eq!(names(q("owner:alice").await), vec!["gamma"]);
    assert_eq!(names(q("template:shell").await), vec!["alpha", "gamma"]);
    assert_eq!(names(q("status:running").await), vec!["alpha", "gamma"]);
    assert_eq!(names(q("status:stopped").await), vec!["beta"]);
    assert_eq!(names(q("name:amm").await), vec!["gamma"]);
    assert_eq!(
        names(q("has-agent:connecting").await),
        vec!["alpha", "gamma"]
    );
    assert_eq!(names(q("outdated:true").await), Vec::<String>::new());
    let page: Value = owner
        .get("/api/v2/workspaces?limit=2&offset=1")
        .await
        .json();
    assert_eq!(names(page.clone()), vec!["beta", "gamma"]);
    assert_eq!(page["count"], 3);
    let past: Value = owner
        .get("/api/v2/workspaces?limit=2&offset=10")
        .await
        .json();
    assert_eq!(past["count"], 3);
    assert_eq!(past["workspaces"], json!([]));
    let resp = owner.get("/api/v2/workspaces?q=status:sleepy").await;
    assert_eq!(resp.status, 400);
    resp.error();
    // Alice sees only hers.
    let mine: Value = alice.get("/api/v2/workspaces").await.json();
    assert_eq!(names(mine), vec!["gamma"]);
}

#[tokio::test]
async fn template_that_fails_to_evaluate_fails_the_build() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let tf = r#"
data "coder_parameter" "n" {
  name    = "n"
  type    = "string"
  default = "1"
  mutable = true
}
resource "null_resource" "x" {
  triggers = {
    n = tonumber(data.coder_parameter.n.value) + 1
  }
}
"#;
    let file = upload(&owner, tar_of_main_tf(tf)).await;
    let v = create_version(&owner, file, None).await;
    let v = wait_import(&owner, v["id"].as_str().unwrap()).await;
    assert_eq!(v["job"]["status"], "succeeded", "{v}");
    let t: Value = owner
        .post(
            "/api/v2/organizations/default/templates",
            &json!({"name": "calc", "template_version_id": v["id"]}),
        )
        .await
        .json();
    let template = t["id"].as_str().unwrap();
    let ok = create_ws(
        &owner,
        template,
        "good",
        json!([{"name": "n", "value": "41"}]),
    )
    .await;
    let ok = wait_build(&owner, ok["id"].as_str().unwrap()).await;
    assert_eq!(ok["latest_build"]["status"], "running", "{ok}");
    let bad = create_ws(
        &owner,
        template,
        "bad",
        json!([{"name": "n", "value": "abc"}]),
    )
    .await;
    let bad = wait_build(&owner, bad["id"].as_str().unwrap()).await;
    assert_eq!(bad["latest_build"]["status"], "failed");
    let error = bad["latest_build"]["job"]["error"].as_str().unwrap();
    assert!(!error.is_empty());
    let build_id = bad["latest_build"]["id"].as_str().unwrap();
    let logs: Value = owner
        .get(&format!("/api/v2/workspacebuilds/{build_id}/logs"))
        .await
        .json();
    assert!(
        logs.as_array()
            .unwrap()
            .iter()
            .any(|l| l["log_level"] == "error"),
        "the error is in the build logs: {logs}"
    );
}

#[tokio::test]
async fn two_hundred_builds_each_run_once_across_two_replicas() {
    let app = TestApp::new().await;
    // A second replica on the same database: six daemons share one queue.
    let other = app.replica(|_| {}).await;
    let owner = app.owner().await;
    let template = local_shell_template(&owner, "shell").await;
    let mut ids = Vec::new();
    for chunk in 0..10 {
        let mut tasks = Vec::new();
        for i in 0..20 {
            let c = owner.clone();
            let t = template.clone();
            tasks.push(tokio::spawn(async move {
                create_ws(&c, &t, &format!("w{chunk}-{i}"), json!([])).await["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }));
        }
        for t in tasks {
            ids.push(t.await.unwrap());
        }
    }
    for id in &ids {
        assert_eq!(
            wait_build(&owner, id).await["latest_build"]["status"],
            "running"
        );
    }
    let runs: Vec<(Uuid, i64, i64, Option<Uuid>)> = sqlx::query_as(
        "SELECT j.id,
                (SELECT count(*) FROM provisioner_job_logs l WHERE l.job_id = j.id AND l.stage = 'Planning infrastructure'),
                (SELECT count(*) FROM workspace_resources r WHERE r.job_id = j.id),
                j.worker_id
         FROM provisioner_jobs j WHERE j.type = 'workspace_build'",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(runs.len(), 200);
    let mut workers = HashSet::new();
    for (job, plans, resources, worker) in runs {
        assert_eq!(plans, 1, "job {job} ran {plans} times");
        assert_eq!(resources, 1, "job {job} wrote its resources once");
        workers.insert(worker.unwrap());
    }
    assert!(workers.len() <= 6, "{} workers", workers.len());
    assert!(
        workers.len() > 3,
        "both replicas ran jobs: {} workers",
        workers.len()
    );
    drop(other);
}

#[tokio::test]
async fn a_dead_daemons_job_is_failed_and_the_workspace_not_stuck() {
    let app = TestApp::with_config(|c| {
        c.provisioner_daemons = 0;
        c.provisioner_stale_check_interval = Duration::from_millis(100);
    })
    .await;
    let owner = app.owner().await;
    // Import needs a daemon: run one briefly by hand through the queue API.
    let file = upload(
        &owner,
        crate::harness::templates::tar_of_dir(&crate::harness::templates::example_dir(
            "local-shell",
        )),
    )
    .await;
    let v = create_version(&owner, file, None).await;
    assert_eq!(v["job"]["status"], "pending");
    let worker = Uuid::new_v4();
    let job = coder::provisioner::jobs::acquire(
        app.pool(),
        worker,
        &["template_version_import"],
        chrono::Utc::now(),
    )
    .await
    .unwrap()
    .unwrap();
    coder::templates::import::run(&app.state, worker, &job)
        .await
        .unwrap();
    let resp = owner
        .post(
            "/api/v2/organizations/default/templates",
            &json!({"name": "shell", "template_version_id": v["id"]}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let template = resp.json::<Value>()["id"].as_str().unwrap().to_string();
    let ws = create_ws(&owner, &template, "dev", json!([])).await;
    let id = ws["id"].as_str().unwrap().to_string();

    // A daemon takes the build and dies without a word.
    let dead = Uuid::new_v4();
    coder::provisioner::jobs::acquire(
        app.pool(),
        dead,
        &["workspace_build"],
        app.state.clock.now(),
    )
    .await
    .unwrap()
    .expect("the build job");
    let w: Value = owner.get(&format!("/api/v2/workspaces/{id}")).await.json();
    assert_eq!(w["latest_build"]["status"], "starting");
    app.clock.advance(chrono::Duration::minutes(2));
    let failed = wait_build(&owner, &id).await;
    assert_eq!(failed["latest_build"]["status"], "failed");
    assert!(failed["latest_build"]["job"]["error"]
        .as_str()
        .unwrap()
        .contains("heartbeat"));
    // Not stuck: a new build is accepted.
    assert_eq!(
        build(&owner, &id, json!({"transition": "start"}))
            .await
            .status,
        201
    );
}

/// A template whose one resource costs 5 credits a day (with a `size = large` metadata item).
async fn costly_template(owner: &Client) -> String {
    let tf = r#"
resource "null_resource" "box" {}
resource "coder_metadata" "box" {
  resource_id = null_resource.box.id
  daily_cost  = 5
  item {
    key   = "size"
    value = "large"
  }
}
"#;
    let file = upload(owner, tar_of_main_tf(tf)).await;
    let v = create_version(owner, file, None).await;
    let v = wait_import(owner, v["id"].as_str().unwrap()).await;
    assert_eq!(v["job"]["status"], "succeeded", "{v}");
    let t: Value = owner
        .post(
            "/api/v2/organizations/default/templates",
            &json!({"name": "costly", "template_version_id": v["id"]}),
        )
        .await
        .json();
    t["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn quota_limits_start_builds() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let template = &costly_template(&owner).await;
    sqlx::query("UPDATE groups SET quota_allowance = 8 WHERE name = 'Everyone'")
        .execute(app.pool())
        .await
        .unwrap();
    let quota = |owner: Client| async move {
        owner
            .get("/api/v2/organizations/default/members/me/workspace-quota")
            .await
            .json::<Value>()
    };
    assert_eq!(
        quota(owner.clone()).await,
        json!({"credits_consumed": 0, "budget": 8})
    );

    let first = create_ws(&owner, template, "one", json!([])).await;
    let first = wait_build(&owner, first["id"].as_str().unwrap()).await;
    assert_eq!(first["latest_build"]["status"], "running");
    assert_eq!(first["latest_build"]["daily_cost"], 5);
    let box_resource = &first["latest_build"]["resources"][0];
    assert_eq!(box_resource["daily_cost"], 5);
    assert_eq!(box_resource["metadata"][0]["key"], "size");
    assert_eq!(box_resource["metadata"][0]["value"], "large");
    assert_eq!(
        quota(owner.clone()).await,
        json!({"credits_consumed": 5, "budget": 8})
    );

    // A second one would take the owner to 10 of 8 credits.
    let second = create_ws(&owner, template, "two", json!([])).await;
    let second_id = second["id"].as_str().unwrap().to_string();
    let second = wait_build(&owner, &second_id).await;
    assert_eq!(second["latest_build"]["status"], "failed");
    assert_eq!(second["latest_build"]["job"]["error"], "insufficient quota");

    // Stopping the first frees its credits.
    let first_id = first["id"].as_str().unwrap();
    assert_eq!(
        build(&owner, first_id, json!({"transition": "stop"}))
            .await
            .status,
        201
    );
    wait_build(&owner, first_id).await;
    assert_eq!(quota(owner.clone()).await["credits_consumed"], 0);
    assert_eq!(
        build(&owner, &second_id, json!({"transition": "start"}))
            .await
            .status,
        201
    );
    assert_eq!(
        wait_build(&owner, &second_id).await["latest_build"]["status"],
        "running"
    );
}

/// A read never shows a build's new status without what the build wrote with it: every `running` answer
/// carries the build's cost and resources, however the read interleaves with the build's completion.
#[tokio::test]
async fn reads_never_show_a_finished_build_without_its_writes() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let template = costly_template(&owner).await;
    sqlx::query("UPDATE groups SET quota_allowance = 1000 WHERE name = 'Everyone'")
        .execute(app.pool())
        .await
        .unwrap();
    let ws = create_ws(&owner, &template, "watched", json!([])).await;
    let id = ws["id"].as_str().unwrap().to_string();
    wait_build(&owner, &id).await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut pollers = Vec::new();
    for path in [
        format!("/api/v2/workspaces/{id}"),
        "/api/v2/workspaces?q=name:watched".to_string(),
        format!("/api/v2/workspaces/{id}/builds"),
    ] {
        let (owner, done) = (owner.clone(), done.clone());
        pollers.push(tokio::spawn(async move {
            let mut running_seen = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let v: Value = owner.get(&path).await.json();
                let build = if v["workspaces"].is_array() {
                    v["workspaces"][0]["latest_build"].clone()
                } else if v.is_array() {
                    v[0].clone()
                } else {
                    v["latest_build"].clone()
                };
                if build["status"] == "running" {
                    running_seen += 1;
                    assert_eq!(build["daily_cost"], 5, "{path}: {build}");
                    assert_eq!(build["resources"][0]["daily_cost"], 5, "{path}: {build}");
                }
            }
            running_seen
        }));
    }
    for _ in 0..8 {
        for transition in ["stop", "start"] {
            let resp = build(&owner, &id, json!({"transition": transition})).await;
            assert_eq!(resp.status, 201, "{}", resp.text());
            let w = wait_build(&owner, &id).await;
            assert_ne!(w["latest_build"]["status"], "failed", "{w}");
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for poller in pollers {
        assert!(
            poller.await.unwrap() > 0,
            "every poller saw the workspace running"
        );
    }
}
