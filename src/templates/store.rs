//! Templates: rows, Coder's `Template` JSON, and their SQL.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TemplateRow {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub organization_id: Uuid,
    pub deleted: bool,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub icon: String,
    pub provisioner: String,
    pub active_version_id: Uuid,
    pub created_by: Uuid,
    pub default_ttl_ms: i64,
    pub activity_bump_ms: i64,
    pub autostop_requirement_days_of_week: i16,
    pub autostop_requirement_weeks: i64,
    pub autostart_block_days_of_week: i16,
    pub allow_user_autostart: bool,
    pub allow_user_autostop: bool,
    pub allow_user_cancel_workspace_jobs: bool,
    pub failure_ttl_ms: i64,
    pub time_til_dormant_ms: i64,
    pub time_til_dormant_autodelete_ms: i64,
    pub require_active_version: bool,
    pub deprecated: String,
    pub max_port_sharing_level: String,
    pub organization_name: String,
    pub organization_display_name: String,
    pub organization_icon: String,
    pub created_by_name: String,
}

const SELECT: &str = "SELECT t.id, t.created_at, t.updated_at, t.organization_id, t.deleted, t.name, t.display_name,
        t.description, t.icon, t.provisioner, t.active_version_id, t.created_by, t.default_ttl_ms,
        t.activity_bump_ms, t.autostop_requirement_days_of_week, t.autostop_requirement_weeks,
        t.autostart_block_days_of_week, t.allow_user_autostart, t.allow_user_autostop,
        t.allow_user_cancel_workspace_jobs, t.failure_ttl_ms, t.time_til_dormant_ms,
        t.time_til_dormant_autodelete_ms, t.require_active_version, t.deprecated, t.max_port_sharing_level,
        o.name AS organization_name, o.display_name AS organization_display_name, o.icon AS organization_icon,
        u.username AS created_by_name
    FROM templates t JOIN organizations o ON o.id = t.organization_id JOIN users u ON u.id = t.created_by";

pub async fn get(conn: impl PgExecutor<'_>, id: Uuid) -> Result<Option<TemplateRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE t.id = $1 AND NOT t.deleted"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn by_name(
    conn: impl PgExecutor<'_>,
    org: Uuid,
    name: &str,
) -> Result<Option<TemplateRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE t.organization_id = $1 AND lower(t.name) = lower($2) AND NOT t.deleted"
    ))
    .bind(org)
    .bind(name)
    .fetch_optional(conn)
    .await
}

/// Templates of the given organizations (all when `orgs` is None), by name.
pub async fn list(
    conn: impl PgExecutor<'_>,
    orgs: Option<&[Uuid]>,
) -> Result<Vec<TemplateRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE NOT t.deleted AND ($1::uuid[] IS NULL OR t.organization_id = ANY($1))
         ORDER BY lower(t.name), t.id"
    ))
    .bind(orgs)
    .fetch_all(conn)
    .await
}

/// All templates, live or (with `deleted`) soft-deleted, by name.
pub async fn list_filtered(
    conn: impl PgExecutor<'_>,
    deleted: bool,
) -> Result<Vec<TemplateRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE t.deleted = $1 ORDER BY lower(t.name), t.id"
    ))
    .bind(deleted)
    .fetch_all(conn)
    .await
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct BuildTimeStat {
    pub p50: Option<i64>,
    pub p95: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AutostopRequirement {
    pub days_of_week: Vec<String>,
    pub weeks: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AutostartRequirement {
    pub days_of_week: Vec<String>,
}

/// Coder's `codersdk.Template`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Template {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub organization_id: Uuid,
    pub organization_name: String,
    pub organization_display_name: String,
    pub organization_icon: String,
    pub name: String,
    pub display_name: String,
    pub provisioner: String,
    pub active_version_id: Uuid,
    pub active_user_count: i64,
    pub build_time_stats: BTreeMap<String, BuildTimeStat>,
    pub description: String,
    pub deprecated: bool,
    pub deprecation_message: String,
    pub icon: String,
    pub default_ttl_ms: i64,
    pub activity_bump_ms: i64,
    pub autostop_requirement: AutostopRequirement,
    pub autostart_requirement: AutostartRequirement,
    pub created_by_id: Uuid,
    pub created_by_name: String,
    pub allow_user_autostart: bool,
    pub allow_user_autostop: bool,
    pub allow_user_cancel_workspace_jobs: bool,
    pub failure_ttl_ms: i64,
    pub time_til_dormant_ms: i64,
    pub time_til_dormant_autodelete_ms: i64,
    pub require_active_version: bool,
    pub max_port_share_level: String,
}

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Weekday bitmap (bit 0 = Monday) to Coder's lowercase day names.
pub fn days_from_bitmap(bits: i16) -> Vec<String> {
    WEEKDAYS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, d)| d.to_string())
        .collect()
}

impl From<TemplateRow> for Template {
    fn from(t: TemplateRow) -> Self {
        let empty = || BuildTimeStat {
            p50: None,
            p95: None,
        };
        Template {
            id: t.id,
            created_at: t.created_at,
            updated_at: t.updated_at,
            organization_id: t.organization_id,
            organization_name: t.organization_name,
            organization_display_name: t.organization_display_name,
            organization_icon: t.organization_icon,
            name: t.name,
            display_name: t.display_name,
            provisioner: t.provisioner,
            active_version_id: t.active_version_id,
            active_user_count: 0,
            build_time_stats: BTreeMap::from([
                ("start".to_string(), empty()),
                ("stop".to_string(), empty()),
                ("delete".to_string(), empty()),
            ]),
            description: t.description,
            deprecated: !t.deprecated.is_empty(),
            deprecation_message: t.deprecated,
            icon: t.icon,
            default_ttl_ms: t.default_ttl_ms,
            activity_bump_ms: t.activity_bump_ms,
            autostop_requirement: AutostopRequirement {
                days_of_week: days_from_bitmap(t.autostop_requirement_days_of_week),
                weeks: t.autostop_requirement_weeks,
            },
            // Stored as the days autostart is blocked; Coder reports the allowed days.
            autostart_requirement: AutostartRequirement {
                days_of_week: days_from_bitmap(!t.autostart_block_days_of_week & 0x7f),
            },
            created_by_id: t.created_by,
            created_by_name: t.created_by_name,
            allow_user_autostart: t.allow_user_autostart,
            allow_user_autostop: t.allow_user_autostop,
            allow_user_cancel_workspace_jobs: t.allow_user_cancel_workspace_jobs,
            failure_ttl_ms: t.failure_ttl_ms,
            time_til_dormant_ms: t.time_til_dormant_ms,
            time_til_dormant_autodelete_ms: t.time_til_dormant_autodelete_ms,
            require_active_version: t.require_active_version,
            max_port_share_level: t.max_port_sharing_level,
        }
    }
}
