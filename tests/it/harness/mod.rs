//! Test harness: a real router on an ephemeral port, on a fresh database, talked to over HTTP.

// The harness serves every later test module; not every helper is used by every issue yet.
#![allow(dead_code)]

pub mod client;
pub mod pg;
pub mod templates;
pub mod tracing;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use coder::app::{self, AppState};
use coder::clock::Clock;
use coder::config::ServerConfig;
use tokio_util::sync::CancellationToken;

pub use client::Client;

pub const ADMIN_EMAIL: &str = "admin@coder.test";
pub const ADMIN_USERNAME: &str = "admin";
pub const PASSWORD: &str = "SomeSecurePassword!";

/// Real time plus an offset tests can push forward (key expiry, TTLs) without freezing time.
#[derive(Debug, Default, Clone)]
pub struct TestClock(Arc<Mutex<Duration>>);

impl TestClock {
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        coder::clock::SystemClock.now() + *self.0.lock().unwrap()
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base_url: String,
    pub db_url: String,
    pub state: AppState,
    pub clock: TestClock,
    /// Where `/metrics` listens when the config enables Prometheus.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_config(|_| {}).await
    }

    pub async fn with_config(tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let db_url = pg::cluster().fresh_database().await;
        Self::on_database(db_url, tweak).await
    }

    /// Another replica on this app's database (its own pool, daemons, listener and port).
    pub async fn replica(&self, tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::on_database(self.db_url.clone(), tweak).await
    }

    async fn on_database(db_url: String, tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        tracing::install();
        let pool = coder::db::connect(&db_url, 10)
            .await
            .expect("connect test db");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = ServerConfig::for_tests(
            std::env::temp_dir().join(format!("coder-it-cache-{}", uuid::Uuid::new_v4().simple())),
        );
        config.http_address = addr;
        config.access_url = format!("http://{addr}");
        config.agent_binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_coder"));
        config.prometheus_address = SocketAddr::from(([127, 0, 0, 1], 0));
        tweak(&mut config);
        let clock = TestClock::default();
        let state = AppState::new(pool, config, Arc::new(clock.clone()))
            .await
            .expect("app state");
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        // A route that panics, to prove panics are contained (it exists only in tests).
        let extra = axum::Router::new().route(
            "/test/panic",
            axum::routing::get(|| async {
                if true {
                    panic!("injected test panic");
                }
                ""
            }),
        );
        let router = app::router_with(state.clone(), extra);
        app::start_background(&state, shutdown.clone());
        let metrics_addr = if state.config.prometheus_enable {
            Some(
                coder::metrics::http::serve(state.clone(), shutdown.clone())
                    .await
                    .expect("metrics listener"),
            )
        } else {
            None
        };
        tokio::spawn(async move {
            let _ = app::serve(listener, router, async move { token.cancelled().await }).await;
        });
        Self {
            addr,
            base_url: format!("http://{addr}"),
            db_url,
            state,
            clock,
            metrics_addr,
            shutdown,
        }
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        &self.state.pool
    }

    /// An unauthenticated client.
    pub fn client(&self) -> Client {
        Client::new(&self.base_url)
    }

    /// Creates the first user (owner) and returns a client logged in as it.
    pub async fn owner(&self) -> Client {
        let anon = self.client();
        let resp = anon
            .post(
                "/api/v2/users/first",
                &serde_json::json!({"email": ADMIN_EMAIL, "username": ADMIN_USERNAME, "password": PASSWORD}),
            )
            .await;
        assert_eq!(resp.status, 201, "create first user: {}", resp.text());
        anon.login(ADMIN_EMAIL, PASSWORD).await
    }

    /// Creates an active user with the given site roles (through the API, as an owner) and logs in as it.
    pub async fn user(
        &self,
        owner: &Client,
        username: &str,
        roles: &[&str],
    ) -> (Client, uuid::Uuid) {
        let email = format!("{username}@coder.test");
        let resp = owner
            .post(
                "/api/v2/users",
                &serde_json::json!({
                    "email": email, "username": username, "password": PASSWORD,
                    "organization_ids": [uuid::Uuid::nil()], "user_status": "active",
                }),
            )
            .await;
        assert_eq!(resp.status, 201, "create user: {}", resp.text());
        let id: uuid::Uuid = resp.json::<serde_json::Value>()["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        if !roles.is_empty() {
            let resp = owner
                .put(
                    &format!("/api/v2/users/{id}/roles"),
                    &serde_json::json!({ "roles": roles }),
                )
                .await;
            assert_eq!(resp.status, 200, "set roles: {}", resp.text());
        }
        (self.client().login(&email, PASSWORD).await, id)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // Workspace directories of the local runtime live here; replicas share nothing else on disk.
        // Their agents are detached processes: end them first, or they outlive the test and keep
        // calling a server that is gone.
        let cache = &self.state.config.cache_dir;
        coder::provisioner::local::stop_all(cache);
        let _ = std::fs::remove_dir_all(cache);
    }
}
