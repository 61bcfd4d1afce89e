//! Series computed from the database, so every replica reports the same values and counters survive
//! restarts: prebuild counters (created / failed / claimed / resource replacements), prebuild gauges
//! (desired / running / eligible / hard limited, from the reconciler's own snapshot and plan), the
//! reconciliation pause flag, the provisioner job queue, agents and the connection pool.
//!
//! A scrape never waits on the database once the cache is warm: a stale cache (older than
//! [`MAX_AGE`]) is served while one background refresh runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::app::AppState;
use crate::prebuilds::{plan, reconciler, snapshot};
use crate::users::PREBUILDS_USER_ID;

/// How stale the database-backed series may get.
pub const MAX_AGE: Duration = Duration::from_secs(5);

/// The database-backed series, kept already encoded in the text format: a scrape sends these bytes
/// as they are instead of cloning and re-encoding thousands of series (one per agent, alone).
#[derive(Default)]
pub struct Cache {
    text: Mutex<Option<(Instant, Bytes)>>,
    refreshing: AtomicBool,
}

impl Cache {
    /// The cached exposition text, computed first if there is none yet; a stale cache triggers one
    /// background refresh and is served meanwhile.
    pub async fn text(&self, state: &AppState) -> Bytes {
        let cached = self.text.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match cached {
            None => self.refresh(state).await,
            Some((at, text)) => {
                if at.elapsed() > MAX_AGE && !self.refreshing.swap(true, Ordering::SeqCst) {
                    let state = state.clone();
                    tokio::spawn(async move {
                        let cache = &state.metrics.db_cache;
                        let _ = cache.refresh(&state).await;
                        cache.refreshing.store(false, Ordering::SeqCst);
                    });
                }
                text
            }
        }
    }

    /// Recomputes every series now (tests use this to read exact values).
    pub async fn refresh(&self, state: &AppState) -> Bytes {
        let started = Instant::now();
        let encoded = match fetch(state).await {
            Ok(rows) => {
                let fetched = started.elapsed();
                let encoded = encode_in_background(rows).await;
                tracing::debug!(target: "coderd.metrics", fetch_ms = fetched.as_secs_f64() * 1e3,
                    encode_ms = (started.elapsed() - fetched).as_secs_f64() * 1e3,
                    "refreshed database-backed metrics");
                encoded
            }
            Err(err) => Err(err.to_string()),
        };
        match encoded {
            Ok(text) => {
                *self.text.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((Instant::now(), text.clone()));
                text
            }
            Err(err) => {
                tracing::warn!(target: "coderd.metrics", error = %err, "refreshing database-backed metrics failed");
                // Keep serving the last good values.
                self.text
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(|(_, t)| t.clone())
                    .unwrap_or_default()
            }
        }
    }
}

/// Builds and encodes the series on a thread of its own at a low CPU priority: with thousands of
/// agents this takes tens of milliseconds of CPU, which must neither hold a runtime worker nor
/// delay the scrapes and API requests running meanwhile.
async fn encode_in_background(rows: Rows) -> Result<Bytes, String> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("metrics-encode".into())
        .spawn(move || {
            // SAFETY: setpriority on the calling thread (`who` = 0) has no memory effects; on
            // Linux the nice value is per thread. Failure only means normal priority.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, 0, 10);
            }
            let families = build(rows);
            let mut out = Vec::with_capacity(256 * 1024);
            let encoded = prometheus::TextEncoder::new()
                .encode(&families, &mut out)
                .map(|_| Bytes::from(out))
                .map_err(|e| e.to_string());
            let _ = done.send(encoded);
        })
        .map_err(|e| e.to_string())?;
    result.await.map_err(|e| e.to_string())?
}

fn must<T>(r: prometheus::Result<T>) -> T {
    r.unwrap_or_else(|err| panic!("metric definition: {err}"))
}

const PRESET_LABELS: &[&str] = &["template_name", "preset_name", "organization_name"];

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = must(IntCounterVec::new(Opts::new(name, help), labels));
    must(registry.register(Box::new(c.clone())));
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = must(IntGaugeVec::new(Opts::new(name, help), labels));
    must(registry.register(Box::new(g.clone())));
    g
}

#[derive(sqlx::FromRow)]
struct PrebuildCounts {
    template_name: String,
    preset_name: String,
    organization_name: String,
    created: i64,
    failed: i64,
    claimed: i64,
}

#[derive(sqlx::FromRow)]
struct Replacements {
    template_name: String,
    preset_name: String,
    organization_name: String,
    count: i64,
}

#[derive(sqlx::FromRow)]
struct AgentRow {
    agent_name: String,
    username: String,
    workspace_name: String,
    template_name: String,
    template_version: String,
    lifecycle_state: String,
    connected: bool,
}

/// Everything the series are built from, read from the database and the pool.
struct Rows {
    counts: Vec<PrebuildCounts>,
    replacements: Vec<Replacements>,
    /// The reconciler's snapshot rows, assembled and planned off the runtime.
    snapshot: (Vec<snapshot::PresetRow>, Vec<snapshot::PrebuildRow>),
    plan_config: plan::PlanConfig,
    plan_now: chrono::DateTime<chrono::Utc>,
    paused: bool,
    now: i64,
    jobs: Vec<(String, String, i64)>,
    agents: Vec<AgentRow>,
    pool: [i64; 3],
}

async fn fetch(state: &AppState) -> Result<Rows, sqlx::Error> {
    let pool = &state.pool;
    // Prebuild counters: first builds initiated by the prebuilds user (as Coder counts them).
    let counts: Vec<PrebuildCounts> = sqlx::query_as(
        "SELECT t.name AS template_name, p.name AS preset_name, o.name AS organization_name,
                count(*) AS created,
                count(*) FILTER (WHERE j.job_status = 'failed') AS failed,
                count(*) FILTER (WHERE w.owner_id <> $1) AS claimed
         FROM workspace_builds b
         JOIN workspaces w ON w.id = b.workspace_id
         JOIN templates t ON t.id = w.template_id
         JOIN template_version_presets p ON p.id = b.template_version_preset_id
         JOIN provisioner_jobs j ON j.id = b.job_id
         JOIN organizations o ON o.id = w.organization_id
         WHERE b.build_number = 1 AND b.initiator_id = $1 AND NOT t.deleted
         GROUP BY 1, 2, 3",
    )
    .bind(PREBUILDS_USER_ID)
    .fetch_all(pool)
    .await?;
    let replacements: Vec<Replacements> = sqlx::query_as(
        "SELECT t.name AS template_name, p.name AS preset_name, o.name AS organization_name, count(*) AS count
         FROM prebuild_resource_replacements r
         JOIN workspaces w ON w.id = r.workspace_id
         JOIN templates t ON t.id = w.template_id
         JOIN template_version_presets p ON p.id = r.preset_id
         JOIN organizations o ON o.id = w.organization_id
         WHERE NOT t.deleted
         GROUP BY 1, 2, 3",
    )
    .fetch_all(pool)
    .await?;

    // Prebuild gauges: the reconciler's own snapshot (and, in `build`, its plan).
    let now = state.clock.now();
    let snapshot = snapshot::read_rows(pool, None).await?;
    let paused = reconciler::settings(pool).await?.reconciliation_paused;

    // The job queue, from the database (every replica's daemons share it).
    let jobs: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT type, job_status, count(*) FROM provisioner_jobs
         WHERE started_at IS NULL AND canceled_at IS NULL OR started_at IS NOT NULL AND completed_at IS NULL
         GROUP BY 1, 2",
    )
    .fetch_all(pool)
    .await?;

    // Agents of every running workspace's latest build.
    let agents: Vec<AgentRow> = sqlx::query_as(
        "SELECT a.name AS agent_name, u.username, w.name AS workspace_name, t.name AS template_name,
                tv.name AS template_version, a.lifecycle_state,
                (a.last_connected_at IS NOT NULL AND a.last_connected_at > $1) AS connected
         FROM workspaces w
         JOIN LATERAL (SELECT b.job_id, b.template_version_id, b.transition FROM workspace_builds b
                       WHERE b.workspace_id = w.id ORDER BY b.build_number DESC LIMIT 1) lb ON true
         JOIN users u ON u.id = w.owner_id
         JOIN templates t ON t.id = w.template_id
         JOIN template_versions tv ON tv.id = lb.template_version_id
         JOIN workspace_resources r ON r.job_id = lb.job_id
         JOIN workspace_agents a ON a.resource_id = r.id
         WHERE NOT w.deleted AND lb.transition = 'start'",
    )
    .bind(now - crate::workspaces::store::AGENT_INACTIVE_TIMEOUT)
    .fetch_all(pool)
    .await?;

    let size = i64::from(state.pool.size());
    let idle = i64::try_from(state.pool.num_idle()).unwrap_or(i64::MAX);
    Ok(Rows {
        counts,
        replacements,
        snapshot,
        plan_config: reconciler::plan_config(state),
        plan_now: now,
        paused,
        now: now.timestamp(),
        jobs,
        agents,
        pool: [i64::from(state.config.postgres_conn_max_open), size, idle],
    })
}

fn build(rows: Rows) -> Vec<MetricFamily> {
    let registry = Registry::new();
    let created = counter(&registry, "coderd_prebuilt_workspaces_created_total",
        "Total number of prebuilt workspaces that have been created to meet the desired instance count of each template preset.", PRESET_LABELS);
    let failed = counter(
        &registry,
        "coderd_prebuilt_workspaces_failed_total",
        "Total number of prebuilt workspaces that failed to build.",
        PRESET_LABELS,
    );
    let claimed = counter(&registry, "coderd_prebuilt_workspaces_claimed_total",
        "Total number of prebuilt workspaces which were claimed by users. Claiming refers to creating a workspace with a preset selected for which eligible prebuilt workspaces are available and one is reassigned to a user.", PRESET_LABELS);
    let replaced = counter(&registry, "coderd_prebuilt_workspaces_resource_replacements_total",
        "Total number of prebuilt workspaces whose resource(s) got replaced upon being claimed. In Terraform, drift on immutable attributes results in resource replacement. This represents a worst-case scenario for prebuilt workspaces because the pre-provisioned resource would have been recreated when claiming, thus obviating the point of pre-provisioning.", PRESET_LABELS);
    for c in &rows.counts {
        let l = [
            c.template_name.as_str(),
            c.preset_name.as_str(),
            c.organization_name.as_str(),
        ];
        created
            .with_label_values(&l)
            .inc_by(c.created.max(0) as u64);
        failed.with_label_values(&l).inc_by(c.failed.max(0) as u64);
        claimed
            .with_label_values(&l)
            .inc_by(c.claimed.max(0) as u64);
        // Every pool has a replacements series, 0 until a claim replaces something.
        replaced.with_label_values(&l);
    }
    for r in &rows.replacements {
        replaced
            .with_label_values(&[&r.template_name, &r.preset_name, &r.organization_name])
            .inc_by(r.count.max(0) as u64);
    }

    let desired = gauge(
        &registry,
        "coderd_prebuilt_workspaces_desired",
        "Target number of prebuilt workspaces that should be available for each template preset.",
        PRESET_LABELS,
    );
    let running = gauge(&registry, "coderd_prebuilt_workspaces_running",
        "Current number of prebuilt workspaces that are in a running state. These workspaces have started successfully but may not yet be claimable by users (see coderd_prebuilt_workspaces_eligible).", PRESET_LABELS);
    let eligible = gauge(&registry, "coderd_prebuilt_workspaces_eligible",
        "Current number of prebuilt workspaces that are eligible to be claimed by users. These are workspaces that have completed their build process with their agent reporting 'ready' status.", PRESET_LABELS);
    let hard_limited = gauge(&registry, "coderd_prebuilt_workspaces_preset_hard_limited",
        "Indicates whether a given preset has reached the hard failure limit (1 = hard-limited). Metric is omitted otherwise.", PRESET_LABELS);
    let (presets, prebuilds) = rows.snapshot;
    let (now, cfg) = (rows.plan_now, rows.plan_config);
    // Active presets only, as the reconciler sees them.
    for p in snapshot::assemble(presets, &prebuilds, now, &cfg) {
        let s = &p.snapshot;
        if !s.active || p.problem.is_some() {
            continue;
        }
        let plan = plan::plan_preset(s, now, &cfg);
        let l = [
            s.template_name.as_str(),
            s.preset_name.as_str(),
            s.organization_name.as_str(),
        ];
        desired.with_label_values(&l).set(i64::from(plan.desired));
        running.with_label_values(&l).set(i64::from(plan.running));
        eligible.with_label_values(&l).set(i64::from(plan.eligible));
        if plan.hard_limited {
            hard_limited.with_label_values(&l).set(1);
        }
    }
    let paused = gauge(&registry, "coderd_prebuilt_workspaces_reconciliation_paused",
        "Indicates whether prebuilds reconciliation is currently paused (1 = paused, 0 = not paused).", &[]);
    paused
        .with_label_values::<&str>(&[])
        .set(i64::from(rows.paused));
    let updated = gauge(&registry, "coderd_prebuilt_workspaces_metrics_last_updated",
        "The unix timestamp when the metrics related to prebuilt workspaces were last updated; these metrics are cached.", &[]);
    updated.with_label_values::<&str>(&[]).set(rows.now);

    let jobs = gauge(
        &registry,
        "coderd_provisioner_jobs",
        "Provisioner jobs pending or running, by job type and status (all replicas).",
        &["type", "status"],
    );
    // Every combination is always present (0 when idle), so dashboards and alerts see the series.
    for kind in [
        "template_version_import",
        "workspace_build",
        "template_version_dry_run",
    ] {
        for status in ["pending", "running"] {
            jobs.with_label_values(&[kind, status]).set(0);
        }
    }
    for (kind, status, n) in &rows.jobs {
        jobs.with_label_values(&[kind, status]).set(*n);
    }

    let up = gauge(
        &registry,
        "coderd_agents_up",
        "The number of active agents per workspace.",
        &[
            "template_name",
            "template_version",
            "username",
            "workspace_name",
        ],
    );
    let connections = gauge(
        &registry,
        "coderd_agents_connections",
        "Agent connections with statuses.",
        &[
            "agent_name",
            "username",
            "workspace_name",
            "status",
            "lifecycle_state",
            "tailnet_node",
        ],
    );
    let lifecycle = gauge(
        &registry,
        "coderd_agents_lifecycle_states",
        "Agents of running workspaces by lifecycle state.",
        &["lifecycle_state"],
    );
    for state in [
        "created",
        "starting",
        "start_timeout",
        "start_error",
        "ready",
        "shutting_down",
        "shutdown_timeout",
        "shutdown_error",
        "off",
    ] {
        lifecycle.with_label_values(&[state]).set(0);
    }
    for a in &rows.agents {
        let status = if a.connected {
            "connected"
        } else {
            "disconnected"
        };
        let up_series = up.with_label_values(&[
            &a.template_name,
            &a.template_version,
            &a.username,
            &a.workspace_name,
        ]);
        if a.connected {
            up_series.inc();
        }
        connections
            .with_label_values(&[
                &a.agent_name,
                &a.username,
                &a.workspace_name,
                status,
                &a.lifecycle_state,
                "",
            ])
            .set(1);
        lifecycle.with_label_values(&[&a.lifecycle_state]).inc();
    }

    // The replica's connection pool (Go's database/sql collector names, as Coder exports them).
    let [max_open, size, idle] = rows.pool;
    for (name, help, value) in [
        (
            "go_sql_max_open_connections",
            "Maximum number of open connections to the database.",
            max_open,
        ),
        (
            "go_sql_open_connections",
            "The number of established connections both in use and idle.",
            size,
        ),
        (
            "go_sql_in_use_connections",
            "The number of connections currently in use.",
            (size - idle).max(0),
        ),
        (
            "go_sql_idle_connections",
            "The number of idle connections.",
            idle,
        ),
    ] {
        gauge(&registry, name, help, &["db_name"])
            .with_label_values(&[""])
            .set(value);
    }
    registry.gather()
}
