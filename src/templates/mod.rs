//! Templates: parsing and validation of Terraform sources (pure `hcl`), versions and their import job,
//! templates, presets, and their HTTP API.

pub mod api;
pub mod hcl;
pub mod import;
pub mod store;
pub mod versions;
