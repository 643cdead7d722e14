//! `mpk attest verify`: checks a live guest's attestation evidence (an
//! SEV-SNP report with its VCEK, or a TDX quote with its DCAP collateral)
//! against a deployment document from `mpk measure deployment`, offline.
//! Prints one verdict per check; exits non-zero unless every required check
//! passes.

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use clap::{Args, Subcommand};
use mpk_attest::{Policy, Verdict, snp, tdx};

/// `mpk attest …` subcommands.
#[derive(Debug, Subcommand)]
pub enum AttestCommand {
    /// Verify an SEV-SNP report or a TDX quote against a deployment document.
    Verify(VerifyArgs),
}

/// Arguments of `mpk attest verify`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("evidence").required(true).args(["snp_report", "tdx_quote"])))]
pub struct VerifyArgs {
    /// The deployment document (`mpk measure deployment`).
    #[arg(long)]
    pub deployment: Utf8PathBuf,
    /// SEV-SNP attestation report (1184 bytes, raw or hex).
    #[arg(long, requires = "vcek", conflicts_with = "tdx_quote")]
    pub snp_report: Option<Utf8PathBuf>,
    /// The VCEK certificate that signed the report (DER or PEM), as AMD's
    /// key distribution service serves it for the report's chip and TCB.
    #[arg(long, requires = "snp_report")]
    pub vcek: Option<Utf8PathBuf>,
    /// ASK and ARK (PEM); default: the pinned AMD roots for Milan, Genoa, Turin.
    #[arg(long, requires = "snp_report")]
    pub ca_chain: Option<Utf8PathBuf>,
    /// TDX quote (v4, raw or hex).
    #[arg(long, requires = "collateral")]
    pub tdx_quote: Option<Utf8PathBuf>,
    /// DCAP collateral JSON for the quote (PCK CRL, TCB info, QE identity,
    /// issuer chains), as a PCCS serves it.
    #[arg(long, requires = "tdx_quote")]
    pub collateral: Option<Utf8PathBuf>,
    /// Platform values `{"mrtd", "rtmr0"}` (hex) to compare as well.
    #[arg(long, requires = "tdx_quote")]
    pub tdx_platform: Option<Utf8PathBuf>,
    /// Expected REPORT_DATA (hex, at most 64 bytes, zero-padded), e.g. a nonce.
    #[arg(long)]
    pub report_data: Option<String>,
    /// Judge certificates and collateral as of this time (RFC 3339; default now).
    #[arg(long)]
    pub at: Option<String>,
    /// An extra trusted ARK certificate (PEM or DER); repeatable.
    #[arg(long)]
    pub trust_ark: Vec<Utf8PathBuf>,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
}

fn read(p: &Utf8Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("reading {what} {p}"))
}

/// Runs `mpk attest …`.
pub fn run(c: AttestCommand) -> Result<()> {
    match c {
        AttestCommand::Verify(a) => verify(a),
    }
}

fn verify(a: VerifyArgs) -> Result<()> {
    let deployment = mpk_attest::parse_deployment(&read(&a.deployment, "deployment")?)
        .with_context(|| format!("parsing {}", a.deployment))?;
    let at = match &a.at {
        Some(s) => mpk_attest::parse_time(s)?,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("system clock before 1970")?
            .as_secs() as i64,
    };
    let policy = Policy {
        report_data: a
            .report_data
            .as_deref()
            .map(mpk_attest::parse_report_data)
            .transpose()?,
        at,
        trusted_roots: a
            .trust_ark
            .iter()
            .map(|p| read(p, "--trust-ark"))
            .collect::<Result<_>>()?,
    };
    let verdict: Verdict = if let Some(report) = &a.snp_report {
        let raw = mpk_attest::raw_or_hex(&read(report, "SEV-SNP report")?);
        let vcek = read(a.vcek.as_deref().context("--vcek is required")?, "VCEK")?;
        let chain = a
            .ca_chain
            .as_deref()
            .map(|p| read(p, "CA chain"))
            .transpose()?;
        let ev = snp::Evidence {
            report: &raw,
            vcek: &vcek,
            ca_chain: chain.as_deref(),
        };
        snp::verify(&deployment, &ev, &policy).with_context(|| format!("verifying {report}"))?
    } else if let Some(quote) = &a.tdx_quote {
        let raw = mpk_attest::raw_or_hex(&read(quote, "TDX quote")?);
        let coll = read(
            a.collateral
                .as_deref()
                .context("--collateral is required")?,
            "collateral",
        )?;
        let platform = a
            .tdx_platform
            .as_deref()
            .map(|p| {
                tdx::Platform::from_json(&read(p, "TDX platform values")?)
                    .with_context(|| format!("parsing {p}"))
            })
            .transpose()?;
        tdx::verify(&deployment, &raw, &coll, platform.as_ref(), &policy)
            .with_context(|| format!("verifying {quote}"))?
    } else {
        bail!("give --snp-report with --vcek, or --tdx-quote with --collateral");
    };
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        out!("{}", verdict.to_text());
    }
    if !verdict.pass {
        return Err(mpk_pack::Finding::error(format!(
            "attestation verification failed: {}",
            verdict.failed().join(", ")
        )));
    }
    Ok(())
}
