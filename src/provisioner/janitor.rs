//! Keeps the local runtime's processes in line with the database after crashes. Agent processes run
//! in their own sessions, so they outlive a killed server: on start-up and then periodically, each
//! replica walks its own `<cache>/workspaces/` and
//! - keeps (re-adopts) the agents of workspaces whose latest build is a `start` that succeeded or is
//!   still pending/running — they reconnect to the API by themselves;
//! - stops the agents of every other workspace (its start failed, e.g. failed as hung after the
//!   server died mid-build, or it was stopped or deleted meanwhile);
//! - removes the directories of deleted workspaces.
//!
//! A directory this database does not know is left alone: it may belong to another deployment that
//! shares the cache directory.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::local;
use crate::app::AppState;

const INTERVAL: Duration = Duration::from_secs(15);
const TARGET: &str = "coderd.provisionerd";

/// What to do with one workspace directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Not this database's workspace.
    Ignore,
    StopAgents,
    Remove,
}

/// `latest`: the workspace's `(deleted, latest transition, latest job status)`, `None` if unknown.
#[must_use]
pub fn verdict(latest: Option<(bool, &str, &str)>) -> Verdict {
    match latest {
        None => Verdict::Ignore,
        Some((true, _, _)) => Verdict::Remove,
        Some((false, "start", "succeeded" | "pending" | "running")) => Verdict::Keep,
        Some(_) => Verdict::StopAgents,
    }
}

/// One pass over the cache directory. Returns (kept, stopped, removed).
pub async fn sweep(state: &AppState) -> Result<(usize, usize, usize), sqlx::Error> {
    let root = state.config.cache_dir.join("workspaces");
    let ids: Vec<Uuid> = match std::fs::read_dir(&root) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect(),
        Err(_) => return Ok((0, 0, 0)),
    };
    if ids.is_empty() {
        return Ok((0, 0, 0));
    }
    let rows: Vec<(Uuid, bool, String, String)> = sqlx::query_as(
        "SELECT w.id, w.deleted, lb.transition, j.job_status FROM workspaces w
         JOIN LATERAL (SELECT b.transition, b.job_id FROM workspace_builds b WHERE b.workspace_id = w.id
                       ORDER BY b.build_number DESC LIMIT 1) lb ON true
         JOIN provisioner_jobs j ON j.id = lb.job_id
         WHERE w.id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&state.pool)
    .await?;
    let known: HashMap<Uuid, (bool, String, String)> = rows
        .into_iter()
        .map(|(id, deleted, t, s)| (id, (deleted, t, s)))
        .collect();
    let (mut kept, mut stopped, mut removed) = (0, 0, 0);
    for id in ids {
        let latest = known.get(&id).map(|(d, t, s)| (*d, t.as_str(), s.as_str()));
        let cache = state.config.cache_dir.clone();
        let result = match verdict(latest) {
            Verdict::Keep => {
                kept += 1;
                continue;
            }
            Verdict::Ignore => continue,
            Verdict::StopAgents => {
                if !local::any_running(&cache, id) {
                    continue;
                }
                stopped += 1;
                tracing::info!(target: TARGET, workspace = %id, "stopping agents of a workspace that is not running");
                tokio::task::spawn_blocking(move || local::stop(&cache, id)).await
            }
            Verdict::Remove => {
                removed += 1;
                tracing::info!(target: TARGET, workspace = %id, "removing the directory of a deleted workspace");
                tokio::task::spawn_blocking(move || local::delete(&cache, id)).await
            }
        };
        if let Ok(Err(err)) = result {
            tracing::warn!(target: TARGET, workspace = %id, error = %err, "local runtime clean-up");
        }
    }
    Ok((kept, stopped, removed))
}

/// Sweeps at start-up, then every 15 s, until `shutdown`.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    loop {
        match sweep(&state).await {
            Ok((kept, stopped, removed)) if stopped + removed > 0 => {
                tracing::info!(target: TARGET, kept, stopped, removed, "local runtime swept")
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(target: TARGET, error = %err, "local runtime sweep failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(verdict(None), Verdict::Ignore);
        assert_eq!(
            verdict(Some((true, "delete", "succeeded"))),
            Verdict::Remove
        );
        assert_eq!(verdict(Some((false, "start", "succeeded"))), Verdict::Keep);
        assert_eq!(verdict(Some((false, "start", "running"))), Verdict::Keep);
        assert_eq!(verdict(Some((false, "start", "pending"))), Verdict::Keep);
        assert_eq!(
            verdict(Some((false, "start", "failed"))),
            Verdict::StopAgents
        );
        assert_eq!(
            verdict(Some((false, "start", "canceled"))),
            Verdict::StopAgents
        );
        assert_eq!(
            verdict(Some((false, "stop", "succeeded"))),
            Verdict::StopAgents
        );
        // A delete in flight: its own job stops the agents; stopping early is harmless.
        assert_eq!(
            verdict(Some((false, "delete", "running"))),
            Verdict::StopAgents
        );
    }
}
