//! `mpk`: entry point. Parses the command line, runs it, and maps the
//! result to the exit-code contract (README, "Exit codes"):
//!
//! - 0: success;
//! - 1: a negative finding: the bytes were read and are not what they must
//!   be (an [`mpk_pack::Finding`] in the error chain);
//! - 2: the check could not be made (bad arguments, missing, unreadable or
//!   refused input, network failure after retries);
//! - 130: interrupted (SIGINT, SIGTERM, SIGHUP); no output is left;
//! - 141: standard output was closed before everything was printed (as a
//!   tool killed by SIGPIPE); nothing is said on standard error.
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = mpk_cli::Cli::parse();
    if let Err(e) = ctrlc::set_handler(|| {
        mpk_pack::output::remove_pending();
        eprintln!("error: interrupted; no output was written");
        std::process::exit(130);
    }) {
        eprintln!("error: cannot install the interrupt handler: {e}");
        return ExitCode::from(2);
    }
    match mpk_cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(mpk_cli::report_error(&e)),
    }
}
