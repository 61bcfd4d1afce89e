//! One throwaway PostgreSQL cluster per test run, and a fresh database per test.
//!
//! Without `DATABASE_URL`, the first test to ask starts a cluster from the system binaries (through the
//! same `BuiltinPostgres` code the server uses, so as root it runs as the `postgres` user) in a temp dir,
//! with durability off for speed, and migrates a template database once. Each test then gets
//! `CREATE DATABASE … TEMPLATE` of it. The cluster is stopped by an `atexit` hook, and a watchdog process
//! stops it too if the test binary is killed, so no postgres outlives the run.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use coder::db::embedded::BuiltinPostgres;

const TEMPLATE_DB: &str = "coder_it_template";

pub struct Cluster {
    /// URL of a maintenance database on the cluster (used to create test databases).
    admin_url: String,
    /// Builds the URL of a named database.
    url_base: String,
    url_query: String,
    pub builtin: Option<BuiltinPostgres>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static STOP: OnceLock<(BuiltinPostgres, PathBuf)> = OnceLock::new();

extern "C" fn stop_cluster_at_exit() {
    if let Some((pg, dir)) = STOP.get() {
        let _ = pg.stop();
        let _ = std::fs::remove_dir_all(dir);
    }
}

pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        // Initialise on a plain thread: tests call this from inside a tokio runtime.
        std::thread::spawn(init_cluster)
            .join()
            .expect("cluster init thread panicked")
    })
}

fn split_url(url: &str) -> (String, String) {
    // postgres://user:pw@host:port/db?query -> ("postgres://user:pw@host:port/", "?query")
    let (before_query, query) = match url.split_once('?') {
        Some((a, b)) => (a.to_string(), format!("?{b}")),
        None => (url.to_string(), String::new()),
    };
    let scheme_end = before_query.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match before_query[scheme_end..].find('/') {
        Some(i) => before_query[..scheme_end + i + 1].to_string(),
        None => format!("{before_query}/"),
    };
    (base, query)
}

fn init_cluster() -> Cluster {
    let (admin_url, builtin) = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let dir = PathBuf::from(format!("/tmp/coder-it-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create cluster dir");
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                .expect("chmod cluster dir");
            let mut pg = BuiltinPostgres::new(&dir)
                .expect(
                    "PostgreSQL binaries are needed for the tests (apt-get install -y postgresql)",
                )
                .with_settings(&[
                    ("fsync", "off"),
                    ("synchronous_commit", "off"),
                    ("full_page_writes", "off"),
                    ("max_connections", "1000"),
                    ("shared_buffers", "256MB"),
                ]);
            pg.start().expect("start test PostgreSQL");
            spawn_watchdog(&pg);
            let _ = STOP.set((pg.clone(), dir));
            // SAFETY: registering a plain extern "C" fn with atexit is sound.
            unsafe {
                libc::atexit(stop_cluster_at_exit);
            }
            (pg.url_for_db("postgres"), Some(pg))
        }
    };
    let (url_base, url_query) = split_url(&admin_url);
    let cluster = Cluster {
        admin_url,
        url_base,
        url_query,
        builtin,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let admin = sqlx::PgPool::connect(&cluster.admin_url)
            .await
            .expect("connect to test PostgreSQL");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {TEMPLATE_DB}"))
            .execute(&admin)
            .await
            .expect("drop template db");
        sqlx::query(&format!("CREATE DATABASE {TEMPLATE_DB}"))
            .execute(&admin)
            .await
            .expect("create template db");
        let pool = sqlx::PgPool::connect(&cluster.url(TEMPLATE_DB))
            .await
            .expect("connect template db");
        coder::db::migrate(&pool)
            .await
            .expect("migrate template db");
        pool.close().await;
        admin.close().await;
    });
    cluster
}

/// Stops the cluster if the test process dies without running its exit hooks (e.g. SIGKILL).
fn spawn_watchdog(pg: &BuiltinPostgres) {
    let script = format!(
        "while [ -d /proc/{pid} ]; do sleep 1; done; {pg_ctl} stop -m immediate -D '{data}' >/dev/null 2>&1",
        pid = std::process::id(),
        pg_ctl = pg.bin_dir().join("pg_ctl").display(),
        data = pg.data_dir().display(),
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(user) = pg.run_as() {
        use std::os::unix::process::CommandExt;
        cmd.uid(user.uid).gid(user.gid).current_dir("/");
    }
    let _ = cmd.spawn();
}

impl Cluster {
    pub fn url(&self, db: &str) -> String {
        format!("{}{db}{}", self.url_base, self.url_query)
    }

    /// A new database migrated like production, for one test.
    pub async fn fresh_database(&self) -> String {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&self.admin_url)
            .await
            .expect("connect admin");
        sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}"))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        self.url(&name)
    }

    /// A new empty database (no migrations), for tests of start-up itself.
    pub async fn empty_database(&self) -> String {
        let name = format!("e_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&self.admin_url)
            .await
            .expect("connect admin");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create empty database");
        admin.close().await;
        self.url(&name)
    }
}
