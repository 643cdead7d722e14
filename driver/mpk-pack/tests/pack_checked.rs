//! The engine alone (no CLI): `pack` with expected hashes (as `mpk build`
//! passes the lock's) leaves no output at all when a file's single-pass
//! SHA-256 differs; what it packs `verify` accepts, block for block, or
//! refuses with a [`Finding`]; and `reproduce` recomputes its reference
//! without writing anything.

use camino::Utf8PathBuf;
use mpk_pack::pack::{Backend, PackInput, PackOptions, PackReport, pack};
use mpk_pack::scan::Symlinks;
use mpk_pack::{Finding, Silent};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The fields of `PackOptions` a test changes; `run` builds the rest.
struct Args {
    dir: Utf8PathBuf,
    output: Utf8PathBuf,
    key: Option<[u8; 64]>,
}

fn run(a: &Args, expected: Option<&BTreeMap<String, String>>) -> anyhow::Result<PackReport> {
    pack(
        PackOptions {
            input: PackInput::Folder {
                dir: a.dir.clone(),
                symlinks: Symlinks::Contained,
            },
            identity: ID.parse().unwrap(),
            schema: Default::default(),
            output: a.output.clone(),
            threads: Some(2),
            force: false,
            backend: Backend::Native,
            hash_files: false,
            key: a.key.map(|k| mpk_crypt::MasterKey::from_bytes(&k).unwrap()),
            expected: expected.cloned(),
        },
        &Silent,
    )
}

const ID: &str = "acme/checked@00112233445566778899aabbccddeeff00112233";

fn setup() -> (tempfile::TempDir, Args, BTreeMap<String, String>) {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir_all(model.join("sub")).unwrap();
    let files = [("a.bin", vec![1u8; 9000]), ("sub/b.json", b"{}\n".to_vec())];
    let mut expected = BTreeMap::new();
    for (p, d) in &files {
        std::fs::write(model.join(p), d).unwrap();
        expected.insert(p.to_string(), hex::encode(Sha256::digest(d)));
    }
    let args = Args {
        dir: Utf8PathBuf::from_path_buf(model).unwrap(),
        output: Utf8PathBuf::from_path_buf(tmp.path().join("m.mpk")).unwrap(),
        key: None,
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
    let r = run(&args, Some(&expected)).unwrap();
    assert_eq!(r.files.len(), 2);
    let mut o = outputs(&tmp);
    o.sort();
    assert_eq!(o, ["m.info", "m.mpk"]);
}

#[test]
fn a_wrong_hash_leaves_nothing() {
    let (tmp, args, mut expected) = setup();
    expected.insert("sub/b.json".into(), "00".repeat(32));
    let e = run(&args, Some(&expected)).unwrap_err();
    assert!(Finding::in_chain(&e), "a wrong hash is a finding: {e:#}");
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
    let msg = format!("{:#}", run(&args, Some(&more)).unwrap_err());
    assert!(msg.contains("gone.txt") && msg.contains("missing"), "{msg}");
    let mut fewer = expected;
    fewer.remove("a.bin");
    let msg = format!("{:#}", run(&args, Some(&fewer)).unwrap_err());
    assert!(
        msg.contains("a.bin") && msg.contains("not in the expected"),
        "{msg}"
    );
    assert!(outputs(&tmp).is_empty(), "{:?}", outputs(&tmp));
}

#[test]
fn encrypted_pack_checks_hashes_before_writing() {
    let (tmp, mut args, mut expected) = setup();
    std::fs::write(tmp.path().join("k"), b"not read by the engine").unwrap();
    args.key = Some([7u8; 64]);
    args.output = args.output.with_extension("empk");
    let r = run(&args, Some(&expected)).unwrap();
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
    let msg = format!("{:#}", run(&args, Some(&expected)).unwrap_err());
    assert!(
        msg.contains("a.bin") && msg.contains("nothing was written"),
        "{msg}"
    );
    assert_eq!(outputs(&tmp), ["k"]);
}

#[test]
fn what_pack_writes_verify_accepts_and_a_flip_is_a_finding() {
    let (tmp, args, _) = setup();
    let report = run(&args, None).unwrap();
    let r: mpk_model::Reference = report.reference.parse().unwrap();
    let id: mpk_model::Identity = ID.parse().unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let v = mpk_pack::verify::verify(&args.output, &r, &id, &pool).unwrap();
    assert_eq!(v.data_blocks, r.hash_offset / 4096);
    assert!(!v.decrypted);
    // Reproduced from the folder without writing anything: the same
    // reference, and a comparison that says so.
    let again = mpk_pack::reproduce::reproduce_dir(
        args.dir.as_std_path(),
        Symlinks::Contained,
        &id,
        Default::default(),
        &r,
        Some(2),
        &Silent,
    )
    .unwrap();
    assert_eq!(again.schema, mpk_pack::Schema::ModelwrapV1);
    let again = again.reference;
    assert_eq!(again, r);
    let c = mpk_pack::reproduce::Comparison::new(&id, again, r);
    assert!(c.matches() && c.check().is_ok());
    let other = mpk_model::Reference { root: [0; 32], ..r };
    let e = mpk_pack::reproduce::Comparison::new(&id, again, other)
        .check()
        .unwrap_err();
    assert!(Finding::in_chain(&e), "{e:#}");
    // Flip one byte of a.bin's first full block: a finding naming it.
    let first = report.files.iter().find(|f| f.path == "a.bin").unwrap();
    let at = first.first_block.unwrap() * 4096 + 17;
    let mut bytes = std::fs::read(&args.output).unwrap();
    bytes[at as usize] ^= 1;
    std::fs::write(&args.output, &bytes).unwrap();
    let e = mpk_pack::verify::verify(&args.output, &r, &id, &pool).unwrap_err();
    assert!(Finding::in_chain(&e), "{e:#}");
    assert!(format!("{e:#}").contains("file `a.bin`"), "{e:#}");
    // A missing pack is not a finding: it could not be checked.
    let gone = args.output.with_extension("gone");
    let e = mpk_pack::verify::verify(&gone, &r, &id, &pool).unwrap_err();
    assert!(!Finding::in_chain(&e), "{e:#}");
    drop(tmp);
}
