//! The reconciliation loop: every interval, the replica that wins a transaction-scoped advisory
//! lock reads a snapshot, plans every preset and executes the actions.
//!
//! The lock is taken on its own connection *before* the snapshot transaction starts, so the
//! snapshot always sees every create the previous holder committed (a snapshot taken before
//! the lock could miss them and double-create).

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::executor::{self, Outcome};
use super::plan::{plan_preset, Action, PlanConfig, PresetPlan};
use super::snapshot::{self, PresetState};
use crate::app::AppState;
use crate::config::EXPERIMENT_WORKSPACE_PREBUILDS;
use crate::db::locks;

/// Presets executed at once; each holds at most one pool connection at a time.
const PRESET_CONCURRENCY: usize = 4;
const TARGET: &str = "coderd.prebuilds";

/// Site setting key, as Coder names it; the value is `{"reconciliation_paused": bool}`.
pub const SETTINGS_KEY: &str = "prebuilds_settings";

/// Coder's `codersdk.PrebuildsSettings`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct PrebuildsSettings {
    pub reconciliation_paused: bool,
}

pub async fn settings(pool: &sqlx::PgPool) -> Result<PrebuildsSettings, sqlx::Error> {
    let raw = crate::db::get_site_config(pool, SETTINGS_KEY).await?;
    Ok(raw
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default())
}

/// Whether prebuilds are enabled on this deployment (`workspace-prebuilds` experiment).
#[must_use]
pub fn enabled(state: &AppState) -> bool {
    state
        .config
        .experiments
        .enabled(EXPERIMENT_WORKSPACE_PREBUILDS)
}

#[must_use]
pub fn plan_config(state: &AppState) -> PlanConfig {
    let c = &state.config;
    let dur = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    PlanConfig {
        backoff_interval: dur(c.prebuilds_backoff_interval),
        backoff_lookback: dur(c.prebuilds_backoff_lookback),
        failure_hard_limit: c.prebuilds_failure_hard_limit,
    }
}

/// Why a tick did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Another replica holds the reconciliation lock.
    Locked,
    /// `reconciliation_paused` is set.
    Paused,
}

/// Counts of what a preset's execution did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Executed {
    pub created: u32,
    pub deleted: u32,
    pub canceled: u32,
    /// Deletes or cancels skipped because the workspace was claimed or busy.
    pub skipped: u32,
    pub errors: Vec<String>,
}

/// One preset's outcome in a tick.
#[derive(Debug, Clone)]
pub struct PresetOutcome {
    pub state: PresetState,
    pub plan: Option<PresetPlan>,
    pub executed: Executed,
}

/// What one tick did, with its phases timed (the benchmark reports them).
#[derive(Debug, Clone, Default)]
pub struct TickReport {
    pub skipped: Option<Skip>,
    pub presets: Vec<PresetOutcome>,
    pub snapshot_time: Duration,
    pub plan_time: Duration,
    pub execute_time: Duration,
}

impl TickReport {
    fn sum(&self, f: impl Fn(&Executed) -> u32) -> u32 {
        self.presets.iter().map(|p| f(&p.executed)).sum()
    }
    pub fn created(&self) -> u32 {
        self.sum(|e| e.created)
    }
    pub fn deleted(&self) -> u32 {
        self.sum(|e| e.deleted)
    }
    pub fn canceled(&self) -> u32 {
        self.sum(|e| e.canceled)
    }
    pub fn errors(&self) -> Vec<String> {
        self.presets
            .iter()
            .flat_map(|p| p.executed.errors.iter().cloned())
            .collect()
    }
}

/// Runs the loop until `shutdown`: first tick after one interval, then every interval.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let interval = state
        .config
        .prebuilds_reconciliation_interval
        .max(Duration::from_millis(10));
    tracing::info!(target: TARGET, interval_ms = interval.as_millis() as u64, "starting prebuild reconciler");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match tick(&state).await {
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(target: TARGET, error = %err, "reconciliation tick failed")
            }
        }
    }
}

/// One reconciliation tick. Public so tests and benchmarks can run one now.
pub async fn tick(state: &AppState) -> Result<TickReport, sqlx::Error> {
    let mut report = TickReport::default();
    let mut lock = state.pool.begin().await?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(locks::PREBUILDS_RECONCILE)
        .fetch_one(&mut *lock)
        .await?;
    if !got {
        tracing::debug!(target: TARGET, "another replica is reconciling; skipping this tick");
        report.skipped = Some(Skip::Locked);
        return Ok(report);
    }
    if settings(&state.pool).await?.reconciliation_paused {
        tracing::info!(target: TARGET, "prebuild reconciliation is paused; skipping this tick");
        report.skipped = Some(Skip::Paused);
        lock.commit().await?;
        return Ok(report);
    }
    let now = state.clock.now();
    executor::ensure_membership(&state.pool, now).await?;

    let cfg = plan_config(state);
    let started = Instant::now();
    let presets = snapshot::read(&state.pool, None, now, &cfg).await?;
    report.snapshot_time = started.elapsed();

    let started = Instant::now();
    let planned: Vec<(PresetState, Option<PresetPlan>)> = presets
        .into_iter()
        .map(|p| {
            let plan = p
                .problem
                .is_none()
                .then(|| plan_preset(&p.snapshot, now, &cfg));
            (p, plan)
        })
        .collect();
    report.plan_time = started.elapsed();

    let started = Instant::now();
    report.presets = futures::stream::iter(planned)
        .map(|(p, plan)| async move {
            let executed = execute(state, &p, plan.as_ref()).await;
            PresetOutcome {
                state: p,
                plan,
                executed,
            }
        })
        .buffered(PRESET_CONCURRENCY)
        .collect()
        .await;
    report.execute_time = started.elapsed();
    lock.commit().await?;
    state
        .metrics
        .reconcile_duration
        .observe((report.snapshot_time + report.plan_time + report.execute_time).as_secs_f64());
    Ok(report)
}

/// Logs the decision and runs a preset's actions in order; errors are recorded, never raised.
async fn execute(state: &AppState, p: &PresetState, plan: Option<&PresetPlan>) -> Executed {
    let mut out = Executed::default();
    let s = &p.snapshot;
    let Some(plan) = plan else {
        let problem = p.problem.clone().unwrap_or_default();
        tracing::error!(target: TARGET, template = %s.template_name, version = %p.meta.template_version_name,
            preset = %s.preset_name, error = %problem, "skipping preset");
        out.errors.push(problem);
        return out;
    };
    if s.active {
        let status = if plan.hard_limited {
            "hard_limited"
        } else {
            "healthy"
        };
        if plan.hard_limited && p.meta.prebuild_status != "hard_limited" {
            tracing::warn!(target: TARGET, template = %s.template_name, version = %p.meta.template_version_name,
                preset = %s.preset_name, limit = state.config.prebuilds_failure_hard_limit,
                "preset reached the prebuild failure hard limit; no more prebuilds will be created for it");
        }
        if (p.meta.prebuild_status == "hard_limited") != plan.hard_limited {
            if let Err(err) = executor::set_prebuild_status(&state.pool, s.preset_id, status).await
            {
                out.errors.push(err.to_string());
            }
        }
    }
    if plan.is_noop() {
        tracing::debug!(target: TARGET, template = %s.template_name, preset = %s.preset_name,
            desired = plan.desired, running = plan.running, eligible = plan.eligible,
            starting = plan.starting, reason = %plan.reason, "no action");
        return out;
    }
    tracing::info!(target: TARGET, template = %s.template_name, version = %p.meta.template_version_name,
        preset = %s.preset_name, desired = plan.desired, running = plan.running, eligible = plan.eligible,
        starting = plan.starting, expired = plan.expired, extraneous = plan.extraneous,
        reason = %plan.reason, "reconciling preset");
    let now = state.clock.now();
    for action in &plan.actions {
        match action {
            Action::CancelPending { jobs } => {
                for (ws, job) in jobs {
                    match executor::cancel_pending(&state.pool, *ws, *job, now).await {
                        Ok(Outcome::Done) => {
                            out.canceled += 1;
                            tracing::info!(target: TARGET, preset = %s.preset_name, workspace = %ws, job = %job,
                                "canceled pending prebuild creation of an inactive version");
                        }
                        Ok(Outcome::Skipped) => out.skipped += 1,
                        Err(err) => record(&mut out, s.preset_name.as_str(), "cancel", err),
                    }
                }
            }
            Action::Delete {
                workspace_ids,
                reason,
            } => {
                for ws in workspace_ids {
                    match executor::delete(&state.pool, *ws, false, now).await {
                        Ok(Outcome::Done) => {
                            out.deleted += 1;
                            tracing::info!(target: TARGET, template = %s.template_name, preset = %s.preset_name,
                                workspace = %ws, reason = %reason, "deleting prebuild");
                        }
                        Ok(Outcome::Skipped) => out.skipped += 1,
                        Err(err) => record(&mut out, s.preset_name.as_str(), "delete", err),
                    }
                }
            }
            Action::Create { count } => {
                for _ in 0..*count {
                    match executor::create(
                        &state.pool,
                        p.meta.template_id,
                        p.meta.organization_id,
                        s.template_version_id,
                        s.preset_id,
                        now,
                    )
                    .await
                    {
                        Ok(ws) => {
                            out.created += 1;
                            tracing::info!(target: TARGET, template = %s.template_name, preset = %s.preset_name,
                                workspace = %ws, "creating prebuild");
                        }
                        Err(err) => {
                            record(&mut out, s.preset_name.as_str(), "create", err);
                            // The same cause would fail the remaining creates too.
                            break;
                        }
                    }
                }
            }
        }
    }
    out
}

fn record(out: &mut Executed, preset: &str, what: &str, err: executor::ExecError) {
    tracing::error!(target: TARGET, preset = %preset, action = what, error = %err, "prebuild action failed");
    out.errors.push(format!("{what}: {err}"));
}

/// Starts the loop when prebuilds are enabled.
pub fn start(state: &AppState, shutdown: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    enabled(state).then(|| tokio::spawn(run(state.clone(), shutdown)))
}

/// Plans one template's presets now, as the reconciler would, for the status API.
pub async fn status(
    state: &AppState,
    template_id: Uuid,
) -> Result<Vec<(PresetState, Option<PresetPlan>)>, sqlx::Error> {
    let cfg = plan_config(state);
    let now = state.clock.now();
    let presets = snapshot::read(&state.pool, Some(template_id), now, &cfg).await?;
    Ok(presets
        .into_iter()
        .map(|p| {
            let plan = p
                .problem
                .is_none()
                .then(|| plan_preset(&p.snapshot, now, &cfg));
            (p, plan)
        })
        .collect())
}
