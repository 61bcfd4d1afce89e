//! Organizations, memberships and groups.

pub mod api;
pub mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::users::SlimRole;

pub const DEFAULT_ORG_NAME: &str = "coder";
pub const EVERYONE_GROUP: &str = "Everyone";

/// Coder's `codersdk.Organization`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, sqlx::FromRow, utoipa::ToSchema)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub icon: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub is_default: bool,
}

/// Coder's `codersdk.OrganizationMemberWithUserData`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct OrganizationMemberWithUserData {
    pub username: String,
    pub name: String,
    pub avatar_url: String,
    pub email: String,
    pub global_roles: Vec<SlimRole>,
    pub user_id: Uuid,
    pub organization_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub roles: Vec<SlimRole>,
}
