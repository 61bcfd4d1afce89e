//! `GET /api/v2/notifications/inbox`: the caller's notifications, newest first, in Coder's
//! `ListInboxNotificationsResponse` shape.

use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::auth::Auth;
use crate::api::error::{ApiError, ApiResult};
use crate::api::json::ok;
use crate::api::query::QueryMap;
use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/notifications/inbox", get(list_inbox))
}

/// Coder's `codersdk.InboxNotificationAction`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InboxNotificationAction {
    pub label: String,
    pub url: String,
}

/// Coder's `codersdk.InboxNotification`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InboxNotification {
    pub id: Uuid,
    pub user_id: Uuid,
    pub template_id: String,
    pub targets: Vec<Uuid>,
    pub title: String,
    pub content: String,
    pub icon: String,
    pub actions: Vec<InboxNotificationAction>,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Structured details (beyond Coder's shape): what the notification is about.
    pub payload: serde_json::Value,
}

/// Coder's `codersdk.ListInboxNotificationsResponse`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ListInboxNotificationsResponse {
    pub notifications: Vec<InboxNotification>,
    pub unread_count: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    user_id: Uuid,
    template: String,
    title: String,
    body: String,
    payload: sqlx::types::Json<serde_json::Value>,
    read_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

/// At most this many per page, as Coder's inbox.
const PAGE: i64 = 25;

#[utoipa::path(
    get,
    path = "/api/v2/notifications/inbox",
    tag = "Notifications",
    summary = "The caller's inbox (newest 25)",
    params(
        crate::openapi::InboxQuery,
    ),
    responses(
        (status = 200, description = "The notifications and the unread count", body = ListInboxNotificationsResponse),
        (status = 400, description = "Invalid `read_status`"),
    )
)]
async fn list_inbox(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<QueryMap>,
) -> ApiResult<Response> {
    let read_status = q.get("read_status").map(String::as_str).unwrap_or("all");
    if !matches!(read_status, "all" | "read" | "unread") {
        return Err(ApiError::bad_request("Invalid query parameters.")
            .validation("read_status", "must be one of all, read, unread"));
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, user_id, template, title, body, payload, read_at, created_at FROM notification_messages
         WHERE user_id = $1
           AND ($2 = 'all' OR ($2 = 'read') = (read_at IS NOT NULL))
         ORDER BY created_at DESC, id DESC LIMIT $3",
    )
    .bind(auth.user_id())
    .bind(read_status)
    .bind(PAGE)
    .fetch_all(&state.pool)
    .await?;
    let unread_count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notification_messages WHERE user_id = $1 AND read_at IS NULL",
    )
    .bind(auth.user_id())
    .fetch_one(&state.pool)
    .await?;
    let notifications = rows
        .into_iter()
        .map(|r| {
            let targets = r.payload.0["workspace_id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .into_iter()
                .collect();
            InboxNotification {
                id: r.id,
                user_id: r.user_id,
                template_id: r.template,
                targets,
                title: r.title,
                content: r.body,
                icon: String::new(),
                actions: Vec::new(),
                read_at: r.read_at,
                created_at: r.created_at,
                payload: r.payload.0,
            }
        })
        .collect();
    Ok(ok(ListInboxNotificationsResponse {
        notifications,
        unread_count,
    }))
}
