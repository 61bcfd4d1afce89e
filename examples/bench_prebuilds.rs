//! F4 benchmark: one prebuild reconciliation tick at steady state with 1000 presets (200 templates
//! x 5 presets, desired 5 each, half of them with an `Europe/Berlin` schedule that also asks for 5)
//! and 5000 running, ready prebuilds, split into snapshot / plan / execute; next to the two snapshot
//! queries run raw with `psql` (one REPEATABLE READ transaction per run) against the same database.
//!
//! F6: then `GET /metrics` on the same world (listener from `coder::metrics::http::serve`), scraped
//! sequentially for `SCRAPE_FOR`; the database-backed series are cached for 5 s and refreshed in the
//! background by the scrape that finds them stale, so the latencies include those scrapes. The
//! refresh itself (`db_cache.refresh`, the database recomputation) is timed separately.
//!
//! A throwaway PostgreSQL cluster is started from the system binaries (the library's
//! `BuiltinPostgres`, durability off) in a temp dir and stopped at the end.
//!
//! Usage: bench_prebuilds [--explain]   (`--explain` also prints EXPLAIN ANALYZE of both queries)
//! Run with `scripts/bench prebuilds` (release build).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coder::app::AppState;
use coder::clock::SystemClock;
use coder::config::ServerConfig;
use coder::db::embedded::BuiltinPostgres;
use coder::prebuilds::reconciler::{self, TickReport};

const TEMPLATES: usize = 200;
const PRESETS_PER_TEMPLATE: usize = 5;
const PREBUILDS_PER_PRESET: usize = 5;
const PRESETS: usize = TEMPLATES * PRESETS_PER_TEMPLATE;
const PREBUILDS: usize = PRESETS * PREBUILDS_PER_PRESET;
const WARMUP: usize = 2;
const RUNS: usize = 20;
/// How long `/metrics` is scraped back to back.
const SCRAPE_FOR: Duration = Duration::from_secs(10);
/// Timed runs of the database-backed refresh.
const REFRESH_RUNS: usize = 10;

/// The `prebuilds` system user (created by the first migration).
const PREBUILDS_USER: &str = "c42fdf75-3097-471c-8c33-fb52454d81c0";

/// Mirrors `PRESETS` in `src/prebuilds/snapshot.rs` with `$1` (template filter) = NULL.
/// Keep in sync by hand.
const RAW_PRESETS: &str = "
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
WHERE p.desired_instances IS NOT NULL AND (NULL::uuid IS NULL OR t.id = NULL::uuid)
ORDER BY t.name, tv.created_at, p.name";

/// Mirrors `PREBUILDS` in `src/prebuilds/snapshot.rs` with `$1` = the prebuilds user and
/// `$2` (template filter) = NULL. Keep in sync by hand.
const RAW_PREBUILDS: &str = "
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
WHERE w.owner_id = 'c42fdf75-3097-471c-8c33-fb52454d81c0' AND NOT w.deleted
  AND (NULL::uuid IS NULL OR w.template_id = NULL::uuid)";

/// The synthetic world, set-based. Ids are `md5(<kind>-<key>)::uuid` so rows can reference each
/// other without lookups. `:T`, `:K`, `:N`, `:U` are replaced by the sizes and the prebuilds user.
const SEED: &str = "
INSERT INTO organizations (id, name, display_name, is_default)
VALUES (md5('org')::uuid, 'bench', 'Bench', true);

INSERT INTO files (id, hash, created_by, mimetype, data)
VALUES (md5('file')::uuid, 'bench', ':U', 'application/x-tar', ''::bytea);

INSERT INTO provisioner_jobs (id, created_at, updated_at, started_at, completed_at, organization_id,
                              initiator_id, provisioner, type, file_id)
SELECT md5('import-' || t)::uuid, now() - interval '2 hours', now() - interval '2 hours',
       now() - interval '2 hours', now() - interval '119 minutes', md5('org')::uuid,
       ':U', 'echo', 'template_version_import', md5('file')::uuid
FROM generate_series(1, :T) t;

INSERT INTO templates (id, organization_id, name, provisioner, active_version_id, created_by)
SELECT md5('template-' || t)::uuid, md5('org')::uuid, 'bench-' || lpad(t::text, 4, '0'), 'echo',
       md5('version-' || t)::uuid, ':U'
FROM generate_series(1, :T) t;

INSERT INTO template_versions (id, template_id, organization_id, created_at, updated_at, name, job_id, created_by)
SELECT md5('version-' || t)::uuid, md5('template-' || t)::uuid, md5('org')::uuid,
       now() - interval '2 hours', now() - interval '2 hours', 'v1', md5('import-' || t)::uuid, ':U'
FROM generate_series(1, :T) t;

-- Half the presets (t + k even) have a timezone and one weekday working-hours schedule; it asks
-- for 5 as well, so the desired count is 5 at any instant and the tick is a no-op.
INSERT INTO template_version_presets (id, template_version_id, name, desired_instances, scheduling_timezone)
SELECT md5('preset-' || t || '-' || k)::uuid, md5('version-' || t)::uuid, 'preset-' || k, :N,
       CASE WHEN (t + k) % 2 = 0 THEN 'Europe/Berlin' ELSE '' END
FROM generate_series(1, :T) t, generate_series(1, :K) k;

INSERT INTO template_version_preset_prebuild_schedules (id, preset_id, cron_expression, desired_instances, position)
SELECT md5('schedule-' || t || '-' || k)::uuid, md5('preset-' || t || '-' || k)::uuid,
       '* 8-18 * * 1-5', :N, 0
FROM generate_series(1, :T) t, generate_series(1, :K) k
WHERE (t + k) % 2 = 0;

CREATE TEMP TABLE g ON COMMIT DROP AS
SELECT t, k, n, t || '-' || k || '-' || n AS s
FROM generate_series(1, :T) t, generate_series(1, :K) k, generate_series(1, :N) n;

INSERT INTO workspaces (id, created_at, updated_at, owner_id, organization_id, template_id, name, last_used_at)
SELECT md5('ws-' || s)::uuid, now() - interval '30 minutes', now() - interval '30 minutes', ':U',
       md5('org')::uuid, md5('template-' || t)::uuid, 'prebuild-' || s, now() - interval '30 minutes'
FROM g;

INSERT INTO provisioner_jobs (id, created_at, updated_at, started_at, completed_at, organization_id,
                              initiator_id, provisioner, type, file_id)
SELECT md5('job-' || s)::uuid, now() - interval '30 minutes', now() - interval '29 minutes',
       now() - interval '30 minutes', now() - interval '29 minutes', md5('org')::uuid,
       ':U', 'echo', 'workspace_build', md5('file')::uuid
FROM g;

INSERT INTO workspace_builds (id, created_at, updated_at, workspace_id, template_version_id, build_number,
                              transition, initiator_id, job_id, template_version_preset_id)
SELECT md5('build-' || s)::uuid, now() - interval '30 minutes', now() - interval '29 minutes',
       md5('ws-' || s)::uuid, md5('version-' || t)::uuid, 1, 'start', ':U', md5('job-' || s)::uuid,
       md5('preset-' || t || '-' || k)::uuid
FROM g;

INSERT INTO workspace_resources (id, created_at, job_id, transition, type, name)
SELECT md5('res-' || s)::uuid, now() - interval '29 minutes', md5('job-' || s)::uuid, 'start',
       'null_resource', 'box'
FROM g;

INSERT INTO workspace_agents (id, created_at, updated_at, name, resource_id, auth_token, first_connected_at,
                              last_connected_at, lifecycle_state, started_at, ready_at)
SELECT md5('agent-' || s)::uuid, now() - interval '29 minutes', now() - interval '28 minutes', 'main',
       md5('res-' || s)::uuid, gen_random_uuid(), now() - interval '28 minutes', now(), 'ready',
       now() - interval '28 minutes', now() - interval '28 minutes'
FROM g;
";

type Error = Box<dyn std::error::Error>;

/// Stops the cluster however `main` ends.
struct Cluster(BuiltinPostgres);

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(err) = self.0.stop() {
            eprintln!("stopping the benchmark PostgreSQL: {err}");
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `q` quantile (0..=1, nearest rank) of samples.
fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return 0.0;
    }
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// (p50, min) of samples in ms.
fn stats(samples: &[f64]) -> (f64, f64) {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return (0.0, 0.0);
    }
    (s[s.len() / 2], s[0])
}

fn find_psql(pg: &BuiltinPostgres) -> PathBuf {
    let candidates = std::iter::once(pg.bin_dir().join("psql"))
        .chain(
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .map(|d| d.join("psql")),
        )
        .chain(
            std::fs::read_dir("/usr/lib/postgresql")
                .map(|rd| {
                    let mut v: Vec<PathBuf> = rd
                        .filter_map(Result::ok)
                        .map(|e| e.path().join("bin/psql"))
                        .collect();
                    v.sort();
                    v.reverse();
                    v
                })
                .unwrap_or_default(),
        );
    for c in candidates {
        if c.is_file() {
            return c;
        }
    }
    PathBuf::from("psql")
}

/// Runs `script` through one `psql` session; returns stdout.
fn psql(psql: &PathBuf, url: &str, script: &str, output_to_null: bool) -> Result<String, Error> {
    use std::io::Write;
    let mut cmd = Command::new(psql);
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"]);
    if output_to_null {
        cmd.args(["-o", "/dev/null"]);
    }
    let mut child = cmd
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run {}: {e}", psql.display()))?;
    child
        .stdin
        .take()
        .ok_or("psql stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(format!(
            "psql failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The two snapshot queries, raw: `WARMUP + RUNS` transactions in one psql session, timed by
/// `\timing`, after `prelude` (session settings). Returns per measured run (sum of the two
/// queries, whole transaction) in ms.
fn raw_snapshot(
    psql_bin: &PathBuf,
    url: &str,
    prelude: &str,
) -> Result<(Vec<f64>, Vec<f64>), Error> {
    let mut script = format!("{prelude}\\timing on\n");
    for _ in 0..WARMUP + RUNS {
        script.push_str("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n");
        script.push_str(RAW_PRESETS);
        script.push_str(";\n");
        script.push_str(RAW_PREBUILDS);
        script.push_str(";\nCOMMIT;\n");
    }
    let out = psql(psql_bin, url, &script, true)?;
    // "Time: 12.345 ms" (and " (00:01.234)" beyond a second).
    let times: Vec<f64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("Time: "))
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|v| v.parse().ok())
        .collect();
    if times.len() != 4 * (WARMUP + RUNS) {
        return Err(format!(
            "expected {} \\timing lines from psql, got {}:\n{out}",
            4 * (WARMUP + RUNS),
            times.len()
        )
        .into());
    }
    let runs: Vec<&[f64]> = times.chunks(4).skip(WARMUP).collect();
    let queries = runs.iter().map(|r| r[1] + r[2]).collect();
    let transactions = runs.iter().map(|r| r.iter().sum()).collect();
    Ok((queries, transactions))
}

/// Everything the steady state promises: no skip, 1000 presets, no actions, 5000 running.
fn check(report: &TickReport) -> Result<(), String> {
    if let Some(skip) = report.skipped {
        return Err(format!("the tick was skipped: {skip:?}"));
    }
    if report.presets.len() != PRESETS {
        return Err(format!(
            "the tick saw {} presets, expected {PRESETS}",
            report.presets.len()
        ));
    }
    let (created, deleted, canceled) = (report.created(), report.deleted(), report.canceled());
    if created != 0 || deleted != 0 || canceled != 0 {
        return Err(format!(
            "the tick was not a no-op: {created} created, {deleted} deleted, {canceled} canceled"
        ));
    }
    let errors = report.errors();
    if !errors.is_empty() {
        return Err(format!(
            "the tick reported {} errors, first: {}",
            errors.len(),
            errors[0]
        ));
    }
    let running: i64 = report
        .presets
        .iter()
        .filter_map(|p| p.plan.as_ref())
        .map(|p| i64::from(p.running))
        .sum();
    let eligible: i64 = report
        .presets
        .iter()
        .filter_map(|p| p.plan.as_ref())
        .map(|p| i64::from(p.eligible))
        .sum();
    if running != PREBUILDS as i64 || eligible != PREBUILDS as i64 {
        return Err(format!(
            "the tick saw {running} running / {eligible} eligible prebuilds, expected {PREBUILDS}"
        ));
    }
    Ok(())
}

struct Samples {
    tick: Vec<f64>,
    snapshot: Vec<f64>,
    plan: Vec<f64>,
    execute: Vec<f64>,
    scrape: Scrape,
}

/// The F6 phase: `GET /metrics` latencies (ms), the last body, the refresh's own times (ms), and
/// where a warm scrape's time goes: cloning the cached database-backed families, and the whole
/// in-process render (gather + clone + text encoding), without HTTP.
struct Scrape {
    latencies: Vec<f64>,
    body: bytes::Bytes,
    refresh: Vec<f64>,
    cached_families: Vec<f64>,
    render: Vec<f64>,
}

/// One `GET /metrics`; returns the body.
async fn scrape_once(client: &reqwest::Client, url: &str) -> Result<bytes::Bytes, Error> {
    let resp = client.get(url).send().await?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: {}", resp.status()).into());
    }
    Ok(resp.bytes().await?)
}

/// (family, series, bytes) of an exposition body, largest first.
fn families_by_size(body: &[u8]) -> Vec<(String, usize, usize)> {
    let mut by: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    let mut current = String::new();
    for line in String::from_utf8_lossy(body).lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            current = rest.split(' ').next().unwrap_or("").to_string();
        }
        let e = by.entry(current.clone()).or_default();
        e.1 += line.len() + 1;
        if !line.starts_with('#') {
            e.0 += 1;
        }
    }
    let mut v: Vec<_> = by.into_iter().map(|(k, (n, b))| (k, n, b)).collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.2));
    v
}

/// Serves `/metrics` for `state`, scrapes it back to back for `SCRAPE_FOR`, then times
/// `REFRESH_RUNS` database-backed refreshes.
async fn scrape(state: &AppState) -> Result<Scrape, Error> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let addr = coder::metrics::http::serve(state.clone(), shutdown.clone()).await?;
    let url = format!("http://{addr}/metrics");
    let client = reqwest::Client::new();
    // Warm-up: the first scrape computes the database-backed series (empty cache).
    let mut body = scrape_once(&client, &url).await?;
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < SCRAPE_FOR {
        let t = Instant::now();
        body = scrape_once(&client, &url).await?;
        latencies.push(ms(t.elapsed()));
    }
    shutdown.cancel();
    let mut refresh = Vec::with_capacity(REFRESH_RUNS);
    for _ in 0..REFRESH_RUNS {
        let t = Instant::now();
        let families = state.metrics.db_cache.refresh(state).await;
        refresh.push(ms(t.elapsed()));
        if families.is_empty() {
            return Err("the database-backed refresh returned no series".into());
        }
    }
    // The cache is fresh now, so neither of these starts a refresh.
    let mut cached_families = Vec::with_capacity(RUNS);
    let mut render = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        let families = state.metrics.db_cache.text(state).await;
        cached_families.push(ms(t.elapsed()));
        drop(families);
        let t = Instant::now();
        coder::metrics::http::render(state).await?;
        render.push(ms(t.elapsed()));
    }
    Ok(Scrape {
        latencies,
        body,
        refresh,
        cached_families,
        render,
    })
}

async fn bench(url: &str, cache_dir: PathBuf) -> Result<Samples, Error> {
    let pool = coder::db::connect(url, 10).await?;
    coder::db::migrate(&pool).await?;
    let mut config = ServerConfig::for_tests(cache_dir);
    config.provisioner_daemons = 0;
    config.prometheus_enable = true;
    // Port 0: `serve` binds a free port and returns it.
    config.prometheus_address = std::net::SocketAddr::from(([127, 0, 0, 1], 0));

    let started = Instant::now();
    let seed = SEED
        .replace(":T", &TEMPLATES.to_string())
        .replace(":K", &PRESETS_PER_TEMPLATE.to_string())
        .replace(":N", &PREBUILDS_PER_PRESET.to_string())
        .replace(":U", PREBUILDS_USER);
    let mut tx = pool.begin().await?;
    sqlx::raw_sql(&seed).execute(&mut *tx).await?;
    tx.commit().await?;
    // A live database would have statistics from autovacuum; give the planner the same.
    sqlx::raw_sql("VACUUM ANALYZE").execute(&pool).await?;
    eprintln!(
        "seeded {TEMPLATES} templates, {PRESETS} presets, {PREBUILDS} prebuilds in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let state = AppState::new(pool, config, Arc::new(SystemClock)).await?;
    for i in 0..WARMUP {
        let report = reconciler::tick(&state).await?;
        check(&report).map_err(|e| format!("warm-up tick {}: {e}", i + 1))?;
    }
    let mut tick = Vec::with_capacity(RUNS);
    let mut snapshot = Vec::with_capacity(RUNS);
    let mut plan = Vec::with_capacity(RUNS);
    let mut execute = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        let started = Instant::now();
        let report = reconciler::tick(&state).await?;
        let elapsed = started.elapsed();
        check(&report).map_err(|e| format!("tick {}: {e}", i + 1))?;
        tick.push(ms(elapsed));
        snapshot.push(ms(report.snapshot_time));
        plan.push(ms(report.plan_time));
        execute.push(ms(report.execute_time));
    }
    let scrape = scrape(&state).await?;
    state.pool.close().await;
    Ok(Samples {
        tick,
        snapshot,
        plan,
        execute,
        scrape,
    })
}

fn run(pg: &BuiltinPostgres, cache_dir: PathBuf, explain: bool) -> Result<(), Error> {
    let url = pg.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let s = rt.block_on(bench(&url, cache_dir))?;
    drop(rt);

    let psql_bin = find_psql(pg);
    let (raw, raw_tx) = raw_snapshot(&psql_bin, &url, "")?;
    // psql sends the queries unprepared with literal NULLs, so every run is planned afresh and
    // PREBUILDS' custom plan is costly enough to be JIT-compiled; sqlx's prepared statements
    // switch to a (cheaper-estimated, not JIT-compiled) generic plan after five runs.
    let (raw_nojit, _) = raw_snapshot(&psql_bin, &url, "SET jit = off;\n")?;

    let (tick, tick_min) = stats(&s.tick);
    let (snapshot, snapshot_min) = stats(&s.snapshot);
    let (plan, plan_min) = stats(&s.plan);
    let (execute, execute_min) = stats(&s.execute);
    let (raw_p50, raw_min) = stats(&raw);
    let (raw_tx_p50, _) = stats(&raw_tx);
    let (raw_nojit_p50, _) = stats(&raw_nojit);
    let other: Vec<f64> = (0..s.tick.len())
        .map(|i| s.tick[i] - s.snapshot[i] - s.plan[i] - s.execute[i])
        .collect();
    let (other_p50, _) = stats(&other);
    let ratio = if raw_p50 > 0.0 {
        tick / raw_p50
    } else {
        f64::INFINITY
    };
    println!(
        "prebuild tick, {PRESETS} presets / {PREBUILDS} prebuilds: tick p50 {tick:.2} ms \
         (snapshot {snapshot:.2}, plan {plan:.2}, execute {execute:.2}); raw snapshot queries (psql) \
         p50 {raw_p50:.2} ms; ratio tick/raw {ratio:.2} (target <= 1.5); plan p50 {plan:.2} ms (target < 5 ms)"
    );
    println!(
        "  min over {RUNS} ticks: tick {tick_min:.2} ms (snapshot {snapshot_min:.2}, plan {plan_min:.2}, \
         execute {execute_min:.2}); raw queries min {raw_min:.2} ms"
    );
    println!(
        "  tick outside the three phases (lock, settings, membership) p50 {other_p50:.2} ms; \
         raw whole transaction (BEGIN..COMMIT) p50 {raw_tx_p50:.2} ms; raw queries with jit = off \
         p50 {raw_nojit_p50:.2} ms"
    );
    println!(
        "  targets: tick <= 1.5 x raw: {}; plan < 5 ms: {}",
        if ratio <= 1.5 { "met" } else { "MISSED" },
        if plan < 5.0 { "met" } else { "MISSED" }
    );

    let sc = &s.scrape;
    let scrape_p99 = quantile(&sc.latencies, 0.99);
    println!(
        "scrape /metrics with {PRESETS} presets / {PREBUILDS} prebuilds: p50 {:.2} ms p99 {scrape_p99:.2} ms \
         max {:.2} ms ({} scrapes in {} s, body {:.0} KiB; target p99 < 5 ms: {}); background refresh \
         p50 {:.2} ms (max {:.2} ms over {REFRESH_RUNS})",
        quantile(&sc.latencies, 0.5),
        quantile(&sc.latencies, 1.0),
        sc.latencies.len(),
        SCRAPE_FOR.as_secs(),
        sc.body.len() as f64 / 1024.0,
        if scrape_p99 < 5.0 { "met" } else { "MISSED" },
        quantile(&sc.refresh, 0.5),
        quantile(&sc.refresh, 1.0),
    );
    let (series, top): (usize, Vec<String>) = {
        let f = families_by_size(&sc.body);
        (
            f.iter().map(|x| x.1).sum(),
            f.iter()
                .take(4)
                .map(|(name, n, b)| format!("{name} {n} series {:.0} KiB", *b as f64 / 1024.0))
                .collect(),
        )
    };
    println!(
        "  warm scrape in-process, p50 over {RUNS}: render (in-process gather + encode + cached db-backed text) \
         {:.2} ms, of which fetching the cached text {:.2} ms; {series} series, largest: {}",
        quantile(&sc.render, 0.5),
        quantile(&sc.cached_families, 0.5),
        top.join(", ")
    );

    if explain {
        let script = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n\
             EXPLAIN (ANALYZE, BUFFERS) {RAW_PRESETS};\n\
             EXPLAIN (ANALYZE, BUFFERS) {RAW_PREBUILDS};\nCOMMIT;\n"
        );
        print!("{}", psql(&psql_bin, &url, &script, false)?);
    }
    Ok(())
}

fn main() {
    // `BENCH_LOG=coderd.metrics=debug` shows each refresh's database and encoding time.
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let explain = std::env::args().skip(1).any(|a| a == "--explain");
    let dir = match tempfile::Builder::new()
        .prefix("bench-prebuilds-")
        .tempdir()
    {
        Ok(d) => d,
        Err(err) => {
            eprintln!("bench_prebuilds: temp dir: {err}");
            std::process::exit(1);
        }
    };
    // As root the cluster runs as `postgres`, which must reach its data directory.
    let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
    let mut pg = match BuiltinPostgres::new(dir.path()) {
        Ok(pg) => pg.with_settings(&[
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
        ]),
        Err(err) => {
            eprintln!("bench_prebuilds: {err}");
            std::process::exit(1);
        }
    };
    if let Err(err) = pg.start() {
        eprintln!("bench_prebuilds: starting PostgreSQL: {err}");
        std::process::exit(1);
    }
    let cluster = Cluster(pg);
    let result = run(&cluster.0, dir.path().to_path_buf(), explain);
    drop(cluster);
    drop(dir);
    if let Err(err) = result {
        eprintln!("bench_prebuilds: {err}");
        std::process::exit(1);
    }
}
