//! Stored notifications for users (e.g. a claim that replaced prebuild resources, for template
//! admins), listed through Coder's inbox endpoint.

pub mod api;
