//! Bad firmware and inconsistent parameters: each gives its own
//! [`SnpError`] variant, never a panic.
use mpk_testutil::firmware;

use mpk_measure::snp::{SevHashes, SnpError, SnpLaunch, launch_digest};

fn launch(fw: &[u8], kernel: bool, vcpus: u32) -> Result<String, SnpError> {
    launch_digest(&SnpLaunch {
        firmware: fw,
        firmware_digest: None,
        hashes: kernel.then(|| SevHashes::new(b"kernel", None, Some("ro"))),
        vcpus,
        vcpu_signature: 0x00A0_0F11,
        guest_features: 1,
    })
    .map(|d| d.to_string())
}

fn good() -> firmware::Spec {
    firmware::Spec::amdsev(8, 7)
}

#[test]
fn a_good_image_measures() {
    let fw = firmware::build(&good());
    assert_eq!(launch(&fw, true, 2).unwrap().len(), 96);
    assert_eq!(launch(&fw, false, 0).unwrap().len(), 96);
}

#[test]
fn each_defect_has_its_error() {
    let mut s = good();
    s.footer = false;
    assert_eq!(
        launch(&firmware::build(&s), false, 1),
        Err(SnpError::NoFooterTable)
    );

    let mut s = good();
    s.sections = None;
    assert_eq!(
        launch(&firmware::build(&s), false, 1),
        Err(SnpError::NoSevMetadata)
    );

    let mut fw = firmware::build(&good());
    firmware::set_footer_size(&mut fw, 0xFFFF);
    assert!(matches!(
        launch(&fw, false, 1),
        Err(SnpError::TruncatedFooterTable { size: 0xFFFF, .. })
    ));

    let mut fw = firmware::build(&good());
    firmware::set_footer_size(&mut fw, 17);
    assert!(matches!(
        launch(&fw, false, 1),
        Err(SnpError::TruncatedFooterTable { size: 17, .. })
    ));

    // An entry whose length field exceeds what is left of the table.
    let mut fw = firmware::build(&good());
    let last_entry_len = fw.len() - 50 - 18;
    fw[last_entry_len..last_entry_len + 2].copy_from_slice(&0x7FFFu16.to_le_bytes());
    assert!(matches!(
        launch(&fw, false, 1),
        Err(SnpError::BadFooterEntry { len: 0x7FFF, .. })
    ));

    let mut s = good();
    s.sections
        .as_mut()
        .unwrap()
        .retain(|x| x.2 != firmware::KERNEL_HASHES);
    let fw = firmware::build(&s);
    assert_eq!(launch(&fw, true, 1), Err(SnpError::NoKernelHashesSection));
    assert!(launch(&fw, false, 1).is_ok());

    let mut s = good();
    s.hashes_table = None;
    assert_eq!(
        launch(&firmware::build(&s), true, 1),
        Err(SnpError::NoHashesTable)
    );
    assert!(launch(&firmware::build(&s), false, 1).is_ok());

    let mut s = good();
    s.hashes_table = Some((0x81_0FC0, 0x400));
    assert_eq!(
        launch(&firmware::build(&s), true, 1),
        Err(SnpError::HashesTableOverflow(0xFC0))
    );

    let mut s = good();
    s.reset_eip = None;
    assert_eq!(
        launch(&firmware::build(&s), false, 1),
        Err(SnpError::NoResetBlock)
    );

    let mut s = good();
    s.reset_eip = Some(0);
    assert_eq!(
        launch(&firmware::build(&s), false, 2),
        Err(SnpError::ZeroApEip(2))
    );
    assert!(launch(&firmware::build(&s), false, 1).is_ok());

    let mut s = good();
    s.sections.as_mut().unwrap().push((0x90_0000, 0x1000, 7));
    assert_eq!(
        launch(&firmware::build(&s), false, 1),
        Err(SnpError::UnknownSectionType {
            index: 7,
            section_type: 7
        })
    );

    let mut s = good();
    s.sections.as_mut().unwrap()[0].1 = 0x1800;
    assert!(matches!(
        launch(&firmware::build(&s), false, 1),
        Err(SnpError::SectionNotPages { index: 0, .. })
    ));

    let mut s = good();
    s.sections.as_mut().unwrap()[6].1 = 0x2000;
    assert_eq!(
        launch(&firmware::build(&s), true, 1),
        Err(SnpError::KernelHashesSize(0x2000))
    );

    let mut fw = firmware::build(&good());
    let n = fw.len();
    fw[n - 2048..n - 2044].copy_from_slice(b"XSEV");
    assert_eq!(
        launch(&fw, false, 1),
        Err(SnpError::BadMetadataSignature(*b"XSEV"))
    );
    let mut fw = firmware::build(&good());
    fw[n - 2040..n - 2036].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(launch(&fw, false, 1), Err(SnpError::BadMetadataVersion(2)));
    let mut fw = firmware::build(&good());
    fw[n - 2036..n - 2032].copy_from_slice(&100_000u32.to_le_bytes());
    assert!(matches!(
        launch(&fw, false, 1),
        Err(SnpError::TruncatedMetadata {
            num_items: 100_000,
            ..
        })
    ));

    let mut fw = firmware::build(&good());
    fw.extend_from_slice(&[0; 4096]); // footer no longer at the end
    assert_eq!(launch(&fw, false, 1), Err(SnpError::NoFooterTable));
    let mut fw = firmware::build(&good());
    fw.splice(0..0, [0u8; 100]); // not whole pages
    assert_eq!(
        launch(&fw, false, 1),
        Err(SnpError::FirmwareSize(8 * 4096 + 100))
    );
    assert_eq!(launch(&[], false, 1), Err(SnpError::NoFooterTable));
}

#[test]
fn errors_name_what_is_missing() {
    let msg = SnpError::NoKernelHashesSection.to_string();
    assert!(msg.contains("SNP_KERNEL_HASHES"), "{msg}");
    let msg = SnpError::NoSevMetadata.to_string();
    assert!(
        msg.contains("dc886566-984a-4798-a75e-5585a7bf67cc"),
        "{msg}"
    );
    let msg = SnpError::NoFooterTable.to_string();
    assert!(
        msg.contains("96b582de-1fb2-45f7-baea-a366c55a082d"),
        "{msg}"
    );
}

/// Absurd vCPU counts are refused before any work (each vCPU is one VMSA
/// page update: u32::MAX of them ran for hours); KVM's limit still works.
#[test]
fn vcpu_counts_past_kvms_limit_are_refused() {
    let fw = firmware::build(&good());
    assert!(launch(&fw, false, mpk_measure::snp::MAX_VCPUS).is_ok());
    for n in [mpk_measure::snp::MAX_VCPUS + 1, u32::MAX] {
        assert_eq!(launch(&fw, false, n), Err(SnpError::TooManyVcpus(n)));
    }
}

/// Sections reaching past 4 GiB, or adding up to more, are refused before
/// any page is measured (each page is one digest step: a few hundred
/// 4 GiB sections would
/// run for minutes).
#[test]
fn sections_past_4_gib_are_refused() {
    use firmware::SEC_MEM;
    let mut s = good();
    s.sections
        .as_mut()
        .unwrap()
        .push((0xFFFF_F000, 0x2000, SEC_MEM));
    assert!(matches!(
        launch(&firmware::build(&s), false, 1),
        Err(SnpError::SectionOutOfRange {
            gpa: 0xFFFF_F000,
            ..
        })
    ));
    // Each below 4 GiB, but 120 of them add up to far more.
    let mut s = good();
    let many = s.sections.as_mut().unwrap();
    for _ in 0..120 {
        many.push((0, 0xFFFF_F000, SEC_MEM));
    }
    let fw = firmware::build(&s);
    let t = std::time::Instant::now();
    assert!(matches!(
        launch(&fw, false, 1),
        Err(SnpError::SectionOutOfRange { .. })
    ));
    eprintln!("refused in {:?}", t.elapsed());
}
