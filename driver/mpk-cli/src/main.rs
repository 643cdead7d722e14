//! `mpk`: entry point; all logic lives in the library half of this crate.
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = mpk_cli::Cli::parse();
    if let Err(e) = mpk_cli::output::install_interrupt_cleanup() {
        eprintln!("error: {e:#}");
        return ExitCode::from(1);
    }
    match mpk_cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
