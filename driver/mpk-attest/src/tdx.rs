//! Intel TDX: DCAP quote verification with `dcap-qvl` (PCK chain to Intel's
//! SGX root CA, CRLs, TCB info, QE identity, as of a given time) and the
//! comparison of MRTD and RTMR0..3 with the deployment.

use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::quote::Quote;
use dcap_qvl::verify::QuoteVerifier;

use crate::{AttestError, Check, Deployment, Policy, Verdict, hex48, report_data_check};

/// Platform-published values a deployment cannot compute: `{"mrtd", "rtmr0"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// MRTD of the platform's TDVF.
    #[serde(default)]
    pub mrtd: Option<String>,
    /// RTMR0 (TD HOB, ACPI tables, boot variables).
    #[serde(default)]
    pub rtmr0: Option<String>,
}

impl Platform {
    /// Parses a platform-values file: a JSON object holding `mrtd`,
    /// `rtmr0` or both, each 96 hex digits. A file that was given but holds
    /// neither (`{}`, `[]`) is refused: it would turn the comparison it was
    /// given for into a skipped check.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AttestError> {
        let err = |e: String| AttestError::Platform(e);
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?;
        if !v.is_object() {
            return Err(err("expected a JSON object {\"mrtd\", \"rtmr0\"}".into()));
        }
        let p: Platform = serde_json::from_value(v).map_err(|e| err(e.to_string()))?;
        if p.mrtd.is_none() && p.rtmr0.is_none() {
            return Err(err(
                "the file holds neither mrtd nor rtmr0, so it would check nothing".into(),
            ));
        }
        for (what, value) in [("mrtd", &p.mrtd), ("rtmr0", &p.rtmr0)] {
            if let Some(h) = value {
                hex48(what, h).map_err(err)?;
            }
        }
        Ok(p)
    }
}

/// TCB statuses accepted as passing; anything out of date or revoked fails.
const ACCEPTED_TCB: [&str; 4] = [
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
];

/// Verifies a TDX quote and its collateral against a deployment.
pub fn verify(
    deployment: &Deployment,
    quote: &[u8],
    collateral_json: &[u8],
    platform: Option<&Platform>,
    policy: &Policy,
) -> Result<Verdict, AttestError> {
    let tdm = &deployment.tdx_measurement;
    let rtmr1 = hex48("tdx_measurement.rtmr1", &tdm.rtmr1).map_err(AttestError::Deployment)?;
    let rtmr2 = hex48("tdx_measurement.rtmr2", &tdm.rtmr2).map_err(AttestError::Deployment)?;
    let parsed = Quote::parse(quote).map_err(|e| AttestError::Quote(format!("{e:#}")))?;
    let td = *parsed
        .report
        .as_td10()
        .ok_or_else(|| AttestError::Quote("not a TD quote (SGX enclave report)".into()))?;
    let collateral: QuoteCollateralV3 = serde_json::from_slice(collateral_json)
        .map_err(|e| AttestError::Collateral(e.to_string()))?;

    let mut checks = Vec::new();
    let at = u64::try_from(policy.at).unwrap_or(0);
    let verified = QuoteVerifier::new_prod().verify(quote, &collateral, at);
    checks.push(Check::new(
        "quote_signature",
        format!(
            "quote v{} verifies with its collateral to Intel's SGX root CA at {}",
            parsed.header.version,
            crate::format_time(policy.at)
        ),
        match &verified {
            Ok(_) => {
                "valid (PCK chain, CRLs, TCB info, QE identity, QE report, quote signature)".into()
            }
            Err(e) => format!("invalid: {e:#}"),
        },
        verified.is_ok(),
    ));
    match &verified {
        Ok(v) => checks.push(Check::new(
            "tcb_status",
            format!("one of {}", ACCEPTED_TCB.join(", ")),
            if v.advisory_ids.is_empty() {
                v.status.clone()
            } else {
                format!("{} (advisories: {})", v.status, v.advisory_ids.join(", "))
            },
            ACCEPTED_TCB.contains(&v.status.as_str()),
        )),
        Err(_) => checks.push(Check::new(
            "tcb_status",
            "a verified quote",
            "unknown: quote not verified",
            false,
        )),
    }
    let debug = td.td_attributes[0] & 1 != 0;
    checks.push(Check::new(
        "debug_disabled",
        "TD_ATTRIBUTES.DEBUG (bit 0) = 0",
        format!(
            "td_attributes {}, DEBUG = {}",
            hex::encode(td.td_attributes),
            u8::from(debug)
        ),
        !debug,
    ));

    let mrtd = platform
        .and_then(|p| p.mrtd.as_deref())
        .or(tdm.mrtd.as_deref());
    match mrtd {
        Some(m) => checks.push(Check::eq_hex(
            "mrtd",
            &hex48("mrtd", m).map_err(AttestError::Platform)?,
            &td.mr_td,
        )),
        None => checks.push(Check::skipped(
            "mrtd",
            "(not given: --tdx-platform or deployment mrtd)",
            hex::encode(td.mr_td),
        )),
    }
    match platform.and_then(|p| p.rtmr0.as_deref()) {
        Some(m) => checks.push(Check::eq_hex(
            "rtmr0",
            &hex48("rtmr0", m).map_err(AttestError::Platform)?,
            &td.rt_mr0,
        )),
        None => checks.push(Check::skipped(
            "rtmr0",
            "(not given: --tdx-platform)",
            hex::encode(td.rt_mr0),
        )),
    }
    checks.push(Check::eq_hex("rtmr1", &rtmr1, &td.rt_mr1));
    checks.push(Check::eq_hex("rtmr2", &rtmr2, &td.rt_mr2));
    checks.push(Check::eq_hex("rtmr3", &[0u8; 48], &td.rt_mr3));
    checks.push(report_data_check(policy, &td.report_data));

    Ok(Verdict::new("tdx", policy.at, None, checks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_platform_file_must_carry_a_value() {
        let h = "ab".repeat(48);
        let both = format!(r#"{{"mrtd": "{h}", "rtmr0": "{h}"}}"#);
        assert!(Platform::from_json(both.as_bytes()).is_ok());
        let one = format!(r#"{{"rtmr0": "{h}"}}"#);
        assert_eq!(
            Platform::from_json(one.as_bytes())
                .unwrap()
                .rtmr0
                .as_deref(),
            Some(h.as_str())
        );
        for (bad, says) in [
            ("{}", "neither mrtd nor rtmr0"),
            ("[]", "JSON object"),
            ("[null, null]", "JSON object"),
            (r#"{"rtmr0": "ab"}"#, "rtmr0 is 1 bytes"),
            (r#"{"rtmr1": "ab"}"#, "unknown field"),
        ] {
            let e = Platform::from_json(bad.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
