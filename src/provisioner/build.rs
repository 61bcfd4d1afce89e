//! The workspace-build job: evaluate the version's template for the build (workspace, owner, parameters,
//! fresh agent tokens), apply it with the runtime, and write resources, agents and apps back together with
//! the job's completion in one transaction.
//!
//! Runtimes, by the version's provisioner: `echo` records resources and agents and starts nothing (whoever
//! holds an agent token drives the agent API); `terraform` runs on the local runtime (`local.rs`), which
//! starts a `coder agent` process per agent.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
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
}

/// Outcome of evaluating and applying a template for one build.
struct Applied {
    evaluated: hcl::Evaluated,
    tokens: BTreeMap<String, (Uuid, Uuid)>,
}

pub async fn run(state: &AppState, worker: Uuid, job: &JobRow) -> Result<(), sqlx::Error> {
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
        jobs::complete(
            &state.pool,
            job.id,
            worker,
            Some("job input names no workspace build"),
            now(),
        )
        .await?;
        return Ok(());
    };
    let ctx: Option<BuildContextRow> = sqlx::query_as(
        "SELECT b.id AS build_id, b.build_number, b.transition, w.id AS workspace_id, w.name AS workspace_name,
                w.organization_id, o.name AS organization_name, p.name AS preset_name,
                t.id AS template_id, t.name AS template_name, tv.name AS version_name,
                u.id AS owner_id, u.username AS owner_username, u.name AS owner_name, u.email AS owner_email,
                u.login_type AS owner_login_type, u.rbac_roles AS owner_roles
         FROM workspace_builds b
         JOIN workspaces w ON w.id = b.workspace_id
         JOIN templates t ON t.id = w.template_id
         JOIN template_versions tv ON tv.id = b.template_version_id
         JOIN users u ON u.id = w.owner_id
         JOIN organizations o ON o.id = w.organization_id
         LEFT JOIN template_version_presets p ON p.id = b.template_version_preset_id
         WHERE b.id = $1",
    )
    .bind(build_id)
    .fetch_optional(&state.pool)
    .await?;
    let Some(ctx) = ctx else {
        jobs::complete(
            &state.pool,
            job.id,
            worker,
            Some("the workspace build no longer exists"),
            now(),
        )
        .await?;
        return Ok(());
    };
    let log = |level: &'static str, stage: &'static str, output: String| async move {
        jobs::append_logs(
            &state.pool,
            job.id,
            "provisioner",
            &[LogLine {
                level,
                stage,
                output: &output,
            }],
            state.clock.now(),
        )
        .await
    };
    // A claimed prebuild's follow-up build hands the running agents over instead of restarting them.
    let claim = if claim_flag && ctx.transition == "start" {
        let mut conn = state.pool.acquire().await?;
        crate::prebuilds::claim::claim_context(&mut conn, build_id).await?
    } else {
        None
    };
    let applied = if orphan {
        log(
            "info",
            "Orphaning",
            "Orphan delete: resources are left in place".into(),
        )
        .await?;
        Ok(None)
    } else {
        log(
            "info",
            "Planning infrastructure",
            format!(
                "{} build of workspace {}",
                ctx.transition, ctx.workspace_name
            ),
        )
        .await?;
        evaluate(state, job, &ctx, claim.as_ref()).await?.map(Some)
    };
    let applied = match applied {
        Ok(a) => a,
        Err(message) => {
            for line in message.lines() {
                log("error", "Planning infrastructure", line.to_string()).await?;
            }
            jobs::complete(&state.pool, job.id, worker, Some(&message), now()).await?;
            tracing::info!(target: "coderd.provisionerd", job = %job.id, build = %build_id, error = %message, "workspace build failed");
            return Ok(());
        }
    };
    let mut tx = state.pool.begin().await?;
    let mut cost = 0;
    if let Some(applied) = &applied {
        cost = write_resources(&mut tx, job.id, &ctx.transition, applied, now()).await?;
    }
    let mut replaced = Vec::new();
    if let (Some(claim), Some(applied)) = (&claim, &applied) {
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
                build_id,
                ctx.workspace_id,
                preset,
                ctx.owner_id,
                &replaced,
                now(),
            )
            .await?;
        }
    }
    if ctx.transition == "start" && cost > 0 && !quota_allows(&mut tx, &ctx, cost).await? {
        tx.rollback().await?;
        let message = "insufficient quota";
        let _ = log(
            "error",
            "Applying infrastructure",
            format!("{message}: this build costs {cost} credits a day"),
        )
        .await;
        jobs::complete(&state.pool, job.id, worker, Some(message), now()).await?;
        return Ok(());
    }
    let local = job.provisioner == "terraform";
    let keep_agents = claim.is_some()
        && applied.as_ref().is_some_and(|a| {
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
        if let Err(err) = apply_local(state, &ctx, applied.as_ref()).await {
            tx.rollback().await?;
            let message = format!("local runtime: {err}");
            let _ = log("error", "Applying infrastructure", message.clone()).await;
            jobs::complete(&state.pool, job.id, worker, Some(&message), now()).await?;
            return Ok(());
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
        jobs::finish_canceled(&state.pool, job.id, worker, now()).await?;
        return Ok(());
    }
    if ctx.transition == "delete" {
        sqlx::query("UPDATE workspaces SET deleted = true, updated_at = $2 WHERE id = $1")
            .bind(ctx.workspace_id)
            .bind(now())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let _ = log(
        "info",
        "Cleaning Up",
        format!("{} succeeded", ctx.transition),
    )
    .await;
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
    for r in &replaced {
        tracing::warn!(target: "coderd.prebuilds", workspace = %ctx.workspace_name, template = %ctx.template_name,
            resource = %r.resource, attributes = ?r.attributes,
            "claim build replaced a resource the prebuild created; consider lifecycle ignore_changes");
    }
    Ok(())
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
    tx: &mut sqlx::PgConnection,
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
    write_resources(tx, job_id, "start", &Applied { evaluated, tokens }, now).await?;
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
    tx: &mut sqlx::PgConnection,
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
        .fetch_optional(&state.pool)
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
    job: &JobRow,
    ctx: &BuildContextRow,
    claim: Option<&crate::prebuilds::claim::ClaimContext>,
) -> Result<Result<Applied, String>, sqlx::Error> {
    let params: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, value FROM workspace_build_parameters WHERE workspace_build_id = $1",
    )
    .bind(ctx.build_id)
    .fetch_all(&state.pool)
    .await?;
    let model = match parsed_template(state, job.file_id).await? {
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
        parameters: params.into_iter().collect(),
        agents,
        ..Default::default()
    };
    Ok(match hcl::evaluate(&model, &eval_ctx) {
        Ok(evaluated) => Ok(Applied { evaluated, tokens }),
        Err(err) => Err(err.to_string()),
    })
}

async fn write_resources(
    tx: &mut sqlx::PgConnection,
    job_id: Uuid,
    transition: &str,
    applied: &Applied,
    now: DateTime<Utc>,
) -> Result<i32, sqlx::Error> {
    let annotations = annotations(&applied.evaluated.resources);
    let mut resource_ids: BTreeMap<String, Uuid> = BTreeMap::new();
    let mut total_cost = 0i32;
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
        total_cost = total_cost.saturating_add(cost);
        resource_ids.entry(type_name).or_insert(id);
        sqlx::query(
            "INSERT INTO workspace_resources (id, created_at, job_id, transition, type, name, attributes,
                                              ignore_changes, daily_cost)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(now)
        .bind(job_id)
        .bind(transition)
        .bind(&r.resource_type)
        .bind(&r.name)
        .bind(sqlx::types::Json(&r.attributes))
        .bind(&r.ignore_changes)
        .bind(cost)
        .execute(&mut *tx)
        .await?;
        for (key, value, sensitive) in note.map(|n| n.items.as_slice()).unwrap_or_default() {
            sqlx::query(
                "INSERT INTO workspace_resource_metadata (workspace_resource_id, key, value, sensitive)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(key)
            .bind(value)
            .bind(sensitive)
            .execute(&mut *tx)
            .await?;
        }
    }
    sqlx::query("UPDATE workspace_builds SET daily_cost = $2 WHERE job_id = $1")
        .bind(job_id)
        .bind(total_cost)
        .execute(&mut *tx)
        .await?;
    // Agents exist only while the workspace runs.
    if transition != "start" {
        return Ok(total_cost);
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
                sqlx::query(
                    "INSERT INTO workspace_resources (id, created_at, job_id, transition, type, name)
                     VALUES ($1, $2, $3, $4, 'coder_agent', $5)",
                )
                .bind(id)
                .bind(now)
                .bind(job_id)
                .bind(transition)
                .bind(&agent.name)
                .execute(&mut *tx)
                .await?;
                id
            }
        };
        sqlx::query(
            "INSERT INTO workspace_agents (id, created_at, updated_at, name, resource_id, auth_token, architecture,
                                           operating_system, environment_variables, directory, connection_timeout_seconds,
                                           startup_script, startup_script_behavior, display_apps, display_order,
                                           startup_script_timeout_secs)
             VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(agent_id)
        .bind(now)
        .bind(&agent.name)
        .bind(resource_id)
        .bind(token)
        .bind(&agent.arch)
        .bind(&agent.os)
        .bind(sqlx::types::Json(&agent.env))
        .bind(agent.dir.clone().unwrap_or_default())
        .bind(agent.connection_timeout)
        .bind(agent.startup_script.clone().unwrap_or_default())
        .bind(&agent.startup_script_behavior)
        .bind(&agent.display_apps)
        .bind(order as i32)
        .bind(agent.startup_script_timeout)
        .execute(&mut *tx)
        .await?;
        for (position, m) in agent.metadata.iter().enumerate() {
            sqlx::query(
                "INSERT INTO workspace_agent_metadata (workspace_agent_id, key, display_name, script, interval_secs,
                                                       timeout_secs, display_order)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(agent_id)
            .bind(&m.key)
            .bind(&m.display_name)
            .bind(&m.script)
            .bind(m.interval)
            .bind(m.timeout)
            .bind(position as i32)
            .execute(&mut *tx)
            .await?;
        }
        for (position, app) in applied
            .evaluated
            .apps
            .iter()
            .filter(|a| a.agent == agent.name)
            .enumerate()
        {
            sqlx::query(
                "INSERT INTO workspace_apps (id, created_at, agent_id, slug, display_name, icon, command, url, external,
                                             subdomain, sharing_level, hidden, display_order)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(Uuid::new_v4())
            .bind(now)
            .bind(agent_id)
            .bind(&app.slug)
            .bind(app.display_name.clone().unwrap_or_default())
            .bind(app.icon.clone().unwrap_or_default())
            .bind(&app.command)
            .bind(&app.url)
            .bind(app.external)
            .bind(app.subdomain)
            .bind(&app.share)
            .bind(app.hidden)
            .bind(position as i32)
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(total_cost)
}
