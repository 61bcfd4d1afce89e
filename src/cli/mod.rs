//! Command-line entry: `coder server`, and later `coder agent` and client commands.

pub mod agent;
pub mod server;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "coder", version = crate::app::VERSION, about = "Coder control plane (Rust)", max_term_width = 110)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a Coder server.
    Server(Box<server::ServerArgs>),
    /// Start a workspace agent (run by the local runtime inside a workspace).
    Agent(agent::AgentArgs),
}
