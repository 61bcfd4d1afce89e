use clap::Parser;

use coder::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    if cli.version {
        coder::cli::print_version(coder::cli::VersionFormat::Text);
        return;
    }
    let Some(command) = cli.command else {
        // Unreachable in practice (`arg_required_else_help`), but never run a default command.
        let _ = <Cli as clap::CommandFactory>::command().print_help();
        std::process::exit(2);
    };
    let result = match command {
        Command::Server(args) => {
            let args = *args;
            let _guard = coder::logging::init(&args);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(coder::server::run(args)))
        }
        Command::Agent(args) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(coder::cli::agent::run(args))),
        Command::Login(args) => client_runtime(coder::cli::login::run(args)),
        Command::Logout(args) => client_runtime(coder::cli::login::logout(args)),
        Command::Create(args) => client_runtime(coder::cli::create::run(*args)),
        Command::Scaletest(args) => coder::cli::scaletest::run(*args),
        Command::Version(args) => {
            coder::cli::print_version(args.output);
            Ok(())
        }
        Command::Completion(args) => coder::cli::completion::run(args),
    };
    if let Err(err) = result {
        // One line, as an operator reads it; details were logged where they happened.
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

/// Client commands make a handful of sequential requests: one thread is plenty.
fn client_runtime(
    fut: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(fut))
}
