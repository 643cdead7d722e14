//! Every parser of untrusted bytes against generated and mutated inputs
//! (issue 15): no panic, every case within the harness's time limit, the
//! process under its memory cap. Seeds are files the parsers accept: the
//! example base image's synthetic firmware and kernel, images and
//! superblocks mpk itself writes, the project's lock, and the real SNP
//! and TDX evidence under `tests/vectors/attestation/` (see the
//! PROVENANCE there).
//!
//! Volume: [`CHEAP`] cases for each parser that only parses; fewer where a
//! case costs signature checks ([`SIGNED`], [`TDX_SIGNED`]). The counts
//! scale with `MPK_ROBUST_SCALE`.

use camino::Utf8Path;
use mpk_robust::{JSON_TOKENS, TEXT_TOKENS, accepted, cases, inputs, run};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

/// Cases for a parser that only parses.
const CHEAP: u32 = 100_000;
/// Cases for SEV-SNP evidence (each verifies ECDSA P-384 and RSA-PSS
/// signatures).
const SIGNED: u32 = 20_000;
/// Cases for TDX evidence (each verifies a quote's ECDSA P-256 signatures
/// and the collateral's certificate chains and CRLs).
const TDX_SIGNED: u32 = 20_000;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// A file of the checkout (a missing one is a broken checkout: fail).
fn read(rel: &str) -> Vec<u8> {
    let p = repo(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn text(d: &[u8]) -> String {
    String::from_utf8_lossy(d).into_owned()
}

// ------------------------------------------------------------- EROFS ----

/// An image with every shape the reader meets: empty, inline-tail,
/// whole-block and block-plus-tail files, a directory spanning blocks,
/// nested directories.
fn erofs_seed() -> Vec<u8> {
    use mpk_erofs::{NodeId, Tree};
    let mut t = Tree::new(0o755);
    let mut sizes = std::collections::HashMap::new();
    let mut file = |t: &mut Tree, p: NodeId, name: &str, size: u64| {
        let id = t.add_file(p, name.as_bytes(), 0o644, size).unwrap();
        sizes.insert(id, size);
    };
    for (i, size) in [0u64, 10, 700, 4096, 5000, 8191].into_iter().enumerate() {
        file(&mut t, Tree::ROOT, &format!("f{i}"), size);
    }
    let wide = t.add_dir(Tree::ROOT, b"wide", 0o755).unwrap();
    for i in 0..120 {
        file(
            &mut t,
            wide,
            &format!("entry-{i:03}-with-a-longer-name"),
            i % 7,
        );
    }
    let mut d = Tree::ROOT;
    for level in 0..4 {
        d = t.add_dir(d, format!("d{level}").as_bytes(), 0o755).unwrap();
        file(&mut t, d, "x", 100 + level);
    }
    let layout = mpk_erofs::plan(&t, [7; 16]).unwrap();
    let contents: std::collections::HashMap<NodeId, Vec<u8>> = sizes
        .iter()
        .map(|(&id, &n)| (id, (0..n).map(|i| (i * 7 + id.0 as u64) as u8).collect()))
        .collect();
    layout.to_bytes(|id| contents[&id].as_slice())
}

#[test]
fn erofs_image() {
    let seed = erofs_seed();
    let s = run(
        "EROFS reader (open, walk, read, owners)",
        cases(CHEAP),
        inputs(vec![seed], &[], 3 * 4096),
        |d| {
            let Ok(mut img) = mpk_erofs::reader::Image::open(d.as_slice()) else {
                return false;
            };
            let Ok(entries) = img.walk() else {
                return false;
            };
            for e in &entries {
                if !e.is_dir() {
                    let _ = img.read(e.nid, |_| {});
                }
            }
            for b in 0..(d.len() / 4096) as u64 + 2 {
                let _ = img.owners(&entries, b);
            }
            true
        },
    );
    assert!(s.accepted > 0, "some mutated images still open and walk");
}

#[test]
fn erofs_structs() {
    use mpk_erofs::format::{Dirent, Inode, Superblock};
    let seed = erofs_seed();
    let sb = seed[1024..1024 + Superblock::SIZE].to_vec();
    run(
        "EROFS superblock, inode and dirent decoders",
        cases(CHEAP),
        inputs(vec![sb], &[], 200),
        |d| {
            let mut ok = false;
            if let Ok(b) =
                <&[u8; Superblock::SIZE]>::try_from(d.get(..Superblock::SIZE).unwrap_or(&[]))
            {
                ok = Superblock::decode(b).is_some();
            }
            let _ = Inode::decode(d);
            if let Some(b) = d.get(..Dirent::SIZE) {
                let _ = Dirent::decode(b.try_into().expect("12 bytes"));
            }
            ok
        },
    );
}

// ------------------------------------------------------------ verity ----

#[test]
fn verity_superblock() {
    let sb = mpk_verity::superblock([3; 16], &[9; 32], 1234)
        .unwrap()
        .to_vec();
    let s = run(
        "dm-verity superblock",
        cases(CHEAP),
        inputs(vec![sb], &[], 600),
        |d| accepted(mpk_verity::parse_superblock(d)),
    );
    assert!(s.accepted > 0);
}

// ------------------------------------------------- model and documents ----

const ID: &str = "acme/model@00112233445566778899aabbccddeeff00112233";

fn reference_seeds() -> Vec<Vec<u8>> {
    let id: mpk_model::Identity = ID.parse().unwrap();
    let root = "ab".repeat(32);
    vec![
        format!("{root}_2142208_{}", id.uuid()).into_bytes(),
        format!("{root}_4096_{}", id.partition_uuid()).into_bytes(),
        read("tests/vectors/example-tiny-dense.info"),
    ]
}

#[test]
fn reference_and_identity() {
    let mut seeds = reference_seeds();
    seeds.push(ID.as_bytes().to_vec());
    let s = run(
        "reference and identity strings",
        cases(CHEAP),
        inputs(seeds, TEXT_TOKENS, 200),
        |d| {
            let t = text(d);
            let r = t.trim().parse::<mpk_model::Reference>();
            if let Ok(r) = &r {
                let _ = r.mpk_len();
            }
            let i = t.parse::<mpk_model::Identity>();
            if let Ok(i) = &i {
                let _ = (i.uuid(), i.partition_uuid(), i.salt());
            }
            r.is_ok() || i.is_ok()
        },
    );
    assert!(s.accepted > 0);
}

#[test]
fn kernel_command_line() {
    let id: mpk_model::Identity = ID.parse().unwrap();
    let root = "cd".repeat(32);
    let other: mpk_model::Identity = "org/other@ffeeddccbbaa99887766554433221100ffeeddcc"
        .parse()
        .unwrap();
    let seed = format!(
        "console=ttyS0 mpk.model={ID}:{root}_2142208_{} mpk.model={other}:{root}_8192_{}:crypt \
         mpk.next=/usr/bin/serve mpk.keyagent=/bin/agent panic=-1",
        id.uuid(),
        other.partition_uuid()
    );
    let s = run(
        "mpk.model= command line",
        cases(CHEAP),
        inputs(vec![seed.into_bytes()], TEXT_TOKENS, 400),
        |d| {
            let Ok(c) = mpk_model::cmdline::parse(&text(d)) else {
                return false;
            };
            let _ = c.to_words();
            for m in &c.models {
                let _ = (m.mpk_len(), m.sectors(), m.data_blocks(), m.mount_point());
                let _ = m.verity_params("/dev/vda");
                if m.encrypted {
                    let _ = (m.crypt_sectors(), m.crypt_disk_min());
                    let _ = m.crypt_params("/dev/vda", &"00".repeat(64));
                }
            }
            true
        },
    );
    assert!(s.accepted > 0);
}

#[test]
fn lock_file() {
    let seed = read("models/all-minilm-l6-v2.lock.json");
    let s = run(
        "lock file",
        cases(CHEAP),
        inputs(vec![seed], JSON_TOKENS, 2000),
        |d| {
            let Ok(l) = mpk_hub::Lock::parse(&text(d)) else {
                return false;
            };
            let _ = (l.validate(), l.repo_id(), l.commit_id(), l.digest());
            for f in &l.files {
                let _ = mpk_hub::fetch::Expected::try_from(f);
            }
            true
        },
    );
    assert!(s.accepted > 0);
}

#[test]
fn base_image_json() {
    let seed = read("vm-images/example/image.json");
    let s = run(
        "image.json",
        cases(CHEAP),
        inputs(vec![seed], JSON_TOKENS, 1000),
        |d| {
            let Ok(b) = mpk_model::deployment::BaseImage::parse(&text(d)) else {
                return false;
            };
            let _ = (b.vcpu(), b.mrtd_order());
            for n in mpk_model::deployment::INPUT_NAMES {
                let _ = b.input(n);
            }
            true
        },
    );
    assert!(s.accepted > 0);
}

fn deployment_seed() -> Vec<u8> {
    let h = "ab".repeat(48);
    let v = mpk_testutil::deployment_json(&h, Some(&h), &h, &h);
    serde_json::to_vec_pretty(&v).unwrap()
}

#[test]
fn deployment_document() {
    let s = run(
        "deployment document",
        cases(CHEAP),
        inputs(vec![deployment_seed()], JSON_TOKENS, 1500),
        |d| {
            let a = mpk_model::deployment::Deployment::from_json(d);
            let b = mpk_attest::parse_deployment(d);
            a.is_ok() || b.is_ok()
        },
    );
    assert!(s.accepted > 0);
}

// ------------------------------------------------------ measurements ----

#[test]
fn ovmf_footer_table_and_sev_metadata() {
    use mpk_measure::snp::{Firmware, SevHashes, SnpLaunch, launch_digest};
    let seeds = vec![
        read("vm-images/example/synthetic/OVMF.amdsev.fd"),
        mpk_testutil::firmware::build(&mpk_testutil::firmware::Spec::reordered()),
    ];
    let s = run(
        "OVMF footer table, SEV metadata and launch digest",
        cases(CHEAP),
        inputs(seeds, &[], 16384),
        |d| {
            let Ok(fw) = Firmware::parse(d) else {
                return false;
            };
            let _ = (fw.sections(), fw.reset_eip(), fw.hashes_table_gpa());
            let _ = fw.entry(mpk_measure::snp::SEV_HASH_TABLE_GUID);
            launch_digest(&SnpLaunch {
                firmware: d,
                firmware_digest: None,
                hashes: Some(SevHashes::new(
                    b"kernel",
                    Some(b"initrd"),
                    Some("console=ttyS0"),
                )),
                vcpus: 2,
                vcpu_signature: mpk_measure::snp::cpu_signature(25, 1, 1),
                guest_features: 1,
            })
            .is_ok()
        },
    );
    assert!(s.accepted > 0);
}

#[test]
fn tdvf_metadata_and_mrtd() {
    use mpk_measure::tdx::{MrtdOrder, mrtd, tdvf_sections};
    let seeds = vec![
        read("vm-images/example/synthetic/TDVF.fd"),
        mpk_testutil::tdx::tdvf(8, 5, &mpk_testutil::tdx::sections()),
    ];
    let s = run(
        "TDVF metadata and MRTD",
        cases(CHEAP),
        inputs(seeds, &[], 16384),
        |d| {
            let Ok(_) = tdvf_sections(d) else {
                return false;
            };
            let a = mrtd(d, MrtdOrder::SinglePass);
            let b = mrtd(d, MrtdOrder::TwoPass);
            a.is_ok() && b.is_ok()
        },
    );
    assert!(s.accepted > 0);
}

#[test]
fn kernel_image_header() {
    use mpk_measure::tdx::kernel::{authenticode_sha384, qemu_patch};
    let seeds = vec![
        read("vm-images/example/synthetic/bzImage"),
        mpk_testutil::tdx::bzimage(0x20f, 1, 0x3, true, 8),
    ];
    let s = run(
        "kernel image header (QEMU's patch, Authenticode, RTMR1)",
        cases(CHEAP),
        inputs(seeds, &[], 20000),
        |d| {
            let a = qemu_patch(d, 512, 2 << 30);
            let b = authenticode_sha384(d);
            let c = mpk_measure::tdx::rtmr1(d, 512, 2 << 30);
            a.is_ok() || b.is_ok() || c.is_ok()
        },
    );
    assert!(s.accepted > 0);
}

/// A minimal static x86-64 ELF (header and two program headers), and the
/// same with a `PT_INTERP`.
fn elf_seeds() -> Vec<Vec<u8>> {
    let elf = |types: &[u32]| {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2; // 64-bit
        b[5] = 1; // little-endian
        b[6] = 1;
        b[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        b[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        b[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for &t in types {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&t.to_le_bytes());
            b.extend_from_slice(&ph);
        }
        b
    };
    vec![elf(&[1, 4]), elf(&[6, 3, 1])]
}

#[test]
fn init_elf_check() {
    let s = run(
        "ELF check of the guest init",
        cases(CHEAP),
        inputs(elf_seeds(), &[], 300),
        |d| accepted(mpk_pack::initrd::check_init(Utf8Path::new("init"), d)),
    );
    assert!(s.accepted > 0);
}

// ------------------------------------------------------------- disks ----

#[test]
fn gpt_reader() {
    let layout = mpk_crypt::Layout::new(
        1 << 20,
        uuid::Uuid::from_bytes([1; 16]),
        uuid::Uuid::from_bytes([2; 16]),
    )
    .unwrap();
    // The protective MBR, the header and the entry array (LBA 0..34).
    let head = layout.head()[..34 * 512].to_vec();
    let s = run(
        "GPT reader of the guest init",
        cases(CHEAP),
        inputs(vec![head], &[], 4096),
        |d| {
            let mut h = [0u8; 2048];
            let n = d.len().min(2048);
            h[..n].copy_from_slice(&d[..n]);
            let found = mpk_guest::init::gpt_partitions(&h, |buf, at| {
                let at = usize::try_from(at).map_err(std::io::Error::other)?;
                let src = at
                    .checked_add(buf.len())
                    .and_then(|end| d.get(at..end))
                    .ok_or(std::io::ErrorKind::UnexpectedEof)?;
                buf.copy_from_slice(src);
                Ok(())
            });
            !found.is_empty()
        },
    );
    assert!(s.accepted > 0);
}

#[test]
fn master_key_bytes() {
    let seeds = vec![vec![0x5a; 64], (0..64).collect()];
    let s = run(
        "master key file contents",
        cases(CHEAP),
        inputs(seeds, &[], 200),
        |d| accepted(mpk_crypt::MasterKey::from_bytes(d)),
    );
    assert!(s.accepted > 0);
}

// ------------------------------------------------------- attestation ----

fn vector(rel: &str) -> Vec<u8> {
    read(&format!("tests/vectors/attestation/{rel}"))
}

fn snp_report() -> Vec<u8> {
    hex::decode(text(&vector("snp-attestation/report_milan.hex")).trim()).unwrap()
}

fn deployment() -> mpk_model::deployment::Deployment {
    mpk_model::deployment::Deployment::from_json(&deployment_seed()).unwrap()
}

/// 2025-06-20T00:00:00Z: inside the TDX collateral's window.
const AT: i64 = 1_750_377_600;

#[test]
fn snp_report_parser() {
    let s = run(
        "SEV-SNP report parser",
        cases(CHEAP),
        inputs(vec![snp_report()], &[], 1300),
        |d| accepted(mpk_attest::snp::parse_report(d)),
    );
    assert!(s.accepted > 0);
}

#[test]
fn snp_evidence_verification() {
    let (vcek, chain) = (
        vector("snp-attestation/vcek_milan.der"),
        vector("snp-attestation/cert_chain_milan"),
    );
    let dep = deployment();
    let policy = mpk_attest::Policy {
        report_data: None,
        at: AT,
        trusted_roots: Vec::new(),
    };
    // Which of the three inputs is mutated, and how.
    let strategy =
        (0u8..3, inputs(vec![snp_report()], &[], 1300)).prop_flat_map(move |(which, report)| {
            let other = match which {
                0 => vec![vec![]],
                1 => vec![vcek.clone()],
                _ => vec![chain.clone()],
            };
            (Just(which), Just(report), inputs(other, &[], 64))
        });
    let (report0, vcek0, chain0) = (
        snp_report(),
        vector("snp-attestation/vcek_milan.der"),
        vector("snp-attestation/cert_chain_milan"),
    );
    run(
        "SEV-SNP evidence: report, VCEK and chain, signatures verified",
        cases(SIGNED),
        strategy,
        |(which, report, other)| {
            let (r, v, c) = match which {
                0 => (report.as_slice(), vcek0.as_slice(), chain0.as_slice()),
                1 => (report0.as_slice(), other.as_slice(), chain0.as_slice()),
                _ => (report0.as_slice(), vcek0.as_slice(), other.as_slice()),
            };
            let e = mpk_attest::snp::Evidence {
                report: r,
                vcek: v,
                ca_chain: Some(c),
            };
            accepted(mpk_attest::snp::verify(&dep, &e, &policy))
        },
    );
}

#[test]
fn tdx_evidence_verification() {
    let quote = vector("tdx-attestation/tdx_quote");
    let collateral = vector("tdx-attestation/tdx_quote_collateral.json");
    let dep = deployment();
    let policy = mpk_attest::Policy {
        report_data: None,
        at: AT,
        trusted_roots: Vec::new(),
    };
    let (q, c) = (quote.clone(), collateral.clone());
    let strategy = prop_oneof![
        inputs(vec![quote], &[], 5000).prop_map(move |d| (d, mpk_robust::Input(c.clone()))),
        inputs(vec![collateral], JSON_TOKENS, 3000)
            .prop_map(move |d| (mpk_robust::Input(q.clone()), d)),
    ];
    run(
        "TDX quote and collateral, signatures verified",
        cases(TDX_SIGNED),
        strategy,
        |(quote, collateral)| {
            accepted(mpk_attest::tdx::verify(
                &dep, quote, collateral, None, &policy,
            ))
        },
    );
}

#[test]
fn tdx_platform_file() {
    let h = "ab".repeat(48);
    let seeds = vec![format!("{{\"mrtd\": \"{h}\", \"rtmr0\": \"{h}\"}}").into_bytes()];
    let s = run(
        "TDX platform file",
        cases(CHEAP),
        inputs(seeds, JSON_TOKENS, 300),
        |d| accepted(mpk_attest::tdx::Platform::from_json(d)),
    );
    assert!(s.accepted > 0);
}
