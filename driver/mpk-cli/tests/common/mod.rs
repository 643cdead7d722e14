//! Shared helpers for the `mpk` integration tests: locating the binary and
//! the reference tools (with the `MPK_REQUIRE_TOOLS` fail-not-skip rule).
#![allow(dead_code)]

pub mod tree;

use std::path::PathBuf;
use std::process::Command;

/// The `mpk` binary under test.
pub fn mpk() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mpk"))
}

/// True when CI demands every reference tool (`MPK_REQUIRE_TOOLS=1`).
pub fn tools_required() -> bool {
    std::env::var("MPK_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// Finds a reference tool on PATH (or in /sbin, /usr/sbin). Returns `None`
/// (the caller then skips, printing why) when it is missing, but panics when
/// `MPK_REQUIRE_TOOLS=1`, so CI can never count a skipped comparison as a
/// pass.
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin"])
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            !tools_required(),
            "reference tool `{name}` is missing and MPK_REQUIRE_TOOLS=1"
        );
        eprintln!("SKIP: reference tool `{name}` not found");
    }
    found
}

/// Finds a Python 3 interpreter that can `import module` (`$MPK_PYTHON`,
/// then `python3` on PATH, then /usr/bin/python3). Same rule as [`tool`]:
/// `None` (the caller skips) when missing, a panic when
/// `MPK_REQUIRE_TOOLS=1`.
pub fn python_with(module: &str) -> Option<PathBuf> {
    let candidates = std::env::var("MPK_PYTHON")
        .ok()
        .into_iter()
        .chain(["python3".to_string(), "/usr/bin/python3".to_string()]);
    for py in candidates {
        let ok = Command::new(&py)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(PathBuf::from(py));
        }
    }
    assert!(
        !tools_required(),
        "no python3 can import `{module}` and MPK_REQUIRE_TOOLS=1"
    );
    eprintln!("SKIP: no python3 can import `{module}`");
    None
}

/// Runs a reference script that reads one JSON document on standard input
/// and prints one line per case; returns the lines (exactly `cases` of
/// them, or the test fails).
pub fn run_batch(cmd: &mut Command, input: &serde_json::Value, cases: usize) -> Vec<String> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(serde_json::to_string(input).unwrap().as_bytes())
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "reference script failed");
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), cases);
    lines
}
