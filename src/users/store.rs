//! SQL for users. Plain functions over an executor so use cases compose them in one transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::UserRow;

const COLUMNS: &str =
    "id, email, username, name, hashed_password, created_at, updated_at, last_seen_at,
    status, rbac_roles, login_type, avatar_url, theme_preference, deleted, is_system";

pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub username: &'a str,
    pub name: &'a str,
    pub hashed_password: &'a str,
    pub status: &'a str,
    pub login_type: &'a str,
    pub rbac_roles: &'a [String],
    pub now: DateTime<Utc>,
}

pub async fn insert(conn: impl PgExecutor<'_>, u: &NewUser<'_>) -> Result<UserRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO users (id, email, username, name, hashed_password, status, login_type, rbac_roles,
                            created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
         RETURNING {COLUMNS}"
    ))
    .bind(u.id)
    .bind(u.email)
    .bind(u.username)
    .bind(u.name)
    .bind(u.hashed_password)
    .bind(u.status)
    .bind(u.login_type)
    .bind(u.rbac_roles)
    .bind(u.now)
    .fetch_one(conn)
    .await
}

/// Whether any human (non-system) user exists.
pub async fn any_human(conn: impl PgExecutor<'_>) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE NOT is_system AND NOT deleted)")
        .fetch_one(conn)
        .await
}

pub async fn by_id(conn: impl PgExecutor<'_>, id: Uuid) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE id = $1 AND NOT deleted"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn by_username(
    conn: impl PgExecutor<'_>,
    username: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE lower(username) = lower($1) AND NOT deleted"
    ))
    .bind(username)
    .fetch_optional(conn)
    .await
}

pub async fn by_email(
    conn: impl PgExecutor<'_>,
    email: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE lower(email) = lower($1) AND NOT deleted"
    ))
    .bind(email)
    .fetch_optional(conn)
    .await
}

pub async fn set_status(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    status: &str,
    now: DateTime<Utc>,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE users SET status = $2, updated_at = $3 WHERE id = $1 AND NOT is_system RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(status)
    .bind(now)
    .fetch_optional(conn)
    .await
}

pub async fn set_roles(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    roles: &[String],
    now: DateTime<Utc>,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE users SET rbac_roles = $2, updated_at = $3 WHERE id = $1 AND NOT is_system RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(roles)
    .bind(now)
    .fetch_optional(conn)
    .await
}

pub async fn touch_last_seen(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET last_seen_at = $2 WHERE id = $1 AND NOT is_system")
        .bind(id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Organization ids per user, for the `organization_ids` field.
pub async fn organization_ids(
    conn: impl PgExecutor<'_>,
    user_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Uuid>>, sqlx::Error> {
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT m.user_id, m.organization_id FROM organization_members m
         JOIN organizations o ON o.id = m.organization_id
         WHERE m.user_id = ANY($1) ORDER BY m.organization_id",
    )
    .bind(user_ids)
    .fetch_all(conn)
    .await?;
    let mut out: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (user, org) in rows {
        out.entry(user).or_default().push(org);
    }
    Ok(out)
}

/// Filters of `GET /users` (Coder's user search) plus what the caller may see.
#[derive(Debug, Default, Clone)]
pub struct UserFilter {
    pub search: String,
    pub statuses: Vec<String>,
    pub roles: Vec<String>,
    pub login_types: Vec<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub last_seen_after: Option<DateTime<Utc>>,
    pub last_seen_before: Option<DateTime<Utc>>,
    /// Whether the caller may read every user; otherwise only itself and members of `visible_orgs`.
    pub see_all: bool,
    pub caller: Uuid,
    pub visible_orgs: Vec<Uuid>,
}

const FILTER: &str = "NOT u.deleted
    AND (NOT u.is_system OR ($1 <> '' AND lower(u.username) = $1))
    AND ($1 = '' OR u.username ILIKE '%' || $2 || '%' ESCAPE '\\' OR u.email ILIKE '%' || $2 || '%' ESCAPE '\\')
    AND (cardinality($3::text[]) = 0 OR u.status = ANY($3))
    AND (cardinality($4::text[]) = 0 OR u.rbac_roles && $4 OR 'member' = ANY($4))
    AND (cardinality($5::text[]) = 0 OR u.login_type = ANY($5))
    AND ($6::timestamptz IS NULL OR u.created_at > $6)
    AND ($7::timestamptz IS NULL OR u.created_at < $7)
    AND ($8::timestamptz IS NULL OR u.last_seen_at > $8)
    AND ($9::timestamptz IS NULL OR u.last_seen_at < $9)
    AND ($10 OR u.id = $11 OR EXISTS (
        SELECT 1 FROM organization_members m WHERE m.user_id = u.id AND m.organization_id = ANY($12)))";

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// One page of users ordered by username, and the total count of matches.
pub async fn list(
    conn: &mut PgConnection,
    f: &UserFilter,
    limit: Option<i64>,
    offset: i64,
    after_username: Option<String>,
) -> Result<(Vec<UserRow>, i64), sqlx::Error> {
    let search = f.search.to_lowercase();
    macro_rules! bind_filter {
        ($q:expr) => {
            $q.bind(&search)
                .bind(escape_like(&search))
                .bind(&f.statuses)
                .bind(&f.roles)
                .bind(&f.login_types)
                .bind(f.created_after)
                .bind(f.created_before)
                .bind(f.last_seen_after)
                .bind(f.last_seen_before)
                .bind(f.see_all)
                .bind(f.caller)
                .bind(&f.visible_orgs)
        };
    }
    let count_sql = format!("SELECT count(*) FROM users u WHERE {FILTER}");
    let count: i64 = bind_filter!(sqlx::query_scalar(&count_sql))
        .fetch_one(&mut *conn)
        .await?;
    let page_sql = format!(
        "SELECT {} FROM users u WHERE {FILTER}
           AND ($13::text IS NULL OR lower(u.username) > lower($13))
         ORDER BY lower(u.username) LIMIT $14 OFFSET $15",
        COLUMNS
            .split(',')
            .map(|c| format!("u.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rows = bind_filter!(sqlx::query_as(&page_sql))
        .bind(after_username)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
    Ok((rows, count))
}
