//! SQL for organizations, members and groups.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{Organization, EVERYONE_GROUP};

const COLUMNS: &str =
    "id, name, display_name, description, icon, created_at, updated_at, is_default";

pub async fn insert(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    name: &str,
    display_name: &str,
    is_default: bool,
    now: DateTime<Utc>,
) -> Result<Organization, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO organizations (id, name, display_name, is_default, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(name)
    .bind(display_name)
    .bind(is_default)
    .bind(now)
    .fetch_one(conn)
    .await
}

pub async fn default_org(conn: impl PgExecutor<'_>) -> Result<Option<Organization>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM organizations WHERE is_default AND NOT deleted"
    ))
    .fetch_optional(conn)
    .await
}

/// Looks an organization up by id, by name (case-insensitive), or `default`.
pub async fn resolve(
    conn: impl PgExecutor<'_>,
    reference: &str,
) -> Result<Option<Organization>, sqlx::Error> {
    let id = Uuid::parse_str(reference).ok();
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM organizations
         WHERE NOT deleted AND (id = $1 OR lower(name) = lower($2) OR ($2 = 'default' AND is_default))
         ORDER BY (id = $1) DESC NULLS LAST, (lower(name) = lower($2)) DESC LIMIT 1"
    ))
    .bind(id)
    .bind(reference)
    .fetch_optional(conn)
    .await
}

pub async fn list_all(conn: impl PgExecutor<'_>) -> Result<Vec<Organization>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM organizations WHERE NOT deleted ORDER BY created_at, id"
    ))
    .fetch_all(conn)
    .await
}

pub async fn list_for_user(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
) -> Result<Vec<Organization>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {} FROM organizations o JOIN organization_members m ON m.organization_id = o.id
         WHERE m.user_id = $1 AND NOT o.deleted ORDER BY o.created_at, o.id",
        COLUMNS
            .split(", ")
            .map(|c| format!("o.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .bind(user_id)
    .fetch_all(conn)
    .await
}

/// Creates the organization's Everyone group, which shares the organization's id (as in Coder).
pub async fn insert_everyone_group(
    conn: impl PgExecutor<'_>,
    org_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO groups (id, name, display_name, organization_id, source)
         VALUES ($1, $2, '', $1, 'user') ON CONFLICT DO NOTHING",
    )
    .bind(org_id)
    .bind(EVERYONE_GROUP)
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds a user to an organization and its Everyone group; idempotent.
pub async fn add_member(
    conn: &mut sqlx::PgConnection,
    org_id: Uuid,
    user_id: Uuid,
    roles: &[String],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO organization_members (organization_id, user_id, roles, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
    )
    .bind(org_id)
    .bind(user_id)
    .bind(roles)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(org_id)
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct MemberRow {
    pub user_id: Uuid,
    pub organization_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub roles: Vec<String>,
    pub username: String,
    pub name: String,
    pub avatar_url: String,
    pub email: String,
    pub rbac_roles: Vec<String>,
}

/// Members of an organization with their user data; system users are left out as in Coder.
pub async fn members(
    conn: impl PgExecutor<'_>,
    org_id: Uuid,
) -> Result<Vec<MemberRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT m.user_id, m.organization_id, m.created_at, m.updated_at, m.roles,
                u.username, u.name, u.avatar_url, u.email, u.rbac_roles
         FROM organization_members m JOIN users u ON u.id = m.user_id
         WHERE m.organization_id = $1 AND NOT u.deleted AND NOT u.is_system
         ORDER BY lower(u.username)",
    )
    .bind(org_id)
    .fetch_all(conn)
    .await
}

/// The default organization, created with its Everyone group on first use. Callers hold the first-user
/// advisory lock, so two replicas never both create it.
pub async fn ensure_default(
    conn: &mut sqlx::PgConnection,
    now: DateTime<Utc>,
) -> Result<Organization, sqlx::Error> {
    if let Some(org) = default_org(&mut *conn).await? {
        return Ok(org);
    }
    let org = insert(
        &mut *conn,
        Uuid::new_v4(),
        super::DEFAULT_ORG_NAME,
        "Coder",
        true,
        now,
    )
    .await?;
    insert_everyone_group(&mut *conn, org.id).await?;
    Ok(org)
}
