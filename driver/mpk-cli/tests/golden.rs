//! The built-in example packs to the reference recorded from the
//! reference tools (tests/vectors/PROVENANCE.md), without running them.

mod common;

#[test]
fn example_model_matches_recorded_reference() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let want =
        std::fs::read_to_string(format!("{root}/tests/vectors/example-tiny-dense.info")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = common::mpk()
        .arg("pack")
        .arg(format!("{root}/tests/example/model"))
        .args([
            "--identity",
            "mpk-examples/tiny-dense@5f1c0e2d9a8b7c6d5e4f30211203f4e5d6c7b8a9",
            "-o",
        ])
        .arg(out.path().join("t.mpk"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim_end(), want);
    assert_eq!(
        std::fs::read_to_string(out.path().join("t.info")).unwrap(),
        want
    );
}
