//! Built-in provisioner daemons: each takes one job at a time from the queue, heartbeats while running it,
//! and hands it to the runner for its type. Daemons wake on NOTIFY and poll as a fallback; every replica
//! also fails jobs whose daemon stopped heartbeating.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::jobs;
use super::{JobRow, TYPE_TEMPLATE_VERSION_IMPORT, TYPE_WORKSPACE_BUILD};
use crate::app::AppState;

/// How often a running job's daemon records liveness.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// Starts `count` daemons, the NOTIFY listener that wakes them, and the stale-job detector.
pub fn start(state: AppState, count: u32, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
    let wake = Arc::new(Notify::new());
    let mut handles = vec![
        tokio::spawn(listen(state.clone(), wake.clone(), shutdown.clone())),
        tokio::spawn(detect_stale(state.clone(), shutdown.clone())),
    ];
    for n in 0..count {
        let worker = Uuid::new_v4();
        tracing::info!(target: "coderd.provisionerd", daemon = n, worker = %worker, "starting built-in provisioner daemon");
        handles.push(tokio::spawn(run_daemon(
            state.clone(),
            worker,
            wake.clone(),
            shutdown.clone(),
        )));
    }
    handles
}

async fn listen(state: AppState, wake: Arc<Notify>, shutdown: CancellationToken) {
    loop {
        let result = async {
            let mut listener = PgListener::connect_with(&state.pool).await?;
            listener.listen(jobs::CHANNEL_JOB_POSTED).await?;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok::<(), sqlx::Error>(()),
                    n = listener.recv() => { n?; wake.notify_waiters(); }
                }
            }
        }
        .await;
        if shutdown.is_cancelled() {
            return;
        }
        if let Err(err) = result {
            tracing::warn!(target: "coderd.provisionerd", error = %err, "job notification listener failed; polling until it reconnects");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn detect_stale(state: AppState, shutdown: CancellationToken) {
    let timeout = chrono::Duration::from_std(state.config.provisioner_stale_timeout)
        .unwrap_or(chrono::Duration::seconds(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(state.config.provisioner_stale_check_interval) => {}
        }
        match jobs::fail_stale(&state.pool, state.clock.now(), timeout).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::warn!(target: "coderd.provisionerd", jobs = ?ids, "failed jobs whose daemon stopped heartbeating")
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(target: "coderd.provisionerd", error = %err, "stale job detection")
            }
        }
    }
}

async fn run_daemon(state: AppState, worker: Uuid, wake: Arc<Notify>, shutdown: CancellationToken) {
    let poll = state.config.provisioner_daemon_poll_interval;
    loop {
        // Register interest before looking, so a job posted in between still wakes us.
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let acquired = jobs::acquire(
            &state.pool,
            worker,
            &[TYPE_TEMPLATE_VERSION_IMPORT, TYPE_WORKSPACE_BUILD],
            state.clock.now(),
        )
        .await;
        match acquired {
            Ok(Some(job)) => {
                run_job(&state, worker, job).await;
                continue;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(target: "coderd.provisionerd", error = %err, "acquire job");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = &mut notified => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

async fn run_job(state: &AppState, worker: Uuid, job: JobRow) {
    tracing::debug!(target: "coderd.provisionerd", job = %job.id, r#type = %job.r#type, "running job");
    let heartbeat = {
        let state = state.clone();
        let id = job.id;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT_INTERVAL).await;
                match jobs::heartbeat(&state.pool, id, worker, state.clock.now()).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(err) => {
                        tracing::warn!(target: "coderd.provisionerd", job = %id, error = %err, "heartbeat")
                    }
                }
            }
        })
    };
    let started = std::time::Instant::now();
    let current = state
        .metrics
        .provisioner_jobs_current
        .with_label_values(&[&job.provisioner]);
    current.inc();
    let result = match job.r#type.as_str() {
        TYPE_TEMPLATE_VERSION_IMPORT => crate::templates::import::run(state, worker, &job).await,
        TYPE_WORKSPACE_BUILD => super::build::run(state, worker, &job).await,
        other => {
            let msg = format!("unsupported job type {other:?}");
            jobs::complete(&state.pool, job.id, worker, Some(&msg), state.clock.now())
                .await
                .map(|_| ())
        }
    };
    heartbeat.abort();
    current.dec();
    if let Err(err) = result {
        tracing::error!(target: "coderd.provisionerd", job = %job.id, error = %err, "job failed with an internal error");
        let msg = format!("internal error: {err}");
        let _ = jobs::complete(&state.pool, job.id, worker, Some(&msg), state.clock.now()).await;
    }
    if let Ok(Some(done)) = jobs::get(&state.pool, job.id).await {
        state
            .metrics
            .provisioner_job_timings
            .with_label_values(&[&job.provisioner, &done.job_status])
            .observe(started.elapsed().as_secs_f64());
    }
}
