//! `lazona`: the operators' command line.

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = app_cli::Cli::parse();
    match app_cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            // Whatever the error, a URL in it keeps its password to itself.
            eprintln!("error: {}", adapters::redact::redact(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
