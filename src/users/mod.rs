//! Users, their API keys and the first-user bootstrap.

pub mod api;
pub mod keys;
pub mod password;
pub mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::rbac;

/// Coder's fixed id of the system user that owns prebuilt workspaces.
pub const PREBUILDS_USER_ID: Uuid = Uuid::from_u128(0xc42fdf75_3097_471c_8c33_fb52454d81c0);

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub username: String,
    pub name: String,
    pub hashed_password: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub status: String,
    pub rbac_roles: Vec<String>,
    pub login_type: String,
    pub avatar_url: String,
    pub theme_preference: String,
    pub deleted: bool,
    pub is_system: bool,
}

/// Coder's `codersdk.SlimRole`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SlimRole {
    pub name: String,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub organization_id: String,
}

impl SlimRole {
    pub fn site(name: &str) -> Self {
        Self {
            name: name.to_string(),
            display_name: rbac::role_display_name(name).to_string(),
            organization_id: String::new(),
        }
    }

    pub fn org(name: &str, org: Uuid) -> Self {
        Self {
            name: name.to_string(),
            display_name: rbac::role_display_name(name).to_string(),
            organization_id: org.to_string(),
        }
    }
}

/// Coder's `codersdk.User`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub avatar_url: String,
    pub name: String,
    pub email: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub status: String,
    pub login_type: String,
    pub theme_preference: String,
    pub organization_ids: Vec<Uuid>,
    pub roles: Vec<SlimRole>,
}

impl User {
    pub fn from_row(row: UserRow, organization_ids: Vec<Uuid>) -> Self {
        Self {
            id: row.id,
            username: row.username,
            avatar_url: row.avatar_url,
            name: row.name,
            email: row.email,
            created_at: row.created_at,
            updated_at: row.updated_at,
            last_seen_at: row.last_seen_at,
            status: row.status,
            login_type: row.login_type,
            theme_preference: row.theme_preference,
            organization_ids,
            roles: row.rbac_roles.iter().map(|r| SlimRole::site(r)).collect(),
        }
    }
}

/// Coder's `codersdk.MinimalUser`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct MinimalUser {
    pub id: Uuid,
    pub username: String,
    pub avatar_url: String,
    pub name: String,
}
