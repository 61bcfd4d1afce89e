//! Watch streams (server-sent events): `GET /api/v2/workspaces/{id}/watch` sends the workspace JSON at once
//! and again on every change; `GET /api/experimental/watch-all-workspacebuilds` (experiment
//! `workspace-build-updates`, owners only) sends every build status change of every workspace. Both are fed
//! by the replica's LISTEN/NOTIFY subscription, so changes made on any replica reach them.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::{broadcast, mpsc};

use crate::api::auth::Auth;
use crate::api::error::{ApiError, ApiResult};
use crate::app::AppState;
use crate::config::EXPERIMENT_WORKSPACE_BUILD_UPDATES;
use crate::pubsub::{self, Event as PubsubEvent};
use crate::rbac::Action;

pub fn experimental_routes() -> Router<AppState> {
    Router::new()
        .route("/watch-all-workspacebuilds", get(watch_all_builds))
        .fallback(crate::api::route_not_found)
}

/// Turns a channel of SSE events into Coder's SSE response (15 s `ping` events keep proxies from closing it).
pub(crate) fn sse(rx: mpsc::Receiver<Event>) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    let mut resp = Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .event(Event::default().event("ping")),
        )
        .into_response();
    let headers = resp.headers_mut();
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

fn data_event(json: &str) -> Event {
    Event::default().event("data").data(json)
}

#[utoipa::path(
    get,
    path = "/api/v2/workspaces/{workspace}/watch",
    tag = "Workspaces",
    summary = "Watch a workspace (server-sent events)",
    params(
        crate::openapi::WorkspacePath,
    ),
    responses(
        (status = 200, description = "An endless event stream: a `data` event with the workspace JSON at once and after every change; `ping` events every 15 s", body = String, content_type = "text/event-stream"),
        (status = 400, description = "Invalid id"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
pub async fn watch_workspace(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    // Subscribe before the first read, so a change between the two is not missed.
    let mut events = state.pubsub.subscribe();
    let row = super::api::load_workspace(&state, &auth, &id, Action::Read, true).await?;
    let workspace_id = row.id.to_string();
    let first = super::api::assemble_one(&state, row).await?;
    let (tx, rx) = mpsc::channel::<Event>(16);
    let json = serde_json::to_string(&first).map_err(ApiError::internal)?;
    let _ = tx.send(data_event(&json)).await;
    tokio::spawn(async move {
        loop {
            let relevant = tokio::select! {
                _ = tx.closed() => return,
                e = events.recv() => match e {
                    Ok(PubsubEvent::Message { channel, payload }) => {
                        channel == pubsub::WORKSPACE_UPDATES && payload == workspace_id
                    }
                    Ok(PubsubEvent::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => true,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if !relevant {
                continue;
            }
            let Ok(mut conn) = state.pool.acquire().await else {
                continue;
            };
            let Ok(Some(row)) = super::store::workspace_row(&mut conn, first.id).await else {
                continue;
            };
            let Ok(mut list) =
                super::store::assemble(&mut conn, vec![row], state.clock.now()).await
            else {
                continue;
            };
            drop(conn);
            let Some(ws) = list.pop() else { continue };
            let Ok(json) = serde_json::to_string(&ws) else {
                continue;
            };
            if tx.send(data_event(&json)).await.is_err() {
                return;
            }
        }
    });
    Ok(sse(rx))
}

#[utoipa::path(
    get,
    path = "/api/experimental/watch-all-workspacebuilds",
    tag = "Workspaces",
    summary = "Watch every build status change (server-sent events)",
    responses(
        (status = 200, description = "An endless event stream: one `data` event per build status change (`{\"workspace_id\", \"workspace_name\", \"owner_id\", \"build_id\", \"build_number\", \"transition\", \"job_status\", \"changed_at\"}`), `resync` when events may have been missed, `ping` every 15 s", body = String, content_type = "text/event-stream"),
        (status = 403, description = "The `workspace-build-updates` experiment is off, or the caller is not an owner"),
    )
)]
async fn watch_all_builds(State(state): State<AppState>, auth: Auth) -> ApiResult<Response> {
    if !state
        .config
        .experiments
        .enabled(EXPERIMENT_WORKSPACE_BUILD_UPDATES)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "Experiment {EXPERIMENT_WORKSPACE_BUILD_UPDATES:?} is required but not enabled."
            ),
        ));
    }
    if !auth.subject.is_owner() {
        return Err(ApiError::forbidden());
    }
    let mut events = state.pubsub.subscribe();
    let (tx, rx) = mpsc::channel::<Event>(256);
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                _ = tx.closed() => return,
                e = events.recv() => match e {
                    Ok(PubsubEvent::Message { channel, payload }) if channel == pubsub::WORKSPACE_BUILD_UPDATES => {
                        data_event(&payload)
                    }
                    Ok(PubsubEvent::Message { .. }) => continue,
                    // Events may have been missed: tell the client to re-read current state.
                    Ok(PubsubEvent::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        Event::default().event("resync")
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    Ok(sse(rx))
}
