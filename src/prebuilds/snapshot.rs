//! The reconciler's view of the database: one read-only REPEATABLE READ transaction with a fixed
//! number of queries, however many templates, presets and prebuilds there are.
//!
//! 1. presets with a pool (all versions), with their schedules folded in as JSON;
//! 2. every live workspace owned by the `prebuilds` user with its latest build, job and agent
//!    readiness.
//!
//! Everything the plan needs per preset (running, starting, pending creation jobs, backoff
//! failures, hard-limit history) is derived from query 2 in [`assemble`], which is pure so the
//! derivation rules are unit-tested without a database.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::plan::{PlanConfig, PresetSnapshot, RunningPrebuild};
use super::schedule::Scheduling;
use crate::users::PREBUILDS_USER_ID;

/// What the executor and the logs need about a preset besides the plan's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetMeta {
    pub template_id: Uuid,
    pub organization_id: Uuid,
    pub template_version_name: String,
    /// `prebuild_status` as stored (`healthy`, `hard_limited`, `validation_failed`).
    pub prebuild_status: String,
}

/// One preset with a pool: its plan input plus metadata. `problem` is set when the stored
/// configuration cannot be used (e.g. a schedule that no longer parses); such a preset is
/// reported and skipped, never allowed to stop the others.
#[derive(Debug, Clone)]
pub struct PresetState {
    pub meta: PresetMeta,
    pub snapshot: PresetSnapshot,
    pub problem: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
pub struct PresetRow {
    pub id: Uuid,
    pub name: String,
    pub template_version_id: Uuid,
    pub template_version_name: String,
    pub template_id: Uuid,
    pub template_name: String,
    pub organization_id: Uuid,
    pub organization_name: String,
    pub active: bool,
    pub desired_instances: i32,
    pub invalidate_after_secs: Option<i32>,
    pub scheduling_timezone: String,
    pub last_invalidated_at: Option<DateTime<Utc>>,
    pub prebuild_status: String,
    pub schedules: Json<Vec<(String, i32)>>,
}

/// A live prebuild (owned by `prebuilds`) and its latest build.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PrebuildRow {
    pub workspace_id: Uuid,
    pub created_at: DateTime<Utc>,
    /// The latest build's preset, else the most recent start build's.
    pub preset_id: Option<Uuid>,
    pub build_number: i32,
    pub transition: String,
    pub build_created_at: DateTime<Utc>,
    pub job_id: Uuid,
    pub job_status: String,
    /// Every agent of the latest build is `ready` (false without agents, as Coder has it).
    pub ready: bool,
}

const PRESETS: &str = "
SELECT p.id, p.name, p.template_version_id, tv.name AS template_version_name, t.id AS template_id,
       t.name AS template_name, o.id AS organization_id, o.name AS organization_name,
       (tv.id = t.active_version_id AND NOT t.deleted AND t.deprecated = '') AS active,
       p.desired_instances, p.invalidate_after_secs, p.scheduling_timezone, p.last_invalidated_at,
       p.prebuild_status,
       COALESCE((SELECT json_agg(json_build_array(s.cron_expression, s.desired_instances) ORDER BY s.position)
                 FROM template_version_preset_prebuild_schedules s WHERE s.preset_id = p.id), '[]') AS schedules
FROM template_version_presets p
JOIN template_versions tv ON tv.id = p.template_version_id
JOIN templates t ON t.id = tv.template_id
JOIN organizations o ON o.id = t.organization_id
WHERE p.desired_instances IS NOT NULL AND ($1::uuid IS NULL OR t.id = $1)
ORDER BY t.name, tv.created_at, p.name";

const PREBUILDS: &str = "
SELECT w.id AS workspace_id, w.created_at,
       COALESCE(lb.template_version_preset_id,
                (SELECT b.template_version_preset_id FROM workspace_builds b
                 WHERE b.workspace_id = w.id AND b.transition = 'start' AND b.template_version_preset_id IS NOT NULL
                 ORDER BY b.build_number DESC LIMIT 1)) AS preset_id,
       lb.build_number, lb.transition, lb.created_at AS build_created_at, j.id AS job_id, j.job_status,
       COALESCE((SELECT bool_and(a.lifecycle_state = 'ready') FROM workspace_resources r
                 JOIN workspace_agents a ON a.resource_id = r.id WHERE r.job_id = j.id), false) AS ready
FROM workspaces w
JOIN LATERAL (SELECT b.build_number, b.transition, b.created_at, b.job_id, b.template_version_preset_id
              FROM workspace_builds b WHERE b.workspace_id = w.id
              ORDER BY b.build_number DESC LIMIT 1) lb ON true
JOIN provisioner_jobs j ON j.id = lb.job_id
WHERE w.owner_id = $1 AND NOT w.deleted AND ($2::uuid IS NULL OR w.template_id = $2)";

/// Reads the raw rows in the caller's transaction (the caller picks the isolation level).
pub async fn load(
    conn: &mut PgConnection,
    template: Option<Uuid>,
) -> Result<(Vec<PresetRow>, Vec<PrebuildRow>), sqlx::Error> {
    let presets = sqlx::query_as(PRESETS)
        .bind(template)
        .fetch_all(&mut *conn)
        .await?;
    let prebuilds = sqlx::query_as(PREBUILDS)
        .bind(PREBUILDS_USER_ID)
        .bind(template)
        .fetch_all(&mut *conn)
        .await?;
    Ok((presets, prebuilds))
}

/// Reads a consistent snapshot: both queries see the same instant.
pub async fn read(
    pool: &sqlx::PgPool,
    template: Option<Uuid>,
    now: DateTime<Utc>,
    cfg: &PlanConfig,
) -> Result<Vec<PresetState>, sqlx::Error> {
    let (presets, prebuilds) = read_rows(pool, template).await?;
    Ok(assemble(presets, &prebuilds, now, cfg))
}

/// The rows of a consistent snapshot, for callers that assemble them elsewhere.
pub async fn read_rows(
    pool: &sqlx::PgPool,
    template: Option<Uuid>,
) -> Result<(Vec<PresetRow>, Vec<PrebuildRow>), sqlx::Error> {
    let mut tx = pool.begin_with(crate::db::BEGIN_READ_SNAPSHOT).await?;
    // JIT compilation costs more than these queries save from it (measured: ~30 ms per plan). The
    // pool's connections use generic plans; these two run rarely, scan whole tables, and are
    // planned for their actual parameters instead.
    sqlx::query(
        "SELECT set_config('jit', 'off', true), set_config('plan_cache_mode', 'auto', true)",
    )
    .execute(&mut *tx)
    .await?;
    let rows = load(&mut tx, template).await?;
    tx.commit().await?;
    Ok(rows)
}

fn failed(status: &str) -> bool {
    status == "failed"
}

/// Derives each preset's plan input from the rows, following Coder's queries:
/// - running: latest build a successful `start`;
/// - starting / stopping-or-deleting: latest build's job pending or running;
/// - pending creation jobs (acted on for inactive presets): build 1, `start`, not yet picked up;
/// - backoff failures (active presets only): when one of the latest `desired` creation builds
///   failed within the lookback, every failure within the lookback counts;
/// - hard-limit history (active presets only): latest start builds' outcomes, newest first.
pub fn assemble(
    presets: Vec<PresetRow>,
    prebuilds: &[PrebuildRow],
    now: DateTime<Utc>,
    cfg: &PlanConfig,
) -> Vec<PresetState> {
    let mut by_preset: HashMap<Uuid, Vec<&PrebuildRow>> = HashMap::new();
    for row in prebuilds {
        if let Some(p) = row.preset_id {
            by_preset.entry(p).or_default().push(row);
        }
    }
    let lookback_start = now
        .checked_sub_signed(cfg.backoff_lookback)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    presets
        .into_iter()
        .map(|p| {
            let rows = by_preset.remove(&p.id).unwrap_or_default();
            let (scheduling, problem) =
                if p.scheduling_timezone.is_empty() && p.schedules.0.is_empty() {
                    (None, None)
                } else {
                    match Scheduling::parse(&p.scheduling_timezone, &p.schedules.0) {
                        Ok(s) => (Some(s), None),
                        Err(err) => (None, Some(format!("stored schedule is invalid: {err}"))),
                    }
                };
            let mut running = Vec::new();
            let mut starting = 0;
            let mut stopping_or_deleting = 0;
            let mut pending_create_jobs = Vec::new();
            let mut creations: Vec<&PrebuildRow> = Vec::new();
            for r in &rows {
                let in_progress = matches!(r.job_status.as_str(), "pending" | "running");
                match (r.transition.as_str(), r.job_status.as_str()) {
                    ("start", "succeeded") => running.push(RunningPrebuild {
                        workspace_id: r.workspace_id,
                        created_at: r.created_at,
                        ready: r.ready,
                    }),
                    ("start", _) if in_progress => starting += 1,
                    (_, _) if in_progress => stopping_or_deleting += 1,
                    _ => {}
                }
                if r.transition == "start" {
                    creations.push(r);
                    if r.build_number == 1 && r.job_status == "pending" {
                        pending_create_jobs.push((r.workspace_id, r.job_id));
                    }
                }
            }
            creations.sort_by(|a, b| {
                (b.build_created_at, b.workspace_id).cmp(&(a.build_created_at, a.workspace_id))
            });
            let (recent_creation_failures, latest_creation_results) = if p.active {
                let top_n = usize::try_from(p.desired_instances.max(0)).unwrap_or(0);
                let recent_failure_in_top = creations
                    .iter()
                    .take(top_n)
                    .any(|r| failed(&r.job_status) && r.build_created_at >= lookback_start);
                let failures = if recent_failure_in_top {
                    creations
                        .iter()
                        .filter(|r| failed(&r.job_status) && r.build_created_at >= lookback_start)
                        .map(|r| r.build_created_at)
                        .collect()
                } else {
                    Vec::new()
                };
                let results = creations.iter().map(|r| !failed(&r.job_status)).collect();
                (failures, results)
            } else {
                (Vec::new(), Vec::new())
            };
            PresetState {
                meta: PresetMeta {
                    template_id: p.template_id,
                    organization_id: p.organization_id,
                    template_version_name: p.template_version_name,
                    prebuild_status: p.prebuild_status,
                },
                snapshot: PresetSnapshot {
                    preset_id: p.id,
                    preset_name: p.name,
                    template_name: p.template_name,
                    template_version_id: p.template_version_id,
                    organization_name: p.organization_name,
                    active: p.active,
                    base_instances: p.desired_instances,
                    scheduling,
                    ttl_seconds: p.invalidate_after_secs,
                    last_invalidated_at: p.last_invalidated_at,
                    running,
                    starting,
                    stopping_or_deleting,
                    pending_create_jobs,
                    recent_creation_failures,
                    latest_creation_results,
                },
                problem,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
    }

    fn preset(id: u128, active: bool, desired: i32) -> PresetRow {
        PresetRow {
            id: Uuid::from_u128(id),
            name: format!("p{id}"),
            template_version_id: Uuid::from_u128(1000 + id),
            template_version_name: "v1".into(),
            template_id: Uuid::from_u128(2000),
            template_name: "t".into(),
            organization_id: Uuid::from_u128(3000),
            organization_name: "coder".into(),
            active,
            desired_instances: desired,
            invalidate_after_secs: None,
            scheduling_timezone: String::new(),
            last_invalidated_at: None,
            prebuild_status: "healthy".into(),
            schedules: Json(Vec::new()),
        }
    }

    fn row(ws: u128, preset: u128, transition: &str, status: &str, mins_ago: i64) -> PrebuildRow {
        PrebuildRow {
            workspace_id: Uuid::from_u128(ws),
            created_at: now() - Duration::minutes(mins_ago),
            preset_id: Some(Uuid::from_u128(preset)),
            build_number: 1,
            transition: transition.into(),
            build_created_at: now() - Duration::minutes(mins_ago),
            job_id: Uuid::from_u128(ws + 500),
            job_status: status.into(),
            ready: true,
        }
    }

    #[test]
    fn rows_are_classified_by_latest_build() {
        let rows = vec![
            row(1, 1, "start", "succeeded", 10),
            row(2, 1, "start", "running", 1),
            row(3, 1, "start", "pending", 1),
            row(4, 1, "stop", "succeeded", 30),
            row(5, 1, "delete", "running", 2),
            row(6, 1, "start", "failed", 200),
            row(7, 1, "start", "canceled", 5),
        ];
        let out = assemble(
            vec![preset(1, true, 3)],
            &rows,
            now(),
            &PlanConfig::default(),
        );
        let s = &out[0].snapshot;
        assert_eq!(s.running.len(), 1);
        assert_eq!(s.running[0].workspace_id, Uuid::from_u128(1));
        assert_eq!(s.starting, 2);
        assert_eq!(s.stopping_or_deleting, 1);
        assert_eq!(
            s.pending_create_jobs,
            vec![(Uuid::from_u128(3), Uuid::from_u128(503))]
        );
        // The failure is outside the 1h lookback.
        assert!(s.recent_creation_failures.is_empty());
        // Newest first: 2 and 3 (1 min), 7, 1, 6.
        assert_eq!(
            s.latest_creation_results,
            vec![true, true, true, true, false]
        );
    }

    #[test]
    fn backoff_needs_a_failure_among_the_latest_desired_builds() {
        // desired 1: the latest creation succeeded, so the older failure does not hold the preset back.
        let rows = vec![
            row(1, 1, "start", "succeeded", 1),
            row(2, 1, "start", "failed", 5),
        ];
        let out = assemble(
            vec![preset(1, true, 1)],
            &rows,
            now(),
            &PlanConfig::default(),
        );
        assert!(out[0].snapshot.recent_creation_failures.is_empty());
        // desired 2: the failure is among the latest two, and every failure in the window counts.
        let rows = vec![
            row(1, 1, "start", "succeeded", 1),
            row(2, 1, "start", "failed", 5),
            row(3, 1, "start", "failed", 50),
        ];
        let out = assemble(
            vec![preset(1, true, 2)],
            &rows,
            now(),
            &PlanConfig::default(),
        );
        assert_eq!(out[0].snapshot.recent_creation_failures.len(), 2);
    }

    #[test]
    fn inactive_presets_have_no_failure_history() {
        let rows = vec![row(1, 1, "start", "failed", 1)];
        let out = assemble(
            vec![preset(1, false, 1)],
            &rows,
            now(),
            &PlanConfig::default(),
        );
        assert!(out[0].snapshot.recent_creation_failures.is_empty());
        assert!(out[0].snapshot.latest_creation_results.is_empty());
    }

    #[test]
    fn rows_of_other_presets_and_bad_schedules_stay_apart() {
        let mut bad = preset(2, true, 1);
        bad.scheduling_timezone = "Mars/Olympus".into();
        bad.schedules = Json(vec![("* 8-18 * * 1-5".into(), 3)]);
        let rows = vec![
            row(1, 1, "start", "succeeded", 1),
            row(2, 9, "start", "succeeded", 1),
        ];
        let out = assemble(
            vec![preset(1, true, 1), bad],
            &rows,
            now(),
            &PlanConfig::default(),
        );
        assert_eq!(out[0].snapshot.running.len(), 1);
        assert!(out[0].problem.is_none());
        assert!(out[1].snapshot.running.is_empty());
        assert!(out[1].problem.as_deref().unwrap().contains("invalid"));
    }
}
