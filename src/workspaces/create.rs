//! Creating a workspace, or claiming a prebuilt one, in three round trips to PostgreSQL: the caller's
//! API key, one read of everything validation needs, and one statement that writes the workspace (or
//! takes over a prebuild), its first build, the build's job and parameters. The response is built
//! from what was written; nothing is read back.
//!
//! The write is a single statement, so it is atomic without an explicit transaction: a crash leaves
//! either nothing or the whole workspace with its queued build, and a claim either moves the
//! prebuild to its new owner with the claim build queued or leaves it in the pool.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, PgConnection};
use uuid::Uuid;

use super::api::CreateWorkspaceRequest;
use super::builds::{self, BuildArgs, NewBuild, SpecRow, VersionInfo, BUILD_CTES};
use super::params::ParamSpec;
use super::params::ResolveInput;
use super::store::{self, workspace_columns, BuildRow, WorkspaceRow};
use super::version_cache::{CachedPreset, VersionContext};
use crate::api::auth::Auth;
use crate::api::error::{ApiError, ApiResult, Validation};
use crate::api::json::created;
use crate::app::AppState;
use crate::provisioner::ProvisionerJob;
use crate::rbac::{Action, Object, Resource};
use crate::users::api::resolve_user;
use crate::users::PREBUILDS_USER_ID;

/// Everything the checks need, read in one statement. The version is the requested one, else the
/// template's active version; the preset is the requested one, else the one the request's
/// parameter values match (Coder's rule: all of the preset's values given, the most of them wins).
/// What the checks decide on, however it was read.
#[derive(sqlx::FromRow)]
struct Facts {
    version_id: Option<Uuid>,
    version_template_id: Option<Uuid>,
    version_name: Option<String>,
    version_job_status: Option<String>,
    version_file_id: Option<Uuid>,
    version_provisioner: Option<String>,
    template_id: Option<Uuid>,
    template_organization_id: Option<Uuid>,
    template_active_version_id: Option<Uuid>,
    template_deleted: Option<bool>,
    owner_is_member: bool,
    preset_id: Option<Uuid>,
    preset_belongs: bool,
    preset_has_pool: bool,
}

#[derive(sqlx::FromRow)]
struct ContextRow {
    #[sqlx(flatten)]
    facts: Facts,
    preset_names: Vec<String>,
    preset_values: Vec<String>,
    specs: sqlx::types::Json<Vec<SpecRow>>,
}

const CONTEXT_SQL: &str = "WITH v AS (
        SELECT tv.id, tv.template_id, tv.name, j.job_status, j.file_id, j.provisioner
        FROM template_versions tv JOIN provisioner_jobs j ON j.id = tv.job_id
        WHERE tv.id = COALESCE($2, (SELECT active_version_id FROM templates WHERE id = $1))),
    t AS (
        SELECT id, organization_id, active_version_id, deleted FROM templates
        WHERE id = COALESCE($1, (SELECT template_id FROM v))),
    p AS (
        SELECT COALESCE($4, (
            SELECT p.id FROM template_version_presets p
            LEFT JOIN template_version_preset_parameters pp ON pp.template_version_preset_id = p.id
            LEFT JOIN unnest($5::text[], $6::text[]) AS g(name, value) ON g.name = pp.name AND g.value = pp.value
            WHERE p.template_version_id = (SELECT id FROM v)
            GROUP BY p.id, p.name
            HAVING count(pp.name) = count(g.name)
            ORDER BY count(pp.name) DESC, p.name
            LIMIT 1)) AS id)
    SELECT v.id AS version_id, v.template_id AS version_template_id, v.name AS version_name,
           v.job_status AS version_job_status, v.file_id AS version_file_id, v.provisioner AS version_provisioner,
           t.id AS template_id, t.organization_id AS template_organization_id,
           t.active_version_id AS template_active_version_id, t.deleted AS template_deleted,
           EXISTS (SELECT 1 FROM organization_members m
                   WHERE m.organization_id = t.organization_id AND m.user_id = $3) AS owner_is_member,
           p.id AS preset_id,
           EXISTS (SELECT 1 FROM template_version_presets x
                   WHERE x.id = p.id AND x.template_version_id = v.id) AS preset_belongs,
           EXISTS (SELECT 1 FROM template_version_presets x
                   WHERE x.id = p.id AND x.template_version_id = v.id AND x.desired_instances IS NOT NULL)
               AS preset_has_pool,
           ARRAY(SELECT pp.name FROM template_version_preset_parameters pp
                 WHERE pp.template_version_preset_id = p.id ORDER BY pp.name) AS preset_names,
           ARRAY(SELECT pp.value FROM template_version_preset_parameters pp
                 WHERE pp.template_version_preset_id = p.id ORDER BY pp.name) AS preset_values,
           COALESCE((SELECT json_agg(s ORDER BY s.display_order, s.name) FROM (
                SELECT name, display_name, type, mutable, ephemeral, required, default_value, options,
                       validation_regex, validation_error, validation_min, validation_max,
                       validation_monotonic, display_order
                FROM template_version_parameters WHERE template_version_id = v.id) s), '[]') AS specs
    FROM p LEFT JOIN v ON true LEFT JOIN t ON true";

/// What the checks use, from [`CONTEXT_SQL`] or from the version cache and [`TEMPLATE_SQL`].
struct Context {
    facts: Facts,
    preset_params: Vec<(String, String)>,
    specs: Arc<Vec<ParamSpec>>,
}

impl From<ContextRow> for Context {
    fn from(r: ContextRow) -> Self {
        Context {
            facts: r.facts,
            preset_params: r.preset_names.into_iter().zip(r.preset_values).collect(),
            specs: Arc::new(r.specs.0.into_iter().map(SpecRow::into_spec).collect()),
        }
    }
}

/// What can change about a template and its version, with the caller's membership: all a create
/// reads when the version's fixed part is cached. `$3` is the requested version (else the active one).
const TEMPLATE_SQL: &str = "SELECT t.id, t.organization_id, t.active_version_id, t.deleted,
        EXISTS (SELECT 1 FROM organization_members m
                WHERE m.organization_id = t.organization_id AND m.user_id = $2) AS owner_is_member,
        (SELECT tv.name FROM template_versions tv WHERE tv.id = COALESCE($3, t.active_version_id))
            AS version_name
    FROM templates t WHERE t.id = $1";

#[derive(sqlx::FromRow)]
struct TemplateHead {
    id: Uuid,
    organization_id: Uuid,
    active_version_id: Uuid,
    deleted: bool,
    owner_is_member: bool,
    version_name: Option<String>,
}

/// A read of the template together with its cached version.
struct CachedHead {
    template: TemplateHead,
    version: Arc<VersionContext>,
}

impl CachedHead {
    fn resolve(self, requested_preset: Option<Uuid>, requested: &[(String, String)]) -> Context {
        let (t, v) = (self.template, self.version);
        let preset = v.choose_preset(requested_preset, requested);
        Context {
            facts: Facts {
                version_id: Some(v.id),
                version_template_id: Some(v.template_id),
                version_name: t.version_name,
                version_job_status: Some("succeeded".into()),
                version_file_id: Some(v.file_id),
                version_provisioner: Some(v.provisioner.clone()),
                template_id: Some(t.id),
                template_organization_id: Some(t.organization_id),
                template_active_version_id: Some(t.active_version_id),
                template_deleted: Some(t.deleted),
                owner_is_member: t.owner_is_member,
                preset_id: preset.id,
                preset_belongs: preset.belongs,
                preset_has_pool: preset.has_pool,
            },
            preset_params: preset.params,
            specs: v.specs.clone(),
        }
    }
}

/// The template's mutable part and the version's cached one, when the version is cached; `None`
/// sends the create to the full read (which also reports every kind of missing or foreign row).
async fn cached_context(
    state: &AppState,
    conn: &mut PgConnection,
    template_id: Option<Uuid>,
    version_id: Option<Uuid>,
    owner: Uuid,
) -> Result<Option<CachedHead>, sqlx::Error> {
    let requested_version = version_id.and_then(|id| state.version_contexts.get(id));
    let template = match (template_id, &requested_version) {
        (Some(t), None) if version_id.is_none() => t,
        (None, Some(v)) => v.template_id,
        _ => return Ok(None),
    };
    let Some(head): Option<TemplateHead> = sqlx::query_as(TEMPLATE_SQL)
        .bind(template)
        .bind(owner)
        .bind(version_id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let version = match requested_version {
        Some(v) => Some(v),
        None => state.version_contexts.get(head.active_version_id),
    };
    Ok(version
        .filter(|_| head.version_name.is_some())
        .map(|version| CachedHead {
            template: head,
            version,
        }))
}

/// Caches the fixed part of the version the full read found, if it succeeded and is attached to a
/// template (its presets take one more read).
async fn remember_version(
    state: &AppState,
    conn: &mut PgConnection,
    ctx: &Context,
) -> Result<(), sqlx::Error> {
    let f = &ctx.facts;
    let (Some(id), Some("succeeded"), Some(template_id), Some(file_id), Some(provisioner)) = (
        f.version_id,
        f.version_job_status.as_deref(),
        f.version_template_id,
        f.version_file_id,
        f.version_provisioner.clone(),
    ) else {
        return Ok(());
    };
    #[derive(sqlx::FromRow)]
    struct PresetRow {
        id: Uuid,
        name: String,
        has_pool: bool,
        names: Vec<String>,
        values: Vec<String>,
    }
    let presets: Vec<PresetRow> = sqlx::query_as(
        "SELECT p.id, p.name, p.desired_instances IS NOT NULL AS has_pool,
                ARRAY(SELECT pp.name FROM template_version_preset_parameters pp
                      WHERE pp.template_version_preset_id = p.id ORDER BY pp.name) AS names,
                ARRAY(SELECT pp.value FROM template_version_preset_parameters pp
                      WHERE pp.template_version_preset_id = p.id ORDER BY pp.name) AS values
         FROM template_version_presets p WHERE p.template_version_id = $1",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    state.version_contexts.insert(VersionContext {
        id,
        template_id,
        file_id,
        provisioner,
        specs: ctx.specs.clone(),
        presets: presets
            .into_iter()
            .map(|p| CachedPreset {
                id: p.id,
                name: p.name,
                has_pool: p.has_pool,
                params: p.names.into_iter().zip(p.values).collect(),
            })
            .collect(),
    });
    Ok(())
}

/// What the write statement returns: the workspace row as every read builds it, and its new build.
#[derive(sqlx::FromRow)]
struct Written {
    #[sqlx(flatten)]
    workspace: WorkspaceRow,
    build_number: i32,
    /// Jobs waiting before this build's (for its queue position).
    queued_before: i64,
    prebuild_created_at: Option<DateTime<Utc>>,
    preset_name: Option<String>,
}

/// The tail shared by both writes: the new workspace row with its owner, organization and template,
/// and the new build. `notified` is referenced so the notification CTE runs.
const WRITTEN_SELECT: &str = concat!(
    "SELECT ",
    workspace_columns!(),
    ", b.id AS latest_build_id, b.build_number, w.prebuild_created_at, w.preset_name,
       (SELECT count(*) FROM notified) + (SELECT count(*) FROM provisioner_jobs
            WHERE started_at IS NULL AND canceled_at IS NULL) - 1 AS queued_before
    FROM w JOIN build b ON true
    JOIN users u ON u.id = w.owner_id
    JOIN organizations o ON o.id = w.organization_id
    JOIN templates t ON t.id = w.template_id"
);

/// A fresh workspace. `$17`.. are the workspace's own values.
const FRESH_WORKSPACE_CTE: &str = "w AS (
        INSERT INTO workspaces (id, created_at, updated_at, owner_id, organization_id, template_id, name,
                                autostart_schedule, ttl_ms, last_used_at, automatic_updates)
        VALUES ($17, $1, $1, $18, $19, $20, $21, $22, $23, $1, $24)
        RETURNING *, NULL::timestamptz AS prebuild_created_at, NULL::text AS preset_name)";

/// One eligible prebuild of the preset, moved to its new owner: running (latest build a successful
/// `start` of the template's active version), every agent `ready`, not expired (ttl, invalidation).
/// Rows another transaction is claiming or deleting are skipped, not waited for, so concurrent
/// creates never get the same prebuild and never block each other. A name the new owner already
/// uses fails with the unique violation an ordinary create gets. The claim is recorded for the
/// claimed counter and the audit trail.
const CLAIM_WORKSPACE_CTE: &str = "candidate AS (
        SELECT w.id, w.created_at, p.name AS preset_name
        FROM workspaces w
        JOIN templates t ON t.id = w.template_id
        JOIN template_version_presets p ON p.id = $17
        JOIN LATERAL (SELECT b.id, b.transition, b.job_id, b.template_version_id, b.template_version_preset_id
                      FROM workspace_builds b WHERE b.workspace_id = w.id
                      ORDER BY b.build_number DESC LIMIT 1) lb ON true
        JOIN provisioner_jobs j ON j.id = lb.job_id
        WHERE w.owner_id = $18 AND NOT w.deleted AND NOT t.deleted
          AND lb.transition = 'start' AND j.job_status = 'succeeded'
          AND lb.template_version_preset_id = $17
          AND lb.template_version_id = t.active_version_id
          AND (COALESCE(p.invalidate_after_secs, 0) <= 0
               OR w.created_at >= $1 - make_interval(secs => p.invalidate_after_secs))
          AND (p.last_invalidated_at IS NULL OR w.created_at >= p.last_invalidated_at)
          AND (SELECT COALESCE(bool_and(a.lifecycle_state = 'ready'), false)
               FROM workspace_resources r JOIN workspace_agents a ON a.resource_id = r.id
               WHERE r.job_id = j.id)
        LIMIT 1
        FOR UPDATE OF w SKIP LOCKED),
    w AS (
        UPDATE workspaces w
        SET owner_id = $19, name = $20, updated_at = $1, last_used_at = $1, autostart_schedule = $21,
            ttl_ms = $22, automatic_updates = $23, dormant_at = NULL, deleting_at = NULL, next_start_at = NULL
        FROM candidate c WHERE w.id = c.id
        RETURNING w.*, c.created_at AS prebuild_created_at, c.preset_name),
    claim_record AS (
        INSERT INTO prebuild_claims (workspace_id, preset_id, claimed_by, claimed_at, prebuild_created_at)
        SELECT id, $17, $19, $1, prebuild_created_at FROM w)";

/// The workspace's settings, shared by both writes.
struct Settings<'a> {
    owner_id: Uuid,
    name: &'a str,
    autostart_schedule: Option<&'a str>,
    ttl_ms: Option<i64>,
    automatic_updates: &'a str,
}

fn add<'q, T>(args: &mut PgArguments, value: T) -> Result<(), sqlx::Error>
where
    T: 'q + sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    args.add(value).map_err(sqlx::Error::Encode)
}

/// Inserts a fresh workspace with its first build.
async fn write_fresh(
    conn: &mut PgConnection,
    b: &NewBuild<'_>,
    build: &BuildArgs,
    template_id: Uuid,
    s: &Settings<'_>,
) -> Result<Written, sqlx::Error> {
    let mut args = PgArguments::default();
    build.push(&mut args, b)?;
    add(&mut args, b.workspace_id)?;
    add(&mut args, s.owner_id)?;
    add(&mut args, b.organization_id)?;
    add(&mut args, template_id)?;
    add(&mut args, s.name)?;
    add(&mut args, s.autostart_schedule)?;
    add(&mut args, s.ttl_ms)?;
    add(&mut args, s.automatic_updates)?;
    let sql = format!("WITH {FRESH_WORKSPACE_CTE}, {BUILD_CTES} {WRITTEN_SELECT}");
    sqlx::query_as_with(&sql, args).fetch_one(conn).await
}

/// Claims a prebuild of `preset` and queues its claim build; `None` when the pool has none eligible.
async fn write_claim(
    conn: &mut PgConnection,
    b: &NewBuild<'_>,
    build: &BuildArgs,
    preset: Uuid,
    s: &Settings<'_>,
) -> Result<Option<Written>, sqlx::Error> {
    let mut args = PgArguments::default();
    build.push(&mut args, b)?;
    add(&mut args, preset)?;
    add(&mut args, PREBUILDS_USER_ID)?;
    add(&mut args, s.owner_id)?;
    add(&mut args, s.name)?;
    add(&mut args, s.autostart_schedule)?;
    add(&mut args, s.ttl_ms)?;
    add(&mut args, s.automatic_updates)?;
    let sql = format!("WITH {CLAIM_WORKSPACE_CTE}, {BUILD_CTES} {WRITTEN_SELECT}");
    sqlx::query_as_with(&sql, args).fetch_optional(conn).await
}

/// The response: the written workspace with its queued build.
fn describe(
    written: Written,
    b: &NewBuild<'_>,
    build: &BuildArgs,
    initiator_name: &str,
) -> super::types::Workspace {
    let w = written.workspace;
    let position = written.queued_before + 1;
    let job = ProvisionerJob::from_row(&build.job_row(b), position, position);
    let row = BuildRow {
        id: build.build_id,
        created_at: b.now,
        updated_at: b.now,
        workspace_id: w.id,
        template_version_id: b.version.id,
        build_number: written.build_number,
        transition: b.transition.to_string(),
        initiator_id: b.initiator,
        job_id: build.job_id,
        deadline: None,
        max_deadline: None,
        reason: b.reason.to_string(),
        daily_cost: 0,
        template_version_preset_id: b.preset_id,
        workspace_name: w.name.clone(),
        owner_id: w.owner_id,
        owner_name: w.owner_name.clone(),
        owner_avatar_url: w.owner_avatar_url.clone(),
        template_version_name: b.version.name.clone(),
        initiator_name: initiator_name.to_string(),
    };
    store::workspace_json(w, store::build_json(row, job, Vec::new()))
}

pub(super) async fn create_workspace(
    state: AppState,
    auth: Auth,
    org: Option<crate::orgs::Organization>,
    user: String,
    req: CreateWorkspaceRequest,
) -> ApiResult<Response> {
    let owner = resolve_user(&state, &auth, &user, Action::Read).await?;
    let template_id = req.template_id.filter(|id| !id.is_nil());
    let version_id = req.template_version_id.filter(|id| !id.is_nil());
    if template_id.is_some() && version_id.is_some() {
        return Err(ApiError::bad_request(
            "You can only specify one of template_id or template_version_id.",
        ));
    }
    if template_id.is_none() && version_id.is_none() {
        return Err(ApiError::validation_failed(vec![Validation::required(
            "template_id",
        )]));
    }
    let requested: Vec<(String, String)> = req
        .rich_parameter_values
        .iter()
        .map(|p| (p.name.clone(), p.value.clone()))
        .collect();
    let requested_preset = req.template_version_preset_id.filter(|id| !id.is_nil());
    let mut conn = state.pool.acquire().await?;
    let ctx = match cached_context(&state, &mut conn, template_id, version_id, owner.id).await? {
        Some(head) => head.resolve(requested_preset, &requested),
        None => {
            let names: Vec<&str> = requested.iter().map(|(n, _)| n.as_str()).collect();
            let values: Vec<&str> = requested.iter().map(|(_, v)| v.as_str()).collect();
            let row: ContextRow = sqlx::query_as(CONTEXT_SQL)
                .bind(template_id)
                .bind(version_id)
                .bind(owner.id)
                .bind(requested_preset)
                .bind(&names)
                .bind(&values)
                .fetch_one(&mut *conn)
                .await?;
            let ctx = Context::from(row);
            remember_version(&state, &mut conn, &ctx).await?;
            ctx
        }
    };

    let version = match (
        ctx.facts.version_id,
        ctx.facts.version_name,
        ctx.facts.version_job_status,
        ctx.facts.version_file_id,
        ctx.facts.version_provisioner,
    ) {
        (Some(id), Some(name), Some(job_status), Some(file_id), Some(provisioner)) => {
            Some(VersionInfo {
                id,
                template_id: ctx.facts.version_template_id,
                name,
                job_status,
                file_id,
                provisioner,
            })
        }
        _ => None,
    };
    if let (Some(id), None) = (version_id, &version) {
        return Err(ApiError::bad_request(format!(
            "Template version {:?} doesn't exist.",
            id.to_string()
        ))
        .validation("template_version_id", "template not found"));
    }
    let template_id = match template_id {
        Some(id) => id,
        None => version
            .as_ref()
            .and_then(|v| v.template_id)
            .ok_or_else(|| {
                ApiError::bad_request("The template version is not attached to a template.")
                    .validation("template_version_id", "template not found")
            })?,
    };
    let (Some(organization_id), Some(active_version_id), Some(deleted)) = (
        ctx.facts.template_organization_id,
        ctx.facts.template_active_version_id,
        ctx.facts.template_deleted,
    ) else {
        return Err(ApiError::bad_request(format!(
            "Template {:?} doesn't exist.",
            template_id.to_string()
        ))
        .validation("template_id", "template not found"));
    };
    if deleted {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Template has been deleted!",
        ));
    }
    if let Some(org) = &org {
        if org.id != organization_id {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("Template is not in organization {:?}.", org.name),
            ));
        }
    }
    let object = Object::new(Resource::Workspace)
        .in_org(organization_id)
        .owned_by(owner.id);
    if !auth.subject.can(Action::Create, object)
        || !auth.subject.can(
            Action::Read,
            Object::new(Resource::Template).in_org(organization_id),
        )
    {
        return Err(ApiError::forbidden());
    }
    // The owner must belong to the template's organization.
    if !ctx.facts.owner_is_member {
        return Err(ApiError::forbidden());
    }
    let version = version.ok_or_else(ApiError::not_found)?;
    if version.template_id != Some(template_id) || ctx.facts.template_id != Some(template_id) {
        return Err(ApiError::bad_request(
            "template version doesn't match template",
        ));
    }
    builds::check_version_usable(&version)?;
    let ttl_ms = super::api::validate_ttl(req.ttl_ms)?;
    let autostart = super::api::validate_autostart(req.autostart_schedule.clone())?;
    if requested_preset.is_some() && !ctx.facts.preset_belongs {
        return Err(
            ApiError::bad_request("The preset does not belong to the template version.")
                .validation("template_version_preset_id", "preset not found"),
        );
    }
    let values = builds::resolve_params(&ResolveInput {
        specs: &ctx.specs,
        previous: &[],
        requested: &requested,
        preset: &ctx.preset_params,
        first_build: true,
        transition: "start",
    })?;
    // A pool to claim from: prebuilds enabled, a preset with a pool on the active version.
    let pool_preset = ctx.facts.preset_id.filter(|_| {
        ctx.facts.preset_has_pool
            && version.id == active_version_id
            && crate::prebuilds::reconciler::enabled(&state)
    });

    let settings = Settings {
        owner_id: owner.id,
        name: &req.name,
        autostart_schedule: autostart.as_deref(),
        ttl_ms,
        automatic_updates: if req.automatic_updates.is_empty() {
            "never"
        } else {
            req.automatic_updates.as_str()
        },
    };
    let conflict =
        |err| ApiError::name_conflict(err, format!("Workspace {:?} already exists.", req.name));
    let now = state.clock.now();
    let new_build = |workspace_id, preset_id, prebuild_claim| NewBuild {
        workspace_id,
        organization_id,
        version: &version,
        transition: "start",
        initiator: auth.user_id(),
        reason: "initiator",
        preset_id,
        params: &values,
        orphan: false,
        prebuild_claim,
        now,
    };
    if let Some(preset) = pool_preset {
        let claim_started = std::time::Instant::now();
        // The workspace id is the prebuild's; the statement does not use this one.
        let b = new_build(Uuid::nil(), Some(preset), true);
        let build = BuildArgs::new(&b);
        let claimed = if state.config.test_claim_commit_delay.is_zero() {
            write_claim(&mut conn, &b, &build, preset, &settings).await
        } else {
            // Tests crash the server inside an open claim: hold the transaction open that long.
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let claimed = write_claim(&mut tx, &b, &build, preset, &settings).await;
            tokio::time::sleep(state.config.test_claim_commit_delay).await;
            tx.commit().await?;
            claimed
        }
        .map_err(conflict)?;
        if let Some(written) = claimed {
            let preset_name = written.preset_name.clone().unwrap_or_default();
            let prebuild_created_at = written.prebuild_created_at.unwrap_or(now);
            let workspace = describe(written, &b, &build, &auth.user.username);
            state
                .metrics
                .prebuild_claim_duration
                .with_label_values(&[
                    workspace.organization_name.as_str(),
                    workspace.template_name.as_str(),
                    preset_name.as_str(),
                ])
                .observe(claim_started.elapsed().as_secs_f64());
            tracing::info!(target: "coderd.prebuilds", workspace = %workspace.id, name = %req.name,
                owner = %owner.username, preset = %preset,
                prebuild_age_s = (now - prebuild_created_at).num_seconds(), "claimed prebuilt workspace");
            return Ok(created(workspace));
        }
    }
    let b = new_build(Uuid::new_v4(), ctx.facts.preset_id, false);
    let build = BuildArgs::new(&b);
    let written = write_fresh(&mut conn, &b, &build, template_id, &settings)
        .await
        .map_err(conflict)?;
    Ok(created(describe(written, &b, &build, &auth.user.username)))
}
