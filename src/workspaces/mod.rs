//! Workspaces and their builds: the create use case, build parameters, search, status, and the API.

pub mod api;
pub mod builds;
mod create;
pub mod params;
pub mod quota;
pub mod search;
pub mod store;
pub mod types;
pub mod version_cache;
pub mod watch;
