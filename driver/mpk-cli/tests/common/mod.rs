//! Shared helpers for the `mpk` integration tests: the binary under test
//! (only this crate's tests can name it), test proxies ([`proxy`]) and,
//! from `mpk-testutil`, the reference tools with the `MPK_REQUIRE_TOOLS`
//! fail-not-skip rule.
#![allow(dead_code)]

pub mod proxy;
pub mod tree;

use std::path::Path;
use std::process::{Command, Output};

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

/// Calls `f` on every file (and symlink) under `dir`, not following
/// symlinks to folders.
pub fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            walk(&p, f);
        } else {
            f(&p);
        }
    }
}

/// Asserts `mpk` succeeded; its standard output, trimmed.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "mpk failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .trim()
        .to_owned()
}

/// Asserts `mpk` failed without panicking and its error names each of
/// `needles`; the error.
pub fn fails(o: &Output, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "mpk succeeded; stderr: {err}");
    assert_ne!(o.status.code(), Some(101), "mpk panicked: {err}");
    for n in needles {
        assert!(err.contains(n), "error lacks `{n}`: {err}");
    }
    err
}
