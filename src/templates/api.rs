//! HTTP handlers for template versions (create → import job), their parameters, variables, presets and
//! logs, and templates (create, read, list, promote a version).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::store::{self, Template, TemplateRow};
use super::versions::{self, VersionRow};
use crate::api::auth::Auth;
use crate::api::error::{ApiError, ApiResult, MessageResponse, Validation};
use crate::api::json::{created, ok, Json, Validate};
use crate::api::query::QueryMap;
use crate::api::validate;
use crate::app::AppState;
use crate::orgs::api::resolve_org;
use crate::provisioner::{self, jobs, JobInput};
use crate::rbac::{Action, Object, Resource};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/organizations/{organization}/templateversions",
            post(create_version),
        )
        .route(
            "/organizations/{organization}/templates",
            get(list_org_templates).post(create_template),
        )
        .route(
            "/organizations/{organization}/templates/{templatename}",
            get(get_org_template),
        )
        .route("/templates", get(list_all_templates))
        .route(
            "/templates/{template}",
            get(get_template)
                .patch(patch_template)
                .delete(delete_template),
        )
        .route(
            "/templates/{template}/versions",
            get(list_versions).patch(promote_version),
        )
        .route(
            "/templates/{template}/versions/{templateversionname}",
            get(get_version_by_name),
        )
        .route(
            "/templateversions/{templateversion}",
            get(get_version).patch(patch_version),
        )
        .route(
            "/templateversions/{templateversion}/cancel",
            axum::routing::patch(cancel_version),
        )
        .route(
            "/templateversions/{templateversion}/archive",
            post(archive_version),
        )
        .route(
            "/templateversions/{templateversion}/unarchive",
            post(unarchive_version),
        )
        .route(
            "/templateversions/{templateversion}/rich-parameters",
            get(rich_parameters),
        )
        .route(
            "/templateversions/{templateversion}/variables",
            get(variables),
        )
        .route("/templateversions/{templateversion}/presets", get(presets))
        .route(
            "/templateversions/{templateversion}/resources",
            get(version_resources),
        )
        .route("/templateversions/{templateversion}/logs", get(logs))
}

pub fn parse_uuid(value: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(value).map_err(|_| ApiError::invalid_uuid("id", value))
}

fn template_object(org: Uuid) -> Object {
    Object::new(Resource::Template).in_org(org)
}

/// Loads a version the caller may read (404 otherwise).
async fn load_version(state: &AppState, auth: &Auth, id: &str) -> ApiResult<VersionRow> {
    let id = parse_uuid(id)?;
    let row = versions::get(&state.pool, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if !auth
        .subject
        .can(Action::Read, template_object(row.organization_id))
    {
        return Err(ApiError::not_found());
    }
    Ok(row)
}

/// Loads a template the caller may read (404 otherwise).
pub(crate) async fn load_template(
    state: &AppState,
    auth: &Auth,
    id: &str,
) -> ApiResult<TemplateRow> {
    let id = parse_uuid(id)?;
    let row = store::get(&state.pool, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if !auth
        .subject
        .can(Action::Read, template_object(row.organization_id))
    {
        return Err(ApiError::not_found());
    }
    Ok(row)
}

fn require_update(auth: &Auth, org: Uuid) -> ApiResult<()> {
    if auth.subject.can(Action::Update, template_object(org)) {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

// ---- template versions ---------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct CreateTemplateVersionRequest {
    #[schema(max_length = 64, pattern = "^([a-zA-Z0-9]+([_.-][a-zA-Z0-9]+)*)?$")]
    pub name: String,
    pub message: String,
    pub template_id: Option<Uuid>,
    #[schema(value_type = crate::openapi::ProvisionerStorageMethod, required = true)]
    pub storage_method: String,
    #[schema(required = true)]
    pub file_id: Option<Uuid>,
    pub example_id: String,
    #[schema(value_type = crate::openapi::ProvisionerType, required = true)]
    pub provisioner: String,
    pub tags: Option<BTreeMap<String, String>>,
}

impl Validate for CreateTemplateVersionRequest {
    fn validate(&self) -> Vec<Validation> {
        let mut v = Vec::new();
        if self.storage_method.is_empty() {
            v.push(Validation::required("storage_method"));
        } else if self.storage_method != "file" {
            v.push(validate::tag_failed(
                "storage_method",
                "oneof",
                &self.storage_method,
            ));
        }
        if self.provisioner.is_empty() {
            v.push(Validation::required("provisioner"));
        } else if !matches!(self.provisioner.as_str(), "terraform" | "echo") {
            v.push(validate::tag_failed(
                "provisioner",
                "oneof",
                &self.provisioner,
            ));
        }
        if !self.name.is_empty() && validate::version_name_error(&self.name).is_some() {
            v.push(validate::tag_failed(
                "name",
                "template_version_name",
                &self.name,
            ));
        }
        if self.message.len() > 1 << 20 {
            v.push(validate::tag_failed("message", "lt", "1048576"));
        }
        v
    }
}

#[utoipa::path(
    post,
    path = "/api/v2/organizations/{organization}/templateversions",
    tag = "Templates",
    summary = "Create a template version (queues its import)",
    params(
        crate::openapi::OrganizationPath,
    ),
    request_body = CreateTemplateVersionRequest,
    responses(
        (status = 201, description = "The new version, its import job pending", body = versions::TemplateVersion),
        (status = 400, description = "Invalid request body (the envelope names the field)"),
        (status = 403, description = "The caller may not create templates in the organization"),
        (status = 404, description = "Unknown organization, file or template"),
        (status = 409, description = "The template already has a version with this name"),
    )
)]
async fn create_version(
    State(state): State<AppState>,
    auth: Auth,
    Path(organization): Path<String>,
    Json(req): Json<CreateTemplateVersionRequest>,
) -> ApiResult<Response> {
    let org = resolve_org(&state, &auth, &organization, Action::Read).await?;
    if !auth.subject.can(Action::Create, template_object(org.id)) {
        return Err(ApiError::forbidden());
    }
    if !req.example_id.is_empty() {
        return Err(ApiError::bad_request("Example not found.")
            .detail("Template examples are not available on this server."));
    }
    let file_id = req
        .file_id
        .filter(|id| !id.is_nil())
        .ok_or_else(|| ApiError::validation_failed(vec![Validation::required("file_id")]))?;
    let file_exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM files WHERE id = $1)")
        .bind(file_id)
        .fetch_one(&state.pool)
        .await?;
    if !file_exists {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "File not found."));
    }
    let template_id = req.template_id.filter(|id| !id.is_nil());
    if let Some(tid) = template_id {
        let t = store::get(&state.pool, tid).await?;
        if t.map(|t| t.organization_id) != Some(org.id) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "Template does not exist.",
            ));
        }
    }
    let name = if req.name.is_empty() {
        versions::random_name()
    } else {
        req.name.clone()
    };
    let mut tags = provisioner::default_tags();
    if let Some(extra) = &req.tags {
        tags.extend(extra.clone());
    }
    let now = state.clock.now();
    let version_id = Uuid::new_v4();
    let job_id = Uuid::new_v4();
    let mut tx = state.pool.begin().await?;
    let job = jobs::insert(
        &mut tx,
        &jobs::NewJob {
            id: job_id,
            organization_id: org.id,
            initiator_id: auth.user_id(),
            provisioner: &req.provisioner,
            job_type: provisioner::TYPE_TEMPLATE_VERSION_IMPORT,
            input: &serde_json::to_value(JobInput {
                template_version_id: Some(version_id),
                workspace_build_id: None,
            })
            .unwrap_or_default(),
            file_id,
            tags: &tags,
            now,
        },
    )
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO template_versions (id, template_id, organization_id, created_at, updated_at, name, message,
                                        job_id, created_by)
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8)",
    )
    .bind(version_id)
    .bind(template_id)
    .bind(org.id)
    .bind(now)
    .bind(&name)
    .bind(&req.message)
    .bind(job_id)
    .bind(auth.user_id())
    .execute(&mut *tx)
    .await;
    if let Err(err) = inserted {
        return Err(ApiError::name_conflict(
            err,
            format!("A template version with name {name:?} already exists for this template."),
        ));
    }
    // Answer with the state as committed (pending); a daemon may pick the job up right after.
    let row = versions::get(&mut *tx, version_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let (pos, size) = jobs::queue_position(&mut *tx, &job).await?;
    tx.commit().await?;
    Ok(created(versions::with_job(row, &job, pos, size)))
}

#[utoipa::path(
    get,
    path = "/api/v2/templateversions/{templateversion}",
    tag = "Template versions",
    summary = "Get a template version",
    params(
        crate::openapi::TemplateVersionPath,
    ),
    responses(
        (status = 200, description = "The version", body = versions::TemplateVersion),
        (status = 400, description = "Invalid id"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn get_version(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let row = load_version(&state, &auth, &id).await?;
    Ok(ok(versions::to_json(&state.pool, row).await?))
}

/// Coder's `codersdk.TemplateVersionParameter`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TemplateVersionParameter {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    pub description: String,
    pub description_plaintext: String,
    pub r#type: String,
    pub mutable: bool,
    pub default_value: String,
    pub icon: String,
    pub options: Vec<ParameterOption>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub validation_error: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub validation_regex: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_min: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_max: Option<i32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub validation_monotonic: String,
    pub required: bool,
    pub ephemeral: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ParameterOption {
    pub name: String,
    pub description: String,
    pub value: String,
    pub icon: String,
}

#[derive(sqlx::FromRow)]
struct ParameterRow {
    name: String,
    display_name: String,
    description: String,
    r#type: String,
    mutable: bool,
    default_value: String,
    icon: String,
    options: sqlx::types::Json<Vec<ParameterOption>>,
    validation_regex: String,
    validation_min: Option<i32>,
    validation_max: Option<i32>,
    validation_error: String,
    validation_monotonic: String,
    required: bool,
    ephemeral: bool,
}

#[utoipa::path(
    get,
    path = "/api/v2/templateversions/{templateversion}/rich-parameters",
    tag = "Template versions",
    summary = "A version's parameters",
    params(
        crate::openapi::TemplateVersionPath,
    ),
    responses(
        (status = 200, description = "The `coder_parameter`s, in display order", body = Vec<TemplateVersionParameter>),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn rich_parameters(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let version = load_version(&state, &auth, &id).await?;
    let rows: Vec<ParameterRow> = sqlx::query_as(
        "SELECT name, display_name, description, type, mutable, default_value, icon, options, validation_regex,
                validation_min, validation_max, validation_error, validation_monotonic, required, ephemeral
         FROM template_version_parameters WHERE template_version_id = $1 ORDER BY display_order, name",
    )
    .bind(version.id)
    .fetch_all(&state.pool)
    .await?;
    let out: Vec<TemplateVersionParameter> = rows
        .into_iter()
        .map(|r| TemplateVersionParameter {
            description_plaintext: r.description.clone(),
            name: r.name,
            display_name: r.display_name,
            description: r.description,
            r#type: r.r#type,
            mutable: r.mutable,
            default_value: r.default_value,
            icon: r.icon,
            options: r.options.0,
            validation_error: r.validation_error,
            validation_regex: r.validation_regex,
            validation_min: r.validation_min,
            validation_max: r.validation_max,
            validation_monotonic: r.validation_monotonic,
            required: r.required,
            ephemeral: r.ephemeral,
        })
        .collect();
    Ok(ok(out))
}

/// Coder's `codersdk.TemplateVersionVariable`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, sqlx::FromRow, utoipa::ToSchema)]
pub struct TemplateVersionVariable {
    pub name: String,
    pub description: String,
    pub r#type: String,
    pub value: String,
    pub default_value: String,
    pub required: bool,
    pub sensitive: bool,
}

#[utoipa::path(
    get,
    path = "/api/v2/templateversions/{templateversion}/variables",
    tag = "Template versions",
    summary = "A version's Terraform variables",
    params(
        crate::openapi::TemplateVersionPath,
    ),
    responses(
        (status = 200, description = "The variables (sensitive values redacted)", body = Vec<TemplateVersionVariable>),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn variables(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let version = load_version(&state, &auth, &id).await?;
    let mut rows: Vec<TemplateVersionVariable> = sqlx::query_as(
        "SELECT name, description, type, value, default_value, required, sensitive
         FROM template_version_variables WHERE template_version_id = $1 ORDER BY name",
    )
    .bind(version.id)
    .fetch_all(&state.pool)
    .await?;
    for v in rows.iter_mut().filter(|v| v.sensitive) {
        v.value = "*redacted*".into();
        v.default_value = "*redacted*".into();
    }
    Ok(ok(rows))
}

/// Coder's `codersdk.Preset`: no JSON tags upstream, so the keys are the Go field names. The fields after
/// `Icon` are this server's additions (prebuild settings), documented in docs/api.md.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[allow(non_snake_case)]
pub struct Preset {
    pub ID: Uuid,
    pub Name: String,
    pub Parameters: Option<Vec<PresetParameter>>,
    pub Default: bool,
    pub DesiredPrebuildInstances: Option<i32>,
    pub Description: String,
    pub Icon: String,
    pub PrebuildTTLSeconds: Option<i32>,
    pub PrebuildSchedulingTimezone: String,
    pub PrebuildSchedules: Option<Vec<PresetSchedule>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[allow(non_snake_case)]
pub struct PresetParameter {
    pub Name: String,
    pub Value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[allow(non_snake_case)]
pub struct PresetSchedule {
    pub Cron: String,
    pub Instances: i32,
}

#[derive(sqlx::FromRow)]
struct PresetRow {
    id: Uuid,
    name: String,
    is_default: bool,
    desired_instances: Option<i32>,
    description: String,
    icon: String,
    invalidate_after_secs: Option<i32>,
    scheduling_timezone: String,
    parameters: sqlx::types::Json<Vec<(String, String)>>,
    schedules: sqlx::types::Json<Vec<(String, i32)>>,
}

#[utoipa::path(
    get,
    path = "/api/v2/templateversions/{templateversion}/presets",
    tag = "Template versions",
    summary = "A version's presets",
    params(
        crate::openapi::TemplateVersionPath,
    ),
    responses(
        (status = 200, description = "The presets by name, or null when the version has none", body = Option<Vec<Preset>>),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn presets(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let version = load_version(&state, &auth, &id).await?;
    let rows: Vec<PresetRow> = sqlx::query_as(
        "SELECT p.id, p.name, p.is_default, p.desired_instances, p.description, p.icon, p.invalidate_after_secs,
                p.scheduling_timezone,
                COALESCE((SELECT json_agg(json_build_array(pp.name, pp.value) ORDER BY pp.name)
                          FROM template_version_preset_parameters pp WHERE pp.template_version_preset_id = p.id),
                         '[]'::json) AS parameters,
                COALESCE((SELECT json_agg(json_build_array(s.cron_expression, s.desired_instances) ORDER BY s.position)
                          FROM template_version_preset_prebuild_schedules s WHERE s.preset_id = p.id),
                         '[]'::json) AS schedules
         FROM template_version_presets p WHERE p.template_version_id = $1 ORDER BY p.name",
    )
    .bind(version.id)
    .fetch_all(&state.pool)
    .await?;
    // Coder answers `null`, not `[]`, for a version without presets (and for a preset without parameters).
    let out: Option<Vec<Preset>> = (!rows.is_empty()).then(|| {
        rows.into_iter()
            .map(|r| Preset {
                ID: r.id,
                Name: r.name,
                Parameters: (!r.parameters.0.is_empty()).then(|| {
                    r.parameters
                        .0
                        .into_iter()
                        .map(|(name, value)| PresetParameter {
                            Name: name,
                            Value: value,
                        })
                        .collect()
                }),
                Default: r.is_default,
                DesiredPrebuildInstances: r.desired_instances,
                Description: r.description,
                Icon: r.icon,
                PrebuildTTLSeconds: r.invalidate_after_secs,
                PrebuildSchedulingTimezone: r.scheduling_timezone,
                PrebuildSchedules: (!r.schedules.0.is_empty()).then(|| {
                    r.schedules
                        .0
                        .into_iter()
                        .map(|(cron, instances)| PresetSchedule {
                            Cron: cron,
                            Instances: instances,
                        })
                        .collect()
                }),
            })
            .collect()
    });
    Ok(ok(out))
}

#[utoipa::path(
    get,
    path = "/api/v2/templateversions/{templateversion}/logs",
    tag = "Template versions",
    summary = "A version's import logs",
    params(
        crate::openapi::TemplateVersionPath,
        crate::openapi::LogsQuery,
    ),
    responses(
        (status = 200, description = "The log lines (without `follow`)", body = Vec<crate::provisioner::ProvisionerJobLog>),
        (status = 101, description = "With `follow` and a websocket upgrade: one JSON log line per text message, closed when the job has completed"),
        (status = 400, description = "Invalid `after`/`before`, or `follow` without a websocket upgrade"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn logs(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<QueryMap>,
    ws: Result<
        axum::extract::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> ApiResult<Response> {
    let version = load_version(&state, &auth, &id).await?;
    crate::provisioner::logs::respond(state, version.job_id, &q, ws).await
}

// ---- templates -----------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct CreateTemplateRequest {
    #[schema(
        required = true,
        min_length = 1,
        max_length = 32,
        pattern = "^[a-zA-Z0-9]+(?:-[a-zA-Z0-9]+)*$"
    )]
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub icon: String,
    #[schema(required = true)]
    pub template_version_id: Option<Uuid>,
    #[schema(minimum = 0)]
    pub default_ttl_ms: Option<i64>,
    #[schema(minimum = 0)]
    pub activity_bump_ms: Option<i64>,
    pub allow_user_cancel_workspace_jobs: Option<bool>,
    pub allow_user_autostart: Option<bool>,
    pub allow_user_autostop: Option<bool>,
    #[schema(minimum = 0)]
    pub failure_ttl_ms: Option<i64>,
    #[schema(minimum = 0)]
    pub dormant_ttl_ms: Option<i64>,
    #[schema(minimum = 0)]
    pub delete_ttl_ms: Option<i64>,
    pub require_active_version: bool,
}

impl Validate for CreateTemplateRequest {
    fn validate(&self) -> Vec<Validation> {
        let mut v = Vec::new();
        if self.name.is_empty() {
            v.push(Validation::required("name"));
        } else if validate::name_error(&self.name).is_some() {
            v.push(validate::tag_failed("name", "template_name", &self.name));
        }
        if validate::display_name_error(&self.display_name).is_some() {
            v.push(validate::tag_failed(
                "display_name",
                "template_display_name",
                &self.display_name,
            ));
        }
        if self.description.chars().count() > 128 {
            v.push(validate::tag_failed("description", "lt", "128"));
        }
        if self.template_version_id.is_none_or(|id| id.is_nil()) {
            v.push(Validation::required("template_version_id"));
        }
        v
    }
}

#[utoipa::path(
    post,
    path = "/api/v2/organizations/{organization}/templates",
    tag = "Templates",
    summary = "Create a template",
    params(
        crate::openapi::OrganizationPath,
    ),
    request_body = CreateTemplateRequest,
    responses(
        (status = 201, description = "The new template", body = Template),
        (status = 400, description = "Invalid request, or the version is not usable"),
        (status = 403, description = "The caller may not create templates in the organization"),
        (status = 404, description = "Unknown organization or template version"),
        (status = 409, description = "A template with this name exists"),
    )
)]
async fn create_template(
    State(state): State<AppState>,
    auth: Auth,
    Path(organization): Path<String>,
    Json(req): Json<CreateTemplateRequest>,
) -> ApiResult<Response> {
    let org = resolve_org(&state, &auth, &organization, Action::Read).await?;
    if !auth.subject.can(Action::Create, template_object(org.id)) {
        return Err(ApiError::forbidden());
    }
    let mut negative = Vec::new();
    for (field, value) in [
        ("default_ttl_ms", req.default_ttl_ms),
        ("activity_bump_ms", req.activity_bump_ms),
        ("failure_ttl_ms", req.failure_ttl_ms),
        ("dormant_ttl_ms", req.dormant_ttl_ms),
        ("delete_ttl_ms", req.delete_ttl_ms),
    ] {
        if value.is_some_and(|v| v < 0) {
            negative.push(Validation::new(field, "Must be a positive integer."));
        }
    }
    if !negative.is_empty() {
        return Err(ApiError::bad_request("Invalid create template request.").validations(negative));
    }
    let version_id = req.template_version_id.unwrap_or_default();
    let version = versions::get(&state.pool, version_id)
        .await?
        .filter(|v| v.organization_id == org.id)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "Template version {:?} does not exist.",
                    version_id.to_string()
                ),
            )
        })?;
    if version.template_id.is_some() {
        return Err(ApiError::bad_request(format!(
            "Template version {version_id} is already part of a template"
        ))
        .validation(
            "template_version_id",
            "Template version is already part of a template",
        ));
    }
    let job = jobs::get(&state.pool, version.job_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if job.job_status != "succeeded" {
        return Err(ApiError::bad_request(format!(
            "The provided template version {:?} has not imported successfully (status {:?}).",
            version.name, job.job_status
        )));
    }
    let now = state.clock.now();
    let template_id = Uuid::new_v4();
    let mut tx = state.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO templates (id, created_at, updated_at, organization_id, name, display_name, description, icon,
                                provisioner, active_version_id, created_by, default_ttl_ms, activity_bump_ms,
                                allow_user_autostart, allow_user_autostop, allow_user_cancel_workspace_jobs,
                                failure_ttl_ms, time_til_dormant_ms, time_til_dormant_autodelete_ms,
                                require_active_version)
         VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
    )
    .bind(template_id)
    .bind(now)
    .bind(org.id)
    .bind(&req.name)
    .bind(&req.display_name)
    .bind(&req.description)
    .bind(&req.icon)
    .bind(&job.provisioner)
    .bind(version.id)
    .bind(auth.user_id())
    .bind(req.default_ttl_ms.unwrap_or(0))
    .bind(req.activity_bump_ms.unwrap_or(3_600_000))
    .bind(req.allow_user_autostart.unwrap_or(true))
    .bind(req.allow_user_autostop.unwrap_or(true))
    .bind(req.allow_user_cancel_workspace_jobs.unwrap_or(false))
    .bind(req.failure_ttl_ms.unwrap_or(0))
    .bind(req.dormant_ttl_ms.unwrap_or(0))
    .bind(req.delete_ttl_ms.unwrap_or(0))
    .bind(req.require_active_version)
    .execute(&mut *tx)
    .await;
    if let Err(err) = inserted {
        return Err(ApiError::name_conflict(
            err,
            format!("Template with name {:?} already exists.", req.name),
        ));
    }
    // Guarded so two templates can never claim the same version.
    let attached = sqlx::query(
        "UPDATE template_versions SET template_id = $2, updated_at = $3 WHERE id = $1 AND template_id IS NULL",
    )
    .bind(version.id)
    .bind(template_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if attached.rows_affected() != 1 {
        return Err(ApiError::bad_request(format!(
            "Template version {version_id} is already part of a template"
        )));
    }
    tx.commit().await?;
    let row = store::get(&state.pool, template_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(created(Template::from(row)))
}

#[utoipa::path(
    get,
    path = "/api/v2/templates/{template}",
    tag = "Templates",
    summary = "Get a template",
    params(
        crate::openapi::TemplatePath,
    ),
    responses(
        (status = 200, description = "The template", body = Template),
        (status = 400, description = "Invalid template id"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn get_template(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(Template::from(load_template(&state, &auth, &id).await?)))
}

#[utoipa::path(
    get,
    path = "/api/v2/organizations/{organization}/templates/{templatename}",
    tag = "Templates",
    summary = "Get a template by name",
    params(
        crate::openapi::OrganizationPath,
        crate::openapi::TemplateNamePath,
    ),
    responses(
        (status = 200, description = "The template", body = Template),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn get_org_template(
    State(state): State<AppState>,
    auth: Auth,
    Path((organization, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let org = resolve_org(&state, &auth, &organization, Action::Read).await?;
    let row = store::by_name(&state.pool, org.id, &name)
        .await?
        .filter(|t| {
            auth.subject
                .can(Action::Read, template_object(t.organization_id))
        })
        .ok_or_else(ApiError::not_found)?;
    Ok(ok(Template::from(row)))
}

#[utoipa::path(
    get,
    path = "/api/v2/organizations/{organization}/templates",
    tag = "Templates",
    summary = "List an organization's templates",
    params(
        crate::openapi::OrganizationPath,
    ),
    responses(
        (status = 200, description = "The templates", body = Vec<Template>),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn list_org_templates(
    State(state): State<AppState>,
    auth: Auth,
    Path(organization): Path<String>,
) -> ApiResult<Response> {
    let org = resolve_org(&state, &auth, &organization, Action::Read).await?;
    if !auth.subject.can(Action::Read, template_object(org.id)) {
        return Ok(ok(Vec::<Template>::new()));
    }
    let rows = store::list(&state.pool, Some(&[org.id])).await?;
    Ok(ok(rows.into_iter().map(Template::from).collect::<Vec<_>>()))
}

/// `GET /templates?q=`: Coder's template search (`name` fuzzy or a bare term, `exact_name`, `ids`,
/// `deprecated`, `organization`, `deleted`) across the organizations the caller can read.
#[utoipa::path(
    get,
    path = "/api/v2/templates",
    tag = "Templates",
    summary = "Search templates",
    params(
        ("q" = Option<String>, Query, description = "Search query: bare terms and `name:` (substring), `exact_name:`, `ids:` (comma-separated UUIDs), `deprecated:` (true, false), `organization:`, `deleted:` (true, false)"),
    ),
    responses(
        (status = 200, description = "The templates the caller may read", body = Vec<Template>),
        (status = 400, description = "Invalid search query"),
    )
)]
async fn list_all_templates(
    State(state): State<AppState>,
    auth: Auth,
    Query(params): Query<QueryMap>,
) -> ApiResult<Response> {
    let invalid =
        |v: Vec<Validation>| ApiError::bad_request("Invalid template search query.").validations(v);
    let q =
        crate::api::query::SearchQuery::parse(params.get("q").map(String::as_str).unwrap_or(""))
            .map_err(invalid)?;
    let mut errors = q.check_keys(&[
        "name",
        "exact_name",
        "ids",
        "deprecated",
        "organization",
        "deleted",
    ]);
    let mut fuzzy = q.bare();
    fuzzy.extend(q.list("name"));
    let exact = q.single("exact_name", &mut errors);
    let mut bool_param = |key: &str| -> Option<bool> {
        match q.single(key, &mut errors).as_deref() {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                errors.push(Validation::new(
                    key,
                    format!("Query param {key:?} must be a valid boolean: {other:?}"),
                ));
                None
            }
        }
    };
    let deprecated = bool_param("deprecated");
    let deleted = bool_param("deleted").unwrap_or(false);
    let mut ids = Vec::new();
    for raw in q.list("ids") {
        match Uuid::parse_str(&raw) {
            Ok(id) => ids.push(id),
            Err(_) => errors.push(Validation::new(
                "ids",
                format!("Query param \"ids\" has invalid uuid: {raw:?}"),
            )),
        }
    }
    let organization = q.single("organization", &mut errors);
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let org_filter = match organization {
        Some(reference) => Some(
            crate::orgs::store::resolve(&state.pool, &reference)
                .await?
                .map(|o| o.id)
                .unwrap_or(Uuid::nil()),
        ),
        None => None,
    };
    let rows = store::list_filtered(&state.pool, deleted).await?;
    let out: Vec<Template> = rows
        .into_iter()
        .filter(|t| {
            auth.subject
                .can(Action::Read, template_object(t.organization_id))
        })
        .filter(|t| {
            fuzzy
                .iter()
                .all(|f| t.name.to_lowercase().contains(f.as_str()))
        })
        .filter(|t| {
            exact
                .as_ref()
                .is_none_or(|e| t.name.eq_ignore_ascii_case(e))
        })
        .filter(|t| ids.is_empty() || ids.contains(&t.id))
        .filter(|t| deprecated.is_none_or(|d| d != t.deprecated.is_empty()))
        .filter(|t| org_filter.is_none_or(|o| o == t.organization_id))
        .map(Template::from)
        .collect();
    Ok(ok(out))
}

#[utoipa::path(
    get,
    path = "/api/v2/templates/{template}/versions",
    tag = "Templates",
    summary = "List a template's versions",
    params(
        crate::openapi::TemplatePath,
        crate::openapi::IncludeArchivedQuery,
    ),
    responses(
        (status = 200, description = "The versions, oldest first", body = Vec<versions::TemplateVersion>),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn list_versions(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Response> {
    let template = load_template(&state, &auth, &id).await?;
    let include_archived = q.get("include_archived").is_some_and(|v| v == "true");
    Ok(ok(versions::list_json(
        &state.pool,
        template.id,
        include_archived,
    )
    .await?))
}

#[utoipa::path(
    get,
    path = "/api/v2/templates/{template}/versions/{templateversionname}",
    tag = "Templates",
    summary = "Get a template version by name",
    params(
        crate::openapi::TemplatePath,
        crate::openapi::TemplateVersionNamePath,
    ),
    responses(
        (status = 200, description = "The version", body = versions::TemplateVersion),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn get_version_by_name(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let template = load_template(&state, &auth, &id).await?;
    let row = versions::by_template_and_name(&state.pool, template.id, &name)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(ok(versions::to_json(&state.pool, row).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct UpdateActiveTemplateVersion {
    #[schema(required = true)]
    pub id: Option<Uuid>,
}

impl Validate for UpdateActiveTemplateVersion {
    fn validate(&self) -> Vec<Validation> {
        if self.id.is_none_or(|id| id.is_nil()) {
            vec![Validation::required("id")]
        } else {
            Vec::new()
        }
    }
}

#[utoipa::path(
    patch,
    path = "/api/v2/templates/{template}/versions",
    tag = "Templates",
    summary = "Set the active version",
    params(
        crate::openapi::TemplatePath,
    ),
    request_body = UpdateActiveTemplateVersion,
    responses(
        (status = 200, description = "The version is active", body = MessageResponse),
        (status = 400, description = "The version belongs elsewhere, did not import successfully, or is archived"),
        (status = 403, description = "The caller may read but not change this"),
        (status = 404, description = "Unknown template or version"),
    )
)]
async fn promote_version(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(req): Json<UpdateActiveTemplateVersion>,
) -> ApiResult<Response> {
    let template = load_template(&state, &auth, &id).await?;
    require_update(&auth, template.organization_id)?;
    let version_id = req.id.unwrap_or_default();
    let version = versions::get(&state.pool, version_id)
        .await?
        .ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "Template version not found.")
                .validation("id", "template version not found")
        })?;
    if version.template_id != Some(template.id) {
        return Err(ApiError::bad_request(
            "The provided template version doesn't belong to the specified template.",
        ));
    }
    let job = jobs::get(&state.pool, version.job_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if job.job_status != "succeeded" {
        return Err(ApiError::bad_request(
            "The provided template version must have imported successfully before it can be activated.",
        )
        .detail(format!("The import job's status is {:?}.", job.job_status)));
    }
    if version.archived {
        return Err(ApiError::bad_request(
            "The provided template version is archived.",
        ));
    }
    sqlx::query("UPDATE templates SET active_version_id = $2, updated_at = $3 WHERE id = $1")
        .bind(template.id)
        .bind(version.id)
        .bind(state.clock.now())
        .execute(&state.pool)
        .await?;
    Ok(ok(MessageResponse::new(
        "Updated the active template version!",
    )))
}

// ---- version and template changes ----------------------------------------------------------------

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct PatchTemplateVersionRequest {
    #[schema(max_length = 64, pattern = "^([a-zA-Z0-9]+([_.-][a-zA-Z0-9]+)*)?$")]
    pub name: String,
    pub message: Option<String>,
}

impl Validate for PatchTemplateVersionRequest {
    fn validate(&self) -> Vec<Validation> {
        if !self.name.is_empty() && validate::version_name_error(&self.name).is_some() {
            vec![validate::tag_failed(
                "name",
                "template_version_name",
                &self.name,
            )]
        } else {
            Vec::new()
        }
    }
}

#[utoipa::path(
    patch,
    path = "/api/v2/templateversions/{templateversion}",
    tag = "Template versions",
    summary = "Rename a template version or change its message",
    params(
        crate::openapi::TemplateVersionPath,
    ),
    request_body = PatchTemplateVersionRequest,
    responses(
        (status = 200, description = "The updated version", body = versions::TemplateVersion),
        (status = 400, description = "Invalid request body (the envelope names the field)"),
        (status = 403, description = "The caller may read but not change this"),
        (status = 404, description = "Not found, or not visible to the caller"),
        (status = 409, description = "The template already has a version with this name"),
    )
)]
async fn patch_version(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(req): Json<PatchTemplateVersionRequest>,
) -> ApiResult<Response> {
    let version = load_version(&state, &auth, &id).await?;
    require_update(&auth, version.organization_id)?;
    let name = if req.name.is_empty() {
        version.name.clone()
    } else {
        req.name.clone()
    };
    let message = req.message.clone().unwrap_or(version.message.clone());
    let updated = sqlx::query(
        "UPDATE template_versions SET name = $2, message = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(version.id)
    .bind(&name)
    .bind(&message)
    .bind(state.clock.now())
    .execute(&state.pool)
    .await;
    if let Err(err) = updated {
        return Err(ApiError::name_conflict(
            err,
            format!("A template version with name {name:?} already exists for this template."),
        ));
    }
    let row = versions::get(&state.pool, version.id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(ok(versions::to_json(&state.pool, row).await?))
}

#[utoipa::path(
    patch,
    path = "/api/v2/templateversions/{templateversion}/cancel",
    tag = "Template versions",
    summary = "Cancel a version's import",
    params(
        crate::openapi::TemplateVersionPath,
    ),
    responses(
        (status = 200, description = "The import job is marked as canceled", body = MessageResponse),
        (status = 400, description = "The job has already completed or been canceled"),
        (status = 403, description = "The caller may read but not change this"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn cancel_version(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let version = load_version(&state, &auth, &id).await?;
    require_update(&auth, version.organization_id)?;
    let job = jobs::get(&state.pool, version.job_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if job.completed_at.is_some() {
        return Err(ApiError::bad_request("Job has already completed!"));
    }
    if job.canceled_at.is_some() {
        return Err(ApiError::bad_request(
            "Job has already been marked as canceled!",
        ));
    }
    if !jobs::cancel(&state.pool, job.id, state.clock.now()).await? {
        return Err(ApiError::bad_request("Job has already completed!"));
    }
    Ok(ok(MessageResponse::new(
        "Job has been marked as canceled...",
    )))
}

async fn set_archived(
    state: AppState,
    auth: Auth,
    id: String,
    archived: bool,
) -> ApiResult<Response> {
    let version = load_version(&state, &auth, &id).await?;
    require_update(&auth, version.organization_id)?;
    if archived {
        if let Some(tid) = version.template_id {
            if let Some(t) = store::get(&state.pool, tid).await? {
                if t.active_version_id == version.id {
                    return Err(ApiError::bad_request(
                        "You cannot archive the active template version.",
                    ));
                }
            }
        }
        let job = jobs::get(&state.pool, version.job_id)
            .await?
            .ok_or_else(ApiError::not_found)?;
        if matches!(job.job_status.as_str(), "pending" | "running" | "canceling") {
            return Err(ApiError::bad_request(
                "You cannot archive a template version whose import is still in progress.",
            ));
        }
    }
    if version.archived == archived {
        let what = if archived { "archived" } else { "not archived" };
        return Err(ApiError::bad_request(format!(
            "Template version is already {what}."
        )));
    }
    sqlx::query("UPDATE template_versions SET archived = $2, updated_at = $3 WHERE id = $1")
        .bind(version.id)
        .bind(archived)
        .bind(state.clock.now())
        .execute(&state.pool)
        .await?;
    let verb = if archived { "archived" } else { "unarchived" };
    Ok(ok(MessageResponse::new(format!(
        "Template version {verb}."
    ))))
}

#[utoipa::path(
    post,
    path = "/api/v2/templateversions/{templateversion}/archive",
    tag = "Template versions",
    summary = "Archive a template version",
    params(
        crate::openapi::TemplateVersionPath,
    ),
    responses(
        (status = 200, description = "The version is archived", body = MessageResponse),
        (status = 400, description = "Active, still importing, or already archived"),
        (status = 403, description = "The caller may read but not change this"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn archive_version(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    set_archived(state, auth, id, true).await
}

#[utoipa::path(
    post,
    path = "/api/v2/templateversions/{templateversion}/unarchive",
    tag = "Template versions",
    summary = "Unarchive a template version",
    params(
        crate::openapi::TemplateVersionPath,
    ),
    responses(
        (status = 200, description = "The version is no longer archived", body = MessageResponse),
        (status = 400, description = "The version is not archived"),
        (status = 403, description = "The caller may read but not change this"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn unarchive_version(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    set_archived(state, auth, id, false).await
}

/// Coder's `UpdateTemplateMeta`; every field is optional here (absent = unchanged).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct UpdateTemplateMeta {
    #[schema(max_length = 32, pattern = "^([a-zA-Z0-9]+(-[a-zA-Z0-9]+)*)?$")]
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub icon: Option<String>,
    #[schema(minimum = 0)]
    pub default_ttl_ms: Option<i64>,
    #[schema(minimum = 0)]
    pub activity_bump_ms: Option<i64>,
    pub allow_user_autostart: Option<bool>,
    pub allow_user_autostop: Option<bool>,
    pub allow_user_cancel_workspace_jobs: Option<bool>,
    #[schema(minimum = 0)]
    pub failure_ttl_ms: Option<i64>,
    #[schema(minimum = 0)]
    pub time_til_dormant_ms: Option<i64>,
    #[schema(minimum = 0)]
    pub time_til_dormant_autodelete_ms: Option<i64>,
    pub require_active_version: Option<bool>,
    pub deprecation_message: Option<String>,
    #[schema(value_type = Option<crate::openapi::PortShareLevel>)]
    pub max_port_share_level: Option<String>,
}

impl Validate for UpdateTemplateMeta {
    fn validate(&self) -> Vec<Validation> {
        let mut v = Vec::new();
        if let Some(name) = self.name.as_deref().filter(|n| !n.is_empty()) {
            if validate::name_error(name).is_some() {
                v.push(validate::tag_failed("name", "template_name", name));
            }
        }
        if let Some(d) = &self.display_name {
            if validate::display_name_error(d).is_some() {
                v.push(validate::tag_failed(
                    "display_name",
                    "template_display_name",
                    d,
                ));
            }
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 128)
        {
            v.push(validate::tag_failed("description", "lt", "128"));
        }
        for (field, value) in [
            ("default_ttl_ms", self.default_ttl_ms),
            ("activity_bump_ms", self.activity_bump_ms),
            ("failure_ttl_ms", self.failure_ttl_ms),
            ("time_til_dormant_ms", self.time_til_dormant_ms),
            (
                "time_til_dormant_autodelete_ms",
                self.time_til_dormant_autodelete_ms,
            ),
        ] {
            if value.is_some_and(|x| x < 0) {
                v.push(Validation::new(field, "Must be a positive integer."));
            }
        }
        if let Some(level) = &self.max_port_share_level {
            if !matches!(
                level.as_str(),
                "owner" | "authenticated" | "organization" | "public"
            ) {
                v.push(validate::tag_failed("max_port_share_level", "oneof", level));
            }
        }
        v
    }
}

#[utoipa::path(
    patch,
    path = "/api/v2/templates/{template}",
    tag = "Templates",
    summary = "Update a template's settings",
    params(
        crate::openapi::TemplatePath,
    ),
    request_body = UpdateTemplateMeta,
    responses(
        (status = 200, description = "The updated template", body = Template),
        (status = 304, description = "Nothing changed"),
        (status = 400, description = "Invalid request body (the envelope names the field)"),
        (status = 403, description = "The caller may read but not change this"),
        (status = 404, description = "Not found, or not visible to the caller"),
        (status = 409, description = "A template with the new name exists"),
    )
)]
async fn patch_template(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(req): Json<UpdateTemplateMeta>,
) -> ApiResult<Response> {
    let t = load_template(&state, &auth, &id).await?;
    require_update(&auth, t.organization_id)?;
    let mut next = t.clone();
    if let Some(v) = req.name.clone().filter(|n| !n.is_empty()) {
        next.name = v;
    }
    if let Some(v) = req.display_name.clone() {
        next.display_name = v;
    }
    if let Some(v) = req.description.clone() {
        next.description = v;
    }
    if let Some(v) = req.icon.clone() {
        next.icon = v;
    }
    next.default_ttl_ms = req.default_ttl_ms.unwrap_or(t.default_ttl_ms);
    next.activity_bump_ms = req.activity_bump_ms.unwrap_or(t.activity_bump_ms);
    next.allow_user_autostart = req.allow_user_autostart.unwrap_or(t.allow_user_autostart);
    next.allow_user_autostop = req.allow_user_autostop.unwrap_or(t.allow_user_autostop);
    next.allow_user_cancel_workspace_jobs = req
        .allow_user_cancel_workspace_jobs
        .unwrap_or(t.allow_user_cancel_workspace_jobs);
    next.failure_ttl_ms = req.failure_ttl_ms.unwrap_or(t.failure_ttl_ms);
    next.time_til_dormant_ms = req.time_til_dormant_ms.unwrap_or(t.time_til_dormant_ms);
    next.time_til_dormant_autodelete_ms = req
        .time_til_dormant_autodelete_ms
        .unwrap_or(t.time_til_dormant_autodelete_ms);
    next.require_active_version = req
        .require_active_version
        .unwrap_or(t.require_active_version);
    if let Some(v) = req.deprecation_message.clone() {
        next.deprecated = v;
    }
    if let Some(v) = req.max_port_share_level.clone() {
        next.max_port_sharing_level = v;
    }
    let before = Template::from(t.clone());
    let mut after = Template::from(next.clone());
    after.updated_at = before.updated_at;
    if before == after {
        return Ok(axum::response::IntoResponse::into_response(
            StatusCode::NOT_MODIFIED,
        ));
    }
    let updated = sqlx::query(
        "UPDATE templates SET name = $2, display_name = $3, description = $4, icon = $5, default_ttl_ms = $6,
            activity_bump_ms = $7, allow_user_autostart = $8, allow_user_autostop = $9,
            allow_user_cancel_workspace_jobs = $10, failure_ttl_ms = $11, time_til_dormant_ms = $12,
            time_til_dormant_autodelete_ms = $13, require_active_version = $14, deprecated = $15,
            max_port_sharing_level = $16, updated_at = $17
         WHERE id = $1",
    )
    .bind(t.id)
    .bind(&next.name)
    .bind(&next.display_name)
    .bind(&next.description)
    .bind(&next.icon)
    .bind(next.default_ttl_ms)
    .bind(next.activity_bump_ms)
    .bind(next.allow_user_autostart)
    .bind(next.allow_user_autostop)
    .bind(next.allow_user_cancel_workspace_jobs)
    .bind(next.failure_ttl_ms)
    .bind(next.time_til_dormant_ms)
    .bind(next.time_til_dormant_autodelete_ms)
    .bind(next.require_active_version)
    .bind(&next.deprecated)
    .bind(&next.max_port_sharing_level)
    .bind(state.clock.now())
    .execute(&state.pool)
    .await;
    if let Err(err) = updated {
        return Err(ApiError::name_conflict(
            err,
            format!("Template with name {:?} already exists.", next.name),
        ));
    }
    let row = store::get(&state.pool, t.id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(ok(Template::from(row)))
}

#[utoipa::path(
    delete,
    path = "/api/v2/templates/{template}",
    tag = "Templates",
    summary = "Delete a template",
    params(
        crate::openapi::TemplatePath,
    ),
    responses(
        (status = 200, description = "The template is deleted", body = MessageResponse),
        (status = 400, description = "The template still has workspaces, or an invalid id"),
        (status = 403, description = "The caller may read but not change this"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn delete_template(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let t = load_template(&state, &auth, &id).await?;
    if !auth
        .subject
        .can(Action::Delete, template_object(t.organization_id))
    {
        return Err(ApiError::forbidden());
    }
    // The check and the delete are one statement, so a workspace created concurrently is either seen here
    // or refused by its own insert (which needs a live template).
    let deleted = sqlx::query(
        "UPDATE templates SET deleted = true, updated_at = $2
         WHERE id = $1 AND NOT deleted
           AND NOT EXISTS (SELECT 1 FROM workspaces w WHERE w.template_id = $1 AND NOT w.deleted)",
    )
    .bind(t.id)
    .bind(state.clock.now())
    .execute(&state.pool)
    .await?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::bad_request(
            "All workspaces must be deleted before a template can be removed.",
        ));
    }
    Ok(ok(MessageResponse::new("Template has been deleted!")))
}

/// The resources (with agents) the version creates, as evaluated by its import.
#[utoipa::path(
    get,
    path = "/api/v2/templateversions/{templateversion}/resources",
    tag = "Template versions",
    summary = "The resources a version creates",
    params(
        crate::openapi::TemplateVersionPath,
    ),
    responses(
        (status = 200, description = "The resources (with agents) evaluated by the import", body = Vec<crate::workspaces::types::WorkspaceResource>),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn version_resources(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let version = load_version(&state, &auth, &id).await?;
    let mut conn = state.pool.acquire().await?;
    let mut by_job = crate::workspaces::store::resources_of_jobs(
        &mut conn,
        &[version.job_id],
        state.clock.now(),
    )
    .await?;
    Ok(ok(by_job.remove(&version.job_id).unwrap_or_default()))
}
