//! `mpk-guest-check`: a diagnostic hand-over target for the QEMU tests.
//! Reads every file under `/models` (sorted), prints its SHA-256 or the
//! read error, then how many files are left in `/run/mpk/keys`, and powers
//! off when it runs as PID 1.
//!
//! Run as `mpk.keyagent=` (the init sets `MPK_KEY_DIR`), it is a stand-in
//! key agent instead: for each partition UUID argument it copies the key
//! staged at `/etc/mpk-check/keys/<uuid>` to `$MPK_KEY_DIR/<uuid>` and
//! exits 0, or exits 3 when one is not staged. It never prints key bytes.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(e) => {
            println!("mpk-check: fail {}: {e}", dir.display());
            return;
        }
    };
    entries.sort();
    for p in entries {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => walk(&p, out),
            Ok(m) if m.is_file() => out.push(p),
            Ok(_) => println!("mpk-check: skip {}", p.display()),
            Err(e) => println!("mpk-check: fail {}: {e}", p.display()),
        }
    }
}

fn hash(p: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// Where the stand-in agent finds the keys it delivers.
const STAGED: &str = "/etc/mpk-check/keys";

fn agent(dir: &str) -> ! {
    for u in std::env::args().skip(1) {
        let from = Path::new(STAGED).join(&u);
        let to = Path::new(dir).join(&u);
        match std::fs::copy(&from, &to) {
            Ok(_) => println!("mpk-agent: delivered {u} to {dir}"),
            Err(e) => {
                println!("mpk-agent: no key staged at {}: {e}", from.display());
                std::process::exit(3);
            }
        }
    }
    std::process::exit(0)
}

fn main() {
    if let Some(dir) = std::env::var_os("MPK_KEY_DIR") {
        agent(&dir.to_string_lossy());
    }
    let root = Path::new("/models");
    let mut files = Vec::new();
    walk(root, &mut files);
    let mut failed = 0;
    for p in &files {
        let rel = p.strip_prefix(root).unwrap_or(p).display();
        match hash(p) {
            Ok(h) => println!("mpk-check: ok {h} {rel}"),
            Err(e) => {
                failed += 1;
                println!("mpk-check: fail {rel}: {e}");
            }
        }
    }
    println!("mpk-check: done {} files, {failed} failed", files.len());
    if let Ok(rd) = std::fs::read_dir("/run/mpk/keys") {
        println!("mpk-check: /run/mpk/keys holds {} files", rd.count());
    }
    if std::process::id() == 1 {
        let e = mpk_guest::sys::power_off();
        eprintln!("mpk-check: power-off failed: {e}");
    }
}
