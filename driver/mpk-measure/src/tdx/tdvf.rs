//! The TDVF metadata descriptor (Intel TDX Virtual Firmware Design Guide,
//! section 11 "TDVF metadata"): found through the OVMF footer table entry
//! `e47a6535-984a-4798-865e-4685a7bf8ec2`, whose last u32 is the offset
//! from the end of the file to the descriptor (the descriptor GUID
//! `e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae` precedes it).
//!
//! ```text
//! descriptor  0x00 "TDVF"  0x04 u32 length  0x08 u32 version = 1  0x0C u32 n
//! section[i]  0x10 + 32*i, TDVF_SECTION (below)
//! ```

use uuid::{Uuid, uuid};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::TdxError;
use crate::snp::Firmware;

/// Footer table entry: u32 offset from the end of the file to the descriptor.
pub const TDX_METADATA_GUID: Uuid = uuid!("e47a6535-984a-4798-865e-4685a7bf8ec2");

/// `TDX_METADATA_DESCRIPTOR` header, 16 bytes.
#[derive(FromBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct DescriptorHeader {
    signature: [u8; 4], // 0x00 "TDVF"
    length: U32,        // 0x04 header and sections
    version: U32,       // 0x08 = 1
    sections: U32,      // 0x0C number of sections
}
const _: () = assert!(size_of::<DescriptorHeader>() == 16);

/// `TDVF_SECTION`, 32 bytes.
#[derive(FromBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawSection {
    data_offset: U32,      // 0x00 file offset of the raw data
    raw_data_size: U32,    // 0x04 bytes of raw data in the file
    memory_address: U64,   // 0x08 guest-physical base
    memory_data_size: U64, // 0x10 bytes of guest memory
    section_type: U32,     // 0x18 BFV=0 CFV=1 TD_HOB=2 TEMP_MEM=3
    attributes: U32,       // 0x1C bit 0 MR.EXTEND, bit 1 PAGE.AUG
}
const _: () = assert!(size_of::<RawSection>() == 32);

/// Attribute bit: the section's contents are extended into MRTD.
pub const ATTR_MR_EXTEND: u32 = 1 << 0;
/// Attribute bit: the pages are added later with TDH.MEM.PAGE.AUG (not measured).
pub const ATTR_PAGE_AUG: u32 = 1 << 1;

const PAGE: u64 = 4096;

/// Where every section's memory must end: TDVF lays out its firmware
/// volumes below 4 GiB and its TD HOB and temporary memory in low RAM
/// (TDX Virtual Firmware Design Guide, "TDVF memory layout"). Each page
/// is one step of MRTD, so this (and the same bound on the sum of the
/// sections) also bounds the work a crafted firmware can ask for: at most
/// 2^20 pages. Sections extended into MRTD (all of their memory, 16
/// hashes per page) must add up to at most the firmware's length: what is
/// extended is firmware content (the boot firmware volume), and the work
/// stays proportional to the file.
const MEMORY_END: u64 = 1 << 32;

/// Type of a TDVF section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TdvfSectionType {
    /// 0: boot firmware volume (code).
    Bfv,
    /// 1: configuration firmware volume (variables).
    Cfv,
    /// 2: the TD HOB.
    TdHob,
    /// 3: temporary memory.
    TempMem,
}

/// One TDVF section, validated: page aligned, raw data inside the file
/// and no larger than the memory it fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TdvfSection {
    /// File offset of the raw data.
    pub data_offset: u32,
    /// Bytes of raw data in the file (the rest of the memory is zero).
    pub raw_data_size: u32,
    /// Guest-physical base (page aligned).
    pub memory_address: u64,
    /// Bytes of guest memory (whole pages).
    pub memory_data_size: u64,
    /// What it holds.
    pub section_type: TdvfSectionType,
    /// Attribute bits ([`ATTR_MR_EXTEND`], [`ATTR_PAGE_AUG`]).
    pub attributes: u32,
}

impl TdvfSection {
    /// Number of 4 KiB pages.
    pub fn pages(&self) -> u64 {
        self.memory_data_size / PAGE
    }
}

/// The TDVF sections of a firmware image, in descriptor order.
pub fn tdvf_sections(firmware: &[u8]) -> Result<Vec<TdvfSection>, TdxError> {
    let fw = Firmware::parse(firmware).map_err(TdxError::Footer)?;
    if !fw.has_footer_table() {
        return Err(TdxError::NoFooterTable);
    }
    let entry = fw.entry(TDX_METADATA_GUID).ok_or(TdxError::NoTdxMetadata)?;
    let tail = entry
        .len()
        .checked_sub(4)
        .ok_or(TdxError::ShortTdxMetadataEntry(entry.len()))?;
    let offset_from_end = u32::from_le_bytes(entry[tail..].try_into().unwrap());
    let bad = || TdxError::DescriptorOutOfBounds {
        offset_from_end,
        len: firmware.len(),
    };
    let start = firmware
        .len()
        .checked_sub(offset_from_end as usize)
        .ok_or_else(bad)?;
    let (h, _) = DescriptorHeader::read_from_prefix(&firmware[start..]).map_err(|_| bad())?;
    if &h.signature != b"TDVF" {
        return Err(TdxError::BadSignature(h.signature));
    }
    if h.version.get() != 1 {
        return Err(TdxError::BadVersion(h.version.get()));
    }
    let n = h.sections.get() as usize;
    let need = n
        .checked_mul(size_of::<RawSection>())
        .and_then(|s| s.checked_add(size_of::<DescriptorHeader>()));
    let truncated = || TdxError::TruncatedDescriptor {
        sections: h.sections.get(),
        length: h.length.get(),
    };
    let need = need
        .filter(|&need| need <= h.length.get() as usize && start + need <= firmware.len())
        .ok_or_else(truncated)?;
    let (mut total, mut extended) = (0u64, 0u64);
    firmware[start + size_of::<DescriptorHeader>()..start + need]
        .chunks_exact(size_of::<RawSection>())
        .enumerate()
        .map(|(index, raw)| {
            let s = RawSection::read_from_bytes(raw).unwrap();
            let section_type = match s.section_type.get() {
                0 => TdvfSectionType::Bfv,
                1 => TdvfSectionType::Cfv,
                2 => TdvfSectionType::TdHob,
                3 => TdvfSectionType::TempMem,
                t => {
                    return Err(TdxError::UnknownSectionType {
                        index,
                        section_type: t,
                    });
                }
            };
            let sec = TdvfSection {
                data_offset: s.data_offset.get(),
                raw_data_size: s.raw_data_size.get(),
                memory_address: s.memory_address.get(),
                memory_data_size: s.memory_data_size.get(),
                section_type,
                attributes: s.attributes.get(),
            };
            total = total.saturating_add(sec.memory_data_size);
            if sec.attributes & ATTR_MR_EXTEND != 0 {
                extended = extended.saturating_add(sec.memory_data_size);
            }
            let why = if !sec.memory_address.is_multiple_of(PAGE) {
                Some("memory address is not page aligned")
            } else if !sec.memory_data_size.is_multiple_of(PAGE) {
                Some("memory size is not a whole number of pages")
            } else if u64::from(sec.raw_data_size) > sec.memory_data_size {
                Some("raw data is larger than its memory")
            } else if u64::from(sec.data_offset) + u64::from(sec.raw_data_size)
                > firmware.len() as u64
            {
                Some("raw data extends beyond the end of the file")
            } else if sec
                .memory_address
                .checked_add(sec.memory_data_size)
                .is_none_or(|end| end > MEMORY_END)
            {
                Some("memory reaches past 4 GiB")
            } else if total > MEMORY_END {
                Some("the sections add up to more than 4 GiB of memory")
            } else if extended > firmware.len() as u64 {
                Some("the measured (MR.EXTEND) sections add up to more memory than the firmware has bytes")
            } else {
                None
            };
            match why {
                Some(why) => Err(TdxError::BadSection { index, why }),
                None => Ok(sec),
            }
        })
        .collect()
}
