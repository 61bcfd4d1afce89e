//! F3 benchmarks against a real `coder server` (built-in PostgreSQL), echo runtime:
//! 1. create → running latency of 200 workspaces created by 20 concurrent clients;
//! 2. agent API load at Coder's reference rate: N agents (default 2000), each posting 2 metadata items
//!    and a stats heartbeat every 10 s, for a measured period; latency percentiles, errors, server RSS.
//!
//! Usage: bench_workspaces <coder-binary> [agents=2000] [seconds=60]
//! `agents` 0 skips the agent-load phase. With `CODER_PG_CONNECTION_URL` set, the server uses that database
//! (e.g. one with `pg_stat_statements`) instead of the built-in PostgreSQL.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Mutex;

const TEMPLATE: &str = r#"
resource "coder_agent" "main" {
  os   = "linux"
  arch = "amd64"
  metadata {
    key          = "load"
    display_name = "Load"
    script       = "cat /proc/loadavg"
    interval     = 10
    timeout      = 1
  }
  metadata {
    key          = "disk"
    display_name = "Disk"
    script       = "df -h ."
    interval     = 10
    timeout      = 1
  }
}
resource "null_resource" "box" {
  depends_on = [coder_agent.main]
}
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(3998)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .unwrap_or(0.0)
        / 1024.0
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "target/release/coder".into());
    let agents: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let seconds: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(60);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = Server(
        Command::new(&bin)
            .arg("server")
            .env("CODER_CACHE_DIRECTORY", dir.path())
            .env("CODER_HTTP_ADDRESS", format!("127.0.0.1:{port}"))
            .env("CODER_LOGGING_HUMAN", "")
            .env("CODER_PG_CONN_MAX_OPEN", "10")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn coder server"),
    );
    let pid = server.0.id();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let start = Instant::now();
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    http.post(format!("{base}/api/v2/users/first"))
        .json(&json!({"email": "b@coder.test", "username": "bench", "password": "SomeSecurePassword!"}))
        .send()
        .await
        .expect("first user");
    let login: Value = http
        .post(format!("{base}/api/v2/users/login"))
        .json(&json!({"email": "b@coder.test", "password": "SomeSecurePassword!"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login body");
    let token = login["session_token"].as_str().expect("token").to_string();

    // Template (echo provisioner).
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(TEMPLATE.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "main.tf", TEMPLATE.as_bytes())
        .expect("tar");
    let file: Value = http
        .post(format!("{base}/api/v2/files"))
        .header("Coder-Session-Token", &token)
        .header("Content-Type", "application/x-tar")
        .body(tar.into_inner().expect("tar"))
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("upload body");
    let version: Value = http
        .post(format!(
            "{base}/api/v2/organizations/default/templateversions"
        ))
        .header("Coder-Session-Token", &token)
        .json(&json!({"storage_method": "file", "file_id": file["hash"], "provisioner": "echo"}))
        .send()
        .await
        .expect("version")
        .json()
        .await
        .expect("version body");
    let vid = version["id"].as_str().expect("version id").to_string();
    loop {
        let v: Value = http
            .get(format!("{base}/api/v2/templateversions/{vid}"))
            .header("Coder-Session-Token", &token)
            .send()
            .await
            .expect("get version")
            .json()
            .await
            .expect("body");
        if v["job"]["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let template: Value = http
        .post(format!("{base}/api/v2/organizations/default/templates"))
        .header("Coder-Session-Token", &token)
        .json(&json!({"name": "bench", "template_version_id": vid}))
        .send()
        .await
        .expect("template")
        .json()
        .await
        .expect("template body");
    let template_id = template["id"].as_str().expect("template id").to_string();

    // 1. create → running, 200 workspaces from 20 concurrent clients.
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for client in 0..20 {
        let (http, base, token, template_id, latencies) = (
            http.clone(),
            base.clone(),
            token.clone(),
            template_id.clone(),
            latencies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let t = Instant::now();
                let ws: Value = http
                    .post(format!("{base}/api/v2/users/me/workspaces"))
                    .header("Coder-Session-Token", &token)
                    .json(&json!({"template_id": template_id, "name": format!("c{client}-{i}")}))
                    .send()
                    .await
                    .expect("create")
                    .json()
                    .await
                    .expect("create body");
                let id = ws["id"].as_str().expect("workspace id").to_string();
                // Follow the workspace's watch stream (as the dashboard does) rather than polling, so the
                // measurement does not load the server with its own reads.
                let mut stream = http
                    .get(format!("{base}/api/v2/workspaces/{id}/watch"))
                    .header("Coder-Session-Token", &token)
                    .send()
                    .await
                    .expect("watch");
                let mut buf = String::new();
                'watch: loop {
                    let chunk = stream
                        .chunk()
                        .await
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
                                let w: Value =
                                    serde_json::from_str(data.trim()).expect("event json");
                                assert_ne!(w["latest_build"]["status"], "failed", "build failed");
                                if w["latest_build"]["status"] == "running" {
                                    break 'watch;
                                }
                            }
                        }
                    }
                }
                latencies.lock().await.push(t.elapsed().as_micros() as u64);
            }
        }));
    }
    for t in tasks {
        t.await.expect("create task");
    }
    let mut lat = latencies.lock().await.clone();
    lat.sort_unstable();
    println!(
        "echo create -> running, 200 workspaces, 20 concurrent clients: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms",
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99)
    );

    if agents == 0 {
        drop(server);
        return;
    }

    // 2. Agent load: create the remaining workspaces, collect their agent tokens.
    let created = 200;
    let mut remaining = agents.saturating_sub(created);
    let mut batch = 0;
    while remaining > 0 {
        let n = remaining.min(50);
        let mut tasks = Vec::new();
        for i in 0..n {
            let (http, base, token, template_id) = (
                http.clone(),
                base.clone(),
                token.clone(),
                template_id.clone(),
            );
            tasks.push(tokio::spawn(async move {
                http.post(format!("{base}/api/v2/users/me/workspaces"))
                    .header("Coder-Session-Token", &token)
                    .json(&json!({"template_id": template_id, "name": format!("a{batch}-{i}")}))
                    .send()
                    .await
                    .expect("create");
            }));
        }
        for t in tasks {
            t.await.expect("create task");
        }
        remaining -= n;
        batch += 1;
    }
    // Agent tokens come from the database (as an operator's load test would read them).
    let pg_url = match std::env::var("CODER_PG_CONNECTION_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => String::from_utf8(
            Command::new(&bin)
                .args(["server", "postgres-builtin-url", "--raw-url"])
                .env("CODER_CACHE_DIRECTORY", dir.path())
                .output()
                .expect("postgres url")
                .stdout,
        )
        .expect("utf8"),
    };
    let pool = sqlx::PgPool::connect(pg_url.trim()).await.expect("db");
    let tokens: Vec<uuid::Uuid> = loop {
        let t: Vec<uuid::Uuid> = sqlx::query_scalar(
            // Workspaces' agents only: the template's import job records a preview agent too.
            "SELECT a.auth_token FROM workspace_agents a
             JOIN workspace_resources r ON r.id = a.resource_id
             JOIN workspace_builds b ON b.job_id = r.job_id",
        )
        .fetch_all(&pool)
        .await
        .expect("tokens");
        if t.len() >= agents {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    pool.close().await;
    let rss_before = rss_mib(pid);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let samples = Arc::new(Mutex::new((Vec::<u64>::new(), 0u64)));
    let mut tasks = Vec::new();
    for (n, agent_token) in tokens.into_iter().take(agents).enumerate() {
        let (http, base, samples) = (http.clone(), base.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            // Spread agents evenly over the 10 s period, as real agents started at different times are.
            tokio::time::sleep(Duration::from_millis((n as u64 * 10_000) / agents as u64)).await;
            let token = agent_token.to_string();
            while Instant::now() < deadline {
                let cycle = Instant::now();
                let now = chrono::Utc::now();
                for (path, body) in [
                    ("metadata", json!({"metadata": [
                        {"key": "load", "collected_at": now, "age": 0, "value": "0.1 0.2 0.3", "error": ""},
                        {"key": "disk", "collected_at": now, "age": 0, "value": "12G used", "error": ""}]})),
                    ("report-stats", json!({})),
                ] {
                    let t = Instant::now();
                    let sent = http
                        .post(format!("{base}/api/v2/workspaceagents/me/{path}"))
                        .header("Coder-Session-Token", &token)
                        .json(&body)
                        .send()
                        .await;
                    let failure = match sent {
                        Ok(r) if r.status().is_success() => None,
                        Ok(r) => Some(format!("{} {}", r.status(), r.text().await.unwrap_or_default())),
                        Err(e) => Some(e.to_string()),
                    };
                    let elapsed = t.elapsed().as_micros() as u64;
                    let mut s = samples.lock().await;
                    match failure {
                        None => s.0.push(elapsed),
                        Some(why) => {
                            // The first few failures say why; the count says how many.
                            if s.1 < 5 {
                                eprintln!("agent API error on {path}: {why}");
                            }
                            s.1 += 1;
                        }
                    }
                }
                let next = cycle + Duration::from_secs(10);
                tokio::time::sleep_until(next.into()).await;
            }
        }));
    }
    let mut peak_rss = rss_before;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        peak_rss = peak_rss.max(rss_mib(pid));
    }
    for t in tasks {
        let _ = t.await;
    }
    let (mut lat, errors) = samples.lock().await.clone();
    lat.sort_unstable();
    println!(
        "agent API, {agents} agents x (2 metadata items + stats) every 10 s, {seconds} s: {} requests ({:.0} req/s), p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, errors {errors}, server RSS {:.0} MiB (peak {:.0} MiB)",
        lat.len(),
        lat.len() as f64 / seconds as f64,
        percentile(&lat, 0.5),
        percentile(&lat, 0.95),
        percentile(&lat, 0.99),
        rss_mib(pid),
        peak_rss,
    );
    drop(server);
}
