//! The API request series (recorded by a middleware on the API router, labelled with the route
//! template, never the raw path) and the `/metrics` listener.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use prometheus::Encoder;

use crate::app::AppState;

/// The label for requests no route matched: one value, however many distinct paths arrive.
pub const UNMATCHED: &str = "unmatched";

/// The route template of a request (`/api/v2/workspaces/{workspace}`).
pub fn route_label(req: &Request) -> String {
    match req.extensions().get::<MatchedPath>() {
        Some(p) if !p.as_str().contains("__private__axum") => p.as_str().to_string(),
        _ => UNMATCHED.to_string(),
    }
}

/// Records `coderd_api_requests_processed_total`, `coderd_api_request_latencies_seconds` and
/// `coderd_api_concurrent_requests` for every request.
pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let m = &state.metrics;
    let method = req.method().as_str().to_string();
    let path = route_label(&req);
    m.api_concurrent.inc();
    let start = Instant::now();
    let resp = next.run(req).await;
    m.api_concurrent.dec();
    m.api_latency
        .with_label_values(&[&method, &path])
        .observe(start.elapsed().as_secs_f64());
    m.api_requests
        .with_label_values(&[resp.status().as_str(), &method, &path])
        .inc();
    resp
}

/// Every series in the text exposition format, in two parts: the in-process families (small)
/// encoded now, then the cached database-backed text. The two sets of names are disjoint, so the
/// concatenation is one valid exposition.
pub async fn render_parts(state: &AppState) -> Result<[Bytes; 2], prometheus::Error> {
    let db_text = state.metrics.db_cache.text(state).await;
    let mut families = state.metrics.registry.gather();
    families.extend(state.metrics.agent_stats.gather());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = Vec::with_capacity(16 * 1024);
    prometheus::TextEncoder::new().encode(&families, &mut out)?;
    Ok([Bytes::from(out), db_text])
}

/// Every series in the text exposition format, as one buffer.
pub async fn render(state: &AppState) -> Result<Vec<u8>, prometheus::Error> {
    Ok(render_parts(state).await?.concat())
}

async fn metrics(State(state): State<AppState>) -> Response {
    match render_parts(&state).await {
        // The cached part (megabytes with thousands of agents) goes out without being copied.
        Ok(parts) => (
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            Body::from_stream(futures::stream::iter(
                parts.map(Ok::<_, std::convert::Infallible>),
            )),
        )
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

/// The metrics listener's router: `/metrics` only.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Binds `--prometheus-address` and serves `/metrics` until `shutdown`.
pub async fn serve(
    state: AppState,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(state.config.prometheus_address).await?;
    let addr = listener.local_addr()?;
    tracing::info!(target: "coderd", "Started Prometheus metrics endpoint at http://{addr}/metrics");
    let app = router(state);
    tokio::spawn(async move {
        let _ = axum::serve(crate::app::nodelay(listener), app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    Ok(addr)
}
