//! Building the guest binaries (`mpk-init`, `mpk-guest-check`) statically
//! and reproducibly, shared by mpk-guest's QEMU tests and mpk-cli's Nix
//! flake tests, so both use the same flags and the same target folder and
//! each reuses the other's build.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Builds `mpk-init` and `mpk-guest-check` statically and reproducibly;
/// returns the folder holding them.
pub fn build_static(ws: &Path) -> Result<PathBuf, String> {
    let ws = ws.canonicalize().map_err(|e| e.to_string())?;
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        });
    let target = "x86_64-unknown-linux-gnu";
    let rustflags = format!(
        "-C target-feature=+crt-static --remap-path-prefix={}=/cargo --remap-path-prefix={}=/mpk",
        cargo_home.display(),
        ws.display()
    );
    let tdir = ws.join("target/static");
    let out = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--offline",
            "-p",
            "mpk-guest",
            "--bins",
            "--target",
            target,
        ])
        .arg("--target-dir")
        .arg(&tdir)
        .current_dir(&ws)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env("RUSTFLAGS", rustflags)
        .env("CARGO_INCREMENTAL", "0")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cargo build of the static guest binaries: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "static guest build: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(tdir.join(target).join("release"))
}
