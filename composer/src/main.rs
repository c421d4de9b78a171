//! `molten`: parses the command line and hands it to the library (`molten::cli`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = molten::cli::Cli::parse();
    match molten::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => ExitCode::from(failure.exit_code()),
    }
}
