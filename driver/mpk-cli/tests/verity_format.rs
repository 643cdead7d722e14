//! Differential tests: `mpk verity format` against `veritysetup format`
//! (cryptsetup 2.6.1) with the same options on the same seeded random data.
//! Whole hash files (whole combined files in the same-file layout), root
//! hashes and root-hash files must be identical. Error cases are checked
//! for a clear message (and, when veritysetup is present, that it fails
//! too).

mod common;

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// Where the hash area goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// A separate HASH file, optionally pre-filled with `prefill` random
    /// bytes (the same for both tools), at this hash offset.
    Separate {
        hash_offset: u64,
        prefill: Option<usize>,
    },
    /// HASH is DATA; the hash offset is `hash_offset` or, if `None`, the
    /// data size rounded up to 512 (the .mpk case when the data is whole
    /// blocks).
    SameFile { hash_offset: Option<u64> },
}

#[derive(Debug, Clone, Copy)]
struct Case {
    seed: u64,
    blocks: u64,
    /// Bytes of a trailing partial block (ignored by both tools).
    tail: usize,
    salt_len: usize,
    superblock: bool,
    layout: Layout,
    /// `--data-blocks`, if given.
    data_blocks: Option<u64>,
}

impl Case {
    fn new(seed: u64, blocks: u64, salt_len: usize, superblock: bool, layout: Layout) -> Self {
        Self {
            seed,
            blocks,
            tail: 0,
            salt_len,
            superblock,
            layout,
            data_blocks: None,
        }
    }
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// `len` bytes of test data, cheap even for 64 MiB in a debug build: a
/// seeded 256 KiB random pool, repeated, with each 4096-byte block stamped
/// with its index so that no two blocks are equal.
fn random_data(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let pool = random_bytes(rng, 64 * 4096);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        let n = (len - v.len()).min(pool.len());
        v.extend_from_slice(&pool[..n]);
    }
    for (i, block) in v.chunks_mut(4096).enumerate() {
        let n = block.len().min(8);
        block[..n].copy_from_slice(&(i as u64).to_le_bytes()[..n]);
    }
    v
}

fn random_uuid(rng: &mut StdRng) -> String {
    let h = hex::encode(random_bytes(rng, 16));
    let u = format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    );
    // veritysetup accepts either case; so must mpk.
    if rng.gen_bool(0.25) {
        u.to_uppercase()
    } else {
        u
    }
}

/// Fails with the first differing offset rather than dumping megabytes.
fn assert_same_file(a: &Path, b: &Path, what: &str) {
    let (x, y) = (fs::read(a).unwrap(), fs::read(b).unwrap());
    if x != y {
        let first = x.iter().zip(&y).position(|(p, q)| p != q);
        panic!(
            "{what}: {} ({} bytes) and {} ({} bytes) differ; first difference at {:?}",
            a.display(),
            x.len(),
            b.display(),
            y.len(),
            first
        );
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The root hash veritysetup prints ("Root hash:  <hex>").
fn veritysetup_root(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(|r| r.trim().to_owned())
        .unwrap_or_else(|| panic!("no root hash in veritysetup output\n{}", text(o)))
}

/// Paths of one tool's run.
struct Run {
    data: PathBuf,
    hash: PathBuf,
    root_file: PathBuf,
}

/// Prepares both tools' files for `case`; returns the per-tool paths and the
/// shared option list.
fn prepare(dir: &Path, case: &Case) -> (Run, Run, Vec<String>) {
    let mut rng = StdRng::seed_from_u64(case.seed);
    let data = random_data(&mut rng, case.blocks as usize * 4096 + case.tail);
    let salt = random_bytes(&mut rng, case.salt_len);
    let uuid = random_uuid(&mut rng);
    let mut opts = vec![
        format!(
            "--salt={}",
            if salt.is_empty() {
                "-".to_owned()
            } else {
                hex::encode(&salt)
            }
        ),
        format!("--uuid={uuid}"),
    ];
    if !case.superblock {
        opts.push("--no-superblock".into());
    }
    if let Some(n) = case.data_blocks {
        opts.push(format!("--data-blocks={n}"));
    }
    let run = |tag: &str| -> Run {
        let data_path = dir.join(format!("{tag}.img"));
        let root_file = dir.join(format!("{tag}.root"));
        match case.layout {
            Layout::Separate { prefill, .. } => {
                let shared = dir.join("data.img");
                if !shared.exists() {
                    fs::write(&shared, &data).unwrap();
                }
                let hash = dir.join(format!("{tag}.hash"));
                if let Some(len) = prefill {
                    let fill = random_data(&mut StdRng::seed_from_u64(case.seed ^ 0xf111), len);
                    fs::write(&hash, fill).unwrap();
                }
                Run {
                    data: shared,
                    hash,
                    root_file,
                }
            }
            Layout::SameFile { .. } => {
                fs::write(&data_path, &data).unwrap();
                Run {
                    data: data_path.clone(),
                    hash: data_path,
                    root_file,
                }
            }
        }
    };
    let (v, m) = (run("veritysetup"), run("mpk"));
    let hash_offset = match case.layout {
        Layout::Separate { hash_offset, .. } => hash_offset,
        Layout::SameFile { hash_offset } => {
            hash_offset.unwrap_or((data.len() as u64).div_ceil(512) * 512)
        }
    };
    opts.push(format!("--hash-offset={hash_offset}"));
    (v, m, opts)
}

/// `format DATA HASH OPTS --root-hash-file=F`, as given to both tools.
fn format_args(r: &Run, opts: &[String]) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![
        "format".into(),
        r.data.clone().into(),
        r.hash.clone().into(),
    ];
    a.extend(opts.iter().map(OsString::from));
    a.push(format!("--root-hash-file={}", r.root_file.display()).into());
    a
}

/// Runs both tools on `case`. Returns `false` if both failed (the caller
/// decides whether that was expected); panics if only one failed or if
/// their outputs differ.
fn compare(veritysetup: &Path, case: &Case) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let (v, m, opts) = prepare(dir.path(), case);
    let vo = Command::new(veritysetup)
        .args(format_args(&v, &opts))
        .output()
        .unwrap();
    let mo = common::mpk()
        .arg("verity")
        .args(format_args(&m, &opts))
        .output()
        .unwrap();
    let ctx = format!("{case:?} {opts:?}");
    match (vo.status.success(), mo.status.success()) {
        (true, true) => {}
        (false, false) => return false,
        _ => panic!(
            "{ctx}: only one tool failed\nveritysetup {}\nmpk {}",
            text(&vo),
            text(&mo)
        ),
    }
    let root = veritysetup_root(&vo);
    assert_eq!(
        String::from_utf8_lossy(&mo.stdout),
        format!("{root}\n"),
        "{ctx}: root hash"
    );
    assert_same_file(
        &v.root_file,
        &m.root_file,
        &format!("{ctx}: root hash file"),
    );
    assert_eq!(fs::read(&m.root_file).unwrap(), root.as_bytes(), "{ctx}");
    assert_same_file(&v.hash, &m.hash, &format!("{ctx}: hash file"));
    // Files the tools create get the same permissions (0600).
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for (a, b) in [(&v.hash, &m.hash), (&v.root_file, &m.root_file)] {
        assert_eq!(mode(a), mode(b), "{ctx}: mode of {}", b.display());
    }
    true
}

fn veritysetup() -> Option<PathBuf> {
    common::tool("veritysetup")
}

const SALTS: [usize; 4] = [0, 1, 32, 256];

/// Every combination for the small edge sizes (one, two hash levels).
fn small_matrix(blocks: &[u64]) {
    let Some(vs) = veritysetup() else { return };
    let mut n = 0;
    for &b in blocks {
        for (si, salt_len) in SALTS.into_iter().enumerate() {
            for superblock in [true, false] {
                let seed = b * 100 + si as u64 * 10 + superblock as u64;
                let separate = Layout::Separate {
                    hash_offset: 0,
                    prefill: None,
                };
                let same = Layout::SameFile { hash_offset: None };
                for layout in [separate, same] {
                    assert!(compare(
                        &vs,
                        &Case::new(seed, b, salt_len, superblock, layout)
                    ));
                    n += 1;
                }
            }
        }
    }
    eprintln!("{n} cases identical");
}

#[test]
fn edge_sizes_one_level() {
    small_matrix(&[1, 2, 127, 128]);
}

#[test]
fn edge_sizes_two_levels() {
    small_matrix(&[129, 130, 255, 256, 257]);
}

/// 16384 blocks (two full levels) and 16385 (the first three-level tree):
/// 64 MiB each, so a covering subset rather than the full matrix.
#[test]
fn large_sizes() {
    let Some(vs) = veritysetup() else { return };
    let mpk_file = Layout::SameFile { hash_offset: None };
    let cases = [
        Case::new(16384, 16384, 32, true, mpk_file),
        Case::new(
            16385,
            16385,
            256,
            false,
            Layout::Separate {
                hash_offset: 0,
                prefill: None,
            },
        ),
        Case {
            tail: 1000,
            data_blocks: Some(16385),
            ..Case::new(
                16386,
                16385,
                0,
                true,
                Layout::Separate {
                    hash_offset: 4608,
                    prefill: None,
                },
            )
        },
        Case {
            tail: 4095,
            ..Case::new(16387, 16385, 1, true, mpk_file)
        },
    ];
    for c in &cases {
        assert!(compare(&vs, c), "{c:?} failed");
    }
}

/// `--data-blocks`: fewer than the data holds (also overwriting the rest of
/// the data in the same-file layout, which veritysetup allows), all of it,
/// and 0 (veritysetup: "use the whole device").
#[test]
fn explicit_data_blocks() {
    let Some(vs) = veritysetup() else { return };
    for (i, (data_blocks, superblock)) in [
        (300, true),
        (300, false),
        (335, true),
        (0, true),
        (1, false),
        (129, true),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 7000 + i as u64;
        let separate = Layout::Separate {
            hash_offset: 0,
            prefill: None,
        };
        let same = Layout::SameFile {
            hash_offset: Some(data_blocks.max(1) * 4096),
        };
        let same = if data_blocks == 0 {
            Layout::SameFile { hash_offset: None }
        } else {
            same
        };
        for layout in [separate, same] {
            let c = Case {
                tail: 123,
                data_blocks: Some(data_blocks),
                ..Case::new(seed, 335, 32, superblock, layout)
            };
            assert!(compare(&vs, &c), "{c:?} failed");
        }
    }
}

/// A pre-existing HASH file: veritysetup never truncates it, keeps every
/// byte it does not write (including the rest of the superblock's 4096-byte
/// block), zero-fills holes, and extends it as needed. Offsets around block
/// boundaries, with and without superblock.
#[test]
fn existing_hash_file_and_offsets() {
    let Some(vs) = veritysetup() else { return };
    let mut n = 0;
    for (i, hash_offset) in [0u64, 512, 3584, 4096, 4608, 8192, 12800, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let big = (hash_offset == 1 << 20).then_some(2_000_000);
        for prefill in [None, Some(100), Some(5000), Some(100_000), big] {
            for superblock in [true, false] {
                let seed = 9000 + i as u64 * 100 + prefill.unwrap_or(0) as u64 + superblock as u64;
                let c = Case::new(
                    seed,
                    200,
                    32,
                    superblock,
                    Layout::Separate {
                        hash_offset,
                        prefill,
                    },
                );
                assert!(compare(&vs, &c), "{c:?} failed");
                n += 1;
            }
        }
    }
    eprintln!("{n} cases identical");
}

/// One data block means no tree. With a superblock not aligned to 4096,
/// veritysetup 2.6.1 can only write it when the file already reaches the
/// superblock's end; mpk must fail (and succeed) in exactly the same cases.
#[test]
fn single_block_superblock_edge() {
    let Some(vs) = veritysetup() else { return };
    for (hash_offset, prefill, ok) in [
        (0, None, true),
        (8192, None, true),
        (8192, Some(9000), true),
        (512, None, false),
        (512, Some(1), false),
        (512, Some(1023), false),
        (512, Some(1024), true),
        (4608, Some(5000), false),
        (4608, Some(5120), true),
        (3584, Some(100_000), true),
    ] {
        for salt_len in [0, 32] {
            let c = Case::new(
                11,
                1,
                salt_len,
                true,
                Layout::Separate {
                    hash_offset,
                    prefill,
                },
            );
            assert_eq!(compare(&vs, &c), ok, "{c:?}");
        }
    }
}

/// Seeded random sizes (with and without a trailing partial block), salts,
/// offsets, layouts and pre-existing hash files.
#[test]
fn random_cases() {
    let Some(vs) = veritysetup() else { return };
    let mut rng = StdRng::seed_from_u64(0x7665_7269_7479);
    for i in 0..24 {
        let blocks = match i % 4 {
            0 => rng.gen_range(1..=3),
            1 => rng.gen_range(4..=300),
            _ => rng.gen_range(300..=6000),
        };
        let tail = if rng.gen_bool(0.5) {
            rng.gen_range(1..4096)
        } else {
            0
        };
        let salt_len = match rng.gen_range(0..5) {
            0..=3 => SALTS[rng.gen_range(0..4)],
            _ => rng.gen_range(0..=256),
        };
        let superblock = rng.gen_bool(0.6);
        let data_size = blocks * 4096 + tail as u64;
        let layout = if rng.gen_bool(0.5) {
            let extra = rng.gen_range(0..16) * 512;
            Layout::SameFile {
                hash_offset: Some(data_size.div_ceil(512) * 512 + extra),
            }
        } else {
            let prefill = rng.gen_bool(0.3).then(|| rng.gen_range(1..200_000));
            Layout::Separate {
                hash_offset: rng.gen_range(0..64) * 512,
                prefill,
            }
        };
        let data_blocks = match rng.gen_range(0..4) {
            0 => Some(rng.gen_range(1..=blocks)),
            _ => None,
        };
        let c = Case {
            seed: 100 + i,
            blocks,
            tail,
            salt_len,
            superblock,
            layout,
            data_blocks,
        };
        // The one failure veritysetup has on valid input (see above): no
        // tree, an unaligned superblock, and a file not reaching its end.
        let (hash_offset, existing) = match layout {
            Layout::Separate {
                hash_offset,
                prefill,
            } => (hash_offset, prefill.unwrap_or(0) as u64),
            Layout::SameFile { hash_offset } => (hash_offset.unwrap(), data_size),
        };
        let n = data_blocks.unwrap_or(blocks);
        let fails = superblock && n == 1 && hash_offset % 4096 != 0 && existing < hash_offset + 512;
        assert_eq!(compare(&vs, &c), !fails, "{c:?}");
    }
}

// ---- errors: a clear message from mpk, and veritysetup refuses too ----

/// Runs mpk (and veritysetup when present) on 10 random data blocks with
/// the options (HASH = DATA if `same_file`); both must fail, and mpk's
/// message must contain every `needle`.
fn assert_refused(same_file: bool, opts: &[&str], needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.img");
    fs::write(
        &data,
        random_bytes(&mut StdRng::seed_from_u64(5), 10 * 4096),
    )
    .unwrap();
    let hash = if same_file {
        data.clone()
    } else {
        dir.path().join("hash.img")
    };
    let mut args: Vec<OsString> = vec!["format".into(), data.into(), hash.into()];
    args.extend(opts.iter().map(OsString::from));
    let mo = common::mpk().arg("verity").args(&args).output().unwrap();
    assert_eq!(mo.status.code(), Some(2), "mpk on {opts:?}\n{}", text(&mo));
    assert!(mo.stdout.is_empty(), "{}", text(&mo));
    let err = String::from_utf8_lossy(&mo.stderr);
    for n in needles {
        assert!(
            err.contains(n),
            "mpk message for {opts:?} lacks {n:?}: {err}"
        );
    }
    if let Some(vs) = veritysetup() {
        let vo = Command::new(vs).args(&args).output().unwrap();
        assert!(
            !vo.status.success(),
            "veritysetup accepted {opts:?}\n{}",
            text(&vo)
        );
    }
}

const UUID: &str = "--uuid=12345678-1234-5678-9abc-def012345678";

#[test]
fn error_hash_offset_not_multiple_of_512() {
    for off in [
        "--hash-offset=100",
        "--hash-offset=4097",
        "--hash-offset=1000",
    ] {
        assert_refused(
            false,
            &["--salt=00", UUID, off],
            &["--hash-offset", "multiple of 512"],
        );
        assert_refused(
            false,
            &["--salt=00", UUID, off, "--no-superblock"],
            &["multiple of 512"],
        );
    }
}

#[test]
fn error_bad_salt_hex() {
    for salt in ["--salt=zz", "--salt=abc", "--salt=0", "--salt=12 34"] {
        assert_refused(false, &[salt, UUID], &["invalid --salt", "hex"]);
    }
}

#[test]
fn error_salt_too_long() {
    let long = format!("--salt={}", "ab".repeat(257));
    assert_refused(false, &[&long, UUID], &["257 bytes", "at most 256"]);
}

#[test]
fn error_other_cases() {
    assert_refused(
        false,
        &["--salt=00", "--uuid=nonsense"],
        &["invalid --uuid"],
    );
    assert_refused(
        false,
        &["--salt=00", UUID, "--data-blocks=11"],
        &["--data-blocks 11", "10 whole"],
    );
    // Same file, hash area inside the data.
    assert_refused(true, &["--salt=00", UUID], &["overlaps"]);
    assert_refused(
        true,
        &["--salt=00", UUID, "--hash-offset=36864"],
        &["overlaps"],
    );
    assert_refused(
        true,
        &["--salt=00", UUID, "--hash-offset=36864", "--no-superblock"],
        &["overlaps"],
    );
}

#[test]
fn error_too_small_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("small.img");
    fs::write(&data, [1u8; 4095]).unwrap();
    let o = common::mpk()
        .args(["verity", "format"])
        .arg(&data)
        .arg(dir.path().join("h"))
        .args(["--salt=-", UUID])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no whole 4096-byte block"),
        "{}",
        text(&o)
    );
}

/// Modelwrap's schema-2 image carries cryptsetup 2.7.5 and freezes verity
/// across schemas: 2.7.5's `veritysetup format` (from
/// `$MPK_VERITYSETUP_275`, as `.ci/run` unpacks Debian trixie's) must give
/// the same hash area and root as mpk (and so as 2.6.1, the tests above)
/// for the parameters a pack uses (hash area after the data in the same
/// file, superblock, 32-byte salt), around every level boundary, plus the
/// separate-file and other-salt layouts of the small matrix.
#[test]
fn veritysetup_2_7_5_matches_for_pack_parameters() {
    let Some(vs) = mpk_testutil::tool_from_env("MPK_VERITYSETUP_275", "veritysetup 2.7.5") else {
        return;
    };
    let mut n = 0;
    for (i, blocks) in [1u64, 2, 127, 128, 129, 16_384, 16_385, 40_000]
        .into_iter()
        .enumerate()
    {
        let same = Layout::SameFile { hash_offset: None };
        assert!(compare(
            &vs,
            &Case::new(900 + i as u64, blocks, 32, true, same)
        ));
        n += 1;
    }
    for (i, salt_len) in SALTS.into_iter().enumerate() {
        for superblock in [true, false] {
            let separate = Layout::Separate {
                hash_offset: 0,
                prefill: None,
            };
            let c = Case::new(950 + i as u64, 129, salt_len, superblock, separate);
            assert!(compare(&vs, &c));
            n += 1;
        }
    }
    eprintln!("{n} cases identical to veritysetup 2.7.5");
}
