//! Workspace quotas: an owner's budget in an organization is the sum of the `quota_allowance` of its
//! groups there; each running workspace (latest build a successful `start`) consumes its build's daily
//! cost (from `coder_metadata { daily_cost }`). A start build over budget fails with "insufficient quota".

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::api::auth::Auth;
use crate::api::error::ApiResult;
use crate::api::json::ok;
use crate::app::AppState;
use crate::orgs::api::resolve_org;
use crate::rbac::Action;
use crate::users::api::resolve_user;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/organizations/{organization}/members/{user}/workspace-quota",
        get(workspace_quota),
    )
}

/// (credits consumed, budget) of `owner` in `org`, leaving out `except` (the workspace being built).
pub async fn usage(
    conn: &mut PgConnection,
    owner: Uuid,
    org: Uuid,
    except: Option<Uuid>,
) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT
            COALESCE((SELECT sum(lb.daily_cost) FROM workspaces w
                      JOIN LATERAL (SELECT b.daily_cost, b.transition, j.job_status
                                    FROM workspace_builds b JOIN provisioner_jobs j ON j.id = b.job_id
                                    WHERE b.workspace_id = w.id ORDER BY b.build_number DESC LIMIT 1) lb ON true
                      WHERE w.owner_id = $1 AND w.organization_id = $2 AND NOT w.deleted
                        AND ($3::uuid IS NULL OR w.id <> $3)
                        AND lb.transition = 'start' AND lb.job_status = 'succeeded'), 0)::bigint,
            COALESCE((SELECT sum(g.quota_allowance) FROM groups g
                      JOIN group_members m ON m.group_id = g.id
                      WHERE m.user_id = $1 AND g.organization_id = $2), 0)::bigint",
    )
    .bind(owner)
    .bind(org)
    .bind(except)
    .fetch_one(conn)
    .await
}

/// Coder's `codersdk.WorkspaceQuota`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkspaceQuota {
    pub credits_consumed: i64,
    pub budget: i64,
}

#[utoipa::path(
    get,
    path = "/api/v2/organizations/{organization}/members/{user}/workspace-quota",
    tag = "Workspaces",
    summary = "A member's workspace quota",
    params(
        crate::openapi::OrganizationPath,
        crate::openapi::UserPath,
    ),
    responses(
        (status = 200, description = "Credits consumed and budget", body = WorkspaceQuota),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn workspace_quota(
    State(state): State<AppState>,
    auth: Auth,
    Path((organization, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    let org = resolve_org(&state, &auth, &organization, Action::Read).await?;
    let user = resolve_user(&state, &auth, &user, Action::Read).await?;
    let mut conn = state.pool.acquire().await?;
    let (credits_consumed, budget) = usage(&mut conn, user.id, org.id, None).await?;
    Ok(ok(WorkspaceQuota {
        credits_consumed,
        budget,
    }))
}
