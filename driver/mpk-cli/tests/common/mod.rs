//! Shared helpers for the `mpk` integration tests: the binary under test
//! (only this crate's tests can name it), test proxies ([`proxy`]) and,
//! from `mpk-testutil`, the reference tools with the `MPK_REQUIRE_TOOLS`
//! fail-not-skip rule.
#![allow(dead_code)]

pub mod proxy;
pub mod tree;

use std::process::Command;

/// The `mpk` binary under test.
pub fn mpk() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mpk"))
}

/// The proxy variables mpk reads ([`mpk_hub::client::ProxyConfig`]).
pub const PROXY_VARS: [&str; 8] = [
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Removes the proxy variables from `c`'s environment, so a test against
/// the mock Hub on 127.0.0.1 does not go through the proxy of whoever
/// runs it.
pub fn without_proxies(c: &mut Command) -> &mut Command {
    for k in PROXY_VARS {
        c.env_remove(k);
    }
    c
}

// Each test binary uses its own subset.
#[allow(unused_imports)]
pub use mpk_testutil::{missing, python_with, run_batch, tool, tools_required};
