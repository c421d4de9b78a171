//! `mc`: parses the command line and dispatches to the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = mc::cli::Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mc: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(mc::commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mc: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; plain text without colours or timestamps when not on a terminal (journald
/// adds its own). `RUST_LOG` overrides the default `info` level.
fn init_logging() {
    let tty = std::io::stderr().is_terminal();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(tty)
        .with_target(false);
    if tty {
        builder.init();
    } else {
        builder.without_time().init();
    }
}
