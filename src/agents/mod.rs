//! Workspace agents: the agent-facing REST API and user-facing agent reads; `coder agent` is in
//! `src/cli/agent.rs`.

pub mod api;
