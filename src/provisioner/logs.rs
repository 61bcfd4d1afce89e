//! `?follow` on job log endpoints: a websocket that sends each log line as one JSON text message, in
//! order, then closes normally once the job has completed and every line has been sent.

use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use uuid::Uuid;

use super::jobs;
use crate::api::error::{ApiError, ApiResult};
use crate::api::json::ok;
use crate::api::query::QueryMap;
use crate::app::AppState;

/// The log endpoints of versions and builds: `?after`/`?before` (log ids) filter a JSON array, `?follow`
/// upgrades to a websocket stream.
pub async fn respond(
    state: AppState,
    job_id: Uuid,
    q: &QueryMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let int = |key: &str| -> ApiResult<Option<i64>> {
        match q.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request("Query parameters have invalid values.").validation(
                    key,
                    format!("Query param {key:?} must be a valid integer: {v:?}"),
                )
            }),
        }
    };
    let (after, before) = (int("after")?, int("before")?);
    if q.contains_key("follow") {
        let ws = ws.map_err(|e| {
            ApiError::bad_request("Following logs requires a websocket upgrade.")
                .detail(e.to_string())
        })?;
        return Ok(follow(ws, state, job_id, after));
    }
    Ok(ok(jobs::logs(&state.pool, job_id, after, before).await?))
}

const POLL: Duration = Duration::from_millis(250);

pub fn follow(ws: WebSocketUpgrade, state: AppState, job_id: Uuid, after: Option<i64>) -> Response {
    ws.on_upgrade(move |socket| stream(socket, state, job_id, after))
}

async fn stream(mut socket: WebSocket, state: AppState, job_id: Uuid, mut after: Option<i64>) {
    loop {
        // Completion is read before the logs, so lines written just before completion are never missed.
        let done = match jobs::get(&state.pool, job_id).await {
            Ok(Some(job)) => job.completed_at.is_some(),
            Ok(None) => true,
            Err(err) => {
                tracing::warn!(target: "coderd.provisionerd", job = %job_id, error = %err, "follow logs");
                break;
            }
        };
        let lines = match jobs::logs(&state.pool, job_id, after, None).await {
            Ok(lines) => lines,
            Err(err) => {
                tracing::warn!(target: "coderd.provisionerd", job = %job_id, error = %err, "follow logs");
                break;
            }
        };
        for line in lines {
            after = Some(line.id);
            let Ok(text) = serde_json::to_string(&line) else {
                continue;
            };
            if socket.send(Message::Text(text.into())).await.is_err() {
                return;
            }
        }
        if done {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            msg = socket.recv() => {
                // The client went away (or broke protocol): stop streaming.
                if !matches!(msg, Some(Ok(Message::Ping(_) | Message::Pong(_)))) {
                    return;
                }
            }
        }
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
}
