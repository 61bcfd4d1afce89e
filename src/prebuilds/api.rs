//! Prebuild endpoints: Coder's settings (pause/resume) and invalidation, plus a status view
//! (beyond Coder) that shows, per preset, what the reconciler sees and would do now and why.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::plan::Action as PlanAction;
use super::reconciler::{self, PrebuildsSettings, SETTINGS_KEY};
use crate::api::auth::Auth;
use crate::api::error::{ApiError, ApiResult};
use crate::api::json::{ok, Json, Validate};
use crate::app::AppState;
use crate::rbac::{Action, Object, Resource};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/prebuilds/settings", get(get_settings).put(put_settings))
        .route(
            "/templates/{template}/prebuilds/invalidate",
            post(invalidate),
        )
        .route("/templates/{template}/prebuilds", get(template_status))
}

impl Validate for PrebuildsSettings {}

fn require(auth: &Auth, action: Action) -> ApiResult<()> {
    if auth
        .subject
        .can(action, Object::new(Resource::PrebuildSettings))
    {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

#[utoipa::path(
    get,
    path = "/api/v2/prebuilds/settings",
    tag = "Prebuilds",
    summary = "Prebuild reconciliation settings",
    responses(
        (status = 200, description = "The settings", body = PrebuildsSettings),
        (status = 403, description = "Owners only"),
    )
)]
async fn get_settings(State(state): State<AppState>, auth: Auth) -> ApiResult<Response> {
    require(&auth, Action::Read)?;
    Ok(ok(reconciler::settings(&state.pool).await?))
}

/// As Coder: 304 when nothing changes, else 200 with the new settings.
#[utoipa::path(
    put,
    path = "/api/v2/prebuilds/settings",
    tag = "Prebuilds",
    summary = "Pause or resume prebuild reconciliation",
    request_body = PrebuildsSettings,
    responses(
        (status = 200, description = "The new settings", body = PrebuildsSettings),
        (status = 304, description = "Nothing changed"),
        (status = 400, description = "Invalid request body (the envelope names the field)"),
        (status = 403, description = "Owners only"),
    )
)]
async fn put_settings(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<PrebuildsSettings>,
) -> ApiResult<Response> {
    require(&auth, Action::Update)?;
    let current = reconciler::settings(&state.pool).await?;
    if current == req {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let value = serde_json::to_string(&req).map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO site_configs (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(SETTINGS_KEY)
    .bind(value)
    .execute(&state.pool)
    .await?;
    tracing::info!(target: "coderd.prebuilds", paused = req.reconciliation_paused, user = %auth.user_id(),
        "prebuild reconciliation settings changed");
    Ok(ok(req))
}

/// Coder's `codersdk.InvalidatedPreset`.
#[derive(Debug, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct InvalidatedPreset {
    pub template_name: String,
    pub template_version_name: String,
    pub preset_name: String,
}

/// Coder's `codersdk.InvalidatePresetsResponse`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InvalidatePresetsResponse {
    pub invalidated: Vec<InvalidatedPreset>,
}

async fn load_template_for_update(
    state: &AppState,
    auth: &Auth,
    template: &str,
) -> ApiResult<crate::templates::store::TemplateRow> {
    let row = crate::templates::api::load_template(state, auth, template).await?;
    if !auth.subject.can(
        Action::Update,
        Object::new(Resource::Template).in_org(row.organization_id),
    ) {
        return Err(ApiError::not_found());
    }
    Ok(row)
}

/// Expires every current prebuild of the active version's pools: they are replaced over the next
/// ticks (oldest-first deletes, fresh creates).
#[utoipa::path(
    post,
    path = "/api/v2/templates/{template}/prebuilds/invalidate",
    tag = "Prebuilds",
    summary = "Invalidate the prebuilds of a template's active version",
    params(
        crate::openapi::TemplatePath,
    ),
    responses(
        (status = 200, description = "The presets whose prebuilds will be replaced", body = InvalidatePresetsResponse),
        (status = 400, description = "Invalid id"),
        (status = 404, description = "Not found, or the caller may not update the template"),
    )
)]
async fn invalidate(
    State(state): State<AppState>,
    auth: Auth,
    Path(template): Path<String>,
) -> ApiResult<Response> {
    let template = load_template_for_update(&state, &auth, &template).await?;
    let invalidated: Vec<InvalidatedPreset> = sqlx::query_as(
        "UPDATE template_version_presets p SET last_invalidated_at = $2
         FROM templates t, template_versions tv
         WHERE t.id = $1 AND tv.id = t.active_version_id AND p.template_version_id = tv.id
           AND p.desired_instances IS NOT NULL
         RETURNING t.name AS template_name, tv.name AS template_version_name, p.name AS preset_name",
    )
    .bind(template.id)
    .bind(state.clock.now())
    .fetch_all(&state.pool)
    .await?;
    tracing::info!(target: "coderd.prebuilds", template = %template.name, presets = invalidated.len(),
        "invalidated presets");
    Ok(ok(InvalidatePresetsResponse { invalidated }))
}

/// What the reconciler would do for a preset now.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlannedActions {
    pub create: u32,
    pub delete: u32,
    pub cancel: u32,
}

/// One preset's pool as the reconciler sees it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PresetPrebuildStatus {
    pub preset_id: Uuid,
    pub preset_name: String,
    pub template_version_id: Uuid,
    pub template_version_name: String,
    /// On the template's active version (and the template is neither deleted nor deprecated).
    pub active: bool,
    pub desired: i32,
    /// Running prebuilds, expired ones included.
    pub running: i32,
    /// Running, not expired, every agent ready: what a claim can get.
    pub eligible: i32,
    pub starting: i32,
    pub stopping_or_deleting: i32,
    pub expired: i32,
    pub extraneous: i32,
    pub backoff_until: Option<DateTime<Utc>>,
    /// `healthy` or `hard_limited` as the plan computes it now; `invalid` when the stored
    /// configuration cannot be planned.
    pub status: String,
    pub planned: PlannedActions,
    /// Why these actions (or none), in one sentence.
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplatePrebuildsStatus {
    /// The `workspace-prebuilds` experiment is on.
    pub enabled: bool,
    pub reconciliation_paused: bool,
    pub presets: Vec<PresetPrebuildStatus>,
}

#[utoipa::path(
    get,
    path = "/api/v2/templates/{template}/prebuilds",
    tag = "Prebuilds",
    summary = "What the reconciler sees and would do for a template",
    params(
        crate::openapi::TemplatePath,
    ),
    responses(
        (status = 200, description = "Per preset: counts, planned actions and why", body = TemplatePrebuildsStatus),
        (status = 400, description = "Invalid id"),
        (status = 404, description = "Not found, or the caller may not update the template"),
    )
)]
async fn template_status(
    State(state): State<AppState>,
    auth: Auth,
    Path(template): Path<String>,
) -> ApiResult<Response> {
    let template = load_template_for_update(&state, &auth, &template).await?;
    let paused = reconciler::settings(&state.pool)
        .await?
        .reconciliation_paused;
    let mut presets = Vec::new();
    for (p, plan) in reconciler::status(&state, template.id).await? {
        let s = &p.snapshot;
        let Some(plan) = plan else {
            presets.push(PresetPrebuildStatus {
                preset_id: s.preset_id,
                preset_name: s.preset_name.clone(),
                template_version_id: s.template_version_id,
                template_version_name: p.meta.template_version_name.clone(),
                active: s.active,
                desired: 0,
                running: i32::try_from(s.running.len()).unwrap_or(i32::MAX),
                eligible: 0,
                starting: s.starting,
                stopping_or_deleting: s.stopping_or_deleting,
                expired: 0,
                extraneous: 0,
                backoff_until: None,
                status: "invalid".into(),
                planned: PlannedActions::default(),
                reason: p.problem.clone().unwrap_or_default(),
            });
            continue;
        };
        // Inactive presets matter only while they still have prebuilds to clean up.
        if !s.active && s.running.is_empty() && s.starting == 0 && plan.is_noop() {
            continue;
        }
        let mut planned = PlannedActions::default();
        for a in &plan.actions {
            match a {
                PlanAction::Create { count } => planned.create += count,
                PlanAction::Delete { workspace_ids, .. } => {
                    planned.delete += u32::try_from(workspace_ids.len()).unwrap_or(u32::MAX)
                }
                PlanAction::CancelPending { jobs } => {
                    planned.cancel += u32::try_from(jobs.len()).unwrap_or(u32::MAX)
                }
            }
        }
        let mut reason = plan.reason.clone();
        if paused {
            reason = format!("reconciliation is paused (nothing happens until resumed); {reason}");
        } else if !reconciler::enabled(&state) {
            reason =
                format!("prebuilds are disabled (experiment workspace-prebuilds is off); {reason}");
        }
        presets.push(PresetPrebuildStatus {
            preset_id: s.preset_id,
            preset_name: s.preset_name.clone(),
            template_version_id: s.template_version_id,
            template_version_name: p.meta.template_version_name.clone(),
            active: s.active,
            desired: plan.desired,
            running: plan.running,
            eligible: plan.eligible,
            starting: plan.starting,
            stopping_or_deleting: s.stopping_or_deleting,
            expired: plan.expired,
            extraneous: plan.extraneous,
            backoff_until: plan.backoff_until,
            status: if plan.hard_limited {
                "hard_limited".into()
            } else {
                "healthy".into()
            },
            planned,
            reason,
        });
    }
    Ok(ok(TemplatePrebuildsStatus {
        enabled: reconciler::enabled(&state),
        reconciliation_paused: paused,
        presets,
    }))
}
