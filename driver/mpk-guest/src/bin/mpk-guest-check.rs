//! `mpk-guest-check`: a diagnostic hand-over target for the QEMU tests.
//! Reads every file under `/models` (sorted), prints its SHA-256 or the
//! read error, and powers off when it runs as PID 1.

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

fn main() {
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
    if std::process::id() == 1 {
        let e = mpk_guest::sys::power_off();
        eprintln!("mpk-check: power-off failed: {e}");
    }
}
