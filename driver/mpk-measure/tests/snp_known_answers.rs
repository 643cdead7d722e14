//! Pinned SEV-SNP launch digests on synthetic firmware.
//!
//! Provenance: every expected value below was printed by
//! `sevsnpmeasure.guest.snp_calc_launch_digest` (and `calc_snp_ovmf_hash`)
//! of `sev-snp-measure` 0.0.13 from PyPI, VMM type QEMU, run on the bytes of
//! `support/firmware.rs` (written to files), a kernel of
//! `bytes(range(256)) * 4096` and an initrd of `b"070701" + bytes(5000)`.
//! The live comparison on hundreds of combinations and a real bzImage is
//! `driver/mpk-cli/tests/measure_snp.rs`. If one of these changes, the
//! calculation changed: recompute with the reference before updating.
use mpk_testutil::firmware;

use mpk_measure::snp::{SevHashes, SnpLaunch, VcpuType, firmware_digest, launch_digest};

fn kernel() -> Vec<u8> {
    (0..4096).flat_map(|_| 0..=255u8).collect()
}

fn initrd() -> Vec<u8> {
    let mut i = b"070701".to_vec();
    i.resize(5006, 0);
    i
}

fn digest(
    fw: &[u8],
    vcpus: u32,
    sig: u32,
    boot: Option<(Option<&[u8]>, Option<&str>)>,
    features: u64,
) -> String {
    let k = kernel();
    launch_digest(&SnpLaunch {
        firmware: fw,
        firmware_digest: None,
        hashes: boot.map(|(initrd, cmdline)| SevHashes::new(&k, initrd, cmdline)),
        vcpus,
        vcpu_signature: sig,
        guest_features: features,
    })
    .unwrap()
    .to_string()
}

#[test]
fn pinned_launch_digests() {
    let amdsev = firmware::build(&firmware::Spec::amdsev(64, 1));
    let initrd = initrd();
    let sig = |n| VcpuType::from_name(n).unwrap().signature();
    let cases: [(String, &str); 6] = [
        (
            digest(&amdsev, 1, sig("EPYC"), None, 0x1),
            "ab3b2d49bb15d7276b7b6f31f2d6a5924a1ae124df3b193dc61f79c1501abe98bfe9dcb6ee3514cbc06926e4e5c441ba",
        ),
        (
            digest(
                &amdsev,
                4,
                sig("EPYC-Milan"),
                Some((Some(&initrd), Some("console=ttyS0 root=/dev/vda  "))),
                0x1,
            ),
            "1ef32952d5c7b7c3d2181528dc613c44a31864d4a2400d695d8a3dc08666564efd6a6a41286c098bbc7179353c024d77",
        ),
        // The same without the two trailing spaces: never trimmed.
        (
            digest(
                &amdsev,
                4,
                sig("EPYC-Milan-v2"),
                Some((Some(&initrd), Some("console=ttyS0 root=/dev/vda"))),
                0x1,
            ),
            "3bed4361c63f9a85597b5a1b6bc3fae2ddc80fa630b83595957763efcdf57752abfc5ef95a3cae97ad0e00b3c47c6f7a",
        ),
        (
            digest(
                &amdsev,
                64,
                sig("EPYC-Turin"),
                Some((None, Some("mpk.model=café/模型 ✓"))),
                0x21,
            ),
            "1d35809730a92ee4eefa5502e8bfd8661bc592e7b3568a3f4baf643395cdd6b901b0fa0fb1e6aaeb170d5680feb47afe",
        ),
        (
            digest(
                &firmware::build(&firmware::Spec::reordered()),
                3,
                sig("EPYC-Genoa"),
                Some((None, None)),
                0x21,
            ),
            "3c3732091875fa4806c1cc8f7b47367604c3af7812a2a75cc297a1a594b72cfc058237ddf08f8c63824fd9cbabeacd25",
        ),
        (
            digest(
                &firmware::build(&firmware::Spec::without_kernel_hashes()),
                2,
                sig("EPYC-Rome"),
                None,
                0x1,
            ),
            "301cc535716c501a655c7dcd5ecb3e2edd9e73f8cd6467802d73e58e2d072732cd4771446409e10677d2ff0ec78ba8de",
        ),
    ];
    for (i, (got, want)) in cases.iter().enumerate() {
        assert_eq!(
            got, want,
            "case {i}: if intentional, recompute with sev-snp-measure"
        );
    }
}

#[test]
fn firmware_digest_and_resuming_from_it() {
    let amdsev = firmware::build(&firmware::Spec::amdsev(64, 1));
    let fw = firmware_digest(&amdsev).unwrap();
    assert_eq!(
        fw.to_string(),
        "f34aa5825ee4a9a0467e0880d1bc3415a851399619a52b004ae910af8ff0a4d6da4f7f85d5570bb13d631aa98092ad3a"
    );
    // Seeding with the firmware digest gives the full launch digest.
    let full = |firmware_digest| {
        launch_digest(&SnpLaunch {
            firmware: &amdsev,
            firmware_digest,
            hashes: None,
            vcpus: 1,
            vcpu_signature: 0x80_0F12,
            guest_features: 1,
        })
        .unwrap()
    };
    assert_eq!(full(Some(fw)), full(None));
}

#[test]
fn vcpu_signatures() {
    let want = [
        ("EPYC", 0x80_0F12),
        ("EPYC-v4", 0x80_0F12),
        ("EPYC-IBPB", 0x80_0F12),
        ("EPYC-Rome-v3", 0x83_0F10),
        ("EPYC-Milan", 0xA0_0F11),
        ("EPYC-Genoa-v1", 0xA1_0F10),
        ("EPYC-Turin", 0xB0_0F00),
    ];
    for (name, sig) in want {
        assert_eq!(
            VcpuType::from_name(name).unwrap().signature(),
            sig,
            "{name}"
        );
    }
    assert_eq!(VcpuType::ALL.len(), 16);
    assert!(VcpuType::from_name("epyc").is_none());
}

#[test]
fn hashes_table_layout() {
    let h = SevHashes::new(b"k", None, None);
    let t = h.table();
    assert_eq!(t.len(), 176);
    assert_eq!(&t[16..18], &168u16.to_le_bytes());
    assert_eq!(
        &t[0..16],
        &firmware::guid_le("9438d606-4f22-4cc9-b479-a793d411fd21")
    );
    assert_eq!(
        &t[0x12..0x22],
        &firmware::guid_le("97d02dd8-bd20-4c94-aa78-e7714d36ab2a")
    );
    assert_eq!(
        &t[0x44..0x54],
        &firmware::guid_le("44baf731-3a2f-4bd7-9af1-41e29169781d")
    );
    assert_eq!(
        &t[0x76..0x86],
        &firmware::guid_le("4de79437-abd2-427f-b835-d5b172d2045b")
    );
    assert_eq!(&t[0x86..0x88], &50u16.to_le_bytes());
    assert_eq!(&t[168..], &[0; 8]);
    // No command line and an empty one both hash a lone NUL.
    assert_eq!(SevHashes::new(b"k", None, Some("")), h);
    assert_eq!(SevHashes::new(b"k", Some(b""), None), h);
}
