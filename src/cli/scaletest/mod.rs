//! `coder scaletest`: an in-repo load generator, after Coder's `coder exp scaletest`.
//!
//! - `workspaces` creates N workspaces from its own echo template, then drives N fake agents over the
//!   agent API at Coder's reference rate (2 metadata items and a stats heartbeat per interval);
//! - `prebuilds` fills N templates × M presets × K prebuilds, claims from the pools, then rolls every
//!   template to a new version and times the turnover.
//!
//! Both run as an ordinary client (the stored session, or `CODER_URL` / `CODER_SESSION_TOKEN`). A client
//! cannot read agent tokens through the API, so the scaletest templates publish each agent's token to the
//! workspace owner in a `coder_metadata` item (`agent_token`) — which is why they must never be used for
//! real workspaces. Everything they create is named `scaletest-<random>`.

pub mod prebuilds;
pub mod workspaces;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{segment, status_of, ApiClient, ClientOpts};

/// Every request of the load generator gives up after this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
#[command(
    about = "Run a load test against a deployment (creates scaletest-* templates and workspaces)",
    long_about = "Run a load test against a deployment, like Coder's `coder exp scaletest`.\n\n\
The templates it creates publish each agent's token to the workspace owner (so that this client can \
play the agents): never use them for real workspaces. Requires an owner or template admin."
)]
pub struct ScaletestArgs {
    #[command(subcommand)]
    pub command: ScaletestCommand,
}

#[derive(Debug, Subcommand)]
pub enum ScaletestCommand {
    /// Create N echo workspaces, then drive N fake agents at Coder's reference rate.
    Workspaces(workspaces::WorkspacesArgs),
    /// Fill N templates × M presets × K prebuilds, claim from the pools, roll out a new version.
    Prebuilds(prebuilds::PrebuildsArgs),
}

/// Options both modes share.
#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    /// Prometheus endpoint of the server (`coder server --prometheus-enable`): report its RSS and CPU.
    #[arg(long, value_name = "URL")]
    pub prometheus_url: Option<String>,

    /// Remove what the run created when it ends.
    #[arg(long)]
    pub cleanup: bool,

    /// Print one JSON object with every figure instead of the text report.
    #[arg(long)]
    pub json: bool,

    /// Organization (name or ID) (default: your default organization).
    #[arg(short = 'O', long, env = "CODER_ORGANIZATION")]
    pub org: Option<String>,

    #[command(flatten)]
    pub client: ClientOpts,
}

/// Runs a scaletest on its own multi-threaded runtime (the load needs more than one thread).
pub fn run(args: ScaletestArgs) -> anyhow::Result<()> {
    raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match args.command {
            ScaletestCommand::Workspaces(a) => workspaces::run(a).await,
            ScaletestCommand::Prebuilds(a) => prebuilds::run(a).await,
        }
    })
}

/// Thousands of agents may each hold a connection when the server is slow: lift the soft limit on open
/// files to the hard one (best effort).
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a zero-initialised, then kernel-filled, rlimit.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

// ---- connection --------------------------------------------------------------------------------------

/// The deployment, the session and the HTTP clients a run uses.
#[derive(Clone)]
pub struct Ctx {
    /// Control-plane calls with Coder's error envelope decoded.
    pub api: ApiClient,
    /// Load calls: a large connection pool, [`REQUEST_TIMEOUT`] per request.
    pub http: reqwest::Client,
    /// Event streams: no overall timeout (callers bound them).
    pub stream: reqwest::Client,
    pub base: String,
    pub token: String,
    pub org_id: String,
    pub username: String,
    /// Random part of every name this run creates.
    pub suffix: String,
}

impl Ctx {
    pub async fn connect(common: &CommonArgs, pool: usize) -> anyhow::Result<Self> {
        let api = common.client.authenticated()?;
        let token = api.token.clone().unwrap_or_default();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(pool.max(16))
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .build()?;
        let stream = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .build()?;
        let me = api.get("/users/me").await.context("check the session")?;
        let username = me["username"].as_str().unwrap_or_default().to_string();
        let org_id = organization(&api, common.org.as_deref()).await?;
        Ok(Self {
            base: api.base.clone(),
            api,
            http,
            stream,
            token,
            org_id,
            username,
            suffix: random_suffix(),
        })
    }
}

fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..6)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The organization from `--org`, else the caller's default (or only) one: its id.
async fn organization(api: &ApiClient, org: Option<&str>) -> anyhow::Result<String> {
    if let Some(org) = org.filter(|o| !o.is_empty()) {
        let o = api
            .get(&format!("/organizations/{}", segment(org)))
            .await
            .with_context(|| format!("organization {org:?}"))?;
        return Ok(o["id"].as_str().unwrap_or_default().to_string());
    }
    let orgs = api.get("/users/me/organizations").await?;
    let orgs = orgs.as_array().cloned().unwrap_or_default();
    let pick = orgs
        .iter()
        .find(|o| o["is_default"] == true)
        .or(if orgs.len() == 1 { orgs.first() } else { None })
        .context("choose an organization with --org (none is the default)")?;
    Ok(pick["id"].as_str().unwrap_or_default().to_string())
}

/// Adds a hint for the usual cause of a 403/404 on template endpoints.
fn permission_hint(err: anyhow::Error) -> anyhow::Error {
    match status_of(&err) {
        Some(403) | Some(404) => {
            err.context("scaletest needs an owner or template admin (it creates templates)")
        }
        _ => err,
    }
}

// ---- templates ---------------------------------------------------------------------------------------

/// The scaletest template: one agent with two metadata items, a box depending on it, and the agent's
/// token published on the box as `coder_metadata` item `agent_token` (visible to the workspace owner).
/// With `pools`, a `slot` parameter and `presets` presets `p1`..`pM`, each a pool of `instances`.
pub fn template_tf(
    metadata_interval: Duration,
    pools: Option<(usize, usize)>,
    revision: u32,
) -> String {
    let interval = metadata_interval.as_secs().max(1);
    let mut tf = format!(
        r#"# coder scaletest template, revision {revision}.
# WARNING: publishes the agent token to the workspace owner. Load testing only.
resource "coder_agent" "main" {{
  os   = "linux"
  arch = "amd64"
  metadata {{
    key          = "load"
    display_name = "Load"
    script       = "true"
    interval     = {interval}
    timeout      = 1
  }}
  metadata {{
    key          = "disk"
    display_name = "Disk"
    script       = "true"
    interval     = {interval}
    timeout      = 1
  }}
}}

resource "null_resource" "box" {{
  depends_on = [coder_agent.main]
}}

resource "coder_metadata" "token" {{
  resource_id = null_resource.box.id
  item {{
    key   = "agent_token"
    value = coder_agent.main.token
  }}
}}
"#
    );
    if let Some((presets, instances)) = pools {
        tf.push_str(
            r#"
data "coder_parameter" "slot" {
  name    = "slot"
  type    = "string"
  default = "p0"
  mutable = true
}
"#,
        );
        for p in 1..=presets {
            let prebuilds = if instances > 0 {
                format!("\n  prebuilds {{\n    instances = {instances}\n  }}")
            } else {
                String::new()
            };
            tf.push_str(&format!(
                r#"
data "coder_workspace_preset" "p{p}" {{
  name = "p{p}"
  parameters = {{
    slot = "p{p}"
  }}{prebuilds}
}}
"#
            ));
        }
    }
    tf
}

/// A tar holding one `main.tf`.
pub fn tar_of_main_tf(content: &str) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, "main.tf", content.as_bytes())?;
    Ok(builder.into_inner()?)
}

/// Uploads a tar, creates an echo version from it (for `template_id` when given) and waits for its
/// import job: the version id.
pub async fn import_version(
    ctx: &Ctx,
    tf: &str,
    template_id: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<String> {
    let tar = tar_of_main_tf(tf)?;
    let resp = ctx
        .http
        .post(format!("{}/api/v2/files", ctx.base))
        .header("Coder-Session-Token", &ctx.token)
        .header("Content-Type", "application/x-tar")
        .body(tar)
        .send()
        .await
        .context("upload the template")?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(
        status.is_success(),
        "upload the template: {status}: {}",
        body["message"].as_str().unwrap_or_default()
    );
    let file_id = body["hash"].as_str().unwrap_or_default().to_string();
    let mut req =
        json!({"storage_method": "file", "file_id": file_id, "provisioner": "echo", "tags": {}});
    if let Some(t) = template_id {
        req["template_id"] = json!(t);
    }
    let version = ctx
        .api
        .post(
            &format!("/organizations/{}/templateversions", ctx.org_id),
            &req,
        )
        .await
        .map_err(permission_hint)
        .context("create a template version")?;
    let id = version["id"].as_str().unwrap_or_default().to_string();
    let deadline = Instant::now() + timeout;
    loop {
        let v = ctx.api.get(&format!("/templateversions/{id}")).await?;
        match v["job"]["status"].as_str().unwrap_or_default() {
            "succeeded" => return Ok(id),
            "pending" | "running" => {}
            other => anyhow::bail!(
                "template import {other}: {}",
                v["job"]["error"].as_str().unwrap_or_default()
            ),
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "template import did not finish within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates a template from an imported version: its id.
pub async fn create_template(ctx: &Ctx, name: &str, version_id: &str) -> anyhow::Result<String> {
    let t = ctx
        .api
        .post(
            &format!("/organizations/{}/templates", ctx.org_id),
            &json!({"name": name, "template_version_id": version_id}),
        )
        .await
        .map_err(permission_hint)
        .with_context(|| format!("create template {name}"))?;
    Ok(t["id"].as_str().unwrap_or_default().to_string())
}

/// Deletes a template (it must have no workspaces left).
pub async fn delete_template(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    ctx.api
        .send(Method::DELETE, &format!("/templates/{id}"), None::<&()>)
        .await
        .map(|_| ())
}

// ---- workspaces ----------------------------------------------------------------------------------------

/// The agent tokens a scaletest workspace publishes (`agent_token` resource metadata of its latest build).
pub fn agent_tokens(workspace: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for r in workspace["latest_build"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for m in r["metadata"].as_array().into_iter().flatten() {
            if m["key"] == "agent_token" {
                if let Some(v) = m["value"].as_str().filter(|v| !v.is_empty()) {
                    out.push(v.to_string());
                }
            }
        }
    }
    out
}

fn build_status(workspace: &Value) -> &str {
    workspace["latest_build"]["status"]
        .as_str()
        .unwrap_or_default()
}

/// Waits until a workspace's latest build is `running` (following its watch stream, which costs the
/// server nothing between changes; polling if the stream breaks): the workspace JSON.
pub async fn wait_running(ctx: &Ctx, id: &str, deadline: Instant) -> anyhow::Result<Value> {
    match watch_until_running(ctx, id, deadline).await {
        Ok(Some(ws)) => return Ok(ws),
        Ok(None) => {}
        Err(e) if e.is::<BuildFailed>() => return Err(e),
        Err(_) => {}
    }
    // The stream ended or broke: poll.
    loop {
        let ws = ctx.api.get(&format!("/workspaces/{id}")).await;
        if let Ok(ws) = ws {
            check_build(&ws)?;
            if build_status(&ws) == "running" {
                return Ok(ws);
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "workspace {id} not running in time"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[derive(Debug)]
struct BuildFailed(String);

impl std::fmt::Display for BuildFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildFailed {}

fn check_build(ws: &Value) -> anyhow::Result<()> {
    match build_status(ws) {
        s @ ("failed" | "canceled" | "deleted") => Err(BuildFailed(format!(
            "workspace {} build {s}: {}",
            ws["name"].as_str().unwrap_or_default(),
            ws["latest_build"]["job"]["error"]
                .as_str()
                .unwrap_or_default()
        ))
        .into()),
        _ => Ok(()),
    }
}

/// `Ok(None)` when the stream ended before `running`.
async fn watch_until_running(
    ctx: &Ctx,
    id: &str,
    deadline: Instant,
) -> anyhow::Result<Option<Value>> {
    let mut resp = tokio::time::timeout_at(
        deadline.into(),
        ctx.stream
            .get(format!("{}/api/v2/workspaces/{id}/watch", ctx.base))
            .header("Coder-Session-Token", &ctx.token)
            .send(),
    )
    .await
    .context("watch: timed out")??;
    anyhow::ensure!(resp.status().is_success(), "watch: {}", resp.status());
    let mut buf = String::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline.into(), resp.chunk())
            .await
            .context("workspace not running in time")??;
        let Some(chunk) = chunk else {
            return Ok(None);
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            for line in frame.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    let ws: Value = serde_json::from_str(data.trim()).context("watch event")?;
                    check_build(&ws)?;
                    if build_status(&ws) == "running" {
                        return Ok(Some(ws));
                    }
                }
            }
        }
    }
}

/// Every workspace matching a search query (paged).
pub async fn list_workspaces(ctx: &Ctx, q: &str) -> anyhow::Result<Vec<Value>> {
    const PAGE: usize = 500;
    let q = segment(q);
    let mut out = Vec::new();
    loop {
        let page = ctx
            .api
            .get(&format!(
                "/workspaces?q={q}&limit={PAGE}&offset={}",
                out.len()
            ))
            .await?;
        let items = page["workspaces"].as_array().cloned().unwrap_or_default();
        let total = page["count"].as_u64().unwrap_or(0) as usize;
        let n = items.len();
        out.extend(items);
        if n < PAGE || out.len() >= total {
            return Ok(out);
        }
    }
}

/// Starts delete builds for workspaces, `concurrency` at a time: the failures (id, error).
pub async fn delete_workspaces(
    ctx: &Ctx,
    ids: &[String],
    concurrency: usize,
) -> Vec<(String, String)> {
    use futures::StreamExt;
    futures::stream::iter(ids.iter().cloned())
        .map(|id| async move {
            let r = ctx
                .api
                .post(
                    &format!("/workspaces/{id}/builds"),
                    &json!({"transition": "delete"}),
                )
                .await;
            (id, r)
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|(id, r)| async move { r.err().map(|e| (id, format!("{e:#}"))) })
        .collect()
        .await
}

/// Waits until a template has no workspaces left (deleted ones do not count).
pub async fn wait_template_empty(
    ctx: &Ctx,
    template: &str,
    deadline: Instant,
) -> anyhow::Result<()> {
    let q = segment(&format!("template:{template}"));
    loop {
        let page = ctx.api.get(&format!("/workspaces?q={q}&limit=1")).await?;
        let count = page["count"].as_u64().unwrap_or(0);
        if count == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "template {template} still has {count} workspaces"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---- agent API -----------------------------------------------------------------------------------------

/// The agent API calls a fake agent makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AgentCall {
    Lifecycle,
    Metadata,
    Stats,
}

impl AgentCall {
    pub fn path(self) -> &'static str {
        match self {
            AgentCall::Lifecycle => "report-lifecycle",
            AgentCall::Metadata => "metadata",
            AgentCall::Stats => "report-stats",
        }
    }
}

/// One agent API call: its latency (until the whole answer was read) and outcome.
pub async fn agent_call(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    call: AgentCall,
    body: &Value,
) -> (Duration, Result<(), String>) {
    let start = Instant::now();
    let result = async {
        let resp = http
            .post(format!("{base}/api/v2/workspaceagents/me/{}", call.path()))
            .header("Coder-Session-Token", token)
            .json(body)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| transport_error(&e))?;
        if status.is_success() {
            Ok(())
        } else {
            let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            Err(format!(
                "{} {}: {}",
                call.path(),
                status.as_u16(),
                msg["message"].as_str().unwrap_or_default()
            ))
        }
    }
    .await;
    (start.elapsed(), result)
}

fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "transport: timeout".into()
    } else if e.is_connect() {
        "transport: connect".into()
    } else {
        format!("transport: {e}")
    }
}

pub fn lifecycle_body(state: &str) -> Value {
    json!({"state": state, "changed_at": chrono::Utc::now()})
}

/// Two metadata items, as the scaletest template declares them.
pub fn metadata_body() -> Value {
    let now = chrono::Utc::now();
    json!({"metadata": [
        {"key": "load", "collected_at": now, "age": 0, "value": "0.42", "error": ""},
        {"key": "disk", "collected_at": now, "age": 0, "value": "12G/40G", "error": ""},
    ]})
}

/// Coder's `agentsdk.Stats` with nothing going on: a heartbeat.
pub fn stats_body() -> Value {
    json!({
        "connections_by_proto": {},
        "connection_count": 0,
        "connection_median_latency_ms": 0,
        "rx_packets": 0, "rx_bytes": 0, "tx_packets": 0, "tx_bytes": 0,
        "session_count_vscode": 0, "session_count_jetbrains": 0,
        "session_count_reconnecting_pty": 0, "session_count_ssh": 0,
        "metrics": [],
    })
}

// ---- figures -------------------------------------------------------------------------------------------

/// Latencies (of calls that got an answer) and errors of one kind of call.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    pub micros: Vec<u64>,
    pub requests: u64,
    pub errors: u64,
    /// Error message → count.
    pub error_kinds: BTreeMap<String, u64>,
}

impl Samples {
    pub fn record(&mut self, elapsed: Duration, outcome: Result<(), String>) {
        self.requests += 1;
        match outcome {
            Ok(()) => self.micros.push(elapsed.as_micros() as u64),
            Err(e) => {
                self.errors += 1;
                if !e.starts_with("transport") {
                    self.micros.push(elapsed.as_micros() as u64);
                }
                *self.error_kinds.entry(e).or_default() += 1;
            }
        }
    }

    /// Records an error that is not a timed request (e.g. a build that failed).
    pub fn error(&mut self, e: String) {
        self.errors += 1;
        *self.error_kinds.entry(e).or_default() += 1;
    }

    pub fn merge(&mut self, other: Samples) {
        self.micros.extend(other.micros);
        self.requests += other.requests;
        self.errors += other.errors;
        for (k, v) in other.error_kinds {
            *self.error_kinds.entry(k).or_default() += v;
        }
    }

    pub fn latency(&self) -> Latency {
        Latency::of(&self.micros)
    }

    /// The most frequent error messages, for the report.
    pub fn top_errors(&self, n: usize) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .error_kinds
            .iter()
            .map(|(k, c)| (k.clone(), *c))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    pub fn errors_json(&self) -> Value {
        Value::Object(
            self.top_errors(10)
                .into_iter()
                .map(|(k, c)| (k, json!(c)))
                .collect(),
        )
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Latency {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(micros: &[u64]) -> Self {
        let mut sorted = micros.to_vec();
        sorted.sort_unstable();
        Self {
            count: sorted.len(),
            p50: percentile(&sorted, 0.50),
            p90: percentile(&sorted, 0.90),
            p95: percentile(&sorted, 0.95),
            p99: percentile(&sorted, 0.99),
            max: sorted.last().map(|m| *m as f64 / 1000.0).unwrap_or(0.0),
        }
    }

    pub fn json(&self) -> Value {
        json!({"count": self.count, "p50": round2(self.p50), "p90": round2(self.p90),
               "p95": round2(self.p95), "p99": round2(self.p99), "max": round2(self.max)})
    }

    /// `p50 1.2 ms, p95 3.4 ms, p99 5.6 ms`.
    pub fn text(&self, with_p90: bool) -> String {
        if self.count == 0 {
            return "no samples".into();
        }
        let mut s = format!("p50 {}", ms(self.p50));
        if with_p90 {
            s.push_str(&format!(", p90 {}", ms(self.p90)));
        }
        s.push_str(&format!(
            ", p95 {}, p99 {}, max {}",
            ms(self.p95),
            ms(self.p99),
            ms(self.max)
        ));
        s
    }
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0} ms")
    } else {
        format!("{x:.1} ms")
    }
}

pub fn per_second(n: u64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

// ---- server process figures (Prometheus) ---------------------------------------------------------------

/// The server's process figures at one instant.
#[derive(Debug, Clone, Copy)]
pub struct ProcessSample {
    pub at: Instant,
    pub rss_bytes: f64,
    pub cpu_seconds: f64,
}

/// Reads `process_resident_memory_bytes` and `process_cpu_seconds_total` from a Prometheus text page.
pub fn parse_process_metrics(text: &str) -> Option<(f64, f64)> {
    let value = |name: &str| {
        text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next() == Some(name))
                .then(|| parts.next().and_then(|v| v.parse::<f64>().ok()))
                .flatten()
        })
    };
    Some((
        value("process_resident_memory_bytes")?,
        value("process_cpu_seconds_total")?,
    ))
}

/// The shortest phase whose average CPU use is reported.
pub const MIN_CPU_WINDOW: Duration = Duration::from_secs(10);

/// Samples the server's `/metrics` every second in the background.
#[derive(Clone)]
pub struct Monitor {
    url: String,
    http: reqwest::Client,
    samples: Arc<Mutex<Vec<ProcessSample>>>,
}

impl Monitor {
    /// Checks the endpoint once and starts sampling (stops with the runtime).
    pub async fn start(url: &str) -> anyhow::Result<Self> {
        let m = Self {
            url: url.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
            samples: Arc::default(),
        };
        m.mark()
            .await
            .with_context(|| format!("--prometheus-url {url}: no process metrics"))?;
        let bg = m.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = bg.mark().await;
            }
        });
        Ok(m)
    }

    /// Takes a sample now.
    pub async fn mark(&self) -> anyhow::Result<ProcessSample> {
        let text = self
            .http
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let (rss_bytes, cpu_seconds) =
            parse_process_metrics(&text).context("no process_* series on the page")?;
        let s = ProcessSample {
            at: Instant::now(),
            rss_bytes,
            cpu_seconds,
        };
        self.samples.lock().unwrap().push(s);
        Ok(s)
    }

    /// Figures between two instants: CPU cores used on average, RSS at the end and at its peak.
    pub fn phase(&self, from: Instant, to: Instant) -> Value {
        let samples = self.samples.lock().unwrap();
        let inside: Vec<&ProcessSample> = samples
            .iter()
            .filter(|s| s.at >= from && s.at <= to)
            .collect();
        let (Some(first), Some(last)) = (inside.first(), inside.last()) else {
            return Value::Null;
        };
        let span = last.at.duration_since(first.at).as_secs_f64();
        // `process_cpu_seconds_total` may count whole seconds only (it does on this server): below
        // MIN_CPU_WINDOW the average would mostly be rounding.
        let cores = (span >= MIN_CPU_WINDOW.as_secs_f64())
            .then(|| round2((last.cpu_seconds - first.cpu_seconds) / span));
        let peak = inside.iter().map(|s| s.rss_bytes).fold(0.0, f64::max);
        json!({
            "cpu_cores": cores,
            "cpu_seconds": round2(last.cpu_seconds - first.cpu_seconds),
            "seconds": round2(span),
            "rss_mib_end": round2(last.rss_bytes / 1048576.0),
            "rss_mib_peak": round2(peak / 1048576.0),
        })
    }
}

/// `RSS 18 MiB (peak 20 MiB), CPU 0.35 cores` for a phase's figures.
pub fn server_text(v: &Value) -> String {
    if v.is_null() {
        return "no samples".into();
    }
    let cpu = match v["cpu_cores"].as_f64() {
        Some(c) => format!("CPU {c:.2} cores"),
        None => format!(
            "CPU {} s (phase too short for an average)",
            v["cpu_seconds"]
        ),
    };
    format!(
        "RSS {:.0} MiB (peak {:.0} MiB), {cpu}",
        v["rss_mib_end"].as_f64().unwrap_or(0.0),
        v["rss_mib_peak"].as_f64().unwrap_or(0.0),
    )
}

/// Prints `done/total` on stderr every 5 s while a phase runs.
pub fn progress(
    label: &'static str,
    done: Arc<std::sync::atomic::AtomicUsize>,
    total: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            eprintln!(
                "  {label}: {}/{total} after {:.0} s",
                done.load(std::sync::atomic::Ordering::Relaxed),
                start.elapsed().as_secs_f64()
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_resource_metadata() {
        let ws = json!({"latest_build": {"resources": [
            {"name": "main", "agents": [{"id": "a"}]},
            {"name": "box", "metadata": [{"key": "other", "value": "x"},
                                         {"key": "agent_token", "value": "tok-1", "sensitive": false}]},
        ]}});
        assert_eq!(agent_tokens(&ws), vec!["tok-1".to_string()]);
        assert!(agent_tokens(&json!({})).is_empty());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let micros: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let l = Latency::of(&micros);
        assert_eq!(
            (l.p50, l.p90, l.p95, l.p99, l.max),
            (50.0, 90.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(Latency::of(&[]).count, 0);
        assert_eq!(percentile(&[7000], 0.99), 7.0);
    }

    #[test]
    fn process_metrics_parse() {
        let page = "# HELP process_cpu_seconds_total x\n# TYPE process_cpu_seconds_total counter\n\
                    process_cpu_seconds_total 12.5\nprocess_resident_memory_bytes 1.8874368e+07\n";
        assert_eq!(parse_process_metrics(page), Some((18874368.0, 12.5)));
        assert_eq!(parse_process_metrics("foo 1\n"), None);
    }

    #[test]
    fn templates_have_the_token_item_and_presets() {
        let tf = template_tf(Duration::from_secs(10), None, 1);
        assert!(tf.contains("value = coder_agent.main.token"));
        assert!(!tf.contains("coder_workspace_preset"));
        let tf = template_tf(Duration::from_secs(1), Some((2, 3)), 2);
        assert!(tf.contains(r#"data "coder_workspace_preset" "p2""#));
        assert!(tf.contains("instances = 3"));
        assert!(tf.contains("revision 2"));
        let none = template_tf(Duration::from_secs(1), Some((2, 0)), 3);
        assert!(!none.contains("prebuilds {"));
    }

    #[test]
    fn samples_count_errors_by_kind() {
        let mut s = Samples::default();
        s.record(Duration::from_millis(2), Ok(()));
        s.record(Duration::from_millis(3), Err("metadata 500: boom".into()));
        s.record(Duration::from_secs(30), Err("transport: timeout".into()));
        assert_eq!((s.requests, s.errors, s.micros.len()), (3, 2, 2));
        let mut t = Samples::default();
        t.record(Duration::from_millis(1), Err("metadata 500: boom".into()));
        s.merge(t);
        assert_eq!(s.top_errors(1), vec![("metadata 500: boom".to_string(), 2)]);
    }
}
