//! Shared helpers for the `mpk` integration tests: the binary under test
//! (only this crate's tests can name it) and, from `mpk-testutil`, the
//! reference tools with the `MPK_REQUIRE_TOOLS` fail-not-skip rule.
#![allow(dead_code)]

pub mod tree;

use std::process::Command;

/// The `mpk` binary under test.
pub fn mpk() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mpk"))
}

// Each test binary uses its own subset.
#[allow(unused_imports)]
pub use mpk_testutil::{missing, python_with, run_batch, tool, tools_required};
