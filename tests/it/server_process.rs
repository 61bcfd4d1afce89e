//! The real `coder server` binary: built-in PostgreSQL lifecycle, external databases, two replicas.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{pg, Client, PASSWORD};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_coder");

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) struct Server {
    pub child: Child,
    pub url: String,
    log: std::path::PathBuf,
}

impl Server {
    pub(crate) fn start(cache_dir: &Path, envs: &[(&str, &str)]) -> Server {
        let port = free_port();
        let log = cache_dir.with_extension(format!("{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("server")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", cache_dir)
            .env("CODER_HTTP_ADDRESS", format!("127.0.0.1:{port}"))
            .env("CODER_CACHE_DIRECTORY", cache_dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Server {
            child: cmd.spawn().expect("spawn coder server"),
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) async fn wait_healthy(&mut self) -> Duration {
        let start = Instant::now();
        let http = reqwest::Client::new();
        while start.elapsed() < Duration::from_secs(90) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited early ({status}):\n{}", self.logs());
            }
            if let Ok(r) = http.get(format!("{}/healthz", self.url)).send().await {
                if r.status() == 200 && r.text().await.unwrap_or_default() == "OK" {
                    return start.elapsed();
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server not healthy in time:\n{}", self.logs());
    }

    pub(crate) fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    pub(crate) async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "server did not exit:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn postmaster_pid(cache: &Path) -> Option<i32> {
    std::fs::read_to_string(cache.join("postgres/data/postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
}

/// Alive = exists and is not a zombie (in containers nobody may reap the detached postmaster).
pub(crate) fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Waits (briefly) for a process to go away; a process exiting needs a moment after its pid file.
async fn gone_soon(pid: i32) -> bool {
    for _ in 0..100 {
        if !process_alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub(crate) async fn first_user_and_login(url: &str) -> Client {
    let anon = Client::new(url);
    let resp = anon
        .post(
            "/api/v2/users/first",
            &json!({"email": "admin@coder.test", "username": "admin", "password": PASSWORD}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    anon.login("admin@coder.test", PASSWORD).await
}

pub(crate) fn cache_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("coder-srv-")
        .tempdir()
        .unwrap()
}

/// Fresh machine, no env vars but a cache dir: built-in PostgreSQL, first user, restart keeps the user,
/// a crash leaves PostgreSQL behind and the next start handles it, SIGTERM stops PostgreSQL.
#[tokio::test]
async fn builtin_postgres_lifecycle() {
    let dir = cache_dir();
    let cache = dir.path().join("cache");
    let mut server = Server::start(&cache, &[]);
    server.wait_healthy().await;
    let owner = first_user_and_login(&server.url).await;
    assert_eq!(owner.get("/api/v2/users/me").await.status, 200);
    let pid = postmaster_pid(&cache).expect("postgres running");
    assert!(process_alive(pid));
    let logs = server.logs();
    if nix::unistd::geteuid().is_root() {
        assert!(logs.contains("runs as an unprivileged user"), "{logs}");
    }

    // Graceful stop: the database stops with the server.
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait_exit().await.success(), "{}", server.logs());
    assert!(
        postmaster_pid(&cache).is_none(),
        "postmaster.pid must be gone after a clean stop:\n{}",
        server.logs()
    );
    assert!(gone_soon(pid).await, "postgres must stop with the server");

    // Second start reuses the data: the user can log in again.
    let mut server = Server::start(&cache, &[]);
    server.wait_healthy().await;
    let again = Client::new(&server.url)
        .login("admin@coder.test", PASSWORD)
        .await;
    assert_eq!(again.get("/api/v2/users/me").await.status, 200);

    // A crash (SIGKILL) leaves the postmaster running; the next start takes over cleanly.
    let orphan = postmaster_pid(&cache).unwrap();
    server.signal(nix::sys::signal::Signal::SIGKILL);
    server.wait_exit().await;
    assert!(
        process_alive(orphan),
        "postgres survives a SIGKILLed server"
    );
    let mut server = Server::start(&cache, &[]);
    server.wait_healthy().await;
    assert!(
        gone_soon(orphan).await,
        "the orphaned postmaster was stopped"
    );
    let again = Client::new(&server.url)
        .login("admin@coder.test", PASSWORD)
        .await;
    assert_eq!(again.get("/api/v2/users/me").await.status, 200);

    // `postgres-builtin-url` prints the URL of this cluster.
    let out = Command::new(BIN)
        .args(["server", "postgres-builtin-url", "--raw-url"])
        .env("CODER_CACHE_DIRECTORY", &cache)
        .output()
        .unwrap();
    let url = String::from_utf8(out.stdout).unwrap();
    assert!(url.starts_with("postgres://coder:"), "{url}");
    let pool = sqlx::PgPool::connect(url.trim())
        .await
        .expect("connect with printed URL");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE NOT is_system")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(users, 1);
    pool.close().await;

    server.signal(nix::sys::signal::Signal::SIGINT);
    assert!(server.wait_exit().await.success());
    assert!(postmaster_pid(&cache).is_none());

    // A stale postmaster.pid (dead pid) is removed, not fatal.
    std::fs::write(
        cache.join("postgres/data/postmaster.pid"),
        "999999\n/nonexistent\n",
    )
    .unwrap();
    let mut server = Server::start(&cache, &[]);
    server.wait_healthy().await;
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait_exit().await.success());
}

#[tokio::test]
async fn external_postgres_url_and_restart() {
    let url = pg::cluster().empty_database().await;
    let dir = cache_dir();
    let mut server = Server::start(dir.path(), &[("CODER_PG_CONNECTION_URL", &url)]);
    server.wait_healthy().await;
    first_user_and_login(&server.url).await;
    assert!(
        !dir.path().join("postgres").exists(),
        "no built-in database with --postgres-url"
    );
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait_exit().await.success());
    let mut server = Server::start(dir.path(), &[("CODER_PG_CONNECTION_URL", &url)]);
    server.wait_healthy().await;
    let again = Client::new(&server.url)
        .login("admin@coder.test", PASSWORD)
        .await;
    assert_eq!(again.get("/api/v2/users/me").await.status, 200);
}

#[tokio::test]
async fn two_servers_on_one_empty_database() {
    let url = pg::cluster().empty_database().await;
    let (d1, d2) = (cache_dir(), cache_dir());
    // Replica a serves /metrics on its Prometheus address; b has an address but metrics disabled.
    let (pa, pb) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut a = Server::start(
        d1.path(),
        &[
            ("CODER_PG_CONNECTION_URL", &url),
            ("CODER_PROMETHEUS_ENABLE", "true"),
            ("CODER_PROMETHEUS_ADDRESS", &pa),
            ("CODER_PROMETHEUS_COLLECT_DB_METRICS", "true"),
        ],
    );
    let mut b = Server::start(
        d2.path(),
        &[
            ("CODER_PG_CONNECTION_URL", &url),
            ("CODER_PROMETHEUS_ADDRESS", &pb),
        ],
    );
    a.wait_healthy().await;
    b.wait_healthy().await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    let expected: Vec<i64> = coder::db::MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(applied, expected, "each migration applied exactly once");
    // Both replicas agree on the deployment id and on the data.
    let ia: serde_json::Value = Client::new(&a.url).get("/api/v2/buildinfo").await.json();
    let ib: serde_json::Value = Client::new(&b.url).get("/api/v2/buildinfo").await.json();
    assert_eq!(ia["deployment_id"], ib["deployment_id"]);
    first_user_and_login(&a.url).await;
    let on_b = Client::new(&b.url)
        .login("admin@coder.test", PASSWORD)
        .await;
    assert_eq!(on_b.get("/api/v2/users/me").await.status, 200);
    let metrics = reqwest::get(format!("http://{pa}/metrics"))
        .await
        .expect("replica a serves /metrics");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    for family in [
        "coderd_api_requests_processed_total",
        "coderd_db_query_latencies_seconds_bucket",
        "coderd_prebuilt_workspaces_reconciliation_paused",
        "process_resident_memory_bytes",
        "go_sql_open_connections",
    ] {
        assert!(
            text.contains(family),
            "{family} missing from /metrics:\n{text}"
        );
    }
    assert!(
        reqwest::get(format!("http://{pb}/metrics")).await.is_err(),
        "nothing listens on the Prometheus address while metrics are disabled"
    );
    assert_eq!(Client::new(&a.url).get("/metrics").await.status, 404);
    pool.close().await;
}

#[tokio::test]
async fn missing_postgres_binaries_is_a_one_line_error() {
    let dir = cache_dir();
    let empty = cache_dir();
    let out = Command::new(BIN)
        .arg("server")
        .env_clear()
        .env("PATH", "/nonexistent")
        .env("CODER_CACHE_DIRECTORY", dir.path())
        .env("CODER_HTTP_ADDRESS", format!("127.0.0.1:{}", free_port()))
        .env("CODER_BUILTIN_POSTGRES_LIB_DIR", empty.path())
        .env("CODER_LOGGING_HUMAN", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("apt-get install -y postgresql"), "{stderr}");
}

#[tokio::test]
async fn help_lists_flags_with_env_and_defaults() {
    let out = Command::new(BIN)
        .args(["server", "--help"])
        .output()
        .unwrap();
    // Wrapping may split an entry across lines; compare with whitespace collapsed.
    let help = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for (flag, env, default) in [
        (
            "--http-address",
            "CODER_HTTP_ADDRESS",
            Some("127.0.0.1:3000"),
        ),
        ("--access-url", "CODER_ACCESS_URL", None),
        ("--postgres-url", "CODER_PG_CONNECTION_URL", None),
        (
            "--cache-dir",
            "CODER_CACHE_DIRECTORY",
            Some("~/.cache/coder"),
        ),
        ("--experiments", "CODER_EXPERIMENTS", None),
        (
            "--provisioner-daemons",
            "CODER_PROVISIONER_DAEMONS",
            Some("3"),
        ),
        (
            "--prometheus-enable",
            "CODER_PROMETHEUS_ENABLE",
            Some("false"),
        ),
        (
            "--prometheus-address",
            "CODER_PROMETHEUS_ADDRESS",
            Some("127.0.0.1:2112"),
        ),
        (
            "--workspace-prebuilds-reconciliation-interval",
            "CODER_WORKSPACE_PREBUILDS_RECONCILIATION_INTERVAL",
            Some("1m"),
        ),
        ("--verbose", "CODER_VERBOSE", Some("false")),
    ] {
        assert!(help.contains(flag), "{flag} missing");
        assert!(help.contains(env), "{env} missing");
        if let Some(d) = default {
            assert!(
                help.contains(&format!("[default: {d}]")),
                "default {d} of {flag} missing"
            );
        }
    }
}
