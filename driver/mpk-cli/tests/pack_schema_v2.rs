//! Schema `modelwrap-v2` through the `mpk` binary: `mpk pack --schema
//! modelwrap-v2` against its reference pipeline (`mkfs.erofs` 1.8.6 from
//! `$MPK_MKFS_EROFS_186` + `veritysetup format`), byte for byte, on random
//! trees, edge cases, names only 1.8.6 stores and a sparse file over 4 GiB;
//! any `--threads`; `--backend tools`; `--json` and `--encrypt` with the
//! schema; `mpk reproduce --schema auto` naming the schema that matched.
//! The layout itself is tested much more widely in
//! `mpk-erofs/tests/mkfs_differential.rs`; these cases check the whole
//! pipeline. Fails (not skips) when a tool is missing and
//! `MPK_REQUIRE_TOOLS=1`.

mod common;

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Output;

use common::tree::{
    self, Schema, TreeOptions, compare_files, differential, info_path, mkdir, mpk_pack,
    mpk_pack_ok, output_text, parse_reference, random_bytes, reference_pack_as, set_mode,
    test_identity, write,
};

const V2: &[&str] = &["--schema", "modelwrap-v2"];

fn fresh_tree() -> (tempfile::TempDir, std::path::PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().join("tree");
    mkdir(&root);
    (t, root)
}

/// `mpk pack --schema modelwrap-v2 [extra…]` equals the 1.8.6 reference
/// pipeline (`.mpk`, `.info`, stdout). Returns false when skipped.
fn assert_matches_v2(dir: &Path, identity: &str, extra: &[&str]) -> bool {
    let work = tempfile::tempdir().expect("tempdir");
    let args: Vec<&str> = V2.iter().chain(extra).copied().collect();
    match differential(dir, identity, work.path(), &args) {
        Ok(Some(reference)) => {
            eprintln!("ok: {reference}");
            true
        }
        Ok(None) => false,
        Err(e) => panic!("mpk pack --schema modelwrap-v2 differs from mkfs.erofs 1.8.6: {e}"),
    }
}

#[test]
fn random_trees_match_reference_v2() {
    for seed in 0..10u64 {
        let (_t, root) = fresh_tree();
        let opts = match seed % 3 {
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
            _ => TreeOptions::default(),
        };
        tree::random_tree_with(&root, 7000 + seed, opts);
        if !assert_matches_v2(&root, &test_identity(7000 + seed), &[]) {
            return;
        }
    }
}

#[test]
fn edge_cases_match_reference_v2() {
    type Make = fn(&Path);
    let cases: [(&str, Make); 6] = [
        ("empty root", |_| {}),
        ("one empty file", |r| write(&r.join("empty"), b"")),
        ("one 4096-byte file", |r| {
            write(&r.join("block.bin"), &random_bytes(1, 4096));
        }),
        ("a 4065-byte tail block", |r| {
            write(&r.join("tail.bin"), &random_bytes(2, 4065));
        }),
        ("empty files and folders", |r| {
            for i in 0..150 {
                write(&r.join(format!("e{i}")), b"");
            }
            for i in 0..40 {
                mkdir(&r.join(format!("d{i}")));
            }
        }),
        ("root dirents over 2912 bytes", |r| {
            for i in 0..140 {
                write(&r.join(format!("file-{i:04}-xxxxxxxx")), b"0123456789");
            }
        }),
    ];
    for (i, (what, make)) in cases.iter().enumerate() {
        let (_t, root) = fresh_tree();
        make(&root);
        eprintln!("case: {what}");
        if !assert_matches_v2(&root, &test_identity(7100 + i as u64), &[]) {
            return;
        }
    }
}

/// 1.8.6 stores what 1.5 cannot (255-byte names, `lost+found`): packed
/// under v2, refused under v1.
#[test]
fn names_only_1_8_6_stores_match_reference_v2_and_are_refused_by_v1() {
    let (t, root) = fresh_tree();
    write(&root.join("lost+found/x"), b"found");
    write(&root.join("lost+found.txt"), b"kept");
    write(&root.join("n".repeat(255)), b"long");
    let id = test_identity(7200);
    let out = t.path().join("v1.mpk");
    let o = mpk_pack(&root, &id, &out, &[]);
    assert!(!o.status.success(), "v1 must refuse: {}", output_text(&o));
    assert!(
        output_text(&o).contains("modelwrap-v1"),
        "{}",
        output_text(&o)
    );
    assert!(!out.exists());
    assert_matches_v2(&root, &id, &[]);
}

/// A 4 GiB + 4040 byte sparse file: an extended inode with a tail block.
#[test]
fn sparse_file_over_4gib_matches_reference_v2() {
    let (_t, root) = fresh_tree();
    let big = root.join("big.bin");
    let size = (4u64 << 30) + 4040;
    {
        let mut f = fs::File::create(&big).expect("create");
        f.set_len(size).expect("set_len");
        for (i, off) in [0, 4095, 4u64 << 30, size - 10].into_iter().enumerate() {
            f.seek(SeekFrom::Start(off)).expect("seek");
            let n = usize::try_from((size - off).min(64)).expect("usize");
            f.write_all(&random_bytes(950 + i as u64, n))
                .expect("write");
        }
    }
    set_mode(&big, 0o644);
    write(&root.join("config.json"), b"{\"big\": true}\n");
    assert_matches_v2(&root, &test_identity(7300), &[]);
}

#[test]
fn threads_and_tools_backend_give_the_reference_v2() {
    let (_t, root) = fresh_tree();
    tree::random_tree_with(
        &root,
        7400,
        TreeOptions {
            max_entries: 400,
            max_bytes: 3 << 20,
            max_depth: 4,
        },
    );
    let id = test_identity(7400);
    for threads in ["1", "2", "8"] {
        if !assert_matches_v2(&root, &id, &["--threads", threads]) {
            return;
        }
    }
    // `--backend tools` runs mkfs.erofs 1.8.6 itself ($MPK_MKFS_EROFS_186).
    assert_matches_v2(&root, &id, &["--backend", "tools"]);
}

#[test]
fn tools_backend_refuses_a_wrong_mkfs_for_v2() {
    let (t, root) = fresh_tree();
    write(&root.join("a"), b"a");
    let out = t.path().join("m.mpk");
    let Some((mkfs15, _)) = Schema::V1.mkfs() else {
        return;
    };
    let o = common::mpk()
        .args(["pack", "--identity", &test_identity(7450), "-o"])
        .arg(&out)
        .arg(&root)
        .args(V2)
        .args(["--backend", "tools"])
        .env("MPK_MKFS_EROFS_186", &mkfs15)
        .output()
        .expect("run mpk");
    let text = output_text(&o);
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("1.8.6"), "{text}");
    assert!(!out.exists());
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", output_text(o));
    serde_json::from_slice(&o.stdout).expect("JSON")
}

#[test]
fn json_names_the_schema() {
    let (t, root) = fresh_tree();
    write(&root.join("a.bin"), &random_bytes(3, 9000));
    let id = test_identity(7500);
    for (args, want) in [(&[][..], "modelwrap-v1"), (V2, "modelwrap-v2")] {
        let out = t.path().join(format!("{want}.mpk"));
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let v = json(&mpk_pack(&root, &id, &out, &all));
        assert_eq!(v["schema"], want);
        assert_eq!(
            v["reference"].as_str().unwrap(),
            fs::read_to_string(info_path(&out)).unwrap()
        );
    }
}

fn reproduce(dir: &Path, id: &str, expect: &str, schema: &str) -> Output {
    common::mpk()
        .args(["reproduce", "--dir"])
        .arg(dir)
        .args(["--identity", id, "--expect", expect, "--schema", schema])
        .args(["--json", "--quiet"])
        .output()
        .expect("run mpk reproduce")
}

/// `--schema auto` tries v1 then v2 and names the one that matched; a
/// fixed schema that is not the reference's is a finding. The example
/// model's two images have the same length, so auto hashes both.
#[test]
fn reproduce_auto_names_the_matching_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/example/model");
    let id = test_identity(7600);
    let t = tempfile::tempdir().unwrap();
    let mut refs = Vec::new();
    for (args, name) in [(&[][..], "modelwrap-v1"), (V2, "modelwrap-v2")] {
        let out = t.path().join(format!("{name}.mpk"));
        let r = mpk_pack_ok(&root, &id, &out, args).trim_end().to_owned();
        refs.push((r, name));
    }
    let (r1, r2) = (&refs[0].0, &refs[1].0);
    assert_ne!(r1, r2, "the schemas give different references");
    assert_eq!(parse_reference(r1).1, parse_reference(r2).1, "same length");
    for (r, name) in &refs {
        let o = reproduce(&root, &id, r, "auto");
        let v = json(&o);
        assert_eq!(v["match"], true);
        assert_eq!(v["schema"], *name);
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(&format!("schema: {name} matched")),
            "{}",
            output_text(&o)
        );
        let v = json(&reproduce(&root, &id, r, name));
        assert_eq!(v["match"], true);
    }
    // A tree only 1.8.6 can lay out, against a wrong reference: auto
    // computes v2's reference and reports the mismatch (not v1's refusal).
    let (_t2, odd) = fresh_tree();
    write(&odd.join("lost+found/x"), b"x");
    let o = reproduce(&odd, &id, r1, "auto");
    assert!(!o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(
        (v["match"].clone(), v["schema"].clone()),
        (false.into(), "modelwrap-v2".into())
    );
    // v2's reference under schema v1: computed, compared, not equal.
    let o = reproduce(&root, &id, r2, "modelwrap-v1");
    assert!(!o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["match"], false);
    assert_eq!(v["computed"].as_str(), Some(r1.as_str()));
}

/// `--encrypt --schema modelwrap-v2`: the encrypted reference carries the
/// v2 root (encryption leaves the plaintext commitment unchanged), and
/// `reproduce --schema auto` recognises it.
#[test]
fn encrypted_pack_keeps_the_v2_commitment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/example/model");
    let id = test_identity(7700);
    let t = tempfile::tempdir().unwrap();
    let key = t.path().join("master.key");
    let o = common::mpk()
        .args(["keygen", "-o"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let plain = mpk_pack_ok(&root, &id, &t.path().join("p.mpk"), V2);
    let enc_out = t.path().join("e.empk");
    let mut args = V2.to_vec();
    let key_s = key.to_str().unwrap();
    args.extend_from_slice(&["--encrypt", "--key-file", key_s]);
    let enc = mpk_pack_ok(&root, &id, &enc_out, &args);
    let (proot, ph, _) = parse_reference(plain.trim_end());
    let (eroot, eh, _) = parse_reference(enc.trim_end());
    assert_eq!((proot, ph), (eroot, eh));
    let v = json(&reproduce(&root, &id, enc.trim_end(), "auto"));
    assert_eq!(v["match"], true);
    assert_eq!(v["schema"], "modelwrap-v2");
    // And it verifies with the key, no schema needed.
    let o = common::mpk()
        .arg("verify")
        .arg(&enc_out)
        .args([
            "--ref",
            enc.trim_end(),
            "--identity",
            &id,
            "--key-file",
            key_s,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    // The reference pipeline agrees with the plaintext pack.
    if let Some(r) = reference_pack_as(Schema::V2, &root, &id, &t.path().join("ref.mpk")) {
        assert_eq!(r, plain.trim_end());
        compare_files(&t.path().join("ref.mpk"), &t.path().join("p.mpk"), None).unwrap();
    }
}
