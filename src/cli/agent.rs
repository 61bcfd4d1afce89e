//! `coder agent`: the workspace agent. It authenticates with its token, fetches its manifest, runs the
//! startup script with `sh` (shipping its output as logs), reports lifecycle `starting → ready` (or
//! `start_error` / `start_timeout`), runs metadata scripts on their intervals, and heartbeats until it is
//! told to stop (SIGTERM/SIGINT), when it reports `shutting_down → off`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::agents::api::{AgentScript, Manifest, MetadataDescription};

#[derive(Debug, Args, Clone)]
#[command(about = "Start a workspace agent", next_line_help = true)]
pub struct AgentArgs {
    /// URL of the Coder server.
    #[arg(long, env = "CODER_AGENT_URL")]
    pub url: String,

    /// The agent's token, minted by the build that created it.
    #[arg(long, env = "CODER_AGENT_TOKEN", hide_env_values = true)]
    pub token: String,
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}/api/v2/workspaceagents/me/{path}", self.base)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<reqwest::Response> {
        let resp = self
            .http
            .request(method, self.url(path))
            .header("Coder-Session-Token", &self.token)
            .json(&body)
            .send()
            .await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            anyhow::bail!("{path}: {status}: {text}");
        }
        Ok(resp)
    }

    async fn lifecycle(&self, state: &str) {
        let body = json!({"state": state, "changed_at": Utc::now()});
        if let Err(err) = self
            .send(reqwest::Method::POST, "report-lifecycle", body)
            .await
        {
            eprintln!("report lifecycle {state}: {err:#}");
        }
    }
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        base: args.url.trim_end_matches('/').to_string(),
        token: args.token,
    };
    let manifest = fetch_manifest(&api).await?;
    eprintln!(
        "agent {} of workspace {} (owner {}) started",
        manifest.agent_name, manifest.workspace_name, manifest.owner_name
    );
    let directory = expand_directory(&manifest.directory);
    let _ = std::fs::create_dir_all(&directory);
    let _ = api
        .send(
            reqwest::Method::POST,
            "startup",
            json!({"version": crate::app::VERSION, "expanded_directory": directory, "subsystems": []}),
        )
        .await;

    let heartbeat = tokio::spawn(heartbeat(api.clone()));
    let metadata: Vec<_> = manifest
        .metadata
        .iter()
        .cloned()
        .map(|m| {
            tokio::spawn(collect_metadata(
                api.clone(),
                m,
                directory.clone(),
                manifest.environment_variables.clone(),
            ))
        })
        .collect();

    api.lifecycle("starting").await;
    let mut outcome = "ready";
    for script in manifest.scripts.iter().filter(|s| s.run_on_start) {
        match run_script(&api, script, &directory, &manifest.environment_variables).await {
            ScriptOutcome::Ok => {}
            ScriptOutcome::Failed => outcome = "start_error",
            ScriptOutcome::TimedOut => {
                outcome = "start_timeout";
                break;
            }
        }
    }
    api.lifecycle(outcome).await;
    // A prebuild learns when a user claims it; it keeps running (no second startup) under its new owner.
    let claim_watch =
        (manifest.owner_name == "prebuilds").then(|| tokio::spawn(wait_for_claim(api.clone())));

    // Run until told to stop, or until the server no longer knows this agent (a newer build replaced it).
    let mut heartbeat = heartbeat;
    let revoked = tokio::select! {
        _ = crate::server::shutdown_signal() => false,
        _ = &mut heartbeat => true,
    };
    if let Some(task) = claim_watch {
        task.abort();
    }
    if revoked {
        eprintln!("the server no longer accepts this agent's token; exiting");
        for task in metadata {
            task.abort();
        }
        return Ok(());
    }
    api.lifecycle("shutting_down").await;
    heartbeat.abort();
    for task in metadata {
        task.abort();
    }
    api.lifecycle("off").await;
    Ok(())
}

/// Waits on `GET /workspaceagents/me/reinit` (an SSE stream) for the `prebuild_claimed` event, then
/// re-reads the manifest: the workspace now has its claimant's name and owner.
async fn wait_for_claim(api: Api) {
    loop {
        let resp = api
            .http
            .get(api.url("reinit"))
            .header("Coder-Session-Token", &api.token)
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await;
        let mut resp = match resp {
            Ok(r) if r.status().is_success() => r,
            Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => return,
            _ => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let mut seen = String::new();
        let mut claimed = false;
        while let Ok(Some(chunk)) = resp.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: prebuild_claimed") {
                claimed = true;
                break;
            }
            // Keep only the tail: pings accumulate over hours.
            if seen.len() > 4096 {
                seen.drain(..seen.len() - 64);
            }
        }
        if claimed {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    match fetch_manifest(&api).await {
        Ok(m) => eprintln!(
            "prebuild claimed: agent {} now serves workspace {} of {}",
            m.agent_name, m.workspace_name, m.owner_name
        ),
        Err(err) => eprintln!("prebuild claimed, but the manifest could not be read: {err:#}"),
    }
}

/// The manifest, retried while the server is unreachable or the build has not committed yet.
async fn fetch_manifest(api: &Api) -> anyhow::Result<Manifest> {
    let mut delay = Duration::from_millis(100);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = async {
            let resp = api
                .http
                .get(api.url("manifest"))
                .header("Coder-Session-Token", &api.token)
                .send()
                .await?;
            let status = resp.status();
            if !status.is_success() {
                anyhow::bail!("{status}: {}", resp.text().await.unwrap_or_default());
            }
            Ok(resp.json::<Manifest>().await?)
        }
        .await;
        match result {
            Ok(m) => return Ok(m),
            Err(err) if attempts >= 120 => return Err(err).context("fetch manifest"),
            Err(err) => {
                if attempts % 10 == 1 {
                    eprintln!("fetch manifest (retrying): {err:#}");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn expand_directory(dir: &str) -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/".into());
    if dir.is_empty() || dir == "~" || dir == "$HOME" {
        return PathBuf::from(home);
    }
    for prefix in ["~/", "$HOME/"] {
        if let Some(rest) = dir.strip_prefix(prefix) {
            return PathBuf::from(home).join(rest);
        }
    }
    PathBuf::from(dir)
}

fn shell(script: &str, dir: &PathBuf, env: &BTreeMap<String, String>) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .current_dir(dir)
        .envs(env)
        .env_remove("CODER_AGENT_TOKEN")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

enum ScriptOutcome {
    Ok,
    Failed,
    TimedOut,
}

/// Runs one script, shipping each output line to the server as a log under the script's source.
async fn run_script(
    api: &Api,
    script: &AgentScript,
    dir: &PathBuf,
    env: &BTreeMap<String, String>,
) -> ScriptOutcome {
    let _ = api
        .send(
            reqwest::Method::POST,
            "log-source",
            json!({"id": script.log_source_id, "display_name": script.display_name, "icon": ""}),
        )
        .await;
    let mut cmd = shell(&script.script, dir, env);
    // Its own process group, so a timeout ends the whole script (children holding its pipes too).
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(err) => {
            ship_logs(
                api,
                script,
                vec![(format!("failed to start script: {err}"), "error")],
            )
            .await;
            return ScriptOutcome::Failed;
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, &'static str)>();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send((line, "info"));
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send((line, "error"));
            }
        });
    }
    drop(tx);
    let shipper = {
        let api = api.clone();
        let script = script.clone();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            loop {
                tokio::select! {
                    line = rx.recv() => match line {
                        Some(l) => batch.push(l),
                        None => break,
                    },
                    _ = tokio::time::sleep(Duration::from_millis(250)), if !batch.is_empty() => {
                        ship_logs(&api, &script, std::mem::take(&mut batch)).await;
                    }
                }
            }
            ship_logs(&api, &script, batch).await;
        })
    };
    let timeout = (script.timeout > 0).then(|| Duration::from_nanos(script.timeout as u64));
    let status = match timeout {
        Some(t) => match tokio::time::timeout(t, child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                if let Some(pid) = child.id() {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.kill().await;
                let _ = tokio::time::timeout(Duration::from_secs(5), shipper).await;
                return ScriptOutcome::TimedOut;
            }
        },
        None => child.wait().await,
    };
    let _ = shipper.await;
    match status {
        Ok(s) if s.success() => ScriptOutcome::Ok,
        _ => ScriptOutcome::Failed,
    }
}

async fn ship_logs(api: &Api, script: &AgentScript, lines: Vec<(String, &'static str)>) {
    if lines.is_empty() {
        return;
    }
    let now = Utc::now();
    let logs: Vec<serde_json::Value> = lines
        .into_iter()
        .map(|(output, level)| json!({"created_at": now, "output": output, "level": level}))
        .collect();
    let body = json!({"log_source_id": script.log_source_id, "logs": logs});
    if let Err(err) = api.send(reqwest::Method::PATCH, "logs", body).await {
        eprintln!("send logs: {err:#}");
    }
}

/// Heartbeats until the server answers 401 (the token was revoked); transient errors are retried.
async fn heartbeat(api: Api) {
    let mut interval = Duration::from_secs(10);
    loop {
        let sent = api
            .http
            .post(api.url("report-stats"))
            .header("Coder-Session-Token", &api.token)
            .json(&json!({}))
            .send()
            .await;
        if sent
            .as_ref()
            .is_ok_and(|r| r.status() == reqwest::StatusCode::UNAUTHORIZED)
        {
            return;
        }
        match sent.map_err(anyhow::Error::from) {
            Ok(resp) => {
                if let Ok(v) = resp.json::<serde_json::Value>().await {
                    if let Some(ns) = v["report_interval"].as_i64().filter(|ns| *ns > 0) {
                        interval = Duration::from_nanos(ns as u64).min(Duration::from_secs(10));
                    }
                }
            }
            Err(err) => eprintln!("heartbeat: {err:#}"),
        }
        tokio::time::sleep(interval).await;
    }
}

async fn collect_metadata(
    api: Api,
    item: MetadataDescription,
    dir: PathBuf,
    env: BTreeMap<String, String>,
) {
    let interval = Duration::from_secs(item.interval.max(1) as u64);
    let timeout = Duration::from_secs(item.timeout.max(1) as u64);
    loop {
        let mut cmd = shell(&item.script, &dir, &env);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let (value, error) = match tokio::time::timeout(timeout, cmd.output()).await {
            Ok(Ok(out)) => (
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
                if out.status.success() {
                    String::new()
                } else {
                    String::from_utf8_lossy(&out.stderr).trim().to_string()
                },
            ),
            Ok(Err(err)) => (String::new(), err.to_string()),
            Err(_) => (String::new(), format!("timed out after {}s", item.timeout)),
        };
        let body = json!({"metadata": [{"key": item.key, "collected_at": Utc::now(), "age": 0,
                                         "value": value, "error": error}]});
        if let Err(err) = api.send(reqwest::Method::POST, "metadata", body).await {
            eprintln!("metadata {}: {err:#}", item.key);
        }
        tokio::time::sleep(interval).await;
    }
}
