use clap::Parser;

use coder::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => {
            let _guard = coder::logging::init(&args);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(coder::server::run(args)))
        }
    };
    if let Err(err) = result {
        // One line, as an operator reads it; details were logged where they happened.
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
