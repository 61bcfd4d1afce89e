use clap::Parser;

use coder::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
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
    };
    if let Err(err) = result {
        // One line, as an operator reads it; details were logged where they happened.
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
