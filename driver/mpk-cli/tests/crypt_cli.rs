//! `mpk keygen`, `mpk encrypt`, `mpk pack --encrypt` and `mpk verify
//! --key-file` end to end: key files are 0600 and never overwritten; the
//! same key and inputs give the same `.empk`, another key other ciphertext
//! but the same root; `pack --encrypt` writes exactly what `pack` then
//! `encrypt` write, with no plaintext anywhere; the payload decrypts
//! (OpenSSL's XTS, HKDF in Python) to the `.mpk`; a flipped ciphertext
//! byte fails verification naming the block; key bytes appear in no output
//! or error message.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::tree::{mkdir, mpk_pack_ok, output_text, random_bytes, test_identity, write};

struct Fixture {
    tmp: tempfile::TempDir,
    mpk: PathBuf,
    reference: String,
    identity: String,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    mkdir(&src);
    write(&src.join("config.json"), b"{\"model_type\": \"test\"}\n");
    write(
        &src.join("weights/model.bin"),
        &random_bytes(21, 200 * 4096),
    );
    write(&src.join("tail.bin"), &random_bytes(22, 5000));
    let identity = test_identity(800);
    let mpk = tmp.path().join("model.mpk");
    let reference = mpk_pack_ok(&src, &identity, &mpk, &[])
        .trim_end()
        .to_owned();
    Fixture {
        tmp,
        mpk,
        reference,
        identity,
    }
}

fn mpk(args: &[&std::ffi::OsStr]) -> Output {
    common::mpk().args(args).output().expect("run mpk")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "mpk failed:\n{}", output_text(o));
    output_text(o)
}

fn keygen(path: &Path) -> Output {
    mpk(&["keygen".as_ref(), "-o".as_ref(), path.as_os_str()])
}

impl Fixture {
    fn encrypt(&self, key: &Path, out: &Path) -> Output {
        mpk(&[
            "encrypt".as_ref(),
            self.mpk.as_os_str(),
            "--ref".as_ref(),
            self.reference.as_ref(),
            "--identity".as_ref(),
            self.identity.as_ref(),
            "--key-file".as_ref(),
            key.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ])
    }

    fn verify(&self, empk: &Path, key: &Path, reference: &str) -> Output {
        mpk(&[
            "verify".as_ref(),
            empk.as_os_str(),
            "--key-file".as_ref(),
            key.as_os_str(),
            "--ref".as_ref(),
            reference.as_ref(),
            "--identity".as_ref(),
            self.identity.as_ref(),
        ])
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

/// Asserts that no form of `key` (raw bytes, hex either case) is in `o`.
fn no_key_in(o: &Output, key: &[u8], what: &str) {
    let text = output_text(o);
    for h in [hex::encode(key), hex::encode_upper(key)] {
        for w in h.as_bytes().chunks(16) {
            let w = std::str::from_utf8(w).unwrap();
            assert!(!text.contains(w), "{what}: key hex {w} in output:\n{text}");
        }
    }
    for stream in [&o.stdout, &o.stderr] {
        for w in key.chunks(8) {
            assert!(
                !stream.windows(w.len()).any(|x| x == w),
                "{what}: raw key bytes in output"
            );
        }
    }
}

#[test]
fn keygen_makes_0600_keys_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let k = tmp.path().join("k");
    let o = keygen(&k);
    ok(&o);
    let key = fs::read(&k).unwrap();
    assert_eq!(key.len(), 64);
    no_key_in(&o, &key, "keygen");
    assert_eq!(
        fs::metadata(&k).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = keygen(&k);
    assert!(!again.status.success(), "keygen overwrote a key");
    assert!(output_text(&again).contains("already exists"));
    assert_eq!(fs::read(&k).unwrap(), key, "the key changed");
    let k2 = tmp.path().join("k2");
    ok(&keygen(&k2));
    assert_ne!(fs::read(&k2).unwrap(), key, "two keys are equal");
}

#[test]
fn encrypt_is_deterministic_and_verifies() {
    let f = fixture();
    let (k1, k2) = (f.path("k1"), f.path("k2"));
    ok(&keygen(&k1));
    ok(&keygen(&k2));
    let key1 = fs::read(&k1).unwrap();
    let (a, b, c) = (f.path("a.empk"), f.path("b.empk"), f.path("c.empk"));
    let oa = f.encrypt(&k1, &a);
    let out_a = ok(&oa);
    no_key_in(&oa, &key1, "encrypt");
    ok(&f.encrypt(&k1, &b));
    ok(&f.encrypt(&k2, &c));
    let (ea, eb, ec) = (
        fs::read(&a).unwrap(),
        fs::read(&b).unwrap(),
        fs::read(&c).unwrap(),
    );
    assert!(ea == eb, "same key and inputs gave different .empk files");
    let plain = fs::read(&f.mpk).unwrap();
    assert_eq!(ea.len(), (2048 + plain.len() / 512 + 40) * 512);
    let payload = |e: &[u8]| e[1 << 20..(1 << 20) + plain.len()].to_vec();
    assert!(
        payload(&ea) != payload(&ec),
        "another key gave the same ciphertext"
    );
    assert!(payload(&ea) != plain, "the payload is not encrypted");
    // Header and backup GPT are the same (they hold no key material).
    assert!(ea[..1 << 20] == ec[..1 << 20]);
    let info_a = fs::read_to_string(f.path("a.info")).unwrap();
    let info_c = fs::read_to_string(f.path("c.info")).unwrap();
    assert_eq!(info_a, info_c, "the encrypted reference depends on the key");
    assert_eq!(out_a.trim_end(), info_a);
    let (root, h, part) = common::tree::parse_reference(&info_a);
    let (proot, ph, _) = common::tree::parse_reference(&f.reference);
    assert_eq!((root.as_str(), h), (proot.as_str(), ph));
    let want = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("{}-emwp-outer", f.identity).as_bytes(),
    );
    assert_eq!(part, want.hyphenated().to_string());
    // Both verify with their own key, and against the .info path.
    let ov = f.verify(&a, &k1, &info_a);
    assert!(ok(&ov).contains("OK:"));
    no_key_in(&ov, &key1, "verify");
    ok(&f.verify(&c, &k2, f.path("c.info").to_str().unwrap()));
    // Wrong key: fails on the first block, no key in the message.
    let wrong = f.verify(&a, &k2, &info_a);
    assert!(!wrong.status.success());
    assert!(
        output_text(&wrong).contains("wrong key"),
        "{}",
        output_text(&wrong)
    );
    no_key_in(&wrong, &key1, "verify with the wrong key");
    no_key_in(&wrong, &fs::read(&k2).unwrap(), "verify with the wrong key");
    // The plaintext reference is refused (its UUID is the inner one).
    assert!(!f.verify(&a, &k1, &f.reference).status.success());
    // Existing outputs are kept.
    assert!(!f.encrypt(&k1, &a).status.success());
}

#[test]
fn payload_decrypts_with_independent_hkdf_and_openssl() {
    let Some(py) = common::python_with("cryptography") else {
        return;
    };
    let f = fixture();
    let k = f.path("k");
    ok(&keygen(&k));
    let e = f.path("m.empk");
    ok(&f.encrypt(&k, &e));
    let info = fs::read_to_string(f.path("m.info")).unwrap();
    let (root, _, part) = common::tree::parse_reference(&info);
    let script = r#"
import hashlib, hmac, sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
ikm = open(sys.argv[1], "rb").read(); salt = sys.argv[2].encode()
prk = hmac.new(salt, ikm, hashlib.sha256).digest()
t, okm = b"", b""
for i in (1, 2):
    t = hmac.new(prk, t + b"tinfoil/emwp/dm-crypt-key/v1" + bytes([i]), hashlib.sha256).digest()
    okm += t
img = open(sys.argv[3], "rb").read()[2048 * 512:]
n = int(sys.argv[4]); out = b""
for i in range(0, n, 4096):
    d = Cipher(algorithms.AES(okm), modes.XTS((i // 512).to_bytes(16, "little"))).decryptor()
    out += d.update(img[i:i + 4096]) + d.finalize()
open(sys.argv[5], "wb").write(out)
"#;
    let plain = fs::read(&f.mpk).unwrap();
    let dec = f.path("dec");
    let o = std::process::Command::new(py)
        .args(["-c", script])
        .arg(&k)
        .arg(format!("{root}_{part}"))
        .arg(&e)
        .arg(plain.len().to_string())
        .arg(&dec)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(
        fs::read(&dec).unwrap() == plain,
        "independent decryption differs from the .mpk"
    );
}

#[test]
fn flipped_ciphertext_byte_names_the_block() {
    let f = fixture();
    let k = f.path("k");
    ok(&keygen(&k));
    let key = fs::read(&k).unwrap();
    let e = f.path("m.empk");
    ok(&f.encrypt(&k, &e));
    let info = fs::read_to_string(f.path("m.info")).unwrap();
    let (_, h, _) = common::tree::parse_reference(&info);
    let orig = fs::read(&e).unwrap();
    // A data block (block 7) and the first hash block.
    for (blk, want) in [(7u64, "data block 7 "), (h / 4096 + 1, "hash block")] {
        let mut bad = orig.clone();
        let at = (1 << 20) + blk as usize * 4096 + 123;
        bad[at] ^= 0x40;
        let t = f.path("t.empk");
        fs::write(&t, &bad).unwrap();
        let o = f.verify(&t, &k, &info);
        let text = output_text(&o);
        assert!(!o.status.success(), "tampered block {blk} verified");
        assert!(text.contains(want), "block {blk}: {text}");
        no_key_in(&o, &key, "tampered verify");
    }
    // A flipped GPT byte is reported, the data still verifies.
    let mut bad = orig.clone();
    bad[600] ^= 1;
    let t = f.path("t.empk");
    fs::write(&t, &bad).unwrap();
    let o = f.verify(&t, &k, &info);
    assert!(!o.status.success());
    assert!(
        output_text(&o).contains("primary GPT"),
        "{}",
        output_text(&o)
    );
}

#[test]
fn bad_key_files_are_refused_without_showing_them() {
    let f = fixture();
    let k = f.path("short");
    let key = random_bytes(77, 63);
    fs::write(&k, &key).unwrap();
    let o = f.encrypt(&k, &f.path("x.empk"));
    assert!(!o.status.success());
    assert!(output_text(&o).contains("64 bytes"), "{}", output_text(&o));
    no_key_in(&o, &key, "short key");
    assert!(!f.path("x.empk").exists());
}

/// The fixture's source folder (`fixture()` packs `tmp/src`).
fn src(f: &Fixture) -> PathBuf {
    f.path("src")
}

fn pack_encrypted(f: &Fixture, key: &Path, out: &Path, extra: &[&str]) -> Output {
    let dir = src(f);
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "pack".as_ref(),
        dir.as_os_str(),
        "--identity".as_ref(),
        f.identity.as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        "--encrypt".as_ref(),
        "--key-file".as_ref(),
        key.as_os_str(),
    ];
    args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
    mpk(&args)
}

/// Every file of `dir` except those named in `allowed`.
fn stray_files(dir: &Path, allowed: &[&str]) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !allowed.contains(&n.as_str()))
        .collect()
}

#[test]
fn pack_encrypt_equals_pack_then_encrypt_and_writes_no_plaintext() {
    let f = fixture();
    let (k1, k2) = (f.path("k1"), f.path("k2"));
    ok(&keygen(&k1));
    ok(&keygen(&k2));
    let two_step = f.path("two.empk");
    let enc_ref = ok(&f.encrypt(&k1, &two_step)).trim().to_owned();

    let out_dir = f.path("out");
    fs::create_dir(&out_dir).unwrap();
    let one = out_dir.join("one.empk");
    let printed = ok(&pack_encrypted(&f, &k1, &one, &[]));
    assert_eq!(
        printed.trim(),
        enc_ref,
        "pack --encrypt prints the encrypted reference"
    );
    assert_eq!(
        fs::read(&one).unwrap(),
        fs::read(&two_step).unwrap(),
        "pack --encrypt must equal pack + encrypt byte for byte"
    );
    assert_eq!(
        fs::read_to_string(out_dir.join("one.info")).unwrap(),
        enc_ref
    );
    // Only the outputs: no plaintext .mpk or leftover temporary file.
    assert_eq!(
        stray_files(&out_dir, &["one.empk", "one.info"]),
        Vec::<String>::new()
    );
    // No 64-byte window of any plaintext file appears in the ciphertext.
    let cipher = fs::read(&one).unwrap();
    let plain = fs::read(src(&f).join("weights/model.bin")).unwrap();
    for at in [0, 4096 * 7 + 13, plain.len() - 64] {
        let w = &plain[at..at + 64];
        assert!(
            !cipher.windows(64).any(|c| c == w),
            "plaintext at {at} found in the .empk"
        );
    }
    // Root unchanged: the encrypted reference starts with the .mpk's root.
    let root = f.reference.split('_').next().unwrap();
    assert!(enc_ref.starts_with(root), "{enc_ref} vs {}", f.reference);

    // verify --key-file accepts it; without the key it says what to pass.
    let v = f.verify(&one, &k1, &enc_ref);
    assert!(ok(&v).contains("decrypt and verify"), "{}", output_text(&v));
    let nokey = mpk(&[
        "verify".as_ref(),
        one.as_os_str(),
        "--ref".as_ref(),
        enc_ref.as_ref(),
        "--identity".as_ref(),
        f.identity.as_ref(),
    ]);
    assert!(!nokey.status.success());
    assert!(
        output_text(&nokey).contains("pass --key-file"),
        "{}",
        output_text(&nokey)
    );
    let wrong = f.verify(&one, &k2, &enc_ref);
    assert!(!wrong.status.success(), "a wrong key must not verify");

    // Threads do not change the bytes; another key changes the ciphertext
    // and not the reference.
    let t1 = f.path("t1.empk");
    ok(&pack_encrypted(&f, &k1, &t1, &["--threads", "1"]));
    assert_eq!(fs::read(&t1).unwrap(), cipher);
    let other = f.path("other.empk");
    assert_eq!(ok(&pack_encrypted(&f, &k2, &other, &[])).trim(), enc_ref);
    let other = fs::read(&other).unwrap();
    assert_eq!(other.len(), cipher.len());
    let payload = 1 << 20;
    assert_ne!(
        &other[payload..payload + 4096],
        &cipher[payload..payload + 4096]
    );
}

#[test]
fn pack_encrypt_json_reports_the_container() {
    let f = fixture();
    let k = f.path("k");
    ok(&keygen(&k));
    let out = f.path("j.empk");
    let text = ok(&pack_encrypted(&f, &k, &out, &["--json"]));
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        v["reference"].as_str().unwrap(),
        f.reference,
        "plaintext reference"
    );
    let e = &v["encryption"];
    let enc_ref = e["encrypted_reference"].as_str().unwrap();
    assert_eq!(fs::read_to_string(f.path("j.info")).unwrap(), enc_ref);
    assert_eq!(e["cipher"], "aes-xts-plain64");
    assert_eq!(e["sector_size"], 4096);
    assert_eq!(e["payload_offset"], 1 << 20);
    assert_eq!(e["image_len"], fs::metadata(&out).unwrap().len());
    assert!(enc_ref.ends_with(e["partition_uuid"].as_str().unwrap()));
}

#[test]
fn pack_encrypt_refusals_leave_nothing() {
    let f = fixture();
    let k = f.path("k");
    ok(&keygen(&k));
    let dir = f.path("refusals");
    fs::create_dir(&dir).unwrap();
    let cases: Vec<(PathBuf, PathBuf, Vec<&str>, &str)> = vec![
        (k.clone(), dir.join("a.mpk"), vec![], "must end in `.empk`"),
        (
            k.clone(),
            dir.join("b.empk"),
            vec!["--backend", "tools"],
            "needs the native backend",
        ),
        (
            f.path("missing.key"),
            dir.join("c.empk"),
            vec![],
            "missing.key",
        ),
        (
            f.mpk.clone(),
            dir.join("d.empk"),
            vec![],
            "exactly 64 bytes",
        ),
    ];
    for (key, out, extra, want) in cases {
        let o = pack_encrypted(&f, &key, &out, &extra);
        assert!(!o.status.success(), "{want}: should fail");
        assert!(
            output_text(&o).contains(want),
            "{want}:\n{}",
            output_text(&o)
        );
    }
    // --encrypt without --key-file is a usage error.
    let o = mpk(&[
        "pack".as_ref(),
        src(&f).as_os_str(),
        "--identity".as_ref(),
        f.identity.as_ref(),
        "-o".as_ref(),
        dir.join("e.empk").as_os_str(),
        "--encrypt".as_ref(),
    ]);
    assert!(!o.status.success());
    assert!(
        output_text(&o).contains("--key-file"),
        "{}",
        output_text(&o)
    );
    assert_eq!(stray_files(&dir, &[]), Vec::<String>::new());
}
