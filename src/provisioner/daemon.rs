//! Built-in provisioner daemons: each takes one job at a time from the queue, heartbeats while running it,
//! and hands it to the runner for its type. Daemons wake on NOTIFY and poll as a fallback; every replica
//! also fails jobs whose daemon stopped heartbeating.

use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgListener;
use sqlx::Postgres;
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
        // Idle daemons keep a connection (up to a third of the pool), so the builds a burst of
        // requests queues do not wait for the pool behind those very requests.
        let keep_idle = (n + 1) * 3 <= state.config.postgres_conn_max_open;
        tracing::info!(target: "coderd.provisionerd", daemon = n, worker = %worker, "starting built-in provisioner daemon");
        handles.push(tokio::spawn(run_daemon(
            state.clone(),
            worker,
            keep_idle,
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
                    // One daemon per job: waking all of them sends every idle one to race for it in
                    // the database, at the moment the job's create answers its client. A daemon that
                    // is busy takes the next job itself before it waits again.
                    n = listener.recv() => { n?; wake.notify_one(); }
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

async fn run_daemon(
    state: AppState,
    worker: Uuid,
    keep_idle: bool,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let poll = state.config.provisioner_daemon_poll_interval;
    // The connection jobs are taken and builds run on; kept from one job to the next (and while idle
    // with `keep_idle`), dropped after an error.
    let mut held = None;
    loop {
        // Register interest before looking, so a job posted in between still wakes us.
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match acquire(&state, worker, held.take()).await {
            Ok((Some(job), conn)) => {
                held = run_job(&state, worker, job, conn).await;
                continue;
            }
            Ok((None, conn)) => held = keep_idle.then_some(conn),
            Err(err) => {
                tracing::warn!(target: "coderd.provisionerd", error = %err, "acquire job");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = &mut notified => {}
            _ = tokio::time::sleep(poll) => {}
            // Closing the pool waits for every connection to come back.
            _ = state.pool.close_event(), if held.is_some() => held = None,
        }
    }
}

/// Takes the next job on `held` (or a pooled connection) and returns the connection with it: a build
/// runs on it, so it waits for the pool once. A held connection that fails (e.g. it was closed while
/// idle) is dropped and the job taken on a pooled one; so is one of a pool that is closing.
async fn acquire(
    state: &AppState,
    worker: Uuid,
    held: Option<PoolConnection<Postgres>>,
) -> Result<(Option<JobRow>, PoolConnection<Postgres>), sqlx::Error> {
    let now = state.clock.now();
    let types = [TYPE_TEMPLATE_VERSION_IMPORT, TYPE_WORKSPACE_BUILD];
    if let Some(mut conn) = held.filter(|_| !state.pool.is_closed()) {
        match jobs::acquire(&mut *conn, worker, &types, now).await {
            Ok(job) => return Ok((job, conn)),
            Err(err) => {
                tracing::debug!(target: "coderd.provisionerd", error = %err, "acquire job on the kept connection; retrying on a new one")
            }
        }
    }
    let mut conn = state.pool.acquire().await?;
    let job = jobs::acquire(&mut *conn, worker, &types, now).await?;
    Ok((job, conn))
}

/// Runs a job; returns the connection for the next one when the job ran without an internal error.
async fn run_job(
    state: &AppState,
    worker: Uuid,
    job: JobRow,
    mut conn: PoolConnection<Postgres>,
) -> Option<PoolConnection<Postgres>> {
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
    // Builds report the status they left the job in, saving a read; other jobs are read back.
    let (result, conn) = match job.r#type.as_str() {
        TYPE_TEMPLATE_VERSION_IMPORT => {
            drop(conn);
            let result = crate::templates::import::run(state, worker, &job).await;
            (result.map(|()| None), None)
        }
        TYPE_WORKSPACE_BUILD => (
            super::build::run(state, &mut conn, worker, &job).await,
            Some(conn),
        ),
        other => {
            let msg = format!("unsupported job type {other:?}");
            let done = jobs::complete(&mut *conn, job.id, worker, Some(&msg), state.clock.now());
            (done.await.map(|done| done.then_some("failed")), Some(conn))
        }
    };
    heartbeat.abort();
    current.dec();
    let (status, mut conn) = match result {
        Ok(status) => (status, conn),
        Err(err) => {
            tracing::error!(target: "coderd.provisionerd", job = %job.id, error = %err, "job failed with an internal error");
            // The connection may be what failed: record the failure on another one.
            drop(conn);
            let msg = format!("internal error: {err}");
            let now = state.clock.now();
            let done = jobs::complete(&state.pool, job.id, worker, Some(&msg), now).await;
            (matches!(done, Ok(true)).then_some("failed"), None)
        }
    };
    let status = match status {
        Some(status) => status.to_string(),
        None => {
            let done = match conn.as_mut() {
                Some(conn) => jobs::get(&mut **conn, job.id).await,
                None => jobs::get(&state.pool, job.id).await,
            };
            match done {
                Ok(Some(done)) => done.job_status,
                _ => return conn,
            }
        }
    };
    state
        .metrics
        .provisioner_job_timings
        .with_label_values(&[&job.provisioner, &status])
        .observe(started.elapsed().as_secs_f64());
    conn
}
