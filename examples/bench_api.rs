//! F1 benchmark: start-up time of `coder server` with the built-in PostgreSQL (first start with initdb,
//! then a second start on the same data) and `GET /api/v2/users/me` throughput and latency under
//! concurrent clients. Run with `scripts/bench` (release build).
//!
//! Usage: bench_api <path-to-coder-binary> [seconds=20] [clients=32]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(3999)
}

// The child is returned to the caller, which always waits for it in `stop`.
#[allow(clippy::zombie_processes)]
async fn start(bin: &str, cache: &std::path::Path, port: u16) -> (Child, Duration) {
    let begin = Instant::now();
    let mut child = Command::new(bin)
        .arg("server")
        .env("CODER_CACHE_DIRECTORY", cache)
        .env("CODER_HTTP_ADDRESS", format!("127.0.0.1:{port}"))
        .env("CODER_LOGGING_HUMAN", "")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn coder server");
    let http = reqwest::Client::new();
    loop {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            if r.status() == 200 {
                return (child, begin.elapsed());
            }
        }
        if begin.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not start");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn stop(mut child: Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "target/release/coder".into());
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let clients: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(32);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let port = free_port();

    let (first, first_start) = start(&bin, &cache, port).await;
    stop(first);
    let (server, second_start) = start(&bin, &cache, port).await;
    println!(
        "first start (initdb included) to healthy /healthz: {:.2} s",
        first_start.as_secs_f64()
    );
    println!(
        "second start to healthy /healthz:                  {:.2} s",
        second_start.as_secs_f64()
    );

    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .expect("client");
    let body = serde_json::json!({"email": "bench@coder.test", "username": "bench", "password": "SomeSecurePassword!"});
    let r = http
        .post(format!("{base}/api/v2/users/first"))
        .json(&body)
        .send()
        .await
        .expect("first user");
    assert_eq!(r.status(), 201);
    let r: serde_json::Value = http
        .post(format!("{base}/api/v2/users/login"))
        .json(&serde_json::json!({"email": "bench@coder.test", "password": "SomeSecurePassword!"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login body");
    let token = r["session_token"].as_str().expect("token").to_string();

    // wrk (C, light) measures the server with the least client overhead on a small machine; the
    // in-process reqwest load below runs too, for machines without wrk and for comparison.
    if let Some(report) = run_wrk(&base, &token, seconds, clients) {
        println!("{report}");
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let http = http.clone();
        let url = format!("{base}/api/v2/users/me");
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                match http
                    .get(&url)
                    .header("Coder-Session-Token", &token)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.expect("worker");
        all.extend(lat);
        errors += e;
    }
    all.sort_unstable();
    println!(
        "reqwest load: GET /api/v2/users/me, {clients} clients, {seconds} s: {} requests, {:.0} req/s, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, errors {errors}",
        all.len(),
        all.len() as f64 / seconds as f64,
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99),
    );
    import_latency(&http, &base, &token, 30).await;
    stop(server);
}

/// Upload → import succeeded latency of the local-shell example, one import at a time.
async fn import_latency(http: &reqwest::Client, base: &str, token: &str, runs: usize) {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/templates/local-shell");
    let mut builder = tar::Builder::new(Vec::new());
    for name in ["main.tf", "README.md"] {
        builder
            .append_path_with_name(dir.join(name), name)
            .expect("tar");
    }
    let tar = builder.into_inner().expect("tar");
    let mut latencies = Vec::new();
    for i in 0..runs {
        let start = Instant::now();
        // Vary the bytes so every run uploads a new file, as a real push does.
        let mut body = tar.clone();
        body.extend(std::iter::repeat_n(0u8, 512 * (i + 1)));
        let file: serde_json::Value = http
            .post(format!("{base}/api/v2/files"))
            .header("Coder-Session-Token", token)
            .header("Content-Type", "application/x-tar")
            .body(body)
            .send()
            .await
            .expect("upload")
            .json()
            .await
            .expect("upload body");
        let version: serde_json::Value = http
            .post(format!("{base}/api/v2/organizations/default/templateversions"))
            .header("Coder-Session-Token", token)
            .json(&serde_json::json!({"storage_method": "file", "file_id": file["hash"], "provisioner": "terraform"}))
            .send()
            .await
            .expect("version")
            .json()
            .await
            .expect("version body");
        let id = version["id"].as_str().expect("version id").to_string();
        loop {
            let v: serde_json::Value = http
                .get(format!("{base}/api/v2/templateversions/{id}"))
                .header("Coder-Session-Token", token)
                .send()
                .await
                .expect("get version")
                .json()
                .await
                .expect("version body");
            match v["job"]["status"].as_str() {
                Some("succeeded") => break,
                Some("pending" | "running") => tokio::time::sleep(Duration::from_millis(2)).await,
                other => panic!("import ended {other:?}: {v}"),
            }
        }
        latencies.push(start.elapsed().as_micros() as u64);
    }
    latencies.sort_unstable();
    println!(
        "template import (upload -> succeeded), local-shell, {runs} sequential runs: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 1.0),
    );
}

/// Runs `wrk` if installed and summarises its latency distribution.
fn run_wrk(base: &str, token: &str, seconds: u64, clients: usize) -> Option<String> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{clients}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            &format!("Coder-Session-Token: {token}"),
            &format!("{base}/api/v2/users/me"),
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_string()
    };
    let errors = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .unwrap_or("errors 0")
        .trim()
        .to_string();
    Some(format!(
        "wrk load: GET /api/v2/users/me, {clients} connections, {seconds} s: {} req/s, p50 {}, p90 {}, p99 {}, {errors}",
        field("Requests/sec:"),
        field("50%"),
        field("90%"),
        field("99%"),
    ))
}
