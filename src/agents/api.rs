//! The workspace agent's REST API (`/workspaceagents/me/...`, authenticated by the agent token) and the
//! user-facing agent reads (`/workspaceagents/{id}`, `/workspaceagents/{id}/logs`).
//!
//! Every authenticated agent call counts as a heartbeat: it sets `first_connected_at` once and refreshes
//! `last_connected_at`, from which the agent's `connected`/`disconnected` status is derived.

use std::collections::BTreeMap;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::Router;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::auth::{token_from_request, Auth};
use crate::api::error::{ApiError, ApiResult, MessageResponse, Validation};
use crate::api::json::{created, ok, Json, Validate};
use crate::api::query::QueryMap;
use crate::app::AppState;
use crate::rbac::{Action, Object, Resource};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/workspaceagents/me/manifest", get(manifest))
        .route(
            "/workspaceagents/me/report-lifecycle",
            post(report_lifecycle),
        )
        .route("/workspaceagents/me/startup", post(startup))
        .route("/workspaceagents/me/metadata", post(post_metadata))
        .route("/workspaceagents/me/report-stats", post(report_stats))
        .route("/workspaceagents/me/logs", patch(patch_logs))
        .route("/workspaceagents/me/log-source", post(post_log_source))
        .route("/workspaceagents/me/rpc", get(rpc_unsupported))
        .route("/workspaceagents/me/reinit", get(reinit))
        .route("/workspaceagents/{workspaceagent}", get(get_agent))
        .route("/workspaceagents/{workspaceagent}/logs", get(agent_logs))
}

/// Coder's fixed id of the log source used by `PATCH /workspaceagents/me/logs` without a source.
pub const EXTERNAL_LOG_SOURCE_ID: Uuid = Uuid::from_u128(0x3b579bf4_1ed8_4b99_87a8_e9a1e3410410);

/// The authenticated agent, bound to its workspace's latest build.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgentIdentity {
    pub agent_id: Uuid,
    pub agent_name: String,
    pub workspace_id: Uuid,
    pub workspace_name: String,
    pub owner_name: String,
    pub directory: String,
    pub environment_variables: sqlx::types::Json<BTreeMap<String, String>>,
    pub startup_script: String,
    pub startup_script_behavior: String,
    pub startup_script_timeout_secs: i32,
    pub motd_file: String,
    pub template_name: String,
}

impl FromRequestParts<AppState> for AgentIdentity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = token_from_request(parts).unwrap_or_default();
        let token = Uuid::parse_str(&token).map_err(|_| {
            ApiError::new(StatusCode::UNAUTHORIZED, "Workspace agent token invalid.").detail(
                format!(
                    "An agent token must be a valid UUIDv4. (len {})",
                    token.len()
                ),
            )
        })?;
        let now = state.clock.now();
        // Resolve the agent only through its workspace's latest build: agents of older builds are refused.
        let identity: Option<AgentIdentity> = sqlx::query_as(
            "WITH me AS (
                UPDATE workspace_agents a
                SET first_connected_at = COALESCE(a.first_connected_at, $2), last_connected_at = $2
                FROM workspace_resources r, workspace_builds b, workspaces w
                WHERE a.auth_token = $1 AND r.id = a.resource_id AND b.job_id = r.job_id AND w.id = b.workspace_id
                  AND NOT w.deleted
                  AND (b.build_number = (SELECT max(build_number) FROM workspace_builds WHERE workspace_id = w.id)
                       -- While a claim build runs, the prebuild's agents (whose tokens it keeps) stay valid.
                       OR EXISTS (SELECT 1 FROM workspace_builds nb JOIN provisioner_jobs nj ON nj.id = nb.job_id
                                  WHERE nb.workspace_id = w.id AND nb.build_number = b.build_number + 1
                                    AND nj.job_status IN ('pending', 'running')
                                    AND (nj.input ->> 'prebuild_claim') = 'true'
                                    AND NOT EXISTS (SELECT 1 FROM workspace_builds later
                                                    WHERE later.workspace_id = w.id
                                                      AND later.build_number > nb.build_number)))
                RETURNING a.id, a.name, a.directory, a.environment_variables, a.startup_script,
                          a.startup_script_behavior, a.startup_script_timeout_secs, a.motd_file, w.id AS wid,
                          w.name AS wname, w.owner_id, w.template_id)
             SELECT me.id AS agent_id, me.name AS agent_name, me.wid AS workspace_id, me.wname AS workspace_name,
                    u.username AS owner_name, me.directory, me.environment_variables, me.startup_script,
                    me.startup_script_behavior, me.startup_script_timeout_secs, me.motd_file,
                    t.name AS template_name
             FROM me JOIN users u ON u.id = me.owner_id JOIN templates t ON t.id = me.template_id",
        )
        .bind(token)
        .bind(now)
        .fetch_optional(&state.pool)
        .await?;
        identity.ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "Workspace agent not authorized.").detail(
                "The agent cannot authenticate until the workspace provision job has been completed. If the job is no longer running, this agent is invalid.",
            )
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct MetadataDescription {
    pub display_name: String,
    pub key: String,
    pub script: String,
    pub interval: i64,
    pub timeout: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AgentScript {
    pub log_source_id: Uuid,
    pub log_path: String,
    pub script: String,
    pub cron: String,
    pub run_on_start: bool,
    pub run_on_stop: bool,
    pub start_blocks_login: bool,
    /// Go `time.Duration`: nanoseconds.
    pub timeout: i64,
    pub display_name: String,
}

/// Coder's agent `Manifest` (legacy REST form).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Manifest {
    pub agent_id: Uuid,
    pub agent_name: String,
    pub owner_name: String,
    pub workspace_id: Uuid,
    pub workspace_name: String,
    pub git_auth_configs: i32,
    pub vscode_port_proxy_uri: String,
    pub apps: Vec<serde_json::Value>,
    pub derpmap: serde_json::Value,
    pub derp_force_websockets: bool,
    pub environment_variables: BTreeMap<String, String>,
    pub directory: String,
    pub motd_file: String,
    pub disable_direct_connections: bool,
    pub metadata: Vec<MetadataDescription>,
    pub scripts: Vec<AgentScript>,
}

/// The log source id of an agent's startup script: stable per agent, so logs group under one source.
pub fn startup_log_source(agent: Uuid) -> Uuid {
    Uuid::new_v5(&agent, b"startup_script")
}

#[utoipa::path(
    get,
    path = "/api/v2/workspaceagents/me/manifest",
    tag = "Agents",
    summary = "The agent's manifest",
    security(("CoderAgentToken" = [])),
    responses(
        (status = 200, description = "What the agent runs and reports", body = Manifest),
    )
)]
async fn manifest(State(state): State<AppState>, me: AgentIdentity) -> ApiResult<Response> {
    let metadata: Vec<MetadataDescription> = sqlx::query_as::<_, (String, String, String, i64, i64)>(
        "SELECT display_name, key, script, interval_secs, timeout_secs FROM workspace_agent_metadata
         WHERE workspace_agent_id = $1 ORDER BY display_order, key",
    )
    .bind(me.agent_id)
    .fetch_all(&state.pool)
    .await?
    .into_iter()
    .map(|(display_name, key, script, interval, timeout)| MetadataDescription {
        display_name,
        key,
        script,
        interval,
        timeout,
    })
    .collect();
    let mut scripts = Vec::new();
    if !me.startup_script.trim().is_empty() {
        scripts.push(AgentScript {
            log_source_id: startup_log_source(me.agent_id),
            log_path: "coder-startup-script.log".into(),
            script: me.startup_script.clone(),
            cron: String::new(),
            run_on_start: true,
            run_on_stop: false,
            start_blocks_login: me.startup_script_behavior == "blocking",
            timeout: i64::from(me.startup_script_timeout_secs) * 1_000_000_000,
            display_name: "Startup Script".into(),
        });
    }
    Ok(ok(Manifest {
        agent_id: me.agent_id,
        agent_name: me.agent_name,
        owner_name: me.owner_name,
        workspace_id: me.workspace_id,
        workspace_name: me.workspace_name,
        git_auth_configs: 0,
        vscode_port_proxy_uri: String::new(),
        apps: Vec::new(),
        derpmap: serde_json::json!({"Regions": {}}),
        derp_force_websockets: false,
        environment_variables: me.environment_variables.0,
        directory: me.directory,
        motd_file: me.motd_file,
        disable_direct_connections: false,
        metadata,
        scripts,
    }))
}

const LIFECYCLE_STATES: &[&str] = &[
    "created",
    "starting",
    "start_timeout",
    "start_error",
    "ready",
    "shutting_down",
    "shutdown_timeout",
    "shutdown_error",
    "off",
];

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct PostLifecycleRequest {
    #[schema(value_type = crate::openapi::WorkspaceAgentLifecycle, required = true)]
    pub state: String,
    pub changed_at: Option<DateTime<Utc>>,
}

impl Validate for PostLifecycleRequest {
    fn validate(&self) -> Vec<Validation> {
        if LIFECYCLE_STATES.contains(&self.state.as_str()) {
            Vec::new()
        } else {
            vec![Validation::new(
                "state",
                format!("invalid lifecycle state {:?}", self.state),
            )]
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/v2/workspaceagents/me/report-lifecycle",
    tag = "Agents",
    summary = "Report a lifecycle state change",
    request_body = PostLifecycleRequest,
    security(("CoderAgentToken" = [])),
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, description = "Invalid request body (the envelope names the field)"),
    )
)]
async fn report_lifecycle(
    State(state): State<AppState>,
    me: AgentIdentity,
    Json(req): Json<PostLifecycleRequest>,
) -> ApiResult<Response> {
    let at = req.changed_at.unwrap_or_else(|| state.clock.now());
    sqlx::query(
        "UPDATE workspace_agents SET lifecycle_state = $2, updated_at = $3,
            started_at = CASE WHEN $2 = 'starting' THEN $3 ELSE started_at END,
            ready_at = CASE WHEN $2 IN ('ready', 'start_error', 'start_timeout') THEN $3 ELSE ready_at END
         WHERE id = $1",
    )
    .bind(me.agent_id)
    .bind(&req.state)
    .bind(at)
    .execute(&state.pool)
    .await?;
    tracing::debug!(target: "coderd.agentapi", agent = %me.agent_id, state = %req.state, "lifecycle");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct PostStartupRequest {
    pub version: String,
    pub expanded_directory: String,
    pub subsystems: Vec<String>,
}
impl Validate for PostStartupRequest {}

#[utoipa::path(
    post,
    path = "/api/v2/workspaceagents/me/startup",
    tag = "Agents",
    summary = "Report the agent's version and directory",
    request_body = PostStartupRequest,
    security(("CoderAgentToken" = [])),
    responses(
        (status = 200, description = "Recorded", body = MessageResponse),
        (status = 400, description = "Invalid request body (the envelope names the field)"),
    )
)]
async fn startup(
    State(state): State<AppState>,
    me: AgentIdentity,
    Json(req): Json<PostStartupRequest>,
) -> ApiResult<Response> {
    sqlx::query(
        "UPDATE workspace_agents SET version = $2, expanded_directory = $3, subsystems = $4, api_version = '1.0',
            updated_at = $5 WHERE id = $1",
    )
    .bind(me.agent_id)
    .bind(&req.version)
    .bind(&req.expanded_directory)
    .bind(&req.subsystems)
    .bind(state.clock.now())
    .execute(&state.pool)
    .await?;
    Ok(ok(MessageResponse::new("Startup reported.")))
}

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(default)]
pub struct MetadataResult {
    pub key: String,
    pub collected_at: Option<DateTime<Utc>>,
    pub age: i64,
    pub value: String,
    pub error: String,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct PostMetadataRequest {
    pub metadata: Vec<MetadataResult>,
}
impl Validate for PostMetadataRequest {}

/// Largest metadata value kept (Coder truncates at 10 KiB).
const MAX_METADATA_VALUE: usize = 10 << 10;

#[utoipa::path(
    post,
    path = "/api/v2/workspaceagents/me/metadata",
    tag = "Agents",
    summary = "Report metadata values",
    request_body = PostMetadataRequest,
    security(("CoderAgentToken" = [])),
    responses(
        (status = 204, description = "Recorded (keys the template does not declare are ignored)"),
        (status = 400, description = "Invalid request body (the envelope names the field)"),
    )
)]
async fn post_metadata(
    State(state): State<AppState>,
    me: AgentIdentity,
    Json(req): Json<PostMetadataRequest>,
) -> ApiResult<Response> {
    let now = state.clock.now();
    let mut keys = Vec::new();
    let mut values = Vec::new();
    let mut errors = Vec::new();
    let mut times = Vec::new();
    for m in req.metadata {
        let mut value = m.value;
        if value.len() > MAX_METADATA_VALUE {
            let mut cut = MAX_METADATA_VALUE;
            while !value.is_char_boundary(cut) {
                cut -= 1;
            }
            value.truncate(cut);
        }
        keys.push(m.key);
        values.push(value);
        errors.push(m.error);
        times.push(m.collected_at.unwrap_or(now));
    }
    // Unknown keys are ignored: only metadata the template declared is stored.
    sqlx::query(
        "UPDATE workspace_agent_metadata m SET value = t.v, error = t.e, collected_at = t.c
         FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS t(k, v, e, c)
         WHERE m.workspace_agent_id = $1 AND m.key = t.k",
    )
    .bind(me.agent_id)
    .bind(&keys)
    .bind(&values)
    .bind(&errors)
    .bind(&times)
    .execute(&state.pool)
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct StatsResponse {
    /// Go `time.Duration`: nanoseconds.
    report_interval: i64,
}

/// How often agents should report (and so heartbeat).
pub const REPORT_INTERVAL_SECS: i64 = 10;

#[utoipa::path(
    post,
    path = "/api/v2/workspaceagents/me/report-stats",
    tag = "Agents",
    summary = "Report statistics (a heartbeat)",
    request_body(content = Option<serde_json::Value>, description = "Coder's `agentsdk.Stats`; any body is accepted (one that is not a stats object is a heartbeat only)"),
    security(("CoderAgentToken" = [])),
    responses(
        (status = 200, description = "When to report next", body = StatsResponse),
    )
)]
async fn report_stats(
    State(state): State<AppState>,
    me: AgentIdentity,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    // The heartbeat happened in the extractor. Statistics feed `coderd_agentstats_*` when enabled;
    // a body that is not Coder's stats object is a heartbeat like any other.
    if state.metrics.agent_stats.enabled() {
        if let Ok(stats) = serde_json::from_slice::<crate::metrics::agent_stats::Stats>(&body) {
            state.metrics.agent_stats.record(
                me.agent_id,
                crate::metrics::agent_stats::AgentLabels {
                    agent_name: me.agent_name.clone(),
                    template_name: me.template_name.clone(),
                    username: me.owner_name.clone(),
                    workspace_name: me.workspace_name.clone(),
                },
                stats,
            );
        }
    }
    Ok(ok(StatsResponse {
        report_interval: REPORT_INTERVAL_SECS * 1_000_000_000,
    }))
}

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(default)]
pub struct AgentLogLine {
    pub created_at: Option<DateTime<Utc>>,
    pub output: String,
    pub level: String,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct PatchLogs {
    pub log_source_id: Option<Uuid>,
    pub logs: Vec<AgentLogLine>,
}
impl Validate for PatchLogs {}

/// Per-agent cap on stored log bytes, as Coder's 1 MiB limit.
const MAX_AGENT_LOG_BYTES: i64 = 1 << 20;

#[utoipa::path(
    patch,
    path = "/api/v2/workspaceagents/me/logs",
    tag = "Agents",
    summary = "Append agent logs",
    request_body = PatchLogs,
    security(("CoderAgentToken" = [])),
    responses(
        (status = 200, description = "Appended", body = MessageResponse),
        (status = 400, description = "Invalid request body (the envelope names the field)"),
        (status = 413, description = "The agent's 1 MiB log limit is exceeded"),
    )
)]
async fn patch_logs(
    State(state): State<AppState>,
    me: AgentIdentity,
    Json(req): Json<PatchLogs>,
) -> ApiResult<Response> {
    if req.logs.is_empty() {
        return Ok(ok(MessageResponse::new("Logs appended.")));
    }
    let source = req
        .log_source_id
        .filter(|id| !id.is_nil())
        .unwrap_or(EXTERNAL_LOG_SOURCE_ID);
    let now = state.clock.now();
    let size: i64 = req.logs.iter().map(|l| l.output.len() as i64).sum();
    let mut tx = state.pool.begin().await?;
    let allowed: Option<i32> = sqlx::query_scalar(
        "UPDATE workspace_agents SET logs_length = logs_length + $2
         WHERE id = $1 AND NOT logs_overflowed AND logs_length + $2 <= $3 RETURNING logs_length",
    )
    .bind(me.agent_id)
    .bind(size as i32)
    .bind(MAX_AGENT_LOG_BYTES as i32)
    .fetch_optional(&mut *tx)
    .await?;
    if allowed.is_none() {
        sqlx::query("UPDATE workspace_agents SET logs_overflowed = true WHERE id = $1")
            .bind(me.agent_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Logs limit exceeded",
        ));
    }
    let outputs: Vec<&str> = req.logs.iter().map(|l| l.output.as_str()).collect();
    let levels: Vec<&str> = req
        .logs
        .iter()
        .map(|l| {
            if l.level.is_empty() {
                "info"
            } else {
                l.level.as_str()
            }
        })
        .collect();
    let times: Vec<DateTime<Utc>> = req
        .logs
        .iter()
        .map(|l| l.created_at.unwrap_or(now))
        .collect();
    sqlx::query(
        "INSERT INTO workspace_agent_logs (agent_id, created_at, output, level, log_source_id)
         SELECT $1, c, o, l, $2 FROM unnest($3::timestamptz[], $4::text[], $5::text[]) AS t(c, o, l)",
    )
    .bind(me.agent_id)
    .bind(source)
    .bind(&times)
    .bind(&outputs)
    .bind(&levels)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ok(MessageResponse::new("Logs appended.")))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct PostLogSourceRequest {
    pub id: Option<Uuid>,
    pub display_name: String,
    pub icon: String,
}
impl Validate for PostLogSourceRequest {}

#[utoipa::path(
    post,
    path = "/api/v2/workspaceagents/me/log-source",
    tag = "Agents",
    summary = "Create or update a log source",
    request_body = PostLogSourceRequest,
    security(("CoderAgentToken" = [])),
    responses(
        (status = 201, description = "The log source", body = crate::openapi::WorkspaceAgentLogSource),
        (status = 400, description = "Invalid request body (the envelope names the field)"),
    )
)]
async fn post_log_source(
    State(state): State<AppState>,
    me: AgentIdentity,
    Json(req): Json<PostLogSourceRequest>,
) -> ApiResult<Response> {
    let id = req
        .id
        .filter(|id| !id.is_nil())
        .unwrap_or_else(Uuid::new_v4);
    let now = state.clock.now();
    sqlx::query(
        "INSERT INTO workspace_agent_log_sources (id, workspace_agent_id, created_at, display_name, icon)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (workspace_agent_id, id) DO UPDATE SET display_name = $4, icon = $5",
    )
    .bind(id)
    .bind(me.agent_id)
    .bind(now)
    .bind(&req.display_name)
    .bind(&req.icon)
    .execute(&state.pool)
    .await?;
    Ok(created(serde_json::json!({
        "workspace_agent_id": me.agent_id, "id": id, "created_at": now,
        "display_name": req.display_name, "icon": req.icon,
    })))
}

#[utoipa::path(
    get,
    path = "/api/v2/workspaceagents/me/rpc",
    tag = "Agents",
    summary = "The dRPC agent API (not served)",
    security(()),
    responses(
        (status = 400, description = "Always: use the REST agent API"),
    )
)]
async fn rpc_unsupported() -> ApiError {
    ApiError::bad_request("The dRPC agent API is not supported by this server.")
        .detail("Use the REST agent API (/api/v2/workspaceagents/me/manifest, report-lifecycle, metadata, logs).")
}

/// Loads an agent for a user who may read its workspace.
async fn load_agent_for_user(state: &AppState, auth: &Auth, id: &str) -> ApiResult<(Uuid, Uuid)> {
    let id = crate::templates::api::parse_uuid(id)?;
    let row: Option<(Uuid, Uuid, Uuid, Uuid)> = sqlx::query_as(
        "SELECT a.id, r.job_id, w.organization_id, w.owner_id FROM workspace_agents a
         JOIN workspace_resources r ON r.id = a.resource_id
         JOIN workspace_builds b ON b.job_id = r.job_id JOIN workspaces w ON w.id = b.workspace_id
         WHERE a.id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
    let (agent, job, org, owner) = row.ok_or_else(ApiError::not_found)?;
    let object = Object::new(Resource::Workspace).in_org(org).owned_by(owner);
    if !auth.subject.can(Action::Read, object) {
        return Err(ApiError::not_found());
    }
    Ok((agent, job))
}

#[utoipa::path(
    get,
    path = "/api/v2/workspaceagents/{workspaceagent}",
    tag = "Agents",
    summary = "Get a workspace agent",
    params(
        crate::openapi::WorkspaceAgentPath,
    ),
    responses(
        (status = 200, description = "The agent", body = crate::workspaces::types::WorkspaceAgent),
        (status = 400, description = "Invalid id"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn get_agent(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let (agent, job) = load_agent_for_user(&state, &auth, &id).await?;
    let mut conn = state.pool.acquire().await?;
    let resources =
        crate::workspaces::store::resources_of_jobs(&mut conn, &[job], state.clock.now()).await?;
    let found = resources
        .into_values()
        .flatten()
        .flat_map(|r| r.agents)
        .find(|a| a.id == agent)
        .ok_or_else(ApiError::not_found)?;
    Ok(ok(found))
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WorkspaceAgentLog {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub output: String,
    pub level: String,
    pub source_id: Uuid,
}

#[utoipa::path(
    get,
    path = "/api/v2/workspaceagents/{workspaceagent}/logs",
    tag = "Agents",
    summary = "A workspace agent's logs",
    params(
        crate::openapi::WorkspaceAgentPath,
        crate::openapi::AgentLogsQuery,
    ),
    responses(
        (status = 200, description = "The log lines, oldest first", body = Vec<WorkspaceAgentLog>),
        (status = 400, description = "Invalid id"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn agent_logs(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Response> {
    let (agent, _) = load_agent_for_user(&state, &auth, &id).await?;
    let after: Option<i64> = q.get("after").and_then(|v| v.parse().ok());
    let logs: Vec<WorkspaceAgentLog> = sqlx::query_as(
        "SELECT id, created_at, output, level, log_source_id AS source_id FROM workspace_agent_logs
         WHERE agent_id = $1 AND ($2::bigint IS NULL OR id > $2) ORDER BY id",
    )
    .bind(agent)
    .bind(after)
    .fetch_all(&state.pool)
    .await?;
    Ok(ok(logs))
}

/// Coder's `agentsdk.ReinitializationEvent`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ReinitializationEvent {
    #[serde(rename = "workspaceID")]
    pub workspace_id: Uuid,
    pub reason: String,
}

/// SSE stream that sends one `prebuild_claimed` event once the agent's workspace no longer belongs
/// to the `prebuilds` user (at once if it already does not), so a prebuild's agent learns about its
/// new owner without a restart.
#[utoipa::path(
    get,
    path = "/api/v2/workspaceagents/me/reinit",
    tag = "Agents",
    summary = "Wait for the prebuilt workspace to be claimed (server-sent events)",
    security(("CoderAgentToken" = [])),
    responses(
        (status = 200, description = "An event stream: one `prebuild_claimed` event (data: a `ReinitializationEvent`) once the workspace is no longer owned by the prebuilds user; `ping` every 15 s", body = String, content_type = "text/event-stream"),
    )
)]
async fn reinit(State(state): State<AppState>, agent: AgentIdentity) -> ApiResult<Response> {
    use crate::pubsub::{self, Event as PubsubEvent};
    use axum::response::sse::Event;
    use tokio::sync::broadcast::error::RecvError;

    // Subscribe before the first read, so a claim in between is not missed.
    let mut events = state.pubsub.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(2);
    let workspace = agent.workspace_id;
    tokio::spawn(async move {
        // A slow fallback in case notifications are lost (listener reconnecting).
        let mut fallback = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            let owner: Result<Option<Uuid>, sqlx::Error> =
                sqlx::query_scalar("SELECT owner_id FROM workspaces WHERE id = $1 AND NOT deleted")
                    .bind(workspace)
                    .fetch_optional(&state.pool)
                    .await;
            match owner {
                Ok(None) => return,
                Ok(Some(owner)) if owner != crate::users::PREBUILDS_USER_ID => {
                    let event = ReinitializationEvent {
                        workspace_id: workspace,
                        reason: "prebuild_claimed".into(),
                    };
                    let data = serde_json::to_string(&event).unwrap_or_default();
                    let _ = tx
                        .send(Event::default().event("prebuild_claimed").data(data))
                        .await;
                    return;
                }
                _ => {}
            }
            tokio::select! {
                _ = tx.closed() => return,
                _ = fallback.tick() => {}
                e = events.recv() => match e {
                    Ok(PubsubEvent::Message { channel, payload })
                        if channel != pubsub::WORKSPACE_UPDATES || payload != workspace.to_string() => {}
                    Err(RecvError::Closed) => return,
                    _ => {}
                },
            }
        }
    });
    Ok(crate::workspaces::watch::sse(rx))
}
