//! Database access: pool, migrations, error classification, and the built-in PostgreSQL.
//!
//! Store functions live next to their domain (`users/store.rs`, …) and take `&mut PgConnection` or an
//! executor so use cases compose them inside one transaction.

pub mod embedded;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use std::str::FromStr;

pub type Tx<'a> = sqlx::Transaction<'a, Postgres>;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Begins a read-only transaction whose statements all see one snapshot: for reads that take several
/// statements and must not mix the states before and after another transaction's commit.
pub const BEGIN_READ_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// Opens a pool. Connection attempts are bounded so a database outage turns into 503s, not hangs.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?
        .application_name("coderd")
        // Every statement is prepared once per connection and run many times with different ids;
        // PostgreSQL would otherwise keep re-planning some of them on every execution (the
        // create path's checks: ~1 ms of planning for 0.1 ms of execution).
        .options([("plan_cache_mode", "force_generic_plan")]);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        // No ping before every checkout (a round trip per request); a connection that died is
        // discarded when its query fails, and that request answers 503 like any other outage.
        .test_before_acquire(false)
        .connect_with(options)
        .await
}

/// Applies pending migrations. sqlx holds a session-level advisory lock for the whole run, so replicas
/// starting together apply each migration exactly once and the others wait, then find nothing to do.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Errors that mean "the database is unreachable right now" rather than "this query is wrong".
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08 = connection exception; 57P01/2/3 = shutdown in progress / cannot connect now.
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// The name of the unique constraint (or index) a statement violated, if that is what failed.
pub fn unique_violation(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            Some(db.constraint().unwrap_or_default().to_string())
        }
        _ => None,
    }
}

/// Advisory lock ids, one per cross-replica critical section.
pub mod locks {
    /// Serialises creation of the first user (and with it the default organization).
    pub const FIRST_USER: i64 = 0x636f_6465_7201;
    /// Held for one prebuild reconciliation tick.
    pub const PREBUILDS_RECONCILE: i64 = 0x636f_6465_7202;
    /// Serialises generation of site-wide settings such as the deployment id.
    pub const SITE_CONFIG: i64 = 0x636f_6465_7203;
}

/// Reads a site setting.
pub async fn get_site_config(
    conn: impl sqlx::PgExecutor<'_>,
    key: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM site_configs WHERE key = $1")
        .bind(key)
        .fetch_optional(conn)
        .await
}

/// Inserts `value` unless the key exists, and returns the stored value (so concurrent callers agree).
pub async fn get_or_insert_site_config(
    pool: &PgPool,
    key: &str,
    value: &str,
) -> Result<String, sqlx::Error> {
    sqlx::query(
        "INSERT INTO site_configs (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .bind(value)
    .execute(pool)
    .await?;
    Ok(get_site_config(pool, key)
        .await?
        .unwrap_or_else(|| value.to_string()))
}
