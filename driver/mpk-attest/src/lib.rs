//! Client-side verification of confidential-VM attestation evidence against
//! a deployment document made by `mpk measure deployment`.
//!
//! Two kinds of evidence are understood: an AMD SEV-SNP attestation report
//! with its VCEK certificate ([`snp`], built on the `sev` crate), and an
//! Intel TDX quote with its DCAP collateral ([`tdx`], built on `dcap-qvl`).
//! Nothing here touches the network: VCEKs and collateral are inputs.
//!
//! Every verification returns a [`Verdict`]: one [`Check`] per property
//! (name, expected, found, status). Evidence that cannot even be parsed
//! (a truncated report, an unknown version) is an [`AttestError`] instead.

pub mod snp;
pub mod tdx;

use serde::{Deserialize, Serialize};

/// Why evidence or its inputs could not be examined at all.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The SEV-SNP report has the wrong length.
    #[error(
        "SEV-SNP report is {len} bytes; an attestation report is exactly {expected} bytes (truncated or not a report)"
    )]
    TruncatedReport {
        /// Bytes given.
        len: usize,
        /// Bytes required.
        expected: usize,
    },
    /// The SEV-SNP report version is not one this verifier knows.
    #[error("SEV-SNP report version {0} is not supported (this verifier knows versions 2 to 5)")]
    UnknownReportVersion(u32),
    /// The SEV-SNP report could not be decoded.
    #[error("SEV-SNP report could not be parsed: {0}")]
    Report(String),
    /// A certificate could not be decoded.
    #[error("{what}: {reason}")]
    Certificate {
        /// Which certificate (input) it was.
        what: String,
        /// The decoder's complaint.
        reason: String,
    },
    /// The TDX quote could not be decoded.
    #[error("TDX quote could not be parsed: {0}")]
    Quote(String),
    /// The DCAP collateral could not be decoded.
    #[error("TDX collateral could not be parsed: {0}")]
    Collateral(String),
    /// The deployment document lacks a value or has a malformed one.
    #[error("deployment document: {0}")]
    Deployment(String),
    /// A TDX platform-values file is malformed.
    #[error("TDX platform values: {0}")]
    Platform(String),
    /// `--report-data` is malformed.
    #[error("report data: {0}")]
    ReportData(String),
    /// A time could not be parsed.
    #[error("time {0:?} is not RFC 3339 (e.g. 2025-06-20T00:00:00Z)")]
    Time(String),
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The property holds.
    Pass,
    /// The property does not hold; the verdict fails.
    Fail,
    /// Nothing to compare against (e.g. no `--report-data`); does not fail the verdict.
    Skipped,
}

/// One verified property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Stable, machine-readable name (e.g. `measurement`).
    pub name: String,
    /// What the deployment or policy requires.
    pub expected: String,
    /// What the evidence shows.
    pub found: String,
    /// Pass, fail or skipped.
    pub status: Status,
}

impl Check {
    fn new(name: &str, expected: impl Into<String>, found: impl Into<String>, pass: bool) -> Self {
        Check {
            name: name.into(),
            expected: expected.into(),
            found: found.into(),
            status: if pass { Status::Pass } else { Status::Fail },
        }
    }

    fn skipped(name: &str, why: impl Into<String>, found: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            expected: why.into(),
            found: found.into(),
            status: Status::Skipped,
        }
    }

    fn eq_hex(name: &str, expected: &[u8], found: &[u8]) -> Self {
        Check::new(
            name,
            hex::encode(expected),
            hex::encode(found),
            expected == found,
        )
    }
}

/// The root of trust a verdict rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedRoot {
    /// Human name, e.g. `AMD ARK-Milan (pinned)` or `--trust-ark`.
    pub name: String,
    /// SHA-256 of the root certificate's DER, lowercase hex.
    pub sha256: String,
}

/// The result of verifying one piece of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// `sev-snp` or `tdx`.
    pub platform: String,
    /// The time the evidence was judged at (RFC 3339).
    pub at: String,
    /// `true` exactly when no check failed.
    pub pass: bool,
    /// The root the chain ends in, when it is one we trust.
    pub trusted_root: Option<TrustedRoot>,
    /// Every check, in the order performed.
    pub checks: Vec<Check>,
}

impl Verdict {
    fn new(platform: &str, at: i64, trusted_root: Option<TrustedRoot>, checks: Vec<Check>) -> Self {
        let pass = !checks.is_empty() && checks.iter().all(|c| c.status != Status::Fail);
        Verdict {
            platform: platform.into(),
            at: format_time(at),
            pass,
            trusted_root,
            checks,
        }
    }

    /// Names of the failed checks.
    pub fn failed(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name.as_str())
            .collect()
    }

    /// A human-readable rendering, one block per check.
    pub fn to_text(&self) -> String {
        let mut s = format!("platform: {}\nat: {}\n", self.platform, self.at);
        if let Some(r) = &self.trusted_root {
            s += &format!("trusted root: {} sha256:{}\n", r.name, r.sha256);
        }
        for c in &self.checks {
            let tag = match c.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Skipped => "SKIP",
            };
            s += &format!(
                "{tag} {}\n     expected: {}\n     found:    {}\n",
                c.name, c.expected, c.found
            );
        }
        if self.pass {
            s += "verdict: PASS (every required check passed)\n";
        } else {
            s += &format!("verdict: FAIL ({})\n", self.failed().join(", "));
        }
        s
    }
}

/// The deployment document evidence is compared with: the typed document
/// `mpk measure deployment` writes (`mpk_model::deployment`), not a
/// partial re-reading of it.
pub use mpk_model::deployment::{Deployment, TdxMeasurement};

/// Parses a deployment document (every field of version 1 present).
pub fn parse_deployment(bytes: &[u8]) -> Result<Deployment, AttestError> {
    Deployment::from_json(bytes).map_err(|e| AttestError::Deployment(e.to_string()))
}

/// Decodes a 48-byte register value written as 96 hex digits.
fn hex48(what: &str, s: &str) -> Result<[u8; 48], String> {
    let v = hex::decode(s.trim()).map_err(|e| format!("{what} is not hex: {e}"))?;
    v.try_into()
        .map_err(|v: Vec<u8>| format!("{what} is {} bytes, expected 48", v.len()))
}

/// Parses `--report-data`: up to 64 bytes of hex, zero-padded on the right
/// to the 64-byte REPORT_DATA field.
pub fn parse_report_data(s: &str) -> Result<[u8; 64], AttestError> {
    let v = hex::decode(s.trim()).map_err(|e| AttestError::ReportData(format!("not hex: {e}")))?;
    if v.len() > 64 {
        return Err(AttestError::ReportData(format!(
            "{} bytes; REPORT_DATA holds at most 64",
            v.len()
        )));
    }
    let mut out = [0u8; 64];
    out[..v.len()].copy_from_slice(&v);
    Ok(out)
}

/// Evidence files may be raw or hex: text that is all hex digits (ignoring
/// surrounding whitespace) is decoded, anything else is taken as raw bytes.
pub fn raw_or_hex(bytes: &[u8]) -> Vec<u8> {
    let t = bytes.trim_ascii();
    if !t.is_empty() && t.len().is_multiple_of(2) && t.iter().all(u8::is_ascii_hexdigit) {
        if let Ok(v) = hex::decode(t) {
            return v;
        }
    }
    bytes.to_vec()
}

/// Parses an RFC 3339 time into Unix seconds.
pub fn parse_time(s: &str) -> Result<i64, AttestError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp())
        .map_err(|_| AttestError::Time(s.into()))
}

/// Formats Unix seconds as RFC 3339 (UTC).
pub fn format_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| t.to_string())
}

/// What the verifier requires beyond the deployment document.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Expected REPORT_DATA (64 bytes), when the caller supplied a nonce.
    pub report_data: Option<[u8; 64]>,
    /// The time to judge certificate and collateral validity at (Unix seconds).
    pub at: i64,
    /// Extra root certificates (PEM or DER) trusted besides the pinned ones.
    pub trusted_roots: Vec<Vec<u8>>,
}

fn report_data_check(policy: &Policy, found: &[u8; 64]) -> Check {
    match &policy.report_data {
        Some(want) => Check::eq_hex("report_data", want, found),
        None => Check::skipped(
            "report_data",
            "(not given: --report-data)",
            hex::encode(found),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_data_is_hex_zero_padded_to_64_bytes() {
        let d = parse_report_data(" 00ff10 ").unwrap();
        assert_eq!(&d[..3], &[0x00, 0xff, 0x10]);
        assert!(d[3..].iter().all(|&b| b == 0));
        assert_eq!(parse_report_data("").unwrap(), [0; 64]);
        assert_eq!(parse_report_data(&"ab".repeat(64)).unwrap(), [0xab; 64]);
        for bad in ["abc", "zz", &"00".repeat(65)] {
            assert!(matches!(
                parse_report_data(bad),
                Err(AttestError::ReportData(_))
            ));
        }
    }

    #[test]
    fn evidence_may_be_raw_or_hex() {
        assert_eq!(raw_or_hex(b"0a0B\n"), [0x0a, 0x0b]);
        // Odd length, non-hex, empty: taken as raw bytes.
        for raw in [&b"0a0"[..], b"hello", b"", b"\x01\x02"] {
            assert_eq!(raw_or_hex(raw), raw);
        }
    }

    #[test]
    fn times_round_trip_and_bad_ones_are_named() {
        let t = parse_time("2025-06-20T00:00:00Z").unwrap();
        assert_eq!(t, 1_750_377_600);
        assert_eq!(format_time(t), "2025-06-20T00:00:00Z");
        assert_eq!(parse_time("2025-06-20T02:00:00+02:00").unwrap(), t);
        let e = parse_time("yesterday").unwrap_err();
        assert!(
            e.to_string().contains("\"yesterday\" is not RFC 3339"),
            "{e}"
        );
    }

    #[test]
    fn verdict_passes_only_without_failures_and_not_empty() {
        let pass = Check::new("a", "x", "x", true);
        let fail = Check::new("b", "x", "y", false);
        let skip = Check::skipped("c", "(not given)", "z");
        assert!(!Verdict::new("sev-snp", 0, None, vec![]).pass);
        let v = Verdict::new("sev-snp", 0, None, vec![pass.clone(), skip.clone()]);
        assert!(v.pass);
        assert!(v.to_text().contains("SKIP c"));
        assert!(
            v.to_text()
                .ends_with("verdict: PASS (every required check passed)\n")
        );
        let v = Verdict::new("sev-snp", 0, None, vec![pass, fail, skip]);
        assert!(!v.pass);
        assert_eq!(v.failed(), ["b"]);
        assert!(
            v.to_text()
                .contains("FAIL b\n     expected: x\n     found:    y\n")
        );
        assert!(v.to_text().ends_with("verdict: FAIL (b)\n"));
        assert_eq!(v.at, "1970-01-01T00:00:00Z");
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["checks"][1]["status"], "fail");
        assert_eq!(json["checks"][2]["status"], "skipped");
    }

    #[test]
    fn eq_hex_compares_bytes_and_shows_hex() {
        let c = Check::eq_hex("m", &[1, 2], &[1, 3]);
        assert_eq!((c.expected.as_str(), c.found.as_str()), ("0102", "0103"));
        assert_eq!(c.status, Status::Fail);
        assert_eq!(Check::eq_hex("m", &[1], &[1]).status, Status::Pass);
    }

    #[test]
    fn deployment_documents_parse_and_hex48_checks_length() {
        let doc = mpk_testutil::deployment_json("ab", None, "01", "02");
        let d = parse_deployment(doc.to_string().as_bytes()).unwrap();
        assert_eq!(d.snp_measurement, "ab");
        assert_eq!(d.tdx_measurement.mrtd, None);
        // Not JSON, a field of the wrong type, a missing field: refused.
        let mut no_snp = doc.clone();
        no_snp.as_object_mut().unwrap().remove("snp_measurement");
        for bad in [
            "{".to_string(),
            doc.to_string().replace("\"ab\"", "5"),
            no_snp.to_string(),
        ] {
            let e = parse_deployment(bad.as_bytes()).unwrap_err();
            assert!(matches!(e, AttestError::Deployment(_)), "{bad}: {e}");
        }
        assert_eq!(hex48("m", &"11".repeat(48)).unwrap(), [0x11; 48]);
        assert_eq!(hex48("m", "ab").unwrap_err(), "m is 1 bytes, expected 48");
        assert!(hex48("m", "xy").unwrap_err().starts_with("m is not hex"));
    }
}
