//! Golden vectors recorded from the reference tools (see
//! tests/vectors/PROVENANCE.md): the planner alone, and with the verity
//! crate, must reproduce them without running any tool.

use mpk_erofs::{Tree, plan};
use sha2::{Digest, Sha256};

/// formats.md §2 "Test vector you can rebuild": `vec/config.json` =
/// `{"a":1}\n`, `vec/weights.bin` = bytes(i % 251 for i in 0..10000),
/// `vec/sub/readme.txt` = `hello\n`; mkfs.erofs 1.5 with
/// `-T0 -U c1b9d5a2-f162-11cf-9ece-0020afc76f16 --all-root -x -1`.
#[test]
fn formats_md_vector() {
    let config = b"{\"a\":1}\n".to_vec();
    let weights: Vec<u8> = (0..10000u32).map(|i| (i % 251) as u8).collect();
    let readme = b"hello\n".to_vec();
    let mut t = Tree::new(0o755);
    let c = t
        .add_file(Tree::ROOT, b"config.json", 0o644, config.len() as u64)
        .unwrap();
    let w = t
        .add_file(Tree::ROOT, b"weights.bin", 0o644, weights.len() as u64)
        .unwrap();
    let sub = t.add_dir(Tree::ROOT, b"sub", 0o755).unwrap();
    let r = t
        .add_file(sub, b"readme.txt", 0o644, readme.len() as u64)
        .unwrap();
    let contents = |id| match id {
        x if x == c => &config,
        x if x == w => &weights,
        x if x == r => &readme,
        _ => unreachable!(),
    };
    let uuid = [
        0xc1, 0xb9, 0xd5, 0xa2, 0xf1, 0x62, 0x11, 0xcf, 0x9e, 0xce, 0x00, 0x20, 0xaf, 0xc7, 0x6f,
        0x16,
    ];
    let layout = plan(&t, uuid).unwrap();
    let img = layout.to_bytes(|n| contents(n).as_slice());
    assert_eq!(img.len(), 12288);
    assert_eq!(
        hex::encode(Sha256::digest(&img)),
        "02faf3de183acd2d4699cb5ecf149a7c4703510e78a31847d16a00d32ec97d9c",
        "image bytes changed: if intentional, the schema changed"
    );
    let salt: Vec<u8> = (0..32).collect();
    let (root, _) = mpk_verity::build_in_memory(&salt, &img).unwrap();
    assert_eq!(
        hex::encode(root),
        "bed89eb1ed41420b419ee2658b8c9995a9fd60a170a7efe3612656400b01962d"
    );
}
