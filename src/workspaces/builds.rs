//! Creating builds: checks shared by workspace creation and `POST /workspaces/{id}/builds` (version state,
//! parameters), and the insert of a build with its provisioner job in the caller's transaction.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::params::{self, ParamSpec, ResolveInput};
use crate::api::error::ApiError;
use crate::provisioner::{self, jobs, JobInput};

/// What a build needs to know about its template version.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionInfo {
    pub id: Uuid,
    pub template_id: Option<Uuid>,
    pub name: String,
    pub job_status: String,
    pub file_id: Uuid,
    pub provisioner: String,
}

pub async fn version_info(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<VersionInfo>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tv.id, tv.template_id, tv.name, j.job_status, j.file_id, j.provisioner
         FROM template_versions tv JOIN provisioner_jobs j ON j.id = tv.job_id WHERE tv.id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Coder's wsbuilder checks on the version's import: pending → 406, failed → 400.
pub fn check_version_usable(v: &VersionInfo) -> Result<(), ApiError> {
    match v.job_status.as_str() {
        "succeeded" => Ok(()),
        "pending" | "running" => Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "The provided template version is pending. Wait for it to complete importing!",
        )),
        other => Err(ApiError::bad_request(format!(
            "The provided template version {other}. You cannot build workspaces with it!"
        ))),
    }
}

#[derive(sqlx::FromRow)]
struct SpecRow {
    name: String,
    display_name: String,
    r#type: String,
    mutable: bool,
    ephemeral: bool,
    required: bool,
    default_value: String,
    options: sqlx::types::Json<Vec<serde_json::Value>>,
    validation_regex: String,
    validation_error: String,
    validation_min: Option<i32>,
    validation_max: Option<i32>,
    validation_monotonic: String,
}

pub async fn param_specs(
    conn: &mut PgConnection,
    version: Uuid,
) -> Result<Vec<ParamSpec>, sqlx::Error> {
    let rows: Vec<SpecRow> = sqlx::query_as(
        "SELECT name, display_name, type, mutable, ephemeral, required, default_value, options,
                validation_regex, validation_error, validation_min, validation_max, validation_monotonic
         FROM template_version_parameters WHERE template_version_id = $1 ORDER BY display_order, name",
    )
    .bind(version)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ParamSpec {
            name: r.name,
            display_name: r.display_name,
            r#type: r.r#type,
            form_type: String::new(),
            mutable: r.mutable,
            ephemeral: r.ephemeral,
            required: r.required,
            default_value: r.default_value,
            options: r
                .options
                .0
                .iter()
                .map(|o| {
                    (
                        o["name"].as_str().unwrap_or_default().to_string(),
                        o["value"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
            validation_regex: r.validation_regex,
            validation_error: r.validation_error,
            validation_min: r.validation_min,
            validation_max: r.validation_max,
            validation_monotonic: r.validation_monotonic,
        })
        .collect())
}

pub async fn preset_values(
    conn: &mut PgConnection,
    preset: Uuid,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT name, value FROM template_version_preset_parameters
         WHERE template_version_preset_id = $1 ORDER BY name",
    )
    .bind(preset)
    .fetch_all(conn)
    .await
}

pub async fn build_values(
    conn: &mut PgConnection,
    build: Uuid,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT name, value FROM workspace_build_parameters WHERE workspace_build_id = $1 ORDER BY name",
    )
    .bind(build)
    .fetch_all(conn)
    .await
}

/// Resolves the build's parameter values, mapping problems to Coder's 400.
pub fn resolve_params(input: &ResolveInput<'_>) -> Result<Vec<(String, String)>, ApiError> {
    params::resolve(input).map_err(|err| {
        ApiError::bad_request(format!(
            "Unable to validate parameter {:?}",
            err.parameter()
        ))
        .detail(err.to_string())
        .validation(err.parameter().to_string(), err.to_string())
    })
}

pub struct NewBuild<'a> {
    pub workspace_id: Uuid,
    pub organization_id: Uuid,
    pub version: &'a VersionInfo,
    pub transition: &'a str,
    pub initiator: Uuid,
    pub reason: &'a str,
    pub preset_id: Option<Uuid>,
    pub params: &'a [(String, String)],
    pub orphan: bool,
    /// The follow-up build of a claimed prebuild: it keeps the running agents (same tokens, state).
    pub prebuild_claim: bool,
    pub now: DateTime<Utc>,
}

/// Inserts the next build of a workspace and its job. The build number comes from the database, and
/// `(workspace_id, build_number)` is unique, so two racing builds cannot both be inserted.
pub async fn insert(conn: &mut PgConnection, b: &NewBuild<'_>) -> Result<Uuid, sqlx::Error> {
    let build_id = Uuid::new_v4();
    let job_id = Uuid::new_v4();
    let mut input = serde_json::to_value(JobInput {
        template_version_id: None,
        workspace_build_id: Some(build_id),
    })
    .unwrap_or_default();
    if b.orphan {
        input["orphan"] = serde_json::Value::Bool(true);
    }
    if b.prebuild_claim {
        input["prebuild_claim"] = serde_json::Value::Bool(true);
    }
    let tags = provisioner::default_tags();
    jobs::insert(
        &mut *conn,
        &jobs::NewJob {
            id: job_id,
            organization_id: b.organization_id,
            initiator_id: b.initiator,
            provisioner: &b.version.provisioner,
            job_type: provisioner::TYPE_WORKSPACE_BUILD,
            input: &input,
            file_id: b.version.file_id,
            tags: &tags,
            now: b.now,
        },
    )
    .await?;
    sqlx::query(
        "INSERT INTO workspace_builds (id, created_at, updated_at, workspace_id, template_version_id, build_number,
                                       transition, initiator_id, job_id, reason, template_version_preset_id)
         SELECT $1, $2, $2, $3, $4, COALESCE(MAX(build_number), 0) + 1, $5, $6, $7, $8, $9
         FROM workspace_builds WHERE workspace_id = $3",
    )
    .bind(build_id)
    .bind(b.now)
    .bind(b.workspace_id)
    .bind(b.version.id)
    .bind(b.transition)
    .bind(b.initiator)
    .bind(job_id)
    .bind(b.reason)
    .bind(b.preset_id)
    .execute(&mut *conn)
    .await?;
    if !b.params.is_empty() {
        let names: Vec<&str> = b.params.iter().map(|(n, _)| n.as_str()).collect();
        let values: Vec<&str> = b.params.iter().map(|(_, v)| v.as_str()).collect();
        sqlx::query(
            "INSERT INTO workspace_build_parameters (workspace_build_id, name, value)
             SELECT $1, n, v FROM unnest($2::text[], $3::text[]) AS t(n, v)",
        )
        .bind(build_id)
        .bind(&names)
        .bind(&values)
        .execute(&mut *conn)
        .await?;
    }
    Ok(build_id)
}
