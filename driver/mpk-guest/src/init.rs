//! The boot-time init: from the measured command line to read-only,
//! verity-checked models under `/models/<org>/<name>`.
//!
//! Trust: every verity parameter (root hash, salt, data blocks, hash
//! start) comes from the command line, which is measured. Nothing read from
//! a disk is trusted: the EROFS superblock UUID only picks which disk to
//! map (dm-verity then checks every block of it, superblock included), and
//! the on-disk verity superblock is never read, so it cannot shrink the
//! mapping. Every failure is returned as an [`InitError`]; the binary
//! prints it and powers off.

use crate::cmdline::{self, BootConfig, CmdlineError, ModelSpec};
use crate::sys;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Program handed over to when the command line has no `mpk.next=`.
pub const DEFAULT_NEXT: &str = "/sbin/init";
/// Module list in the initrd: one `.ko` path per line, in load order.
pub const MODULE_LIST: &str = "/etc/mpk/modules";
/// How long to wait for the models' disks to appear.
pub const DISK_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the init refuses to continue.
#[derive(Debug, Error)]
pub enum InitError {
    /// The command line was refused.
    #[error("kernel command line: {0}")]
    Cmdline(#[from] CmdlineError),
    /// A system call or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// No disk carries the model's EROFS UUID.
    #[error("model `{identity}`: no disk carries EROFS UUID {uuid} (disks seen: {seen})")]
    NoDisk {
        /// The model identity.
        identity: String,
        /// The UUID looked for.
        uuid: String,
        /// Disks that were scanned.
        seen: String,
    },
    /// More than one disk carries the model's UUID.
    #[error(
        "model `{identity}`: several disks carry EROFS UUID {uuid}: {disks}; refusing to guess"
    )]
    Ambiguous {
        /// The model identity.
        identity: String,
        /// The UUID.
        uuid: String,
        /// The disks.
        disks: String,
    },
    /// The disk is shorter than the image and hash tree the command line
    /// describes.
    #[error("model `{identity}`: disk {disk} has {have} bytes, the reference needs {need}")]
    DiskTooSmall {
        /// The model identity.
        identity: String,
        /// The disk.
        disk: String,
        /// Its size.
        have: u64,
        /// Image + verity superblock block + hash tree.
        need: u64,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> InitError {
    let what = what.into();
    move |source| InitError::Io { what, source }
}

/// Prints one progress line on the console.
pub fn say(msg: &str) {
    eprintln!("mpk-init: {msg}");
}

/// Bytes of the dm-verity hash tree (format 1, sha256, 4096-byte blocks)
/// over `data_blocks` blocks, without the superblock block.
pub fn tree_bytes(data_blocks: u64) -> u64 {
    let mut n = data_blocks;
    let mut total = 0;
    while n > 1 {
        n = n.div_ceil(128);
        total += n;
    }
    total * 4096
}

/// A block device found under `/sys/block`.
#[derive(Debug, Clone)]
struct Disk {
    name: String,
    /// `major:minor`.
    dev: String,
    bytes: u64,
}

fn read_trim(path: &str) -> io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

/// Disks carrying an EROFS superblock, by its UUID.
type DisksByUuid = BTreeMap<uuid::Uuid, Vec<Disk>>;

/// Scans every whole disk and returns the EROFS UUID of those that carry an
/// EROFS superblock (magic at 1024, UUID at 1072..1088). Untrusted: only
/// used to choose which disk to map.
fn scan_disks() -> io::Result<(Vec<String>, DisksByUuid)> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            !["dm-", "loop", "ram", "zram", "sr"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect();
    names.sort();
    let mut found: BTreeMap<uuid::Uuid, Vec<Disk>> = BTreeMap::new();
    for name in &names {
        let Ok(dev) = read_trim(&format!("/sys/block/{name}/dev")) else {
            continue;
        };
        let Ok(sectors) = read_trim(&format!("/sys/block/{name}/size")) else {
            continue;
        };
        let Ok(sectors) = sectors.parse::<u64>() else {
            continue;
        };
        let mut head = [0u8; 2048];
        let Ok(mut f) = File::open(format!("/dev/{name}")) else {
            continue;
        };
        if f.read_exact(&mut head).is_err() {
            continue;
        }
        if head[1024..1028] != [0xe2, 0xe1, 0xf5, 0xe0] {
            continue;
        }
        let u = uuid::Uuid::from_slice(&head[1072..1088]).expect("16 bytes");
        found.entry(u).or_default().push(Disk {
            name: name.clone(),
            dev,
            bytes: sectors * 512,
        });
    }
    Ok((names, found))
}

/// Waits for a disk per model; refuses missing and ambiguous ones.
fn find_disks(models: &[ModelSpec]) -> Result<Vec<Disk>, InitError> {
    let start = Instant::now();
    loop {
        let (names, found) = scan_disks().map_err(io_err("scanning /sys/block"))?;
        let all = models.iter().all(|m| found.contains_key(&m.uuid));
        if all || start.elapsed() > DISK_TIMEOUT {
            let mut out = Vec::new();
            for m in models {
                let disks = found.get(&m.uuid).map(Vec::as_slice).unwrap_or_default();
                match disks {
                    [] => {
                        return Err(InitError::NoDisk {
                            identity: m.identity(),
                            uuid: m.uuid.hyphenated().to_string(),
                            seen: if names.is_empty() {
                                "none".into()
                            } else {
                                names.join(", ")
                            },
                        });
                    }
                    [d] => out.push(d.clone()),
                    many => {
                        return Err(InitError::Ambiguous {
                            identity: m.identity(),
                            uuid: m.uuid.hyphenated().to_string(),
                            disks: many
                                .iter()
                                .map(|d| d.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                        });
                    }
                }
            }
            return Ok(out);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mount_early() -> Result<(), InitError> {
    for (src, dir, fs) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
    ] {
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {dir}")))?;
        let flags = libc::MS_NOSUID | libc::MS_NOEXEC;
        match sys::mount(src, dir, fs, flags) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(io_err(format!("mounting {fs} on {dir}"))(e)),
        }
    }
    Ok(())
}

fn load_modules() -> Result<usize, InitError> {
    let list = match std::fs::read_to_string(MODULE_LIST) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(format!("reading {MODULE_LIST}"))(e)),
    };
    let mut n = 0;
    for path in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let f = File::open(path).map_err(io_err(format!("opening module {path}")))?;
        match sys::finit_module(&f) {
            Ok(()) => n += 1,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(io_err(format!("loading module {path}"))(e)),
        }
    }
    Ok(n)
}

fn wait_for(path: &str) -> Result<(), InitError> {
    let start = Instant::now();
    while !Path::new(path).exists() {
        if start.elapsed() > Duration::from_secs(5) {
            return Err(io_err(format!("waiting for {path}"))(
                io::ErrorKind::NotFound.into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Maps `m` from `disk` through dm-verity and mounts it read-only.
fn map_and_mount(dm: &sys::DmControl, m: &ModelSpec, disk: &Disk) -> Result<(), InitError> {
    let id = m.identity();
    let need = m.hash_offset + 4096 + tree_bytes(m.data_blocks());
    if disk.bytes < need {
        return Err(InitError::DiskTooSmall {
            identity: id,
            disk: disk.name.clone(),
            have: disk.bytes,
            need,
        });
    }
    let name = format!("mpk-{}", m.uuid.hyphenated());
    let params = m.verity_params(&disk.dev);
    say(&format!(
        "{id}: /dev/{} ({}) -> dm table `0 {} verity {params}`",
        disk.name,
        disk.dev,
        m.sectors()
    ));
    let dev = dm
        .create(&name)
        .map_err(io_err(format!("{id}: creating dm device {name}")))?;
    dm.load_readonly(&name, "verity", m.sectors(), &params)
        .map_err(io_err(format!("{id}: loading the verity table")))?;
    dm.resume(&name)
        .map_err(io_err(format!("{id}: activating {name}")))?;
    let node = format!("/dev/dm-{}", sys::dev_minor(dev));
    wait_for(&node)?;
    let target = m.mount_point();
    std::fs::create_dir_all(&target).map_err(io_err(format!("creating {target}")))?;
    let flags = libc::MS_RDONLY | libc::MS_NODEV | libc::MS_NOSUID | libc::MS_NOEXEC;
    sys::mount(&node, &target, "erofs", flags).map_err(io_err(format!(
        "{id}: mounting {node} (verity) as erofs on {target}"
    )))?;
    say(&format!(
        "{id}: mounted at {target} (ro,nodev,nosuid,noexec; {} data blocks verified on read)",
        m.data_blocks()
    ));
    Ok(())
}

/// Runs the init up to the hand-over and returns the program to exec.
pub fn run() -> Result<String, InitError> {
    mount_early()?;
    let text = std::fs::read_to_string("/proc/cmdline").map_err(io_err("reading /proc/cmdline"))?;
    // Every check that needs no disk happens here, before any disk is read.
    let BootConfig { models, next } = cmdline::parse(&text)?;
    for m in &models {
        say(&format!("model {m}"));
    }
    let n = load_modules()?;
    say(&format!("loaded {n} modules"));
    let disks = find_disks(&models)?;
    let dm = sys::DmControl::open("/dev/mapper/control")
        .map_err(io_err("opening /dev/mapper/control"))?;
    for (m, d) in models.iter().zip(&disks) {
        map_and_mount(&dm, m, d)?;
    }
    Ok(next.unwrap_or_else(|| DEFAULT_NEXT.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_sizes() {
        assert_eq!(tree_bytes(1), 0);
        assert_eq!(tree_bytes(2), 4096);
        assert_eq!(tree_bytes(128), 4096);
        assert_eq!(tree_bytes(129), 3 * 4096);
        // formats.md: 262,145 blocks -> 2067 hash blocks.
        assert_eq!(tree_bytes(262_145), 2067 * 4096);
        // formats.md: 335 blocks -> 4 hash blocks.
        assert_eq!(tree_bytes(335), 4 * 4096);
    }
}
