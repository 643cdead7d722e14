//! `mpk verify`: an untouched image verifies; one flipped byte anywhere in
//! the data (file blocks, tail blocks, the EROFS superblock) or in the hash
//! tree fails, naming the first bad block, its offset and the file owning
//! it; a flipped verity superblock is reported while the data is still
//! checked against the reference (never against the on-disk superblock).

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::Output;

use common::tree::{
    BLOCK, Schema, info_path, mkdir, mpk_pack_ok, output_text, parse_reference, random_bytes,
    reference_pack_as, test_identity, write,
};

const MODEL_BLOCKS: usize = 6;
const SHARD_BLOCKS: usize = 170;

/// A packed image with known file placement.
struct Fixture {
    _tmp: tempfile::TempDir,
    image: PathBuf,
    reference: String,
    identity: String,
    /// EROFS image size = hash offset.
    h: u64,
    /// First block of `weights/model.bin` (MODEL_BLOCKS full blocks).
    model: u64,
    /// First block of `big/shard.bin` (SHARD_BLOCKS full blocks).
    shard: u64,
    /// Tail block of `tail-case.bin` (4065 bytes, no full block).
    tail: u64,
}

fn find_block(image: &[u8], h: u64, want: &[u8]) -> u64 {
    let hits: Vec<u64> = (0..h / BLOCK)
        .filter(|&b| {
            let s = (b * BLOCK) as usize;
            image[s..s + want.len()] == *want
                && image[s + want.len()..s + BLOCK as usize]
                    .iter()
                    .all(|&x| x == 0)
        })
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "expected one block holding the data, found {hits:?}"
    );
    hits[0]
}

fn fixture() -> Fixture {
    fixture_as(Schema::V1)
}

/// The fixture packed with `schema` (the reader that names files must
/// read both layouts).
fn fixture_as(schema: Schema) -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    mkdir(&src);
    let model = random_bytes(11, MODEL_BLOCKS * BLOCK as usize);
    let shard = random_bytes(12, SHARD_BLOCKS * BLOCK as usize);
    let tail = random_bytes(13, 4065);
    write(&src.join("config.json"), b"{\"model_type\": \"test\"}\n");
    write(&src.join("weights/model.bin"), &model);
    write(&src.join("big/shard.bin"), &shard);
    write(&src.join("tail-case.bin"), &tail);
    write(&src.join("weights/small.txt"), b"small");
    let identity = test_identity(500);
    let image = tmp.path().join("model.mpk");
    // The reference pipeline builds the image when it can, so these tests
    // exercise `mpk verify` independently of `mpk pack`.
    let args: &[&str] = match schema {
        Schema::V1 => &[],
        Schema::V2 => &["--schema", "modelwrap-v2"],
    };
    let reference = match reference_pack_as(schema, &src, &identity, &image) {
        Some(r) => r,
        None => mpk_pack_ok(&src, &identity, &image, args)
            .trim_end()
            .to_owned(),
    };
    let (_, h, _) = parse_reference(&reference);
    let bytes = fs::read(&image).expect("read image");
    let first = |data: &[u8]| find_block(&bytes, h, &data[..BLOCK as usize]);
    let (m, s) = (first(&model), first(&shard));
    let t = find_block(&bytes, h, &tail);
    assert!(h / BLOCK > 128, "fixture should need two hash levels");
    let f = Fixture {
        _tmp: tmp,
        image,
        reference,
        identity,
        h,
        model: m,
        shard: s,
        tail: t,
    };
    // Every tamper test starts from an image that verifies, so a failure
    // afterwards is the tampering's doing.
    assert_ok(&f.verify());
    f
}

impl Fixture {
    fn verify_with(&self, reference: &str, identity: &str) -> Output {
        common::mpk()
            .arg("verify")
            .arg(&self.image)
            .arg("--ref")
            .arg(reference)
            .arg("--identity")
            .arg(identity)
            .output()
            .expect("run mpk verify")
    }

    fn verify(&self) -> Output {
        self.verify_with(&self.reference, &self.identity)
    }

    fn flip(&self, offset: u64) {
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.image)
            .expect("open image");
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(offset)).expect("seek");
        f.read_exact(&mut b).expect("read");
        b[0] ^= 0x5a;
        f.seek(SeekFrom::Start(offset)).expect("seek");
        f.write_all(&b).expect("write");
    }

    fn set_u64(&self, offset: u64, v: u64) {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(&self.image)
            .expect("open image");
        f.seek(SeekFrom::Start(offset)).expect("seek");
        f.write_all(&v.to_le_bytes()).expect("write");
    }

    fn image_len(&self) -> u64 {
        fs::metadata(&self.image).expect("stat").len()
    }
}

fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "mpk verify should pass:\n{}",
        output_text(o)
    );
}

fn assert_failed(o: &Output) -> String {
    let text = output_text(o);
    assert!(!o.status.success(), "mpk verify should fail:\n{text}");
    assert_ne!(o.status.code(), Some(101), "mpk verify panicked:\n{text}");
    assert!(
        o.status.code().is_some(),
        "mpk verify was killed by a signal:\n{text}"
    );
    assert!(!text.contains("panicked"), "mpk verify panicked:\n{text}");
    text
}

/// True if `text` says "block N" (allowing `block #N`, `block: N`,
/// `block=N`, any case), with N not followed by another digit.
fn mentions_block(text: &str, n: u64) -> bool {
    let lower = text.to_ascii_lowercase();
    let want = n.to_string();
    lower.match_indices("block").any(|(i, _)| {
        let rest = lower[i + 5..].trim_start_matches([' ', '#', ':', '=']);
        rest.starts_with(&want) && !rest[want.len()..].starts_with(|c: char| c.is_ascii_digit())
    })
}

/// True if `text` holds the number `v` in decimal or hex (0x…).
fn mentions_number(text: &str, v: u64) -> bool {
    let lower = text.to_ascii_lowercase();
    let dec = v.to_string();
    let hex = format!("0x{v:x}");
    let whole = |needle: &str| {
        lower.match_indices(needle).any(|(i, _)| {
            let before = lower[..i].chars().next_back();
            let after = lower[i + needle.len()..].chars().next();
            !before.is_some_and(|c| c.is_ascii_alphanumeric())
                && !after.is_some_and(|c| c.is_ascii_hexdigit())
        })
    };
    whole(&dec) || whole(&hex)
}

fn assert_names_block(text: &str, block: u64, path: Option<&str>, flipped: u64) {
    assert!(
        mentions_block(text, block),
        "message should name block {block}:\n{text}"
    );
    assert!(
        mentions_number(text, block * BLOCK) || mentions_number(text, flipped),
        "message should give the byte offset {} (or {flipped}):\n{text}",
        block * BLOCK
    );
    if let Some(p) = path {
        assert!(text.contains(p), "message should name {p}:\n{text}");
    }
}

// -------------------------------------------------------------- untouched --

#[test]
fn untampered_verifies_with_reference_string() {
    let f = fixture();
    assert_ok(&f.verify());
}

#[test]
fn untampered_verifies_with_info_path() {
    let f = fixture();
    let info = info_path(&f.image);
    assert_eq!(fs::read_to_string(&info).expect("info"), f.reference);
    assert_ok(&f.verify_with(info.to_str().expect("UTF-8"), &f.identity));
}

#[test]
fn wrong_identity_fails() {
    let f = fixture();
    assert_failed(&f.verify_with(&f.reference, &test_identity(501)));
    // Same org/name, other revision.
    let (org_name, _) = f.identity.split_once('@').expect("@");
    let other = format!("{org_name}@{}", "0".repeat(40));
    assert_failed(&f.verify_with(&f.reference, &other));
}

#[test]
fn wrong_reference_fails() {
    let f = fixture();
    let (root, h, uuid) = parse_reference(&f.reference);
    let mut bad_root = root.clone().into_bytes();
    bad_root[0] = if bad_root[0] == b'0' { b'1' } else { b'0' };
    let bad_root = String::from_utf8(bad_root).expect("ascii");
    for r in [
        format!("{bad_root}_{h}_{uuid}"),
        format!("{root}_{}_{uuid}", h + BLOCK),
        format!("{root}_{}_{uuid}", h - BLOCK),
        format!("{root}_{h}_00000000-0000-5000-8000-000000000000"),
        "garbage".to_owned(),
        String::new(),
    ] {
        assert_failed(&f.verify_with(&r, &f.identity));
    }
}

#[test]
fn truncated_image_fails() {
    let f = fixture();
    let len = f.image_len();
    fs::OpenOptions::new()
        .write(true)
        .open(&f.image)
        .expect("open")
        .set_len(len - BLOCK)
        .expect("truncate");
    assert_failed(&f.verify());
}

#[test]
fn missing_image_fails() {
    let f = fixture();
    fs::remove_file(&f.image).expect("rm");
    assert_failed(&f.verify());
}

// ------------------------------------------------------------ data blocks --

#[test]
fn data_block_flip_names_file_block_and_offset() {
    let f = fixture();
    let block = f.model + 2;
    let off = block * BLOCK + 123;
    f.flip(off);
    // (Reporting the shrunk superblock too would be welcome, not required.)
    let text = assert_failed(&f.verify());
    assert_names_block(&text, block, Some("weights/model.bin"), off);
}

#[test]
fn modelwrap_v2_data_and_tail_block_flips_name_the_file() {
    let f = fixture_as(Schema::V2);
    let block = f.model + 2;
    let off = block * BLOCK + 123;
    f.flip(off);
    let text = assert_failed(&f.verify());
    assert_names_block(&text, block, Some("weights/model.bin"), off);
    let f = fixture_as(Schema::V2);
    let off = f.tail * BLOCK + 7;
    f.flip(off);
    let text = assert_failed(&f.verify());
    assert_names_block(&text, f.tail, Some("tail-case.bin"), off);
    let f = fixture_as(Schema::V2);
    let b = f.shard + SHARD_BLOCKS as u64 - 1;
    f.flip(b * BLOCK + BLOCK - 1);
    let text = assert_failed(&f.verify());
    assert_names_block(&text, b, Some("big/shard.bin"), b * BLOCK + BLOCK - 1);
}

#[test]
fn first_and_last_block_of_a_file() {
    for (which, block) in [("first", 0u64), ("last", SHARD_BLOCKS as u64 - 1)] {
        let f = fixture();
        let b = f.shard + block;
        let off = b * BLOCK + if which == "first" { 0 } else { BLOCK - 1 };
        f.flip(off);
        // (Reporting the shrunk superblock too would be welcome, not required.)
        let text = assert_failed(&f.verify());
        assert_names_block(&text, b, Some("big/shard.bin"), off);
    }
}

#[test]
fn tail_block_flip_names_file() {
    let f = fixture();
    let off = f.tail * BLOCK + 7;
    f.flip(off);
    // (Reporting the shrunk superblock too would be welcome, not required.)
    let text = assert_failed(&f.verify());
    assert_names_block(&text, f.tail, Some("tail-case.bin"), off);
}

#[test]
fn tail_block_padding_flip_names_file() {
    // The zero padding after a tail is still covered by verity.
    let f = fixture();
    let off = f.tail * BLOCK + 4090;
    f.flip(off);
    // (Reporting the shrunk superblock too would be welcome, not required.)
    let text = assert_failed(&f.verify());
    assert_names_block(&text, f.tail, Some("tail-case.bin"), off);
}

#[test]
fn first_bad_block_is_reported() {
    let f = fixture();
    let a = f.model + MODEL_BLOCKS as u64 - 1;
    let b = f.shard + 100;
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let path = if lo == a {
        "weights/model.bin"
    } else {
        "big/shard.bin"
    };
    f.flip(hi * BLOCK + 9);
    f.flip(lo * BLOCK + 9);
    // (Reporting the shrunk superblock too would be welcome, not required.)
    let text = assert_failed(&f.verify());
    assert_names_block(&text, lo, Some(path), lo * BLOCK + 9);
}

#[test]
fn erofs_superblock_flip_names_block_0() {
    for off in [1024u64, 1024 + 36, 1024 + 48, 1100, 1151] {
        let f = fixture();
        f.flip(off);
        // (Reporting the shrunk superblock too would be welcome, not required.)
        let text = assert_failed(&f.verify());
        assert_names_block(&text, 0, None, off);
    }
}

#[test]
fn metadata_flip_fails() {
    // Bytes 0..1023 (zero) and the inodes after the superblock in block 0.
    for off in [0u64, 1000, 1152, 2000] {
        let f = fixture();
        f.flip(off);
        // (Reporting the shrunk superblock too would be welcome, not required.)
        let text = assert_failed(&f.verify());
        assert!(
            mentions_block(&text, 0),
            "message should name block 0:\n{text}"
        );
    }
}

#[test]
fn last_data_block_flip_fails() {
    let f = fixture();
    let block = f.h / BLOCK - 1;
    f.flip(block * BLOCK + 4095);
    // (Reporting the shrunk superblock too would be welcome, not required.)
    let text = assert_failed(&f.verify());
    assert!(
        mentions_block(&text, block),
        "message should name block {block}:\n{text}"
    );
}

// ------------------------------------------------------------ hash blocks --

#[test]
fn hash_block_flips_fail() {
    // Two levels: H+4096 is the top block, then the leaf blocks.
    // Every fixture is built the same way, so offsets carry over.
    let probe = fixture();
    let (h, end) = (probe.h, probe.image_len());
    let hash_blocks = (end - h - BLOCK) / BLOCK;
    assert!(
        hash_blocks >= 3,
        "expected a top block and two leaves, got {hash_blocks}"
    );
    drop(probe);
    for off in [
        h + BLOCK + 10,     // top level, first digest
        h + BLOCK + 4000,   // top level, zero padding
        h + 2 * BLOCK + 31, // first leaf block
        end - 1,            // last leaf block, zero padding
    ] {
        let f = fixture();
        assert_eq!((f.h, f.image_len()), (h, end));
        f.flip(off);
        // (Reporting the shrunk superblock too would be welcome, not required.)
        let text = assert_failed(&f.verify());
        eprintln!("hash flip at {off}: {}", text.trim_end());
    }
}

// ------------------------------------------------------- verity superblock --

#[test]
fn verity_superblock_flip_reported() {
    // signature, version, hash_type, uuid, algorithm, data_block_size,
    // hash_block_size, data_blocks, salt_size, salt, reserved bytes.
    for rel in [0u64, 8, 12, 20, 33, 64, 68, 72, 80, 90, 300, 400, 511] {
        let f = fixture();
        f.flip(f.h + rel);
        let o = f.verify();
        let text = output_text(&o);
        assert_ne!(o.status.code(), Some(101), "mpk verify panicked:\n{text}");
        assert!(
            text.to_ascii_lowercase().contains("superblock"),
            "a flipped verity superblock byte ({rel}) must be reported:\n{text}"
        );
    }
}

#[test]
fn verity_superblock_padding_flip_reported() {
    // The 4096-byte superblock block is zero after byte 512.
    for rel in [512u64, 3000, 4095] {
        let f = fixture();
        f.flip(f.h + rel);
        let o = f.verify();
        let text = output_text(&o);
        assert!(
            text.to_ascii_lowercase().contains("superblock"),
            "a flipped byte in the verity superblock block ({rel}) must be reported:\n{text}"
        );
    }
}

#[test]
fn superblock_shrink_attack_still_checks_all_data() {
    // An attacker shrinks data_blocks and tampers with the blocks beyond;
    // mpk verify must take the size from the reference, not the superblock.
    let f = fixture();
    f.set_u64(f.h + 72, 1);
    let block = f.shard + SHARD_BLOCKS as u64 - 1;
    f.flip(block * BLOCK + 1);
    // (Reporting the shrunk superblock too would be welcome, not required.)
    let text = assert_failed(&f.verify());
    assert!(
        mentions_block(&text, block),
        "the tampered block {block} must be named:\n{text}"
    );
    assert!(
        text.contains("big/shard.bin"),
        "message should name big/shard.bin:\n{text}"
    );
}

#[test]
fn superblock_only_tamper_keeps_data_verified() {
    // With only the superblock changed, the data still checks out against
    // the reference: the report must not blame a data block.
    let f = fixture();
    f.set_u64(f.h + 72, 1);
    let o = f.verify();
    let text = output_text(&o);
    assert!(text.to_ascii_lowercase().contains("superblock"), "{text}");
    assert!(
        !text.contains("weights/model.bin") && !text.contains("big/shard.bin"),
        "no file is damaged, yet one was blamed:\n{text}"
    );
}
