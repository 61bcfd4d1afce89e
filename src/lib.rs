//! `coder`: a Rust re-implementation of Coder's control plane, centred on prebuilt workspaces.
//!
//! See `docs/ARCHITECTURE.md` for where each concern lives.

pub mod agents;
pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod duration;
pub mod files;
pub mod logging;
pub mod metrics;
pub mod notifications;
pub mod openapi;
pub mod orgs;
pub mod prebuilds;
pub mod provisioner;
pub mod pubsub;
pub mod rbac;
pub mod server;
pub mod templates;
pub mod users;
pub mod workspaces;
