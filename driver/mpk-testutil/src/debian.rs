//! Real Debian files for tests, fetched once with `apt-get download` +
//! `dpkg-deb -x` into a cache under the target directory (or taken from
//! the installed package). Missing tools skip, unless `MPK_REQUIRE_TOOLS=1`
//! ([`crate::missing`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::missing as fail;

/// The file `rel` (relative to the package root, e.g. `usr/share/ovmf/OVMF.fd`)
/// of Debian package `pkg`, extracted into `cache`.
pub fn package_file(cache: &Path, pkg: &str, rel: &str) -> Option<PathBuf> {
    let want = cache.join("x").join(rel);
    if want.is_file() {
        return Some(want);
    }
    extract(cache, pkg)?;
    if want.is_file() {
        Some(want)
    } else {
        fail(format!("no {rel} in {pkg}"))
    }
}

/// Downloads `pkg` and extracts it to `cache/x`, keeping only `boot/` and
/// `usr/share/` (kernel modules are large and unused).
fn extract(cache: &Path, pkg: &str) -> Option<()> {
    let dl = cache.join("dl");
    std::fs::create_dir_all(&dl).unwrap();
    let ok = Command::new("apt-get")
        .args(["download", pkg])
        .current_dir(&dl)
        .status()
        .is_ok_and(|s| s.success());
    let deb = std::fs::read_dir(&dl)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"));
    let (true, Some(deb)) = (ok, deb) else {
        return fail(format!("apt-get download {pkg} failed"));
    };
    let tmp = cache.join(format!("x.tmp{}", std::process::id()));
    let ok = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&tmp)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return fail(format!("dpkg-deb -x {} failed", deb.display()));
    }
    let _ = std::fs::remove_dir_all(tmp.join("lib"));
    let _ = std::fs::remove_dir_all(tmp.join("usr/lib"));
    // Another test binary may have won the race; either copy is the same.
    let _ = std::fs::rename(&tmp, cache.join("x"));
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_file(&deb);
    Some(())
}

/// Debian's current cloud kernel `vmlinuz-*`, as the SNP tests fetch it
/// (shared cache `debian-cloud-kernel`).
pub fn cloud_kernel(target_tmp: &Path) -> Option<PathBuf> {
    let cache = target_tmp.join("debian-cloud-kernel");
    let find = || -> Option<PathBuf> {
        std::fs::read_dir(cache.join("x/boot"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
    };
    if let Some(k) = find() {
        return Some(k);
    }
    let depends = || {
        let out = Command::new("apt-cache")
            .args(["depends", "--important", "linux-image-cloud-amd64"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .find(|p| p.starts_with("linux-image-") && p.ends_with("-cloud-amd64"))
            .map(str::to_string)
    };
    // A fresh machine may have no package lists yet.
    let pkg = depends().or_else(|| {
        let _ = Command::new("apt-get").arg("update").status();
        depends()
    });
    let Some(pkg) = pkg else {
        return fail("apt-cache knows no linux-image-cloud-amd64".into());
    };
    extract(&cache, &pkg)?;
    find().or_else(|| fail(format!("no boot/vmlinuz-* in {pkg}")))
}

/// Debian bookworm's `OVMF.fd` (a TDVF: it has TDX metadata): the installed
/// one, else from `apt-get download ovmf`.
pub fn ovmf(target_tmp: &Path) -> Option<PathBuf> {
    let installed = Path::new("/usr/share/ovmf/OVMF.fd");
    if installed.is_file() {
        return Some(installed.to_path_buf());
    }
    package_file(
        &target_tmp.join("debian-ovmf"),
        "ovmf",
        "usr/share/ovmf/OVMF.fd",
    )
}
