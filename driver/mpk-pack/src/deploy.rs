//! Deployment documents: a base image (its `image.json` and the files it
//! names, each checked by SHA-256) and a model (its manifest, or `.info`
//! and identity) give the expected launch measurements
//! ([`mpk_model::deployment::Deployment`]): the exact command line, the
//! SEV-SNP launch digest and the TDX registers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use mpk_measure::snp::{self, SevHashes, SnpLaunch};
use mpk_measure::tdx;
use mpk_model::cmdline;
use mpk_model::deployment::{
    BaseImage, Deployment, FileRef, INPUT_NAMES, InputsSha256, MODELS_PLACEHOLDER, VmShape,
};
use mpk_model::{Identity, PackKind, Reference};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::input::{MAX_BOOT_INPUT, MAX_DOCUMENT, read_regular};

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
) -> Result<Vec<u8>> {
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
    let data = read_regular(name, &path, MAX_BOOT_INPUT)?;
    let got = sha256_hex(&data);
    ensure!(
        got == r.sha256,
        "{name} {}: sha256 is {got}, but image.json says {}",
        path.display(),
        r.sha256
    );
    Ok(data)
}

/// Where a deployment's model comes from.
#[derive(Debug, Clone)]
pub enum ModelInput {
    /// A `<rev>.manifest.json` written by `mpk build` (identity and
    /// reference; the encrypted reference when it has one).
    Manifest(PathBuf),
    /// An `.info` file (the reference) and the identity.
    Info {
        /// The `.info` file.
        info: PathBuf,
        /// `org/name@<commit>`.
        identity: String,
    },
}

/// What a deployment document is computed from.
#[derive(Debug, Clone)]
pub struct DeploymentInputs {
    /// The base image folder (holding `image.json`).
    pub base: PathBuf,
    /// The model.
    pub model: ModelInput,
    /// Files to use for base-image inputs (`snp_ovmf`, `tdvf`, `kernel`,
    /// `initrd`), e.g. Nix outputs; their SHA-256 is still checked.
    pub overrides: BTreeMap<String, PathBuf>,
}

/// Computes the deployment document of a model on a base image.
pub fn deployment(a: &DeploymentInputs) -> Result<Deployment> {
    let image_path = a.base.join("image.json");
    if !image_path.exists() && a.base.join("default.nix").is_file() {
        let name = a
            .base
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        bail!(
            "`{}` is a Nix base image that is not built: it has no image.json yet. Build it (`nix build .#vm-image-{name}`) and pass the result (`--base result`)",
            a.base.display()
        );
    }
    let image_text = std::fs::read_to_string(&image_path)
        .with_context(|| format!("reading {}", image_path.display()))?;
    let image =
        BaseImage::parse(&image_text).with_context(|| format!("in {}", image_path.display()))?;
    let folder_name = std::fs::canonicalize(&a.base)
        .with_context(|| format!("resolving {}", a.base.display()))?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base_name = image.name.clone().unwrap_or(folder_name);
    for k in a.overrides.keys() {
        ensure!(
            INPUT_NAMES.contains(&k.as_str()),
            "input {k}: not one of {}",
            INPUT_NAMES.join(", ")
        );
    }
    let overrides = &a.overrides;
    let (identity, reference, manifest, model_info) = match &a.model {
        ModelInput::Manifest(m) => {
            let text = read_regular("manifest", m, MAX_DOCUMENT)?;
            let f: ManifestFields = serde_json::from_slice(&text)
                .with_context(|| format!("reading identity and reference from {}", m.display()))?;
            let reference = match f.encryption {
                Some(e) => e.encrypted_reference,
                None => f.reference,
            };
            (f.identity, reference, Some(sha256_hex(&text)), None)
        }
        ModelInput::Info { info, identity: id } => {
            let text = read_regular("model reference", info, MAX_DOCUMENT)?;
            let s = String::from_utf8(text.clone())
                .with_context(|| format!("{} is not UTF-8", info.display()))?;
            let s = s.strip_suffix('\n').unwrap_or(&s).to_string();
            (id.clone(), s, None, Some(sha256_hex(&text)))
        }
    };
    let identity: Identity = identity.parse()?;
    let reference: Reference = reference.parse()?;
    // An encrypted pack's reference carries the partition GUID; its
    // word is marked `:crypt` so the guest stacks dm-crypt under verity.
    let crypt = match identity.pack_kind(&reference.uuid) {
        Some(PackKind::Encrypted) => ":crypt",
        _ => "",
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

    let ovmf = load_input(&a.base, "snp_ovmf", &image.snp_ovmf, overrides)?;
    let tdvf = image
        .tdvf
        .as_ref()
        .map(|t| load_input(&a.base, "tdvf", t, overrides))
        .transpose()?;
    let kernel = load_input(&a.base, "kernel", &image.kernel, overrides)?;
    let initrd = load_input(&a.base, "initrd", &image.initrd, overrides)?;
    let vcpu = image.vcpu().expect("validated");
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

    Ok(Deployment {
        version: 1,
        identity: identity.to_string(),
        reference: reference.to_string(),
        base_image: base_name,
        cmdline,
        snp_measurement: snp.to_string(),
        tdx_measurement: (&t).into(),
        vm_shape: VmShape {
            cpus: image.vcpus,
            memory_mb: image.memory_mb,
            gpus: image.gpus,
            disks: 1,
            vcpu_type: image.vcpu_type.clone(),
            guest_features: image.guest_features,
            vmm_type: "QEMU".into(),
        },
        inputs_sha256: InputsSha256 {
            image_json: sha256_hex(image_text.as_bytes()),
            snp_ovmf: image.snp_ovmf.sha256.clone(),
            tdvf: image.tdvf.as_ref().map(|t| t.sha256.clone()),
            kernel: image.kernel.sha256.clone(),
            initrd: image.initrd.sha256.clone(),
            manifest,
            model_info,
        },
        mpk_version: env!("CARGO_PKG_VERSION").into(),
    })
}
