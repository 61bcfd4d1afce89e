//! The prebuild reconciler end to end: pools filled by real builds (echo, and the local runtime
//! with real agents), replacement, version rollover, backoff and hard limit, pause, invalidation,
//! cancellation of pending creates, two replicas, and a constant statement count per tick.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Duration as ChronoDuration;
use coder::config::{Experiments, ServerConfig};
use coder::prebuilds::reconciler::{self, Skip, TickReport};
use serde_json::{json, Value};

use crate::harness::templates::{create_version_with, tar_of_main_tf, upload, wait_import};
use crate::harness::{Client, TestApp};

pub(crate) const PREBUILDS_USER: &str = "c42fdf75-3097-471c-8c33-fb52454d81c0";

pub(crate) fn enable(c: &mut ServerConfig) {
    c.experiments = Experiments::parse(&["workspace-prebuilds".into()]);
}

pub(crate) fn pool_tf(instances: u32, extra: &str) -> String {
    format!(
        r#"
data "coder_workspace" "me" {{}}
data "coder_workspace_owner" "me" {{}}
resource "coder_agent" "main" {{
  os             = "linux"
  arch           = "amd64"
  startup_script = "echo ready"
}}
resource "null_resource" "box" {{
  depends_on = [coder_agent.main]
}}
{extra}
data "coder_workspace_preset" "pool" {{
  name = "pool"
  prebuilds {{
    instances = {instances}
  }}
}}
"#
    )
}

pub(crate) async fn import(
    owner: &Client,
    tf: &str,
    provisioner: &str,
    template: Option<&str>,
) -> String {
    let file = upload(owner, tar_of_main_tf(tf)).await;
    let v = create_version_with(
        owner,
        file,
        template.map(|t| t.parse().unwrap()),
        provisioner,
    )
    .await;
    let v = wait_import(owner, v["id"].as_str().unwrap()).await;
    assert_eq!(v["job"]["status"], "succeeded", "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// Imports `tf` and creates template `name` from it; returns (template id, version id).
pub(crate) async fn pool_template(
    owner: &Client,
    tf: &str,
    provisioner: &str,
    name: &str,
) -> (String, String) {
    let version = import(owner, tf, provisioner, None).await;
    let resp = owner
        .post(
            "/api/v2/organizations/default/templates",
            &json!({"name": name, "template_version_id": version}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    (
        resp.json::<Value>()["id"].as_str().unwrap().to_string(),
        version,
    )
}

pub(crate) async fn promote(owner: &Client, template: &str, version: &str) {
    let resp = owner
        .patch(
            &format!("/api/v2/templates/{template}/versions"),
            &json!({"id": version}),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
}

pub(crate) async fn tick(app: &TestApp) -> TickReport {
    let report = reconciler::tick(&app.state).await.expect("tick");
    assert!(
        report.errors().is_empty(),
        "tick errors: {:?}",
        report.errors()
    );
    report
}

/// Live (not deleted) prebuilds, through the API's `owner:prebuilds` search.
pub(crate) async fn prebuilds(owner: &Client) -> Vec<Value> {
    let resp = owner.get("/api/v2/workspaces?q=owner:prebuilds").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json::<Value>()["workspaces"]
        .as_array()
        .unwrap()
        .clone()
}

pub(crate) fn agent_states(w: &Value) -> Vec<String> {
    w["latest_build"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["agents"].as_array().into_iter().flatten())
        .map(|a| {
            a["lifecycle_state"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

pub(crate) fn running_and_ready(w: &Value) -> bool {
    let states = agent_states(w);
    w["latest_build"]["status"] == "running"
        && !states.is_empty()
        && states.iter().all(|s| s == "ready")
}

/// Polls the live prebuilds until `pred` holds for the whole list.
pub(crate) async fn wait_prebuilds(
    owner: &Client,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let list = prebuilds(owner).await;
        if pred(&list) {
            return list;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "timed out waiting for {what}: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn ids(list: &[Value]) -> HashSet<String> {
    list.iter()
        .map(|w| w["id"].as_str().unwrap().to_string())
        .collect()
}

pub(crate) async fn status(owner: &Client, template: &str) -> Value {
    let resp = owner
        .get(&format!("/api/v2/templates/{template}/prebuilds"))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

#[tokio::test]
async fn local_pool_fills_is_replaced_and_rolls_to_a_new_version() {
    let app = TestApp::with_config(enable).await;
    let owner = app.owner().await;
    let tf = pool_tf(2, "");
    let (template, v1) = pool_template(&owner, &tf, "terraform", "pool").await;

    let first = tick(&app).await;
    assert_eq!(first.created(), 2);
    let list = wait_prebuilds(&owner, "2 ready prebuilds", |l| {
        l.len() == 2 && l.iter().all(running_and_ready)
    })
    .await;
    for w in &list {
        assert_eq!(w["owner_id"], PREBUILDS_USER);
        assert_eq!(w["owner_name"], "prebuilds");
        assert_eq!(w["latest_build"]["template_version_id"], v1.as_str());
        assert_eq!(w["latest_build"]["initiator_id"], PREBUILDS_USER);
        let name = w["name"].as_str().unwrap();
        let suffix = name.strip_prefix("prebuild-").unwrap();
        assert_eq!(suffix.len(), 15, "{name}");
        assert!(suffix
            .chars()
            .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c)));
    }
    let s = status(&owner, &template).await;
    assert_eq!(s["presets"][0]["desired"], 2);
    assert_eq!(s["presets"][0]["eligible"], 2);
    assert_eq!(s["presets"][0]["status"], "healthy");

    // Steady state: nothing to do.
    let steady = tick(&app).await;
    assert_eq!((steady.created(), steady.deleted()), (0, 0));

    // Delete one by hand: the next tick replaces it.
    let gone = list[0]["id"].as_str().unwrap().to_string();
    let resp = owner
        .post(
            &format!("/api/v2/workspaces/{gone}/builds"),
            &json!({"transition": "delete"}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    wait_prebuilds(&owner, "the deleted prebuild gone", |l| {
        l.len() == 1 && !ids(l).contains(&gone)
    })
    .await;
    let refill = tick(&app).await;
    assert_eq!((refill.created(), refill.deleted()), (1, 0));
    let list = wait_prebuilds(&owner, "pool refilled", |l| {
        l.len() == 2 && l.iter().all(running_and_ready)
    })
    .await;
    let old_ids = ids(&list);

    // Promote a new version: the old prebuilds go, two new ones on the new version come.
    let v2 = import(&owner, &pool_tf(2, "# v2"), "terraform", Some(&template)).await;
    promote(&owner, &template, &v2).await;
    let roll = tick(&app).await;
    assert_eq!((roll.created(), roll.deleted()), (2, 2));
    let list = wait_prebuilds(&owner, "2 ready prebuilds on v2", |l| {
        l.len() == 2
            && l.iter().all(running_and_ready)
            && l.iter()
                .all(|w| w["latest_build"]["template_version_id"] == v2.as_str())
    })
    .await;
    assert!(ids(&list).is_disjoint(&old_ids));
    let steady = tick(&app).await;
    assert_eq!((steady.created(), steady.deleted()), (0, 0));
}

#[tokio::test]
async fn failing_creates_back_off_then_hit_the_hard_limit_and_a_new_version_starts_clean() {
    let app = TestApp::with_config(enable).await;
    let owner = app.owner().await;
    // Every prebuild costs a credit and the prebuilds user has none: each build fails on quota.
    let costly = r#"
resource "coder_metadata" "cost" {
  resource_id = null_resource.box.id
  daily_cost  = 1
}"#;
    // The local runtime: the build fails on quota before any agent is started.
    let (template, _) = pool_template(&owner, &pool_tf(2, costly), "terraform", "costly").await;

    assert_eq!(tick(&app).await.created(), 2);
    let failed = |l: &[Value]| {
        l.iter()
            .filter(|w| w["latest_build"]["status"] == "failed")
            .count()
    };
    wait_prebuilds(&owner, "2 failed builds", |l| failed(l) == 2).await;

    // Backoff: nothing happens until last failure + 2 failures x 1m.
    let held = tick(&app).await;
    assert_eq!(held.created(), 0);
    let s = status(&owner, &template).await;
    let p = &s["presets"][0];
    assert!(!p["backoff_until"].is_null(), "{p}");
    assert!(p["reason"].as_str().unwrap().contains("backing off"), "{p}");
    assert_eq!(p["planned"]["create"], 0);

    // After the backoff: retried (failed prebuilds stay in place and do not count).
    app.clock.advance(ChronoDuration::minutes(3));
    assert_eq!(tick(&app).await.created(), 2);
    let list = wait_prebuilds(&owner, "4 failed builds", |l| failed(l) == 4).await;
    assert_eq!(list.len(), 4, "failed prebuilds are left in place");

    // The latest 3 creation builds all failed: hard limit, even after any backoff.
    app.clock.advance(ChronoDuration::minutes(30));
    let limited = tick(&app).await;
    assert_eq!(limited.created(), 0);
    let s = status(&owner, &template).await;
    let p = &s["presets"][0];
    assert_eq!(p["status"], "hard_limited", "{p}");
    assert!(p["reason"].as_str().unwrap().contains("hard limit"), "{p}");
    let stored: String = sqlx::query_scalar(
        "SELECT prebuild_status FROM template_version_presets WHERE name = 'pool'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(stored, "hard_limited");
    app.clock.advance(ChronoDuration::minutes(30));
    assert_eq!(tick(&app).await.created(), 0);

    // A new version without the cost: its preset starts clean and fills.
    let v2 = import(&owner, &pool_tf(2, ""), "terraform", Some(&template)).await;
    promote(&owner, &template, &v2).await;
    let fresh = tick(&app).await;
    assert_eq!(fresh.created(), 2);
    wait_prebuilds(&owner, "2 ready on v2", |l| {
        l.iter()
            .filter(|w| {
                running_and_ready(w) && w["latest_build"]["template_version_id"] == v2.as_str()
            })
            .count()
            == 2
    })
    .await;
    let s = status(&owner, &template).await;
    let active: Vec<&Value> = s["presets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["active"] == true)
        .collect();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["status"], "healthy");
    assert_eq!(active[0]["running"], 2);
}

#[tokio::test]
async fn owner_prebuilds_search_lists_exactly_the_prebuilds() {
    let app = TestApp::with_config(enable).await;
    let owner = app.owner().await;
    let (template, _) = pool_template(&owner, &pool_tf(2, ""), "echo", "echo-pool").await;
    let resp = owner
        .post(
            "/api/v2/users/me/workspaces",
            &json!({"template_id": template, "name": "mine"}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert_eq!(tick(&app).await.created(), 2);
    // The tick made the prebuilds user a member of the organization's prebuilt-workspaces group,
    // with no quota of its own.
    let group: (String, i32) = sqlx::query_as(
        "SELECT g.display_name, g.quota_allowance FROM groups g
         JOIN group_members m ON m.group_id = g.id AND m.user_id = $1
         JOIN organizations o ON o.id = g.organization_id AND o.is_default
         WHERE g.name = 'coderprebuiltworkspaces'",
    )
    .bind(PREBUILDS_USER.parse::<uuid::Uuid>().unwrap())
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(group, ("Prebuilt Workspaces".to_string(), 0));
    let list = prebuilds(&owner).await;
    assert_eq!(list.len(), 2);
    assert!(list
        .iter()
        .all(|w| w["owner_name"] == "prebuilds"
            && w["name"].as_str().unwrap().starts_with("prebuild-")));
    let all: Value = owner.get("/api/v2/workspaces").await.json();
    assert_eq!(all["count"], 3);
    let mine: Value = owner.get("/api/v2/workspaces?q=owner:me").await.json();
    assert_eq!(mine["count"], 1);
    assert_eq!(mine["workspaces"][0]["name"], "mine");
    // The system user stays out of the user list.
    let users: Value = owner.get("/api/v2/users").await.json();
    assert!(users["users"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["username"] != "prebuilds"));
}

#[tokio::test]
async fn pause_resume_and_invalidate() {
    let app = TestApp::with_config(enable).await;
    let owner = app.owner().await;
    let (member, _) = app.user(&owner, "dev", &[]).await;
    let (template, _) = pool_template(&owner, &pool_tf(2, ""), "echo", "echo-pool").await;

    // Settings: owners only; 304 when unchanged, as Coder answers.
    let got: Value = owner.get("/api/v2/prebuilds/settings").await.json();
    assert_eq!(got, json!({"reconciliation_paused": false}));
    assert_eq!(
        member
            .put(
                "/api/v2/prebuilds/settings",
                &json!({"reconciliation_paused": true})
            )
            .await
            .status,
        403
    );
    assert_eq!(member.get("/api/v2/prebuilds/settings").await.status, 403);
    let resp = owner
        .put(
            "/api/v2/prebuilds/settings",
            &json!({"reconciliation_paused": true}),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json::<Value>(), json!({"reconciliation_paused": true}));
    let again = owner
        .put(
            "/api/v2/prebuilds/settings",
            &json!({"reconciliation_paused": true}),
        )
        .await;
    assert_eq!(again.status, 304);
    let bad = owner
        .put(
            "/api/v2/prebuilds/settings",
            &json!({"reconciliation_paused": "yes"}),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text());

    // Paused: no creates.
    let paused = tick(&app).await;
    assert_eq!(paused.skipped, Some(Skip::Paused));
    assert!(prebuilds(&owner).await.is_empty());
    let s = status(&owner, &template).await;
    assert_eq!(s["reconciliation_paused"], true);
    assert!(s["presets"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("paused"));

    // Resumed: the pool fills.
    let resp = owner
        .put(
            "/api/v2/prebuilds/settings",
            &json!({"reconciliation_paused": false}),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(tick(&app).await.created(), 2);
    let list = wait_prebuilds(&owner, "2 running", |l| {
        l.len() == 2 && l.iter().all(|w| w["latest_build"]["status"] == "running")
    })
    .await;
    let before = ids(&list);

    // Paused again: no deletes either, even of prebuilds that should go.
    owner
        .put(
            "/api/v2/prebuilds/settings",
            &json!({"reconciliation_paused": true}),
        )
        .await;

    // Invalidate: members cannot; template admins get the list of presets.
    let resp = member
        .post(
            &format!("/api/v2/templates/{template}/prebuilds/invalidate"),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status, 404, "{}", resp.text());
    let resp = owner
        .post(
            &format!("/api/v2/templates/{template}/prebuilds/invalidate"),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body: Value = resp.json();
    assert_eq!(body["invalidated"].as_array().unwrap().len(), 1);
    assert_eq!(body["invalidated"][0]["template_name"], "echo-pool");
    assert_eq!(body["invalidated"][0]["preset_name"], "pool");
    assert!(body["invalidated"][0]["template_version_name"].is_string());
    // Created in the same millisecond as the invalidation at the earliest: move time on a bit.
    app.clock.advance(ChronoDuration::seconds(1));
    assert_eq!(tick(&app).await.skipped, Some(Skip::Paused));
    assert_eq!(ids(&prebuilds(&owner).await), before);

    owner
        .put(
            "/api/v2/prebuilds/settings",
            &json!({"reconciliation_paused": false}),
        )
        .await;
    let replaced = tick(&app).await;
    assert_eq!((replaced.created(), replaced.deleted()), (2, 2));
    let list = wait_prebuilds(&owner, "2 fresh prebuilds", |l| {
        l.len() == 2 && l.iter().all(|w| w["latest_build"]["status"] == "running")
    })
    .await;
    assert!(ids(&list).is_disjoint(&before));
    let steady = tick(&app).await;
    assert_eq!((steady.created(), steady.deleted()), (0, 0));
}

#[tokio::test]
async fn pending_creates_of_an_inactive_version_are_canceled() {
    // No daemons here, so creation jobs stay pending; a short-lived replica runs the imports.
    let app = TestApp::with_config(|c| {
        enable(c);
        c.provisioner_daemons = 0;
    })
    .await;
    let owner = app.owner().await;
    let importer = app.replica(|c| c.provisioner_daemons = 1).await;
    let importer_client = importer.client().with_token(owner.token());
    let (template, _) = pool_template(&importer_client, &pool_tf(2, ""), "echo", "p").await;
    let v2 = import(
        &importer_client,
        &pool_tf(1, "# v2"),
        "echo",
        Some(&template),
    )
    .await;
    drop(importer);
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(tick(&app).await.created(), 2);
    let pending = prebuilds(&owner).await;
    assert_eq!(pending.len(), 2);
    assert!(pending
        .iter()
        .all(|w| w["latest_build"]["status"] == "pending"));

    promote(&owner, &template, &v2).await;
    let report = tick(&app).await;
    assert_eq!(report.canceled(), 2);
    assert_eq!(report.created(), 1);
    let statuses: Vec<String> = sqlx::query_scalar(
        "SELECT j.job_status FROM workspace_builds b JOIN provisioner_jobs j ON j.id = b.job_id
         WHERE b.build_number = 1 AND b.workspace_id = ANY($1::uuid[])",
    )
    .bind(
        pending
            .iter()
            .map(|w| w["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap())
            .collect::<Vec<_>>(),
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(statuses, vec!["canceled", "canceled"]);

    // Once a daemon runs, the orphan deletes finish and only the new version's prebuild is left.
    let worker = app.replica(|c| c.provisioner_daemons = 2).await;
    let list = wait_prebuilds(&owner, "only the v2 prebuild", |l| {
        l.len() == 1
            && l[0]["latest_build"]["template_version_id"] == v2.as_str()
            && l[0]["latest_build"]["status"] == "running"
    })
    .await;
    assert!(!ids(&pending).contains(list[0]["id"].as_str().unwrap()));
    drop(worker);
}

#[tokio::test]
async fn two_replicas_never_overshoot_or_double_create() {
    let fast = |c: &mut ServerConfig| {
        enable(c);
        c.prebuilds_reconciliation_interval = Duration::from_secs(1);
    };
    let app = TestApp::with_config(fast).await;
    let owner = app.owner().await;
    let (_template, _) = pool_template(&owner, &pool_tf(3, ""), "echo", "shared").await;
    let other = app.replica(fast).await;

    let live_query = "SELECT count(*) FROM workspaces w
        JOIN LATERAL (SELECT transition FROM workspace_builds b WHERE b.workspace_id = w.id
                      ORDER BY build_number DESC LIMIT 1) lb ON true
        WHERE w.owner_id = $1 AND NOT w.deleted AND lb.transition = 'start'";
    let prebuilds_user: uuid::Uuid = PREBUILDS_USER.parse().unwrap();
    let start = Instant::now();
    let mut deleted_one = false;
    let mut max_seen = 0;
    while start.elapsed() < Duration::from_secs(30) {
        let live: i64 = sqlx::query_scalar(live_query)
            .bind(prebuilds_user)
            .fetch_one(app.pool())
            .await
            .unwrap();
        max_seen = max_seen.max(live);
        assert!(live <= 3, "{live} live prebuilds for a pool of 3");
        if !deleted_one && start.elapsed() > Duration::from_secs(10) {
            let list = prebuilds(&owner).await;
            assert_eq!(list.len(), 3, "pool full after 10 s: {list:#?}");
            let id = list[0]["id"].as_str().unwrap();
            let resp = owner
                .post(
                    &format!("/api/v2/workspaces/{id}/builds"),
                    &json!({"transition": "delete"}),
                )
                .await;
            assert_eq!(resp.status, 201);
            deleted_one = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(max_seen, 3);
    // Every prebuild ever created: the 3 of the first fill and the one replacement, no more.
    let ever: i64 = sqlx::query_scalar("SELECT count(*) FROM workspaces WHERE owner_id = $1")
        .bind(prebuilds_user)
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(ever, 4);
    assert_eq!(prebuilds(&owner).await.len(), 3);
    drop(other);
}

// ---- statement count -----------------------------------------------------------------------------

async fn counted_tick(app: &TestApp) -> (TickReport, u64) {
    use crate::harness::tracing::{COUNT_SPAN, STATEMENTS};
    use tracing::Instrument;
    let before = STATEMENTS.load(Ordering::SeqCst);
    let report = reconciler::tick(&app.state)
        .instrument(tracing::info_span!(COUNT_SPAN))
        .await
        .expect("tick");
    (report, STATEMENTS.load(Ordering::SeqCst) - before)
}

fn many_presets_tf(n: usize) -> String {
    let mut tf = String::from(
        r#"
resource "coder_agent" "main" {
  os   = "linux"
  arch = "amd64"
}
"#,
    );
    for i in 0..n {
        tf.push_str(&format!(
            "data \"coder_workspace_preset\" \"p{i}\" {{\n  name = \"p{i}\"\n  prebuilds {{\n    instances = 1\n  }}\n}}\n"
        ));
    }
    tf
}

#[tokio::test]
async fn statements_per_tick_do_not_grow_with_presets() {
    let app = TestApp::with_config(enable).await;
    let owner = app.owner().await;
    pool_template(&owner, &many_presets_tf(1), "echo", "one").await;
    assert_eq!(tick(&app).await.created(), 1);
    wait_prebuilds(&owner, "1 running", |l| {
        l.len() == 1 && l[0]["latest_build"]["status"] == "running"
    })
    .await;
    let (report, one) = counted_tick(&app).await;
    assert_eq!(report.presets.len(), 1);
    assert_eq!((report.created(), report.deleted()), (0, 0));
    assert!(one > 0, "the counter saw no statements");

    pool_template(&owner, &many_presets_tf(199), "echo", "many").await;
    assert_eq!(tick(&app).await.created(), 199);
    wait_prebuilds(&owner, "200 running", |l| {
        l.len() == 200 && l.iter().all(|w| w["latest_build"]["status"] == "running")
    })
    .await;
    let (report, many) = counted_tick(&app).await;
    assert_eq!(report.presets.len(), 200);
    assert_eq!((report.created(), report.deleted()), (0, 0));
    assert_eq!(
        one, many,
        "statements per tick: 1 preset {one}, 200 presets {many}"
    );
}
