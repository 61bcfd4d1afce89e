//! Command-line entry: `coder server`, `coder agent`, the client commands `login`, `logout` and
//! `create`, and `version` / `completion`.

pub mod agent;
pub mod client;
pub mod completion;
pub mod create;
pub mod login;
pub mod scaletest;
pub mod server;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

// clap's own version flag prints `coder v0.1.0`; ours prints what `coder version` prints (Coder's text), so
// the subcommand is optional: `coder --version` alone is a complete command line.
#[derive(Debug, Parser)]
#[command(
    name = "coder",
    version = crate::app::VERSION,
    disable_version_flag = true,
    arg_required_else_help = true,
    about = "Coder control plane (Rust)",
    max_term_width = 110
)]
pub struct Cli {
    /// Print the version (same as `coder version`).
    #[arg(short = 'V', long, action = ArgAction::SetTrue)]
    pub version: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
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
    /// Run a load test: workspaces with fake agents, or prebuild pools and claims.
    Scaletest(Box<scaletest::ScaletestArgs>),
    /// Show coder version.
    Version(VersionArgs),
    /// Print the shell completion script (bash, zsh, fish, powershell).
    Completion(completion::CompletionArgs),
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value = "text")]
    pub output: VersionFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VersionFormat {
    Text,
    Json,
}

/// The commit this binary was built from, when the build set `CODER_BUILD_COMMIT`
/// (`CODER_BUILD_COMMIT=$(git rev-parse HEAD) cargo build --release`); no build script needed.
const BUILD_COMMIT: Option<&str> = option_env!("CODER_BUILD_COMMIT");

/// The version with the short commit as semver build metadata, like Coder's `v2.20.0+1a2b3c4`.
pub fn version_string() -> String {
    match BUILD_COMMIT.map(str::trim).filter(|c| !c.is_empty()) {
        Some(commit) => format!(
            "{}+{}",
            crate::app::VERSION,
            commit.chars().take(7).collect::<String>()
        ),
        None => crate::app::VERSION.to_string(),
    }
}

/// Where the source of this build lives: the commit page when both are known.
fn external_url() -> String {
    let repo = env!("CARGO_PKG_REPOSITORY").trim_end_matches('/');
    match BUILD_COMMIT.map(str::trim).filter(|c| !c.is_empty()) {
        Some(commit) if !repo.is_empty() => format!("{repo}/commit/{commit}"),
        _ => repo.to_string(),
    }
}

/// `coder version` (and `coder --version`) in Coder's text shape:
///
/// ```text
/// Coder v0.1.0
///
/// Full build of Coder, supports the server subcommand.
/// ```
pub fn version_text() -> String {
    let mut out = format!("Coder {}\n", version_string());
    let url = external_url();
    if !url.is_empty() {
        out.push_str(&url);
        out.push('\n');
    }
    out.push_str("\nFull build of Coder, supports the server subcommand.\n");
    out
}

/// `coder version --output json`: Coder's field names.
pub fn version_json() -> serde_json::Value {
    serde_json::json!({
        "version": version_string(),
        "build_time": "0001-01-01T00:00:00Z",
        "external_url": external_url(),
        "slim": false,
        "agpl": false,
        "boring_crypto": false,
    })
}

/// Prints the version in the requested format.
pub fn print_version(format: VersionFormat) {
    match format {
        VersionFormat::Text => print!("{}", version_text()),
        VersionFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&version_json()).unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_text_starts_like_coders() {
        let text = version_text();
        assert!(text.starts_with(&format!("Coder v{}", env!("CARGO_PKG_VERSION"))));
        assert!(text.ends_with("supports the server subcommand.\n"));
        assert_eq!(version_json()["version"], version_string());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
