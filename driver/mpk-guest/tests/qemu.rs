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
//!
//! Encrypted models (issue 8): the fixture is also encrypted with the real
//! CLI code (`mpk keygen`, `mpk encrypt`), and the key reaches the guest as
//! `/run/mpk/keys/<partuuid>` in an initrd variant, or through
//! `mpk.keyagent=` (mpk-guest-check's agent mode, which copies a staged
//! key). Every encrypted boot also checks that no key byte reaches the
//! console.
//!
//! Base images (issue 6): the initrd `mpk initrd` writes from the same init,
//! check program and modules boots the good model too.

use camino::Utf8PathBuf;
use mpk_testutil::static_build::build_static;
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
    // dm-crypt with xts(aes): xts has a soft dependency on ecb; aes-generic
    // is built in (CONFIG_CRYPTO_AES=y), so TCG needs no AES-NI;
    // `modinfo -F depends` lists only dm-mod for dm-crypt and nothing for
    // xts or ecb in 6.1.
    "ecb",
    "xts",
    "dm-crypt",
    "libcrc32c",
    "erofs",
];
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const WEIGHTS_BLOCKS: usize = 768;

struct Env {
    kernel: PathBuf,
    initrd: PathBuf,
    /// The initrd's entries, to build variants with extra files.
    base_initrd: mpk_guest::cpio::Initrd,
    /// What went into it: the static init, the check program and the
    /// modules in load order (for the `mpk initrd` variant).
    init_bin: PathBuf,
    check_bin: PathBuf,
    module_files: Vec<PathBuf>,
    work: PathBuf,
    good: PathBuf,
    reference: String,
    hash_offset: u64,
    /// Relative path → sha256 of the source files.
    sources: BTreeMap<String, String>,
    weights: Vec<u8>,
    /// The fixture encrypted with `key` (`mpk encrypt`).
    empk: PathBuf,
    /// Its encrypted reference `<root>_<H>_<partuuid>`.
    enc_reference: String,
    /// The GPT partition GUID.
    partuuid: String,
    /// The master key (`mpk keygen`) and another one.
    key: Vec<u8>,
    wrong_key: Vec<u8>,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn require_tools() -> bool {
    mpk_testutil::tools_required()
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
    let mut module_files = Vec::new();
    for m in MODULES {
        let f = find_file(&x.join("lib/modules"), &format!("{m}.ko"))
            .ok_or_else(|| format!("module {m}.ko not in {}", deb.display()))?;
        module_files.push(f.clone());
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
    let base_initrd = initrd.clone();
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
    let utf8 = |p: &Path| {
        Utf8PathBuf::from_path_buf(p.to_path_buf())
            .map(|p| p.to_string())
            .map_err(|p| format!("{p:?}"))
    };
    let report = mpk_pack::pack::pack(
        mpk_pack::pack::PackOptions {
            input: mpk_pack::pack::PackInput::Folder {
                dir: Utf8PathBuf::from(utf8(&model)?),
                symlinks: mpk_pack::scan::Symlinks::Contained,
            },
            identity: IDENTITY.parse().map_err(|e| format!("{e}"))?,
            schema: Default::default(),
            output: Utf8PathBuf::from(utf8(&good)?),
            threads: Some(1),
            force: true,
            backend: mpk_pack::pack::Backend::Native,
            hash_files: false,
            key: None,
            expected: None,
        },
        &mpk_pack::Silent,
    )
    .map_err(|e| format!("{e:#}"))?;

    // The encrypted fixture, made by the CLI's own code.
    let mut keys = Vec::new();
    for name in ["fixture/master.key", "fixture/other.key"] {
        let k = work.join(name);
        let _ = std::fs::remove_file(&k);
        mpk_cli::run(mpk_cli::Cli {
            command: cli(&["keygen", "-o", &utf8(&k)?])?,
        })
        .map_err(|e| format!("mpk keygen: {e:#}"))?;
        keys.push(read(&k)?);
    }
    let empk = work.join("fixture/enc.empk");
    let info = good.with_extension("info");
    mpk_cli::run(mpk_cli::Cli {
        command: cli(&[
            "encrypt",
            &utf8(&good)?,
            "--ref",
            &utf8(&info)?,
            "--identity",
            IDENTITY,
            "--key-file",
            &utf8(&work.join("fixture/master.key"))?,
            "-o",
            &utf8(&empk)?,
            "--force",
        ])?,
    })
    .map_err(|e| format!("mpk encrypt: {e:#}"))?;
    let enc_reference = String::from_utf8(read(&empk.with_extension("info"))?)
        .map_err(|e| e.to_string())?
        .trim()
        .to_string();
    let partuuid = enc_reference.rsplit('_').next().unwrap().to_string();
    assert_eq!(
        partuuid,
        IDENTITY
            .parse::<mpk_model::Identity>()
            .unwrap()
            .partition_uuid()
            .hyphenated()
            .to_string()
    );
    let wrong_key = keys.pop().unwrap();
    let key = keys.pop().unwrap();
    Ok(Env {
        kernel,
        initrd: initrd_path,
        base_initrd,
        init_bin: bins.join("mpk-init"),
        check_bin: bins.join("mpk-guest-check"),
        module_files,
        work,
        good,
        reference: report.reference,
        hash_offset: report.hash_offset,
        sources,
        weights,
        empk,
        enc_reference,
        partuuid,
        key,
        wrong_key,
    })
}

/// Parses `mpk ARGS…` with the CLI's own parser.
fn cli(args: &[&str]) -> Result<mpk_cli::Command, String> {
    use clap::Parser;
    mpk_cli::Cli::try_parse_from(std::iter::once("mpk").chain(args.iter().copied()))
        .map(|c| c.command)
        .map_err(|e| format!("mpk {args:?}: {e}"))
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
    boot_with(env, label, extra, disk, &env.initrd).0
}

/// [`boot`] with another initrd; also returns the raw console bytes.
fn boot_with(env: &Env, label: &str, extra: &str, disk: &Path, initrd: &Path) -> (String, Vec<u8>) {
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
        .arg(initrd)
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
        s
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
    let raw = out_t.join().unwrap();
    let out = String::from_utf8_lossy(&raw).into_owned();
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
    (out, raw)
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

/// The logged verity table maps every data block of the reference and
/// starts the hash tree one block past them (never the on-disk superblock's
/// numbers).
fn assert_whole_verity_table(env: &Env, out: &str) {
    let n = env.hash_offset / 4096;
    assert!(
        out.contains(&format!(" 4096 4096 {n} {} sha256 ", n + 1)),
        "console:\n{out}"
    );
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
    assert_whole_verity_table(env, &out);
    assert!(out.contains("ro,nodev,nosuid,noexec"), "console:\n{out}");
}

/// Issue 6: the initrd `mpk initrd` writes (what the Nix base images use:
/// modules under /lib/modules/mpk/, /etc/mpk/modules in the order given)
/// boots the same model.
#[test]
fn initrd_from_mpk_initrd_boots_the_good_model() {
    let Some(env) = env() else { return };
    let p = env.work.join("initrd-cli.cpio");
    let utf8 = |p: &Path| p.to_str().unwrap().to_string();
    let mut args = vec![
        "initrd".to_string(),
        "--init".into(),
        utf8(&env.init_bin),
        "--file".into(),
        format!("{}:/bin/mpk-guest-check", utf8(&env.check_bin)),
        "-o".into(),
        utf8(&p),
        "--force".into(),
    ];
    for m in &env.module_files {
        args.push("--module".into());
        args.push(utf8(m));
    }
    let command = cli(&args.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    mpk_cli::run(mpk_cli::Cli { command }).unwrap();
    let (out, _) = boot_with(
        env,
        "cli-initrd",
        &model_word(IDENTITY, &env.reference),
        &env.good,
        &p,
    );
    assert!(
        out.contains(&format!("mpk-init: loaded {} modules", MODULES.len())),
        "console:\n{out}"
    );
    assert_all_files_match(env, &out);
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
    assert_whole_verity_table(env, &out);
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
    let u = other.parse::<mpk_model::Identity>().unwrap().uuid();
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
    let u = "someone/else@2222222222222222222222222222222222222222"
        .parse::<mpk_model::Identity>()
        .unwrap()
        .uuid();
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

/// The base initrd plus `files` (path, bytes), written as
/// `initrd-<label>.cpio`.
fn initrd_with(env: &Env, label: &str, files: &[(String, Vec<u8>)]) -> PathBuf {
    let mut i = env.base_initrd.clone();
    for (path, data) in files {
        i.file(path, 0o600, data.clone()).unwrap();
    }
    let p = env.work.join(format!("initrd-{label}.cpio"));
    std::fs::write(&p, i.to_bytes()).unwrap();
    p
}

/// The initrd with `key` at `/run/mpk/keys/<partuuid>`.
fn initrd_with_key(env: &Env, label: &str, key: &[u8]) -> PathBuf {
    let path = format!("run/mpk/keys/{}", env.partuuid);
    initrd_with(env, label, &[(path, key.to_vec())])
}

fn crypt_word(env: &Env) -> String {
    format!(
        "mpk.model={IDENTITY}:{}:crypt mpk.next=/bin/mpk-guest-check",
        env.enc_reference
    )
}

/// Neither master key (raw, or as hex in either case) nor the derived
/// dm-crypt key (raw or hex) appears anywhere in the console output.
fn assert_no_key(env: &Env, raw: &[u8]) {
    let root: [u8; 32] = hex::decode(&env.enc_reference[..64])
        .unwrap()
        .try_into()
        .unwrap();
    let part: uuid::Uuid = env.partuuid.parse().unwrap();
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    for k in [&env.key, &env.wrong_key] {
        let derived = mpk_crypt::MasterKey::from_bytes(k)
            .unwrap()
            .derive(&root, &part);
        for bytes in [k.as_slice(), derived.expose().as_slice()] {
            // Whole keys and each 16-byte quarter, raw and as hex.
            let mut parts = vec![bytes.to_vec()];
            parts.extend(bytes.chunks(16).map(<[u8]>::to_vec));
            for p in parts {
                secrets.push(hex::encode(&p).into_bytes());
                secrets.push(hex::encode_upper(&p).into_bytes());
                secrets.push(p);
            }
        }
    }
    for s in &secrets {
        assert!(
            !raw.windows(s.len()).any(|w| w == s.as_slice()),
            "key material on the console"
        );
    }
}

fn assert_keys_consumed(out: &str) {
    assert!(
        out.contains("mpk-check: /run/mpk/keys holds 0 files"),
        "the key file was not deleted; console:\n{out}"
    );
}

#[test]
fn encrypted_model_opens_with_the_right_key() {
    let Some(env) = env() else { return };
    let initrd = initrd_with_key(env, "key", &env.key);
    let (out, raw) = boot_with(env, "enc-good", &crypt_word(env), &env.empk, &initrd);
    assert_no_key(env, &raw);
    assert_all_files_match(env, &out);
    assert_keys_consumed(&out);
    assert!(
        out.contains(&format!(
            "master key read from /run/mpk/keys/{}",
            env.partuuid
        )),
        "console:\n{out}"
    );
    // The table as logged: key redacted, payload from sector 2048, 4096-byte
    // sectors; verity on the crypt device with the plain model's numbers.
    let crypt = format!(
        "-> mpk-crypt-{}: dm table `0 {} crypt aes-xts-plain64 <key> 0 ",
        env.partuuid,
        (env.hash_offset + 4096 + tree_len(env.hash_offset)) / 512
    );
    assert!(out.contains(&crypt), "missing `{crypt}`; console:\n{out}");
    assert!(out.contains(" 2048 1 sector_size:4096`"), "console:\n{out}");
    assert_whole_verity_table(env, &out);
    assert!(out.contains("ro,nodev,nosuid,noexec"), "console:\n{out}");
}

#[test]
fn encrypted_model_with_the_wrong_key_powers_off() {
    let Some(env) = env() else { return };
    let initrd = initrd_with_key(env, "wrong-key", &env.wrong_key);
    let (out, raw) = boot_with(env, "enc-wrong-key", &crypt_word(env), &env.empk, &initrd);
    assert_no_key(env, &raw);
    assert_fatal(
        &out,
        &format!(
            "the decrypted pack does not verify against the root hash (wrong master key in /run/mpk/keys/{}, or a damaged or different pack): reading block 0 of /dev/dm-1: Input/output error",
            env.partuuid
        ),
    );
    // Noise from the wrong key: the first hash block read already fails.
    assert!(
        out.contains("device-mapper: verity: 253:0: metadata block"),
        "console:\n{out}"
    );
}

#[test]
fn flipped_ciphertext_byte_fails_that_file_only() {
    let Some(env) = env() else { return };
    let img = std::fs::read(&env.good).unwrap();
    let b = weights_block(env, &img, WEIGHTS_BLOCKS / 2);
    let mut enc = std::fs::read(&env.empk).unwrap();
    enc[(1 << 20) + b * 4096 + 100] ^= 0x01;
    let disk = env.work.join("fixture/enc-data-byte.empk");
    std::fs::write(&disk, enc).unwrap();
    let initrd = initrd_with_key(env, "key", &env.key);
    let (out, raw) = boot_with(env, "enc-data-byte", &crypt_word(env), &disk, &initrd);
    assert_no_key(env, &raw);
    assert!(
        out.contains(&format!("data block {b} is corrupted")),
        "console:\n{out}"
    );
    assert_only_weights_fail(env, &out);
}

#[test]
fn missing_key_file_powers_off() {
    let Some(env) = env() else { return };
    let (out, raw) = boot_with(env, "enc-no-key", &crypt_word(env), &env.empk, &env.initrd);
    assert_no_key(env, &raw);
    assert_fatal(
        &out,
        &format!(
            "master key /run/mpk/keys/{}: cannot open it: No such file or directory",
            env.partuuid
        ),
    );
    // Refused before any device was mapped.
    assert!(!out.contains("dm table"), "console:\n{out}");
}

#[test]
fn key_agent_delivers_the_key() {
    let Some(env) = env() else { return };
    // Staged where only the agent looks; /run/mpk/keys starts empty.
    let staged = format!("etc/mpk-check/keys/{}", env.partuuid);
    let initrd = initrd_with(env, "agent", &[(staged, env.key.clone())]);
    let word = format!("{} mpk.keyagent=/bin/mpk-guest-check", crypt_word(env));
    let (out, raw) = boot_with(env, "enc-agent", &word, &env.empk, &initrd);
    assert_no_key(env, &raw);
    let ran = format!("mpk-agent: delivered {} to /run/mpk/keys", env.partuuid);
    assert!(out.contains(&ran), "missing `{ran}`; console:\n{out}");
    assert_all_files_match(env, &out);
    assert_keys_consumed(&out);
}

#[test]
fn failing_key_agent_powers_off() {
    let Some(env) = env() else { return };
    // Nothing staged: the agent exits 3.
    // (Its own lines start `mpk-agent:`, so assert_fatal's "no mpk-check:
    // line" still shows that nothing was handed over to.)
    let word = format!("{} mpk.keyagent=/bin/mpk-guest-check", crypt_word(env));
    let (out, raw) = boot_with(env, "enc-agent-fails", &word, &env.empk, &env.initrd);
    assert_no_key(env, &raw);
    assert_fatal(
        &out,
        "key agent /bin/mpk-guest-check: exit status: 3; refusing to continue without keys",
    );
}

/// Hash tree bytes (without the superblock block) of an image of
/// `hash_offset` bytes.
fn tree_len(hash_offset: u64) -> u64 {
    mpk_model::reference::tree_bytes(hash_offset / 4096).unwrap()
}
