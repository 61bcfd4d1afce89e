//! Provisioner jobs: the queue in `provisioner_jobs` (acquire with `FOR UPDATE SKIP LOCKED`, woken by
//! NOTIFY with a poll fallback, heartbeats, completion) and the built-in daemons that run them.

pub mod build;
pub mod daemon;
pub mod janitor;
pub mod jobs;
pub mod local;
pub mod logs;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const TYPE_TEMPLATE_VERSION_IMPORT: &str = "template_version_import";
pub const TYPE_WORKSPACE_BUILD: &str = "workspace_build";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub canceled_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub organization_id: Uuid,
    pub initiator_id: Uuid,
    pub provisioner: String,
    pub r#type: String,
    pub input: sqlx::types::Json<serde_json::Value>,
    pub worker_id: Option<Uuid>,
    pub file_id: Uuid,
    pub tags: sqlx::types::Json<BTreeMap<String, String>>,
    pub logs_overflowed: bool,
    pub job_status: String,
}

/// Coder's `ProvisionerJobInput`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct JobInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_build_id: Option<Uuid>,
}

/// Coder's `codersdk.ProvisionerJob`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ProvisionerJob {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canceled_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error_code: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<Uuid>,
    pub file_id: Uuid,
    pub tags: BTreeMap<String, String>,
    pub queue_position: i64,
    pub queue_size: i64,
    pub organization_id: Uuid,
    pub initiator_id: Uuid,
    pub input: JobInput,
    pub r#type: String,
    pub logs_overflowed: bool,
}

impl ProvisionerJob {
    pub fn from_row(row: &JobRow, queue_position: i64, queue_size: i64) -> Self {
        Self {
            id: row.id,
            created_at: row.created_at,
            started_at: row.started_at,
            completed_at: row.completed_at,
            canceled_at: row.canceled_at,
            error: row.error.clone().unwrap_or_default(),
            error_code: row.error_code.clone().unwrap_or_default(),
            status: row.job_status.clone(),
            worker_id: row.worker_id,
            file_id: row.file_id,
            tags: row.tags.0.clone(),
            queue_position,
            queue_size,
            organization_id: row.organization_id,
            initiator_id: row.initiator_id,
            input: serde_json::from_value(row.input.0.clone()).unwrap_or_default(),
            r#type: row.r#type.clone(),
            logs_overflowed: row.logs_overflowed,
        }
    }
}

/// Coder's `codersdk.ProvisionerJobLog`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, sqlx::FromRow, utoipa::ToSchema)]
pub struct ProvisionerJobLog {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub log_source: String,
    pub log_level: String,
    pub stage: String,
    pub output: String,
}

/// Default job tags, as Coder sets them.
pub fn default_tags() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("scope".to_string(), "organization".to_string()),
        ("owner".to_string(), String::new()),
    ])
}
