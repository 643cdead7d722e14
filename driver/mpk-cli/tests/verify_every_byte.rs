//! `mpk verify` catches every single-byte change of a small but complete
//! `.mpk`: every byte of every block that is not a file's full data block
//! (EROFS superblock and metadata, inline tails, a tail block, the verity
//! superblock and its padding, every hash block of a two-level tree) is
//! flipped in turn, and each full data block at its first, last and one
//! inner byte (they are opaque hashed bytes; flipping all of them would
//! make the test quadratic). Every flip must fail; restored, it must pass.

mod common;

use camino::Utf8PathBuf;
use mpk_model::{Identity, Reference};
use mpk_pack::verify::verify;
use std::os::unix::fs::FileExt;

#[test]
fn every_single_byte_flip_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir_all(model.join("sub")).unwrap();
    std::fs::write(model.join("config.json"), b"{\"a\":1}\n").unwrap();
    let weights: Vec<u8> = (0..3 * 4096 + 100).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(model.join("weights.bin"), &weights).unwrap();
    // 4065-byte tail: does not fit beside its inode, so it gets a tail block.
    std::fs::write(model.join("sub/tailblock.bin"), vec![0xAB; 4096 + 4065]).unwrap();
    std::fs::write(model.join("sub/empty"), b"").unwrap();
    // Enough blocks for two hash levels would need >128 data blocks; with
    // ~140 blocks the tree has a leaf level of 2 blocks and a top block.
    std::fs::write(model.join("big.bin"), vec![0x5A; 136 * 4096]).unwrap();

    let id = "acme/every-byte@00112233445566778899aabbccddeeff00112233";
    let out = tmp.path().join("m.mpk");
    let o = common::mpk()
        .arg("pack")
        .arg(&model)
        .args(["--identity", id, "--json", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r: Reference = report["reference"].as_str().unwrap().parse().unwrap();
    let mut full_data = std::collections::HashSet::new();
    for f in report["files"].as_array().unwrap() {
        if let Some(first) = f["first_block"].as_u64() {
            full_data.extend(first..first + f["size"].as_u64().unwrap() / 4096);
        }
    }
    assert!(
        full_data.len() >= 140,
        "fixture has {} full data blocks",
        full_data.len()
    );
    let identity: Identity = id.parse().unwrap();
    let image = Utf8PathBuf::from_path_buf(out.clone()).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let geometry = mpk_verity::TreeGeometry::new(r.hash_offset / 4096).unwrap();
    assert_eq!(
        geometry.levels(),
        2,
        "the fixture should exercise two tree levels"
    );

    verify(&image, &r, &identity, &pool).expect("the untampered pack verifies");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&out)
        .unwrap();
    let len = file.metadata().unwrap().len();
    let mut missed = Vec::new();
    let mut b = [0u8; 1];
    let offsets = (0..len).filter(|off| {
        let (blk, inb) = (off / 4096, off % 4096);
        !full_data.contains(&blk) || inb == 0 || inb == 4095 || inb == (blk * 97) % 4096
    });
    let mut flips = 0;
    for off in offsets {
        flips += 1;
        file.read_exact_at(&mut b, off).unwrap();
        file.write_all_at(&[b[0] ^ 0x01], off).unwrap();
        if verify(&image, &r, &identity, &pool).is_ok() {
            missed.push(off);
        }
        file.write_all_at(&b, off).unwrap();
    }
    assert!(flips > 6 * 4096, "only {flips} flips");
    assert!(
        missed.is_empty(),
        "{} of {flips} single-byte flips went unnoticed, first at {:?}",
        missed.len(),
        missed.first()
    );
    verify(&image, &r, &identity, &pool).expect("restored pack verifies again");
}
