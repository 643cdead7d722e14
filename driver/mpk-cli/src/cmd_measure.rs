//! `mpk measure …`: expected launch measurements. `mpk measure snp` copies
//! the command line and output of `sev-snp-measure` 0.0.13 (modes `snp` and
//! `snp:ovmf-hash`, VMM type QEMU); `mpk measure tdx` prints MRTD, RTMR1
//! and RTMR2 of a TDX direct boot as JSON; `mpk measure deployment` writes
//! the deployment document of one model on one base image
//! ([`deployment`]). Files are read here; the digests are computed by
//! the pure `mpk-measure` crate.
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use mpk_measure::snp::{self, LaunchDigest, SevHashes, SnpLaunch, VcpuType};
use mpk_measure::tdx;

/// Measurement subcommands.
#[derive(Debug, Subcommand)]
pub enum MeasureCommand {
    /// AMD SEV-SNP launch digest (same options and output as sev-snp-measure 0.0.13).
    Snp(SnpArgs),
    /// Intel TDX MRTD (with --firmware), RTMR1 and RTMR2 of a direct boot, as JSON.
    Tdx(TdxArgs),
    /// The deployment document of one model on one base image (JSON).
    Deployment(deployment::DeploymentArgs),
}

/// Order of TDVF page adds and extends (`--mrtd-order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MrtdOrderArg {
    /// Page by page: add, then extend its chunks.
    Single,
    /// Per section: all adds, then all extends.
    TwoPass,
}

impl From<MrtdOrderArg> for tdx::MrtdOrder {
    fn from(o: MrtdOrderArg) -> Self {
        match o {
            MrtdOrderArg::Single => tdx::MrtdOrder::SinglePass,
            MrtdOrderArg::TwoPass => tdx::MrtdOrder::TwoPass,
        }
    }
}

/// Arguments of `mpk measure tdx`.
#[derive(Debug, Args)]
pub struct TdxArgs {
    /// TDVF image (OVMF with TDX metadata); MRTD is printed only with it.
    #[arg(long, value_name = "PATH")]
    pub firmware: Option<PathBuf>,
    /// Kernel (bzImage with EFI stub), unmodified.
    #[arg(long, value_name = "PATH")]
    pub kernel: PathBuf,
    /// Initrd.
    #[arg(long, value_name = "PATH")]
    pub initrd: PathBuf,
    /// Kernel command line, exactly as given to QEMU (never trimmed).
    #[arg(long, value_name = "CMDLINE", allow_hyphen_values = true)]
    pub append: String,
    /// Guest memory in MiB; RTMR1 depends on it through the initrd address.
    /// Default: the reference tool's runtime-only value 0xB0000000 (2816 MiB).
    #[arg(long, value_name = "N")]
    pub memory_mb: Option<u64>,
    /// Order of page adds and extends of the host's QEMU/KVM.
    #[arg(long, value_enum, default_value = "single")]
    pub mrtd_order: MrtdOrderArg,
}

/// Guest memory in bytes for `--memory-mb` (None: the runtime-only default).
pub fn tdx_memory(memory_mb: Option<u64>) -> anyhow::Result<u64> {
    match memory_mb {
        None => Ok(tdx::RUNTIME_MEMORY),
        Some(mb) => mb
            .checked_mul(1 << 20)
            .with_context(|| format!("--memory-mb {mb} is too large")),
    }
}

/// The JSON `mpk measure tdx` prints: `mrtd` (only with a firmware),
/// `rtmr1`, `rtmr2`, 96 lowercase hex digits each.
pub fn tdx_json(m: &tdx::TdxMeasurements) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    if let Some(d) = m.mrtd {
        o.insert("mrtd".into(), d.to_string().into());
    }
    o.insert("rtmr1".into(), m.rtmr1.to_string().into());
    o.insert("rtmr2".into(), m.rtmr2.to_string().into());
    o.into()
}

fn run_tdx(a: TdxArgs) -> anyhow::Result<()> {
    let firmware = a
        .firmware
        .as_ref()
        .map(|p| read("firmware", p))
        .transpose()?;
    let kernel = read("kernel", &a.kernel)?;
    let initrd = read("initrd", &a.initrd)?;
    let m = tdx::measure(&tdx::TdxLaunch {
        firmware: firmware.as_deref(),
        mrtd_order: a.mrtd_order.into(),
        kernel: &kernel,
        initrd: &initrd,
        cmdline: &a.append,
        memory: tdx_memory(a.memory_mb)?,
    })
    .context("measuring the TDX launch")?;
    println!("{}", serde_json::to_string_pretty(&tdx_json(&m))?);
    Ok(())
}

/// Guest modes of `--mode` that are implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SnpMode {
    /// The full SEV-SNP launch digest.
    #[value(name = "snp")]
    Snp,
    /// Only the digest of the firmware pages (for `--snp-ovmf-hash`).
    #[value(name = "snp:ovmf-hash")]
    OvmfHash,
}

/// Output encodings of the digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// 96 lowercase hex digits.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// Arguments of `mpk measure snp`, named as `sev-snp-measure`'s.
#[derive(Debug, Args)]
pub struct SnpArgs {
    /// Guest mode.
    #[arg(long, value_enum)]
    pub mode: SnpMode,
    /// Print "Calculated SEV_SNP guest measurement: " before the digest.
    #[arg(short, long)]
    pub verbose: bool,
    /// Number of guest vCPUs.
    #[arg(long, value_name = "N")]
    pub vcpus: Option<u32>,
    /// Type of guest vCPU (EPYC, EPYC-v1..v4, EPYC-IBPB, EPYC-Rome[-v1..v3],
    /// EPYC-Milan[-v1,-v2], EPYC-Genoa[-v1], EPYC-Turin).
    #[arg(long, value_name = "CPUTYPE", value_parser = parse_vcpu_type)]
    pub vcpu_type: Option<VcpuType>,
    /// Guest vCPU signature value (0x… or decimal).
    #[arg(long, value_name = "VALUE", value_parser = parse_u32_auto)]
    pub vcpu_sig: Option<u32>,
    /// Guest vCPU family.
    #[arg(long, value_name = "FAMILY")]
    pub vcpu_family: Option<u32>,
    /// Guest vCPU model.
    #[arg(long, value_name = "MODEL")]
    pub vcpu_model: Option<u32>,
    /// Guest vCPU stepping.
    #[arg(long, value_name = "STEPPING")]
    pub vcpu_stepping: Option<u32>,
    /// Type of guest VMM (only QEMU for now).
    #[arg(long, value_name = "VMMTYPE", default_value = "QEMU")]
    pub vmm_type: String,
    /// OVMF file to calculate the hash from.
    #[arg(long, value_name = "PATH")]
    pub ovmf: PathBuf,
    /// Kernel file to calculate the hash from.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initrd file to calculate the hash from (use with --kernel).
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line to calculate the hash from (use with --kernel);
    /// used exactly as given, never trimmed.
    #[arg(long, value_name = "CMDLINE", allow_hyphen_values = true)]
    pub append: Option<String>,
    /// Guest features (SEV_FEATURES) value, 0x… or decimal.
    #[arg(long, value_name = "VALUE", default_value = "0x1", value_parser = parse_u64_auto)]
    pub guest_features: u64,
    /// Measurement output format.
    #[arg(long, value_enum, default_value = "hex")]
    pub output_format: OutputFormat,
    /// Precalculated hash of the OVMF binary (96 hex digits, from `--mode snp:ovmf-hash`).
    #[arg(long, value_name = "HASH", value_parser = parse_digest)]
    pub snp_ovmf_hash: Option<LaunchDigest>,
}

fn parse_vcpu_type(s: &str) -> Result<VcpuType, String> {
    VcpuType::from_name(s).ok_or_else(|| {
        let names: Vec<_> = VcpuType::ALL.iter().map(|t| t.name()).collect();
        format!("invalid choice '{s}' (choose from {})", names.join(", "))
    })
}

/// Parses an integer the way Python's `int(s, 0)` does for non-negative
/// values: `0x`, `0o`, `0b` prefixes or decimal, `_` between digits.
fn parse_u64_auto(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (radix, digits) = match lower.get(..2) {
        Some("0x") => (16, &t[2..]),
        Some("0o") => (8, &t[2..]),
        Some("0b") => (2, &t[2..]),
        _ => (10, t),
    };
    let digits = digits
        .strip_prefix('_')
        .filter(|_| radix != 10)
        .unwrap_or(digits);
    let bad = || format!("invalid integer '{s}'");
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return Err(bad());
    }
    if radix == 10
        && digits.len() > 1
        && digits.starts_with('0')
        && digits.bytes().any(|b| b != b'0' && b != b'_')
    {
        return Err(bad());
    }
    u64::from_str_radix(&digits.replace('_', ""), radix).map_err(|_| bad())
}

fn parse_u32_auto(s: &str) -> Result<u32, String> {
    u32::try_from(parse_u64_auto(s)?).map_err(|_| format!("'{s}' does not fit in 32 bits"))
}

fn parse_digest(s: &str) -> Result<LaunchDigest, String> {
    let bytes = hex::decode(s.trim()).map_err(|e| format!("not hex: {e}"))?;
    let d: [u8; 48] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("expected 48 bytes (96 hex digits), got {}", b.len()))?;
    Ok(LaunchDigest(d))
}

/// Standard base64 (RFC 4648 alphabet, `=` padding), as Python's
/// `base64.b64encode`.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(A[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(crate) fn read(what: &str, path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Resolves the vCPU signature with `sev-snp-measure`'s precedence:
/// family/model/stepping, then `--vcpu-sig`, then `--vcpu-type` (a zero
/// family or signature counts as not given, as there).
fn vcpu_signature(a: &SnpArgs) -> anyhow::Result<u32> {
    if let Some(family) = a.vcpu_family.filter(|&f| f != 0) {
        let (Some(model), Some(stepping)) = (a.vcpu_model, a.vcpu_stepping) else {
            bail!("--vcpu-family needs --vcpu-model and --vcpu-stepping");
        };
        return Ok(snp::cpu_signature(family, model, stepping));
    }
    if let Some(sig) = a.vcpu_sig.filter(|&s| s != 0) {
        return Ok(sig);
    }
    match a.vcpu_type {
        Some(t) => Ok(t.signature()),
        None => bail!("missing --vcpu-type or --vcpu-sig or --vcpu-family in guest mode 'snp'"),
    }
}

/// Computes the digest `mpk measure snp` prints for these arguments.
pub fn snp_digest(a: &SnpArgs) -> anyhow::Result<LaunchDigest> {
    let firmware = read("firmware", &a.ovmf)?;
    if a.mode == SnpMode::OvmfHash {
        return snp::firmware_digest(&firmware)
            .with_context(|| format!("measuring {}", a.ovmf.display()));
    }
    if a.initrd.is_some() && a.kernel.is_none() {
        bail!("--kernel required when using --initrd");
    }
    if a.append.as_deref().is_some_and(|s| !s.is_empty()) && a.kernel.is_none() {
        bail!("--kernel required when using --append");
    }
    let Some(vcpus) = a.vcpus else {
        bail!("missing --vcpus N in guest mode 'snp'");
    };
    match a.vmm_type.as_str() {
        "QEMU" => {}
        "ec2" | "gce" => bail!("VMM type '{}' is not supported yet (only QEMU)", a.vmm_type),
        other => bail!("unknown VMM type '{other}'"),
    }
    let vcpu_signature = vcpu_signature(a)?;
    let hashes = match &a.kernel {
        None => None,
        Some(k) => {
            let kernel = read("kernel", k)?;
            let initrd = a.initrd.as_ref().map(|p| read("initrd", p)).transpose()?;
            Some(SevHashes::new(
                &kernel,
                initrd.as_deref(),
                a.append.as_deref(),
            ))
        }
    };
    snp::launch_digest(&SnpLaunch {
        firmware: &firmware,
        firmware_digest: a.snp_ovmf_hash,
        hashes,
        vcpus,
        vcpu_signature,
        guest_features: a.guest_features,
    })
    .with_context(|| format!("measuring with firmware {}", a.ovmf.display()))
}

fn run_snp(a: SnpArgs) -> anyhow::Result<()> {
    let d = snp_digest(&a)?;
    if a.mode == SnpMode::OvmfHash {
        // sev-snp-measure prints this mode in hex whatever --output-format says.
        println!("{d}");
        return Ok(());
    }
    let m = match a.output_format {
        OutputFormat::Hex => d.to_string(),
        OutputFormat::Base64 => base64(&d.0),
    };
    if a.verbose {
        println!("Calculated SEV_SNP guest measurement: {m}");
    } else {
        println!("{m}");
    }
    Ok(())
}

/// Runs a measurement subcommand.
pub fn run(c: MeasureCommand) -> anyhow::Result<()> {
    match c {
        MeasureCommand::Snp(a) => run_snp(a),
        MeasureCommand::Tdx(a) => run_tdx(a),
        MeasureCommand::Deployment(a) => deployment::run(a),
    }
}

pub mod deployment {
    //! Base images as data (`vm-images/<name>/image.json`) and the
    //! deployment document of one model on one base image: the exact
    //! kernel command line, the SEV-SNP launch digest, TDX RTMR1/RTMR2 (and
    //! MRTD with a TDVF), the VM shape and the SHA-256 of every input, with
    //! Tinfoil's published field names (`snp_measurement`,
    //! `tdx_measurement`, `vm_shape`, `cmdline`).
    use std::collections::BTreeMap;
    use std::path::{Component, Path, PathBuf};

    use anyhow::{Context, bail, ensure};
    use clap::Args;
    use mpk_measure::cmdline;
    use mpk_measure::snp::{self, SevHashes, SnpLaunch, VcpuType};
    use mpk_measure::tdx;
    use serde::{Deserialize, Serialize};
    use sha2::{Digest, Sha256};

    use crate::identity::Identity;
    use crate::reference::Reference;

    /// The placeholder in `cmdline` replaced by the `mpk.model=` words.
    pub const MODELS_PLACEHOLDER: &str = "@MPK_MODELS@";

    /// One input file of a base image: a path relative to the image's
    /// folder, or a Nix output (resolved with `--input NAME=PATH`), and the
    /// SHA-256 it must have.
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

    /// `vm-images/<name>/image.json`, version 1.
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct BaseImage {
        /// Schema version, 1.
        pub version: u32,
        /// The base image's name: `base_image` of the deployment and the
        /// `<base>` of `<commit>.<base>.deployment.json`. Default: the
        /// folder's name (a Nix store path's name is not the image's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub name: Option<String>,
        /// AmdSev OVMF build (with the kernel-hashes section).
        pub snp_ovmf: FileRef,
        /// TDVF (OVMF with TDX metadata); MRTD is published only with it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tdvf: Option<FileRef>,
        /// Order of TDVF page adds and extends of the TDX hosts
        /// (`single` or `two-pass`; default `single`).
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

    fn lower_hex(s: &str, n: usize) -> bool {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    impl FileRef {
        fn check(&self, what: &str) -> anyhow::Result<()> {
            ensure!(
                lower_hex(&self.sha256, 64),
                "{what}: sha256 `{}` is not 64 lowercase hex digits",
                self.sha256
            );
            match (&self.path, &self.nix) {
                (Some(p), None) => {
                    ensure!(
                        self.file.is_none(),
                        "{what}: `file` goes with `nix`, not `path`"
                    );
                    let ok = !p.is_empty()
                        && Path::new(p)
                            .components()
                            .all(|c| matches!(c, Component::Normal(_)));
                    ensure!(
                        ok,
                        "{what}: path `{p}` must be relative, inside the image folder, without `..`"
                    );
                }
                (None, Some(_)) => {}
                _ => bail!("{what}: give exactly one of `path` and `nix`"),
            }
            Ok(())
        }
    }

    impl BaseImage {
        /// Parses and validates `image.json` text.
        pub fn parse(text: &str) -> anyhow::Result<BaseImage> {
            let b: BaseImage = serde_json::from_str(text)?;
            ensure!(
                b.version == 1,
                "unsupported image.json version {} (expected 1)",
                b.version
            );
            b.snp_ovmf.check("snp_ovmf")?;
            if let Some(t) = &b.tdvf {
                t.check("tdvf")?;
            }
            b.kernel.check("kernel")?;
            b.initrd.check("initrd")?;
            ensure!(
                b.cmdline.matches(MODELS_PLACEHOLDER).count() == 1,
                "cmdline must hold {MODELS_PLACEHOLDER} exactly once"
            );
            ensure!(b.vcpus >= 1, "vcpus must be at least 1");
            ensure!(
                VcpuType::from_name(&b.vcpu_type).is_some(),
                "unknown vcpu_type `{}`",
                b.vcpu_type
            );
            ensure!(
                b.guest_features & 1 == 1,
                "guest_features must have bit 0 (SNPActive) set"
            );
            ensure!(b.memory_mb >= 1, "memory_mb must be at least 1");
            if let Some(n) = &b.name {
                ensure!(
                    crate::identity::hub_name_ok(n),
                    "name `{n}` may hold only letters, digits, `-`, `_` and `.`"
                );
            }
            b.mrtd_order()?;
            Ok(b)
        }

        /// The MRTD order.
        pub fn mrtd_order(&self) -> anyhow::Result<tdx::MrtdOrder> {
            Ok(match self.tdx_mrtd_order.as_deref() {
                None | Some("single") => tdx::MrtdOrder::SinglePass,
                Some("two-pass") => tdx::MrtdOrder::TwoPass,
                Some(o) => bail!("tdx_mrtd_order `{o}` is neither `single` nor `two-pass`"),
            })
        }
    }

    /// Arguments of `mpk measure deployment`.
    #[derive(Debug, Args)]
    pub struct DeploymentArgs {
        /// Base image folder (holding image.json).
        #[arg(long, value_name = "DIR")]
        pub base: PathBuf,
        /// The model's .info file (reference), with --identity.
        #[arg(
            long,
            value_name = "OUT.info",
            requires = "identity",
            conflicts_with = "manifest"
        )]
        pub model: Option<PathBuf>,
        /// The model identity ORG/NAME@<40 hex>, with --model.
        #[arg(long, value_name = "ID", requires = "model")]
        pub identity: Option<String>,
        /// A `<rev>.manifest.json` written by `mpk build` (identity and reference).
        #[arg(long, value_name = "FILE", required_unless_present = "model")]
        pub manifest: Option<PathBuf>,
        /// Use this file for a base-image input (snp_ovmf, tdvf, kernel,
        /// initrd), e.g. a Nix output; its sha256 is still checked.
        #[arg(long = "input", value_name = "NAME=PATH")]
        pub inputs: Vec<String>,
        /// Write the document here instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        pub output: Option<PathBuf>,
    }

    #[derive(Deserialize)]
    struct ManifestFields {
        identity: String,
        reference: String,
        /// Present for an encrypted build: the guest opens the `.empk`.
        encryption: Option<EncryptionFields>,
    }

    /// The part of a manifest's `encryption` the deployment uses.
    #[derive(Deserialize)]
    struct EncryptionFields {
        encrypted_reference: String,
    }

    fn sha256_hex(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// Reads one base-image input and checks its sha256.
    fn load_input(
        base: &Path,
        name: &str,
        r: &FileRef,
        overrides: &BTreeMap<String, PathBuf>,
    ) -> anyhow::Result<Vec<u8>> {
        let path = match (overrides.get(name), &r.path, &r.nix) {
            (Some(p), _, _) => p.clone(),
            (None, Some(p), _) => base.join(p),
            (None, None, Some(n)) => bail!(
                "{name} is the Nix output `{n}`{}; build it and pass --input {name}=PATH",
                r.file
                    .as_deref()
                    .map(|f| format!(" (file `{f}`)"))
                    .unwrap_or_default()
            ),
            (None, None, None) => unreachable!("validated"),
        };
        let data = super::read(name, &path)?;
        let got = sha256_hex(&data);
        ensure!(
            got == r.sha256,
            "{name} {}: sha256 is {got}, but image.json says {}",
            path.display(),
            r.sha256
        );
        Ok(data)
    }

    /// Builds the deployment document.
    pub fn deployment(a: &DeploymentArgs) -> anyhow::Result<serde_json::Value> {
        let image_path = a.base.join("image.json");
        let image_text = std::fs::read_to_string(&image_path)
            .with_context(|| format!("reading {}", image_path.display()))?;
        let image = BaseImage::parse(&image_text)
            .with_context(|| format!("in {}", image_path.display()))?;
        let folder_name = std::fs::canonicalize(&a.base)
            .with_context(|| format!("resolving {}", a.base.display()))?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let base_name = image.name.clone().unwrap_or(folder_name);
        let mut overrides = BTreeMap::new();
        for i in &a.inputs {
            let Some((k, v)) = i.split_once('=') else {
                bail!("--input `{i}` is not NAME=PATH");
            };
            ensure!(
                ["snp_ovmf", "tdvf", "kernel", "initrd"].contains(&k),
                "--input {k}: not one of snp_ovmf, tdvf, kernel, initrd"
            );
            overrides.insert(k.to_string(), PathBuf::from(v));
        }
        let (identity, reference, model_input) = match (&a.manifest, &a.model, &a.identity) {
            (Some(m), _, _) => {
                let text = super::read("manifest", m)?;
                let f: ManifestFields = serde_json::from_slice(&text).with_context(|| {
                    format!("reading identity and reference from {}", m.display())
                })?;
                let reference = match f.encryption {
                    Some(e) => e.encrypted_reference,
                    None => f.reference,
                };
                (f.identity, reference, ("manifest", sha256_hex(&text)))
            }
            (None, Some(info), Some(id)) => {
                let text = super::read("model reference", info)?;
                let s = String::from_utf8(text.clone())
                    .with_context(|| format!("{} is not UTF-8", info.display()))?;
                let s = s.strip_suffix('\n').unwrap_or(&s).to_string();
                (id.clone(), s, ("model_info", sha256_hex(&text)))
            }
            _ => bail!("give --model OUT.info --identity ID, or --manifest FILE"),
        };
        let identity: Identity = identity.parse()?;
        let reference: Reference = reference.parse()?;
        // An encrypted pack's reference carries the partition GUID; its
        // word is marked `:crypt` so the guest stacks dm-crypt under verity.
        let crypt = if reference.uuid == mpk_crypt::partition_guid(&identity.to_string()) {
            ":crypt"
        } else {
            ""
        };
        let words = cmdline::parse(&format!("mpk.model={identity}:{reference}{crypt}"))
            .context("building the mpk.model= word")?
            .to_words();
        let cmdline = image.cmdline.replace(MODELS_PLACEHOLDER, &words);
        // The guest parses exactly what we measure, with the same code.
        let parsed = cmdline::parse(&cmdline).context("the command line does not parse back")?;
        ensure!(
            parsed.models.len() == 1 && parsed.models[0].word() == words,
            "the base image's command line adds mpk.model= words of its own"
        );

        let ovmf = load_input(&a.base, "snp_ovmf", &image.snp_ovmf, &overrides)?;
        let tdvf = image
            .tdvf
            .as_ref()
            .map(|t| load_input(&a.base, "tdvf", t, &overrides))
            .transpose()?;
        let kernel = load_input(&a.base, "kernel", &image.kernel, &overrides)?;
        let initrd = load_input(&a.base, "initrd", &image.initrd, &overrides)?;
        let vcpu = VcpuType::from_name(&image.vcpu_type).expect("validated");
        let snp = snp::launch_digest(&SnpLaunch {
            firmware: &ovmf,
            firmware_digest: None,
            hashes: Some(SevHashes::new(&kernel, Some(&initrd), Some(&cmdline))),
            vcpus: image.vcpus,
            vcpu_signature: vcpu.signature(),
            guest_features: image.guest_features,
        })
        .context("SEV-SNP launch digest")?;
        let memory = image
            .memory_mb
            .checked_mul(1 << 20)
            .context("memory_mb too large")?;
        let t = tdx::measure(&tdx::TdxLaunch {
            firmware: tdvf.as_deref(),
            mrtd_order: image.mrtd_order()?,
            kernel: &kernel,
            initrd: &initrd,
            cmdline: &cmdline,
            memory,
        })
        .context("TDX measurements")?;

        let mut inputs = serde_json::Map::new();
        inputs.insert(
            "image_json".into(),
            sha256_hex(image_text.as_bytes()).into(),
        );
        inputs.insert("snp_ovmf".into(), image.snp_ovmf.sha256.clone().into());
        if let Some(t) = &image.tdvf {
            inputs.insert("tdvf".into(), t.sha256.clone().into());
        }
        inputs.insert("kernel".into(), image.kernel.sha256.clone().into());
        inputs.insert("initrd".into(), image.initrd.sha256.clone().into());
        inputs.insert(model_input.0.into(), model_input.1.into());
        Ok(serde_json::json!({
            "version": 1,
            "identity": identity.to_string(),
            "reference": reference.to_string(),
            "base_image": base_name,
            "cmdline": cmdline,
            "snp_measurement": snp.to_string(),
            "tdx_measurement": super::tdx_json(&t),
            "vm_shape": {
                "cpus": image.vcpus,
                "memory_mb": image.memory_mb,
                "gpus": image.gpus,
                "disks": 1,
                "vcpu_type": image.vcpu_type,
                "guest_features": image.guest_features,
                "vmm_type": "QEMU",
            },
            "inputs_sha256": inputs,
            "mpk_version": env!("CARGO_PKG_VERSION"),
        }))
    }

    /// Runs `mpk measure deployment`.
    pub fn run(a: DeploymentArgs) -> anyhow::Result<()> {
        let doc = deployment(&a)?;
        let text = serde_json::to_string_pretty(&doc)? + "\n";
        match &a.output {
            None => print!("{text}"),
            Some(o) => {
                std::fs::write(o, text).with_context(|| format!("writing {}", o.display()))?
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn integers_parse_like_python_int_base_0() {
        assert_eq!(parse_u64_auto("0x21"), Ok(0x21));
        assert_eq!(parse_u64_auto("0X_21"), Ok(0x21));
        assert_eq!(parse_u64_auto("33"), Ok(33));
        assert_eq!(parse_u64_auto("0"), Ok(0));
        assert_eq!(parse_u64_auto("0b101"), Ok(5));
        assert_eq!(parse_u64_auto("0o17"), Ok(15));
        assert_eq!(parse_u64_auto("1_000"), Ok(1000));
        for bad in ["", "0x", "012", "1__0", "_1", "1_", "x1", "-1"] {
            assert!(parse_u64_auto(bad).is_err(), "{bad}");
        }
    }
}
