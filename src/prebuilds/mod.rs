//! Prebuilt workspaces: schedules (pure), and later the reconciliation plan, loop and claim.

pub mod plan;
pub mod schedule;
