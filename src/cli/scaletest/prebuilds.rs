//! `coder scaletest prebuilds`, after Coder's `coder exp scaletest prebuilds`: N templates × M presets ×
//! K prebuilds. Measures the time until every pool is full, marks every prebuild's agent `ready` (playing
//! the agents with the tokens the template publishes), claims X workspaces from the pools concurrently,
//! then pushes and promotes a new version of every template and measures the turnover: every old
//! prebuild gone and every new pool full.
//!
//! The server must run with `CODER_EXPERIMENTS=workspace-prebuilds` and a short
//! `CODER_WORKSPACE_PREBUILDS_RECONCILIATION_INTERVAL` (the default, 1m, makes every phase take minutes).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

use super::{
    agent_call, agent_tokens, create_template, delete_template, delete_workspaces, import_version,
    lifecycle_body, list_workspaces, per_second, round2, server_text, template_tf, wait_running,
    wait_template_empty, AgentCall, CommonArgs, Ctx, Monitor, Samples,
};
use crate::cli::create::parse_presets;
use crate::duration::GoDuration;

#[derive(Debug, Args)]
#[command(next_line_help = true)]
pub struct PrebuildsArgs {
    /// Number of templates.
    #[arg(long, default_value_t = 1)]
    pub templates: usize,

    /// Presets per template (each a pool).
    #[arg(long, default_value_t = 1)]
    pub presets: usize,

    /// Prebuilt workspaces per preset.
    #[arg(long, default_value_t = 1)]
    pub instances: usize,

    /// Workspaces to create from the presets once the pools are full and ready (0: no claims).
    #[arg(long, default_value_t = 0)]
    pub claims: usize,

    /// Claims sent at the same time.
    #[arg(long, default_value_t = 10)]
    pub claim_concurrency: usize,

    /// Give up on a phase (pools filling, turnover, cleanup) after this long.
    #[arg(long, default_value = "10m")]
    pub timeout: GoDuration,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// One template of the run.
#[derive(Debug, Clone)]
struct Tpl {
    name: String,
    id: String,
    /// Preset ids of the active version, by name (`p1`..`pM`).
    presets: BTreeMap<String, String>,
}

pub async fn run(args: PrebuildsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.templates > 0 && args.presets > 0 && args.instances > 0,
        "--templates, --presets and --instances must be at least 1"
    );
    let timeout = args.timeout.0;
    let ctx = Ctx::connect(&args.common, 256).await?;
    let monitor = match &args.common.prometheus_url {
        Some(url) => Some(Monitor::start(url).await?),
        None => None,
    };
    let started = Instant::now();
    let desired_total = args.templates * args.presets * args.instances;
    let pools = Some((args.presets, args.instances));
    let tf_v1 = template_tf(Duration::from_secs(10), pools, 1);
    let tf_v2 = template_tf(Duration::from_secs(10), pools, 2);

    // ---- templates ----
    let versions: Vec<String> = futures::stream::iter(0..args.templates)
        .map(|_| import_version(&ctx, &tf_v1, None, timeout))
        .buffered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let fill_start = Instant::now();
    mark(&monitor).await;
    let mut templates = Vec::new();
    for (i, version) in versions.iter().enumerate() {
        let name = format!("scaletest-{}-{i}", ctx.suffix);
        let id = create_template(&ctx, &name, version).await?;
        let presets = preset_ids(&ctx, version).await?;
        anyhow::ensure!(
            presets.len() == args.presets,
            "template {name}: {} presets imported, {} expected",
            presets.len(),
            args.presets
        );
        templates.push(Tpl { name, id, presets });
    }
    eprintln!(
        "{} templates created ({} presets × {} instances each): waiting for {desired_total} prebuilds.",
        args.templates, args.presets, args.instances
    );

    // ---- fill ----
    let fill = wait_pools(&ctx, &templates, None, Check::Full, fill_start + timeout).await?;
    let fill_elapsed = fill_start.elapsed();
    mark(&monitor).await;
    let fill_end = Instant::now();
    eprintln!(
        "Every pool full after {:.1} s; marking the prebuilds' agents ready.",
        fill_elapsed.as_secs_f64()
    );

    // ---- agents ready ----
    let ready_start = Instant::now();
    let mut prebuild_ids: HashSet<String> = HashSet::new();
    let mut tokens = Vec::new();
    for t in &templates {
        for ws in list_workspaces(&ctx, &format!("owner:prebuilds template:{}", t.name)).await? {
            prebuild_ids.insert(ws["id"].as_str().unwrap_or_default().to_string());
            let found = agent_tokens(&ws);
            anyhow::ensure!(
                !found.is_empty(),
                "prebuild {} publishes no agent_token metadata",
                ws["name"]
            );
            tokens.extend(found);
        }
    }
    let agent_samples = ready_agents(&ctx, &tokens).await;
    let ready = wait_pools(
        &ctx,
        &templates,
        None,
        Check::Eligible,
        Instant::now() + timeout,
    )
    .await;
    let ready_elapsed = ready_start.elapsed();
    if let Err(e) = &ready {
        eprintln!("warning: {e:#}");
    }

    // ---- claims ----
    let claims = if args.claims > 0 {
        eprintln!(
            "Claiming {} workspaces, {} at a time.",
            args.claims, args.claim_concurrency
        );
        let window_start = Instant::now();
        mark(&monitor).await;
        let out = claim(&ctx, &templates, &args, &prebuild_ids, timeout).await;
        mark(&monitor).await;
        Some((out, window_start, Instant::now()))
    } else {
        None
    };

    // ---- new version ----
    eprintln!("Pushing a new version of every template.");
    let new_versions: Vec<String> = futures::stream::iter(templates.iter())
        .map(|t| import_version(&ctx, &tf_v2, Some(&t.id), timeout))
        .buffered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let roll_start = Instant::now();
    mark(&monitor).await;
    for (t, v) in templates.iter_mut().zip(&new_versions) {
        promote(&ctx, &t.id, v).await?;
        t.presets = preset_ids(&ctx, v).await?;
    }
    let roll = wait_pools(
        &ctx,
        &templates,
        Some(&new_versions),
        Check::Turnover,
        roll_start + timeout,
    )
    .await?;
    let roll_elapsed = roll_start.elapsed();
    mark(&monitor).await;
    let roll_end = Instant::now();
    eprintln!(
        "Old prebuilds gone after {:.1} s, new pools full after {:.1} s.",
        roll.old_gone.unwrap_or_default().as_secs_f64(),
        roll_elapsed.as_secs_f64()
    );

    // ---- cleanup ----
    let claimed_ids: Vec<String> = claims
        .as_ref()
        .map(|(c, _, _)| c.workspace_ids.clone())
        .unwrap_or_default();
    let cleanup = if args.common.cleanup {
        Some(cleanup(&ctx, &templates, &claimed_ids, timeout).await)
    } else {
        None
    };

    // ---- report ----
    let server = monitor.as_ref().map(|m| {
        let mut v = json!({
            "fill": m.phase(fill_start, fill_end),
            "rollover": m.phase(roll_start, roll_end),
        });
        if let Some((_, from, to)) = &claims {
            v["claims"] = m.phase(*from, *to);
        }
        v
    });
    let claims_json = claims.as_ref().map(|(c, _, _)| {
        json!({
            "requested": args.claims,
            "concurrency": args.claim_concurrency,
            "succeeded": c.samples.requests - c.samples.errors,
            "claimed": c.claimed,
            "fresh": c.fresh,
            "errors": c.samples.errors + c.build_errors.errors,
            "error_kinds": { "create": c.samples.errors_json(), "build": c.build_errors.errors_json() },
            "seconds": round2(c.elapsed.as_secs_f64()),
            "per_second": round2(per_second(c.samples.requests - c.samples.errors, c.elapsed)),
            "latency_ms": c.samples.latency().json(),
            "all_running_seconds": round2(c.all_running.as_secs_f64()),
        })
    });
    let errors = agent_samples.errors
        + claims
            .as_ref()
            .map(|(c, _, _)| c.samples.errors + c.build_errors.errors)
            .unwrap_or(0)
        + u64::from(ready.is_err());
    let report = json!({
        "mode": "prebuilds",
        "templates": templates.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
        "presets": args.presets,
        "instances": args.instances,
        "desired_total": desired_total,
        "fill": {
            "seconds": round2(fill_elapsed.as_secs_f64()),
            "full": true,
            "prebuilds": fill.running,
        },
        "ready": {
            "agents": tokens.len(),
            "requests": agent_samples.requests,
            "errors": agent_samples.errors,
            "error_kinds": agent_samples.errors_json(),
            "latency_ms": agent_samples.latency().json(),
            "eligible": ready.as_ref().map(|r| r.eligible).unwrap_or(0),
            "seconds": round2(ready_elapsed.as_secs_f64()),
        },
        "claims": claims_json.unwrap_or(Value::Null),
        "rollover": {
            "seconds": round2(roll_elapsed.as_secs_f64()),
            "old_gone_seconds": round2(roll.old_gone.unwrap_or_default().as_secs_f64()),
            "new_full_seconds": round2(roll.new_full.unwrap_or_default().as_secs_f64()),
            "full": true,
            "prebuilds": roll.running,
        },
        "server": server.unwrap_or(Value::Null),
        "cleanup": cleanup.unwrap_or(Value::Null),
        "errors": errors,
        "total_seconds": round2(started.elapsed().as_secs_f64()),
    });
    if args.common.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

async fn mark(monitor: &Option<Monitor>) {
    if let Some(m) = monitor {
        let _ = m.mark().await;
    }
}

async fn preset_ids(ctx: &Ctx, version: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let presets = parse_presets(
        &ctx.api
            .get(&format!("/templateversions/{version}/presets"))
            .await?,
    );
    Ok(presets.into_iter().map(|p| (p.name, p.id)).collect())
}

async fn promote(ctx: &Ctx, template: &str, version: &str) -> anyhow::Result<()> {
    ctx.api
        .send(
            Method::PATCH,
            &format!("/templates/{template}/versions"),
            Some(&json!({"id": version})),
        )
        .await
        .map(|_| ())
        .with_context(|| format!("promote version {version}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Every active pool has `desired` running prebuilds.
    Full,
    /// ... and every one is eligible (agents ready).
    Eligible,
    /// Every pool of the new versions is full and no prebuild of an older version is left.
    Turnover,
}

#[derive(Debug, Default)]
struct PoolState {
    running: i64,
    eligible: i64,
    old_gone: Option<Duration>,
    new_full: Option<Duration>,
}

/// Polls `GET /templates/{id}/prebuilds` for every template until the check holds.
async fn wait_pools(
    ctx: &Ctx,
    templates: &[Tpl],
    active_versions: Option<&[String]>,
    check: Check,
    deadline: Instant,
) -> anyhow::Result<PoolState> {
    let start = Instant::now();
    let mut hinted = false;
    let mut state = PoolState::default();
    loop {
        let mut all_full = true;
        let mut all_eligible = true;
        let mut old_left = 0i64;
        let mut running = 0i64;
        let mut eligible = 0i64;
        let mut activity = 0i64;
        let mut reasons = Vec::new();
        for (i, t) in templates.iter().enumerate() {
            let s = ctx
                .api
                .get(&format!("/templates/{}/prebuilds", t.id))
                .await
                .with_context(|| format!("prebuild status of {}", t.name))?;
            anyhow::ensure!(
                s["enabled"] == true,
                "prebuilds are disabled on the server: run it with CODER_EXPERIMENTS=workspace-prebuilds"
            );
            anyhow::ensure!(
                s["reconciliation_paused"] != true,
                "prebuild reconciliation is paused (PUT /api/v2/prebuilds/settings)"
            );
            let presets = s["presets"].as_array().cloned().unwrap_or_default();
            let want_version = active_versions.map(|v| v[i].as_str());
            let mut active = 0;
            for p in &presets {
                let n = |k: &str| p[k].as_i64().unwrap_or(0);
                let is_new = p["active"] == true
                    && want_version.is_none_or(|v| p["template_version_id"] == v);
                activity += n("running") + n("starting") + n("stopping_or_deleting");
                if is_new {
                    active += 1;
                    running += n("running");
                    eligible += n("eligible");
                    if n("running") != n("desired") || n("desired") == 0 {
                        all_full = false;
                        reasons.push(format!(
                            "{}/{}: {}",
                            t.name,
                            p["preset_name"].as_str().unwrap_or_default(),
                            p["reason"].as_str().unwrap_or_default()
                        ));
                    }
                    if n("eligible") != n("desired") {
                        all_eligible = false;
                    }
                } else {
                    old_left += n("running") + n("starting") + n("stopping_or_deleting");
                }
            }
            if active != t.presets.len() {
                all_full = false;
                all_eligible = false;
            }
        }
        state.running = running;
        state.eligible = eligible;
        if old_left == 0 && state.old_gone.is_none() {
            state.old_gone = Some(start.elapsed());
        }
        if all_full && state.new_full.is_none() {
            state.new_full = Some(start.elapsed());
        }
        let done = match check {
            Check::Full => all_full,
            Check::Eligible => all_full && all_eligible,
            Check::Turnover => all_full && old_left == 0,
        };
        if done {
            return Ok(state);
        }
        if !hinted && activity == 0 && start.elapsed() > Duration::from_secs(30) {
            hinted = true;
            eprintln!(
                "hint: no prebuild is being created after 30 s. Is the server running with \
                 CODER_EXPERIMENTS=workspace-prebuilds and a short \
                 CODER_WORKSPACE_PREBUILDS_RECONCILIATION_INTERVAL (e.g. 2s)?"
            );
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "pools not {} in time ({running} running, {eligible} eligible, {old_left} old prebuilds left); {}",
                match check {
                    Check::Full => "full",
                    Check::Eligible => "ready",
                    Check::Turnover => "turned over",
                },
                reasons.into_iter().take(3).collect::<Vec<_>>().join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Reports `starting` then `ready` for every agent, 50 at a time.
async fn ready_agents(ctx: &Ctx, tokens: &[String]) -> Samples {
    let results: Vec<Samples> = futures::stream::iter(tokens.iter().cloned())
        .map(|token| {
            let (http, base) = (ctx.http.clone(), ctx.base.clone());
            async move {
                let mut s = Samples::default();
                for state in ["starting", "ready"] {
                    let (d, r) = agent_call(
                        &http,
                        &base,
                        &token,
                        AgentCall::Lifecycle,
                        &lifecycle_body(state),
                    )
                    .await;
                    s.record(d, r);
                }
                s
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    let mut all = Samples::default();
    for s in results {
        all.merge(s);
    }
    all
}

struct Claims {
    samples: Samples,
    build_errors: Samples,
    claimed: usize,
    fresh: usize,
    elapsed: Duration,
    all_running: Duration,
    workspace_ids: Vec<String>,
}

/// X creates with presets, spread over templates and presets, C at a time.
async fn claim(
    ctx: &Ctx,
    templates: &[Tpl],
    args: &PrebuildsArgs,
    prebuild_ids: &HashSet<String>,
    timeout: Duration,
) -> Claims {
    let targets: Vec<(String, String)> = (0..args.claims)
        .map(|i| {
            let t = &templates[i % templates.len()];
            let presets: Vec<&String> = t.presets.values().collect();
            let p = presets[(i / templates.len()) % presets.len()];
            (t.id.clone(), p.clone())
        })
        .collect();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.claim_concurrency.max(1).min(args.claims) {
        let (ctx, next, targets) = (ctx.clone(), next.clone(), targets.clone());
        workers.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((template, preset)) = targets.get(i) else {
                    break;
                };
                let t = Instant::now();
                let r = ctx
                    .api
                    .post(
                        "/users/me/workspaces",
                        &json!({"template_id": template, "template_version_preset_id": preset,
                                "name": format!("st{}-c{i}", ctx.suffix)}),
                    )
                    .await;
                match r {
                    Ok(ws) => {
                        samples.record(t.elapsed(), Ok(()));
                        ids.push(ws["id"].as_str().unwrap_or_default().to_string());
                    }
                    Err(e) => samples.record(
                        t.elapsed(),
                        Err(format!(
                            "claim: {}",
                            format!("{e:#}").lines().next().unwrap_or_default()
                        )),
                    ),
                }
            }
            (samples, ids)
        }));
    }
    let mut samples = Samples::default();
    let mut workspace_ids = Vec::new();
    for w in workers {
        if let Ok((s, ids)) = w.await {
            samples.merge(s);
            workspace_ids.extend(ids);
        }
    }
    let elapsed = start.elapsed();
    let claimed = workspace_ids
        .iter()
        .filter(|id| prebuild_ids.contains(*id))
        .count();
    // The claim builds (and any fresh creates) finish in the background; wait for them.
    let deadline = Instant::now() + timeout;
    let results: Vec<anyhow::Result<Value>> = futures::stream::iter(workspace_ids.iter())
        .map(|id| wait_running(ctx, id, deadline))
        .buffer_unordered(args.claim_concurrency.max(1))
        .collect()
        .await;
    let mut build_errors = Samples::default();
    for r in results {
        if let Err(e) = r {
            build_errors.error(format!("{e:#}"));
        }
    }
    Claims {
        claimed,
        fresh: workspace_ids.len() - claimed,
        samples,
        build_errors,
        elapsed,
        all_running: start.elapsed(),
        workspace_ids,
    }
}

/// Deletes the claimed workspaces, empties the pools (a last version without prebuilds), then deletes the
/// templates once nothing is left on them.
async fn cleanup(ctx: &Ctx, templates: &[Tpl], claimed: &[String], timeout: Duration) -> Value {
    eprintln!("Cleaning up: claimed workspaces, pools, templates.");
    let start = Instant::now();
    let deadline = start + timeout;
    let mut problems: Vec<String> = delete_workspaces(ctx, claimed, 10)
        .await
        .into_iter()
        .take(5)
        .map(|(id, e)| format!("delete workspace {id}: {e}"))
        .collect();
    for t in templates {
        let result = async {
            let presets = t.presets.len();
            let v = import_version(
                ctx,
                &template_tf(Duration::from_secs(10), Some((presets, 0)), 3),
                Some(&t.id),
                timeout,
            )
            .await?;
            promote(ctx, &t.id, &v).await
        }
        .await;
        if let Err(e) = result {
            problems.push(format!("{}: {e:#}", t.name));
        }
    }
    for t in templates {
        let result = async {
            wait_template_empty(ctx, &t.name, deadline).await?;
            delete_template(ctx, &t.id).await
        }
        .await;
        if let Err(e) = result {
            problems.push(format!("{}: {e:#}", t.name));
        }
    }
    json!({"seconds": round2(start.elapsed().as_secs_f64()), "ok": problems.is_empty(),
           "problems": problems})
}

fn print_text(r: &Value) {
    let names = r["templates"].as_array().map(Vec::len).unwrap_or(0);
    println!(
        "Scaletest prebuilds: {names} templates × {} presets × {} instances = {} prebuilds",
        r["presets"], r["instances"], r["desired_total"]
    );
    let f = &r["fill"];
    println!("Fill:       every pool full after {} s", f["seconds"]);
    let rd = &r["ready"];
    println!(
        "Ready:      {} agents reported ready ({} requests, {} errors, p95 {} ms); {} eligible after {} s",
        rd["agents"], rd["requests"], rd["errors"], rd["latency_ms"]["p95"], rd["eligible"], rd["seconds"]
    );
    let c = &r["claims"];
    if !c.is_null() {
        println!(
            "Claims:     {} of {} created ({} claimed from a pool, {} fresh) in {} s: {} per s, {} errors",
            c["succeeded"], c["requested"], c["claimed"], c["fresh"], c["seconds"], c["per_second"],
            c["errors"]
        );
        let l = &c["latency_ms"];
        println!(
            "  latency p50 {} ms, p95 {} ms, p99 {} ms, max {} ms; all running after {} s",
            l["p50"], l["p95"], l["p99"], l["max"], c["all_running_seconds"]
        );
        if let Some(kinds) = c["error_kinds"]["create"].as_object() {
            for (e, n) in kinds {
                println!("  error ×{n}: {e}");
            }
        }
    }
    let ro = &r["rollover"];
    println!(
        "New version: old prebuilds gone after {} s, new pools full after {} s ({} prebuilds)",
        ro["old_gone_seconds"], ro["new_full_seconds"], ro["prebuilds"]
    );
    let s = &r["server"];
    if !s.is_null() {
        println!("Server:     while filling {}", server_text(&s["fill"]));
        if !s["claims"].is_null() {
            println!("            while claiming {}", server_text(&s["claims"]));
        }
        println!(
            "            during the new version {}",
            server_text(&s["rollover"])
        );
    }
    let cl = &r["cleanup"];
    if cl.is_null() {
        println!(
            "Left in place: the templates, their prebuilds and the claimed workspaces (run with --cleanup to remove them)."
        );
    } else if cl["ok"] == true {
        println!("Cleanup:    everything deleted in {} s", cl["seconds"]);
    } else {
        println!("Cleanup:    incomplete: {}", cl["problems"]);
    }
    println!("Errors:     {}", r["errors"]);
}
