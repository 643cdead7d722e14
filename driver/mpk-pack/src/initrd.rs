//! The base image's initrd, a reproducible cpio newc archive
//! (`mpk_measure::cpio`: sorted, mtime 0, owner 0:0) holding
//!
//! - `/init`: the static guest init (`mpk-init`), mode 0755;
//! - `/lib/modules/mpk/<name>.ko`: each module, mode 0644, and
//!   `/etc/mpk/modules` listing their paths one per line in the order
//!   given, the order `mpk-init` loads them in (empty without modules: a
//!   kernel with everything built in);
//! - `/dev/console` (character device 5:1), so the init has a console even
//!   on a kernel whose built-in initramfs lacks one;
//! - each extra file, mode 0755 if its source is executable, else 0644.
//!
//! An ELF init must be an x86-64 executable without a program interpreter
//! (statically linked): the initrd has no libc, and a dynamic init would
//! only fail at boot, after its hash was pinned.
//!
//! Only the bytes of the inputs (and the executable bit of `--file`
//! sources) reach the archive, so the same inputs always give the same
//! bytes.

use anyhow::{Context, Result, bail, ensure};
use camino::{Utf8Path, Utf8PathBuf};
use mpk_measure::cpio::Initrd;
use std::collections::BTreeSet;

/// Where the modules go inside the initrd.
pub const MODULE_DIR: &str = "lib/modules/mpk";
/// The module list `mpk-init` reads (`mpk_guest::init::MODULE_LIST`).
pub const MODULE_LIST: &str = "etc/mpk/modules";

fn read(what: &str, p: &Utf8Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("cannot read {what} `{p}`"))
}

/// `PT_INTERP`: the program header naming the dynamic loader.
const PT_INTERP: u32 = 3;
/// `EM_X86_64`.
const EM_X86_64: u16 = 62;

/// Refuses an ELF init the guest cannot run: not 64-bit little-endian
/// x86-64, truncated program headers, or a program interpreter (dynamically
/// linked). Anything that is not ELF (a script whose interpreter comes with
/// `--file`) is the caller's business.
pub fn check_init(path: &Utf8Path, b: &[u8]) -> Result<()> {
    if !b.starts_with(b"\x7fELF") {
        return Ok(());
    }
    // Offsets come from the file: a range that does not fit is `None`.
    let at = |o: usize, n: usize| o.checked_add(n).and_then(|end| b.get(o..end));
    let u16_at = |o: usize| at(o, 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u32_at = |o: usize| at(o, 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
    let u64_at = |o: usize| at(o, 8).map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")));
    ensure!(
        b.len() >= 64 && b[4] == 2 && b[5] == 1 && u16_at(0x12) == Some(EM_X86_64),
        "the init `{path}` is not a 64-bit x86-64 ELF executable"
    );
    let bad = || anyhow::anyhow!("the init `{path}` has truncated ELF program headers");
    let phoff = usize::try_from(u64_at(0x20).ok_or_else(bad)?).map_err(|_| bad())?;
    let phentsize = usize::from(u16_at(0x36).ok_or_else(bad)?);
    let phnum = usize::from(u16_at(0x38).ok_or_else(bad)?);
    for i in 0..phnum {
        let o = phentsize
            .checked_mul(i)
            .and_then(|x| x.checked_add(phoff))
            .ok_or_else(bad)?;
        if u32_at(o).ok_or_else(bad)? == PT_INTERP {
            bail!(
                "the init `{path}` is dynamically linked (it names an ELF interpreter), but the \
                 initrd holds no libc: build mpk-init static (`-C target-feature=+crt-static`, \
                 or Nix's pkgsStatic)"
            );
        }
    }
    Ok(())
}

/// What goes into an initrd.
#[derive(Debug, Clone, Default)]
pub struct InitrdOptions {
    /// The static guest init (`mpk-init`), stored as /init.
    pub init: Utf8PathBuf,
    /// Kernel modules (uncompressed `.ko`), loaded in this order.
    pub modules: Vec<Utf8PathBuf>,
    /// Extra files: (source on the host, destination inside).
    pub files: Vec<(Utf8PathBuf, String)>,
}

/// The archive for `a` (nothing is written).
pub fn build(a: &InitrdOptions) -> Result<Vec<u8>> {
    let mut initrd = Initrd::new();
    let init = read("the init", &a.init)?;
    check_init(&a.init, &init)?;
    initrd.file("init", 0o755, init)?;
    initrd.char_dev("dev/console", 0o600, 5, 1)?;

    let mut list = String::new();
    let mut names = BTreeSet::new();
    for m in &a.modules {
        let name = m
            .file_name()
            .with_context(|| format!("module `{m}` has no file name"))?;
        if [".ko.xz", ".ko.zst", ".ko.gz"]
            .iter()
            .any(|s| name.ends_with(s))
        {
            bail!(
                "module `{m}` is compressed; the init loads modules with finit_module(2) flags 0, \
                 so decompress it to a .ko first"
            );
        }
        ensure!(
            name.ends_with(".ko"),
            "module `{m}` is not a kernel module (`.ko`)"
        );
        ensure!(
            names.insert(name.to_string()),
            "two modules are named `{name}`"
        );
        let dest = format!("{MODULE_DIR}/{name}");
        initrd.file(&dest, 0o644, read("module", m)?)?;
        list.push_str(&format!("/{dest}\n"));
    }
    initrd.file(MODULE_LIST, 0o644, list.into_bytes())?;

    for (src, dest) in &a.files {
        let f = format!("{src}:{dest}");
        let dest = dest.strip_prefix('/').unwrap_or(dest);
        let data = read("file", src)?;
        let perm = {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(src)
                .with_context(|| format!("cannot stat file `{src}`"))?
                .permissions()
                .mode();
            if mode & 0o111 != 0 { 0o755 } else { 0o644 }
        };
        initrd
            .file(dest, perm, data)
            .with_context(|| format!("--file `{f}`"))?;
    }
    Ok(initrd.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the robustness suite: a program-header offset near 2^64
    /// overflowed the bounds check instead of being refused.
    #[test]
    fn program_headers_past_the_end_are_refused() {
        let mut b = vec![0u8; 120];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x12] = 62;
        b[0x36] = 56;
        b[0x38] = 2;
        for phoff in [u64::MAX, u64::MAX - 1, 1 << 40, 100] {
            b[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
            let e = check_init(Utf8Path::new("init"), &b).unwrap_err();
            assert!(e.to_string().contains("truncated"), "{phoff:#x}: {e}");
        }
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        assert!(
            check_init(Utf8Path::new("init"), &b).is_err(),
            "56 × 2 > 56"
        );
        b[0x38] = 1;
        check_init(Utf8Path::new("init"), &b).unwrap();
    }
}
