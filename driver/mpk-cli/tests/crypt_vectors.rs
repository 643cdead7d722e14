//! `mpk-crypt` against independent references: AES-256-XTS per 4096-byte
//! sector against OpenSSL's `aes-256-xts` (via Python `cryptography`; tweak = little-endian 512-byte
//! sector number), HKDF-SHA256 against Python's `hmac`/`hashlib`, and the
//! GPT container against `sgdisk` on a zeroed image of the same size with
//! the same GUIDs.

mod common;

use std::fs;
use std::process::Command;

use mpk_crypt::{Layout, MasterKey, SectorCipher};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};

fn run_ok(cmd: &mut Command) -> Vec<u8> {
    let o = cmd.output().expect("run reference tool");
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// OpenSSL's `aes-256-xts` through Python `cryptography` (its EVP
/// binding): `openssl enc` 3.0 refuses XTS ("enc XTS ciphers not
/// supported"), the library cipher is the same code.
const OPENSSL_XTS: &str = r#"
import sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
key = bytes.fromhex(sys.argv[1]); first = int(sys.argv[2])
data = open(sys.argv[3], "rb").read(); out = b""
for i in range(0, len(data), 4096):
    tweak = ((first + i) // 512).to_bytes(16, "little")
    e = Cipher(algorithms.AES(key), modes.XTS(tweak)).encryptor()
    out += e.update(data[i:i + 4096]) + e.finalize()
sys.stdout.write(out.hex())
"#;

/// The partition GUID of `identity` (mpk-model's rule).
fn partition_uuid(identity: &str) -> uuid::Uuid {
    identity
        .parse::<mpk_model::Identity>()
        .unwrap()
        .partition_uuid()
}

#[test]
fn xts_matches_openssl_per_sector() {
    let Some(py) = common::python_with("cryptography") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(8);
    for round in 0..4 {
        let mut master = [0u8; 64];
        rng.fill_bytes(&mut master);
        let mut root = [0u8; 32];
        rng.fill_bytes(&mut root);
        let key = MasterKey::from_bytes(&master)
            .unwrap()
            .derive(&root, &uuid::Uuid::from_u128(rng.r#gen()));
        let cipher = SectorCipher::new(&key);
        // Sector offsets: the start, small ones, and tweaks past 2^32 and
        // 2^40 512-byte sectors (upper tweak bytes in use).
        let first: u64 = [0, 3, 1 << 29, (1 << 38) + 5][round] * 4096;
        let sectors = 33usize;
        let mut data = vec![0u8; sectors * 4096];
        rng.fill_bytes(&mut data);
        let input = tmp.path().join("in");
        fs::write(&input, &data).unwrap();
        let plain = data.clone();
        cipher.encrypt(&mut data, first).unwrap();
        let want = run_ok(
            Command::new(&py)
                .args(["-c", OPENSSL_XTS])
                .arg(hex::encode(key.expose()))
                .arg(first.to_string())
                .arg(&input),
        );
        let want = hex::decode(want).unwrap();
        for s in 0..sectors {
            assert!(
                want[s * 4096..(s + 1) * 4096] == data[s * 4096..(s + 1) * 4096],
                "round {round}: sector {s} at payload offset {} differs from OpenSSL",
                first + s as u64 * 4096
            );
        }
        let mut back = data.clone();
        cipher.decrypt(&mut back, first).unwrap();
        assert!(
            back == plain,
            "round {round}: decryption is not the inverse"
        );
    }
}

#[test]
fn hkdf_matches_python() {
    let Some(py) = common::python_with("hmac") else {
        return;
    };
    let script = r#"
import hashlib, hmac, sys
ikm = bytes.fromhex(sys.argv[1]); salt = sys.argv[2].encode()
info = b"tinfoil/emwp/dm-crypt-key/v1"
prk = hmac.new(salt, ikm, hashlib.sha256).digest()
t, okm = b"", b""
for i in range(1, 3):
    t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
    okm += t
print(okm[:64].hex())
"#;
    let mut rng = StdRng::seed_from_u64(5869);
    for _ in 0..3 {
        let mut master = [0u8; 64];
        rng.fill_bytes(&mut master);
        let mut root = [0u8; 32];
        rng.fill_bytes(&mut root);
        let identity = format!("org/model-{}@{}", rng.r#gen::<u16>(), "ab".repeat(20));
        let part = partition_uuid(&identity);
        let salt = format!("{}_{}", hex::encode(root), part.hyphenated());
        let want = run_ok(
            Command::new(&py)
                .args(["-c", script])
                .arg(hex::encode(master))
                .arg(&salt),
        );
        let got = MasterKey::from_bytes(&master).unwrap().derive(&root, &part);
        assert_eq!(
            hex::encode(got.expose()),
            String::from_utf8(want).unwrap().trim()
        );
    }
}

#[test]
fn guids_follow_the_reference_rules() {
    let id = "org/name@0123456789abcdef0123456789abcdef01234567";
    assert_eq!(
        partition_uuid(id),
        uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            b"org/name@0123456789abcdef0123456789abcdef01234567-emwp-outer"
        )
    );
    let root = [0x5a; 32];
    let name = format!("{}-emwp-disk", "5a".repeat(32));
    assert_eq!(
        mpk_crypt::disk_guid(&root),
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes())
    );
}

/// sgdisk on a zeroed image of `payload_len` bytes' layout versus ours.
fn compare_with_sgdisk(sgdisk: &std::path::Path, payload_len: u64, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut root = [0u8; 32];
    rng.fill_bytes(&mut root);
    let identity = format!("org/m{seed}@{}", "0f".repeat(20));
    let layout = Layout::new(
        payload_len,
        mpk_crypt::disk_guid(&root),
        partition_uuid(&identity),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("disk.img");
    fs::File::create(&img)
        .unwrap()
        .set_len(layout.image_len())
        .unwrap();
    run_ok(
        Command::new(sgdisk)
            .arg("--clear")
            .arg(format!("--disk-guid={}", layout.disk_guid))
            .arg(format!("--new=1:2048:{}", layout.partition_last()))
            .arg("--typecode=1:8300")
            .arg(format!("--partition-guid=1:{}", layout.partition_guid))
            .arg("--change-name=1:emwp")
            .arg(&img),
    );
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(&img).unwrap();
    assert_eq!(f.metadata().unwrap().len(), layout.image_len());
    let head = layout.head();
    let mut got = vec![0u8; head.len()];
    f.read_exact_at(&mut got, 0).unwrap();
    let diff = got.iter().zip(&head).position(|(a, b)| a != b);
    assert!(
        diff.is_none(),
        "payload {payload_len}: head differs from sgdisk at byte {diff:?}"
    );
    let tail = layout.tail();
    let mut got = vec![0u8; tail.len()];
    f.read_exact_at(&mut got, layout.image_len() - tail.len() as u64)
        .unwrap();
    let diff = got.iter().zip(&tail).position(|(a, b)| a != b);
    assert!(
        diff.is_none(),
        "payload {payload_len}: tail differs from sgdisk at byte {diff:?}"
    );
    if payload_len <= 1 << 24 {
        // Small images: sgdisk wrote nothing inside the partition either.
        let all = fs::read(&img).unwrap();
        let p = layout.payload_offset() as usize;
        assert!(all[p..p + payload_len as usize].iter().all(|&b| b == 0));
    }
}

#[test]
fn gpt_matches_sgdisk() {
    let Some(sgdisk) = common::tool("sgdisk") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(1);
    // Tiny, odd-sized, a typical .mpk, and past the CHS limit (~7.8 GiB,
    // sparse): the protective MBR's end CHS saturates to fe ff ff.
    let mut sizes = vec![4096, 3 * 4096, 2_142_208 + 4096 + 4096 * 3];
    sizes.push(rng.gen_range(1..5000u64) * 4096);
    sizes.push(9 << 30);
    for (i, s) in sizes.into_iter().enumerate() {
        compare_with_sgdisk(&sgdisk, s, i as u64);
    }
}

#[test]
fn gpt_matches_sgdisk_past_2_tib() {
    // The protective MBR's 32-bit sector count saturates at 0xffffffff.
    let Some(sgdisk) = common::tool("sgdisk") else {
        return;
    };
    compare_with_sgdisk(&sgdisk, 3 << 40, 99);
}
