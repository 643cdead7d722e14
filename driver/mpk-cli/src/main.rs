//! `mpk`: entry point; all logic lives in the library half of this crate.
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    match mpk_cli::run(mpk_cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
