//! Reading a whole input file that someone else handed to mpk (firmware,
//! kernel, initrd, manifest, `.info`): only a regular file, and only up to
//! a stated size, checked on the open file before any byte is read. A FIFO
//! is opened without blocking and refused; `/dev/zero` is refused instead
//! of filling memory.

use anyhow::{Context, Result, bail};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The largest firmware, kernel or initrd mpk reads: 4 GiB. SEV-SNP maps
/// the firmware so that it ends at 4 GiB; the x86 boot protocol's
/// `ramdisk_size` is a 32-bit field, and QEMU's direct boot loads kernel
/// and initrd below 4 GiB.
pub const MAX_BOOT_INPUT: u64 = 4 << 30;

/// The largest JSON document or reference file mpk reads (manifests hold a
/// line per model file: 64 MiB is about 200,000 files).
pub const MAX_DOCUMENT: u64 = 64 << 20;

/// Reads the regular file `path` (named `what` in errors), refusing
/// anything else and anything over `max` bytes before reading.
pub fn read_regular(what: &str, path: &Path, max: u64) -> Result<Vec<u8>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        // A FIFO would block the open until a writer came.
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    let meta = f
        .metadata()
        .with_context(|| format!("reading {what} {}", path.display()))?;
    if !meta.is_file() {
        bail!(
            "{what} {} is not a regular file (a FIFO, device or folder is not read)",
            path.display()
        );
    }
    if meta.len() > max {
        bail!(
            "{what} {} is {} bytes, longer than {max} bytes (the most accepted)",
            path.display(),
            meta.len()
        );
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    f.take(max + 1)
        .read_to_end(&mut data)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    if data.len() as u64 > max {
        bail!(
            "{what} {} grew past {max} bytes while it was read",
            path.display()
        );
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bounded_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("fw");
        std::fs::write(&f, [7u8; 100]).unwrap();
        assert_eq!(read_regular("firmware", &f, 100).unwrap().len(), 100);
        let e = read_regular("firmware", &f, 99).unwrap_err().to_string();
        assert!(e.contains("is 100 bytes, longer than 99 bytes"), "{e}");
        // A FIFO with no writer: refused at once, not a hang.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_regular("kernel", &fifo, MAX_BOOT_INPUT)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
        for p in ["/dev/zero", "/"] {
            let e = read_regular("initrd", Path::new(p), MAX_BOOT_INPUT)
                .unwrap_err()
                .to_string();
            assert!(e.contains("not a regular file"), "{p}: {e}");
        }
    }
}
