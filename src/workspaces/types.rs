//! Coder's JSON types for workspaces, builds, resources and agents, and the status derivations.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::provisioner::ProvisionerJob;

/// Build status from the job status and the transition, as Coder derives it.
pub fn build_status(job_status: &str, transition: &str) -> &'static str {
    match (job_status, transition) {
        ("pending", _) => "pending",
        ("running", "start") => "starting",
        ("running", "stop") => "stopping",
        ("running", _) => "deleting",
        ("succeeded", "start") => "running",
        ("succeeded", "stop") => "stopped",
        ("succeeded", _) => "deleted",
        ("canceling", _) => "canceling",
        ("canceled", _) => "canceled",
        _ => "failed",
    }
}

pub const WORKSPACE_STATUSES: &[&str] = &[
    "pending",
    "starting",
    "running",
    "stopping",
    "stopped",
    "failed",
    "canceling",
    "canceled",
    "deleting",
    "deleted",
];

/// Agent connection status from its timestamps (Coder's `WorkspaceAgentStatus`).
pub fn agent_status(
    now: DateTime<Utc>,
    created_at: DateTime<Utc>,
    first_connected_at: Option<DateTime<Utc>>,
    last_connected_at: Option<DateTime<Utc>>,
    disconnected_at: Option<DateTime<Utc>>,
    connection_timeout_seconds: i32,
    inactive_timeout: chrono::Duration,
) -> &'static str {
    match (first_connected_at, last_connected_at) {
        (None, _) | (_, None) => {
            let timeout = chrono::Duration::seconds(connection_timeout_seconds.max(0) as i64);
            if connection_timeout_seconds > 0 && now - created_at > timeout {
                "timeout"
            } else {
                "connecting"
            }
        }
        (Some(_), Some(last)) => {
            let disconnected_after = disconnected_at.is_some_and(|d| d > last);
            if disconnected_after || now - last > inactive_timeout {
                "disconnected"
            } else {
                "connected"
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WorkspaceHealth {
    pub healthy: bool,
    pub failing_agents: Vec<Uuid>,
}

/// Coder's `codersdk.Workspace`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Workspace {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub owner_id: Uuid,
    pub owner_name: String,
    pub owner_avatar_url: String,
    pub organization_id: Uuid,
    pub organization_name: String,
    pub template_id: Uuid,
    pub template_name: String,
    pub template_display_name: String,
    pub template_icon: String,
    pub template_allow_user_cancel_workspace_jobs: bool,
    pub template_active_version_id: Uuid,
    pub template_require_active_version: bool,
    pub latest_build: WorkspaceBuild,
    pub latest_app_status: Option<serde_json::Value>,
    pub outdated: bool,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostart_schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<i64>,
    pub last_used_at: DateTime<Utc>,
    pub deleting_at: Option<DateTime<Utc>>,
    pub dormant_at: Option<DateTime<Utc>>,
    pub health: WorkspaceHealth,
    pub automatic_updates: String,
    pub allow_renames: bool,
    pub favorite: bool,
    pub next_start_at: Option<DateTime<Utc>>,
    /// Newer Coder: whether the workspace is an unclaimed prebuild (owned by the prebuilds user).
    pub is_prebuild: bool,
}

/// Coder's `codersdk.WorkspaceBuild`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct WorkspaceBuild {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub workspace_id: Uuid,
    pub workspace_name: String,
    pub workspace_owner_id: Uuid,
    pub workspace_owner_name: String,
    pub workspace_owner_avatar_url: String,
    pub template_version_id: Uuid,
    pub template_version_name: String,
    pub build_number: i32,
    pub transition: String,
    pub initiator_id: Uuid,
    pub initiator_name: String,
    pub job: ProvisionerJob,
    pub reason: String,
    pub resources: Vec<WorkspaceResource>,
    pub deadline: Option<DateTime<Utc>>,
    pub max_deadline: Option<DateTime<Utc>>,
    pub status: String,
    pub daily_cost: i32,
    pub template_version_preset_id: Option<Uuid>,
}

/// Coder's `codersdk.WorkspaceResource`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct WorkspaceResource {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub job_id: Uuid,
    pub workspace_transition: String,
    pub r#type: String,
    pub name: String,
    pub hide: bool,
    pub icon: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<WorkspaceAgent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<ResourceMetadata>,
    pub daily_cost: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ResourceMetadata {
    pub key: String,
    pub value: String,
    pub sensitive: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AgentHealth {
    pub healthy: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// Coder's `codersdk.WorkspaceAgent` (the fields this server tracks).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct WorkspaceAgent {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_connected_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_connected_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnected_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<DateTime<Utc>>,
    pub status: String,
    pub lifecycle_state: String,
    pub name: String,
    pub resource_id: Uuid,
    pub architecture: String,
    pub environment_variables: BTreeMap<String, String>,
    pub operating_system: String,
    pub logs_length: i32,
    pub logs_overflowed: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub directory: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expanded_directory: String,
    pub version: String,
    pub api_version: String,
    pub apps: Vec<WorkspaceApp>,
    pub connection_timeout_seconds: i32,
    pub troubleshooting_url: String,
    pub subsystems: Vec<String>,
    pub health: AgentHealth,
    pub display_apps: Vec<String>,
    pub log_sources: Vec<serde_json::Value>,
    pub scripts: Vec<serde_json::Value>,
    pub startup_script_behavior: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AppHealthcheck {
    pub url: String,
    pub interval: i32,
    pub threshold: i32,
}

/// Coder's `codersdk.WorkspaceApp`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WorkspaceApp {
    pub id: Uuid,
    pub url: String,
    pub external: bool,
    pub slug: String,
    pub display_name: String,
    pub command: String,
    pub icon: String,
    pub subdomain: bool,
    pub subdomain_name: String,
    pub sharing_level: String,
    pub healthcheck: AppHealthcheck,
    pub health: String,
    pub hidden: bool,
    pub open_in: String,
    pub statuses: Vec<serde_json::Value>,
}

/// `GET /workspaces` envelope.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkspacesResponse {
    pub workspaces: Vec<Workspace>,
    pub count: i64,
}

/// Coder's `codersdk.WorkspaceBuildParameter`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WorkspaceBuildParameter {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_status_table() {
        assert_eq!(build_status("pending", "start"), "pending");
        assert_eq!(build_status("running", "start"), "starting");
        assert_eq!(build_status("running", "stop"), "stopping");
        assert_eq!(build_status("running", "delete"), "deleting");
        assert_eq!(build_status("succeeded", "start"), "running");
        assert_eq!(build_status("succeeded", "stop"), "stopped");
        assert_eq!(build_status("succeeded", "delete"), "deleted");
        assert_eq!(build_status("canceling", "start"), "canceling");
        assert_eq!(build_status("canceled", "stop"), "canceled");
        assert_eq!(build_status("failed", "start"), "failed");
    }

    #[test]
    fn agent_status_rules() {
        let t0 = Utc::now();
        let inactive = chrono::Duration::seconds(30);
        assert_eq!(
            agent_status(t0, t0, None, None, None, 120, inactive),
            "connecting"
        );
        let later = t0 + chrono::Duration::seconds(200);
        assert_eq!(
            agent_status(later, t0, None, None, None, 120, inactive),
            "timeout"
        );
        assert_eq!(
            agent_status(t0, t0, Some(t0), Some(t0), None, 120, inactive),
            "connected"
        );
        assert_eq!(
            agent_status(later, t0, Some(t0), Some(t0), None, 120, inactive),
            "disconnected"
        );
        let d = t0 + chrono::Duration::seconds(1);
        assert_eq!(
            agent_status(d, t0, Some(t0), Some(t0), Some(d), 120, inactive),
            "disconnected"
        );
    }
}
