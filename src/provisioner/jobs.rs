//! The job queue's SQL. Every state change is one statement guarded by the job's state, so two daemons (on
//! any replica) can never both run or both complete a job.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::JobRow;

/// Channel notified (on commit) when a job is queued, with the job id as payload (PostgreSQL folds identical
/// notifications of one transaction into one, and each job should wake a daemon); daemons LISTEN on it.
pub const CHANNEL_JOB_POSTED: &str = "provisioner_job_posted";

const COLUMNS: &str = "id, created_at, updated_at, started_at, canceled_at, completed_at, error, error_code,
    organization_id, initiator_id, provisioner, type, input, worker_id, file_id, tags, logs_overflowed, job_status";

pub struct NewJob<'a> {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub initiator_id: Uuid,
    pub provisioner: &'a str,
    pub job_type: &'a str,
    /// The job's input: `JobInput`'s fields plus type-specific ones (e.g. `orphan`).
    pub input: &'a serde_json::Value,
    pub file_id: Uuid,
    pub tags: &'a std::collections::BTreeMap<String, String>,
    pub now: DateTime<Utc>,
}

/// Inserts a pending job and notifies daemons; the notification is delivered when the caller commits.
pub async fn insert(conn: &mut PgConnection, job: &NewJob<'_>) -> Result<JobRow, sqlx::Error> {
    // One round trip: the insert and the notification (delivered on commit).
    let row: JobRow = sqlx::query_as(&format!(
        "WITH j AS (
            INSERT INTO provisioner_jobs (id, created_at, updated_at, organization_id, initiator_id, provisioner,
                                          type, input, file_id, tags)
            VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS})
         SELECT j.* FROM j, (SELECT pg_notify($10, $1::text)) n"
    ))
    .bind(job.id)
    .bind(job.now)
    .bind(job.organization_id)
    .bind(job.initiator_id)
    .bind(job.provisioner)
    .bind(job.job_type)
    .bind(sqlx::types::Json(job.input))
    .bind(job.file_id)
    .bind(sqlx::types::Json(job.tags))
    .bind(CHANNEL_JOB_POSTED)
    .fetch_one(&mut *conn)
    .await?;
    Ok(row)
}

pub async fn get(conn: impl PgExecutor<'_>, id: Uuid) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM provisioner_jobs WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Position (1-based) of a pending job in the queue and the queue size; (0, 0) when not pending.
pub async fn queue_position(
    conn: impl PgExecutor<'_>,
    job: &JobRow,
) -> Result<(i64, i64), sqlx::Error> {
    if job.job_status != "pending" {
        return Ok((0, 0));
    }
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE (created_at, id) <= ($1, $2)), count(*)
         FROM provisioner_jobs WHERE started_at IS NULL AND canceled_at IS NULL",
    )
    .bind(job.created_at)
    .bind(job.id)
    .fetch_one(conn)
    .await
}

/// Takes the oldest pending job of the given types for `worker`, or none. `SKIP LOCKED` lets concurrent
/// daemons pass each other instead of queueing on the same row.
pub async fn acquire(
    conn: impl PgExecutor<'_>,
    worker: Uuid,
    types: &[&str],
    now: DateTime<Utc>,
) -> Result<Option<JobRow>, sqlx::Error> {
    let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
    sqlx::query_as(&format!(
        "UPDATE provisioner_jobs SET started_at = $2, updated_at = $2, heartbeat_at = $2, worker_id = $1
         WHERE id = (
             SELECT id FROM provisioner_jobs
             WHERE started_at IS NULL AND canceled_at IS NULL AND type = ANY($3)
             ORDER BY created_at, id
             FOR UPDATE SKIP LOCKED
             LIMIT 1)
         RETURNING {COLUMNS}"
    ))
    .bind(worker)
    .bind(now)
    .bind(&types)
    .fetch_optional(conn)
    .await
}

/// Records liveness; false when the job is no longer this worker's to run (completed, failed as stale, or
/// canceled), which tells the daemon to stop.
pub async fn heartbeat(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    worker: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE provisioner_jobs SET heartbeat_at = $3, updated_at = $3
         WHERE id = $1 AND worker_id = $2 AND completed_at IS NULL AND canceled_at IS NULL",
    )
    .bind(id)
    .bind(worker)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Completes a job run by `worker`, successfully (`error` None) or not. Returns false when the job was
/// already completed (e.g. failed as stale by another replica): the caller's results must then be dropped.
pub async fn complete(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    worker: Uuid,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    // A successful result only lands if nobody canceled the job meanwhile; failures always land.
    let done = sqlx::query(
        "UPDATE provisioner_jobs SET completed_at = $4, updated_at = $4, error = $3
         WHERE id = $1 AND worker_id = $2 AND completed_at IS NULL
           AND ($3::text IS NOT NULL OR canceled_at IS NULL)",
    )
    .bind(id)
    .bind(worker)
    .bind(error)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Completes a job that was canceled while running (status becomes `canceled`), dropping its results.
pub async fn finish_canceled(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    worker: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE provisioner_jobs SET completed_at = $3, updated_at = $3
         WHERE id = $1 AND worker_id = $2 AND completed_at IS NULL AND canceled_at IS NOT NULL",
    )
    .bind(id)
    .bind(worker)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Fails running jobs whose daemon stopped heartbeating, from any replica. Returns the failed ids.
pub async fn fail_stale(
    conn: impl PgExecutor<'_>,
    now: DateTime<Utc>,
    timeout: chrono::Duration,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE provisioner_jobs
         SET completed_at = $1, updated_at = $1,
             error = 'Build has been detected as hung and was canceled: the provisioner stopped sending heartbeats.'
         WHERE started_at IS NOT NULL AND completed_at IS NULL AND heartbeat_at < $2
         RETURNING id",
    )
    .bind(now)
    .bind(now - timeout)
    .fetch_all(conn)
    .await
}

pub struct LogLine<'a> {
    pub level: &'a str,
    pub stage: &'a str,
    pub output: &'a str,
}

pub async fn append_logs(
    conn: impl PgExecutor<'_>,
    job_id: Uuid,
    source: &str,
    lines: &[LogLine<'_>],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if lines.is_empty() {
        return Ok(());
    }
    let levels: Vec<&str> = lines.iter().map(|l| l.level).collect();
    let stages: Vec<&str> = lines.iter().map(|l| l.stage).collect();
    let outputs: Vec<&str> = lines.iter().map(|l| l.output).collect();
    sqlx::query(
        "INSERT INTO provisioner_job_logs (job_id, created_at, source, level, stage, output)
         SELECT $1, $2, $3, l, s, o FROM unnest($4::text[], $5::text[], $6::text[]) AS t(l, s, o)",
    )
    .bind(job_id)
    .bind(now)
    .bind(source)
    .bind(&levels)
    .bind(&stages)
    .bind(&outputs)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn logs(
    conn: impl PgExecutor<'_>,
    job_id: Uuid,
    after: Option<i64>,
    before: Option<i64>,
) -> Result<Vec<super::ProvisionerJobLog>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, created_at, source AS log_source, level AS log_level, stage, output
         FROM provisioner_job_logs
         WHERE job_id = $1 AND ($2::bigint IS NULL OR id > $2) AND ($3::bigint IS NULL OR id < $3)
         ORDER BY id",
    )
    .bind(job_id)
    .bind(after)
    .bind(before)
    .fetch_all(conn)
    .await
}

/// Marks a pending or running job canceled. Pending jobs complete at once; running ones become
/// `canceling` until their daemon notices.
pub async fn cancel(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE provisioner_jobs
         SET canceled_at = $2, updated_at = $2,
             completed_at = CASE WHEN started_at IS NULL THEN $2 ELSE completed_at END
         WHERE id = $1 AND completed_at IS NULL AND canceled_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Jobs' JSON (with queue positions) by id, in two queries whatever their number.
pub async fn load_json(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, super::ProvisionerJob>, sqlx::Error> {
    let rows: Vec<super::JobRow> = sqlx::query_as(
        "SELECT id, created_at, updated_at, started_at, canceled_at, completed_at, error, error_code,
                organization_id, initiator_id, provisioner, type, input, worker_id, file_id, tags,
                logs_overflowed, job_status
         FROM provisioner_jobs WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    // Queue positions for pending jobs in one query (none needed when no job is pending).
    let any_pending = rows.iter().any(|r| r.job_status == "pending");
    let positions: Vec<(Uuid, i64, i64)> = if !any_pending {
        Vec::new()
    } else {
        sqlx::query_as(
        "WITH q AS (SELECT id, row_number() OVER (ORDER BY created_at, id) AS pos, count(*) OVER () AS size
                   FROM provisioner_jobs WHERE started_at IS NULL AND canceled_at IS NULL)
         SELECT id, pos, size FROM q WHERE id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?
    };
    let positions: std::collections::HashMap<Uuid, (i64, i64)> = positions
        .into_iter()
        .map(|(id, p, s)| (id, (p, s)))
        .collect();
    Ok(rows
        .iter()
        .map(|r| {
            let (p, s) = positions.get(&r.id).copied().unwrap_or((0, 0));
            (r.id, super::ProvisionerJob::from_row(r, p, s))
        })
        .collect())
}
