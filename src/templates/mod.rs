//! Templates: parsing and validation of Terraform sources (pure), and later files, versions and the API.

pub mod hcl;
