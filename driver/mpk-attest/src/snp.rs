//! AMD SEV-SNP: report parsing, the ARK → ASK → VCEK chain, the report
//! signature, and the policy and measurement checks.
//!
//! Parsing, the pinned per-product AMD roots (Milan, Genoa, Turin) and the
//! RSA-PSS certificate chain come from the `sev` crate. The report's ECDSA
//! P-384 signature is checked with `p384` over the *received* bytes
//! `0..0x2A0` rather than over `sev`'s re-encoding, so a flipped reserved
//! byte cannot slip through. VCEK TCB extensions follow AMD's VCEK
//! specification (57230), section 3.1.

use p384::ecdsa::signature::Verifier;
use sev::certs::snp::{Certificate, Verifiable, builtin};
use sev::firmware::guest::AttestationReport;
use sev::firmware::host::TcbVersion;
use sev::parser::ByteParser;
use sha2::{Digest, Sha256};
use x509_cert::der::{Decode, DecodePem, Encode};

use crate::{
    AttestError, Check, Deployment, Policy, TrustedRoot, Verdict, hex48, report_data_check,
};

/// Length of an attestation report (SEV-SNP ABI 56860, table 22).
pub const REPORT_LEN: usize = 0x4A0;
/// The signed part of a report: bytes `0..0x2A0`.
pub const SIGNED_LEN: usize = 0x2A0;
/// SIGNATURE_ALGO value for ECDSA P-384 with SHA-384.
const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// The evidence of one SEV-SNP guest.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// The raw 1184-byte report.
    pub report: &'a [u8],
    /// The VCEK certificate (DER or PEM).
    pub vcek: &'a [u8],
    /// ASK and ARK (PEM), when not the pinned AMD ones.
    pub ca_chain: Option<&'a [u8]>,
}

struct Root {
    name: String,
    ark: x509_cert::Certificate,
    ask: x509_cert::Certificate,
}

fn cert_err(what: &str, e: impl std::fmt::Display) -> AttestError {
    AttestError::Certificate {
        what: what.into(),
        reason: e.to_string(),
    }
}

fn parse_cert(what: &str, bytes: &[u8]) -> Result<x509_cert::Certificate, AttestError> {
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        x509_cert::Certificate::from_pem(bytes).map_err(|e| cert_err(what, e))
    } else {
        x509_cert::Certificate::from_der(bytes).map_err(|e| cert_err(what, e))
    }
}

fn der(c: &x509_cert::Certificate) -> Vec<u8> {
    c.to_der().unwrap_or_default()
}

fn fingerprint(c: &x509_cert::Certificate) -> String {
    hex::encode(Sha256::digest(der(c)))
}

fn pinned() -> Result<Vec<Root>, AttestError> {
    let products: [(&str, &[u8], &[u8]); 3] = [
        ("Milan", builtin::milan::ARK, builtin::milan::ASK),
        ("Genoa", builtin::genoa::ARK, builtin::genoa::ASK),
        ("Turin", builtin::turin::ARK, builtin::turin::ASK),
    ];
    products
        .iter()
        .map(|(name, ark, ask)| {
            Ok(Root {
                name: format!("AMD ARK-{name} (pinned)"),
                ark: parse_cert("pinned ARK", ark)?,
                ask: parse_cert("pinned ASK", ask)?,
            })
        })
        .collect()
}

fn chain_from_file(bytes: &[u8]) -> Result<Root, AttestError> {
    let certs =
        x509_cert::Certificate::load_pem_chain(bytes).map_err(|e| cert_err("--ca-chain", e))?;
    let self_issued =
        |c: &x509_cert::Certificate| c.tbs_certificate.subject == c.tbs_certificate.issuer;
    let ark = certs.iter().find(|c| self_issued(c));
    let ask = certs.iter().find(|c| !self_issued(c));
    match (ark, ask) {
        (Some(ark), Some(ask)) => Ok(Root {
            name: "--ca-chain".into(),
            ark: ark.clone(),
            ask: ask.clone(),
        }),
        _ => Err(cert_err(
            "--ca-chain",
            "expected a self-signed ARK and an ASK it signs (PEM)",
        )),
    }
}

fn signs(signer: &x509_cert::Certificate, signee: &x509_cert::Certificate) -> Result<(), String> {
    let a = Certificate::from(signer.clone());
    let b = Certificate::from(signee.clone());
    (&a, &b).verify().map_err(|e| e.to_string())
}

fn validity(c: &x509_cert::Certificate) -> (i64, i64) {
    let v = &c.tbs_certificate.validity;
    (
        v.not_before.to_unix_duration().as_secs() as i64,
        v.not_after.to_unix_duration().as_secs() as i64,
    )
}

/// Parses a report, refusing wrong lengths and unknown versions first so
/// each gets its own message.
pub fn parse_report(raw: &[u8]) -> Result<AttestationReport, AttestError> {
    if raw.len() != REPORT_LEN {
        return Err(AttestError::TruncatedReport {
            len: raw.len(),
            expected: REPORT_LEN,
        });
    }
    let version = u32::from_le_bytes(raw[0..4].try_into().expect("4 bytes"));
    if !(2..=5).contains(&version) {
        return Err(AttestError::UnknownReportVersion(version));
    }
    AttestationReport::from_bytes(raw).map_err(|e| AttestError::Report(e.to_string()))
}

/// TCB values (bootloader, TEE, SNP, microcode, FMC) carried by a VCEK.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CertTcb {
    bootloader: Option<u8>,
    tee: Option<u8>,
    snp: Option<u8>,
    microcode: Option<u8>,
    fmc: Option<u8>,
}

fn fmt_tcb(
    bl: Option<u8>,
    tee: Option<u8>,
    snp: Option<u8>,
    uc: Option<u8>,
    fmc: Option<u8>,
) -> String {
    let f = |v: Option<u8>| v.map_or("absent".to_string(), |v| v.to_string());
    let mut s = format!(
        "bootloader={} tee={} snp={} microcode={}",
        f(bl),
        f(tee),
        f(snp),
        f(uc)
    );
    if fmc.is_some() {
        s += &format!(" fmc={}", f(fmc));
    }
    s
}

/// AMD's VCEK extension arc: 1.3.6.1.4.1.3704.1.
const AMD_ARC: &str = "1.3.6.1.4.1.3704.1.";

fn vcek_extensions(c: &x509_cert::Certificate) -> (CertTcb, Option<Vec<u8>>) {
    let mut tcb = CertTcb::default();
    let mut hwid = None;
    for e in c.tbs_certificate.extensions.iter().flatten() {
        let oid = e.extn_id.to_string();
        let Some(rest) = oid.strip_prefix(AMD_ARC) else {
            continue;
        };
        let bytes = e.extn_value.as_bytes();
        let int = || u8::from_der(bytes).ok();
        match rest {
            "3.1" => tcb.bootloader = int(),
            "3.2" => tcb.tee = int(),
            "3.3" => tcb.snp = int(),
            "3.8" => tcb.microcode = int(),
            "3.9" => tcb.fmc = int(),
            "4" => {
                hwid = Some(
                    x509_cert::der::asn1::OctetString::from_der(bytes)
                        .map(|o| o.as_bytes().to_vec())
                        .unwrap_or_else(|_| bytes.to_vec()),
                )
            }
            _ => {}
        }
    }
    (tcb, hwid)
}

fn report_tcb(t: &TcbVersion) -> String {
    fmt_tcb(
        Some(t.bootloader),
        Some(t.tee),
        Some(t.snp),
        Some(t.microcode),
        t.fmc,
    )
}

/// Verifies SEV-SNP evidence against a deployment.
pub fn verify(
    deployment: &Deployment,
    evidence: &Evidence<'_>,
    policy: &Policy,
) -> Result<Verdict, AttestError> {
    let expected_measurement = deployment
        .snp_measurement
        .as_deref()
        .ok_or_else(|| AttestError::Deployment("no snp_measurement".into()))
        .and_then(|s| hex48("snp_measurement", s).map_err(AttestError::Deployment))?;
    let report = parse_report(evidence.report)?;
    let vcek = parse_cert("VCEK", evidence.vcek)?;
    let extra: Vec<x509_cert::Certificate> = policy
        .trusted_roots
        .iter()
        .map(|r| parse_cert("--trust-ark", r))
        .collect::<Result<_, _>>()?;
    let pinned = pinned()?;

    // Candidate (ARK, ASK) pairs: the given chain, or every pinned product.
    let candidates = match evidence.ca_chain {
        Some(bytes) => vec![chain_from_file(bytes)?],
        None => pinned
            .iter()
            .map(|r| Root {
                name: r.name.clone(),
                ark: r.ark.clone(),
                ask: r.ask.clone(),
            })
            .collect(),
    };
    let chosen = candidates
        .iter()
        .find(|r| signs(&r.ask, &vcek).is_ok())
        .unwrap_or(&candidates[0]);

    let mut checks = Vec::new();

    // Root of trust: a pinned AMD ARK or one passed with --trust-ark.
    let fp = fingerprint(&chosen.ark);
    let trusted = if let Some(p) = pinned.iter().find(|p| der(&p.ark) == der(&chosen.ark)) {
        Some(TrustedRoot {
            name: p.name.clone(),
            sha256: fp.clone(),
        })
    } else if extra.iter().any(|e| der(e) == der(&chosen.ark)) {
        Some(TrustedRoot {
            name: "--trust-ark".into(),
            sha256: fp.clone(),
        })
    } else {
        None
    };
    checks.push(Check::new(
        "root_trusted",
        "a pinned AMD ARK (Milan, Genoa, Turin) or --trust-ark",
        match &trusted {
            Some(t) => format!("{} sha256:{fp}", t.name),
            None => format!("untrusted root sha256:{fp} (from {})", chosen.name),
        },
        trusted.is_some(),
    ));
    let link = |name: &str,
                what: &str,
                signer: &x509_cert::Certificate,
                signee: &x509_cert::Certificate| {
        let r = signs(signer, signee);
        Check::new(
            name,
            what,
            r.as_ref().map_or_else(
                |e| format!("invalid: {e}"),
                |_| "valid RSA-PSS SHA-384 signature".into(),
            ),
            r.is_ok(),
        )
    };
    checks.push(link(
        "ark_self_signed",
        "ARK signs itself",
        &chosen.ark,
        &chosen.ark,
    ));
    checks.push(link(
        "ark_signs_ask",
        "ARK signs ASK",
        &chosen.ark,
        &chosen.ask,
    ));
    checks.push(link("ask_signs_vcek", "ASK signs VCEK", &chosen.ask, &vcek));

    let bad: Vec<String> = [("ARK", &chosen.ark), ("ASK", &chosen.ask), ("VCEK", &vcek)]
        .iter()
        .filter_map(|(n, c)| {
            let (nb, na) = validity(c);
            (policy.at < nb || policy.at > na).then(|| {
                format!(
                    "{n} valid {}..{}",
                    crate::format_time(nb),
                    crate::format_time(na)
                )
            })
        })
        .collect();
    checks.push(Check::new(
        "certificate_validity",
        format!("ARK, ASK, VCEK valid at {}", crate::format_time(policy.at)),
        if bad.is_empty() {
            "all valid".into()
        } else {
            bad.join("; ")
        },
        bad.is_empty(),
    ));

    // Report signature over the received bytes.
    let sig = (|| -> Result<(), String> {
        if report.sig_algo != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(format!(
                "signature algorithm {} is not ECDSA P-384 SHA-384",
                report.sig_algo
            ));
        }
        let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(
            Certificate::from(vcek.clone()).public_key_sec1(),
        )
        .map_err(|e| format!("VCEK key is not P-384: {e}"))?;
        let sig = p384::ecdsa::Signature::try_from(&report.signature).map_err(|e| e.to_string())?;
        key.verify(&evidence.report[..SIGNED_LEN], &sig)
            .map_err(|_| "signature does not verify with this VCEK".to_string())
    })();
    checks.push(Check::new(
        "report_signature",
        "ECDSA P-384 SHA-384 signature of bytes 0..0x2A0 by the VCEK",
        sig.as_ref()
            .map_or_else(|e| format!("invalid: {e}"), |_| "valid".into()),
        sig.is_ok(),
    ));

    let debug = report.policy.debug_allowed();
    checks.push(Check::new(
        "debug_disabled",
        "guest policy DEBUG (bit 19) = 0",
        format!(
            "policy 0x{:x}, DEBUG = {}",
            u64::from(report.policy),
            u8::from(debug)
        ),
        !debug,
    ));

    let (cert_tcb, hwid) = vcek_extensions(&vcek);
    let want = fmt_tcb(
        cert_tcb.bootloader,
        cert_tcb.tee,
        cert_tcb.snp,
        cert_tcb.microcode,
        cert_tcb.fmc,
    );
    let got = report_tcb(&report.reported_tcb);
    let t = &report.reported_tcb;
    let tcb_ok = cert_tcb.bootloader == Some(t.bootloader)
        && cert_tcb.tee == Some(t.tee)
        && cert_tcb.snp == Some(t.snp)
        && cert_tcb.microcode == Some(t.microcode)
        && (cert_tcb.fmc.is_none() || cert_tcb.fmc == t.fmc);
    checks.push(Check::new(
        "reported_tcb",
        format!("VCEK TCB {want}"),
        got,
        tcb_ok,
    ));

    match hwid {
        Some(h) if report.chip_id.iter().any(|&b| b != 0) => {
            let found = &report.chip_id[..h.len().min(64)];
            checks.push(Check::new(
                "chip_id",
                hex::encode(&h),
                hex::encode(found),
                h.as_slice() == found,
            ));
        }
        Some(h) => checks.push(Check::skipped(
            "chip_id",
            hex::encode(h),
            "masked (MaskChipId)",
        )),
        None => checks.push(Check::skipped(
            "chip_id",
            "(VCEK has no hwID)",
            hex::encode(report.chip_id),
        )),
    }

    checks.push(Check::eq_hex(
        "measurement",
        &expected_measurement,
        &report.measurement,
    ));
    checks.push(report_data_check(policy, &report.report_data));

    Ok(Verdict::new("sev-snp", policy.at, trusted, checks))
}
