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
    outln!(
        "{}",
        serde_json::to_string_pretty(&mpk_model::deployment::TdxMeasurement::from(&m))?
    );
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

/// A firmware, kernel or initrd: a regular file of at most 4 GiB
/// ([`mpk_pack::input::MAX_BOOT_INPUT`]), checked before reading.
pub(crate) fn read(what: &str, path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    mpk_pack::input::read_regular(what, path, mpk_pack::input::MAX_BOOT_INPUT)
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
        outln!("{d}");
        return Ok(());
    }
    let m = match a.output_format {
        OutputFormat::Hex => d.to_string(),
        OutputFormat::Base64 => base64(&d.0),
    };
    if a.verbose {
        outln!("Calculated SEV_SNP guest measurement: {m}");
    } else {
        outln!("{m}");
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
    //! `mpk measure deployment`: arguments →
    //! [`mpk_pack::deploy::DeploymentInputs`], and the document printed or
    //! published.
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use anyhow::bail;
    use clap::Args;
    use mpk_pack::deploy::{DeploymentInputs, ModelInput};

    /// Arguments of `mpk measure deployment`.
    #[derive(Debug, Args)]
    #[command(group(clap::ArgGroup::new("model_source").required(true).args(["manifest", "model"])))]
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
        /// A `<rev>.manifest.json` written by `mpk build` (identity and
        /// reference); or give --model OUT.info with --identity ID.
        #[arg(long, value_name = "FILE")]
        pub manifest: Option<PathBuf>,
        /// Use this file for a base-image input (snp_ovmf, tdvf, kernel,
        /// initrd), e.g. a Nix output; its sha256 is still checked.
        #[arg(long = "input", value_name = "NAME=PATH")]
        pub inputs: Vec<String>,
        /// Write the document here instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        pub output: Option<camino::Utf8PathBuf>,
        /// Replace an existing output file.
        #[arg(long, requires = "output")]
        pub force: bool,
    }

    impl DeploymentArgs {
        /// The engine's inputs.
        pub fn inputs(&self) -> anyhow::Result<DeploymentInputs> {
            let model = match (&self.manifest, &self.model, &self.identity) {
                (Some(m), _, _) => ModelInput::Manifest(m.clone()),
                (None, Some(info), Some(id)) => ModelInput::Info {
                    info: info.clone(),
                    identity: id.clone(),
                },
                _ => bail!("give --model OUT.info --identity ID, or --manifest FILE"),
            };
            let mut overrides = BTreeMap::new();
            for i in &self.inputs {
                let Some((k, v)) = i.split_once('=') else {
                    bail!("--input `{i}` is not NAME=PATH");
                };
                overrides.insert(k.to_string(), PathBuf::from(v));
            }
            Ok(DeploymentInputs {
                base: self.base.clone(),
                model,
                overrides,
            })
        }
    }

    /// Runs `mpk measure deployment`.
    pub fn run(a: DeploymentArgs) -> anyhow::Result<()> {
        let text = mpk_pack::deploy::deployment(&a.inputs()?)?.to_json();
        match &a.output {
            None => out!("{text}"),
            Some(o) => mpk_pack::output::write_file(o, text.as_bytes(), a.force)?,
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
