//! F5 benchmark: the prebuild claim path against a real `coder server` (built-in PostgreSQL,
//! `workspace-prebuilds` experiment, reconciliation every second).
//!
//! 1. Claim path: 200 sequential creates with the pool preset of an echo template whose pool of 200
//!    prebuilds is running with every agent `ready` (the benchmark reports `ready` for the echo agents
//!    over the agent API with their tokens, read from the database). Create round trip p50/p99, and
//!    create → running of the claim build (watch stream). 10 unmeasured claim creates warm the
//!    server's pooled connections first (the raw transaction below gets a warm-up too).
//! 2. Fresh path: 200 sequential creates with a preset of the same template without a pool (always a fresh
//!    build). Create round trip p50/p99, create → running p50.
//! 3. The claim transaction alone, run raw with sqlx on a refilled ready pool: BEGIN; the claim UPDATE
//!    (mirrors the claim in `src/workspaces/create.rs`); the `prebuild_claims` INSERT; COMMIT. It skips the claim build and
//!    job the server inserts in the same statement. EXPLAIN ANALYZE of the claim statement.
//! 4. Where the claim create's time goes: a few more claim creates with PostgreSQL statement logging on;
//!    every statement logged between two markers around each request.
//! 5. Time to `ready` on the local runtime (`terraform` provisioner, real `coder agent` processes) with
//!    `startup_script = "sleep 5"`: claim (create until the claim build is `running` and the agent
//!    `ready`) vs a fresh build (create until the agent is `ready`), 3 each, median.
//!
//! Reconciliation is paused (`PUT /api/v2/prebuilds/settings`) while measuring 1–4, so pool refills
//! do not compete with the measured requests; it runs while pools refill and during 5.
//!
//! Usage: bench_claims [coder-binary] [--explain]   (`--explain` prints the claim statement's plan)
//! Run with `scripts/bench claims` (release build).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// The `prebuilds` system user (created by the first migration).
const PREBUILDS_USER: &str = "c42fdf75-3097-471c-8c33-fb52454d81c0";
const POOL: usize = 200;
const DIAGNOSTIC_CLAIMS: usize = 5;
const READY_RUNS: usize = 3;

/// Mirrors the claim CTEs of `CLAIM_WORKSPACE_CTE` in `src/workspaces/create.rs`. Keep in sync by hand.
const CLAIM_SQL: &str = "WITH candidate AS (
            SELECT w.id, w.created_at, lb.id AS build_id
            FROM workspaces w
            JOIN templates t ON t.id = w.template_id
            JOIN template_version_presets p ON p.id = $1
            JOIN LATERAL (SELECT b.id, b.transition, b.job_id, b.template_version_id, b.template_version_preset_id
                          FROM workspace_builds b WHERE b.workspace_id = w.id
                          ORDER BY b.build_number DESC LIMIT 1) lb ON true
            JOIN provisioner_jobs j ON j.id = lb.job_id
            WHERE w.owner_id = $2 AND NOT w.deleted AND NOT t.deleted
              AND lb.transition = 'start' AND j.job_status = 'succeeded'
              AND lb.template_version_preset_id = $1
              AND lb.template_version_id = t.active_version_id
              AND (COALESCE(p.invalidate_after_secs, 0) <= 0
                   OR w.created_at >= $3 - make_interval(secs => p.invalidate_after_secs))
              AND (p.last_invalidated_at IS NULL OR w.created_at >= p.last_invalidated_at)
              AND (SELECT COALESCE(bool_and(a.lifecycle_state = 'ready'), false)
                   FROM workspace_resources r JOIN workspace_agents a ON a.resource_id = r.id
                   WHERE r.job_id = j.id)
            LIMIT 1
            FOR UPDATE OF w SKIP LOCKED
        )
        UPDATE workspaces w
        SET owner_id = $4, name = $5, updated_at = $3, last_used_at = $3, autostart_schedule = $6,
            ttl_ms = $7, automatic_updates = $8, dormant_at = NULL, deleting_at = NULL, next_start_at = NULL
        FROM candidate c WHERE w.id = c.id
        RETURNING w.id AS workspace_id, c.created_at AS prebuild_created_at, c.build_id AS latest_build_id";

/// The claim record, as `CLAIM_WORKSPACE_CTE` in `src/workspaces/create.rs` writes it.
const RECORD_CLAIM_SQL: &str =
    "INSERT INTO prebuild_claims (workspace_id, preset_id, claimed_by, claimed_at, prebuild_created_at)
         VALUES ($1, $2, $3, $4, $5)";

/// Echo runtime: a pool of `POOL` (200) and a preset without a pool.
const ECHO_TF: &str = r#"
data "coder_workspace" "me" {}
data "coder_workspace_owner" "me" {}
resource "coder_agent" "main" {
  os             = "linux"
  arch           = "amd64"
  startup_script = "echo ready"
}
resource "null_resource" "box" {
  depends_on = [coder_agent.main]
}
data "coder_workspace_preset" "pool" {
  name = "pool"
  prebuilds {
    instances = 200
  }
}
data "coder_workspace_preset" "fresh" {
  name = "fresh"
}
"#;

/// Local runtime: the agent's startup takes 5 s; a pool of 1 and a preset without a pool.
const LOCAL_TF: &str = r#"
data "coder_workspace" "me" {}
data "coder_workspace_owner" "me" {}
resource "coder_agent" "main" {
  os             = "linux"
  arch           = "amd64"
  startup_script = "sleep 5"
}
resource "null_resource" "box" {
  depends_on = [coder_agent.main]
}
data "coder_workspace_preset" "pool" {
  name = "pool"
  prebuilds {
    instances = 1
  }
}
data "coder_workspace_preset" "fresh" {
  name = "fresh"
}
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(3997)
}

/// Nearest-rank percentile of microsecond samples, in ms. With n = 200, p99 is the second largest.
fn percentile(samples: &[u64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

fn summary(samples: &[u64]) -> String {
    format!(
        "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, min {:.2} ms, max {:.2} ms (n={})",
        percentile(samples, 0.5),
        percentile(samples, 0.9),
        percentile(samples, 0.99),
        percentile(samples, 0.0),
        percentile(samples, 1.0),
        samples.len()
    )
}

/// Whether `pid` is alive and a `coder agent` process (pids get reused).
fn is_agent_process(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).any(|arg| arg == b"agent"))
        .unwrap_or(false)
}

/// Ends the `coder agent` process groups the local runtime started (they live in their own sessions and
/// outlive the server): the pids recorded in `<cache>/workspaces/*/agent-*.pid`.
fn stop_local_agents(cache: &Path) {
    let mut groups = Vec::new();
    for ws in std::fs::read_dir(cache.join("workspaces"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for f in std::fs::read_dir(ws.path()).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().to_string();
            if !(name.starts_with("agent-") && name.ends_with(".pid")) {
                continue;
            }
            let Some(pid) = std::fs::read_to_string(f.path())
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            else {
                continue;
            };
            if is_agent_process(pid) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
                groups.push(pid);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while groups.iter().any(|p| is_agent_process(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in groups.into_iter().filter(|p| is_agent_process(*p)) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// The server and what it started. On drop (also on a panic): the local agents, then SIGINT to the
/// server, which stops its built-in PostgreSQL; a postmaster left behind gets a fast shutdown.
struct Cleanup {
    server: Child,
    cache: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Agents first: their open connections would hold the server's graceful shutdown.
        stop_local_agents(&self.cache);
        let stopping = Instant::now();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.server.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.server.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    eprintln!("server did not stop within 60 s of SIGINT; killing it");
                    let _ = self.server.kill();
                    let _ = self.server.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        eprintln!(
            "server stopped {:.1} s after SIGINT",
            stopping.elapsed().as_secs_f64()
        );
        let pidfile = self.cache.join("postgres/data/postmaster.pid");
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
        {
            eprintln!(
                "built-in PostgreSQL still running after the server stopped; stopping pid {pid}"
            );
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGINT,
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            while pidfile.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// A session on the server's API.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Coder-Session-Token", &self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn get(&self, path: &str) -> Value {
        let (status, v) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn pause(&self, paused: bool) {
        let (status, v) = self
            .send(
                reqwest::Method::PUT,
                "/api/v2/prebuilds/settings",
                Some(&json!({"reconciliation_paused": paused})),
            )
            .await;
        assert!(
            status == 200 || status == 304,
            "prebuild settings: {status} {v}"
        );
    }
}

async fn login(http: &reqwest::Client, base: &str, email: &str) -> String {
    let login: Value = http
        .post(format!("{base}/api/v2/users/login"))
        .json(&json!({"email": email, "password": "SomeSecurePassword!"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login body");
    login["session_token"]
        .as_str()
        .expect("session token")
        .to_string()
}

/// Imports `tf` with the given provisioner and creates a template from it: (template id, version id).
async fn template(owner: &Api, name: &str, tf: &str, provisioner: &str) -> (String, String) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(tf.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "main.tf", tf.as_bytes())
        .expect("tar");
    let file: Value = owner
        .http
        .post(format!("{}/api/v2/files", owner.base))
        .header("Coder-Session-Token", &owner.token)
        .header("Content-Type", "application/x-tar")
        .body(tar.into_inner().expect("tar"))
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("upload body");
    let (status, version) = owner
        .post(
            "/api/v2/organizations/default/templateversions",
            &json!({"storage_method": "file", "file_id": file["hash"], "provisioner": provisioner, "tags": {}}),
        )
        .await;
    assert_eq!(status, 201, "create version: {version}");
    let vid = version["id"].as_str().expect("version id").to_string();
    let start = Instant::now();
    loop {
        let v = owner.get(&format!("/api/v2/templateversions/{vid}")).await;
        match v["job"]["status"].as_str().unwrap_or_default() {
            "succeeded" => break,
            "pending" | "running" => {}
            other => panic!("import {name}: {other}: {v}"),
        }
        assert!(start.elapsed() < Duration::from_secs(60), "import {name}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, t) = owner
        .post(
            "/api/v2/organizations/default/templates",
            &json!({"name": name, "template_version_id": vid}),
        )
        .await;
    assert_eq!(status, 201, "create template: {t}");
    (t["id"].as_str().expect("template id").to_string(), vid)
}

async fn preset_id(owner: &Api, version: &str, name: &str) -> String {
    let presets = owner
        .get(&format!("/api/v2/templateversions/{version}/presets"))
        .await;
    presets
        .as_array()
        .expect("presets")
        .iter()
        .find(|p| p["Name"] == name)
        .unwrap_or_else(|| panic!("preset {name} in {presets}"))["ID"]
        .as_str()
        .expect("preset id")
        .to_string()
}

fn agents(w: &Value) -> Vec<Value> {
    w["latest_build"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["agents"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn running_and_ready(w: &Value) -> bool {
    let a = agents(w);
    w["latest_build"]["status"] == "running"
        && !a.is_empty()
        && a.iter().all(|a| a["lifecycle_state"] == "ready")
}

/// The live prebuilds of a template.
async fn prebuilds(owner: &Api, template: &str) -> Vec<Value> {
    owner.get("/api/v2/workspaces?q=owner:prebuilds").await["workspaces"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|w| w["template_id"] == template)
        .collect()
}

async fn wait_prebuilds(
    owner: &Api,
    template: &str,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let list = prebuilds(owner, template).await;
        if pred(&list) {
            return list;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "timed out waiting for {what}: {} prebuilds",
            list.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ids(list: &[Value]) -> HashSet<String> {
    list.iter()
        .filter_map(|w| w["id"].as_str().map(str::to_string))
        .collect()
}

/// Plays the agents of the template's live prebuilds on the echo runtime: each reports `ready` over
/// the agent API with its own token (read from the database).
async fn report_ready(api: &Api, db: &mut PgConnection, template: &str) -> usize {
    let tokens: Vec<Uuid> = sqlx::query_scalar(
        "SELECT a.auth_token FROM workspaces w
         JOIN LATERAL (SELECT job_id FROM workspace_builds b WHERE b.workspace_id = w.id
                       ORDER BY build_number DESC LIMIT 1) lb ON true
         JOIN workspace_resources r ON r.job_id = lb.job_id
         JOIN workspace_agents a ON a.resource_id = r.id
         WHERE w.owner_id = $1 AND w.template_id = $2 AND NOT w.deleted AND a.lifecycle_state <> 'ready'",
    )
    .bind(Uuid::parse_str(PREBUILDS_USER).expect("uuid"))
    .bind(Uuid::parse_str(template).expect("uuid"))
    .fetch_all(&mut *db)
    .await
    .expect("agent tokens");
    for token in &tokens {
        let resp = api
            .http
            .post(format!(
                "{}/api/v2/workspaceagents/me/report-lifecycle",
                api.base
            ))
            .header("Coder-Session-Token", token.to_string())
            .json(&json!({"state": "ready", "changed_at": Utc::now()}))
            .send()
            .await
            .expect("report lifecycle");
        assert_eq!(resp.status().as_u16(), 204, "report lifecycle");
    }
    tokens.len()
}

/// Resumes reconciliation until the echo pool holds `POOL` running prebuilds, makes their agents
/// ready, pauses again. Returns the pool's ids.
async fn refill_echo_pool(
    owner: &Api,
    db: &mut PgConnection,
    template: &str,
    what: &str,
) -> HashSet<String> {
    owner.pause(false).await;
    let t = Instant::now();
    wait_prebuilds(owner, template, what, |l| {
        l.len() == POOL && l.iter().all(|w| w["latest_build"]["status"] == "running")
    })
    .await;
    owner.pause(true).await;
    let filled = t.elapsed();
    let reported = report_ready(owner, db, template).await;
    let pool = wait_prebuilds(owner, template, "ready pool", |l| {
        l.len() == POOL && l.iter().all(running_and_ready)
    })
    .await;
    println!(
        "  {what}: {POOL} running after {:.1} s of waiting, reported ready for {reported} agents",
        filled.as_secs_f64()
    );
    ids(&pool)
}

/// Follows the workspace's watch stream (SSE) until its latest build is `running`.
async fn wait_running(api: &Api, id: &str) {
    let mut stream = api
        .http
        .get(format!("{}/api/v2/workspaces/{id}/watch", api.base))
        .header("Coder-Session-Token", &api.token)
        .send()
        .await
        .expect("watch");
    let mut buf = String::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(60), stream.chunk())
            .await
            .expect("watch timed out")
            .expect("watch chunk")
            .expect("watch ended");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            for line in frame.lines() {
                if let Some(data) = line
                    .strip_prefix("data: ")
                    .or_else(|| line.strip_prefix("data:"))
                {
                    let Ok(w) = serde_json::from_str::<Value>(data.trim()) else {
                        continue;
                    };
                    assert_ne!(w["latest_build"]["status"], "failed", "build failed");
                    if w["latest_build"]["status"] == "running" {
                        return;
                    }
                }
            }
        }
    }
}

/// Polls the workspace every 20 ms until its latest build is `running` and every agent `ready`.
async fn wait_ready(api: &Api, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let w = api.get(&format!("/api/v2/workspaces/{id}")).await;
        assert_ne!(w["latest_build"]["status"], "failed", "build failed: {w}");
        if running_and_ready(&w) {
            return w;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "not ready: {w}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn create(api: &Api, template: &str, preset: &str, name: &str) -> (Duration, Value) {
    let t = Instant::now();
    let (status, w) = api
        .post(
            "/api/v2/users/me/workspaces",
            &json!({"template_id": template, "name": name, "template_version_preset_id": preset}),
        )
        .await;
    let elapsed = t.elapsed();
    assert_eq!(status, 201, "create {name}: {w}");
    (elapsed, w)
}

/// Microseconds spent in each step of a raw claim transaction.
#[derive(Default)]
struct RawPhases {
    begin: Vec<u64>,
    claim: Vec<u64>,
    insert: Vec<u64>,
    commit: Vec<u64>,
}

/// One raw claim transaction; whether it claimed a prebuild.
async fn raw_claim(
    db: &mut PgConnection,
    preset: Uuid,
    owner: Uuid,
    name: &str,
    commit: bool,
    phases: &mut RawPhases,
) -> bool {
    let now = Utc::now();
    let t = Instant::now();
    let mut tx = db.begin().await.expect("begin");
    phases.begin.push(micros(t.elapsed()));
    let t = Instant::now();
    let claimed: Option<(Uuid, DateTime<Utc>, Uuid)> = sqlx::query_as(CLAIM_SQL)
        .bind(preset)
        .bind(Uuid::parse_str(PREBUILDS_USER).expect("uuid"))
        .bind(now)
        .bind(owner)
        .bind(name)
        .bind(None::<String>)
        .bind(None::<i64>)
        .bind("never")
        .fetch_optional(&mut *tx)
        .await
        .expect("claim");
    phases.claim.push(micros(t.elapsed()));
    let t = Instant::now();
    if let Some((workspace, prebuild_created_at, _build)) = claimed {
        sqlx::query(RECORD_CLAIM_SQL)
            .bind(workspace)
            .bind(preset)
            .bind(owner)
            .bind(now)
            .bind(prebuild_created_at)
            .execute(&mut *tx)
            .await
            .expect("record claim");
    }
    phases.insert.push(micros(t.elapsed()));
    let t = Instant::now();
    if commit {
        tx.commit().await.expect("commit");
    } else {
        tx.rollback().await.expect("rollback");
    }
    phases.commit.push(micros(t.elapsed()));
    claimed.is_some()
}

/// A statement PostgreSQL logged (`log_min_duration_statement = 0`).
struct Logged {
    pid: String,
    ms: f64,
    kind: String,
    text: String,
}

/// The statements logged between the lines holding `start` and `end`.
fn logged_between(log: &str, start: &str, end: &str) -> Vec<Logged> {
    let re = regex::Regex::new(
        r"^\S+ \S+ \S+ \[(\d+)\] LOG:  duration: ([0-9.]+) ms  (parse|bind|execute|statement)([^:]*): (.*)$",
    )
    .expect("regex");
    let mut out = Vec::new();
    let mut inside = false;
    for line in log.lines() {
        if line.contains(start) {
            inside = true;
            continue;
        }
        if line.contains(end) {
            break;
        }
        if !inside {
            continue;
        }
        if let Some(c) = re.captures(line) {
            out.push(Logged {
                pid: c[1].to_string(),
                ms: c[2].parse().unwrap_or(0.0),
                kind: c[3].to_string(),
                text: c[5].chars().take(100).collect(),
            });
        }
    }
    out
}

fn median_ms(samples: &[Duration]) -> f64 {
    let mut s: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

/// Claim creates before the measured ones (see the claim path's warm-up).
const WARMUP_CLAIMS: usize = 10;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let explain = args.iter().any(|a| a == "--explain");
    let bin = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "target/release/coder".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = Command::new(&bin)
        .arg("server")
        .env("CODER_CACHE_DIRECTORY", dir.path())
        .env("CODER_HTTP_ADDRESS", format!("127.0.0.1:{port}"))
        .env("CODER_LOGGING_HUMAN", "")
        .env("CODER_PG_CONN_MAX_OPEN", "10")
        .env("CODER_EXPERIMENTS", "workspace-prebuilds")
        .env("CODER_WORKSPACE_PREBUILDS_RECONCILIATION_INTERVAL", "1s")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn coder server");
    let _cleanup = Cleanup {
        server,
        cache: dir.path().to_path_buf(),
    };
    let http = reqwest::Client::builder().build().expect("client");
    let start = Instant::now();
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "server up in {:.1} s (built-in PostgreSQL, 3 provisioner daemons, reconciliation every 1 s); load average {}",
        start.elapsed().as_secs_f64(),
        loadavg()
    );
    http.post(format!("{base}/api/v2/users/first"))
        .json(&json!({"email": "owner@coder.test", "username": "owner", "password": "SomeSecurePassword!"}))
        .send()
        .await
        .expect("first user");
    let owner = Api {
        http: http.clone(),
        base: base.clone(),
        token: login(&http, &base, "owner@coder.test").await,
    };
    let (status, alice) = owner
        .post(
            "/api/v2/users",
            &json!({"email": "alice@coder.test", "username": "alice", "password": "SomeSecurePassword!",
                    "organization_ids": [Uuid::nil()], "user_status": "active"}),
        )
        .await;
    assert_eq!(status, 201, "create user: {alice}");
    let alice_id = Uuid::parse_str(alice["id"].as_str().expect("user id")).expect("uuid");
    let alice = Api {
        http: http.clone(),
        base: base.clone(),
        token: login(&http, &base, "alice@coder.test").await,
    };
    // Agent tokens and the raw claim come from the database (as an operator's load test would).
    let pg_url = String::from_utf8(
        Command::new(&bin)
            .args(["server", "postgres-builtin-url", "--raw-url"])
            .env("CODER_CACHE_DIRECTORY", dir.path())
            .output()
            .expect("postgres url")
            .stdout,
    )
    .expect("utf8");
    let mut db = PgConnection::connect(pg_url.trim()).await.expect("db");

    let (echo, echo_version) = template(&owner, "claims-echo", ECHO_TF, "echo").await;
    let echo_pool = preset_id(&owner, &echo_version, "pool").await;
    let echo_fresh = preset_id(&owner, &echo_version, "fresh").await;
    let (local, local_version) = template(&owner, "claims-local", LOCAL_TF, "terraform").await;
    let local_pool = preset_id(&owner, &local_version, "pool").await;
    let local_fresh = preset_id(&owner, &local_version, "fresh").await;

    // 1. Claim path.
    wait_prebuilds(&owner, &local, "local pool ready", |l| {
        l.len() == 1 && l.iter().all(running_and_ready)
    })
    .await;
    // Warm-up, as the raw transaction gets one: the server's pooled connections prepare the create
    // path's statements on first use. 10 claim creates, not measured, then the pool is refilled.
    refill_echo_pool(&owner, &mut db, &echo, "echo pool (warm-up)").await;
    for i in 0..WARMUP_CLAIMS {
        let (_, w) = create(&alice, &echo, &echo_pool, &format!("warmup-{i}")).await;
        wait_running(&alice, w["id"].as_str().expect("id")).await;
    }
    let pool = refill_echo_pool(&owner, &mut db, &echo, "echo pool").await;
    let (mut claim_create, mut claim_running, mut claimed) = (Vec::new(), Vec::new(), 0);
    for i in 0..POOL {
        let t = Instant::now();
        let (rt, w) = create(&alice, &echo, &echo_pool, &format!("claim-{i}")).await;
        let id = w["id"].as_str().expect("id").to_string();
        wait_running(&alice, &id).await;
        claim_running.push(micros(t.elapsed()));
        claim_create.push(micros(rt));
        claimed += usize::from(pool.contains(&id));
    }
    println!("claim path, {POOL} sequential creates with the pool preset, ready echo pool of {POOL} (reconciliation paused):");
    println!("  create round trip: {}", summary(&claim_create));
    println!(
        "  create -> claim build running: {}",
        summary(&claim_running)
    );
    println!("  claimed a prebuild: {claimed} of {POOL}");
    println!(
        "  create round trips in order (ms): {}",
        claim_create
            .iter()
            .map(|u| format!("{:.1}", *u as f64 / 1000.0))
            .collect::<Vec<_>>()
            .join(" ")
    );

    // 2. Fresh path.
    let (mut fresh_create, mut fresh_running) = (Vec::new(), Vec::new());
    for i in 0..POOL {
        let t = Instant::now();
        let (rt, w) = create(&alice, &echo, &echo_fresh, &format!("fresh-{i}")).await;
        let id = w["id"].as_str().expect("id").to_string();
        assert!(!pool.contains(&id));
        wait_running(&alice, &id).await;
        fresh_running.push(micros(t.elapsed()));
        fresh_create.push(micros(rt));
    }
    println!("fresh path, {POOL} sequential creates with a preset without a pool (echo runtime):");
    println!("  create round trip: {}", summary(&fresh_create));
    println!("  create -> running: {}", summary(&fresh_running));

    // 3. The claim transaction alone, raw.
    let pool = refill_echo_pool(&owner, &mut db, &echo, "echo pool refill").await;
    let preset = Uuid::parse_str(&echo_pool).expect("uuid");
    // Warm-up (prepares both statements on this connection, as the server's pooled connections have
    // them prepared): a claim rolled back.
    let mut phases = RawPhases::default();
    assert!(raw_claim(&mut db, preset, alice_id, "raw-warmup", false, &mut phases).await);
    let mut phases = RawPhases::default();
    let mut tx = db.begin().await.expect("begin");
    let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, BUFFERS) {CLAIM_SQL}"))
        .bind(preset)
        .bind(Uuid::parse_str(PREBUILDS_USER).expect("uuid"))
        .bind(Utc::now())
        .bind(alice_id)
        .bind("raw-explain")
        .bind(None::<String>)
        .bind(None::<i64>)
        .bind("never")
        .fetch_all(&mut *tx)
        .await
        .expect("explain");
    tx.rollback().await.expect("rollback");
    let (mut raw, mut raw_claimed) = (Vec::new(), 0);
    for i in 0..POOL {
        let t = Instant::now();
        let ok = raw_claim(
            &mut db,
            preset,
            alice_id,
            &format!("raw-{i}"),
            true,
            &mut phases,
        )
        .await;
        raw.push(micros(t.elapsed()));
        raw_claimed += usize::from(ok);
    }
    let left = prebuilds(&owner, &echo)
        .await
        .iter()
        .filter(|w| pool.contains(w["id"].as_str().unwrap_or_default()))
        .count();
    println!("raw claim transaction (sqlx, one connection; BEGIN, claim UPDATE, prebuild_claims INSERT, COMMIT; no claim build), {POOL} sequential on a ready pool of {POOL}:");
    println!("  {}", summary(&raw));
    println!("  claimed: {raw_claimed} of {POOL}; prebuilds of that pool left: {left}");
    for (step, v) in [
        ("BEGIN", &phases.begin),
        ("claim UPDATE", &phases.claim),
        ("claims INSERT", &phases.insert),
        ("COMMIT", &phases.commit),
    ] {
        println!("    {step}: {}", summary(v));
    }
    println!(
        "  claim statement EXPLAIN ANALYZE (pool of {POOL}): {}",
        plan.iter()
            .filter(|l| l.starts_with("Planning Time") || l.starts_with("Execution Time"))
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    if explain {
        for l in &plan {
            println!("    {l}");
        }
    }

    // 4. Where a claim create's time goes: statements PostgreSQL logs during a few more claims.
    refill_echo_pool(&owner, &mut db, &echo, "echo pool refill (statement log)").await;
    let log_path = dir.path().join("postgres/postgres.log");
    sqlx::query("ALTER SYSTEM SET log_min_duration_statement = 0")
        .execute(&mut db)
        .await
        .expect("alter system");
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&mut db)
        .await
        .expect("reload");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut windows = Vec::new();
    for i in 0..DIAGNOSTIC_CLAIMS {
        let (start, end) = (
            format!("bench-mark-start-{i}"),
            format!("bench-mark-end-{i}"),
        );
        sqlx::query(&format!("SELECT '{start}'"))
            .execute(&mut db)
            .await
            .expect("mark");
        let (rt, w) = create(&alice, &echo, &echo_pool, &format!("diag-{i}")).await;
        sqlx::query(&format!("SELECT '{end}'"))
            .execute(&mut db)
            .await
            .expect("mark");
        wait_running(&alice, w["id"].as_str().expect("id")).await;
        windows.push((start, end, rt));
    }
    sqlx::query("ALTER SYSTEM RESET log_min_duration_statement")
        .execute(&mut db)
        .await
        .expect("alter system");
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&mut db)
        .await
        .expect("reload");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    println!("claim creates with statement logging on (log_min_duration_statement = 0; timings include the logging):");
    let mut last = Vec::new();
    for (start, end, rt) in &windows {
        let stmts = logged_between(&log, start, end);
        let executed = stmts
            .iter()
            .filter(|s| s.kind == "execute" || s.kind == "statement")
            .count();
        let db_ms: f64 = stmts.iter().map(|s| s.ms).sum();
        let commit_ms: f64 = stmts
            .iter()
            .filter(|s| s.kind == "statement" && s.text.trim() == "COMMIT")
            .map(|s| s.ms)
            .sum();
        let pids: HashSet<&str> = stmts.iter().map(|s| s.pid.as_str()).collect();
        println!(
            "  round trip {:.2} ms: {executed} statements executed in the window on {} backends, PostgreSQL-reported time {db_ms:.2} ms (parse+bind+execute), of which COMMIT {commit_ms:.2} ms",
            rt.as_secs_f64() * 1000.0,
            pids.len()
        );
        last = stmts;
    }
    println!("  statements of the last window (backend pid, ms, phase, text):");
    for s in &last {
        println!(
            "    [{}] {:>7.3} {:<9} {}",
            s.pid,
            s.ms,
            s.kind,
            s.text.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    // Baseline: an authenticated GET (API key lookup + JSON) round trip.
    let mut me = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        alice.get("/api/v2/users/me").await;
        me.push(micros(t.elapsed()));
    }
    println!(
        "  baseline GET /api/v2/users/me round trip: {}",
        summary(&me)
    );

    // The same comparison interleaved (HTTP claim, raw claim, HTTP claim, ...) on one pool, so both
    // see the same background load on a shared machine.
    let pool = refill_echo_pool(&owner, &mut db, &echo, "echo pool refill (interleaved)").await;
    let (mut inter_http, mut inter_raw, mut inter_claimed) = (Vec::new(), Vec::new(), 0);
    let mut inter_phases = RawPhases::default();
    for i in 0..POOL / 2 {
        let (rt, w) = create(&alice, &echo, &echo_pool, &format!("inter-{i}")).await;
        let id = w["id"].as_str().expect("id").to_string();
        inter_claimed += usize::from(pool.contains(&id));
        inter_http.push(micros(rt));
        wait_running(&alice, &id).await;
        let t = Instant::now();
        let ok = raw_claim(
            &mut db,
            preset,
            alice_id,
            &format!("inter-raw-{i}"),
            true,
            &mut inter_phases,
        )
        .await;
        inter_raw.push(micros(t.elapsed()));
        inter_claimed += usize::from(ok);
    }
    println!(
        "interleaved on one ready pool of {POOL}: {} HTTP claim creates alternating with {} raw claim transactions ({inter_claimed} of {POOL} claimed):",
        POOL / 2,
        POOL / 2
    );
    println!("  HTTP claim create: {}", summary(&inter_http));
    println!("  raw claim tx:      {}", summary(&inter_raw));
    println!(
        "  ratio p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
        percentile(&inter_http, 0.5) / percentile(&inter_raw, 0.5),
        percentile(&inter_http, 0.9) / percentile(&inter_raw, 0.9),
        percentile(&inter_http, 0.99) / percentile(&inter_raw, 0.99),
        percentile(&inter_http, 1.0) / percentile(&inter_raw, 1.0)
    );

    // 5. Time to ready on the local runtime, startup script `sleep 5`.
    owner.pause(false).await;
    wait_prebuilds(&owner, &echo, "echo pool refilled (idle reconciler)", |l| {
        l.len() == POOL && l.iter().all(|w| w["latest_build"]["status"] == "running")
    })
    .await;
    let (mut claim_ready, mut fresh_ready) = (Vec::new(), Vec::new());
    for i in 0..READY_RUNS {
        let pool = wait_prebuilds(&owner, &local, "local prebuild ready", |l| {
            l.len() == 1 && l.iter().all(running_and_ready)
        })
        .await;
        let t = Instant::now();
        let (_, w) = create(&alice, &local, &local_pool, &format!("local-claim-{i}")).await;
        let id = w["id"].as_str().expect("id").to_string();
        assert!(ids(&pool).contains(&id), "local create {i} was not a claim");
        wait_ready(&alice, &id).await;
        claim_ready.push(t.elapsed());
    }
    for i in 0..READY_RUNS {
        let t = Instant::now();
        let (_, w) = create(&alice, &local, &local_fresh, &format!("local-fresh-{i}")).await;
        let id = w["id"].as_str().expect("id").to_string();
        wait_ready(&alice, &id).await;
        fresh_ready.push(t.elapsed());
    }
    let fmt = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("time to ready, local runtime, startup_script = \"sleep 5\" (create until build running and agent ready, polled every 20 ms):");
    println!(
        "  claim: {} ms (median {:.0} ms)",
        fmt(&claim_ready),
        median_ms(&claim_ready)
    );
    println!(
        "  fresh: {} ms (median {:.0} ms)",
        fmt(&fresh_ready),
        median_ms(&fresh_ready)
    );

    let claim_p99 = percentile(&claim_create, 0.99);
    let raw_p99 = percentile(&raw, 0.99);
    let (cr, fr) = (median_ms(&claim_ready), median_ms(&fresh_ready));
    println!();
    println!("load average at the end: {}", loadavg());
    println!(
        "SUMMARY: claim create p50 {:.1} ms p99 {claim_p99:.1} ms (n={POOL}, {claimed} claimed); fresh create p50 {:.1} ms p99 {:.1} ms (create->running p50 {:.1} ms); raw claim tx p50 {:.2} ms p99 {raw_p99:.2} ms; claim p99 / raw p99 = {:.2} (target <= 2; p50 ratio {:.2}); time to ready: claim {cr:.0} ms vs fresh (sleep 5) {fr:.0} ms = {:.1}x (target >= 10x)",
        percentile(&claim_create, 0.5),
        percentile(&fresh_create, 0.5),
        percentile(&fresh_create, 0.99),
        percentile(&fresh_running, 0.5),
        percentile(&raw, 0.5),
        claim_p99 / raw_p99,
        percentile(&claim_create, 0.5) / percentile(&raw, 0.5),
        fr / cr,
    );
    db.close().await.expect("close db");
}
