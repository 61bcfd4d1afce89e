//! SQL for files. Plain functions over an executor so callers can compose them in a transaction.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// A stored file, bytes included.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FileRow {
    pub id: Uuid,
    /// SHA-256 of `data`, lowercase hex.
    pub hash: String,
    pub created_at: DateTime<Utc>,
    pub created_by: Uuid,
    pub mimetype: String,
    pub data: Vec<u8>,
}

pub struct NewFile<'a> {
    pub id: Uuid,
    pub hash: &'a str,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub mimetype: &'a str,
    pub data: &'a [u8],
}

pub async fn get_file(conn: impl PgExecutor<'_>, id: Uuid) -> Result<Option<FileRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, hash, created_at, created_by, mimetype, data FROM files WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The id of the file `created_by` uploaded with this content hash, if any.
pub async fn id_by_hash(
    conn: impl PgExecutor<'_>,
    hash: &str,
    created_by: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM files WHERE hash = $1 AND created_by = $2")
        .bind(hash)
        .bind(created_by)
        .fetch_optional(conn)
        .await
}

/// Inserts the file unless its creator already has one with the same hash; `None` on that conflict.
pub async fn insert_file(
    conn: impl PgExecutor<'_>,
    f: &NewFile<'_>,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO files (id, hash, created_at, created_by, mimetype, data)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (hash, created_by) DO NOTHING
         RETURNING id",
    )
    .bind(f.id)
    .bind(f.hash)
    .bind(f.created_at)
    .bind(f.created_by)
    .bind(f.mimetype)
    .bind(f.data)
    .fetch_optional(conn)
    .await
}
