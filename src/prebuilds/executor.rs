//! Turning plan actions into ordinary workspace builds owned by the `prebuilds` user. Each create,
//! delete and cancel is its own transaction, so one failure never undoes another's work.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sqlx::PgPool;
use uuid::Uuid;

use crate::users::PREBUILDS_USER_ID;
use crate::workspaces::builds::{self, NewBuild};
use crate::workspaces::params::{self, ResolveInput};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("template version {0} does not exist")]
    MissingVersion(Uuid),
    #[error("the preset's parameters do not validate: {0}")]
    Params(String),
}

/// What became of one delete or cancel: the reconciler only touches workspaces it still owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Claimed, already deleted, or a build is in progress: left alone.
    Skipped,
}

/// `prebuild-` + 15 lowercase base32 characters (9 random bytes), as Coder names them.
#[must_use]
pub fn prebuild_name() -> String {
    let mut bytes = [0u8; 9];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("prebuild-{}", base32_lower(&bytes))
}

/// RFC 4648 base32, lowercase, without padding.
fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Creates one prebuild of `preset` on `version`: the workspace and its first `start` build with
/// the preset's parameter values, in one transaction. Returns the workspace id.
pub async fn create(
    pool: &PgPool,
    template_id: Uuid,
    organization_id: Uuid,
    version_id: Uuid,
    preset_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Uuid, ExecError> {
    let mut tx = pool.begin().await?;
    let version = builds::version_info(&mut tx, version_id)
        .await?
        .ok_or(ExecError::MissingVersion(version_id))?;
    let preset_values = builds::preset_values(&mut tx, preset_id).await?;
    let specs = builds::param_specs(&mut tx, version_id).await?;
    let values = params::resolve(&ResolveInput {
        specs: &specs,
        previous: &[],
        requested: &[],
        preset: &preset_values,
        first_build: true,
        transition: "start",
    })
    .map_err(|err| ExecError::Params(err.to_string()))?;
    let workspace_id = Uuid::new_v4();
    // A name collision among 72 random bits is not worth a retry loop: the next tick creates it.
    sqlx::query(
        "INSERT INTO workspaces (id, created_at, updated_at, owner_id, organization_id, template_id, name,
                                 last_used_at, automatic_updates)
         VALUES ($1, $2, $2, $3, $4, $5, $6, $2, 'never')",
    )
    .bind(workspace_id)
    .bind(now)
    .bind(PREBUILDS_USER_ID)
    .bind(organization_id)
    .bind(template_id)
    .bind(prebuild_name())
    .execute(&mut *tx)
    .await?;
    builds::insert(
        &mut tx,
        &NewBuild {
            workspace_id,
            organization_id,
            version: &version,
            transition: "start",
            initiator: PREBUILDS_USER_ID,
            reason: "initiator",
            preset_id: Some(preset_id),
            params: &values,
            orphan: false,
            prebuild_claim: false,
            now,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(workspace_id)
}

#[derive(sqlx::FromRow)]
struct Latest {
    id: Uuid,
    template_version_id: Uuid,
    job_status: String,
    template_version_preset_id: Option<Uuid>,
}

/// Locks a workspace the reconciler still owns and returns its latest build, or `None` when it
/// was claimed or deleted meanwhile (the re-check that keeps a claim and a delete from racing).
async fn lock_owned(
    conn: &mut sqlx::PgConnection,
    workspace_id: Uuid,
) -> Result<Option<Latest>, sqlx::Error> {
    let owned: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM workspaces WHERE id = $1 AND owner_id = $2 AND NOT deleted FOR UPDATE",
    )
    .bind(workspace_id)
    .bind(PREBUILDS_USER_ID)
    .fetch_optional(&mut *conn)
    .await?;
    if owned.is_none() {
        return Ok(None);
    }
    sqlx::query_as(
        "SELECT b.id, b.template_version_id, j.job_status, b.template_version_preset_id
         FROM workspace_builds b JOIN provisioner_jobs j ON j.id = b.job_id
         WHERE b.workspace_id = $1 ORDER BY b.build_number DESC LIMIT 1",
    )
    .bind(workspace_id)
    .fetch_optional(&mut *conn)
    .await
}

/// Queues a `delete` build of a prebuild, unless it was claimed or has a build in progress.
pub async fn delete(
    pool: &PgPool,
    workspace_id: Uuid,
    orphan: bool,
    now: DateTime<Utc>,
) -> Result<Outcome, ExecError> {
    let mut tx = pool.begin().await?;
    let Some(latest) = lock_owned(&mut tx, workspace_id).await? else {
        return Ok(Outcome::Skipped);
    };
    if matches!(
        latest.job_status.as_str(),
        "pending" | "running" | "canceling"
    ) {
        return Ok(Outcome::Skipped);
    }
    queue_delete(&mut tx, workspace_id, &latest, orphan, now).await?;
    tx.commit().await?;
    Ok(Outcome::Done)
}

async fn queue_delete(
    tx: &mut sqlx::PgConnection,
    workspace_id: Uuid,
    latest: &Latest,
    orphan: bool,
    now: DateTime<Utc>,
) -> Result<(), ExecError> {
    let version = builds::version_info(&mut *tx, latest.template_version_id)
        .await?
        .ok_or(ExecError::MissingVersion(latest.template_version_id))?;
    let values = builds::build_values(&mut *tx, latest.id).await?;
    let organization_id: Uuid =
        sqlx::query_scalar("SELECT organization_id FROM workspaces WHERE id = $1")
            .bind(workspace_id)
            .fetch_one(&mut *tx)
            .await?;
    builds::insert(
        &mut *tx,
        &NewBuild {
            workspace_id,
            organization_id,
            version: &version,
            transition: "delete",
            initiator: PREBUILDS_USER_ID,
            reason: "initiator",
            preset_id: latest.template_version_preset_id,
            params: &values,
            orphan,
            prebuild_claim: false,
            now,
        },
    )
    .await?;
    Ok(())
}

/// Cancels a creation job no daemon has picked up and orphan-deletes its workspace, in one
/// transaction. Skipped when the job started meanwhile (it then finishes and is deleted later).
pub async fn cancel_pending(
    pool: &PgPool,
    workspace_id: Uuid,
    job_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Outcome, ExecError> {
    let mut tx = pool.begin().await?;
    let Some(latest) = lock_owned(&mut tx, workspace_id).await? else {
        return Ok(Outcome::Skipped);
    };
    let canceled = sqlx::query(
        "UPDATE provisioner_jobs SET canceled_at = $2, completed_at = $2, updated_at = $2
         WHERE id = $1 AND started_at IS NULL AND canceled_at IS NULL AND completed_at IS NULL",
    )
    .bind(job_id)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if canceled == 0 {
        return Ok(Outcome::Skipped);
    }
    queue_delete(&mut tx, workspace_id, &latest, true, now).await?;
    tx.commit().await?;
    Ok(Outcome::Done)
}

/// Records the preset's hard-limit state when it changed.
pub async fn set_prebuild_status(
    pool: &PgPool,
    preset_id: Uuid,
    status: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE template_version_presets SET prebuild_status = $2 WHERE id = $1")
        .bind(preset_id)
        .bind(status)
        .execute(pool)
        .await?;
    Ok(())
}

/// Makes the `prebuilds` user a member of every organization that has a preset with a pool, and
/// of that organization's `coderprebuiltworkspaces` group (quota allowance 0, so admins cap
/// prebuild spending by raising it). Idempotent; concurrent runs are absorbed by `ON CONFLICT`.
pub async fn ensure_membership(pool: &PgPool, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    const ORGS: &str = "SELECT DISTINCT t.organization_id FROM template_version_presets p
        JOIN template_versions tv ON tv.id = p.template_version_id
        JOIN templates t ON t.id = tv.template_id
        WHERE p.desired_instances IS NOT NULL AND NOT t.deleted";
    let mut tx = pool.begin().await?;
    sqlx::query(&format!(
        "WITH orgs AS ({ORGS}),
         members AS (
            INSERT INTO organization_members (organization_id, user_id, created_at, updated_at, roles)
            SELECT organization_id, $1, $2, $2, '{{}}' FROM orgs
            ON CONFLICT DO NOTHING)
         INSERT INTO groups (id, name, display_name, organization_id, quota_allowance, source)
         SELECT gen_random_uuid(), 'coderprebuiltworkspaces', 'Prebuilt Workspaces', organization_id, 0, 'user'
         FROM orgs ON CONFLICT (organization_id, name) DO NOTHING"
    ))
    .bind(PREBUILDS_USER_ID)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO group_members (user_id, group_id)
         SELECT $1, g.id FROM groups g WHERE g.name = 'coderprebuiltworkspaces'
           AND g.organization_id IN ({ORGS})
         ON CONFLICT DO NOTHING"
    ))
    .bind(PREBUILDS_USER_ID)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        assert_eq!(base32_lower(b""), "");
        assert_eq!(base32_lower(b"f"), "my");
        assert_eq!(base32_lower(b"fo"), "mzxq");
        assert_eq!(base32_lower(b"foo"), "mzxw6");
        assert_eq!(base32_lower(b"foob"), "mzxw6yq");
        assert_eq!(base32_lower(b"fooba"), "mzxw6ytb");
        assert_eq!(base32_lower(b"foobar"), "mzxw6ytboi");
    }

    #[test]
    fn prebuild_names_have_coders_shape() {
        let name = prebuild_name();
        let suffix = name.strip_prefix("prebuild-").unwrap();
        assert_eq!(suffix.len(), 15);
        assert!(suffix
            .chars()
            .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c)));
        assert!(crate::api::validate::name_error(&name).is_none());
        assert_ne!(prebuild_name(), name);
    }
}
