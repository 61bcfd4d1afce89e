//! The workspace-build job: evaluate the version's template for the build (workspace, owner, parameters,
//! fresh agent tokens), apply it with the runtime, and write resources, agents and apps back together with
//! the job's completion in one transaction.
//!
//! Runtimes, by the version's provisioner: `echo` records resources and agents and starts nothing (whoever
//! holds an agent token drives the agent API); `terraform` runs on the local runtime (`local.rs`), which
//! starts a `coder agent` process per agent.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::jobs::{self, LogLine};
use super::{JobInput, JobRow};
use crate::app::AppState;
use crate::templates::hcl::{self, AgentCtx, EvalContext, OwnerCtx, WorkspaceCtx};
use crate::templates::import::unpack;
use crate::users::PREBUILDS_USER_ID;

#[derive(Debug, sqlx::FromRow)]
struct BuildContextRow {
    build_id: Uuid,
    build_number: i32,
    organization_name: String,
    preset_name: Option<String>,
    transition: String,
    workspace_id: Uuid,
    workspace_name: String,
    organization_id: Uuid,
    template_id: Uuid,
    template_name: String,
    version_name: String,
    owner_id: Uuid,
    owner_username: String,
    owner_name: String,
    owner_email: String,
    owner_login_type: String,
    owner_roles: Vec<String>,
    parameters: sqlx::types::Json<BTreeMap<String, String>>,
}

/// Outcome of evaluating and applying a template for one build.
struct Applied {
    evaluated: hcl::Evaluated,
    tokens: BTreeMap<String, (Uuid, Uuid)>,
}

/// Runs a build job on `conn` (the connection the daemon acquired the job with, so the build waits for
/// the pool once). Returns the job's final status when this call decided it (`None`: ask the database).
///
/// Round trips in the common case (no claim, no quota check, echo runtime): one statement reads the
/// build's context and parameters and logs the planning line; one writes resources, agents, apps and
/// metadata, completes the job and logs the result.
pub async fn run(
    state: &AppState,
    conn: &mut PgConnection,
    worker: Uuid,
    job: &JobRow,
) -> Result<Option<&'static str>, sqlx::Error> {
    let input: JobInput = serde_json::from_value(job.input.0.clone()).unwrap_or_default();
    let orphan = job
        .input
        .0
        .get("orphan")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let claim_flag = job
        .input
        .0
        .get("prebuild_claim")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let now = || state.clock.now();
    let Some(build_id) = input.workspace_build_id else {
        let message = "job input names no workspace build";
        return fail(conn, job, worker, message, now()).await;
    };
    // The context, the parameters and the first log line in one round trip (no log without a build).
    let ctx: Option<BuildContextRow> = sqlx::query_as(
        "WITH ctx AS (
            SELECT b.id AS build_id, b.build_number, b.transition, w.id AS workspace_id, w.name AS workspace_name,
                   w.organization_id, o.name AS organization_name, p.name AS preset_name,
                   t.id AS template_id, t.name AS template_name, tv.name AS version_name,
                   u.id AS owner_id, u.username AS owner_username, u.name AS owner_name, u.email AS owner_email,
                   u.login_type AS owner_login_type, u.rbac_roles AS owner_roles,
                   (SELECT COALESCE(jsonb_object_agg(bp.name, bp.value), '{}')
                    FROM workspace_build_parameters bp WHERE bp.workspace_build_id = b.id) AS parameters
            FROM workspace_builds b
            JOIN workspaces w ON w.id = b.workspace_id
            JOIN templates t ON t.id = w.template_id
            JOIN template_versions tv ON tv.id = b.template_version_id
            JOIN users u ON u.id = w.owner_id
            JOIN organizations o ON o.id = w.organization_id
            LEFT JOIN template_version_presets p ON p.id = b.template_version_preset_id
            WHERE b.id = $1),
         log AS (
            INSERT INTO provisioner_job_logs (job_id, created_at, source, level, stage, output)
            SELECT $2, $3, 'provisioner', 'info',
                   CASE WHEN $4 THEN 'Orphaning' ELSE 'Planning infrastructure' END,
                   CASE WHEN $4 THEN 'Orphan delete: resources are left in place'
                        ELSE ctx.transition || ' build of workspace ' || ctx.workspace_name END
            FROM ctx)
         SELECT * FROM ctx",
    )
    .bind(build_id)
    .bind(job.id)
    .bind(now())
    .bind(orphan)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(ctx) = ctx else {
        let message = "the workspace build no longer exists";
        return fail(conn, job, worker, message, now()).await;
    };
    // A claimed prebuild's follow-up build hands the running agents over instead of restarting them.
    let claim = if claim_flag && ctx.transition == "start" {
        crate::prebuilds::claim::claim_context(conn, build_id).await?
    } else {
        None
    };
    let applied = if orphan {
        Ok(None)
    } else {
        evaluate(state, conn, job, &ctx, claim.as_ref())
            .await?
            .map(Some)
    };
    let applied = match applied {
        Ok(a) => a,
        Err(message) => {
            let lines: Vec<LogLine<'_>> = message
                .lines()
                .map(|output| LogLine {
                    level: "error",
                    stage: "Planning infrastructure",
                    output,
                })
                .collect();
            jobs::append_logs(&mut *conn, job.id, "provisioner", &lines, now()).await?;
            tracing::info!(target: "coderd.provisionerd", job = %job.id, build = %build_id, error = %message, "workspace build failed");
            return fail(conn, job, worker, &message, now()).await;
        }
    };
    let rows = applied
        .as_ref()
        .map(|a| BuildRows::new(&ctx.transition, a))
        .unwrap_or_default();
    // The local runtime starts agents before the commit (an orphan delete touches nothing).
    let apply_locally = job.provisioner == "terraform" && !orphan;
    let check_quota = ctx.transition == "start" && rows.cost > 0;
    if claim.is_none() && !check_quota && !apply_locally {
        // Nothing to do between writing and completing: one statement, atomic on its own.
        if !state.config.test_job_commit_delay.is_zero() {
            tokio::time::sleep(state.config.test_job_commit_delay).await;
        }
        let completion = Completion {
            worker,
            workspace_id: ctx.workspace_id,
        };
        let done = write_rows(
            &mut *conn,
            job.id,
            &ctx.transition,
            &rows,
            Some(completion),
            now(),
        )
        .await?;
        if !done {
            let canceled = jobs::finish_canceled(&mut *conn, job.id, worker, now()).await?;
            return Ok(canceled.then_some("canceled"));
        }
    } else {
        let outcome = run_in_tx(
            state,
            conn,
            worker,
            job,
            &ctx,
            claim.as_ref(),
            applied.as_ref(),
            &rows,
        )
        .await?;
        match outcome {
            TxOutcome::Committed(replaced) => {
                for r in &replaced {
                    tracing::warn!(target: "coderd.prebuilds", workspace = %ctx.workspace_name, template = %ctx.template_name,
                        resource = %r.resource, attributes = ?r.attributes,
                        "claim build replaced a resource the prebuild created; consider lifecycle ignore_changes");
                }
                let line = format!("{} succeeded", ctx.transition);
                let _ = log(conn, job, "info", "Cleaning Up", &line, now()).await;
            }
            TxOutcome::Failed(done) => return Ok(done.then_some("failed")),
            TxOutcome::Canceled(done) => return Ok(done.then_some("canceled")),
        }
    }
    tracing::info!(target: "coderd.provisionerd", job = %job.id, build = %build_id, transition = %ctx.transition, "workspace build succeeded");
    if ctx.transition == "start" && ctx.build_number == 1 {
        let kind = if ctx.owner_id == PREBUILDS_USER_ID {
            "prebuild"
        } else {
            "regular"
        };
        let took = (now() - job.created_at).to_std().unwrap_or_default();
        state
            .metrics
            .workspace_creation_duration
            .with_label_values(&[
                ctx.organization_name.as_str(),
                ctx.template_name.as_str(),
                ctx.preset_name.as_deref().unwrap_or(""),
                kind,
            ])
            .observe(took.as_secs_f64());
    }
    Ok(Some("succeeded"))
}

/// Fails the job with `message`; `Some("failed")` when that was recorded.
async fn fail(
    conn: &mut PgConnection,
    job: &JobRow,
    worker: Uuid,
    message: &str,
    now: DateTime<Utc>,
) -> Result<Option<&'static str>, sqlx::Error> {
    let done = jobs::complete(conn, job.id, worker, Some(message), now).await?;
    Ok(done.then_some("failed"))
}

/// Appends one line to the job's provisioner log.
async fn log(
    conn: &mut PgConnection,
    job: &JobRow,
    level: &str,
    stage: &str,
    output: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let line = LogLine {
        level,
        stage,
        output,
    };
    jobs::append_logs(conn, job.id, "provisioner", &[line], now).await
}

/// How a build that needs a transaction (claim hand-over, quota check, local runtime) ended.
enum TxOutcome {
    /// Committed; the resources the claim build replaced.
    Committed(Vec<crate::prebuilds::claim::Replacement>),
    /// Failed (quota, local runtime); whether the failure was recorded.
    Failed(bool),
    /// The job was canceled (or failed by another replica) meanwhile; whether it was finished as canceled.
    Canceled(bool),
}

/// The build's writes with work between them and the completion, in one transaction: the claim
/// hand-over, the quota check (under a lock) and the local runtime's apply.
#[allow(clippy::too_many_arguments)]
async fn run_in_tx(
    state: &AppState,
    conn: &mut PgConnection,
    worker: Uuid,
    job: &JobRow,
    ctx: &BuildContextRow,
    claim: Option<&crate::prebuilds::claim::ClaimContext>,
    applied: Option<&Applied>,
    rows: &BuildRows,
) -> Result<TxOutcome, sqlx::Error> {
    use sqlx::Connection;
    let now = || state.clock.now();
    let orphan = applied.is_none();
    let mut tx = conn.begin().await?;
    write_rows(&mut *tx, job.id, &ctx.transition, rows, None, now()).await?;
    let mut replaced = Vec::new();
    if let (Some(claim), Some(applied)) = (claim, applied) {
        use crate::prebuilds::claim as pc;
        pc::carry_over_agents(&mut tx, job.id, claim.previous_job_id).await?;
        let previous = pc::stored_resources(&mut tx, claim.previous_job_id).await?;
        replaced = pc::replacements(&applied.evaluated.resources, &previous);
        let previous_agents = pc::stored_agents(&mut tx, claim.previous_job_id).await?;
        replaced.extend(pc::agent_replacements(
            &applied.evaluated.agents,
            &previous_agents,
        ));
        if let (false, Some(preset)) = (replaced.is_empty(), claim.preset_id) {
            pc::record_replacements(
                &mut tx,
                ctx.build_id,
                ctx.workspace_id,
                preset,
                ctx.owner_id,
                &replaced,
                now(),
            )
            .await?;
        }
    }
    let cost = rows.cost;
    if ctx.transition == "start" && cost > 0 && !quota_allows(&mut tx, ctx, cost).await? {
        tx.rollback().await?;
        let message = "insufficient quota";
        let line = format!("{message}: this build costs {cost} credits a day");
        return fail_apply(conn, job, worker, message, &line, now()).await;
    }
    let local = job.provisioner == "terraform";
    let keep_agents = claim.is_some()
        && applied.is_some_and(|a| {
            let names: Vec<&str> = a
                .evaluated
                .agents
                .iter()
                .map(|ag| ag.name.as_str())
                .collect();
            super::local::all_running(&state.config.cache_dir, ctx.workspace_id, &names)
        });
    if local && !orphan && !keep_agents {
        // Agents start before the commit; they retry their manifest until the build is visible.
        if let Err(err) = apply_local(state, ctx, applied).await {
            tx.rollback().await?;
            let message = format!("local runtime: {err}");
            return fail_apply(conn, job, worker, &message, &message, now()).await;
        }
    }
    if !state.config.test_job_commit_delay.is_zero() {
        tokio::time::sleep(state.config.test_job_commit_delay).await;
    }
    if !jobs::complete(&mut *tx, job.id, worker, None, now()).await? {
        tx.rollback().await?;
        if local && ctx.transition == "start" {
            let _ = stop_local(state, ctx.workspace_id).await;
        }
        let done = jobs::finish_canceled(&mut *conn, job.id, worker, now()).await?;
        return Ok(TxOutcome::Canceled(done));
    }
    if ctx.transition == "delete" {
        sqlx::query("UPDATE workspaces SET deleted = true, updated_at = $2 WHERE id = $1")
            .bind(ctx.workspace_id)
            .bind(now())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(TxOutcome::Committed(replaced))
}

/// After the build's transaction rolled back: logs `line` at the apply stage and fails the job with
/// `message`.
async fn fail_apply(
    conn: &mut PgConnection,
    job: &JobRow,
    worker: Uuid,
    message: &str,
    line: &str,
    now: DateTime<Utc>,
) -> Result<TxOutcome, sqlx::Error> {
    let _ = log(conn, job, "error", "Applying infrastructure", line, now).await;
    let done = jobs::complete(conn, job.id, worker, Some(message), now).await?;
    Ok(TxOutcome::Failed(done))
}

/// Applies a build on the local runtime: start launches the agents, stop ends them, delete also removes
/// the workspace directory.
async fn apply_local(
    state: &AppState,
    ctx: &BuildContextRow,
    applied: Option<&Applied>,
) -> std::io::Result<()> {
    let cache = state.config.cache_dir.clone();
    let binary = state.config.agent_binary.clone();
    let access_url = state.config.access_url.clone();
    let workspace = ctx.workspace_id;
    let transition = ctx.transition.clone();
    let agents: Vec<(String, Uuid)> = applied
        .map(|a| {
            a.evaluated
                .agents
                .iter()
                .filter_map(|ag| {
                    a.tokens
                        .get(&ag.name)
                        .map(|(_, token)| (ag.name.clone(), *token))
                })
                .collect()
        })
        .unwrap_or_default();
    tokio::task::spawn_blocking(move || match transition.as_str() {
        "start" => {
            let launches: Vec<super::local::AgentLaunch<'_>> = agents
                .iter()
                .map(|(name, token)| super::local::AgentLaunch {
                    name,
                    token: *token,
                })
                .collect();
            super::local::start(&binary, &cache, workspace, &access_url, &launches).map(|_| ())
        }
        "stop" => super::local::stop(&cache, workspace),
        _ => super::local::delete(&cache, workspace),
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn stop_local(state: &AppState, workspace: Uuid) -> std::io::Result<()> {
    let cache = state.config.cache_dir.clone();
    tokio::task::spawn_blocking(move || super::local::stop(&cache, workspace))
        .await
        .map_err(std::io::Error::other)?
}

/// Stores the resources and agents a version creates, evaluated for a `start` with placeholder workspace
/// and owner values and default parameters, under the import job (Coder's `/templateversions/{id}/resources`).
/// Evaluation problems only mean the preview is empty: real builds report them with real values.
pub async fn write_import_resources(
    tx: &mut PgConnection,
    job_id: Uuid,
    model: &hcl::TemplateModel,
    now: DateTime<Utc>,
) -> Result<Result<(), String>, sqlx::Error> {
    let (tokens, agents) = mint_agents(model, &[]);
    let ctx = EvalContext {
        workspace: WorkspaceCtx {
            start_count: 1,
            transition: "start".into(),
            ..Default::default()
        },
        agents,
        ..Default::default()
    };
    let evaluated = match hcl::evaluate(model, &ctx) {
        Ok(e) => e,
        Err(err) => return Ok(Err(err.to_string())),
    };
    let rows = BuildRows::new("start", &Applied { evaluated, tokens });
    write_rows(&mut *tx, job_id, "start", &rows, None, now).await?;
    Ok(Ok(()))
}

/// Row ids and tokens for every agent of a build, and what expressions see of them. Agents of a
/// claimed prebuild keep their token and the id expressions saw (so resources referencing them do
/// not change); everything else is fresh.
fn mint_agents(
    model: &hcl::TemplateModel,
    keep: &[crate::prebuilds::claim::PreviousAgent],
) -> (BTreeMap<String, (Uuid, Uuid)>, BTreeMap<String, AgentCtx>) {
    let mut tokens = BTreeMap::new();
    let mut agents = BTreeMap::new();
    for agent in &model.agents {
        let row_id = Uuid::new_v4();
        let (seen_id, token) = keep
            .iter()
            .find(|k| k.name == agent.name)
            .map(|k| (k.id, k.auth_token))
            .unwrap_or((row_id, Uuid::new_v4()));
        tokens.insert(agent.name.clone(), (row_id, token));
        agents.insert(
            agent.name.clone(),
            AgentCtx {
                token: token.to_string(),
                id: seen_id.to_string(),
                init_script: String::new(),
            },
        );
    }
    (tokens, agents)
}

/// A `coder_metadata` resource's contribution to the resource it annotates.
struct Annotation {
    cost: i32,
    items: Vec<(String, String, bool)>,
}

/// `coder_metadata` blocks by the address of the resource they annotate (`resource_id`, which evaluates to
/// the target's address here).
fn annotations(resources: &[hcl::EvaluatedResource]) -> BTreeMap<String, Annotation> {
    let mut out = BTreeMap::new();
    for r in resources
        .iter()
        .filter(|r| r.resource_type == "coder_metadata")
    {
        let Some(target) = r.attributes.get("resource_id").and_then(|v| v.as_str()) else {
            continue;
        };
        let cost = match r.attributes.get("daily_cost") {
            Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(0),
            Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
            _ => 0,
        };
        let items = r
            .attributes
            .get("item")
            .and_then(|v| v.as_array())
            .map(|items| {
                items
                    .iter()
                    .map(|i| {
                        let text = |k: &str| match &i[k] {
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Null => String::new(),
                            other => other.to_string(),
                        };
                        (
                            text("key"),
                            text("value"),
                            i["sensitive"].as_bool().unwrap_or(false),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let target = target.trim_end_matches(".id").to_string();
        out.insert(
            target,
            Annotation {
                cost: cost.clamp(0, i32::MAX as i64) as i32,
                items,
            },
        );
    }
    out
}

/// Coder's quota rule: the owner's budget in the organization is the sum of its groups' allowances; the
/// workspaces it runs (latest successful start builds, this one excluded) consume their daily cost. The
/// check runs under a per-owner-and-organization lock so two builds cannot both take the last credits.
async fn quota_allows(
    tx: &mut PgConnection,
    ctx: &BuildContextRow,
    cost: i32,
) -> Result<bool, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
        .bind(format!("quota:{}:{}", ctx.owner_id, ctx.organization_id))
        .execute(&mut *tx)
        .await?;
    let (consumed, budget) = crate::workspaces::quota::usage(
        &mut *tx,
        ctx.owner_id,
        ctx.organization_id,
        Some(ctx.workspace_id),
    )
    .await?;
    Ok(consumed + i64::from(cost) <= budget)
}

/// Parsed templates by file id. Files never change, so a parse can be reused by every build of every
/// version made from the file; entries are dropped arbitrarily when the cache is full.
#[derive(Default)]
pub struct TemplateCache(
    std::sync::Mutex<std::collections::HashMap<Uuid, std::sync::Arc<hcl::TemplateModel>>>,
);

const TEMPLATE_CACHE_ENTRIES: usize = 128;

async fn parsed_template(
    state: &AppState,
    conn: &mut PgConnection,
    file_id: Uuid,
) -> Result<Result<std::sync::Arc<hcl::TemplateModel>, String>, sqlx::Error> {
    if let Some(model) = state
        .templates
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&file_id)
    {
        return Ok(Ok(model.clone()));
    }
    let data: Option<Vec<u8>> = sqlx::query_scalar("SELECT data FROM files WHERE id = $1")
        .bind(file_id)
        .fetch_optional(conn)
        .await?;
    let Some(data) = data else {
        return Ok(Err("the template's file no longer exists".into()));
    };
    let files = match unpack(&data) {
        Ok((files, _)) => files,
        Err(e) => return Ok(Err(e)),
    };
    // Builds evaluate what the import accepted; ttl rules were enforced there.
    let opts = hcl::ImportOptions {
        allow_short_prebuild_ttl: true,
    };
    let model = match hcl::parse_template(&files, &opts) {
        Ok(m) => std::sync::Arc::new(m),
        Err(errs) => return Ok(Err(errs.to_string())),
    };
    let mut cache = state.templates.0.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= TEMPLATE_CACHE_ENTRIES {
        if let Some(key) = cache.keys().next().copied() {
            cache.remove(&key);
        }
    }
    cache.insert(file_id, model.clone());
    Ok(Ok(model))
}

/// Parses the version's template and evaluates it for this build. Template problems are `Err(message)`.
async fn evaluate(
    state: &AppState,
    conn: &mut PgConnection,
    job: &JobRow,
    ctx: &BuildContextRow,
    claim: Option<&crate::prebuilds::claim::ClaimContext>,
) -> Result<Result<Applied, String>, sqlx::Error> {
    let model = match parsed_template(state, conn, job.file_id).await? {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    let (tokens, agents) = mint_agents(&model, claim.map(|c| c.agents.as_slice()).unwrap_or(&[]));
    let eval_ctx = EvalContext {
        workspace: WorkspaceCtx {
            id: ctx.workspace_id.to_string(),
            name: ctx.workspace_name.clone(),
            start_count: i64::from(ctx.transition == "start"),
            transition: ctx.transition.clone(),
            access_url: state.config.access_url.clone(),
            access_port: 0,
            template_id: ctx.template_id.to_string(),
            template_name: ctx.template_name.clone(),
            template_version: ctx.version_name.clone(),
            is_prebuild: ctx.owner_id == PREBUILDS_USER_ID,
            prebuild_count: i64::from(ctx.owner_id == PREBUILDS_USER_ID),
        },
        owner: OwnerCtx {
            id: ctx.owner_id.to_string(),
            name: ctx.owner_username.clone(),
            full_name: ctx.owner_name.clone(),
            email: ctx.owner_email.clone(),
            login_type: ctx.owner_login_type.clone(),
            rbac_roles: ctx.owner_roles.clone(),
            ..Default::default()
        },
        parameters: ctx.parameters.0.clone(),
        agents,
        ..Default::default()
    };
    Ok(match hcl::evaluate(&model, &eval_ctx) {
        Ok(evaluated) => Ok(Applied { evaluated, tokens }),
        Err(err) => Err(err.to_string()),
    })
}

/// Everything a build writes, as one JSON array per table (read back with `jsonb_to_recordset`), so each
/// table takes one INSERT whatever the number of resources, agents, apps and metadata items.
#[derive(Default)]
struct BuildRows {
    resources: Vec<serde_json::Value>,
    resource_metadata: Vec<serde_json::Value>,
    agents: Vec<serde_json::Value>,
    agent_metadata: Vec<serde_json::Value>,
    apps: Vec<serde_json::Value>,
    /// The build's daily cost (sum of its resources' `coder_metadata` costs).
    cost: i32,
    /// Whether a template was applied (an orphan delete applies none and leaves the build's cost alone).
    applied: bool,
}

impl BuildRows {
    fn new(transition: &str, applied: &Applied) -> Self {
        use serde_json::json;
        let annotations = annotations(&applied.evaluated.resources);
        let mut rows = BuildRows {
            applied: true,
            ..Default::default()
        };
        let mut resource_ids: BTreeMap<String, Uuid> = BTreeMap::new();
        for r in applied
            .evaluated
            .resources
            .iter()
            .filter(|r| r.resource_type != "coder_metadata")
        {
            let id = Uuid::new_v4();
            let type_name = format!("{}.{}", r.resource_type, r.name);
            let note = annotations
                .get(&r.address)
                .or_else(|| annotations.get(&type_name));
            let cost = note.map(|n| n.cost).unwrap_or(0);
            rows.cost = rows.cost.saturating_add(cost);
            resource_ids.entry(type_name).or_insert(id);
            rows.resources.push(json!({
                "id": id, "type": r.resource_type, "name": r.name, "attributes": r.attributes,
                "ignore_changes": r.ignore_changes, "daily_cost": cost,
            }));
            for (key, value, sensitive) in note.map(|n| n.items.as_slice()).unwrap_or_default() {
                // `ord` keeps the items' order in the table's serial ids, which is their display order.
                rows.resource_metadata.push(json!({
                    "ord": rows.resource_metadata.len(), "resource_id": id, "key": key, "value": value,
                    "sensitive": sensitive,
                }));
            }
        }
        // Agents exist only while the workspace runs.
        if transition != "start" {
            return rows;
        }
        for (order, agent) in applied.evaluated.agents.iter().enumerate() {
            let Some((agent_id, token)) = applied.tokens.get(&agent.name).copied() else {
                continue;
            };
            let resource_id = match agent.resource.as_ref().and_then(|r| resource_ids.get(r)) {
                Some(id) => *id,
                None => {
                    // An agent no resource references still needs a home in the resource list.
                    let id = Uuid::new_v4();
                    rows.resources.push(json!({
                        "id": id, "type": "coder_agent", "name": agent.name, "attributes": {},
                        "ignore_changes": [], "daily_cost": 0,
                    }));
                    id
                }
            };
            rows.agents.push(json!({
                "id": agent_id, "name": agent.name, "resource_id": resource_id, "auth_token": token,
                "architecture": agent.arch, "operating_system": agent.os, "environment_variables": agent.env,
                "directory": agent.dir.clone().unwrap_or_default(),
                "connection_timeout_seconds": agent.connection_timeout,
                "startup_script": agent.startup_script.clone().unwrap_or_default(),
                "startup_script_behavior": agent.startup_script_behavior,
                "display_apps": agent.display_apps, "display_order": order,
                "startup_script_timeout_secs": agent.startup_script_timeout,
            }));
            for (position, m) in agent.metadata.iter().enumerate() {
                rows.agent_metadata.push(json!({
                    "agent_id": agent_id, "key": m.key, "display_name": m.display_name, "script": m.script,
                    "interval_secs": m.interval, "timeout_secs": m.timeout, "display_order": position,
                }));
            }
            for (position, app) in applied
                .evaluated
                .apps
                .iter()
                .filter(|a| a.agent == agent.name)
                .enumerate()
            {
                rows.apps.push(json!({
                    "id": Uuid::new_v4(), "agent_id": agent_id, "slug": app.slug,
                    "display_name": app.display_name.clone().unwrap_or_default(),
                    "icon": app.icon.clone().unwrap_or_default(), "command": app.command, "url": app.url,
                    "external": app.external, "subdomain": app.subdomain, "sharing_level": app.share,
                    "hidden": app.hidden, "display_order": position,
                }));
            }
        }
        rows
    }
}

/// Completing the job in the same statement as the writes (`jobs::complete` with no error, same guard).
struct Completion {
    worker: Uuid,
    workspace_id: Uuid,
}

/// Writes a build's rows and its daily cost in one statement. With `complete`, the same statement also
/// completes the job successfully (only if it is still this worker's, uncanceled and unfinished: otherwise
/// nothing is written), marks a deleted workspace deleted and logs the success; it returns whether the job
/// was completed. Without, it returns true.
async fn write_rows(
    conn: impl sqlx::PgExecutor<'_>,
    job_id: Uuid,
    transition: &str,
    rows: &BuildRows,
    complete: Option<Completion>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    use sqlx::types::Json;
    // $1 job, $2 now, $3 transition, $4..$8 rows, $9 cost; with completion $10 worker, $11 workspace.
    let (done, gate, finish) = if complete.is_some() {
        (
            "done AS (
                UPDATE provisioner_jobs SET completed_at = $2, updated_at = $2, error = NULL
                WHERE id = $1 AND worker_id = $10 AND completed_at IS NULL AND canceled_at IS NULL
                RETURNING id),",
            "EXISTS (SELECT FROM done)",
            ", deleted AS (
                UPDATE workspaces SET deleted = true, updated_at = $2
                WHERE id = $11 AND $3 = 'delete' AND EXISTS (SELECT FROM done)),
             logged AS (
                INSERT INTO provisioner_job_logs (job_id, created_at, source, level, stage, output)
                SELECT $1, $2, 'provisioner', 'info', 'Cleaning Up', $3 || ' succeeded'
                WHERE EXISTS (SELECT FROM done))
             SELECT EXISTS (SELECT FROM done)",
        )
    } else {
        ("", "true", " SELECT true")
    };
    let sql = format!(
        "WITH {done}
         resources AS (
            INSERT INTO workspace_resources (id, created_at, job_id, transition, type, name, attributes,
                                             ignore_changes, daily_cost)
            SELECT r.id, $2, $1, $3, r.type, r.name, r.attributes,
                   ARRAY(SELECT jsonb_array_elements_text(r.ignore_changes)), r.daily_cost
            FROM jsonb_to_recordset($4) AS r(id uuid, type text, name text, attributes jsonb,
                                             ignore_changes jsonb, daily_cost integer)
            WHERE {gate}),
         resource_metadata AS (
            INSERT INTO workspace_resource_metadata (workspace_resource_id, key, value, sensitive)
            SELECT m.resource_id, m.key, m.value, m.sensitive
            FROM jsonb_to_recordset($5) AS m(ord integer, resource_id uuid, key text, value text,
                                             sensitive boolean)
            WHERE {gate} ORDER BY m.ord),
         agents AS (
            INSERT INTO workspace_agents (id, created_at, updated_at, name, resource_id, auth_token, architecture,
                                          operating_system, environment_variables, directory,
                                          connection_timeout_seconds, startup_script, startup_script_behavior,
                                          display_apps, display_order, startup_script_timeout_secs)
            SELECT a.id, $2, $2, a.name, a.resource_id, a.auth_token, a.architecture, a.operating_system,
                   a.environment_variables, a.directory, a.connection_timeout_seconds, a.startup_script,
                   a.startup_script_behavior, ARRAY(SELECT jsonb_array_elements_text(a.display_apps)),
                   a.display_order, a.startup_script_timeout_secs
            FROM jsonb_to_recordset($6) AS a(id uuid, name text, resource_id uuid, auth_token uuid,
                                             architecture text, operating_system text,
                                             environment_variables jsonb, directory text,
                                             connection_timeout_seconds integer, startup_script text,
                                             startup_script_behavior text, display_apps jsonb,
                                             display_order integer, startup_script_timeout_secs integer)
            WHERE {gate}),
         agent_metadata AS (
            INSERT INTO workspace_agent_metadata (workspace_agent_id, key, display_name, script, interval_secs,
                                                  timeout_secs, display_order)
            SELECT m.agent_id, m.key, m.display_name, m.script, m.interval_secs, m.timeout_secs, m.display_order
            FROM jsonb_to_recordset($7) AS m(agent_id uuid, key text, display_name text, script text,
                                             interval_secs bigint, timeout_secs bigint, display_order integer)
            WHERE {gate}),
         apps AS (
            INSERT INTO workspace_apps (id, created_at, agent_id, slug, display_name, icon, command, url, external,
                                        subdomain, sharing_level, hidden, display_order)
            SELECT a.id, $2, a.agent_id, a.slug, a.display_name, a.icon, a.command, a.url, a.external,
                   a.subdomain, a.sharing_level, a.hidden, a.display_order
            FROM jsonb_to_recordset($8) AS a(id uuid, agent_id uuid, slug text, display_name text, icon text,
                                             command text, url text, external boolean, subdomain boolean,
                                             sharing_level text, hidden boolean, display_order integer)
            WHERE {gate}),
         cost AS (
            UPDATE workspace_builds SET daily_cost = $9
            WHERE job_id = $1 AND daily_cost IS DISTINCT FROM $9 AND $9 IS NOT NULL AND {gate})
        {finish}"
    );
    let mut query = sqlx::query_scalar::<_, bool>(&sql)
        .bind(job_id)
        .bind(now)
        .bind(transition)
        .bind(Json(&rows.resources))
        .bind(Json(&rows.resource_metadata))
        .bind(Json(&rows.agents))
        .bind(Json(&rows.agent_metadata))
        .bind(Json(&rows.apps))
        .bind(rows.applied.then_some(rows.cost));
    if let Some(c) = complete {
        query = query.bind(c.worker).bind(c.workspace_id);
    }
    query.fetch_one(conn).await
}
