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

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::store::{self, workspace_columns, BuildRow, WorkspaceRow};
use super::types::Workspace;
use crate::api::auth::Auth;
use crate::api::error::{ApiError, ApiResult};
use crate::app::AppState;
use crate::config::EXPERIMENT_WORKSPACE_BUILD_UPDATES;
use crate::provisioner::{JobRow, ProvisionerJob};
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
    let workspace_id = row.id;
    let payload = workspace_id.to_string();
    skip_queued(&mut events);
    let first = {
        let mut conn = state.pool.acquire().await?;
        read_workspace(&mut conn, workspace_id, state.clock.now())
            .await?
            .ok_or_else(ApiError::not_found)?
    };
    let (tx, rx) = mpsc::channel::<Event>(16);
    let json = serde_json::to_string(&first).map_err(ApiError::internal)?;
    let _ = tx.send(data_event(&json)).await;
    tokio::spawn(async move {
        loop {
            let relevant = tokio::select! {
                _ = tx.closed() => return,
                e = events.recv() => match e {
                    Ok(PubsubEvent::Message { channel, payload: p }) => {
                        channel == pubsub::WORKSPACE_UPDATES && p == payload
                    }
                    Ok(PubsubEvent::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => true,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if !relevant {
                continue;
            }
            // A burst (e.g. a build that starts and finishes quickly) costs one read, not one per event.
            skip_queued(&mut events);
            let Ok(mut conn) = state.pool.acquire().await else {
                continue;
            };
            let Ok(Some(ws)) = read_workspace(&mut conn, workspace_id, state.clock.now()).await
            else {
                continue;
            };
            drop(conn);
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

/// Drops the events already received: the listener got them after their transactions committed, so a
/// read that starts now sees their changes. Each event only says *what* changed, never how.
fn skip_queued(events: &mut broadcast::Receiver<PubsubEvent>) {
    use broadcast::error::TryRecvError;
    loop {
        match events.try_recv() {
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
            Err(TryRecvError::Empty | TryRecvError::Closed) => return,
        }
    }
}

/// The workspace row, its latest build and that build's job as one statement returns them.
#[derive(sqlx::FromRow)]
struct WorkspaceHead {
    #[sqlx(flatten)]
    workspace: WorkspaceRow,
    b_created_at: DateTime<Utc>,
    b_updated_at: DateTime<Utc>,
    b_template_version_id: Uuid,
    b_build_number: i32,
    b_transition: String,
    b_initiator_id: Uuid,
    b_deadline: Option<DateTime<Utc>>,
    b_max_deadline: Option<DateTime<Utc>>,
    b_reason: String,
    b_daily_cost: i32,
    b_template_version_preset_id: Option<Uuid>,
    b_template_version_name: String,
    b_initiator_name: String,
    job_id: Uuid,
    job_created_at: DateTime<Utc>,
    job_updated_at: DateTime<Utc>,
    job_started_at: Option<DateTime<Utc>>,
    job_canceled_at: Option<DateTime<Utc>>,
    job_completed_at: Option<DateTime<Utc>>,
    job_error: Option<String>,
    job_error_code: Option<String>,
    job_organization_id: Uuid,
    job_initiator_id: Uuid,
    job_provisioner: String,
    job_type: String,
    job_input: sqlx::types::Json<serde_json::Value>,
    job_worker_id: Option<Uuid>,
    job_file_id: Uuid,
    job_tags: sqlx::types::Json<std::collections::BTreeMap<String, String>>,
    job_logs_overflowed: bool,
    job_job_status: String,
    /// `[position, size]` of the job in the queue, `[0, 0]` unless pending.
    queue: Vec<i64>,
    has_resources: bool,
}

/// The workspace, its latest build (as `store::build_rows` reads it) and that build's job with its queue
/// position (as `jobs::load_json` reads it) in one statement.
const HEAD_SELECT: &str = concat!(
    "SELECT ",
    workspace_columns!(),
    ", b.id AS latest_build_id,
       b.created_at AS b_created_at, b.updated_at AS b_updated_at,
       b.template_version_id AS b_template_version_id, b.build_number AS b_build_number,
       b.transition AS b_transition, b.initiator_id AS b_initiator_id, b.deadline AS b_deadline,
       b.max_deadline AS b_max_deadline, b.reason AS b_reason, b.daily_cost AS b_daily_cost,
       b.template_version_preset_id AS b_template_version_preset_id,
       tv.name AS b_template_version_name, iu.username AS b_initiator_name,
       j.id AS job_id, j.created_at AS job_created_at, j.updated_at AS job_updated_at,
       j.started_at AS job_started_at, j.canceled_at AS job_canceled_at,
       j.completed_at AS job_completed_at, j.error AS job_error, j.error_code AS job_error_code,
       j.organization_id AS job_organization_id, j.initiator_id AS job_initiator_id,
       j.provisioner AS job_provisioner, j.type AS job_type, j.input AS job_input,
       j.worker_id AS job_worker_id, j.file_id AS job_file_id, j.tags AS job_tags,
       j.logs_overflowed AS job_logs_overflowed, j.job_status AS job_job_status,
       (SELECT ARRAY[count(*) FILTER (WHERE (q.created_at, q.id) <= (j.created_at, j.id)), count(*)]
        FROM provisioner_jobs q
        WHERE q.started_at IS NULL AND q.canceled_at IS NULL AND j.job_status = 'pending') AS queue,
       EXISTS (SELECT FROM workspace_resources r WHERE r.job_id = j.id) AS has_resources
    FROM workspaces w
    JOIN users u ON u.id = w.owner_id
    JOIN organizations o ON o.id = w.organization_id
    JOIN templates t ON t.id = w.template_id
    JOIN LATERAL (SELECT * FROM workspace_builds lb WHERE lb.workspace_id = w.id
                  ORDER BY lb.build_number DESC LIMIT 1) b ON true
    JOIN template_versions tv ON tv.id = b.template_version_id
    JOIN users iu ON iu.id = b.initiator_id
    JOIN provisioner_jobs j ON j.id = b.job_id
    WHERE w.id = $1"
);

/// The workspace's JSON exactly as `GET /api/v2/workspaces/{id}` builds it (`store::assemble`), in one
/// statement, plus `store::resources_of_jobs` when the latest build has resources.
async fn read_workspace(
    conn: &mut PgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<Workspace>, sqlx::Error> {
    let Some(head): Option<WorkspaceHead> = sqlx::query_as(HEAD_SELECT)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let resources = if head.has_resources {
        store::resources_of_jobs(conn, &[head.job_id], now)
            .await?
            .remove(&head.job_id)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let job = JobRow {
        id: head.job_id,
        created_at: head.job_created_at,
        updated_at: head.job_updated_at,
        started_at: head.job_started_at,
        canceled_at: head.job_canceled_at,
        completed_at: head.job_completed_at,
        error: head.job_error,
        error_code: head.job_error_code,
        organization_id: head.job_organization_id,
        initiator_id: head.job_initiator_id,
        provisioner: head.job_provisioner,
        r#type: head.job_type,
        input: head.job_input,
        worker_id: head.job_worker_id,
        file_id: head.job_file_id,
        tags: head.job_tags,
        logs_overflowed: head.job_logs_overflowed,
        job_status: head.job_job_status,
    };
    let w = head.workspace;
    let build = BuildRow {
        id: w.latest_build_id,
        created_at: head.b_created_at,
        updated_at: head.b_updated_at,
        workspace_id: w.id,
        template_version_id: head.b_template_version_id,
        build_number: head.b_build_number,
        transition: head.b_transition,
        initiator_id: head.b_initiator_id,
        job_id: job.id,
        deadline: head.b_deadline,
        max_deadline: head.b_max_deadline,
        reason: head.b_reason,
        daily_cost: head.b_daily_cost,
        template_version_preset_id: head.b_template_version_preset_id,
        workspace_name: w.name.clone(),
        owner_id: w.owner_id,
        owner_name: w.owner_name.clone(),
        owner_avatar_url: w.owner_avatar_url.clone(),
        template_version_name: head.b_template_version_name,
        initiator_name: head.b_initiator_name,
    };
    let (position, size) = match head.queue.as_slice() {
        [position, size] => (*position, *size),
        _ => (0, 0),
    };
    let job = ProvisionerJob::from_row(&job, position, size);
    Ok(Some(store::workspace_json(
        w,
        store::build_json(build, job, resources),
    )))
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
