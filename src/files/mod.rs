//! Uploaded template sources (tar archives), keyed by SHA-256 per creator.

pub mod api;
