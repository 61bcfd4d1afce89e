//! HTTP handlers for workspaces and builds.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use axum::Router;
use serde::Deserialize;
use uuid::Uuid;

use super::builds::{self, NewBuild};
use super::params::ResolveInput;
use super::search::{self, OwnerFilter};
use super::store::{self, WorkspaceRow};
use super::types::*;
use crate::api::auth::Auth;
use crate::api::error::{ApiError, ApiResult, MessageResponse, Validation};
use crate::api::json::{created, ok, Json, Validate};
use crate::api::query::{Pagination, QueryMap};
use crate::api::validate;
use crate::app::AppState;
use crate::db;
use crate::orgs::api::resolve_org;
use crate::provisioner::jobs;
use crate::rbac::{Action, Object, Resource};
use crate::templates::api::parse_uuid;
use crate::users::api::resolve_user;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/organizations/{organization}/members/{user}/workspaces",
            post(create_in_org),
        )
        .route("/users/{user}/workspaces", post(create_for_user))
        .route(
            "/users/{user}/workspace/{workspacename}",
            get(get_by_owner_and_name),
        )
        .route("/workspaces", get(list_workspaces))
        .route(
            "/workspaces/{workspace}",
            get(get_workspace).patch(rename_workspace),
        )
        .route(
            "/workspaces/{workspace}/builds",
            get(list_builds).post(create_build),
        )
        .route(
            "/workspaces/{workspace}/watch",
            get(super::watch::watch_workspace),
        )
        .route("/workspaces/{workspace}/ttl", put(put_ttl))
        .route("/workspaces/{workspace}/autostart", put(put_autostart))
        .route("/workspacebuilds/{workspacebuild}", get(get_build))
        .route(
            "/workspacebuilds/{workspacebuild}/cancel",
            patch(cancel_build),
        )
        .route(
            "/workspacebuilds/{workspacebuild}/resources",
            get(build_resources),
        )
        .route(
            "/workspacebuilds/{workspacebuild}/parameters",
            get(build_parameters),
        )
        .route("/workspacebuilds/{workspacebuild}/logs", get(build_logs))
}

fn workspace_object(w: &WorkspaceRow) -> Object {
    Object::new(Resource::Workspace)
        .in_org(w.organization_id)
        .owned_by(w.owner_id)
}

pub(super) async fn assemble_one(state: &AppState, row: WorkspaceRow) -> ApiResult<Workspace> {
    let mut conn = state.pool.acquire().await?;
    let mut tx = store::snapshot(&mut conn).await?;
    let mut list = store::assemble(&mut tx, vec![row], state.clock.now()).await?;
    tx.commit().await?;
    list.pop().ok_or_else(ApiError::not_found)
}

/// Loads a workspace the caller may `action` (404 when it may not even read it).
pub(super) async fn load_workspace(
    state: &AppState,
    auth: &Auth,
    id: &str,
    action: Action,
    include_deleted: bool,
) -> ApiResult<WorkspaceRow> {
    let id = parse_uuid(id)?;
    let mut conn = state.pool.acquire().await?;
    let row = store::workspace_row(&mut conn, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let object = workspace_object(&row);
    if !auth.subject.can(Action::Read, object) {
        return Err(ApiError::not_found());
    }
    if row.deleted && !include_deleted {
        return Err(ApiError::new(
            StatusCode::GONE,
            format!("Workspace {id:?} was deleted, you can view this workspace by specifying '?deleted=true' and trying again."),
        ));
    }
    if !auth.subject.can(action, object) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "You do not have permission to update this workspace.",
        ));
    }
    Ok(row)
}

// ---- create --------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct CreateWorkspaceRequest {
    pub template_id: Option<Uuid>,
    pub template_version_id: Option<Uuid>,
    #[schema(
        required = true,
        min_length = 1,
        max_length = 32,
        pattern = "^[a-zA-Z0-9]+(?:-[a-zA-Z0-9]+)*$"
    )]
    pub name: String,
    pub autostart_schedule: Option<String>,
    pub ttl_ms: Option<i64>,
    pub rich_parameter_values: Vec<WorkspaceBuildParameter>,
    #[schema(value_type = crate::openapi::AutomaticUpdates)]
    pub automatic_updates: String,
    pub template_version_preset_id: Option<Uuid>,
    /// Accepted and ignored (a mid-2025 SDK sent it; claiming is automatic).
    pub claim_prebuild_if_available: bool,
}

impl Validate for CreateWorkspaceRequest {
    fn validate(&self) -> Vec<Validation> {
        let mut v = Vec::new();
        if self.name.is_empty() {
            v.push(Validation::required("name"));
        } else if validate::name_error(&self.name).is_some() {
            v.push(validate::tag_failed("name", "workspace_name", &self.name));
        }
        if !matches!(self.automatic_updates.as_str(), "" | "always" | "never") {
            v.push(validate::tag_failed(
                "automatic_updates",
                "oneof",
                &self.automatic_updates,
            ));
        }
        v
    }
}

#[utoipa::path(
    post,
    path = "/api/v2/organizations/{organization}/members/{user}/workspaces",
    tag = "Workspaces",
    summary = "Create a workspace in an organization",
    params(
        crate::openapi::OrganizationPath,
        crate::openapi::UserPath,
    ),
    request_body = CreateWorkspaceRequest,
    responses(
        (status = 201, description = "The new workspace (or a claimed prebuilt one), its first build queued", body = Workspace),
        (status = 400, description = "Invalid request, template, version, preset or parameters"),
        (status = 403, description = "The caller may not create this workspace"),
        (status = 404, description = "Unknown organization, user or template"),
        (status = 409, description = "The owner already has a workspace with this name"),
    )
)]
async fn create_in_org(
    State(state): State<AppState>,
    auth: Auth,
    Path((organization, user)): Path<(String, String)>,
    Json(req): Json<CreateWorkspaceRequest>,
) -> ApiResult<Response> {
    let org = resolve_org(&state, &auth, &organization, Action::Read).await?;
    super::create::create_workspace(state, auth, Some(org), user, req).await
}

#[utoipa::path(
    post,
    path = "/api/v2/users/{user}/workspaces",
    tag = "Workspaces",
    summary = "Create a workspace",
    params(
        crate::openapi::UserPath,
    ),
    request_body = CreateWorkspaceRequest,
    responses(
        (status = 201, description = "The new workspace (or a claimed prebuilt one), its first build queued", body = Workspace),
        (status = 400, description = "Invalid request, template, version, preset or parameters"),
        (status = 403, description = "The caller may not create this workspace"),
        (status = 404, description = "Unknown user or template"),
        (status = 409, description = "The owner already has a workspace with this name"),
    )
)]
async fn create_for_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(user): Path<String>,
    Json(req): Json<CreateWorkspaceRequest>,
) -> ApiResult<Response> {
    super::create::create_workspace(state, auth, None, user, req).await
}

pub(super) fn validate_ttl(ttl: Option<i64>) -> ApiResult<Option<i64>> {
    match ttl {
        None | Some(0) => Ok(None),
        Some(ms) if ms < 60_000 => {
            Err(ApiError::bad_request("Invalid Workspace Time to Shutdown.")
                .validation("ttl_ms", "time until shutdown must be at least one minute"))
        }
        Some(ms) if ms > 30 * 24 * 3_600_000 => {
            Err(ApiError::bad_request("Invalid Workspace Time to Shutdown.")
                .validation("ttl_ms", "time until shutdown must be less than 30 days"))
        }
        Some(ms) => Ok(Some(ms)),
    }
}

/// Coder's autostart syntax: `[CRON_TZ=<tz> ]<minute> <hour> * * <dow>`.
pub(super) fn validate_autostart(schedule: Option<String>) -> ApiResult<Option<String>> {
    let Some(raw) = schedule.filter(|s| !s.trim().is_empty()) else {
        return Ok(None);
    };
    let invalid = |detail: String| {
        ApiError::bad_request("Invalid Autostart Schedule.").validation("schedule", detail)
    };
    let mut rest = raw.trim();
    if let Some(tz_part) = rest.strip_prefix("CRON_TZ=") {
        let (tz, tail) = tz_part
            .split_once(' ')
            .ok_or_else(|| invalid("missing cron fields after CRON_TZ".into()))?;
        tz.parse::<chrono_tz::Tz>()
            .map_err(|_| invalid(format!("unknown timezone {tz:?}")))?;
        rest = tail.trim();
    }
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(invalid(format!(
            "expected 5 cron fields, got {}",
            fields.len()
        )));
    }
    let num = |s: &str, max: u32| s.parse::<u32>().ok().filter(|n| *n <= max).is_some();
    if !num(fields[0], 59) || !num(fields[1], 23) {
        return Err(invalid("minute and hour must be single numbers".into()));
    }
    if fields[2] != "*" || fields[3] != "*" {
        return Err(invalid("day-of-month and month must be *".into()));
    }
    let dow_ok = fields[4] == "*"
        || fields[4]
            .split(',')
            .all(|part| part.split('-').all(|d| num(d, 7)) && part.split('-').count() <= 2);
    if !dow_ok {
        return Err(invalid(format!("invalid day-of-week {:?}", fields[4])));
    }
    Ok(Some(raw))
}

// ---- read ----------------------------------------------------------------------------------------

fn include_deleted(q: &QueryMap) -> bool {
    q.get("include_deleted").is_some_and(|v| v == "true")
}

#[utoipa::path(
    get,
    path = "/api/v2/workspaces/{workspace}",
    tag = "Workspaces",
    summary = "Get a workspace",
    params(
        crate::openapi::WorkspacePath,
        crate::openapi::IncludeDeletedQuery,
    ),
    responses(
        (status = 200, description = "The workspace", body = Workspace),
        (status = 400, description = "Invalid id"),
        (status = 404, description = "Not found, or not visible to the caller"),
        (status = 410, description = "The workspace was deleted (ask again with `include_deleted=true`)"),
    )
)]
async fn get_workspace(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Response> {
    let row = load_workspace(&state, &auth, &id, Action::Read, include_deleted(&q)).await?;
    Ok(ok(assemble_one(&state, row).await?))
}

#[utoipa::path(
    get,
    path = "/api/v2/users/{user}/workspace/{workspacename}",
    tag = "Workspaces",
    summary = "Get a workspace by owner and name",
    params(
        crate::openapi::UserPath,
        crate::openapi::WorkspaceNamePath,
        crate::openapi::IncludeDeletedQuery,
    ),
    responses(
        (status = 200, description = "The workspace", body = Workspace),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn get_by_owner_and_name(
    State(state): State<AppState>,
    auth: Auth,
    Path((user, name)): Path<(String, String)>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Response> {
    let owner = resolve_user(&state, &auth, &user, Action::Read).await?;
    let mut conn = state.pool.acquire().await?;
    let row =
        store::workspace_row_by_owner_and_name(&mut conn, owner.id, &name, include_deleted(&q))
            .await?
            .filter(|w| auth.subject.can(Action::Read, workspace_object(w)))
            .ok_or_else(ApiError::not_found)?;
    drop(conn);
    Ok(ok(assemble_one(&state, row).await?))
}

/// SQL for a workspace's latest build status (the same table as `build_status`).
const STATUS_SQL: &str = "CASE
    WHEN lb.job_status = 'pending' THEN 'pending'
    WHEN lb.job_status = 'running' THEN CASE lb.transition WHEN 'start' THEN 'starting' WHEN 'stop' THEN 'stopping' ELSE 'deleting' END
    WHEN lb.job_status = 'succeeded' THEN CASE lb.transition WHEN 'start' THEN 'running' WHEN 'stop' THEN 'stopped' ELSE 'deleted' END
    WHEN lb.job_status IN ('canceling', 'canceled') THEN lb.job_status
    ELSE 'failed' END";

/// SQL for an agent's connection status (the same rules as `agent_status`), over `a` and `$now`.
const AGENT_STATUS_SQL: &str = "CASE
    WHEN a.first_connected_at IS NULL OR a.last_connected_at IS NULL THEN
        CASE WHEN a.connection_timeout_seconds > 0
                  AND $1 - a.created_at > make_interval(secs => a.connection_timeout_seconds)
             THEN 'timeout' ELSE 'connecting' END
    WHEN (a.disconnected_at IS NOT NULL AND a.disconnected_at > a.last_connected_at)
         OR $1 - a.last_connected_at > interval '30 seconds' THEN 'disconnected'
    ELSE 'connected' END";

#[utoipa::path(
    get,
    path = "/api/v2/workspaces",
    tag = "Workspaces",
    summary = "Search workspaces",
    params(
        ("q" = Option<String>, Query, description = "Search query: bare terms (name) and `owner:` (`me` or a username), `name:`, `template:`, `status:`, `has-agent:` (connecting, connected, disconnected, timeout), `outdated:`, `dormant:` (true, false), `organization:`, `id:` (comma-separated UUIDs)"),
        crate::openapi::PageQuery,
    ),
    responses(
        (status = 200, description = "One page of the workspaces the caller may read, and the total count", body = WorkspacesResponse),
        (status = 400, description = "Invalid search query or pagination"),
    )
)]
async fn list_workspaces(
    State(state): State<AppState>,
    auth: Auth,
    Query(params): Query<QueryMap>,
) -> ApiResult<Response> {
    let page = Pagination::from_query(&params)?;
    let filter =
        search::parse_workspace_query(params.get("q").map(String::as_str).unwrap_or(""))
            .map_err(|v| ApiError::bad_request("Invalid workspace search query.").validations(v))?;
    let (owner_id, owner_name) = match &filter.owner {
        Some(OwnerFilter::Me) => (Some(auth.user_id()), None),
        Some(OwnerFilter::Username(name)) => (None, Some(name.to_lowercase())),
        None => (None, None),
    };
    let org_id = match &filter.organization {
        Some(reference) => Some(
            crate::orgs::store::resolve(&state.pool, reference)
                .await?
                .map(|o| o.id)
                .unwrap_or(Uuid::nil()),
        ),
        None => None,
    };
    let see_all = auth
        .subject
        .can_site_wide(Action::Read, Resource::Workspace);
    let visible_orgs = auth.subject.orgs_with(Action::Read, Resource::Workspace);
    let from_where = format!(
        "FROM workspaces w
         JOIN users u ON u.id = w.owner_id
         JOIN templates t ON t.id = w.template_id
         JOIN LATERAL (SELECT b.transition, b.template_version_id, b.job_id, j.job_status
                       FROM workspace_builds b JOIN provisioner_jobs j ON j.id = b.job_id
                       WHERE b.workspace_id = w.id ORDER BY b.build_number DESC LIMIT 1) lb ON true
         WHERE (NOT w.deleted OR $6 = 'deleted')
           AND ($2::uuid IS NULL OR w.owner_id = $2)
           AND ($3::text IS NULL OR lower(u.username) = $3)
           AND ($4::text IS NULL OR w.name ILIKE '%' || $4 || '%' ESCAPE '\\')
           AND ($5::text IS NULL OR lower(t.name) = $5)
           AND ($6::text IS NULL OR ({STATUS_SQL}) = $6)
           AND ($7::bool IS NULL OR (lb.template_version_id <> t.active_version_id) = $7)
           AND ($8 OR w.owner_id = $9 OR w.organization_id = ANY($10))
           AND (cardinality($11::uuid[]) = 0 OR w.id = ANY($11))
           AND ($12::uuid IS NULL OR w.organization_id = $12)
           AND ($13::text IS NULL OR EXISTS (
                SELECT 1 FROM workspace_resources r JOIN workspace_agents a ON a.resource_id = r.id
                WHERE r.job_id = lb.job_id AND ({AGENT_STATUS_SQL}) = $13))
           AND ($14::bool IS NULL OR (w.dormant_at IS NOT NULL) = $14)"
    );
    let name = filter.name.clone().map(|n| {
        n.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    });
    macro_rules! bind_filter {
        ($q:expr) => {
            $q.bind(state.clock.now())
                .bind(owner_id)
                .bind(&owner_name)
                .bind(&name)
                .bind(filter.template.clone().map(|t| t.to_lowercase()))
                .bind(filter.status.clone())
                .bind(filter.outdated)
                .bind(see_all)
                .bind(auth.user_id())
                .bind(&visible_orgs)
                .bind(&filter.ids)
                .bind(org_id)
                .bind(filter.has_agent.clone())
                .bind(filter.dormant)
        };
    }
    let mut pooled = state.pool.acquire().await?;
    // The count, the page and the workspaces' builds from one snapshot.
    let mut conn = store::snapshot(&mut pooled).await?;
    let count_sql = format!("SELECT count(*) {from_where}");
    let count: i64 = bind_filter!(sqlx::query_scalar(&count_sql))
        .fetch_one(&mut *conn)
        .await?;
    let page_sql = format!(
        "SELECT w.id {from_where}
         ORDER BY w.favorite DESC, lower(u.username), lower(w.name), w.id LIMIT $15 OFFSET $16"
    );
    let ids: Vec<Uuid> = bind_filter!(sqlx::query_scalar(&page_sql))
        .bind(page.sql_limit())
        .bind(page.offset)
        .fetch_all(&mut *conn)
        .await?;
    let workspace_rows = store::workspace_rows(&mut conn, &ids).await?;
    let workspaces = store::assemble(&mut conn, workspace_rows, state.clock.now()).await?;
    conn.commit().await?;
    Ok(ok(WorkspacesResponse { workspaces, count }))
}

// ---- builds --------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct CreateWorkspaceBuildRequest {
    pub template_version_id: Option<Uuid>,
    #[schema(value_type = crate::openapi::WorkspaceTransition, required = true)]
    pub transition: String,
    pub dry_run: bool,
    pub orphan: bool,
    pub rich_parameter_values: Vec<WorkspaceBuildParameter>,
    #[schema(value_type = crate::openapi::ProvisionerLogLevel)]
    pub log_level: String,
    pub template_version_preset_id: Option<Uuid>,
    pub reason: String,
}

impl Validate for CreateWorkspaceBuildRequest {
    fn validate(&self) -> Vec<Validation> {
        let mut v = Vec::new();
        if self.transition.is_empty() {
            v.push(Validation::required("transition"));
        } else if !matches!(self.transition.as_str(), "start" | "stop" | "delete") {
            v.push(validate::tag_failed(
                "transition",
                "oneof",
                &self.transition,
            ));
        }
        if !matches!(self.log_level.as_str(), "" | "debug") {
            v.push(validate::tag_failed("log_level", "oneof", &self.log_level));
        }
        v
    }
}

#[utoipa::path(
    post,
    path = "/api/v2/workspaces/{workspace}/builds",
    tag = "Builds",
    summary = "Start, stop or delete a workspace (a new build)",
    params(
        crate::openapi::WorkspacePath,
    ),
    request_body = CreateWorkspaceBuildRequest,
    responses(
        (status = 201, description = "The new build, queued", body = WorkspaceBuild),
        (status = 400, description = "Invalid request, version or parameters"),
        (status = 403, description = "The caller may not change the workspace"),
        (status = 404, description = "Not found, or not visible to the caller"),
        (status = 409, description = "A build of the workspace is already active"),
        (status = 410, description = "The workspace was deleted"),
    )
)]
async fn create_build(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(req): Json<CreateWorkspaceBuildRequest>,
) -> ApiResult<Response> {
    let action = if req.transition == "delete" {
        Action::Delete
    } else {
        Action::Update
    };
    let ws = load_workspace(&state, &auth, &id, action, false).await?;
    if req.orphan {
        if req.transition != "delete" {
            return Err(ApiError::bad_request(
                "Orphan is only permitted when deleting a workspace.",
            ));
        }
        if !auth.subject.can(
            Action::Update,
            Object::new(Resource::Template).in_org(ws.organization_id),
        ) {
            return Err(ApiError::forbidden());
        }
    }
    if req.log_level == "debug" {
        return Err(ApiError::bad_request(
            "Terraform debug mode is disabled in the deployment configuration.",
        ));
    }
    let now = state.clock.now();
    let mut tx = state.pool.begin().await?;
    // One build at a time per workspace: lock the workspace, then check the previous build.
    sqlx::query("SELECT id FROM workspaces WHERE id = $1 FOR UPDATE")
        .bind(ws.id)
        .execute(&mut *tx)
        .await?;
    let previous: (Uuid, Uuid, String, Option<Uuid>) = sqlx::query_as(
        "SELECT b.id, b.template_version_id, j.job_status, b.template_version_preset_id
         FROM workspace_builds b JOIN provisioner_jobs j ON j.id = b.job_id
         WHERE b.workspace_id = $1 ORDER BY b.build_number DESC LIMIT 1",
    )
    .bind(ws.id)
    .fetch_one(&mut *tx)
    .await?;
    if matches!(previous.2.as_str(), "pending" | "running" | "canceling") {
        return Err(ApiError::conflict("A workspace build is already active."));
    }
    let version_id = req
        .template_version_id
        .filter(|id| !id.is_nil())
        .unwrap_or(previous.1);
    let version = builds::version_info(&mut tx, version_id)
        .await?
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Template version {:?} doesn't exist.",
                version_id.to_string()
            ))
            .validation("template_version_id", "template version not found")
        })?;
    if version.template_id != Some(ws.template_id) {
        return Err(ApiError::bad_request(
            "template version doesn't match template",
        ));
    }
    builds::check_version_usable(&version)?;
    let requested_preset = req.template_version_preset_id.filter(|id| !id.is_nil());
    if let Some(pid) = requested_preset {
        let belongs: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM template_version_presets WHERE id = $1 AND template_version_id = $2)",
        )
        .bind(pid)
        .bind(version.id)
        .fetch_one(&mut *tx)
        .await?;
        if !belongs {
            return Err(ApiError::bad_request(
                "The preset does not belong to the template version.",
            )
            .validation("template_version_preset_id", "preset not found"));
        }
    }
    let preset_id = requested_preset.or(previous.3.filter(|_| version_id == previous.1));
    let preset_values = match preset_id {
        Some(pid) => builds::preset_values(&mut tx, pid).await?,
        None => Vec::new(),
    };
    let previous_values = builds::build_values(&mut tx, previous.0).await?;
    let specs = builds::param_specs(&mut tx, version.id).await?;
    let requested: Vec<(String, String)> = req
        .rich_parameter_values
        .iter()
        .map(|p| (p.name.clone(), p.value.clone()))
        .collect();
    let values = builds::resolve_params(&ResolveInput {
        specs: &specs,
        previous: &previous_values,
        requested: &requested,
        preset: &preset_values,
        first_build: false,
        transition: &req.transition,
    })?;
    let reason = if req.reason.is_empty() {
        "initiator"
    } else {
        req.reason.as_str()
    };
    let inserted = builds::insert(
        &mut tx,
        &NewBuild {
            workspace_id: ws.id,
            organization_id: ws.organization_id,
            version: &version,
            transition: &req.transition,
            initiator: auth.user_id(),
            reason,
            preset_id,
            params: &values,
            orphan: req.orphan,
            prebuild_claim: false,
            now,
        },
    )
    .await;
    let build_id = match inserted {
        Ok(id) => id,
        Err(err) if db::unique_violation(&err).is_some() => {
            return Err(ApiError::conflict("A workspace build is already active."))
        }
        Err(err) => return Err(err.into()),
    };
    let build = store::load_builds(&mut tx, &[build_id], now)
        .await?
        .pop()
        .ok_or_else(ApiError::not_found)?;
    tx.commit().await?;
    Ok(created(build))
}

#[utoipa::path(
    get,
    path = "/api/v2/workspaces/{workspace}/builds",
    tag = "Builds",
    summary = "List a workspace's builds",
    params(
        crate::openapi::WorkspacePath,
        crate::openapi::PageQuery,
    ),
    responses(
        (status = 200, description = "The builds, newest first", body = Vec<WorkspaceBuild>),
        (status = 400, description = "Invalid id or pagination"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn list_builds(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Response> {
    let page = Pagination::from_query(&q)?;
    let ws = load_workspace(&state, &auth, &id, Action::Read, true).await?;
    let mut conn = state.pool.acquire().await?;
    let mut tx = store::snapshot(&mut conn).await?;
    let ids = store::build_ids_of_workspace(&mut tx, ws.id, page.sql_limit(), page.offset).await?;
    let builds = store::load_builds(&mut tx, &ids, state.clock.now()).await?;
    tx.commit().await?;
    Ok(ok(builds))
}

/// Loads a build and checks the caller may `action` its workspace.
async fn load_build(
    state: &AppState,
    auth: &Auth,
    id: &str,
    action: Action,
) -> ApiResult<(WorkspaceBuild, WorkspaceRow)> {
    let id = parse_uuid(id)?;
    let mut conn = state.pool.acquire().await?;
    let mut tx = store::snapshot(&mut conn).await?;
    let build = store::load_builds(&mut tx, &[id], state.clock.now())
        .await?
        .pop();
    tx.commit().await?;
    drop(conn);
    let build = build.ok_or_else(ApiError::not_found)?;
    let ws = load_workspace(state, auth, &build.workspace_id.to_string(), action, true).await?;
    Ok((build, ws))
}

#[utoipa::path(
    get,
    path = "/api/v2/workspacebuilds/{workspacebuild}",
    tag = "Builds",
    summary = "Get a workspace build",
    params(
        crate::openapi::WorkspaceBuildPath,
    ),
    responses(
        (status = 200, description = "The build", body = WorkspaceBuild),
        (status = 400, description = "Invalid id"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn get_build(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(load_build(&state, &auth, &id, Action::Read).await?.0))
}

#[utoipa::path(
    get,
    path = "/api/v2/workspacebuilds/{workspacebuild}/resources",
    tag = "Builds",
    summary = "A build's resources",
    params(
        crate::openapi::WorkspaceBuildPath,
    ),
    responses(
        (status = 200, description = "The resources (with agents)", body = Vec<WorkspaceResource>),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn build_resources(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(load_build(&state, &auth, &id, Action::Read)
        .await?
        .0
        .resources))
}

#[utoipa::path(
    get,
    path = "/api/v2/workspacebuilds/{workspacebuild}/parameters",
    tag = "Builds",
    summary = "A build's parameter values",
    params(
        crate::openapi::WorkspaceBuildPath,
    ),
    responses(
        (status = 200, description = "The parameter values", body = Vec<WorkspaceBuildParameter>),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn build_parameters(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let (build, _) = load_build(&state, &auth, &id, Action::Read).await?;
    let mut conn = state.pool.acquire().await?;
    let values: Vec<WorkspaceBuildParameter> = builds::build_values(&mut conn, build.id)
        .await?
        .into_iter()
        .map(|(name, value)| WorkspaceBuildParameter { name, value })
        .collect();
    Ok(ok(values))
}

#[utoipa::path(
    get,
    path = "/api/v2/workspacebuilds/{workspacebuild}/logs",
    tag = "Builds",
    summary = "A build's logs",
    params(
        crate::openapi::WorkspaceBuildPath,
        crate::openapi::LogsQuery,
    ),
    responses(
        (status = 200, description = "The log lines (without `follow`)", body = Vec<crate::provisioner::ProvisionerJobLog>),
        (status = 101, description = "With `follow` and a websocket upgrade: one JSON log line per text message, closed when the job has completed"),
        (status = 400, description = "Invalid `after`/`before`, or `follow` without a websocket upgrade"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn build_logs(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<QueryMap>,
    ws: Result<
        axum::extract::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> ApiResult<Response> {
    let (build, _) = load_build(&state, &auth, &id, Action::Read).await?;
    crate::provisioner::logs::respond(state, build.job.id, &q, ws).await
}

#[utoipa::path(
    patch,
    path = "/api/v2/workspacebuilds/{workspacebuild}/cancel",
    tag = "Builds",
    summary = "Cancel a workspace build",
    params(
        crate::openapi::WorkspaceBuildPath,
    ),
    responses(
        (status = 200, description = "The build's job is marked as canceled", body = MessageResponse),
        (status = 400, description = "The job has already completed or been canceled"),
        (status = 403, description = "The caller may not cancel this build"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn cancel_build(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let (build, ws) = load_build(&state, &auth, &id, Action::Update).await?;
    let is_admin = auth.subject.can(
        Action::Update,
        Object::new(Resource::Template).in_org(ws.organization_id),
    );
    if !ws.allow_user_cancel_workspace_jobs && !is_admin {
        return Err(ApiError::forbidden());
    }
    if build.job.completed_at.is_some() {
        return Err(ApiError::bad_request("Job has already completed!"));
    }
    if build.job.canceled_at.is_some() {
        return Err(ApiError::bad_request(
            "Job has already been marked as canceled!",
        ));
    }
    jobs::cancel(&state.pool, build.job.id, state.clock.now()).await?;
    Ok(ok(MessageResponse::new(
        "Job has been marked as canceled...",
    )))
}

// ---- updates -------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct UpdateWorkspaceRequest {
    #[schema(max_length = 32, pattern = "^([a-zA-Z0-9]+(-[a-zA-Z0-9]+)*)?$")]
    pub name: String,
}

impl Validate for UpdateWorkspaceRequest {
    fn validate(&self) -> Vec<Validation> {
        if !self.name.is_empty() && validate::name_error(&self.name).is_some() {
            vec![validate::tag_failed("name", "workspace_name", &self.name)]
        } else {
            Vec::new()
        }
    }
}

#[utoipa::path(
    patch,
    path = "/api/v2/workspaces/{workspace}",
    tag = "Workspaces",
    summary = "Rename a workspace",
    params(
        crate::openapi::WorkspacePath,
    ),
    request_body = UpdateWorkspaceRequest,
    responses(
        (status = 204, description = "Renamed (or the name was empty or unchanged)"),
        (status = 400, description = "Invalid request body (the envelope names the field)"),
        (status = 403, description = "The caller may not update the workspace"),
        (status = 404, description = "Not found, or not visible to the caller"),
        (status = 409, description = "The owner already has a workspace with this name"),
        (status = 410, description = "The workspace was deleted"),
    )
)]
async fn rename_workspace(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(req): Json<UpdateWorkspaceRequest>,
) -> ApiResult<Response> {
    let ws = load_workspace(&state, &auth, &id, Action::Update, false).await?;
    if req.name.is_empty() || req.name == ws.name {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let updated = sqlx::query("UPDATE workspaces SET name = $2, updated_at = $3 WHERE id = $1")
        .bind(ws.id)
        .bind(&req.name)
        .bind(state.clock.now())
        .execute(&state.pool)
        .await;
    match updated {
        Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(err) => Err(ApiError::name_conflict(
            err,
            format!("Workspace {:?} already exists.", req.name),
        )),
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct UpdateWorkspaceTtlRequest {
    pub ttl_ms: Option<i64>,
}
impl Validate for UpdateWorkspaceTtlRequest {}

#[utoipa::path(
    put,
    path = "/api/v2/workspaces/{workspace}/ttl",
    tag = "Workspaces",
    summary = "Set a workspace's time to shutdown",
    params(
        crate::openapi::WorkspacePath,
    ),
    request_body = UpdateWorkspaceTtlRequest,
    responses(
        (status = 204, description = "Updated"),
        (status = 400, description = "TTL under one minute or over 30 days"),
        (status = 403, description = "The caller may not update the workspace"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn put_ttl(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(req): Json<UpdateWorkspaceTtlRequest>,
) -> ApiResult<Response> {
    let ws = load_workspace(&state, &auth, &id, Action::Update, false).await?;
    let ttl = validate_ttl(req.ttl_ms)?;
    sqlx::query("UPDATE workspaces SET ttl_ms = $2, updated_at = $3 WHERE id = $1")
        .bind(ws.id)
        .bind(ttl)
        .bind(state.clock.now())
        .execute(&state.pool)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct UpdateWorkspaceAutostartRequest {
    pub schedule: Option<String>,
}
impl Validate for UpdateWorkspaceAutostartRequest {}

#[utoipa::path(
    put,
    path = "/api/v2/workspaces/{workspace}/autostart",
    tag = "Workspaces",
    summary = "Set a workspace's autostart schedule",
    params(
        crate::openapi::WorkspacePath,
    ),
    request_body = UpdateWorkspaceAutostartRequest,
    responses(
        (status = 204, description = "Updated"),
        (status = 400, description = "Invalid schedule"),
        (status = 403, description = "The caller may not update the workspace"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn put_autostart(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(req): Json<UpdateWorkspaceAutostartRequest>,
) -> ApiResult<Response> {
    let ws = load_workspace(&state, &auth, &id, Action::Update, false).await?;
    let schedule = validate_autostart(req.schedule)?;
    sqlx::query("UPDATE workspaces SET autostart_schedule = $2, updated_at = $3 WHERE id = $1")
        .bind(ws.id)
        .bind(schedule)
        .bind(state.clock.now())
        .execute(&state.pool)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
