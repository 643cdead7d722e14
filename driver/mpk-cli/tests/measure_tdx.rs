//! `mpk measure tdx` (MRTD, RTMR1, RTMR2) against the independent Python
//! reference `tests/vectors/tdx/tdx_reference.py` on the same bytes:
//! synthetic TDVF images (every section type and attribute), Debian
//! bookworm's real `OVMF.fd` (a TDVF), synthetic bzImages (boot protocols,
//! loader flags, with and without a certificate table) and Debian's real
//! cloud kernel, across initrd sizes, guest memory sizes, command lines and
//! both MRTD orders. The reference runs in one Python process per test.
mod common;
use mpk_testutil::debian;
use mpk_testutil::tdx as tdx_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use mpk_measure::tdx::{self, MrtdOrder, TdxLaunch};
use serde_json::{Value, json};

fn target_tmp() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

fn reference_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/tdx/tdx_reference.py")
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

#[derive(Clone, Debug)]
struct Case {
    firmware: Option<PathBuf>,
    kernel: PathBuf,
    initrd: PathBuf,
    append: String,
    memory_mb: Option<u64>,
    order: &'static str,
}

/// Runs the reference over all cases in one process: one JSON object or
/// `ERR …` line per case.
fn reference(python: &Path, cases: &[Case]) -> Vec<String> {
    let input: Vec<Value> = cases
        .iter()
        .map(|c| {
            json!({"firmware": c.firmware, "kernel": c.kernel, "initrd": c.initrd,
                   "append": c.append, "memory_mb": c.memory_mb, "mrtd_order": c.order})
        })
        .collect();
    common::run_batch(
        Command::new(python).arg(reference_script()).arg("--batch"),
        &input.into(),
        cases.len(),
    )
}

/// Ours, through the library the CLI calls: a canonical JSON line or `ERR`.
fn ours(c: &Case) -> String {
    let fw = c.firmware.as_ref().map(|p| std::fs::read(p).unwrap());
    let kernel = std::fs::read(&c.kernel).unwrap();
    let initrd = std::fs::read(&c.initrd).unwrap();
    let r = tdx::measure(&TdxLaunch {
        firmware: fw.as_deref(),
        mrtd_order: if c.order == "single" {
            MrtdOrder::SinglePass
        } else {
            MrtdOrder::TwoPass
        },
        kernel: &kernel,
        initrd: &initrd,
        cmdline: &c.append,
        memory: c.memory_mb.map_or(tdx::RUNTIME_MEMORY, |m| m << 20),
    });
    match r {
        Ok(m) => {
            // Sorted keys whatever serde_json's map type (another crate in
            // the workspace turns on its preserve_order feature).
            let mut o = std::collections::BTreeMap::new();
            o.insert("rtmr1", m.rtmr1.to_string());
            o.insert("rtmr2", m.rtmr2.to_string());
            if let Some(d) = m.mrtd {
                o.insert("mrtd", d.to_string());
            }
            // Python's json.dumps(sort_keys=True) spacing.
            serde_json::to_string(&o)
                .unwrap()
                .replace("\":\"", "\": \"")
                .replace("\",\"", "\", \"")
        }
        Err(e) => format!("ERR {e}"),
    }
}

fn compare(python: &Path, cases: &[Case]) {
    let want = reference(python, cases);
    for (c, w) in cases.iter().zip(want) {
        let got = ours(c);
        if w.starts_with("ERR") {
            assert!(got.starts_with("ERR"), "{c:?}: reference {w}, ours {got}");
        } else {
            assert_eq!(got, w, "{c:?}");
        }
    }
}

struct Inputs {
    dir: PathBuf,
    initrds: Vec<PathBuf>,
    kernels: Vec<PathBuf>,
}

fn inputs() -> Inputs {
    let dir = target_tmp().join("measure-tdx");
    std::fs::create_dir_all(&dir).unwrap();
    let mut small = b"070701".to_vec();
    small.resize(5006, 0);
    let big: Vec<u8> = (0..(1u32 << 20) + 77)
        .map(|i| i.wrapping_mul(2654435761) as u8)
        .collect();
    let initrds = vec![
        write(&dir, "initrd-small", &small),
        write(&dir, "initrd-big", &big),
        write(&dir, "initrd-empty", b""),
    ];
    let b = tdx_support::bzimage;
    let kernels = vec![
        write(&dir, "bz-20f-cert", &b(0x20F, 0x01, 0x7F, true, 1)),
        write(&dir, "bz-20f-nocert", &b(0x20F, 0x01, 0x3F, false, 2)),
        write(&dir, "bz-20b", &b(0x20B, 0x01, 0, true, 3)),
        write(&dir, "bz-201-low", &b(0x201, 0x00, 0, false, 4)),
        write(&dir, "bz-1ff", &b(0x1FF, 0x00, 0, false, 5)),
    ];
    Inputs {
        dir,
        initrds,
        kernels,
    }
}

const CMDLINES: [&str; 5] = [
    "",
    "console=ttyS0",
    "console=ttyS0 ro  ",
    "é 模型 🙂 quiet",
    "mpk.model=hf-internal-testing/tiny-random-GPT2Model@d6694b0d8fe17978761c9305dc151780506b192e:17c6605f3becf63a63da37cc6958b2d18f8abc750f9f546b9f57133db40c4326_2142208_905785b4-b198-5ed6-b97d-e7c36a0be1df",
];

#[test]
fn synthetic_inputs_match_the_reference() {
    let Some(python) = common::python_with("hashlib") else {
        return;
    };
    let inp = inputs();
    let fw = write(
        &inp.dir,
        "tdvf.fd",
        &tdx_support::tdvf(8, 7, &tdx_support::sections()),
    );
    let mut cases = Vec::new();
    for (ki, k) in inp.kernels.iter().enumerate() {
        for (ii, i) in inp.initrds.iter().enumerate() {
            for mem in [
                None,
                Some(256),
                Some(2048),
                Some(2815),
                Some(2816),
                Some(65536),
            ] {
                cases.push(Case {
                    firmware: (ki == 0 && ii == 0).then(|| fw.clone()),
                    kernel: k.clone(),
                    initrd: i.clone(),
                    append: CMDLINES[(ki + ii) % CMDLINES.len()].into(),
                    memory_mb: mem,
                    order: if mem.is_some() { "single" } else { "two-pass" },
                });
            }
        }
    }
    for a in CMDLINES {
        cases.push(Case {
            firmware: Some(fw.clone()),
            kernel: inp.kernels[0].clone(),
            initrd: inp.initrds[0].clone(),
            append: a.into(),
            memory_mb: None,
            order: "single",
        });
    }
    compare(&python, &cases);
}

#[test]
fn real_debian_ovmf_and_kernel_match_the_reference_and_the_published_mrtd() {
    let Some(python) = common::python_with("hashlib") else {
        return;
    };
    let (Some(ovmf), Some(kernel)) = (
        debian::ovmf(target_tmp()),
        debian::cloud_kernel(target_tmp()),
    ) else {
        return;
    };
    let inp = inputs();
    let fw = std::fs::read(&ovmf).unwrap();
    // measurement.md records MRTD of Debian bookworm's OVMF.fd (2022.11-6+deb12u2,
    // this sha256) by first and last bytes, from the reference tools.
    let bookworm = "7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773";
    if hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&fw)) == bookworm {
        let single = tdx::mrtd(&fw, MrtdOrder::SinglePass).unwrap().to_string();
        let two = tdx::mrtd(&fw, MrtdOrder::TwoPass).unwrap().to_string();
        assert!(
            single.starts_with("4c7206f0") && single.ends_with("231c47"),
            "{single}"
        );
        assert!(
            two.starts_with("acccbcc8") && two.ends_with("43f7e1"),
            "{two}"
        );
    } else {
        eprintln!(
            "note: {} is not the recorded bookworm build; differential only",
            ovmf.display()
        );
    }
    let mut cases = Vec::new();
    for (n, a) in CMDLINES.iter().enumerate() {
        for order in ["single", "two-pass"] {
            cases.push(Case {
                firmware: (n < 1).then(|| ovmf.clone()),
                kernel: kernel.clone(),
                initrd: inp.initrds[n % inp.initrds.len()].clone(),
                append: a.to_string(),
                memory_mb: [None, Some(2048), Some(8192)][n % 3],
                order,
            });
        }
    }
    compare(&python, &cases);
}

#[test]
fn cli_prints_the_reference_json() {
    let Some(python) = common::python_with("hashlib") else {
        return;
    };
    let inp = inputs();
    let fw = write(
        &inp.dir,
        "tdvf-cli.fd",
        &tdx_support::tdvf(8, 9, &tdx_support::sections()),
    );
    for (order, mem) in [("single", None), ("two-pass", Some("2048"))] {
        let mut args = vec![
            "measure".into(),
            "tdx".into(),
            "--firmware".into(),
            fw.clone().into_os_string(),
            "--kernel".into(),
            inp.kernels[0].clone().into_os_string(),
            "--initrd".into(),
            inp.initrds[0].clone().into_os_string(),
            "--append".into(),
            "console=ttyS0 é ".into(),
            "--mrtd-order".into(),
            order.into(),
        ];
        if let Some(m) = mem {
            args.extend(["--memory-mb".into(), m.into()]);
        }
        let out = common::mpk().args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ours: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut r = Command::new(&python);
        r.arg(reference_script()).args(&args[2..]);
        let theirs: Value = serde_json::from_slice(&r.output().unwrap().stdout).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(ours.as_object().unwrap().len(), 3);
    }
}

#[test]
fn cli_names_what_is_wrong_with_the_firmware_and_kernel() {
    let inp = inputs();
    let not_tdvf = write(&inp.dir, "zeros.fd", &[0u8; 8192]);
    let mut bad_sec = tdx_support::sections();
    bad_sec[1].2 += 0x10;
    let misaligned = write(
        &inp.dir,
        "misaligned.fd",
        &tdx_support::tdvf(8, 1, &bad_sec),
    );
    let not_bz = write(&inp.dir, "not-bz", &[0u8; 8192]);
    for (fw, kernel, want) in [
        (&not_tdvf, &inp.kernels[0], "no OVMF footer table"),
        (
            &misaligned,
            &inp.kernels[0],
            "TDVF section 1 is malformed: memory address is not page aligned",
        ),
        (&not_tdvf, &not_bz, "no OVMF footer table"),
    ] {
        let out = common::mpk()
            .args(["measure", "tdx", "--firmware"])
            .arg(fw)
            .arg("--kernel")
            .arg(kernel)
            .arg("--initrd")
            .arg(&inp.initrds[0])
            .args(["--append", ""])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
    }
    let out = common::mpk()
        .args(["measure", "tdx", "--kernel"])
        .arg(&not_bz)
        .arg("--initrd")
        .arg(&inp.initrds[0])
        .args(["--append", ""])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not a bzImage"),
        "{err}"
    );
    let out = common::mpk()
        .args(["measure", "tdx", "--kernel"])
        .arg(&inp.kernels[4])
        .arg("--initrd")
        .arg(&inp.initrds[0])
        .args(["--append", ""])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("too old for an initrd"),
        "{err}"
    );
}
