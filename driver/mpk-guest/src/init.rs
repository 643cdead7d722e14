//! The boot-time init: from the measured command line to read-only,
//! verity-checked models under `/models/<org>/<name>`.
//!
//! Trust: every verity parameter (root hash, salt, data blocks, hash
//! start) comes from the command line, which is measured. Nothing read from
//! a disk is trusted: the EROFS superblock UUID (plain models) or the GPT
//! partition GUID (encrypted models) only picks which disk to map
//! (dm-verity then checks every block of it, superblock included), and
//! the on-disk verity superblock is never read, so it cannot shrink the
//! mapping. Every failure is returned as an [`InitError`]; the binary
//! prints it and powers off.
//!
//! # Encrypted models (`mpk.model=…:crypt`)
//!
//! The disk is an `.empk`: a GPT image whose partition, from 1 MiB, holds
//! the `.mpk` encrypted with dm-crypt `aes-xts-plain64` (4096-byte
//! sectors). Offsets and sizes come from the command line, never from the
//! GPT: the payload starts at sector 2048 and is exactly as long as the
//! `.mpk` its hash offset describes. The init maps `mpk-crypt-<partuuid>`
//! (`crypt`, read-only) over it, stacks the same verity table as for a
//! plain model on that device, checks that block 0 verifies (else: wrong
//! key or not this pack), and mounts EROFS as for a plain model.
//!
//! Key delivery contract (the key is never on the command line):
//!
//! - Each encrypted model's 64-byte master key (as `mpk keygen` makes it)
//!   is read from [`KEY_DIR`]`/<partuuid>` (`/run/mpk/keys/<partuuid>`, the
//!   partition UUID of its `mpk.model=` word): a regular file of exactly
//!   64 bytes. The dm-crypt key is derived from it in the guest
//!   (HKDF-SHA256 with the root hash and partition UUID, as `mpk encrypt`).
//! - Optional `mpk.keyagent=<absolute path>`: a program in the (measured)
//!   initrd, e.g. an attestation client, that the init runs once, after
//!   loading modules and before reading any key or disk, with
//!   `MPK_KEY_DIR=/run/mpk/keys` in its environment (the folder created
//!   with mode 0700) and the partition UUIDs of the encrypted models, in
//!   command-line order, as arguments. It must write the key files and exit
//!   0; the init waits for it. Without an agent the files must already be
//!   there (put in place by an earlier stage).
//! - An agent that cannot start or does not exit 0, a missing key file, or
//!   one that is not a regular file of exactly 64 bytes: FATAL and power
//!   off; the message names the path, never key bytes.
//! - Each key file is deleted as soon as it is read; the read buffer, the
//!   derived key, its hex form and the table buffers are zeroized after
//!   use, the table is loaded with `DM_SECURE_DATA_FLAG` (the kernel wipes
//!   its copy), and the init makes itself non-dumpable first thing. Log
//!   lines print the table with the key replaced by `<key>`.

use crate::cmdline::{self, BootConfig, CmdlineError, ModelSpec};
use crate::sys;
use mpk_crypt::key::KEY_LEN;
use mpk_crypt::{DmCryptKey, MasterKey};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};
use thiserror::Error;
use zeroize::Zeroizing;

/// Program handed over to when the command line has no `mpk.next=`.
pub const DEFAULT_NEXT: &str = "/sbin/init";
/// Module list in the initrd: one `.ko` path per line, in load order.
pub const MODULE_LIST: &str = "/etc/mpk/modules";
/// How long to wait for the models' disks to appear.
pub const DISK_TIMEOUT: Duration = Duration::from_secs(10);
/// Where each encrypted model's master key is expected, one file per
/// model named after its partition UUID.
pub const KEY_DIR: &str = "/run/mpk/keys";

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
    /// No disk carries the model's UUID.
    #[error("model `{identity}`: no disk carries {kind} {uuid} (disks seen: {seen})")]
    NoDisk {
        /// The model identity.
        identity: String,
        /// `EROFS UUID` or `GPT partition GUID`.
        kind: &'static str,
        /// The UUID looked for.
        uuid: String,
        /// Disks that were scanned.
        seen: String,
    },
    /// More than one disk carries the model's UUID.
    #[error("model `{identity}`: several disks carry {kind} {uuid}: {disks}; refusing to guess")]
    Ambiguous {
        /// The model identity.
        identity: String,
        /// `EROFS UUID` or `GPT partition GUID`.
        kind: &'static str,
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
        /// Image + verity superblock block + hash tree (+ the 1 MiB GPT
        /// head when encrypted).
        need: u64,
    },
    /// A master key file is missing, unreadable or malformed. Never holds
    /// key bytes.
    #[error("master key {path}: {reason}")]
    Key {
        /// The key file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The key agent could not run or failed.
    #[error("key agent {agent}: {reason}")]
    KeyAgent {
        /// `mpk.keyagent=`.
        agent: String,
        /// What went wrong.
        reason: String,
    },
    /// The decrypted payload does not verify: wrong key, or another pack.
    #[error(
        "model `{identity}`: the decrypted pack does not verify against the root hash (wrong master key in {key}, or a damaged or different pack): reading block 0 of {node}: {source}"
    )]
    Undecryptable {
        /// The model identity.
        identity: String,
        /// The key file the key came from.
        key: String,
        /// The verity device.
        node: String,
        /// The read error.
        source: io::Error,
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

/// The key file of an encrypted model: `/run/mpk/keys/<partuuid>`.
pub fn key_path(m: &ModelSpec) -> String {
    format!("{KEY_DIR}/{}", m.uuid().hyphenated())
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

/// What picks a disk: the EROFS superblock UUID of a plain `.mpk`, or a
/// GPT partition GUID of an `.empk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tag {
    Erofs(uuid::Uuid),
    Partition(uuid::Uuid),
}

impl Tag {
    fn of(m: &ModelSpec) -> Self {
        if m.encrypted {
            Tag::Partition(m.uuid())
        } else {
            Tag::Erofs(m.uuid())
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Tag::Erofs(_) => "EROFS UUID",
            Tag::Partition(_) => "GPT partition GUID",
        }
    }
}

/// Disks by the tags they carry.
type DisksByTag = BTreeMap<Tag, Vec<Disk>>;

/// Most GPT entry bytes read per disk (the usual array is 16 KiB).
pub const GPT_ENTRIES_MAX: u64 = 1 << 20;

/// The unique GUIDs of the used entries of the GPT whose primary header is
/// in `head[512..1024]` (LBA 1 of 512-byte sectors), reading the entry
/// array with `read_at(buf, byte offset)` (at most [`GPT_ENTRIES_MAX`]
/// bytes, once). Untrusted and unchecked (no CRC): only for choosing the
/// disk. GUIDs are stored mixed-endian, as `mpk_crypt::gpt` writes them.
pub fn gpt_partitions(
    head: &[u8; 2048],
    read_at: impl FnOnce(&mut [u8], u64) -> io::Result<()>,
) -> Vec<uuid::Uuid> {
    let h = &head[512..1024];
    if &h[..8] != b"EFI PART" {
        return Vec::new();
    }
    let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().expect("8 bytes"));
    let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().expect("4 bytes"));
    let (lba, count, size) = (u64_at(72), u64::from(u32_at(80)), u64::from(u32_at(84)));
    if !(128..=4096).contains(&size) || size % 8 != 0 || count * size > GPT_ENTRIES_MAX {
        return Vec::new();
    }
    let Some(at) = lba.checked_mul(512) else {
        return Vec::new();
    };
    let mut entries = vec![0u8; (count * size) as usize];
    if read_at(&mut entries, at).is_err() {
        return Vec::new();
    }
    entries
        .chunks_exact(size as usize)
        .filter(|e| e[..16].iter().any(|&b| b != 0))
        .map(|e| uuid::Uuid::from_bytes_le(e[16..32].try_into().expect("16 bytes")))
        .collect()
}

/// Scans every whole disk for the tags it carries: an EROFS superblock
/// (magic at 1024, UUID at 1072..1088) or a GPT's partition GUIDs.
/// Untrusted: only used to choose which disk to map.
fn scan_disks() -> io::Result<(Vec<String>, DisksByTag)> {
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
    let mut found = DisksByTag::new();
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
        let disk = Disk {
            name: name.clone(),
            dev,
            bytes: sectors * 512,
        };
        let mut tags: Vec<Tag> = gpt_partitions(&head, |buf, at| f.read_exact_at(buf, at))
            .into_iter()
            .map(Tag::Partition)
            .collect();
        if head[1024..1028] == [0xe2, 0xe1, 0xf5, 0xe0] {
            let u = uuid::Uuid::from_slice(&head[1072..1088]).expect("16 bytes");
            tags.push(Tag::Erofs(u));
        }
        tags.sort();
        tags.dedup();
        for t in tags {
            found.entry(t).or_default().push(disk.clone());
        }
    }
    Ok((names, found))
}

/// Waits for a disk per model; refuses missing and ambiguous ones.
fn find_disks(models: &[ModelSpec]) -> Result<Vec<Disk>, InitError> {
    let start = Instant::now();
    loop {
        let (names, found) = scan_disks().map_err(io_err("scanning /sys/block"))?;
        let all = models.iter().all(|m| found.contains_key(&Tag::of(m)));
        if all || start.elapsed() > DISK_TIMEOUT {
            let mut out = Vec::new();
            for m in models {
                let tag = Tag::of(m);
                let disks = found.get(&tag).map(Vec::as_slice).unwrap_or_default();
                match disks {
                    [] => {
                        return Err(InitError::NoDisk {
                            identity: m.identity.to_string(),
                            kind: tag.kind(),
                            uuid: m.uuid().hyphenated().to_string(),
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
                            identity: m.identity.to_string(),
                            kind: tag.kind(),
                            uuid: m.uuid().hyphenated().to_string(),
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

/// Runs `mpk.keyagent=` once with the encrypted models' partition UUIDs as
/// arguments; it must exit 0.
fn run_key_agent(agent: &str, models: &[ModelSpec]) -> Result<(), InitError> {
    let fail = |reason: String| InitError::KeyAgent {
        agent: agent.to_string(),
        reason,
    };
    std::fs::create_dir_all(KEY_DIR)
        .and_then(|()| std::fs::set_permissions(KEY_DIR, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| fail(format!("cannot prepare {KEY_DIR}: {e}")))?;
    let uuids: Vec<String> = models
        .iter()
        .filter(|m| m.encrypted)
        .map(|m| m.uuid().hyphenated().to_string())
        .collect();
    say(&format!(
        "running key agent {agent} for {} encrypted model(s)",
        uuids.len()
    ));
    let status = std::process::Command::new(agent)
        .args(&uuids)
        .env("MPK_KEY_DIR", KEY_DIR)
        .stdin(std::process::Stdio::null())
        .status()
        .map_err(|e| fail(format!("cannot start it: {e}")))?;
    if !status.success() {
        return Err(fail(format!("{status}; refusing to continue without keys")));
    }
    say(&format!("key agent {agent} exited 0"));
    Ok(())
}

/// Reads and deletes the master key of `m` (at [`key_path`]) and derives
/// its dm-crypt key.
fn take_key(m: &ModelSpec) -> Result<DmCryptKey, InitError> {
    take_key_at(&key_path(m), m)
}

/// [`take_key`] from the file `path`.
fn take_key_at(path: &str, m: &ModelSpec) -> Result<DmCryptKey, InitError> {
    let bad = |reason: String| InitError::Key {
        path: path.to_string(),
        reason,
    };
    let mut f = File::open(path).map_err(|e| bad(format!("cannot open it: {e}")))?;
    let meta = f
        .metadata()
        .map_err(|e| bad(format!("cannot stat it: {e}")))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    // One fixed buffer, zeroized on drop; one byte more than a key, to see
    // an overlong file.
    let mut buf = Zeroizing::new([0u8; KEY_LEN + 1]);
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(bad(format!("cannot read it: {e}"))),
        }
    }
    drop(f);
    if n != KEY_LEN {
        let len = if n > KEY_LEN { meta.len() } else { n as u64 };
        return Err(bad(format!(
            "a master key must be exactly {KEY_LEN} bytes, this file has {len}"
        )));
    }
    let master =
        MasterKey::from_bytes(&buf[..KEY_LEN]).map_err(|e| bad(format!("cannot use it: {e}")))?;
    drop(buf);
    std::fs::remove_file(path).map_err(|e| bad(format!("cannot delete it after reading: {e}")))?;
    let key = master.derive(m.root(), &m.uuid());
    drop(master);
    say(&format!(
        "{}: master key read from {path} ({KEY_LEN} bytes), file deleted",
        m.identity
    ));
    Ok(key)
}

/// Lowercase hex of a dm-crypt key, in a buffer sized up front (no
/// reallocation leaves a copy behind) and zeroized on drop.
fn key_hex(key: &DmCryptKey) -> Zeroizing<String> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = Zeroizing::new(String::with_capacity(2 * KEY_LEN));
    for b in key.expose() {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Creates, loads (read-only) and resumes the dm device `name`; returns
/// its `major:minor` and its `/dev/dm-N` node.
fn dm_device(
    dm: &sys::DmControl,
    id: &str,
    name: &str,
    target: &str,
    sectors: u64,
    params: &str,
) -> Result<(String, String), InitError> {
    let dev = dm
        .create(name)
        .map_err(io_err(format!("{id}: creating dm device {name}")))?;
    dm.load_readonly(name, target, sectors, params)
        .map_err(io_err(format!("{id}: loading the {target} table")))?;
    dm.resume(name)
        .map_err(io_err(format!("{id}: activating {name}")))?;
    Ok((
        format!("{}:{}", sys::dev_major(dev), sys::dev_minor(dev)),
        format!("/dev/dm-{}", sys::dev_minor(dev)),
    ))
}

/// Maps the encrypted payload of `m` on `disk` through dm-crypt; returns
/// the crypt device's `major:minor`. Consumes (and so zeroizes) the key.
fn map_crypt(
    dm: &sys::DmControl,
    m: &ModelSpec,
    disk: &Disk,
    key: DmCryptKey,
) -> Result<String, InitError> {
    let id = m.identity.to_string();
    let need = m.crypt_disk_min();
    if disk.bytes < need {
        return Err(InitError::DiskTooSmall {
            identity: id,
            disk: disk.name.clone(),
            have: disk.bytes,
            need,
        });
    }
    let name = format!("mpk-crypt-{}", m.uuid().hyphenated());
    say(&format!(
        "{id}: /dev/{} ({}) -> {name}: dm table `0 {} crypt {}`",
        disk.name,
        disk.dev,
        m.crypt_sectors(),
        m.crypt_params(&disk.dev, "<key>").expose()
    ));
    let params = {
        let hex = key_hex(&key);
        drop(key);
        m.crypt_params(&disk.dev, &hex)
    };
    let (dev, _) = dm_device(dm, &id, &name, "crypt", m.crypt_sectors(), params.expose())?;
    drop(params);
    Ok(dev)
}

/// Maps `m` from the device `data` (`major:minor`, a disk or the crypt
/// device) through dm-verity and mounts it read-only.
fn map_and_mount(dm: &sys::DmControl, m: &ModelSpec, data: &str) -> Result<(), InitError> {
    let id = m.identity.to_string();
    let name = format!("mpk-{}", m.uuid().hyphenated());
    let params = m.verity_params(data);
    say(&format!(
        "{id}: {data} -> {name}: dm table `0 {} verity {params}`",
        m.sectors()
    ));
    let (_, node) = dm_device(dm, &id, &name, "verity", m.sectors(), &params)?;
    wait_for(&node)?;
    if m.encrypted {
        // A wrong key decrypts to noise that fails verity on every block:
        // say so plainly instead of a bare mount error.
        let mut block = vec![0u8; 4096];
        File::open(&node)
            .and_then(|f| f.read_exact_at(&mut block, 0))
            .map_err(|source| InitError::Undecryptable {
                identity: id.clone(),
                key: key_path(m),
                node: node.clone(),
                source,
            })?;
    }
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
    sys::set_undumpable().map_err(io_err("prctl(PR_SET_DUMPABLE, 0)"))?;
    mount_early()?;
    let text = std::fs::read_to_string("/proc/cmdline").map_err(io_err("reading /proc/cmdline"))?;
    // Every check that needs no disk happens here, before any disk is read.
    let BootConfig {
        models,
        next,
        keyagent,
    } = cmdline::parse(&text)?;
    for m in &models {
        say(&format!("model {m}"));
    }
    let n = load_modules()?;
    say(&format!("loaded {n} modules"));
    if let Some(agent) = &keyagent {
        run_key_agent(agent, &models)?;
    }
    // Keys first: a missing key fails before waiting for any disk.
    let mut keys: Vec<Option<DmCryptKey>> = models
        .iter()
        .map(|m| m.encrypted.then(|| take_key(m)).transpose())
        .collect::<Result<_, _>>()?;
    let disks = find_disks(&models)?;
    let dm = sys::DmControl::open("/dev/mapper/control")
        .map_err(io_err("opening /dev/mapper/control"))?;
    for ((m, d), key) in models.iter().zip(&disks).zip(&mut keys) {
        let data = match key.take() {
            Some(key) => map_crypt(&dm, m, d, key)?,
            None => {
                let need = m.mpk_len();
                if d.bytes < need {
                    return Err(InitError::DiskTooSmall {
                        identity: m.identity.to_string(),
                        disk: d.name.clone(),
                        have: d.bytes,
                        need,
                    });
                }
                say(&format!("{}: /dev/{} ({})", m.identity, d.name, d.dev));
                d.dev.clone()
            }
        };
        map_and_mount(&dm, m, &data)?;
    }
    Ok(next.unwrap_or_else(|| DEFAULT_NEXT.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_with_gpt(entries_lba: u64, count: u32, size: u32) -> [u8; 2048] {
        let mut h = [0u8; 2048];
        h[512..520].copy_from_slice(b"EFI PART");
        h[512 + 72..512 + 80].copy_from_slice(&entries_lba.to_le_bytes());
        h[512 + 80..512 + 84].copy_from_slice(&count.to_le_bytes());
        h[512 + 84..512 + 88].copy_from_slice(&size.to_le_bytes());
        h
    }

    #[test]
    fn gpt_partitions_of_an_empk_head() {
        let part = "a/b@0000000000000000000000000000000000000000"
            .parse::<mpk_model::Identity>()
            .unwrap()
            .partition_uuid();
        let layout = mpk_crypt::Layout::new(1 << 16, uuid::Uuid::nil(), part).unwrap();
        let mut tmp = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut tmp, &layout.head()).unwrap();
        let head: [u8; 2048] = layout.head()[..2048].try_into().unwrap();
        assert_eq!(
            gpt_partitions(&head, |b, at| tmp.read_exact_at(b, at)),
            vec![part]
        );
        // Not a GPT, absurd entry sizes, an array past the end: nothing.
        assert!(gpt_partitions(&[0; 2048], |b, at| tmp.read_exact_at(b, at)).is_empty());
        assert!(
            gpt_partitions(&head_with_gpt(2, 128, 64), |b, at| tmp.read_exact_at(b, at)).is_empty()
        );
        assert!(
            gpt_partitions(&head_with_gpt(2, u32::MAX, 128), |b, at| tmp
                .read_exact_at(b, at))
            .is_empty()
        );
        assert!(
            gpt_partitions(&head_with_gpt(u64::MAX, 128, 128), |b, at| tmp
                .read_exact_at(b, at))
            .is_empty()
        );
        assert!(
            gpt_partitions(&head_with_gpt(1 << 40, 128, 128), |b, at| tmp
                .read_exact_at(b, at))
            .is_empty()
        );
    }

    #[test]
    fn key_files_are_read_once_and_checked() {
        let id = "a/b@0000000000000000000000000000000000000000";
        let word = format!(
            "mpk.model={id}:{}_4096_{}:crypt",
            "ab".repeat(32),
            id.parse::<mpk_model::Identity>().unwrap().partition_uuid()
        );
        let m = cmdline::parse(&word).unwrap().models.remove(0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let p = path.to_str().unwrap();
        let secret = [0x5au8; KEY_LEN + 1];
        // Missing, too short, too long, not a regular file: refused, the
        // path named, no key byte shown.
        let e = take_key_at(p, &m).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("master key {p}: cannot open it: ")),
            "{e}"
        );
        for (len, says) in [
            (KEY_LEN - 1, "this file has 63"),
            (KEY_LEN + 1, "this file has 65"),
            (0, "this file has 0"),
        ] {
            std::fs::write(&path, &secret[..len]).unwrap();
            let e = take_key_at(p, &m).unwrap_err().to_string();
            assert!(
                e.contains("must be exactly 64 bytes") && e.contains(says),
                "{e}"
            );
            assert!(!e.contains("5a") && !e.contains("5A"), "{e}");
        }
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let e = take_key_at(p, &m).unwrap_err().to_string();
        assert_eq!(e, format!("master key {p}: not a regular file"));
        std::fs::remove_dir(&path).unwrap();
        // Exactly 64 bytes: the key of `mpk encrypt`, and the file is gone.
        std::fs::write(&path, &secret[..KEY_LEN]).unwrap();
        let k = take_key_at(p, &m).unwrap();
        let want = MasterKey::from_bytes(&secret[..KEY_LEN])
            .unwrap()
            .derive(m.root(), &m.uuid());
        assert_eq!(k.expose(), want.expose());
        assert!(!path.exists());
        assert_eq!(key_path(&m), format!("/run/mpk/keys/{}", m.uuid()));
    }

    #[test]
    fn key_hex_is_lowercase_and_complete() {
        let master = MasterKey::from_bytes(&[7; KEY_LEN]).unwrap();
        let key = master.derive(&[1; 32], &uuid::Uuid::nil());
        let h = key_hex(&key);
        assert_eq!(*h, hex::encode(key.expose()));
        assert_eq!(h.capacity(), 2 * KEY_LEN);
    }
}
