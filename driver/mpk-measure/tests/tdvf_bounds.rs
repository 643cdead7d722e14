//! TDVF sections must lie below 4 GiB and add up to at most 4 GiB: each
//! page is one step of MRTD, and the robustness suite found a mutated
//! TDVF whose one section made MRTD run for 27 s.
use mpk_measure::tdx::{MrtdOrder, TdxError, mrtd, tdvf_sections};
use mpk_testutil::tdx::{TEMP_MEM, sections, tdvf};

#[test]
fn the_example_layout_is_accepted() {
    let fw = tdvf(8, 1, &sections());
    assert_eq!(tdvf_sections(&fw).unwrap().len(), sections().len());
    assert!(mrtd(&fw, MrtdOrder::SinglePass).is_ok());
}

#[test]
fn memory_past_4_gib_is_refused() {
    for (addr, size) in [
        (0xFFFF_F000u64, 0x2000u64),
        (1 << 32, 0x1000),
        (0x1000, 1 << 40),
        (u64::MAX - 0xFFF, 0x1000),
    ] {
        let mut s = sections();
        s.push((0, 0, addr, size, TEMP_MEM, 0));
        let e = tdvf_sections(&tdvf(8, 1, &s)).unwrap_err();
        assert!(
            matches!(e, TdxError::BadSection { why, .. } if why.contains("4 GiB")),
            "{addr:#x}+{size:#x}: {e}"
        );
        assert!(mrtd(&tdvf(8, 1, &s), MrtdOrder::TwoPass).is_err());
    }
}

#[test]
fn sections_adding_up_past_4_gib_are_refused() {
    let mut s = sections();
    for _ in 0..20 {
        s.push((0, 0, 0, 0xFFFF_0000, TEMP_MEM, 0));
    }
    let e = tdvf_sections(&tdvf(8, 1, &s)).unwrap_err();
    assert!(e.to_string().contains("add up"), "{e}");
}

#[test]
fn extended_memory_beyond_the_firmware_is_refused() {
    use mpk_testutil::tdx::{BFV, MR_EXTEND};
    // 8 pages of firmware; a measured section of 16 pages (each extended
    // page is 16 hashes: 4 GiB of them took 10 s).
    let mut s = sections();
    s.push((0, 0x1000, 0x0100_0000, 0x10000, BFV, MR_EXTEND));
    let e = tdvf_sections(&tdvf(8, 1, &s)).unwrap_err();
    assert!(e.to_string().contains("MR.EXTEND"), "{e}");
    // The same memory, not extended, is fine.
    let mut s = sections();
    s.push((0, 0x1000, 0x0100_0000, 0x10000, BFV, 0));
    assert!(tdvf_sections(&tdvf(8, 1, &s)).is_ok());
}
