//! Command-line entry: `coder server`, `coder agent`, and the client commands `login`, `logout` and
//! `create`.

pub mod agent;
pub mod client;
pub mod create;
pub mod login;
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
    /// Authenticate with a Coder deployment and store the session.
    Login(login::LoginArgs),
    /// Unauthenticate your local session.
    Logout(login::LogoutArgs),
    /// Create a workspace from a template (optionally with a preset).
    Create(Box<create::CreateArgs>),
}
