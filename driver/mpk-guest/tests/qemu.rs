//! QEMU boot tests of the guest init (issue 5): a real Debian cloud kernel,
//! an initrd holding the static `mpk-init`, and an `.mpk` on a read-only
//! virtio disk. TCG only (guests hung under /dev/kvm here).
//!
//! Shared once per test binary: the kernel package (`apt-get download` of
//! the current `linux-image-cloud-amd64` dependency, cached under
//! `target/mpk-guest-vm/`), the static init build (its own target dir, so it
//! never waits on the outer `cargo test`'s lock), the initrd and the packed
//! fixture. Boots run one at a time. Without qemu or the kernel package the
//! tests skip, unless `MPK_REQUIRE_TOOLS=1`, where they fail.

use camino::Utf8PathBuf;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const IDENTITY: &str = "mpk-test/tiny-guest@0123456789abcdef0123456789abcdef01234567";
const MOUNT: &str = "mpk-test/tiny-guest";
/// Load order from issue 5 (the package has no modules.dep).
const MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
    "dm-mod",
    "dm-bufio",
    "reed_solomon",
    "dm-verity",
    "libcrc32c",
    "erofs",
];
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const WEIGHTS_BLOCKS: usize = 768;

struct Env {
    kernel: PathBuf,
    initrd: PathBuf,
    work: PathBuf,
    good: PathBuf,
    reference: String,
    hash_offset: u64,
    /// Relative path → sha256 of the source files.
    sources: BTreeMap<String, String>,
    weights: Vec<u8>,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn require_tools() -> bool {
    std::env::var("MPK_REQUIRE_TOOLS").as_deref() == Ok("1")
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The cloud kernel package: `MPK_GUEST_KERNEL_DEB`, else a cached `.deb`,
/// else `apt-get download` of whatever `linux-image-cloud-amd64` depends on
/// now (the ABI number is never pinned).
fn kernel_deb(dir: &Path) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("MPK_GUEST_KERNEL_DEB") {
        return Ok(p.into());
    }
    let cached = |dir: &Path| -> Option<PathBuf> {
        let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy().into_owned();
                n.starts_with("linux-image-") && n.contains("-cloud-amd64_") && n.ends_with(".deb")
            })
            .collect();
        debs.sort();
        debs.pop()
    };
    if let Some(p) = cached(dir) {
        return Ok(p);
    }
    let deps = run(Command::new("apt-cache").args(["depends", "linux-image-cloud-amd64"]))?;
    let pkg = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-cloud-amd64"))
        .ok_or_else(|| {
            format!("apt-cache depends linux-image-cloud-amd64 names no image:\n{deps}")
        })?
        .to_string();
    run(Command::new("apt-get")
        .args(["download", &pkg])
        .current_dir(dir))?;
    cached(dir).ok_or_else(|| format!("apt-get download {pkg} left no .deb in {}", dir.display()))
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok()) {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

/// Builds `mpk-init` and `mpk-guest-check` statically and reproducibly.
fn build_static(ws: &Path) -> Result<PathBuf, String> {
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
    run(Command::new(env!("CARGO"))
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
        .stderr(Stdio::piped()))?;
    Ok(tdir.join(target).join("release"))
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn pseudo_random(n: usize, mut x: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

fn setup() -> Result<Env, String> {
    let ws = workspace();
    let work = ws.join("target/mpk-guest-vm");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    run(Command::new("qemu-system-x86_64").arg("--version")).map_err(|e| {
        format!("qemu-system-x86_64 (Debian package qemu-system-x86) is missing: {e}")
    })?;
    let deb = kernel_deb(&work)?;
    let x = work.join("kernel");
    let _ = std::fs::remove_dir_all(&x);
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x))?;
    let boot = x.join("boot");
    let kernel = std::fs::read_dir(&boot)
        .map_err(|e| format!("{}: {e}", boot.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz-")
        })
        .ok_or("no vmlinuz in the kernel package")?;

    let bins = build_static(&ws)?;
    let mut initrd = mpk_guest::cpio::Initrd::new();
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    initrd
        .file("init", 0o755, read(&bins.join("mpk-init"))?)
        .map_err(|e| e.to_string())?;
    initrd
        .file(
            "bin/mpk-guest-check",
            0o755,
            read(&bins.join("mpk-guest-check"))?,
        )
        .map_err(|e| e.to_string())?;
    let mut list = String::new();
    for m in MODULES {
        let f = find_file(&x.join("lib/modules"), &format!("{m}.ko"))
            .ok_or_else(|| format!("module {m}.ko not in {}", deb.display()))?;
        initrd
            .file(&format!("lib/modules/{m}.ko"), 0o644, read(&f)?)
            .map_err(|e| e.to_string())?;
        list.push_str(&format!("/lib/modules/{m}.ko\n"));
    }
    initrd
        .file("etc/mpk/modules", 0o644, list.into_bytes())
        .map_err(|e| e.to_string())?;
    initrd
        .char_dev("dev/console", 0o600, 5, 1)
        .map_err(|e| e.to_string())?;
    for d in ["proc", "sys", "models"] {
        initrd.dir(d).map_err(|e| e.to_string())?;
    }
    let bytes = initrd.to_bytes();
    let initrd_path = work.join("initrd.cpio");
    std::fs::write(&initrd_path, &bytes).map_err(|e| e.to_string())?;
    eprintln!(
        "initrd {} bytes, sha256 {}",
        bytes.len(),
        sha256_hex(&bytes)
    );

    // The fixture model: small files plus one 3 MiB file, so the tree has two
    // levels and one leaf hash block covers only that file's blocks.
    let model = work.join("fixture/model");
    let _ = std::fs::remove_dir_all(&model);
    std::fs::create_dir_all(model.join("sub")).map_err(|e| e.to_string())?;
    let weights = pseudo_random(WEIGHTS_BLOCKS * 4096, 0x9e37_79b9_7f4a_7c15);
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "config.json",
            b"{\"model_type\": \"mpk-guest-test\"}\n".to_vec(),
        ),
        ("README.md", b"# tiny guest fixture\n".to_vec()),
        ("sub/tokenizer.json", pseudo_random(10_000, 7)),
        ("weights.bin", weights.clone()),
    ];
    let mut sources = BTreeMap::new();
    for (rel, data) in &files {
        std::fs::write(model.join(rel), data).map_err(|e| e.to_string())?;
        sources.insert(rel.to_string(), sha256_hex(data));
    }
    let good = work.join("fixture/good.mpk");
    let args = mpk_cli::cmd_pack::PackArgs {
        dir: Utf8PathBuf::from_path_buf(model).map_err(|p| format!("{p:?}"))?,
        identity: IDENTITY.parse().map_err(|e| format!("{e}"))?,
        output: Utf8PathBuf::from_path_buf(good.clone()).map_err(|p| format!("{p:?}"))?,
        threads: Some(1),
        json: false,
        force: true,
        backend: mpk_cli::cmd_pack::Backend::Native,
        quiet: true,
    };
    let report = mpk_cli::cmd_pack::pack(&args, false).map_err(|e| format!("{e:#}"))?;
    Ok(Env {
        kernel,
        initrd: initrd_path,
        work,
        good,
        reference: report.reference,
        hash_offset: report.hash_offset,
        sources,
        weights,
    })
}

/// The shared environment, or `None` (skip) when tools are missing and not
/// required.
fn env() -> Option<&'static Env> {
    static ENV: OnceLock<Result<Env, String>> = OnceLock::new();
    match ENV.get_or_init(setup) {
        Ok(e) => Some(e),
        Err(e) if require_tools() => panic!("guest test setup failed (MPK_REQUIRE_TOOLS=1): {e}"),
        Err(e) => {
            eprintln!("skipping the QEMU guest test: {e}");
            None
        }
    }
}

/// Kills QEMU if the test panics while it runs.
struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Boots the guest with `extra` on the command line and `disk` as a
/// read-only virtio disk; returns the console output once QEMU exits
/// (also kept in `target/mpk-guest-vm/console-<label>.log`).
fn boot(env: &Env, label: &str, extra: &str, disk: &Path) -> String {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let child = Command::new("qemu-system-x86_64")
        .args(["-machine", "pc", "-accel", "tcg", "-m", "256", "-smp", "1"])
        .args([
            "-nodefaults",
            "-no-reboot",
            "-display",
            "none",
            "-serial",
            "stdio",
        ])
        .arg("-kernel")
        .arg(&env.kernel)
        .arg("-initrd")
        .arg(&env.initrd)
        .arg("-append")
        .arg(format!("console=ttyS0 panic=-1 {extra}"))
        .arg("-drive")
        .arg(format!(
            "file={},if=virtio,format=raw,readonly=on",
            disk.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu-system-x86_64");
    let mut child = Kill(child);
    let mut stdout = child.0.stdout.take().unwrap();
    let mut stderr = child.0.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.0.try_wait().expect("wait qemu") {
            break Some(st);
        }
        if start.elapsed() > BOOT_TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(child);
    let out = out_t.join().unwrap();
    let err = err_t.join().unwrap();
    eprintln!("boot {label} took {:.1} s", start.elapsed().as_secs_f64());
    let log = env.work.join(format!("console-{label}.log"));
    let _ = std::fs::write(&log, format!("{out}\n--- qemu stderr ---\n{err}"));
    let Some(status) = status else {
        panic!("QEMU did not power off within {BOOT_TIMEOUT:?}; console:\n{out}\n{err}");
    };
    assert!(status.success(), "qemu {status}; console:\n{out}\n{err}");
    assert!(
        out.contains("reboot: Power down"),
        "the guest did not power off cleanly; console:\n{out}\n{err}"
    );
    out
}

fn model_word(identity: &str, reference: &str) -> String {
    format!("mpk.model={identity}:{reference} mpk.next=/bin/mpk-guest-check")
}

/// A copy of the good image with `edit` applied.
fn tampered(env: &Env, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut b = std::fs::read(&env.good).unwrap();
    let before = b.clone();
    edit(&mut b);
    assert_ne!(b, before, "{name}: the edit changed nothing");
    let p = env.work.join(format!("fixture/{name}.mpk"));
    std::fs::write(&p, b).unwrap();
    p
}

/// Data block index of weights.bin's block `i`, found by content.
fn weights_block(env: &Env, img: &[u8], i: usize) -> usize {
    let first = &env.weights[..4096];
    let h = env.hash_offset as usize;
    let start = (0..h / 4096)
        .find(|b| &img[b * 4096..b * 4096 + 4096] == first)
        .expect("weights.bin data in the image");
    start + i
}

/// Byte offset of the leaf (level 0) hash level: stored last, after the
/// superblock block and every higher level.
fn leaf_level_offset(hash_offset: u64) -> u64 {
    let mut n = hash_offset / 4096;
    let mut levels = Vec::new();
    while n > 1 {
        n = n.div_ceil(128);
        levels.push(n);
    }
    let above: u64 = levels.iter().skip(1).sum();
    hash_offset + 4096 + above * 4096
}

fn assert_all_files_match(env: &Env, out: &str) {
    for (rel, sha) in &env.sources {
        let want = format!("mpk-check: ok {sha} {MOUNT}/{rel}");
        assert!(out.contains(&want), "missing `{want}`; console:\n{out}");
    }
    let done = format!("mpk-check: done {} files, 0 failed", env.sources.len());
    assert!(out.contains(&done), "missing `{done}`; console:\n{out}");
}

fn assert_only_weights_fail(env: &Env, out: &str) {
    let fail = format!("mpk-check: fail {MOUNT}/weights.bin: Input/output error");
    assert!(out.contains(&fail), "missing `{fail}`; console:\n{out}");
    for (rel, sha) in env.sources.iter().filter(|(r, _)| *r != "weights.bin") {
        let want = format!("mpk-check: ok {sha} {MOUNT}/{rel}");
        assert!(out.contains(&want), "missing `{want}`; console:\n{out}");
    }
    let done = format!("mpk-check: done {} files, 1 failed", env.sources.len());
    assert!(out.contains(&done), "missing `{done}`; console:\n{out}");
}

fn assert_fatal(out: &str, msg: &str) {
    assert!(
        out.contains("mpk-init: FATAL: "),
        "no FATAL line; console:\n{out}"
    );
    assert!(out.contains(msg), "missing `{msg}`; console:\n{out}");
    assert!(
        out.contains("mpk-init: powering off (fail closed)"),
        "console:\n{out}"
    );
    assert!(
        !out.contains("mpk-check:"),
        "handed over after a failure; console:\n{out}"
    );
}

#[test]
fn good_model_mounts_and_every_file_matches_its_source() {
    let Some(env) = env() else { return };
    let out = boot(
        env,
        "good",
        &model_word(IDENTITY, &env.reference),
        &env.good,
    );
    assert_all_files_match(env, &out);
    let n = env.hash_offset / 4096;
    assert!(
        out.contains(&format!(" 4096 4096 {n} {} sha256 ", n + 1)),
        "console:\n{out}"
    );
    assert!(out.contains("ro,nodev,nosuid,noexec"), "console:\n{out}");
}

#[test]
fn flipped_data_byte_fails_that_file_only() {
    let Some(env) = env() else { return };
    let img = std::fs::read(&env.good).unwrap();
    let b = weights_block(env, &img, WEIGHTS_BLOCKS / 2);
    let disk = tampered(env, "data-byte", |m| m[b * 4096 + 100] ^= 0x01);
    let out = boot(
        env,
        "data-byte",
        &model_word(IDENTITY, &env.reference),
        &disk,
    );
    assert!(
        out.contains(&format!("data block {b} is corrupted")),
        "console:\n{out}"
    );
    assert_only_weights_fail(env, &out);
}

#[test]
fn flipped_hash_byte_fails_the_blocks_it_covers_only() {
    let Some(env) = env() else { return };
    let img = std::fs::read(&env.good).unwrap();
    let b = weights_block(env, &img, WEIGHTS_BLOCKS / 2);
    let leaf = leaf_level_offset(env.hash_offset) as usize;
    let disk = tampered(env, "hash-byte", |m| m[leaf + b * 32 + 5] ^= 0x80);
    let out = boot(
        env,
        "hash-byte",
        &model_word(IDENTITY, &env.reference),
        &disk,
    );
    assert!(out.contains("metadata block"), "console:\n{out}");
    assert!(out.contains("is corrupted"), "console:\n{out}");
    assert_only_weights_fail(env, &out);
}

#[test]
fn superblock_claiming_fewer_blocks_is_ignored() {
    let Some(env) = env() else { return };
    let h = env.hash_offset as usize;
    let disk = tampered(env, "truncated-superblock", |m| {
        assert_eq!(&m[h..h + 8], b"verity\0\0");
        assert_eq!(m[h + 72..h + 80], (env.hash_offset / 4096).to_le_bytes());
        m[h + 72..h + 80].copy_from_slice(&1u64.to_le_bytes());
    });
    let out = boot(
        env,
        "truncated-superblock",
        &model_word(IDENTITY, &env.reference),
        &disk,
    );
    // The full size is mapped and every file, up to the last block, reads
    // back intact: nothing was cut.
    let n = env.hash_offset / 4096;
    assert!(
        out.contains(&format!(" 4096 4096 {n} {} sha256 ", n + 1)),
        "console:\n{out}"
    );
    assert_all_files_match(env, &out);
}

#[test]
fn wrong_root_hash_powers_off() {
    let Some(env) = env() else { return };
    let first = env.reference.as_bytes()[0];
    let flipped = if first == b'0' { '1' } else { '0' };
    let reference = format!("{flipped}{}", &env.reference[1..]);
    let out = boot(
        env,
        "wrong-root",
        &model_word(IDENTITY, &reference),
        &env.good,
    );
    assert_fatal(&out, "as erofs on /models/mpk-test/tiny-guest");
}

#[test]
fn wrong_identity_powers_off() {
    let Some(env) = env() else { return };
    let other = "mpk-test/tiny-guest@1111111111111111111111111111111111111111";
    let u = mpk_guest::cmdline::identity_uuid(other);
    let (root_and_h, _) = env.reference.rsplit_once('_').unwrap();
    let reference = format!("{root_and_h}_{u}");
    let out = boot(
        env,
        "wrong-identity",
        &model_word(other, &reference),
        &env.good,
    );
    assert_fatal(&out, &format!("no disk carries EROFS UUID {u}"));
}

#[test]
fn uuid_not_matching_identity_is_refused_before_any_disk() {
    let Some(env) = env() else { return };
    let u =
        mpk_guest::cmdline::identity_uuid("someone/else@2222222222222222222222222222222222222222");
    let (root_and_h, _) = env.reference.rsplit_once('_').unwrap();
    let reference = format!("{root_and_h}_{u}");
    let out = boot(
        env,
        "uuid-mismatch",
        &model_word(IDENTITY, &reference),
        &env.good,
    );
    assert_fatal(&out, "does not match the identity");
    assert_fatal(&out, "refusing before touching any disk");
    // Not even the disk driver was loaded.
    assert!(!out.contains("mpk-init: loaded"), "console:\n{out}");
    assert!(!out.contains("vda"), "console:\n{out}");
}
