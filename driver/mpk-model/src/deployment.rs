//! The JSON documents (feature `serde`): a base image as data
//! (`vm-images/<name>/image.json`) and the deployment document of one model
//! on one base image: the exact kernel command line, the SEV-SNP launch
//! digest, TDX RTMR1/RTMR2 (and MRTD with a TDVF), the VM shape and the
//! SHA-256 of every input, with Tinfoil's published field names
//! (`snp_measurement`, `tdx_measurement`, `vm_shape`, `cmdline`).
//! `mpk measure deployment` writes [`Deployment`]; `mpk attest` reads it.

use std::path::{Component, Path};

use mpk_measure::snp::VcpuType;
use mpk_measure::tdx;
use serde::{Deserialize, Serialize};

use crate::names::{hub_name_ok, is_lower_hex};

/// The placeholder in `cmdline` replaced by the `mpk.model=` words.
pub const MODELS_PLACEHOLDER: &str = "@MPK_MODELS@";

/// The base-image inputs a file can be given for.
pub const INPUT_NAMES: [&str; 4] = ["snp_ovmf", "tdvf", "kernel", "initrd"];

/// Why a document was refused: its JSON, or the field named.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// Not JSON of the expected shape.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// A field breaks its rule.
    #[error("{0}")]
    Field(String),
}

fn field(msg: String) -> DocumentError {
    DocumentError::Field(msg)
}

/// One input file of a base image: a path relative to the image's folder,
/// or a Nix output (resolved by the caller), and the SHA-256 it must have.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    /// Path relative to the folder holding `image.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Nix installable that builds it (e.g. `.#base-kernel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nix: Option<String>,
    /// The file inside that Nix output (e.g. `bzImage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// SHA-256 of the file, 64 lowercase hex digits.
    pub sha256: String,
}

impl FileRef {
    fn check(&self, what: &str) -> Result<(), DocumentError> {
        if !is_lower_hex(&self.sha256, 64) {
            return Err(field(format!(
                "{what}: sha256 `{}` is not 64 lowercase hex digits",
                self.sha256
            )));
        }
        match (&self.path, &self.nix) {
            (Some(p), None) => {
                if self.file.is_some() {
                    return Err(field(format!("{what}: `file` goes with `nix`, not `path`")));
                }
                let ok = !p.is_empty()
                    && Path::new(p)
                        .components()
                        .all(|c| matches!(c, Component::Normal(_)));
                if !ok {
                    return Err(field(format!(
                        "{what}: path `{p}` must be relative, inside the image folder, without `..`"
                    )));
                }
            }
            (None, Some(_)) => {}
            _ => {
                return Err(field(format!(
                    "{what}: give exactly one of `path` and `nix`"
                )));
            }
        }
        Ok(())
    }
}

/// `vm-images/<name>/image.json`, version 1.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BaseImage {
    /// Schema version, 1.
    pub version: u32,
    /// The base image's name: `base_image` of the deployment and the
    /// `<base>` of `<commit>.<base>.deployment.json`. Default: the folder's
    /// name (a Nix store path's name is not the image's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// AmdSev OVMF build (with the kernel-hashes section).
    pub snp_ovmf: FileRef,
    /// TDVF (OVMF with TDX metadata); MRTD is published only with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdvf: Option<FileRef>,
    /// Order of TDVF page adds and extends of the TDX hosts (`single` or
    /// `two-pass`; default `single`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdx_mrtd_order: Option<String>,
    /// bzImage with EFI stub.
    pub kernel: FileRef,
    /// Initrd.
    pub initrd: FileRef,
    /// Command-line template holding `@MPK_MODELS@` exactly once.
    pub cmdline: String,
    /// vCPUs.
    pub vcpus: u32,
    /// `sev-snp-measure` vCPU type name (e.g. `EPYC-v4`).
    pub vcpu_type: String,
    /// SEV_FEATURES (bit 0, SNPActive, must be set).
    pub guest_features: u64,
    /// Guest memory in MiB (also used for RTMR1's initrd placement).
    pub memory_mb: u64,
    /// GPUs passed through (default 0).
    #[serde(default)]
    pub gpus: u32,
}

impl BaseImage {
    /// Parses and validates `image.json` text.
    pub fn parse(text: &str) -> Result<BaseImage, DocumentError> {
        let b: BaseImage = serde_json::from_str(text)?;
        if b.version != 1 {
            return Err(field(format!(
                "unsupported image.json version {} (expected 1)",
                b.version
            )));
        }
        b.snp_ovmf.check("snp_ovmf")?;
        if let Some(t) = &b.tdvf {
            t.check("tdvf")?;
        }
        b.kernel.check("kernel")?;
        b.initrd.check("initrd")?;
        if b.cmdline.matches(MODELS_PLACEHOLDER).count() != 1 {
            return Err(field(format!(
                "cmdline must hold {MODELS_PLACEHOLDER} exactly once"
            )));
        }
        if b.vcpus < 1 || b.vcpus > mpk_measure::snp::MAX_VCPUS {
            return Err(field(format!(
                "vcpus must be between 1 and {} (KVM's x86 limit)",
                mpk_measure::snp::MAX_VCPUS
            )));
        }
        if b.vcpu().is_none() {
            return Err(field(format!("unknown vcpu_type `{}`", b.vcpu_type)));
        }
        if b.guest_features & 1 != 1 {
            return Err(field(
                "guest_features must have bit 0 (SNPActive) set".into(),
            ));
        }
        if b.memory_mb < 1 {
            return Err(field("memory_mb must be at least 1".into()));
        }
        if let Some(n) = &b.name {
            if !hub_name_ok(n) {
                return Err(field(format!(
                    "name `{n}` may hold only letters, digits, `-`, `_` and `.`"
                )));
            }
        }
        b.mrtd_order()?;
        Ok(b)
    }

    /// The vCPU type (`None` for an unknown name; [`BaseImage::parse`]
    /// refuses those).
    pub fn vcpu(&self) -> Option<VcpuType> {
        VcpuType::from_name(&self.vcpu_type)
    }

    /// The MRTD order.
    pub fn mrtd_order(&self) -> Result<tdx::MrtdOrder, DocumentError> {
        Ok(match self.tdx_mrtd_order.as_deref() {
            None | Some("single") => tdx::MrtdOrder::SinglePass,
            Some("two-pass") => tdx::MrtdOrder::TwoPass,
            Some(o) => {
                return Err(field(format!(
                    "tdx_mrtd_order `{o}` is neither `single` nor `two-pass`"
                )));
            }
        })
    }

    /// The input file named `name` (one of [`INPUT_NAMES`]), if the image
    /// has it.
    pub fn input(&self, name: &str) -> Option<&FileRef> {
        match name {
            "snp_ovmf" => Some(&self.snp_ovmf),
            "tdvf" => self.tdvf.as_ref(),
            "kernel" => Some(&self.kernel),
            "initrd" => Some(&self.initrd),
            _ => None,
        }
    }
}

/// `tdx_measurement` of a deployment document: 96 lowercase hex digits
/// each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct TdxMeasurement {
    /// MRTD (only with a TDVF in the base image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mrtd: Option<String>,
    /// RTMR1 (kernel and boot events).
    pub rtmr1: String,
    /// RTMR2 (command line and initrd).
    pub rtmr2: String,
}

impl From<&tdx::TdxMeasurements> for TdxMeasurement {
    fn from(m: &tdx::TdxMeasurements) -> Self {
        Self {
            mrtd: m.mrtd.map(|d| d.to_string()),
            rtmr1: m.rtmr1.to_string(),
            rtmr2: m.rtmr2.to_string(),
        }
    }
}

/// `vm_shape` of a deployment document: the VM the measurements hold for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct VmShape {
    /// vCPUs.
    pub cpus: u32,
    /// Guest memory in MiB.
    pub memory_mb: u64,
    /// GPUs passed through.
    pub gpus: u32,
    /// Disks (the model's), always 1.
    pub disks: u32,
    /// `sev-snp-measure` vCPU type name.
    pub vcpu_type: String,
    /// SEV_FEATURES.
    pub guest_features: u64,
    /// The VMM the measurements model: `QEMU`.
    pub vmm_type: String,
}

/// `inputs_sha256` of a deployment document: SHA-256 of every input, in
/// this order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct InputsSha256 {
    /// The `image.json` text.
    pub image_json: String,
    /// The AmdSev OVMF.
    pub snp_ovmf: String,
    /// The TDVF, if the base image has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdvf: Option<String>,
    /// The kernel.
    pub kernel: String,
    /// The initrd.
    pub initrd: String,
    /// The build manifest the model came from, if it came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// The `.info` file the model came from, if it came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_info: Option<String>,
}

/// The deployment document, version 1. Field order is the published one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Deployment {
    /// Always 1.
    pub version: u32,
    /// `org/name@<commit>`.
    pub identity: String,
    /// The reference in the command line (the encrypted one for an
    /// encrypted model).
    pub reference: String,
    /// The base image's name.
    pub base_image: String,
    /// The exact measured kernel command line.
    pub cmdline: String,
    /// SEV-SNP launch digest, 96 lowercase hex digits.
    pub snp_measurement: String,
    /// TDX register values.
    pub tdx_measurement: TdxMeasurement,
    /// The VM the measurements hold for.
    pub vm_shape: VmShape,
    /// SHA-256 of every input.
    pub inputs_sha256: InputsSha256,
    /// The mpk version that wrote the document.
    pub mpk_version: String,
}

impl Deployment {
    /// Parses a deployment document (all fields; unknown ones ignored so a
    /// later minor addition still reads).
    pub fn from_json(bytes: &[u8]) -> Result<Self, DocumentError> {
        let d: Deployment = serde_json::from_slice(bytes)?;
        if d.version != 1 {
            return Err(field(format!(
                "unsupported deployment version {} (expected 1)",
                d.version
            )));
        }
        Ok(d)
    }

    /// The document as written: pretty JSON and a newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data serialises") + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: &str = include_str!("../../../vm-images/example/image.json");

    #[test]
    fn the_example_image_parses_and_round_trips() {
        let b = BaseImage::parse(IMAGE).unwrap();
        assert_eq!(b.vcpus, 2);
        assert!(b.vcpu().is_some());
        assert!(b.input("tdvf").is_some());
        assert!(b.input("bios").is_none());
        let again = serde_json::to_string(&b).unwrap();
        BaseImage::parse(&again).unwrap();
    }

    #[test]
    fn image_refusals_name_the_field() {
        for (from, to, want) in [
            ("\"vcpus\": 2", "\"vcpus\": 0", "vcpus"),
            ("\"vcpus\": 2", "\"vcpus\": 4097", "between 1 and 4096"),
            ("EPYC-v4", "EPYC-v99", "vcpu_type"),
            (
                "\"guest_features\": 1",
                "\"guest_features\": 2",
                "SNPActive",
            ),
            ("synthetic/bzImage", "../bzImage", "kernel: path"),
            ("@MPK_MODELS@", "", "exactly once"),
            ("\"single\"", "\"triple\"", "tdx_mrtd_order"),
            ("\"version\": 1", "\"version\": 2", "version 2"),
        ] {
            let text = IMAGE.replace(from, to);
            assert_ne!(text, IMAGE, "{from}");
            let e = BaseImage::parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{from} → {to}: {e}");
        }
    }

    #[test]
    fn deployments_round_trip_in_published_order() {
        let d = Deployment {
            version: 1,
            identity: "a/b@0000000000000000000000000000000000000000".into(),
            reference: "r".into(),
            base_image: "example".into(),
            cmdline: "console=ttyS0".into(),
            snp_measurement: "00".repeat(48),
            tdx_measurement: TdxMeasurement {
                mrtd: None,
                rtmr1: "11".repeat(48),
                rtmr2: "22".repeat(48),
            },
            vm_shape: VmShape {
                cpus: 2,
                memory_mb: 2048,
                gpus: 0,
                disks: 1,
                vcpu_type: "EPYC-v4".into(),
                guest_features: 1,
                vmm_type: "QEMU".into(),
            },
            inputs_sha256: InputsSha256 {
                image_json: "i".into(),
                snp_ovmf: "o".into(),
                tdvf: None,
                kernel: "k".into(),
                initrd: "n".into(),
                manifest: Some("m".into()),
                model_info: None,
            },
            mpk_version: "0.1.0".into(),
        };
        let text = d.to_json();
        assert_eq!(Deployment::from_json(text.as_bytes()).unwrap(), d);
        let keys: Vec<usize> = [
            "\"version\"",
            "\"identity\"",
            "\"reference\"",
            "\"base_image\"",
            "\"cmdline\"",
            "\"snp_measurement\"",
            "\"tdx_measurement\"",
            "\"vm_shape\"",
            "\"inputs_sha256\"",
            "\"mpk_version\"",
        ]
        .iter()
        .map(|k| text.find(k).unwrap())
        .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(!text.contains("mrtd") && !text.contains("model_info"));
        let e = Deployment::from_json(text.replace("\"version\": 1", "\"version\": 3").as_bytes())
            .unwrap_err();
        assert!(e.to_string().contains("version 3"), "{e}");
    }
}
