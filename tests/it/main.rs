//! Integration tests: one binary, modules per domain. See `harness` for how the database and the server
//! are set up.

mod harness;

mod agents;
mod claims;
mod cli;
mod cli_docs;
mod dashboard;
mod deploy;
mod errors;
mod files;
mod fuzz_bodies;
mod fuzz_schemathesis;
mod metrics;
mod openapi;
mod orgs;
mod prebuilds;
mod reliability;
mod scaletest;
mod server_process;
mod templates;
mod users;
mod watch;
mod workspaces;
