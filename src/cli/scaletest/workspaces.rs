//! `coder scaletest workspaces`: create N echo workspaces (C at a time; each agent reports lifecycle
//! `starting` → `ready` as soon as its workspace runs, as a real agent does), then play the N agents at
//! Coder's reference rate — every metadata interval 2 metadata items and a stats heartbeat, start times
//! spread over the interval — for a fixed duration. The agent API figures are that steady state.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use serde_json::{json, Value};

use super::{
    agent_call, agent_tokens, create_template, delete_template, delete_workspaces, import_version,
    lifecycle_body, metadata_body, per_second, progress, round2, server_text, stats_body,
    template_tf, wait_running, wait_template_empty, AgentCall, CommonArgs, Ctx, Latency, Monitor,
    Samples,
};
use crate::duration::GoDuration;

#[derive(Debug, Args)]
#[command(next_line_help = true)]
pub struct WorkspacesArgs {
    /// Number of workspaces (and so fake agents).
    #[arg(long)]
    pub count: usize,

    /// Workspaces created at the same time (each waits for its build to run).
    #[arg(long, default_value_t = 20)]
    pub concurrency: usize,

    /// How long to drive the agents.
    #[arg(long, default_value = "60s")]
    pub duration: GoDuration,

    /// How often each agent posts its 2 metadata items and a stats heartbeat.
    #[arg(long, default_value = "10s")]
    pub metadata_interval: GoDuration,

    /// Give up waiting for a workspace build (or the cleanup) after this long.
    #[arg(long, default_value = "10m")]
    pub timeout: GoDuration,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// What one create worker saw of one workspace.
struct Created {
    id: String,
    tokens: Vec<String>,
}

pub async fn run(args: WorkspacesArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.count > 0, "--count must be at least 1");
    anyhow::ensure!(
        !args.metadata_interval.0.is_zero(),
        "--metadata-interval must be positive"
    );
    let concurrency = args.concurrency.max(1);
    let timeout = args.timeout.0;
    let ctx = Ctx::connect(&args.common, args.count.min(4096)).await?;
    let monitor = match &args.common.prometheus_url {
        Some(url) => Some(Monitor::start(url).await?),
        None => None,
    };
    let started = Instant::now();

    let template_name = format!("scaletest-{}", ctx.suffix);
    let version = import_version(
        &ctx,
        &template_tf(args.metadata_interval.0, None, 1),
        None,
        timeout,
    )
    .await?;
    let template_id = create_template(&ctx, &template_name, &version).await?;
    eprintln!(
        "Template {template_name} created; creating {} workspaces, {concurrency} at a time.",
        args.count
    );

    // ---- create phase ----
    let create_start = Instant::now();
    if let Some(m) = &monitor {
        let _ = m.mark().await;
    }
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let ticker = progress("running", done.clone(), args.count);
    let mut workers = Vec::new();
    for _ in 0..concurrency.min(args.count) {
        let (ctx, next, done, template_id) =
            (ctx.clone(), next.clone(), done.clone(), template_id.clone());
        let count = args.count;
        workers.push(tokio::spawn(async move {
            let mut calls = Samples::default();
            let mut to_running = Samples::default();
            let mut lifecycle = Samples::default();
            let mut created = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let name = format!("st{}-{i}", ctx.suffix);
                let t = Instant::now();
                let resp = ctx
                    .api
                    .post(
                        "/users/me/workspaces",
                        &json!({"template_id": template_id, "name": name}),
                    )
                    .await;
                let ws = match resp {
                    Ok(ws) => {
                        calls.record(t.elapsed(), Ok(()));
                        ws
                    }
                    Err(e) => {
                        calls.record(t.elapsed(), Err(format!("create: {}", first_line(&e))));
                        continue;
                    }
                };
                let id = ws["id"].as_str().unwrap_or_default().to_string();
                match wait_running(&ctx, &id, Instant::now() + timeout).await {
                    Ok(ws) => {
                        to_running.record(t.elapsed(), Ok(()));
                        let tokens = agent_tokens(&ws);
                        if tokens.is_empty() {
                            to_running.error(
                                "no agent_token metadata on the workspace (resource metadata hidden?)"
                                    .into(),
                            );
                        }
                        // The agent comes up with its workspace: `starting`, then `ready`.
                        for token in &tokens {
                            for state in ["starting", "ready"] {
                                let (d, r) = agent_call(
                                    &ctx.http,
                                    &ctx.base,
                                    token,
                                    AgentCall::Lifecycle,
                                    &lifecycle_body(state),
                                )
                                .await;
                                lifecycle.record(d, r);
                            }
                        }
                        created.push(Created { id, tokens });
                    }
                    Err(e) => {
                        to_running.error(format!("build: {}", first_line(&e)));
                        created.push(Created {
                            id,
                            tokens: Vec::new(),
                        });
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            (calls, to_running, lifecycle, created)
        }));
    }
    let mut create_calls = Samples::default();
    let mut create_to_running = Samples::default();
    let mut lifecycle = Samples::default();
    let mut created: Vec<Created> = Vec::new();
    for w in workers {
        let (c, r, l, ws) = w.await?;
        create_calls.merge(c);
        create_to_running.merge(r);
        lifecycle.merge(l);
        created.extend(ws);
    }
    ticker.abort();
    let create_elapsed = create_start.elapsed();
    if let Some(m) = &monitor {
        let _ = m.mark().await;
    }
    let create_end = Instant::now();
    let tokens: Vec<String> = created
        .iter()
        .flat_map(|c| c.tokens.iter().cloned())
        .collect();
    let running = created.iter().filter(|c| !c.tokens.is_empty()).count();
    eprintln!(
        "Created {} workspaces ({running} running with an agent token) in {:.1} s; driving {} agents for {}.",
        created.len(),
        create_elapsed.as_secs_f64(),
        tokens.len(),
        args.duration
    );

    // ---- agent phase ----
    let interval = args.metadata_interval.0;
    let agent_start = Instant::now();
    if let Some(m) = &monitor {
        let _ = m.mark().await;
    }
    let deadline = agent_start + args.duration.0;
    let n = tokens.len().max(1);
    let mut agents = Vec::new();
    for (k, token) in tokens.iter().cloned().enumerate() {
        let (http, base) = (ctx.http.clone(), ctx.base.clone());
        // Spread the agents evenly over one interval, as agents started at different times are.
        let offset = interval.mul_f64(k as f64 / n as f64);
        agents.push(tokio::spawn(async move {
            let mut by_call: [Samples; 2] = Default::default();
            let first = agent_start + offset;
            let mut cycle = 0u32;
            loop {
                let at = first + interval * cycle;
                if at >= deadline {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                let (d, r) =
                    agent_call(&http, &base, &token, AgentCall::Metadata, &metadata_body()).await;
                by_call[0].record(d, r);
                let (d, r) =
                    agent_call(&http, &base, &token, AgentCall::Stats, &stats_body()).await;
                by_call[1].record(d, r);
                cycle += 1;
            }
            by_call
        }));
    }
    let mut by_call: [Samples; 2] = Default::default();
    for a in agents {
        let got = a.await?;
        for (into, from) in by_call.iter_mut().zip(got) {
            into.merge(from);
        }
    }
    let agent_elapsed = agent_start.elapsed();
    if let Some(m) = &monitor {
        let _ = m.mark().await;
    }
    let agent_end = Instant::now();
    let mut agent_all = Samples::default();
    for s in &by_call {
        agent_all.merge(s.clone());
    }

    // ---- cleanup ----
    let cleanup = if args.common.cleanup {
        eprintln!(
            "Cleaning up: deleting {} workspaces and the template.",
            created.len()
        );
        let t = Instant::now();
        let ids: Vec<String> = created.iter().map(|c| c.id.clone()).collect();
        let failures = delete_workspaces(&ctx, &ids, concurrency).await;
        let mut problems: Vec<String> = failures
            .iter()
            .take(5)
            .map(|(id, e)| format!("delete workspace {id}: {e}"))
            .collect();
        match wait_template_empty(&ctx, &template_name, Instant::now() + timeout).await {
            Ok(()) => {
                if let Err(e) = delete_template(&ctx, &template_id).await {
                    problems.push(format!("delete template: {}", first_line(&e)));
                }
            }
            Err(e) => problems.push(format!("{e:#}")),
        }
        json!({"seconds": round2(t.elapsed().as_secs_f64()), "ok": problems.is_empty(),
               "problems": problems})
    } else {
        Value::Null
    };

    // ---- report ----
    let create_latency = create_calls.latency();
    let running_latency = create_to_running.latency();
    let agent_latency = agent_all.latency();
    let server = monitor.as_ref().map(|m| {
        json!({
            "create": m.phase(create_start, create_end),
            "agents": m.phase(agent_start, agent_end),
        })
    });
    let errors =
        create_calls.errors + create_to_running.errors + lifecycle.errors + agent_all.errors;
    let report = json!({
        "mode": "workspaces",
        "template": template_name,
        "count": args.count,
        "concurrency": concurrency,
        "create": {
            "created": create_calls.requests - create_calls.errors,
            "running": running,
            "errors": create_calls.errors + create_to_running.errors,
            "error_kinds": { "create": create_calls.errors_json(), "build": create_to_running.errors_json() },
            "seconds": round2(create_elapsed.as_secs_f64()),
            "per_second": round2(per_second(running as u64, create_elapsed)),
            "latency_ms": create_latency.json(),
            "to_running_ms": running_latency.json(),
        },
        "agents": {
            "agents": tokens.len(),
            "duration_seconds": round2(agent_elapsed.as_secs_f64()),
            "metadata_interval_seconds": round2(interval.as_secs_f64()),
            "requests": agent_all.requests,
            "per_second": round2(per_second(agent_all.requests, agent_elapsed)),
            "errors": agent_all.errors,
            "error_kinds": agent_all.errors_json(),
            "latency_ms": agent_latency.json(),
            "by_call": {
                "metadata": by_call[0].latency().json(),
                "report-stats": by_call[1].latency().json(),
            },
            "lifecycle": {
                "requests": lifecycle.requests,
                "errors": lifecycle.errors,
                "error_kinds": lifecycle.errors_json(),
                "latency_ms": lifecycle.latency().json(),
            },
        },
        "server": server.clone().unwrap_or(Value::Null),
        "cleanup": cleanup,
        "errors": errors,
        "total_seconds": round2(started.elapsed().as_secs_f64()),
    });
    if args.common.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(
            &report,
            &create_latency,
            &running_latency,
            &agent_latency,
            &agent_all,
            &by_call,
            &lifecycle,
        );
    }
    Ok(())
}

fn first_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn print_text(
    r: &Value,
    create: &Latency,
    to_running: &Latency,
    agents: &Latency,
    agent_all: &Samples,
    by_call: &[Samples; 2],
    lifecycle: &Samples,
) {
    let c = &r["create"];
    let a = &r["agents"];
    println!(
        "Scaletest workspaces: template {}, {} workspaces, {} at a time",
        r["template"].as_str().unwrap_or_default(),
        r["count"],
        r["concurrency"]
    );
    println!(
        "Create:     {} created, {} running with an agent in {} s ({} running per s), {} errors",
        c["created"], c["running"], c["seconds"], c["per_second"], c["errors"]
    );
    println!("  create call       {}", create.text(false));
    println!("  create→running    {}", to_running.text(false));
    println!(
        "  agent lifecycle   {} (starting + ready as each workspace came up; {} requests, {} errors)",
        lifecycle.latency().text(false),
        lifecycle.requests,
        lifecycle.errors
    );
    for (e, n) in lifecycle.top_errors(3) {
        println!("  error ×{n}: {e}");
    }
    println!(
        "Agent API:  {} agents, {} s, metadata (2 items) + stats every {} s: {} requests ({} per s), {} errors",
        a["agents"], a["duration_seconds"], a["metadata_interval_seconds"], a["requests"],
        a["per_second"], a["errors"]
    );
    println!("  all calls         {}", agents.text(true));
    for (name, s) in ["metadata", "report-stats"].iter().zip(by_call) {
        println!("  {name:<18}{}", s.latency().text(false));
    }
    for (e, n) in agent_all.top_errors(5) {
        println!("  error ×{n}: {e}");
    }
    let s = &r["server"];
    if !s.is_null() {
        println!("Server:     during creates {}", server_text(&s["create"]));
        println!(
            "            during agent load {}",
            server_text(&s["agents"])
        );
    }
    let cl = &r["cleanup"];
    if cl.is_null() {
        println!(
            "Left in place: template {} and its workspaces (run with --cleanup to remove them).",
            r["template"].as_str().unwrap_or_default()
        );
    } else if cl["ok"] == true {
        println!(
            "Cleanup:    workspaces and template deleted in {} s",
            cl["seconds"]
        );
    } else {
        println!("Cleanup:    incomplete: {}", cl["problems"]);
    }
    println!("Errors:     {}", r["errors"]);
}
