//! Reliability with the real binary: SIGKILL mid-build, mid-import and mid-claim, a reconciling
//! replica killed, and a database outage under load. Servers run with a short hung-job timeout (a
//! hidden flag) so recovery is observable in seconds.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::templates::{create_version_with, tar_of_main_tf, upload, wait_import};
use crate::harness::{pg, Client, PASSWORD};
use crate::server_process::{cache_dir, first_user_and_login, process_alive, Server};

const PREBUILDS_USER: &str = "c42fdf75-3097-471c-8c33-fb52454d81c0";

fn env<'a>(url: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("CODER_PG_CONNECTION_URL", url),
        ("CODER_PROVISIONER_STALE_TIMEOUT", "3s"),
        ("CODER_PROVISIONER_STALE_CHECK_INTERVAL", "1s"),
    ];
    env.extend_from_slice(extra);
    env
}

async fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Server {
    let mut s = Server::start(dir, env);
    s.wait_healthy().await;
    s
}

async fn template(owner: &Client, tf: &str, provisioner: &str, name: &str) -> (String, String) {
    let file = upload(owner, tar_of_main_tf(tf)).await;
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
    (
        resp.json::<Value>()["id"].as_str().unwrap().to_string(),
        v["id"].as_str().unwrap().to_string(),
    )
}

async fn wait_for<T>(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const AGENT_TF: &str = r#"
resource "coder_agent" "main" {
  os             = "linux"
  arch           = "amd64"
  startup_script = "echo started > $HOME/started.txt"
}
resource "null_resource" "box" {
  depends_on = [coder_agent.main]
}
"#;

#[tokio::test]
async fn sigkill_mid_build_fails_the_build_and_stops_its_orphaned_agent() {
    let url = pg::cluster().empty_database().await;
    let dir = cache_dir();
    let mut first = start(dir.path(), &env(&url, &[])).await;
    let owner = first_user_and_login(&first.url).await;
    let (tpl, _) = template(&owner, AGENT_TF, "terraform", "local").await;
    first.signal(nix::sys::signal::Signal::SIGTERM);
    first.wait_exit().await;

    // This server pauses every job just before committing it; it dies there.
    let delayed = env(&url, &[("CODER_TEST_JOB_COMMIT_DELAY", "60s")]);
    let mut doomed = start(dir.path(), &delayed).await;
    let client = Client::new(&doomed.url).with_token(owner.token());
    let resp = client
        .post(
            "/api/v2/users/me/workspaces",
            &json!({"template_id": tpl, "name": "crashy"}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let ws = resp.json::<Value>()["id"].as_str().unwrap().to_string();
    let pid_file = dir
        .path()
        .join("workspaces")
        .join(&ws)
        .join("agent-main.pid");
    let pid: i32 = wait_for("the agent process", Duration::from_secs(30), async || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
    .await;
    doomed.signal(nix::sys::signal::Signal::SIGKILL);
    doomed.wait_exit().await;
    assert!(
        process_alive(pid),
        "the agent outlives the server (own session)"
    );

    let restarted = start(dir.path(), &env(&url, &[])).await;
    let client = Client::new(&restarted.url).with_token(owner.token());
    let started = Instant::now();
    let w: Value = wait_for(
        "the hung build to fail",
        Duration::from_secs(30),
        async || {
            let w: Value = client.get(&format!("/api/v2/workspaces/{ws}")).await.json();
            (w["latest_build"]["status"] == "failed").then_some(w)
        },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stuck for {:?}",
        started.elapsed()
    );
    assert!(w["latest_build"]["job"]["error"]
        .as_str()
        .unwrap()
        .contains("hung"));
    wait_for(
        "the orphaned agent to be stopped",
        Duration::from_secs(40),
        async || (!process_alive(pid)).then_some(()),
    )
    .await;

    // The workspace is usable again: a new start builds and its agent gets ready.
    let resp = client
        .post(
            &format!("/api/v2/workspaces/{ws}/builds"),
            &json!({"transition": "start"}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    wait_for("a ready agent", Duration::from_secs(60), async || {
        let w: Value = client.get(&format!("/api/v2/workspaces/{ws}")).await.json();
        let state = w["latest_build"]["resources"][0]["agents"][0]["lifecycle_state"].clone();
        (w["latest_build"]["status"] == "running" && state == "ready").then_some(())
    })
    .await;
    let _ = restarted;
}

#[tokio::test]
async fn sigkill_mid_import_fails_the_import_and_new_imports_work() {
    let url = pg::cluster().empty_database().await;
    let dir = cache_dir();
    let delayed = env(&url, &[("CODER_TEST_JOB_COMMIT_DELAY", "60s")]);
    let mut doomed = start(dir.path(), &delayed).await;
    let owner = first_user_and_login(&doomed.url).await;
    let file = upload(&owner, tar_of_main_tf(AGENT_TF)).await;
    let v = create_version_with(&owner, file, None, "echo").await;
    let version = v["id"].as_str().unwrap().to_string();
    wait_for("the import to start", Duration::from_secs(30), async || {
        let v: Value = owner
            .get(&format!("/api/v2/templateversions/{version}"))
            .await
            .json();
        (v["job"]["status"] == "running").then_some(())
    })
    .await;
    doomed.signal(nix::sys::signal::Signal::SIGKILL);
    doomed.wait_exit().await;

    let restarted = start(dir.path(), &env(&url, &[])).await;
    let client = Client::new(&restarted.url).with_token(owner.token());
    let v: Value = wait_for(
        "the hung import to fail",
        Duration::from_secs(20),
        async || {
            let v: Value = client
                .get(&format!("/api/v2/templateversions/{version}"))
                .await
                .json();
            (v["job"]["status"] == "failed").then_some(v)
        },
    )
    .await;
    assert!(v["job"]["error"].as_str().unwrap().contains("hung"), "{v}");
    let (_, again) = template(&client, AGENT_TF, "echo", "after-crash").await;
    assert!(!again.is_empty());
}

async fn agent_tokens_ready(pool: &sqlx::PgPool, base: &str) {
    let tokens: Vec<Uuid> = sqlx::query_scalar(
        "SELECT a.auth_token FROM workspaces w
         JOIN LATERAL (SELECT job_id FROM workspace_builds b WHERE b.workspace_id = w.id
                       ORDER BY build_number DESC LIMIT 1) lb ON true
         JOIN workspace_resources r ON r.job_id = lb.job_id
         JOIN workspace_agents a ON a.resource_id = r.id
         WHERE w.owner_id = $1 AND NOT w.deleted AND a.lifecycle_state <> 'ready'",
    )
    .bind(PREBUILDS_USER.parse::<Uuid>().unwrap())
    .fetch_all(pool)
    .await
    .unwrap();
    for t in tokens {
        let resp = Client::new(base)
            .with_token(&t.to_string())
            .post(
                "/api/v2/workspaceagents/me/report-lifecycle",
                &json!({"state": "ready"}),
            )
            .await;
        assert_eq!(resp.status, 204);
    }
}

const POOL_TF: &str = r#"
resource "coder_agent" "main" {
  os   = "linux"
  arch = "amd64"
}
data "coder_workspace_preset" "pool" {
  name = "pool"
  prebuilds {
    instances = 15
  }
}
"#;

async fn live_prebuilds(pool: &sqlx::PgPool, status: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM workspaces w
         JOIN LATERAL (SELECT transition, job_id FROM workspace_builds b WHERE b.workspace_id = w.id
                       ORDER BY build_number DESC LIMIT 1) lb ON true
         JOIN provisioner_jobs j ON j.id = lb.job_id
         WHERE w.owner_id = $1 AND NOT w.deleted AND lb.transition = 'start' AND j.job_status = $2",
    )
    .bind(PREBUILDS_USER.parse::<Uuid>().unwrap())
    .bind(status)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn sigkill_during_claims_leaves_no_half_applied_claim() {
    let url = pg::cluster().empty_database().await;
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let dir = cache_dir();
    let prebuilds = env(
        &url,
        &[
            ("CODER_EXPERIMENTS", "workspace-prebuilds"),
            ("CODER_WORKSPACE_PREBUILDS_RECONCILIATION_INTERVAL", "1s"),
        ],
    );
    let mut slow_claims = prebuilds.clone();
    slow_claims.push(("CODER_TEST_CLAIM_COMMIT_DELAY", "2s"));
    let mut doomed = start(dir.path(), &slow_claims).await;
    let owner = first_user_and_login(&doomed.url).await;
    let (tpl, version) = template(&owner, POOL_TF, "echo", "pool").await;
    let presets: Value = owner
        .get(&format!("/api/v2/templateversions/{version}/presets"))
        .await
        .json();
    let preset = presets[0]["ID"].as_str().unwrap().to_string();
    wait_for("a full pool", Duration::from_secs(60), async || {
        (live_prebuilds(&db, "succeeded").await == 15).then_some(())
    })
    .await;
    agent_tokens_ready(&db, &doomed.url).await;

    // Claims pause 2 s before committing. Five creates commit; ten more are mid-claim when the
    // server is killed.
    let (base, token) = (doomed.url.clone(), owner.token().to_string());
    let create = |i: usize| {
        let (base, token) = (base.clone(), token.clone());
        let (tpl, preset) = (tpl.clone(), preset.clone());
        tokio::spawn(async move {
            // A raw client: requests cut off by the kill are expected to error.
            let resp = reqwest::Client::new()
                .post(format!("{base}/api/v2/users/me/workspaces"))
                .header("Coder-Session-Token", token)
                .json(&json!({"template_id": tpl, "name": format!("c{i}"),
                              "template_version_preset_id": preset}))
                .send()
                .await
                .ok()?;
            if resp.status() != 201 {
                return None;
            }
            let w: Value = resp.json().await.ok()?;
            Some(w["id"].as_str()?.to_string())
        })
    };
    let first: Vec<_> = (0..5).map(create).collect();
    let mut answered = Vec::new();
    for t in first {
        answered.push(t.await.unwrap().expect("claim before the crash"));
    }
    let in_flight: Vec<_> = (5..15).map(create).collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    doomed.signal(nix::sys::signal::Signal::SIGKILL);
    doomed.wait_exit().await;
    for t in in_flight {
        if let Ok(Some(id)) = t.await {
            panic!("a claim answered although the server died before committing it: {id}");
        }
    }

    let restarted = start(dir.path(), &prebuilds).await;
    // Every workspace that left the pool has exactly its claim record and its claim build.
    let rows: Vec<(Uuid, Uuid, i64, bool)> = sqlx::query_as(
        "SELECT w.id, w.owner_id,
                (SELECT count(*) FROM prebuild_claims c WHERE c.workspace_id = w.id),
                EXISTS (SELECT 1 FROM workspace_builds b JOIN provisioner_jobs j ON j.id = b.job_id
                        WHERE b.workspace_id = w.id AND b.build_number = 2
                          AND j.input ->> 'prebuild_claim' = 'true')
         FROM workspaces w JOIN workspace_builds b1 ON b1.workspace_id = w.id AND b1.build_number = 1
         WHERE b1.initiator_id = $1",
    )
    .bind(PREBUILDS_USER.parse::<Uuid>().unwrap())
    .fetch_all(&db)
    .await
    .unwrap();
    let prebuilds_user: Uuid = PREBUILDS_USER.parse().unwrap();
    let mut claimed = HashSet::new();
    for (id, owner_id, claims, claim_build) in &rows {
        let is_claimed = *owner_id != prebuilds_user;
        assert_eq!(
            (is_claimed, *claims == 1, *claim_build),
            (is_claimed, is_claimed, is_claimed),
            "workspace {id}: owner claimed={is_claimed}, claim rows={claims}, claim build={claim_build}"
        );
        if is_claimed {
            claimed.insert(id.to_string());
        }
    }
    // Nothing the server confirmed was lost.
    for id in &answered {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM workspaces WHERE id = $1::uuid)")
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap();
        assert!(exists, "confirmed workspace {id} is gone");
    }
    // No claim build stays in flight after the restart (hung ones are failed, pending ones run).
    wait_for(
        "claim builds to settle",
        Duration::from_secs(30),
        async || {
            let busy: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM workspace_builds b JOIN provisioner_jobs j ON j.id = b.job_id
             WHERE j.job_status IN ('pending', 'running')",
            )
            .fetch_one(&db)
            .await
            .unwrap();
            (busy == 0).then_some(())
        },
    )
    .await;
    // The pool refills to 10 (claimed ones replaced by the restarted replica).
    wait_for("the pool refilled", Duration::from_secs(60), async || {
        (live_prebuilds(&db, "succeeded").await == 15).then_some(())
    })
    .await;
    eprintln!(
        "claims race: {} answered before the kill, {} claimed in the database",
        answered.len(),
        claimed.len()
    );
    assert_eq!(claimed.len(), 5, "exactly the committed claims");
    assert_eq!(
        claimed,
        answered.iter().cloned().collect::<HashSet<_>>(),
        "the confirmed claims are the claimed workspaces"
    );
    let _ = restarted;
    db.close().await;
}

#[tokio::test]
async fn another_replica_takes_over_reconciliation_after_a_sigkill() {
    let url = pg::cluster().empty_database().await;
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let (d1, d2) = (cache_dir(), cache_dir());
    let cfg = env(
        &url,
        &[
            ("CODER_EXPERIMENTS", "workspace-prebuilds"),
            ("CODER_WORKSPACE_PREBUILDS_RECONCILIATION_INTERVAL", "1s"),
        ],
    );
    let mut a = start(d1.path(), &cfg).await;
    let b = start(d2.path(), &cfg).await;
    let owner = first_user_and_login(&a.url).await;
    let tf = POOL_TF.replace("instances = 15", "instances = 2");
    template(&owner, &tf, "echo", "pool").await;
    wait_for("a full pool", Duration::from_secs(30), async || {
        (live_prebuilds(&db, "succeeded").await == 2).then_some(())
    })
    .await;
    a.signal(nix::sys::signal::Signal::SIGKILL);
    a.wait_exit().await;

    let on_b = Client::new(&b.url).with_token(owner.token());
    let list: Value = on_b
        .get("/api/v2/workspaces?q=owner:prebuilds")
        .await
        .json();
    let victim = list["workspaces"][0]["id"].as_str().unwrap().to_string();
    let resp = on_b
        .post(
            &format!("/api/v2/workspaces/{victim}/builds"),
            &json!({"transition": "delete"}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    wait_for("the deletion", Duration::from_secs(20), async || {
        (live_prebuilds(&db, "succeeded").await == 1).then_some(())
    })
    .await;
    let gone = Instant::now();
    wait_for("b to replace it", Duration::from_secs(20), async || {
        (live_prebuilds(&db, "succeeded").await == 2).then_some(())
    })
    .await;
    // Two 1 s intervals, plus the echo build itself.
    assert!(
        gone.elapsed() < Duration::from_secs(4),
        "replaced after {:?}",
        gone.elapsed()
    );
    db.close().await;
}

/// A PostgreSQL cluster of this test's own, so it can be stopped without disturbing other tests.
struct OwnCluster {
    pg: coder::db::embedded::BuiltinPostgres,
    dir: std::path::PathBuf,
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = self.pg.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_then_recovers_without_losing_anything() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::path::PathBuf::from(format!("/tmp/coder-outage-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pg = coder::db::embedded::BuiltinPostgres::new(&dir)
        .unwrap()
        .with_settings(&[("fsync", "off"), ("synchronous_commit", "off")]);
    let mut cluster = OwnCluster { pg, dir };
    let url = tokio::task::block_in_place(|| cluster.pg.start()).unwrap();

    let cache = cache_dir();
    let server = start(
        cache.path(),
        &env(
            &url,
            &[
                ("CODER_EXPERIMENTS", "workspace-prebuilds"),
                ("CODER_WORKSPACE_PREBUILDS_RECONCILIATION_INTERVAL", "1s"),
            ],
        ),
    )
    .await;
    let owner = first_user_and_login(&server.url).await;
    let tf = POOL_TF.replace("instances = 15", "instances = 1");
    template(&owner, &tf, "echo", "pool").await;
    let before: Value = wait_for("the prebuild", Duration::from_secs(30), async || {
        let l: Value = owner
            .get("/api/v2/workspaces?q=owner:prebuilds")
            .await
            .json();
        (l["count"] == 1 && l["workspaces"][0]["latest_build"]["status"] == "running").then_some(l)
    })
    .await;
    let resp = owner
        .post(
            "/api/v2/users/me/workspaces",
            &json!({"template_id": before["workspaces"][0]["template_id"], "name": "mine"}),
        )
        .await;
    assert_eq!(resp.status, 201);
    let mine = resp.json::<Value>()["id"].as_str().unwrap().to_string();

    // A watch stream stays open through the outage (its LISTEN connection reconnects).
    let mut watch = reqwest::Client::new()
        .get(format!("{}/api/v2/workspaces/{mine}/watch", server.url))
        .header("Coder-Session-Token", owner.token())
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Ok(Some(chunk)) = watch.chunk().await {
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk));
            }
        })
    };

    // Load: four clients hammer the API through the outage.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, stop) = (owner.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut seen: Vec<(u16, Duration)> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let t = Instant::now();
                let resp = client.get("/api/v2/workspaces").await;
                seen.push((resp.status, t.elapsed()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| cluster.pg.stop()).unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let url_again = tokio::task::block_in_place(|| cluster.pg.start()).unwrap();
    assert_eq!(url, url_again, "same port and password after the restart");
    let recovered = wait_for(
        "requests to succeed again",
        Duration::from_secs(30),
        async || {
            let resp = owner.get("/api/v2/workspaces").await;
            (resp.status == 200).then(|| resp.json::<Value>())
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut statuses = std::collections::BTreeMap::new();
    let mut slowest = Duration::ZERO;
    for t in load {
        for (status, took) in t.await.unwrap() {
            *statuses.entry(status).or_insert(0) += 1;
            slowest = slowest.max(took);
        }
    }
    assert!(statuses.get(&503).copied().unwrap_or(0) > 0, "{statuses:?}");
    assert!(
        statuses.keys().all(|s| *s == 200 || *s == 503),
        "only 200 and 503 during the outage: {statuses:?}"
    );
    assert!(
        slowest < Duration::from_secs(7),
        "a request hung for {slowest:?}"
    );
    assert_eq!(recovered["count"], 2, "nothing lost: {recovered}");

    // After the outage, a change to the workspace still reaches the open watch stream.
    let mark = seen.lock().unwrap().len();
    let resp = owner
        .post(
            &format!("/api/v2/workspaces/{mine}/builds"),
            &json!({"transition": "stop"}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    wait_for(
        "the stop on the watch stream",
        Duration::from_secs(20),
        async || {
            let text = seen.lock().unwrap()[mark..].to_string();
            text.contains("\"transition\":\"stop\"").then_some(())
        },
    )
    .await;
    reader.abort();

    // The reconciler resumed: a deleted prebuild is replaced.
    let victim = before["workspaces"][0]["id"].as_str().unwrap();
    let resp = owner
        .post(
            &format!("/api/v2/workspaces/{victim}/builds"),
            &json!({"transition": "delete"}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    wait_for(
        "a replacement prebuild",
        Duration::from_secs(30),
        async || {
            let l: Value = owner
                .get("/api/v2/workspaces?q=owner:prebuilds")
                .await
                .json();
            let ok = l["count"] == 1
                && l["workspaces"][0]["id"] != victim
                && l["workspaces"][0]["latest_build"]["status"] == "running";
            ok.then_some(())
        },
    )
    .await;
    let _ = PASSWORD;
    drop(server);
}

#[tokio::test]
async fn sigterm_with_open_watch_streams_exits_within_the_grace_period() {
    let url = pg::cluster().empty_database().await;
    let dir = cache_dir();
    let mut server = start(dir.path(), &env(&url, &[])).await;
    let owner = first_user_and_login(&server.url).await;
    let (tpl, _) = template(&owner, AGENT_TF, "echo", "streams").await;
    let resp = owner
        .post(
            "/api/v2/users/me/workspaces",
            &json!({"template_id": tpl, "name": "watched"}),
        )
        .await;
    assert_eq!(resp.status, 201);
    let ws = resp.json::<Value>()["id"].as_str().unwrap().to_string();
    // Streams that never end by themselves.
    let mut streams = Vec::new();
    for _ in 0..3 {
        let resp = reqwest::Client::new()
            .get(format!("{}/api/v2/workspaces/{ws}/watch", server.url))
            .header("Coder-Session-Token", owner.token())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        streams.push(resp);
    }
    let t = Instant::now();
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let status = server.wait_exit().await;
    assert!(status.success(), "{status}:\n{}", server.logs());
    assert!(
        t.elapsed() < Duration::from_secs(12),
        "shutdown took {:?}",
        t.elapsed()
    );
    drop(streams);
    let _ = PASSWORD;
}
