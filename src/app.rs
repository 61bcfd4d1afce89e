//! Application state, the HTTP router with its middleware, and serving.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use sqlx::PgPool;
use tower::Layer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::api::error::ApiError;
use crate::clock::SharedClock;
use crate::config::ServerConfig;

/// The build version reported in `X-Coder-Build-Version` and `/buildinfo`.
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

pub struct AppInner {
    pub pool: PgPool,
    pub clock: SharedClock,
    pub config: ServerConfig,
    pub deployment_id: String,
    /// Verified against when a login names an unknown email (equal timing).
    pub dummy_hash: String,
    /// Cross-replica change events (LISTEN/NOTIFY).
    pub pubsub: crate::pubsub::Pubsub,
    /// Parsed templates, rebuilt from the database on a miss.
    pub templates: crate::provisioner::build::TemplateCache,
    pub version_contexts: crate::workspaces::version_cache::VersionCache,
    /// Prometheus series (served only with `--prometheus-enable`).
    pub metrics: crate::metrics::Metrics,
    /// Authenticated API keys, invalidated across replicas over LISTEN/NOTIFY.
    pub auth_cache: crate::api::auth_cache::AuthCache,
}

#[derive(Clone)]
pub struct AppState(pub Arc<AppInner>);

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    /// Builds the state on a migrated database: loads (or creates) the deployment id.
    pub async fn new(
        pool: PgPool,
        config: ServerConfig,
        clock: SharedClock,
    ) -> Result<Self, sqlx::Error> {
        let deployment_id = crate::db::get_or_insert_site_config(
            &pool,
            "deployment_id",
            &uuid::Uuid::new_v4().to_string(),
        )
        .await?;
        let params = config.password_hashing;
        let dummy_hash =
            tokio::task::spawn_blocking(move || crate::users::password::dummy_hash(params))
                .await
                .unwrap_or_default();
        let metrics = crate::metrics::Metrics::new(&config);
        Ok(Self(Arc::new(AppInner {
            pool,
            clock,
            config,
            deployment_id,
            dummy_hash,
            pubsub: crate::pubsub::Pubsub::new(),
            templates: Default::default(),
            version_contexts: Default::default(),
            metrics,
            auth_cache: Default::default(),
        })))
    }
}

pub type App = NormalizePath<Router>;

/// Starts the replica's background work: the pubsub listener, the provisioner daemons (with the
/// stale-job detector) and, with prebuilds enabled, the prebuild reconciler. Everything stops when `shutdown` is cancelled.
pub fn start_background(
    state: &AppState,
    shutdown: tokio_util::sync::CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(crate::pubsub::run(
        state.clone(),
        shutdown.clone(),
    ))];
    tasks.extend(crate::provisioner::daemon::start(
        state.clone(),
        state.config.provisioner_daemons,
        shutdown.clone(),
    ));
    tasks.push(tokio::spawn(crate::provisioner::janitor::run(
        state.clone(),
        shutdown.clone(),
    )));
    tasks.extend(crate::prebuilds::reconciler::start(state, shutdown));
    tasks
}

/// The whole HTTP surface: `/healthz`, `/api/v2/...`, JSON 404/405 fallbacks, panic catching, the build
/// version header, request logging, and trailing-slash leniency.
pub fn router(state: AppState) -> App {
    router_with(state, Router::new())
}

/// The router with `extra` API routes merged under `/api/v2` (tests add failure-injecting routes).
pub fn router_with(state: AppState, extra: Router<AppState>) -> App {
    let router = Router::new()
        .route("/healthz", axum::routing::get(|| async { "OK" }))
        .nest("/api/v2", crate::api::routes().merge(extra))
        .nest(
            "/api/experimental",
            crate::workspaces::watch::experimental_routes(),
        )
        .fallback(crate::api::route_not_found)
        .method_not_allowed_fallback(crate::api::method_not_allowed)
        .layer(axum::middleware::from_fn(log_request))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::http::record,
        ))
        .layer(CatchPanicLayer::custom(|_panic| {
            ApiError::internal("handler panicked").into_response()
        }))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-coder-build-version"),
            HeaderValue::from_static(VERSION),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(state);
    NormalizePathLayer::trim_trailing_slash().layer(router)
}

async fn log_request(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(target: "coderd.http", %method, path = %route, status, latency_ms, "request failed");
    } else {
        tracing::debug!(target: "coderd.http", %method, path = %route, status, latency_ms, "request");
    }
    resp
}

/// Sets TCP_NODELAY on every accepted connection. Without it a small write that follows another (an SSE
/// event after the stream's headers, a body's last chunk) waits for the client's delayed ACK: 40 ms on Linux.
pub fn nodelay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt;
    fn set(stream: &mut tokio::net::TcpStream) {
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(target: "coderd.http", %err, "TCP_NODELAY not set on an accepted connection");
        }
    }
    listener.tap_io(set as fn(&mut tokio::net::TcpStream))
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::ServiceExt;
    axum::serve(
        nodelay(listener),
        ServiceExt::<Request>::into_make_service(app),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener;

    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = super::nodelay(listener);
        let client = tokio::spawn(tokio::net::TcpStream::connect(addr));
        let (stream, _) = listener.accept().await;
        assert!(stream.nodelay().unwrap());
        client.await.unwrap().unwrap();
    }
}
