//! `mpk measure snp` against `sev-snp-measure` 0.0.13 (PyPI) on the same
//! bytes: synthetic firmware (every SEV metadata section type), a real
//! Debian cloud bzImage, and each input axis of issue 4 plus 256 seeded
//! random combinations. The reference runs in one Python process per test
//! through `sevsnpmeasure.guest.snp_calc_launch_digest`; a few cases also
//! run its CLI to compare the printed output byte for byte.
mod common;
use mpk_testutil::{debian, firmware};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;

/// The `--vcpu-type` names of sev-snp-measure 0.0.13.
const VCPU_TYPES: [&str; 16] = [
    "EPYC",
    "EPYC-v1",
    "EPYC-v2",
    "EPYC-IBPB",
    "EPYC-v3",
    "EPYC-v4",
    "EPYC-Rome",
    "EPYC-Rome-v1",
    "EPYC-Rome-v2",
    "EPYC-Rome-v3",
    "EPYC-Milan",
    "EPYC-Milan-v1",
    "EPYC-Milan-v2",
    "EPYC-Genoa",
    "EPYC-Genoa-v1",
    "EPYC-Turin",
];

/// Reads a JSON list of cases on stdin, prints one hex digest (or
/// `ERR <message>`) per case.
const REFERENCE: &str = r#"
import json, sys
from sevsnpmeasure import guest, vcpu_types
from sevsnpmeasure.vmm_types import VMMType
for c in json.load(sys.stdin):
    cpu = c["cpu"]
    if "type" in cpu:
        sig = vcpu_types.CPU_SIGS[cpu["type"]]
    elif "sig" in cpu:
        sig = cpu["sig"]
    else:
        sig = vcpu_types.cpu_sig(cpu["family"], cpu["model"], cpu["stepping"])
    try:
        ld = guest.snp_calc_launch_digest(c["vcpus"], sig, c["ovmf"], c["kernel"], c["initrd"],
                                          c["append"], c["features"], c["ovmf_hash"] or "",
                                          VMMType.QEMU)
        print(ld.hex())
    except Exception as e:
        print("ERR", repr(e))
"#;

/// How the vCPU is named on the command line.
#[derive(Clone, Debug)]
enum Cpu {
    Type(&'static str),
    Sig(u32),
    Fms(u32, u32, u32),
}

#[derive(Clone, Debug)]
struct Case {
    ovmf: PathBuf,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    append: Option<String>,
    vcpus: u32,
    cpu: Cpu,
    features: u64,
    ovmf_hash: Option<String>,
}

/// Inputs shared by every test of this binary.
struct Env {
    dir: PathBuf,
    python: PathBuf,
    /// AmdSev-like firmware images (with a kernel-hashes section).
    amdsev: Vec<PathBuf>,
    /// A firmware with SEV metadata but no kernel-hashes section.
    no_hashes: PathBuf,
    kernel: PathBuf,
    initrds: Vec<PathBuf>,
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    // Unique per call: tests run as threads of one process, and two of
    // them writing the same temporary name would rename each other's
    // half-written file into place.
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!("{name}.{}.{n}.tmp", std::process::id()));
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, &p).unwrap();
    p
}

/// `vmlinuz` of Debian's current `linux-image-*-cloud-amd64` (whatever ABI
/// `linux-image-cloud-amd64` depends on), fetched once into a cache under
/// the target directory, shared with the TDX tests.
fn debian_kernel() -> Option<PathBuf> {
    debian::cloud_kernel(Path::new(env!("CARGO_TARGET_TMPDIR")))
}

fn env() -> Option<&'static Env> {
    static ENV: OnceLock<Option<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let python = common::python_with("sevsnpmeasure.guest")?;
        let kernel = debian_kernel()?;
        // A fixed directory, rewritten with the same bytes on every run.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("measure-snp");
        std::fs::create_dir_all(&dir).unwrap();
        let mut amdsev = vec![write(
            &dir,
            "amdsev.fd",
            &firmware::build(&firmware::Spec::amdsev(64, 1)),
        )];
        amdsev.push(write(
            &dir,
            "reordered.fd",
            &firmware::build(&firmware::Spec::reordered()),
        ));
        let no_hashes = write(
            &dir,
            "no-hashes.fd",
            &firmware::build(&firmware::Spec::without_kernel_hashes()),
        );
        let mut small = b"070701".to_vec();
        small.resize(5006, 0);
        let mut rng = StdRng::seed_from_u64(4);
        let big: Vec<u8> = (0..(1 << 20) + 123).map(|_| rng.r#gen()).collect();
        let initrds = vec![
            write(&dir, "initrd-small", &small),
            write(&dir, "initrd-big", &big),
            write(&dir, "initrd-empty", b""),
        ];
        Some(Env {
            dir,
            python,
            amdsev,
            no_hashes,
            kernel,
            initrds,
        })
    })
    .as_ref()
}

fn reference(e: &Env, cases: &[Case]) -> Vec<String> {
    let input: Vec<_> = cases
        .iter()
        .map(|c| {
            let cpu = match c.cpu {
                Cpu::Type(t) => json!({"type": t}),
                Cpu::Sig(s) => json!({"sig": s}),
                Cpu::Fms(f, m, s) => json!({"family": f, "model": m, "stepping": s}),
            };
            json!({
                "ovmf": c.ovmf, "kernel": c.kernel, "initrd": c.initrd, "append": c.append,
                "vcpus": c.vcpus, "cpu": cpu, "features": c.features, "ovmf_hash": c.ovmf_hash,
            })
        })
        .collect();
    common::run_batch(
        Command::new(&e.python).args(["-c", REFERENCE]),
        &input.into(),
        cases.len(),
    )
}

fn args(c: &Case) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = vec!["measure".into(), "snp".into()];
    let mut push = |k: &str, v: std::ffi::OsString| {
        a.push(k.into());
        a.push(v);
    };
    push("--mode", "snp".into());
    push("--vcpus", c.vcpus.to_string().into());
    match c.cpu {
        Cpu::Type(t) => push("--vcpu-type", t.into()),
        Cpu::Sig(s) => push("--vcpu-sig", format!("{s:#x}").into()),
        Cpu::Fms(f, m, s) => {
            push("--vcpu-family", f.to_string().into());
            push("--vcpu-model", m.to_string().into());
            push("--vcpu-stepping", s.to_string().into());
        }
    }
    push("--ovmf", c.ovmf.clone().into());
    if let Some(k) = &c.kernel {
        push("--kernel", k.into());
    }
    if let Some(i) = &c.initrd {
        push("--initrd", i.into());
    }
    if let Some(s) = &c.append {
        push("--append", s.into());
    }
    push("--guest-features", format!("{:#x}", c.features).into());
    if let Some(h) = &c.ovmf_hash {
        push("--snp-ovmf-hash", h.into());
    }
    a
}

fn ours(c: &Case) -> String {
    let out = common::mpk().args(args(c)).output().unwrap();
    assert!(
        out.status.success(),
        "mpk failed on {c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8(out.stdout).unwrap();
    s.strip_suffix('\n').unwrap().to_string()
}

/// Compares every case; returns how many matched.
fn check(e: &Env, cases: &[Case]) {
    let want = reference(e, cases);
    for (c, w) in cases.iter().zip(&want) {
        assert_eq!(w.len(), 96, "reference refused {c:?}: {w}");
        assert_eq!(&ours(c), w, "differs from sev-snp-measure on {c:?}");
    }
    eprintln!("{} cases equal to sev-snp-measure", cases.len());
}

fn base(e: &Env) -> Case {
    Case {
        ovmf: e.amdsev[0].clone(),
        kernel: Some(e.kernel.clone()),
        initrd: Some(e.initrds[0].clone()),
        append: Some("console=ttyS0 root=/dev/vda".into()),
        vcpus: 4,
        cpu: Cpu::Type("EPYC-v4"),
        features: 0x1,
        ovmf_hash: None,
    }
}

#[test]
fn every_vcpu_type_name_and_signature_form() {
    let Some(e) = env() else { return };
    let mut cases: Vec<Case> = VCPU_TYPES
        .iter()
        .map(|t| Case {
            cpu: Cpu::Type(t),
            ..base(e)
        })
        .collect();
    for cpu in [
        Cpu::Sig(0x00A0_0F11),
        Cpu::Sig(0x00B0_0F00),
        Cpu::Fms(25, 17, 0),
        Cpu::Fms(26, 0x11, 2),
        Cpu::Fms(15, 0xFF, 0x1F),
    ] {
        cases.push(Case { cpu, ..base(e) });
    }
    check(e, &cases);
}

#[test]
fn vcpus_1_to_64() {
    let Some(e) = env() else { return };
    let cases: Vec<Case> = (1..=64)
        .map(|vcpus| Case {
            vcpus,
            kernel: None,
            initrd: None,
            append: None,
            ovmf: e.amdsev[(vcpus % 2) as usize].clone(),
            ..base(e)
        })
        .collect();
    check(e, &cases);
}

#[test]
fn features_and_boot_inputs() {
    let Some(e) = env() else { return };
    let cmdlines = [
        None,
        Some(""),
        Some("console=ttyS0"),
        Some("console=ttyS0 root=/dev/vda  "),
        Some(" leading space"),
        Some("mpk.model=café/模型@0123 ünïcödé ✓ "),
        Some("tab\tand\nnewline"),
    ];
    let mut cases = Vec::new();
    for features in [0x1, 0x21] {
        for ovmf in &e.amdsev {
            // No kernel at all (kernel-hashes page measured as zero pages).
            cases.push(Case {
                ovmf: ovmf.clone(),
                kernel: None,
                initrd: None,
                append: None,
                features,
                ..base(e)
            });
            for initrd in [None, Some(0), Some(1), Some(2)] {
                for cmdline in cmdlines {
                    cases.push(Case {
                        ovmf: ovmf.clone(),
                        initrd: initrd.map(|i| e.initrds[i].clone()),
                        append: cmdline.map(str::to_string),
                        features,
                        ..base(e)
                    });
                }
            }
        }
        // Firmware without a kernel-hashes section, booted without a kernel.
        cases.push(Case {
            ovmf: e.no_hashes.clone(),
            kernel: None,
            initrd: None,
            append: None,
            features,
            ..base(e)
        });
    }
    check(e, &cases);
}

#[test]
fn random_combinations_256() {
    let Some(e) = env() else { return };
    let mut rng = StdRng::seed_from_u64(0x5e5_0013);
    let alphabet: Vec<char> = "abz09 =./-_,:\"'ü日✓\t ".chars().collect();
    let cases: Vec<Case> = (0..256)
        .map(|_| {
            let kernel = rng.gen_bool(0.7);
            let cpu = match rng.gen_range(0..3) {
                0 => Cpu::Type(VCPU_TYPES[rng.gen_range(0..VCPU_TYPES.len())]),
                1 => Cpu::Sig(rng.r#gen()),
                _ => Cpu::Fms(
                    rng.gen_range(1..=0x10E),
                    rng.gen_range(0..256),
                    rng.gen_range(0..16),
                ),
            };
            let append = (kernel && rng.gen_bool(0.8)).then(|| {
                let n = rng.gen_range(0..200);
                (0..n)
                    .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                    .collect::<String>()
            });
            Case {
                ovmf: e.amdsev[rng.gen_range(0..e.amdsev.len())].clone(),
                kernel: kernel.then(|| e.kernel.clone()),
                initrd: (kernel && rng.gen_bool(0.6))
                    .then(|| e.initrds[rng.gen_range(0..e.initrds.len())].clone()),
                append,
                vcpus: rng.gen_range(1..=64),
                cpu,
                features: if rng.gen_bool(0.5) {
                    [0x1, 0x21][rng.gen_range(0..2)]
                } else {
                    rng.r#gen::<u64>()
                },
                ovmf_hash: None,
            }
        })
        .collect();
    check(e, &cases);
}

/// Runs the reference CLI (`python3 -m sevsnpmeasure.cli`) and `mpk
/// measure snp` with the same arguments; stdout must be identical.
fn same_cli_output<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(e: &Env, extra: &[S]) {
    let reference = Command::new(&e.python)
        .args(["-m", "sevsnpmeasure.cli"])
        .args(extra)
        .output()
        .unwrap();
    assert!(reference.status.success(), "reference failed on {extra:?}");
    let ours = common::mpk()
        .args(["measure", "snp"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        ours.status.success(),
        "mpk failed on {extra:?}: {}",
        String::from_utf8_lossy(&ours.stderr)
    );
    assert_eq!(
        String::from_utf8(ours.stdout).unwrap(),
        String::from_utf8(reference.stdout).unwrap(),
        "on {extra:?}"
    );
}

#[test]
fn cli_prints_what_sev_snp_measure_prints() {
    let Some(e) = env() else { return };
    let ovmf = e.amdsev[0].to_str().unwrap();
    let kernel = e.kernel.to_str().unwrap();
    let initrd = e.initrds[0].to_str().unwrap();
    let common = [
        "--mode",
        "snp",
        "--vcpus",
        "8",
        "--ovmf",
        ovmf,
        "--kernel",
        kernel,
        "--initrd",
        initrd,
        "--append",
        "ro console=ttyS0 ",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        common
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .map(str::to_string)
            .collect()
    };
    same_cli_output(e, &with(&["--vcpu-type", "EPYC-Milan"]));
    same_cli_output(
        e,
        &with(&["--vcpu-type", "EPYC-Genoa", "--output-format", "base64"]),
    );
    same_cli_output(e, &with(&["--vcpu-type", "EPYC-Turin", "-v"]));
    same_cli_output(
        e,
        &with(&[
            "--vcpu-sig",
            "0xA10F10",
            "--output-format",
            "base64",
            "--verbose",
        ]),
    );
    same_cli_output(
        e,
        &with(&[
            "--vcpu-family",
            "25",
            "--vcpu-model",
            "1",
            "--vcpu-stepping",
            "1",
        ]),
    );
    same_cli_output(
        e,
        &with(&[
            "--vcpu-type",
            "EPYC",
            "--guest-features",
            "0x21",
            "--vmm-type",
            "QEMU",
        ]),
    );
    same_cli_output(
        e,
        &[
            "--mode",
            "snp",
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC-v4",
            "--ovmf",
            ovmf,
        ],
    );
    // The firmware digest, then a launch from it (pages not re-hashed).
    same_cli_output(e, &["--mode", "snp:ovmf-hash", "--ovmf", ovmf]);
    same_cli_output(
        e,
        &[
            "--mode",
            "snp:ovmf-hash",
            "--ovmf",
            ovmf,
            "--output-format",
            "base64",
        ],
    );
    let fw = common::mpk()
        .args(["measure", "snp", "--mode", "snp:ovmf-hash", "--ovmf", ovmf])
        .output()
        .unwrap();
    let fw = String::from_utf8(fw.stdout).unwrap();
    let fw = fw.trim_end();
    // Pair the digest with a different firmware file (same metadata
    // layout): only the given digest must count for the pages.
    let other = e.amdsev[1].to_str().unwrap();
    same_cli_output(e, &with(&["--vcpu-type", "EPYC-v4", "--snp-ovmf-hash", fw]));
    same_cli_output(
        e,
        &[
            "--mode",
            "snp",
            "--vcpus",
            "3",
            "--vcpu-type",
            "EPYC-v4",
            "--ovmf",
            other,
            "--snp-ovmf-hash",
            fw,
        ],
    );
}

/// Runs `mpk measure snp` on a bad input; it must fail naming the problem.
fn refused(e: &Env, name: &str, fw: &[u8], kernel: bool, want: &str) {
    let ovmf = write(&e.dir, name, fw);
    let mut c = Case { ovmf, ..base(e) };
    if !kernel {
        c.kernel = None;
        c.initrd = None;
        c.append = None;
    }
    let out = common::mpk().args(args(&c)).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{name}: {err}");
    assert!(out.stdout.is_empty(), "{name}");
    assert!(err.contains(want), "{name}: want {want:?} in {err:?}");
}

#[test]
fn bad_firmware_is_refused_with_a_specific_error() {
    let Some(e) = env() else { return };
    let good = firmware::Spec::amdsev(8, 9);
    let mut s = good.clone();
    s.footer = false;
    refused(
        e,
        "no-footer.fd",
        &firmware::build(&s),
        false,
        "no OVMF footer table",
    );
    let mut s = good.clone();
    s.sections = None;
    refused(
        e,
        "no-meta.fd",
        &firmware::build(&s),
        false,
        "no SEV metadata",
    );
    let mut fw = firmware::build(&good);
    firmware::set_footer_size(&mut fw, 0xFFFF);
    refused(e, "trunc.fd", &fw, false, "truncated OVMF footer table");
    let mut fw = firmware::build(&good);
    firmware::set_footer_size(&mut fw, 17);
    refused(e, "trunc17.fd", &fw, false, "truncated OVMF footer table");
    let no_hashes = std::fs::read(&e.no_hashes).unwrap();
    refused(e, "nh.fd", &no_hashes, true, "no SNP_KERNEL_HASHES section");
    let mut s = good.clone();
    s.reset_eip = None;
    refused(
        e,
        "no-reset.fd",
        &firmware::build(&s),
        false,
        "no SEV-ES reset block",
    );
    let mut s = good.clone();
    s.hashes_table = None;
    refused(
        e,
        "no-table.fd",
        &firmware::build(&s),
        true,
        "no SEV hashes table entry",
    );
    let mut s = good.clone();
    s.sections.as_mut().unwrap().push((0x90_0000, 0x1000, 7));
    refused(
        e,
        "unknown.fd",
        &firmware::build(&s),
        false,
        "unknown type 0x7",
    );
    let mut fw = firmware::build(&good);
    let len = fw.len();
    fw[len - 2048..len - 2044].copy_from_slice(b"XSEV");
    refused(e, "sig.fd", &fw, false, "wrong SEV metadata signature");
    let mut fw = firmware::build(&good);
    fw.truncate(len - 100);
    refused(e, "short.fd", &fw, false, "no OVMF footer table");

    // The reference refuses the kernel-without-hashes-section case too.
    let c = Case {
        ovmf: e.no_hashes.clone(),
        ..base(e)
    };
    let r = reference(e, &[c]);
    assert!(r[0].contains("SNP_KERNEL_HASHES"), "{r:?}");
}
