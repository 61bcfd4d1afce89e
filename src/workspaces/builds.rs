//! Creating builds: checks shared by workspace creation and `POST /workspaces/{id}/builds` (version state,
//! parameters), and the insert of a build with its provisioner job in the caller's transaction.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, PgConnection};
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

/// A `template_version_parameters` row, read as a row or as a JSON object (the create path reads the
/// specs together with everything else it needs, as one JSON array).
#[derive(sqlx::FromRow, serde::Deserialize)]
pub struct SpecRow {
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
    Ok(rows.into_iter().map(SpecRow::into_spec).collect())
}

impl SpecRow {
    pub fn into_spec(self) -> ParamSpec {
        let r = self;
        ParamSpec {
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
        }
    }
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

/// The CTEs that queue a build of the workspace(s) in a CTE named `w` (columns `id`, `organization_id`):
/// its provisioner job with the job-posted notification, the build (its number from the database, and
/// `(workspace_id, build_number)` is unique, so two racing builds cannot both be inserted) and its
/// parameter values. Parameters `$1`..`$16` are [`BuildArgs::push`]'s; the caller's own start at `$17`.
/// Exposes `build` (`id`, `build_number`) and `notified` (one row once the notification is queued).
pub const BUILD_CTES: &str = "job AS (
        INSERT INTO provisioner_jobs (id, created_at, updated_at, organization_id, initiator_id, provisioner,
                                      type, input, file_id, tags)
        SELECT $2, $1, $1, w.organization_id, $3, $4, $16, $5, $6, $7 FROM w RETURNING id),
    notified AS (SELECT pg_notify($15, job.id::text) FROM job),
    build AS (
        INSERT INTO workspace_builds (id, created_at, updated_at, workspace_id, template_version_id, build_number,
                                      transition, initiator_id, job_id, reason, template_version_preset_id)
        SELECT $8, $1, $1, w.id, $9,
               COALESCE((SELECT max(b.build_number) FROM workspace_builds b WHERE b.workspace_id = w.id), 0) + 1,
               $10, $3, $2, $11, $12
        FROM w RETURNING id, build_number),
    build_params AS (
        INSERT INTO workspace_build_parameters (workspace_build_id, name, value)
        SELECT b.id, t.n, t.v FROM build b, unnest($13::text[], $14::text[]) AS t(n, v))";

/// The bound values of [`BUILD_CTES`] for one build, and what the caller needs to describe it.
pub struct BuildArgs {
    pub build_id: Uuid,
    pub job_id: Uuid,
    pub input: serde_json::Value,
    pub tags: std::collections::BTreeMap<String, String>,
}

impl BuildArgs {
    pub fn new(b: &NewBuild<'_>) -> Self {
        let build_id = Uuid::new_v4();
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
        Self {
            build_id,
            job_id: Uuid::new_v4(),
            input,
            tags: provisioner::default_tags(),
        }
    }

    /// Appends `$1`..`$16` to `args`.
    pub fn push(&self, args: &mut PgArguments, b: &NewBuild<'_>) -> Result<(), sqlx::Error> {
        let names: Vec<&str> = b.params.iter().map(|(n, _)| n.as_str()).collect();
        let values: Vec<&str> = b.params.iter().map(|(_, v)| v.as_str()).collect();
        let add = |r: Result<(), sqlx::error::BoxDynError>| r.map_err(sqlx::Error::Encode);
        add(args.add(b.now))?;
        add(args.add(self.job_id))?;
        add(args.add(b.initiator))?;
        add(args.add(b.version.provisioner.as_str()))?;
        add(args.add(sqlx::types::Json(&self.input)))?;
        add(args.add(b.version.file_id))?;
        add(args.add(sqlx::types::Json(&self.tags)))?;
        add(args.add(self.build_id))?;
        add(args.add(b.version.id))?;
        add(args.add(b.transition))?;
        add(args.add(b.reason))?;
        add(args.add(b.preset_id))?;
        add(args.add(names))?;
        add(args.add(values))?;
        add(args.add(jobs::CHANNEL_JOB_POSTED))?;
        add(args.add(provisioner::TYPE_WORKSPACE_BUILD))?;
        Ok(())
    }

    /// The queued job as the statement inserted it (the response describes it without reading it back).
    pub fn job_row(&self, b: &NewBuild<'_>) -> provisioner::JobRow {
        provisioner::JobRow {
            id: self.job_id,
            created_at: b.now,
            updated_at: b.now,
            started_at: None,
            canceled_at: None,
            completed_at: None,
            error: None,
            error_code: None,
            organization_id: b.organization_id,
            initiator_id: b.initiator,
            provisioner: b.version.provisioner.clone(),
            r#type: provisioner::TYPE_WORKSPACE_BUILD.to_string(),
            input: sqlx::types::Json(self.input.clone()),
            worker_id: None,
            file_id: b.version.file_id,
            tags: sqlx::types::Json(self.tags.clone()),
            logs_overflowed: false,
            job_status: "pending".to_string(),
        }
    }
}

/// Inserts the next build of a workspace with its job and parameters, in one statement.
pub async fn insert(conn: &mut PgConnection, b: &NewBuild<'_>) -> Result<Uuid, sqlx::Error> {
    let build = BuildArgs::new(b);
    let mut args = PgArguments::default();
    build.push(&mut args, b)?;
    args.add(b.workspace_id).map_err(sqlx::Error::Encode)?;
    args.add(b.organization_id).map_err(sqlx::Error::Encode)?;
    let sql = format!(
        "WITH w AS (SELECT $17::uuid AS id, $18::uuid AS organization_id), {BUILD_CTES}
         SELECT (SELECT count(*) FROM notified) FROM build"
    );
    let inserted: Option<i64> = sqlx::query_scalar_with(&sql, args)
        .fetch_optional(&mut *conn)
        .await?;
    match inserted {
        Some(_) => Ok(build.build_id),
        None => Err(sqlx::Error::RowNotFound),
    }
}
