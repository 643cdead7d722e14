//! A self-made AMD-style certificate hierarchy and synthetic SEV-SNP
//! reports, for tests only: an RSA ARK (self-signed) and ASK, both signing
//! with RSA-PSS SHA-384 as AMD's real roots do (the only scheme the `sev`
//! crate's chain check accepts), and a P-384 VCEK carrying AMD's TCB and
//! hwID extensions (VCEK specification 57230, section 3.1). Reports are
//! laid out by the `sev` crate's own encoder and signed over bytes
//! `0..0x2A0` with the VCEK.
//!
//! Keys come from a seeded RNG, so every run builds the same hierarchy;
//! [`Pki::shared`] builds it once per test binary. Used by mpk-attest's
//! unit tests and mpk-cli's `attest_selfmade`.

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use p384::ecdsa::signature::Signer;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rsa::pkcs8::EncodePublicKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use sev::firmware::guest::{AttestationReport, GuestPolicy};
use sev::firmware::host::TcbVersion;
use sev::parser::ByteParser;
use x509_cert::der::asn1::{BitString, Ia5String, OctetString, UtcTime};
use x509_cert::der::{Any, Decode, Encode, EncodePem, pem::LineEnding};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate};

/// RSA modulus size of the test ARK and ASK. AMD's are 4096 bits; `sev`
/// accepts any size up to 4096, and 2048 keeps generation quick.
pub const RSA_BITS: usize = 2048;

/// RSASSA-PSS (1.2.840.113549.1.1.10).
const RSA_PSS: &str = "1.2.840.113549.1.1.10";
/// RSASSA-PSS-params: SHA-384, MGF1 with SHA-384, salt length 48 (as AMD's).
const PSS_SHA384_PARAMS: [u8; 54] = [
    0x30, 0x34, // SEQUENCE
    0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, // [0] hashAlgorithm sha384
    0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30,
    0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, // [1] maskGenAlgorithm mgf1(sha384)
    0xa2, 0x03, 0x02, 0x01, 0x30, // [2] saltLength 48
];
/// id-ecPublicKey and secp384r1.
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const SECP384R1: &str = "1.3.132.0.34";
/// AMD's VCEK extension arc.
const AMD_ARC: &str = "1.3.6.1.4.1.3704.1";

/// Certificates are valid from 2024-01-01 to 2049-01-01.
pub const NOT_BEFORE: u64 = 1_704_067_200;
/// See [`NOT_BEFORE`].
pub const NOT_AFTER: u64 = 2_493_072_000;

/// The TCB the VCEK is issued for (Milan encoding: bootloader, TEE, SNP,
/// microcode) and the report claims unless told otherwise.
pub const TCB: TcbVersion = TcbVersion {
    fmc: None,
    bootloader: 4,
    tee: 0,
    snp: 22,
    microcode: 213,
};

/// The chip's hwID (also the report's CHIP_ID). Its last 56 bytes are not
/// all zero, so `sev` does not take the chip for a Turin.
pub fn chip_id() -> [u8; 64] {
    std::array::from_fn(|i| 0x40 ^ (i as u8).wrapping_mul(37))
}

/// A test hierarchy: ARK → ASK → VCEK.
pub struct Pki {
    /// The self-signed root, as `--trust-ark` takes it.
    pub ark: Certificate,
    /// The intermediate.
    pub ask: Certificate,
    /// The VCEK (P-384), as `--vcek` takes it.
    pub vcek: Certificate,
    ask_key: rsa::RsaPrivateKey,
    vcek_key: p384::ecdsa::SigningKey,
}

/// What a synthetic report says.
#[derive(Debug, Clone)]
pub struct ReportSpec {
    /// VERSION (2 and up; 3 and up carry CPUID fields, 5 and up mitigation vectors).
    pub version: u32,
    /// MEASUREMENT.
    pub measurement: [u8; 48],
    /// REPORT_DATA.
    pub report_data: [u8; 64],
    /// Set the guest policy's DEBUG bit (19).
    pub debug: bool,
    /// REPORTED_TCB (and current, committed, launch TCB).
    pub tcb: TcbVersion,
    /// CHIP_ID (all zero: masked).
    pub chip_id: [u8; 64],
    /// SIGNATURE_ALGO (1: ECDSA P-384 SHA-384).
    pub sig_algo: u32,
}

impl ReportSpec {
    /// A version-3 Milan report of `measurement`, everything else benign.
    pub fn new(measurement: [u8; 48]) -> Self {
        ReportSpec {
            version: 3,
            measurement,
            report_data: [0; 64],
            debug: false,
            tcb: TCB,
            chip_id: chip_id(),
            sig_algo: 1,
        }
    }
}

fn oid(s: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(s)
}

fn pss_algorithm() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: oid(RSA_PSS),
        parameters: Some(Any::from_der(&PSS_SHA384_PARAMS).expect("PSS params")),
    }
}

fn name(cn: &str) -> Name {
    Name::from_str(&format!("CN={cn},OU=Engineering,O=mpk tests,C=US")).expect("name")
}

fn time(secs: u64) -> Time {
    Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(secs)).expect("UTC time"))
}

fn ext(arc: &str, value: &impl Encode) -> Extension {
    Extension {
        extn_id: oid(&format!("{AMD_ARC}.{arc}")),
        critical: false,
        extn_value: OctetString::new(value.to_der().expect("extension DER")).expect("octets"),
    }
}

/// The VCEK extensions as AMD's key distribution service writes them.
fn vcek_extensions(tcb: &TcbVersion, hwid: &[u8; 64]) -> Vec<Extension> {
    vec![
        ext("1", &1u8),
        ext("2", &Ia5String::new("Milan-B0").expect("IA5")),
        ext("3.1", &tcb.bootloader),
        ext("3.2", &tcb.tee),
        ext("3.3", &tcb.snp),
        ext("3.4", &0u8),
        ext("3.5", &0u8),
        ext("3.6", &0u8),
        ext("3.7", &0u8),
        ext("3.8", &tcb.microcode),
        ext("4", &OctetString::new(hwid.to_vec()).expect("hwID")),
    ]
}

fn rsa_spki(key: &rsa::RsaPrivateKey) -> SubjectPublicKeyInfoOwned {
    let der = key
        .to_public_key()
        .to_public_key_der()
        .expect("RSA public key DER");
    SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).expect("RSA SPKI")
}

fn p384_spki(key: &p384::ecdsa::SigningKey) -> SubjectPublicKeyInfoOwned {
    let point = key.verifying_key().to_encoded_point(false);
    SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: oid(EC_PUBLIC_KEY),
            parameters: Some(Any::from(&oid(SECP384R1))),
        },
        subject_public_key: BitString::from_bytes(point.as_bytes()).expect("bit string"),
    }
}

/// Parameters of one certificate to issue.
pub struct Issue<'a> {
    /// Serial number.
    pub serial: u8,
    /// Issuer common name.
    pub issuer: &'a str,
    /// Subject common name.
    pub subject: &'a str,
    /// The subject's public key.
    pub spki: SubjectPublicKeyInfoOwned,
    /// Extensions.
    pub extensions: Vec<Extension>,
    /// Validity, Unix seconds.
    pub validity: (u64, u64),
}

/// Issues a certificate signed with RSA-PSS SHA-384 by `signer`.
pub fn issue(i: Issue<'_>, signer: &rsa::RsaPrivateKey, rng: &mut StdRng) -> Certificate {
    let tbs = TbsCertificate {
        version: x509_cert::Version::V3,
        serial_number: SerialNumber::new(&[i.serial]).expect("serial"),
        signature: pss_algorithm(),
        issuer: name(i.issuer),
        validity: Validity {
            not_before: time(i.validity.0),
            not_after: time(i.validity.1),
        },
        subject: name(i.subject),
        subject_public_key_info: i.spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: (!i.extensions.is_empty()).then_some(i.extensions),
    };
    let msg = tbs.to_der().expect("TBS DER");
    let key = rsa::pss::SigningKey::<sha2::Sha384>::new(signer.clone());
    let sig = key.sign_with_rng(rng, &msg).to_vec();
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: pss_algorithm(),
        signature: BitString::from_bytes(&sig).expect("signature bits"),
    }
}

/// A fresh RSA key from `rng`.
pub fn rsa_key(rng: &mut StdRng) -> rsa::RsaPrivateKey {
    rsa::RsaPrivateKey::new(rng, RSA_BITS).expect("RSA key generation")
}

impl Pki {
    /// Builds a hierarchy from `seed` (deterministic).
    pub fn generate(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let ark_key = rsa_key(&mut rng);
        let ask_key = rsa_key(&mut rng);
        let vcek_key = p384::ecdsa::SigningKey::random(&mut rng);
        let v = (NOT_BEFORE, NOT_AFTER);
        let ark = issue(
            Issue {
                serial: 1,
                issuer: "ARK-Test",
                subject: "ARK-Test",
                spki: rsa_spki(&ark_key),
                extensions: vec![],
                validity: v,
            },
            &ark_key,
            &mut rng,
        );
        let ask = issue(
            Issue {
                serial: 2,
                issuer: "ARK-Test",
                subject: "SEV-Test",
                spki: rsa_spki(&ask_key),
                extensions: vec![],
                validity: v,
            },
            &ark_key,
            &mut rng,
        );
        let vcek = issue(
            Issue {
                serial: 3,
                issuer: "SEV-Test",
                subject: "SEV-VCEK",
                spki: p384_spki(&vcek_key),
                extensions: vcek_extensions(&TCB, &chip_id()),
                validity: v,
            },
            &ask_key,
            &mut rng,
        );
        Pki {
            ark,
            ask,
            vcek,
            ask_key,
            vcek_key,
        }
    }

    /// The hierarchy of seed 1, built once per test binary.
    pub fn shared() -> &'static Pki {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(|| Pki::generate(1))
    }

    /// Another hierarchy (seed 2), built once per test binary.
    pub fn second() -> &'static Pki {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(|| Pki::generate(2))
    }

    /// A VCEK for another TCB or hwID, signed by this hierarchy's ASK with
    /// this hierarchy's VCEK key.
    pub fn vcek_for(&self, tcb: &TcbVersion, hwid: &[u8; 64], validity: (u64, u64)) -> Certificate {
        let mut rng = StdRng::seed_from_u64(7);
        issue(
            Issue {
                serial: 4,
                issuer: "SEV-Test",
                subject: "SEV-VCEK",
                spki: p384_spki(&self.vcek_key),
                extensions: vcek_extensions(tcb, hwid),
                validity,
            },
            &self.ask_key,
            &mut rng,
        )
    }

    /// The ARK as PEM (`--trust-ark`).
    pub fn ark_pem(&self) -> String {
        pem(&self.ark)
    }

    /// ASK then ARK as PEM (`--ca-chain`, the order AMD's cert_chain has).
    pub fn chain_pem(&self) -> String {
        pem(&self.ask) + &pem(&self.ark)
    }

    /// The VCEK as DER (`--vcek`, as AMD's KDS serves it).
    pub fn vcek_der(&self) -> Vec<u8> {
        self.vcek.to_der().expect("VCEK DER")
    }

    /// A report as `spec` says, signed by the VCEK.
    pub fn report(&self, spec: &ReportSpec) -> Vec<u8> {
        let mut policy = GuestPolicy::from(0x3_0000u64);
        policy.set_debug_allowed(spec.debug);
        let v3 = spec.version >= 3;
        let v5 = spec.version >= 5;
        let r = AttestationReport {
            version: spec.version,
            policy,
            sig_algo: spec.sig_algo,
            current_tcb: spec.tcb,
            report_data: spec.report_data,
            measurement: spec.measurement,
            reported_tcb: spec.tcb,
            cpuid_fam_id: v3.then_some(0x19),
            cpuid_mod_id: v3.then_some(0x01),
            cpuid_step: v3.then_some(0x01),
            chip_id: spec.chip_id,
            committed_tcb: spec.tcb,
            launch_tcb: spec.tcb,
            launch_mit_vector: v5.then_some(0),
            current_mit_vector: v5.then_some(0),
            ..Default::default()
        };
        let mut bytes = r.to_bytes().expect("report encoding").to_vec();
        self.sign(&mut bytes);
        bytes
    }

    /// (Re-)signs bytes `0..0x2A0` of a report in place: R and S little
    /// endian, each in a 72-byte field.
    pub fn sign(&self, report: &mut [u8]) {
        let sig: p384::ecdsa::Signature = self.vcek_key.sign(&report[..0x2A0]);
        let (r, s) = sig.split_bytes();
        report[0x2A0..0x2A0 + 144].fill(0);
        for (i, b) in r.iter().rev().enumerate() {
            report[0x2A0 + i] = *b;
        }
        for (i, b) in s.iter().rev().enumerate() {
            report[0x2A0 + 72 + i] = *b;
        }
    }
}

/// PEM of a certificate.
pub fn pem(c: &Certificate) -> String {
    c.to_pem(LineEnding::LF).expect("PEM")
}

/// DER of a certificate.
pub fn der_of(c: &Certificate) -> Vec<u8> {
    c.to_der().expect("DER")
}
