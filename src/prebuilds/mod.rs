//! Prebuilt workspaces: schedules and the reconciliation plan (pure), the snapshot read, the
//! executor that turns actions into builds, the loop, and the HTTP endpoints.

pub mod api;
pub mod claim;
pub mod executor;
pub mod plan;
pub mod reconciler;
pub mod schedule;
pub mod snapshot;
