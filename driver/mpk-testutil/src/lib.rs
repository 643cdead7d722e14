//! Test support shared by mpk's crates (a dev-dependency only, never
//! published), so no test includes another crate's files by path:
//!
//! - the fail-not-skip rule for reference tools ([`tools_required`],
//!   [`missing`], [`tool`], [`python_with`]) and batch runs of reference
//!   scripts ([`run_batch`]);
//! - [`firmware`], [`tdx`]: synthetic OVMF/TDVF images and bzImages;
//! - [`debian`]: real Debian files fetched once into a cache;
//! - [`selfmade`]: a self-made AMD-style certificate hierarchy and signed
//!   SEV-SNP reports;
//! - [`static_build`]: the static, reproducible guest build.

pub mod debian;
pub mod firmware;
pub mod selfmade;
pub mod static_build;
pub mod tdx;

use std::path::PathBuf;
use std::process::Command;

/// Says why something a test needs is missing and returns `None` (the
/// caller skips), or fails the test when `MPK_REQUIRE_TOOLS=1`, so CI can
/// never count a skipped comparison as a pass.
pub fn missing<T>(why: String) -> Option<T> {
    assert!(!tools_required(), "{why} (MPK_REQUIRE_TOOLS=1)");
    eprintln!("SKIP: {why}");
    None
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
    found.or_else(|| missing(format!("reference tool `{name}` is missing")))
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
    missing(format!("no python3 can import `{module}`"))
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

/// A complete version-1 deployment document (as `mpk measure deployment`
/// writes it) expecting these measurements (hex); the other fields hold
/// placeholders.
pub fn deployment_json(
    snp: &str,
    mrtd: Option<&str>,
    rtmr1: &str,
    rtmr2: &str,
) -> serde_json::Value {
    let mut tdx = serde_json::json!({ "rtmr1": rtmr1, "rtmr2": rtmr2 });
    if let Some(m) = mrtd {
        tdx["mrtd"] = m.into();
    }
    serde_json::json!({
        "version": 1,
        "identity": "test/model@0000000000000000000000000000000000000000",
        "reference": "test",
        "base_image": "test",
        "cmdline": "console=ttyS0",
        "snp_measurement": snp,
        "tdx_measurement": tdx,
        "vm_shape": {
            "cpus": 1, "memory_mb": 2048, "gpus": 0, "disks": 1,
            "vcpu_type": "EPYC-v4", "guest_features": 1, "vmm_type": "QEMU"
        },
        "inputs_sha256": {
            "image_json": "0", "snp_ovmf": "0", "kernel": "0", "initrd": "0"
        },
        "mpk_version": "test"
    })
}

/// `n` deterministic pseudo-random bytes for fixtures (xorshift64 from
/// `seed`; the same `seed` always gives the same bytes). The Hub tests'
/// models are made of these.
pub fn xorshift_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `n` deterministic pseudo-random bytes for fixtures (a 64-bit LCG; the
/// same `seed` always gives the same bytes).
pub fn lcg_bytes(seed: u64, n: usize) -> Vec<u8> {
    let step = |x: u64| {
        x.wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
    };
    let mut x = step(seed);
    (0..n)
        .map(|_| {
            x = step(x);
            (x >> 33) as u8
        })
        .collect()
}

/// Finds a reference tool named by the environment variable `var` (a path,
/// e.g. `MPK_MKFS_EROFS_186` as `.ci/run` exports it) and checks that
/// `TOOL --version` prints `version`. Same rule as [`tool`]: `None` (the
/// caller skips) when unset, missing or another version; a panic when
/// `MPK_REQUIRE_TOOLS=1`.
pub fn tool_from_env(var: &str, version: &str) -> Option<PathBuf> {
    let Some(path) = std::env::var_os(var).map(PathBuf::from) else {
        return missing(format!(
            "`{var}` is not set (the path of a reference tool {version})"
        ));
    };
    let out = Command::new(&path).arg("--version").output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains(version) => Some(path),
        Ok(o) => missing(format!(
            "`{var}`={} is not version {version}: {}",
            path.display(),
            String::from_utf8_lossy(&o.stdout).trim()
        )),
        Err(e) => missing(format!("`{var}`={} cannot run: {e}", path.display())),
    }
}
