//! `pack_checked`: files whose single-pass SHA-256 differs from the
//! expected list (as `mpk build` passes the lock's) leave no output at all.

use camino::Utf8PathBuf;
use mpk_cli::cmd_pack::{Backend, PackArgs, pack_checked};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

fn setup() -> (tempfile::TempDir, PackArgs, BTreeMap<String, String>) {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir_all(model.join("sub")).unwrap();
    let files = [("a.bin", vec![1u8; 9000]), ("sub/b.json", b"{}\n".to_vec())];
    let mut expected = BTreeMap::new();
    for (p, d) in &files {
        std::fs::write(model.join(p), d).unwrap();
        expected.insert(p.to_string(), hex::encode(Sha256::digest(d)));
    }
    let args = PackArgs {
        dir: Utf8PathBuf::from_path_buf(model).unwrap(),
        identity: "acme/checked@00112233445566778899aabbccddeeff00112233"
            .parse()
            .unwrap(),
        output: Utf8PathBuf::from_path_buf(tmp.path().join("m.mpk")).unwrap(),
        threads: Some(2),
        json: false,
        force: false,
        backend: Backend::Native,
        quiet: true,
        encrypt: false,
        key_file: None,
    };
    (tmp, args, expected)
}

fn outputs(tmp: &tempfile::TempDir) -> Vec<String> {
    std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "model")
        .collect()
}

#[test]
fn matching_hashes_pack() {
    let (tmp, args, expected) = setup();
    let r = pack_checked(&args, false, Some(&expected)).unwrap();
    assert_eq!(r.files.len(), 2);
    let mut o = outputs(&tmp);
    o.sort();
    assert_eq!(o, ["m.info", "m.mpk"]);
}

#[test]
fn a_wrong_hash_leaves_nothing() {
    let (tmp, args, mut expected) = setup();
    expected.insert("sub/b.json".into(), "00".repeat(32));
    let e = pack_checked(&args, false, Some(&expected)).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("sub/b.json") && msg.contains("nothing was written"),
        "{msg}"
    );
    assert!(outputs(&tmp).is_empty(), "{:?}", outputs(&tmp));
}

#[test]
fn a_missing_or_extra_file_leaves_nothing() {
    let (tmp, args, expected) = setup();
    let mut more = expected.clone();
    more.insert("gone.txt".into(), "11".repeat(32));
    let msg = format!("{:#}", pack_checked(&args, false, Some(&more)).unwrap_err());
    assert!(msg.contains("gone.txt") && msg.contains("missing"), "{msg}");
    let mut fewer = expected;
    fewer.remove("a.bin");
    let msg = format!(
        "{:#}",
        pack_checked(&args, false, Some(&fewer)).unwrap_err()
    );
    assert!(
        msg.contains("a.bin") && msg.contains("not in the expected"),
        "{msg}"
    );
    assert!(outputs(&tmp).is_empty(), "{:?}", outputs(&tmp));
}

#[test]
fn encrypted_pack_checks_hashes_before_writing() {
    let (tmp, mut args, mut expected) = setup();
    let key = tmp.path().join("k");
    std::fs::write(&key, [7u8; 64]).unwrap();
    args.encrypt = true;
    args.key_file = Some(Utf8PathBuf::from_path_buf(key).unwrap());
    args.output = args.output.with_extension("empk");
    let r = pack_checked(&args, false, Some(&expected)).unwrap();
    let enc = r.encryption.expect("an encryption report");
    let mut o = outputs(&tmp);
    o.sort();
    assert_eq!(o, ["k", "m.empk", "m.info"]);
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("m.info")).unwrap(),
        enc.encrypted_reference
    );
    for f in ["m.empk", "m.info"] {
        std::fs::remove_file(tmp.path().join(f)).unwrap();
    }
    expected.insert("a.bin".into(), "00".repeat(32));
    let msg = format!(
        "{:#}",
        pack_checked(&args, false, Some(&expected)).unwrap_err()
    );
    assert!(
        msg.contains("a.bin") && msg.contains("nothing was written"),
        "{msg}"
    );
    assert_eq!(outputs(&tmp), ["k"]);
}
