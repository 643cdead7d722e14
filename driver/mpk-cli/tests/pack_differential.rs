//! `mpk pack` against the reference pipeline (`mkfs.erofs` 1.5 +
//! `veritysetup format`), byte for byte: seeded random trees, hand-made
//! layout edge cases, a sparse file over 4 GiB, thread counts,
//! normalisation of raw trees, and `--json`.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::Instant;

use common::tree::{
    self, BLOCK, TreeOptions, compare_files, differential, identity_salt_hex, identity_uuid,
    info_path, list_files, mkdir, mpk_pack_ok, parse_reference, random_bytes, reference_pack,
    set_mode, test_identity, write,
};
use sha2::{Digest, Sha256};

/// Runs [`differential`] and panics with its description on a mismatch.
fn assert_matches_reference(dir: &Path, identity: &str) {
    let work = tempfile::tempdir().expect("tempdir");
    match differential(dir, identity, work.path(), &[]) {
        Ok(Some(reference)) => eprintln!("ok: {reference}"),
        Ok(None) => eprintln!("SKIP: reference tools missing"),
        Err(e) => panic!("mpk pack differs from the reference pipeline: {e}"),
    }
}

fn fresh_tree() -> (tempfile::TempDir, std::path::PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().join("tree");
    mkdir(&root);
    (t, root)
}

// ---------------------------------------------------------------- harness --

#[test]
fn identity_helpers_match_published_uuids() {
    // Published Modelwrap references (see modelwrap.md).
    assert_eq!(
        identity_uuid(
            "hf-internal-testing/tiny-random-GPT2Model@d6694b0d8fe17978761c9305dc151780506b192e"
        ),
        "905785b4-b198-5ed6-b97d-e7c36a0be1df"
    );
    assert_eq!(
        identity_uuid("google/gemma-4-31B-it@439edf5652646a0d1bd8b46bfdc1d3645761a445"),
        "27fb23ac-db9b-5e25-991a-90fdf2c9b3a7"
    );
    assert_eq!(
        identity_salt_hex("x"),
        "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
    );
}

#[test]
fn generator_is_deterministic() {
    let t = tempfile::tempdir().expect("tempdir");
    let a = t.path().join("a");
    let b = t.path().join("b");
    let sa = tree::random_tree(&a, 7);
    let sb = tree::random_tree(&b, 7);
    assert_eq!(sa, sb);
    let fa = list_files(&a);
    let fb = list_files(&b);
    assert_eq!(fa.len(), fb.len());
    for ((ra, pa), (rb, pb)) in fa.iter().zip(&fb) {
        assert_eq!(ra, rb);
        assert_eq!(
            fs::read(pa).expect("read"),
            fs::read(pb).expect("read"),
            "{ra}"
        );
    }
}

/// The reference pipeline itself is reproducible (a harness self-check).
#[test]
fn reference_pipeline_is_reproducible() {
    let (_t, root) = fresh_tree();
    tree::random_tree(&root, 1234);
    let work = tempfile::tempdir().expect("tempdir");
    let id = test_identity(1234);
    let a = work.path().join("a.mpk");
    let b = work.path().join("b.mpk");
    let Some(ra) = reference_pack(&root, &id, &a) else {
        return;
    };
    let rb = reference_pack(&root, &id, &b).expect("tools present");
    assert_eq!(ra, rb);
    let (_, h, uuid) = parse_reference(&ra);
    assert_eq!(uuid, identity_uuid(&id));
    compare_files(&a, &b, Some(h)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fs::read(info_path(&a)).expect("info"), ra.as_bytes());
}

/// The comparison reports the first differing offset and its region.
#[test]
fn compare_files_reports_first_difference() {
    let t = tempfile::tempdir().expect("tempdir");
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let mut data = random_bytes(9, 5 << 20);
    fs::write(&a, &data).expect("write");
    fs::write(&b, &data).expect("write");
    compare_files(&a, &b, None).expect("equal files");
    let h = 4 << 20;
    for (off, region) in [
        (3 * 4096 + 5, "EROFS block 3"),
        (h + 80, "verity superblock byte 80"),
        (h + 3 * 4096 + 7, "hash block 2"),
    ] {
        data[off] ^= 1;
        fs::write(&b, &data).expect("write");
        let e = compare_files(&a, &b, Some(h as u64)).expect_err("differs");
        assert!(e.contains(&format!("offset {off} ")), "{e}");
        assert!(e.contains(region), "{e}");
        data[off] ^= 1;
    }
    data.truncate(data.len() - 1);
    fs::write(&b, &data).expect("write");
    let e = compare_files(&a, &b, None).expect_err("shorter");
    assert!(e.contains("sizes differ"), "{e}");
}

// ------------------------------------------------------------ random trees --

#[test]
fn random_trees_match_reference() {
    let mut failures = Vec::new();
    let start = Instant::now();
    for seed in 0..25u64 {
        let (_t, root) = fresh_tree();
        // Vary the shape: some trees wide and shallow, some deep, some with
        // more data.
        let opts = match seed % 5 {
            0 => TreeOptions {
                max_entries: 900,
                max_bytes: 256 << 10,
                max_depth: 3,
            },
            1 => TreeOptions {
                max_entries: 300,
                max_bytes: 2 << 20,
                max_depth: 6,
            },
            2 => TreeOptions {
                max_entries: 60,
                max_bytes: 512 << 10,
                max_depth: 8,
            },
            _ => TreeOptions::default(),
        };
        let stats = tree::random_tree_with(&root, seed, opts);
        let id = test_identity(seed);
        let work = tempfile::tempdir().expect("tempdir");
        let t0 = Instant::now();
        match differential(&root, &id, work.path(), &[]) {
            Ok(Some(_)) => eprintln!("seed {seed}: ok {stats:?} in {:?}", t0.elapsed()),
            Ok(None) => {
                eprintln!("SKIP: reference tools missing");
                return;
            }
            Err(e) => {
                eprintln!("seed {seed}: MISMATCH {stats:?}: {e}");
                failures.push(format!("seed {seed} {stats:?}: {e}"));
            }
        }
    }
    eprintln!("25 trees in {:?}", start.elapsed());
    assert!(
        failures.is_empty(),
        "{} of 25 random trees differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------- edge cases --

#[test]
fn empty_dir() {
    let (_t, root) = fresh_tree();
    assert_matches_reference(&root, &test_identity(100));
}

#[test]
fn single_empty_file() {
    let (_t, root) = fresh_tree();
    write(&root.join("empty"), b"");
    assert_matches_reference(&root, &test_identity(101));
}

#[test]
fn one_4096_byte_file() {
    let (_t, root) = fresh_tree();
    write(&root.join("block.bin"), &random_bytes(1, 4096));
    assert_matches_reference(&root, &test_identity(102));
}

#[test]
fn file_4065_bytes_tail_block() {
    let (_t, root) = fresh_tree();
    write(&root.join("tail.bin"), &random_bytes(2, 4065));
    assert_matches_reference(&root, &test_identity(103));
}

#[test]
fn edge_sizes_each_alone_and_together() {
    let (_t, all) = fresh_tree();
    for (i, &size) in tree::EDGE_SIZES.iter().enumerate() {
        let len = usize::try_from(size).expect("usize");
        write(
            &all.join(format!("f{size}")),
            &random_bytes(10 + i as u64, len),
        );
        let (_t1, one) = fresh_tree();
        write(&one.join("f"), &random_bytes(10 + i as u64, len));
        assert_matches_reference(&one, &test_identity(104));
    }
    assert_matches_reference(&all, &test_identity(105));
}

/// Writes files into `dir` so its dirents ("." and ".." included) take
/// exactly `target` bytes (27 < target ≤ 4096, not 28..=39).
fn dirents_of_size(dir: &Path, target: usize, with_data: bool) {
    let mut remaining = target - 27; // "." = 13, ".." = 14
    let mut i = 0;
    while remaining > 54 {
        let name = format!("n{i:029}"); // 30 bytes: 42 with its dirent
        let data = if with_data {
            random_bytes(i, i as usize % 100)
        } else {
            Vec::new()
        };
        write(&dir.join(name), &data);
        remaining -= 42;
        i += 1;
    }
    if remaining > 0 {
        assert!(remaining >= 13, "unreachable dirent size {target}");
        write(&dir.join("z".repeat(remaining - 12)), b"last");
    }
}

#[test]
fn root_inline_dirents_over_2912_bytes() {
    // Root tail > 2912 bytes moves the root inode out of block 0's first
    // slot (root nid >= 128); 4064/4065 are the inline/tail-block limit and
    // 4096 a full block with no tail.
    for (k, target) in [2912usize, 2913, 3000, 3500, 4064, 4065, 4096]
        .into_iter()
        .enumerate()
    {
        let (_t, root) = fresh_tree();
        dirents_of_size(&root, target, k % 2 == 0);
        eprintln!("root dirents {target}");
        assert_matches_reference(&root, &test_identity(110 + k as u64));
    }
}

#[test]
fn subfolder_dirent_sizes() {
    let (_t, root) = fresh_tree();
    for target in [2912usize, 2913, 4000, 4064, 4065, 4096] {
        let sub = root.join(format!("d{target}"));
        mkdir(&sub);
        dirents_of_size(&sub, target, target % 2 == 1);
    }
    write(&root.join("after"), &random_bytes(3, 5000));
    assert_matches_reference(&root, &test_identity(120));
}

#[test]
fn folder_with_300_entries() {
    let (_t, root) = fresh_tree();
    let big = root.join("big");
    mkdir(&big);
    for i in 0..300u64 {
        let name = format!("entry-{i:04}-{}", "x".repeat((i % 40) as usize));
        let len = if i % 7 == 0 {
            (i * 37 % 5000) as usize
        } else {
            0
        };
        write(&big.join(name), &random_bytes(i, len));
    }
    mkdir(&big.join("zz-sub"));
    write(&big.join("zz-sub/inner"), b"inner");
    write(&root.join("sibling.txt"), b"sibling");
    assert_matches_reference(&root, &test_identity(121));
}

#[test]
fn deep_nesting_40_levels() {
    let (_t, root) = fresh_tree();
    let mut p = root.clone();
    for level in 0..40 {
        p.push(format!("level{level:02}"));
        mkdir(&p);
        if level % 5 == 0 {
            write(&p.join("f.txt"), format!("level {level}").as_bytes());
        }
    }
    write(&p.join("bottom.bin"), &random_bytes(40, 4097));
    assert_matches_reference(&root, &test_identity(122));
}

#[test]
fn names_sorting_before_dot() {
    let (_t, root) = fresh_tree();
    let names = [
        " lead", "!bang", "#hash", "$dollar", "%pct", "&amp", "'q", "(p", ")p", "+plus", ",comma",
        "-dash", "-", "...", "..a", ".a", ".hidden", "~tilde", "é", "日本", "a", "Z", "_u",
    ];
    for (i, n) in names.iter().enumerate() {
        write(&root.join(n), &random_bytes(i as u64, i * 300));
    }
    for n in [" dir", "!dir", "-dir", "...dir"] {
        mkdir(&root.join(n));
        for (i, m) in names.iter().enumerate().take(8) {
            write(&root.join(n).join(m), &random_bytes(i as u64, i));
        }
    }
    assert_matches_reference(&root, &test_identity(123));
}

#[test]
fn long_and_utf8_names() {
    let (_t, root) = fresh_tree();
    write(&root.join("a".repeat(254)), b"254");
    let mut s = "日本".repeat(42); // 252 bytes
    s.push('é'); // 254
    write(&root.join(&s), b"utf8-254");
    let sub = root.join("b".repeat(200));
    mkdir(&sub);
    write(&sub.join("c".repeat(254)), &random_bytes(5, 6000));
    assert_matches_reference(&root, &test_identity(124));
}

#[test]
fn many_empty_files_and_empty_folders() {
    let (_t, root) = fresh_tree();
    for i in 0..150 {
        write(&root.join(format!("e{i}")), b"");
    }
    for i in 0..40 {
        mkdir(&root.join(format!("d{i}")));
    }
    assert_matches_reference(&root, &test_identity(125));
}

/// A 4 GiB + 12345 byte sparse file: extended (64-byte) inode, inline tail
/// of 57 bytes. Costs about 8 GiB of disk writes and 2 × 4 GiB of hashing.
#[test]
fn sparse_file_over_4gib() {
    if common::tool("mkfs.erofs").is_none() || common::tool("veritysetup").is_none() {
        return;
    }
    let (_t, root) = fresh_tree();
    let big = root.join("big.bin");
    let size = (4u64 << 30) + 12345;
    {
        let mut f = fs::File::create(&big).expect("create");
        f.set_len(size).expect("set_len");
        let mut offsets = vec![0, 4095, (4u64 << 30) - 3, 4u64 << 30, size - 10];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..6 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            offsets.push(x % (size - 64));
        }
        for (i, off) in offsets.into_iter().enumerate() {
            f.seek(SeekFrom::Start(off)).expect("seek");
            let n = usize::try_from((size - off).min(64)).expect("usize");
            f.write_all(&random_bytes(900 + i as u64, n))
                .expect("write");
        }
    }
    set_mode(&big, 0o644);
    write(&root.join("config.json"), b"{\"big\": true}\n");
    write(&root.join("small.bin"), &random_bytes(901, 9000));
    let t0 = Instant::now();
    assert_matches_reference(&root, &test_identity(126));
    eprintln!("sparse 4 GiB differential in {:?}", t0.elapsed());
}

// ---------------------------------------------------------------- threads --

#[test]
fn threads_give_identical_output() {
    let (_t, root) = fresh_tree();
    tree::random_tree_with(
        &root,
        4242,
        TreeOptions {
            max_entries: 400,
            max_bytes: 3 << 20,
            max_depth: 4,
        },
    );
    // Some multi-block files so the work can be split.
    for i in 0..6u64 {
        write(
            &root.join(format!("shard-{i}.bin")),
            &random_bytes(i, 40_000 + 4096 * i as usize + 17 * i as usize),
        );
    }
    let id = test_identity(4242);
    let work = tempfile::tempdir().expect("tempdir");
    let mut outputs = Vec::new();
    for threads in ["1", "2", "8"] {
        let out = work.path().join(format!("t{threads}")).join("model.mpk");
        fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
        let stdout = mpk_pack_ok(&root, &id, &out, &["--threads", threads]);
        outputs.push((threads, out, stdout));
    }
    let (_, first, first_stdout) = &outputs[0];
    let (_, h, _) = parse_reference(first_stdout.trim_end());
    for (threads, out, stdout) in &outputs[1..] {
        assert_eq!(stdout, first_stdout, "--threads {threads} reference");
        compare_files(first, out, Some(h))
            .unwrap_or_else(|e| panic!("--threads 1 vs --threads {threads}: {e}"));
        assert_eq!(
            fs::read(info_path(first)).expect("info"),
            fs::read(info_path(out)).expect("info")
        );
    }
    let ref_out = work.path().join("ref.mpk");
    if let Some(reference) = reference_pack(&root, &id, &ref_out) {
        assert_eq!(first_stdout.trim_end(), reference);
        compare_files(&ref_out, first, Some(h)).unwrap_or_else(|e| panic!("{e}"));
    }
}

// ---------------------------------------------------------- normalisation --

/// `mpk pack` of `raw` must equal the reference pipeline on `normalised`
/// (built by hand); the harness's own staging of `raw` must agree too.
fn assert_normalises_to(raw: &Path, normalised: &Path, identity: &str) {
    assert_normalises_with(raw, normalised, identity, &[]);
}

/// [`assert_normalises_to`], with extra `mpk pack` arguments.
fn assert_normalises_with(raw: &Path, normalised: &Path, identity: &str, extra: &[&str]) {
    let work = tempfile::tempdir().expect("tempdir");
    let by_hand = work.path().join("hand.mpk");
    let Some(reference) = tree::reference_pack_unstaged(normalised, identity, &by_hand) else {
        return;
    };
    let (_, h, _) = parse_reference(&reference);
    let staged = work.path().join("staged.mpk");
    let staged_ref = reference_pack(raw, identity, &staged).expect("tools present");
    assert_eq!(
        staged_ref, reference,
        "harness staging disagrees with the hand-made tree"
    );
    compare_files(&by_hand, &staged, Some(h)).unwrap_or_else(|e| panic!("harness: {e}"));

    let out = work.path().join("mpk").join("model.mpk");
    fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
    let stdout = mpk_pack_ok(raw, identity, &out, extra);
    assert_eq!(stdout.trim_end(), reference);
    compare_files(&by_hand, &out, Some(h)).unwrap_or_else(|e| panic!("mpk pack: {e}"));
    assert_eq!(
        fs::read(info_path(&out)).expect("info"),
        reference.as_bytes()
    );
}

#[test]
fn normalises_file_mode_0600_and_0755() {
    let t = tempfile::tempdir().expect("tempdir");
    let (raw, norm) = (t.path().join("raw"), t.path().join("norm"));
    for root in [&raw, &norm] {
        write(&root.join("secret.bin"), &random_bytes(1, 5000));
        write(&root.join("script.sh"), b"#!/bin/sh\n");
        write(&root.join("ro.txt"), b"read only");
    }
    set_mode(&raw.join("secret.bin"), 0o600);
    set_mode(&raw.join("script.sh"), 0o755);
    set_mode(&raw.join("ro.txt"), 0o444);
    assert_normalises_to(&raw, &norm, &test_identity(200));
    // The source must be left as it was.
    let mode = fs::metadata(raw.join("secret.bin"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600, "mpk pack changed the source's mode");
}

#[test]
fn normalises_folder_mode_0700_and_root_mode() {
    let t = tempfile::tempdir().expect("tempdir");
    let (raw, norm) = (t.path().join("raw"), t.path().join("norm"));
    for root in [&raw, &norm] {
        write(&root.join("private/inner.txt"), b"inner");
        write(&root.join("top.txt"), b"top");
    }
    set_mode(&raw.join("private"), 0o700);
    set_mode(&raw, 0o700);
    assert_normalises_to(&raw, &norm, &test_identity(201));
    set_mode(&raw, 0o775);
    assert_normalises_to(&raw, &norm, &test_identity(201));
}

#[test]
fn follows_symlink_outside_tree_hf_cache_layout() {
    // Hugging Face cache: snapshots/<rev>/file -> ../../blobs/<hash>.
    let t = tempfile::tempdir().expect("tempdir");
    let repo = t.path().join("models--org--name");
    let rev = "0123456789abcdef0123456789abcdef01234567";
    let snap = repo.join("snapshots").join(rev);
    let blobs = repo.join("blobs");
    let (cfg, weights, tok) = (
        random_bytes(1, 700),
        random_bytes(2, 3 * 4096 + 5),
        random_bytes(3, 4065),
    );
    write(&blobs.join("aaaa"), &cfg);
    write(&blobs.join("bbbb"), &weights);
    write(&blobs.join("cccc"), &tok);
    mkdir(&snap.join("sub"));
    symlink("../../blobs/aaaa", snap.join("config.json")).expect("symlink");
    symlink("../../../blobs/bbbb", snap.join("sub/model.safetensors")).expect("symlink");
    // Absolute link, and a chain link -> link -> file.
    symlink(blobs.join("cccc"), snap.join("tokenizer.json")).expect("symlink");
    symlink("tokenizer.json", snap.join("tok-alias.json")).expect("symlink");
    set_mode(&blobs.join("aaaa"), 0o444);

    let norm = t.path().join("norm");
    write(&norm.join("config.json"), &cfg);
    write(&norm.join("sub/model.safetensors"), &weights);
    write(&norm.join("tokenizer.json"), &tok);
    write(&norm.join("tok-alias.json"), &tok);
    assert_normalises_to(&snap, &norm, &test_identity(202));
}

#[test]
fn hardlinks_become_separate_files() {
    let t = tempfile::tempdir().expect("tempdir");
    let (raw, norm) = (t.path().join("raw"), t.path().join("norm"));
    let data = random_bytes(4, 9000);
    write(&raw.join("a.bin"), &data);
    mkdir(&raw.join("sub"));
    fs::hard_link(raw.join("a.bin"), raw.join("b.bin")).expect("link");
    fs::hard_link(raw.join("a.bin"), raw.join("sub/c.bin")).expect("link");
    write(&raw.join("other"), b"x");
    for n in ["a.bin", "b.bin", "sub/c.bin"] {
        write(&norm.join(n), &data);
    }
    write(&norm.join("other"), b"x");
    assert_normalises_to(&raw, &norm, &test_identity(203));
}

#[test]
fn top_level_cache_folder_left_out() {
    let t = tempfile::tempdir().expect("tempdir");
    let (raw, norm) = (t.path().join("raw"), t.path().join("norm"));
    for root in [&raw, &norm] {
        write(&root.join("model.bin"), &random_bytes(5, 4096 * 2));
        // Only the top-level .cache goes: nested ones stay.
        write(&root.join("sub/.cache/keep.txt"), b"kept");
        write(&root.join(".cachefile"), b"kept too");
    }
    write(
        &raw.join(".cache/huggingface/download/model.bin.metadata"),
        b"etag\n",
    );
    write(&raw.join(".cache/huggingface/.gitignore"), b"*\n");
    assert_normalises_to(&raw, &norm, &test_identity(204));
}

#[test]
fn all_normalisations_together() {
    let t = tempfile::tempdir().expect("tempdir");
    let (raw, norm) = (t.path().join("raw"), t.path().join("norm"));
    tree::random_tree(&raw, 77);
    tree::random_tree(&norm, 77);
    let outside = t.path().join("outside.bin");
    let data = random_bytes(6, 4097);
    write(&outside, &data);
    symlink(&outside, raw.join("linked.bin")).expect("symlink");
    write(&norm.join("linked.bin"), &data);
    fs::hard_link(&outside, raw.join("hard.bin")).expect("link");
    write(&norm.join("hard.bin"), &data);
    write(&raw.join(".cache/x"), b"x");
    set_mode(&raw, 0o700);
    for (rel, p) in list_files(&raw).into_iter().step_by(3) {
        if !rel.starts_with(".cache") {
            set_mode(&p, 0o600);
        }
    }
    set_mode(&outside, 0o640);
    assert_normalises_with(
        &raw,
        &norm,
        &test_identity(205),
        &["--allow-external-symlinks"],
    );
}

// ------------------------------------------------------------------- json --

#[test]
fn json_output() {
    let (_t, root) = fresh_tree();
    tree::random_tree(&root, 31);
    write(&root.join("edge/plain.bin"), &random_bytes(1, 3 * 4096));
    write(&root.join("edge/tail.bin"), &random_bytes(2, 4096 + 4065));
    write(&root.join("edge/only-tail.bin"), &random_bytes(3, 4065));
    write(&root.join("edge/inline.bin"), &random_bytes(4, 100));
    write(&root.join("edge/empty"), b"");
    let id = test_identity(31);
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("m.mpk");
    let stdout = mpk_pack_ok(&root, &id, &out, &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("--json output is not JSON ({e}): {stdout}"));
    let reference = fs::read_to_string(info_path(&out)).expect("info");
    let (root_hash, h, uuid) = parse_reference(&reference);
    assert_eq!(v["reference"], reference.as_str());
    assert_eq!(v["root_hash"], root_hash.as_str());
    assert_eq!(v["hash_offset"], h);
    assert_eq!(v["uuid"], uuid.as_str());
    assert_eq!(uuid, identity_uuid(&id));
    assert_eq!(v["salt"], identity_salt_hex(&id).as_str());
    // The schema tag: 1, "1" or a name such as "modelwrap-v1".
    assert!(
        v["schema"] == 1 || v["schema"].as_str().is_some_and(|s| s.ends_with('1')),
        "schema should name schema 1: {}",
        v["schema"]
    );

    // Same image as without --json.
    let plain = work.path().join("plain.mpk");
    mpk_pack_ok(&root, &id, &plain, &[]);
    compare_files(&plain, &out, Some(h))
        .unwrap_or_else(|e| panic!("--json changed the image: {e}"));

    let mut image = fs::File::open(&out).expect("open image");
    let mut read_block = |b: u64| {
        assert!(b * BLOCK < h, "block {b} is past the EROFS image (H = {h})");
        let mut buf = vec![0u8; BLOCK as usize];
        image.seek(SeekFrom::Start(b * BLOCK)).expect("seek");
        image.read_exact(&mut buf).expect("read block");
        buf
    };
    let files = v["files"].as_array().expect("files is an array");
    let expected = list_files(&root);
    assert_eq!(files.len(), expected.len(), "number of files in --json");
    let mut seen = std::collections::HashMap::new();
    for f in files {
        let path = f["path"].as_str().expect("path is a string");
        seen.insert(path.trim_start_matches('/').to_owned(), f.clone());
    }
    for (rel, p) in &expected {
        let f = seen
            .get(rel)
            .unwrap_or_else(|| panic!("--json lacks {rel:?}"));
        let data = fs::read(p).expect("read");
        let size = data.len() as u64;
        assert_eq!(f["size"], size, "{rel}: size");
        assert_eq!(
            f["sha256"],
            hex::encode(Sha256::digest(&data)).as_str(),
            "{rel}: sha256"
        );
        let full = size / BLOCK;
        let tail = (size % BLOCK) as usize;
        // first_block: the first full data block, null if none.
        if full == 0 {
            assert!(
                f["first_block"].is_null(),
                "{rel}: first_block should be null: {f}"
            );
        } else {
            let b = f["first_block"]
                .as_u64()
                .unwrap_or_else(|| panic!("{rel}: first_block: {f}"));
            assert!(
                read_block(b) == data[..BLOCK as usize],
                "{rel}: block {b} is not its first block"
            );
            let last = b + full - 1;
            assert!(
                read_block(last)
                    == data[(last - b) as usize * BLOCK as usize..full as usize * BLOCK as usize],
                "{rel}: block {last} is not its last full block"
            );
        }
        // tail_block: the block holding the tail: a tail block of its own
        // when the tail does not fit inline (> 4064 bytes), else the block
        // where it sits after the inode; null when there is no tail.
        let tail_data = &data[full as usize * BLOCK as usize..];
        if tail == 0 {
            assert!(
                f["tail_block"].is_null(),
                "{rel}: tail_block should be null: {f}"
            );
        } else {
            let b = f["tail_block"]
                .as_u64()
                .unwrap_or_else(|| panic!("{rel}: tail_block: {f}"));
            let blk = read_block(b);
            if tail > 4064 {
                assert!(blk[..tail] == *tail_data, "{rel}: tail block {b}");
                assert!(
                    blk[tail..].iter().all(|&x| x == 0),
                    "{rel}: tail block {b} padding"
                );
            } else {
                assert!(
                    blk.windows(tail).any(|w| w == tail_data),
                    "{rel}: inline tail not in block {b}"
                );
            }
        }
    }
}

#[test]
fn json_and_plain_reference_match_reference_pipeline() {
    let (_t, root) = fresh_tree();
    tree::random_tree(&root, 32);
    let work = tempfile::tempdir().expect("tempdir");
    match differential(&root, &test_identity(32), work.path(), &["--json"]) {
        Ok(_) => {}
        Err(e) => panic!("{e}"),
    }
}
