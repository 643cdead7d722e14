//! Reading what SEV-SNP measurement needs from an OVMF image: the GUIDed
//! footer table at the end of the reset vector and the SEV metadata it
//! points to (OVMF `OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm` and
//! `X64/OvmfSevMetadata.asm`).
//!
//! Footer table layout, read backwards from the end of the file:
//!
//! ```text
//! len-50-(size-18) .. len-50   entries, each `data || u16 len || GUID`
//! len-50                       u16 size (whole table incl. these 18 bytes)
//! len-48                       GUID 96b582de-1fb2-45f7-baea-a366c55a082d
//! len-32 .. len                reset vector
//! ```

use uuid::{Uuid, uuid};
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::SnpError;

/// GUID closing the footer table.
pub const FOOTER_GUID: Uuid = uuid!("96b582de-1fb2-45f7-baea-a366c55a082d");
/// Entry: u32 offset from the end of the file to the `ASEV` metadata.
pub const SEV_METADATA_GUID: Uuid = uuid!("dc886566-984a-4798-a75e-5585a7bf67cc");
/// Entry: u32 reset EIP of the application processors (SEV-ES reset block).
pub const SEV_ES_RESET_BLOCK_GUID: Uuid = uuid!("00f771de-1a7e-4fcb-890e-68c77e2fb44e");
/// Entry: u32 gpa, u32 size of the SEV hashes table.
pub const SEV_HASH_TABLE_GUID: Uuid = uuid!("7255371f-3a3b-4b04-927b-1da6efa8d454");

/// One footer-table entry trailer (and the footer itself), 18 bytes.
#[derive(FromBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct FooterEntry {
    size: U16,      // 0x00 length of the entry, these 18 bytes included
    guid: [u8; 16], // 0x02 GUID, little-endian (bytes_le) form
}
const FOOTER_ENTRY_LEN: usize = size_of::<FooterEntry>();
const _: () = assert!(FOOTER_ENTRY_LEN == 18);

/// The footer GUID ends this many bytes before the end of the file.
const FOOTER_END_FROM_EOF: usize = 32;

/// `OVMF_SEV_METADATA` header, 16 bytes.
#[derive(FromBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct MetadataHeader {
    signature: [u8; 4], // 0x00 "ASEV"
    size: U32,          // 0x04 header and items
    version: U32,       // 0x08 = 1
    num_items: U32,     // 0x0C
}
const _: () = assert!(size_of::<MetadataHeader>() == 16);

/// `OVMF_SEV_METADATA_SECTION_DESC`, 12 bytes.
#[derive(FromBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct SectionDesc {
    gpa: U32,          // 0x0
    size: U32,         // 0x4
    section_type: U32, // 0x8
}
const _: () = assert!(size_of::<SectionDesc>() == 12);

/// Type of an SEV metadata section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionType {
    /// 1: memory the firmware uses before it validates memory (ZERO pages).
    SnpSecMem,
    /// 2: the secrets page.
    SnpSecrets,
    /// 3: the CPUID page.
    Cpuid,
    /// 4: the SVSM calling area (ZERO pages).
    SvsmCaa,
    /// 0x10: the page QEMU fills with the kernel/initrd/cmdline hashes.
    SnpKernelHashes,
}

impl SectionType {
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::SnpSecMem,
            2 => Self::SnpSecrets,
            3 => Self::Cpuid,
            4 => Self::SvsmCaa,
            0x10 => Self::SnpKernelHashes,
            _ => return None,
        })
    }
}

/// One SEV metadata section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    /// Guest-physical start.
    pub gpa: u32,
    /// Size in bytes.
    pub size: u32,
    /// What it holds.
    pub section_type: SectionType,
}

/// What measurement needs from an OVMF image.
#[derive(Debug, Clone)]
pub struct Firmware<'a> {
    data: &'a [u8],
    has_footer: bool,
    table: Vec<(Uuid, &'a [u8])>,
    sections: Option<Vec<Section>>,
}

fn u32_at(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

impl<'a> Firmware<'a> {
    /// Parses the footer table (absent when the footer GUID is not found,
    /// as in `sev-snp-measure`) and, when the table points to one, the SEV
    /// metadata.
    pub fn parse(data: &'a [u8]) -> Result<Self, SnpError> {
        let mut fw = Firmware {
            data,
            has_footer: false,
            table: Vec::new(),
            sections: None,
        };
        let Some(footer_at) = data
            .len()
            .checked_sub(FOOTER_END_FROM_EOF + FOOTER_ENTRY_LEN)
        else {
            return Ok(fw);
        };
        let footer =
            FooterEntry::read_from_bytes(&data[footer_at..footer_at + FOOTER_ENTRY_LEN]).unwrap();
        if footer.guid != FOOTER_GUID.to_bytes_le() {
            return Ok(fw);
        }
        fw.has_footer = true;
        let size = usize::from(footer.size.get());
        let table_len = size
            .checked_sub(FOOTER_ENTRY_LEN)
            .filter(|&n| n <= footer_at)
            .ok_or(SnpError::TruncatedFooterTable {
                size,
                available: footer_at + FOOTER_ENTRY_LEN,
            })?;
        let mut rest = &data[footer_at - table_len..footer_at];
        while rest.len() >= FOOTER_ENTRY_LEN {
            let at = rest.len() - FOOTER_ENTRY_LEN;
            let entry = FooterEntry::read_from_bytes(&rest[at..]).unwrap();
            let guid = Uuid::from_bytes_le(entry.guid);
            let len = usize::from(entry.size.get());
            if len < FOOTER_ENTRY_LEN || len > rest.len() {
                return Err(SnpError::BadFooterEntry {
                    guid,
                    len,
                    available: rest.len(),
                });
            }
            if fw.table.iter().any(|(g, _)| *g == guid) {
                return Err(SnpError::DuplicateFooterEntry(guid));
            }
            fw.table.push((guid, &rest[rest.len() - len..at]));
            rest = &rest[..rest.len() - len];
        }
        if let Some(entry) = fw.entry_u32(SEV_METADATA_GUID, 0)? {
            fw.sections = Some(parse_metadata(data, entry as usize)?);
        }
        Ok(fw)
    }

    /// The whole image.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// True when the footer table GUID was found.
    pub fn has_footer_table(&self) -> bool {
        self.has_footer
    }

    /// The data of a footer-table entry.
    pub fn entry(&self, guid: Uuid) -> Option<&'a [u8]> {
        self.table.iter().find(|(g, _)| *g == guid).map(|(_, d)| *d)
    }

    fn entry_u32(&self, guid: Uuid, index: usize) -> Result<Option<u32>, SnpError> {
        let Some(d) = self.entry(guid) else {
            return Ok(None);
        };
        let need = 4 * (index + 1);
        if d.len() < need {
            return Err(SnpError::ShortFooterEntry {
                guid,
                need,
                len: d.len(),
            });
        }
        Ok(Some(u32_at(&d[4 * index..])))
    }

    /// The SEV metadata sections in file order, when the image has them.
    pub fn sections(&self) -> Option<&[Section]> {
        self.sections.as_deref()
    }

    /// The application processors' reset EIP (SEV-ES reset block).
    pub fn reset_eip(&self) -> Result<Option<u32>, SnpError> {
        self.entry_u32(SEV_ES_RESET_BLOCK_GUID, 0)
    }

    /// The SEV hashes table's guest-physical address.
    pub fn hashes_table_gpa(&self) -> Result<Option<u32>, SnpError> {
        self.entry_u32(SEV_HASH_TABLE_GUID, 0)
    }
}

fn parse_metadata(data: &[u8], offset_from_end: usize) -> Result<Vec<Section>, SnpError> {
    let bad = || SnpError::MetadataOutOfBounds {
        offset_from_end,
        len: data.len(),
    };
    let start = data.len().checked_sub(offset_from_end).ok_or_else(bad)?;
    let (header, _) = MetadataHeader::read_from_prefix(&data[start..]).map_err(|_| bad())?;
    if &header.signature != b"ASEV" {
        return Err(SnpError::BadMetadataSignature(header.signature));
    }
    if header.version.get() != 1 {
        return Err(SnpError::BadMetadataVersion(header.version.get()));
    }
    let size = header.size.get() as usize;
    let items_len = header.num_items.get() as usize * size_of::<SectionDesc>();
    // As the reference: items are read from [start+16, start+size), cut at EOF.
    let end = start.saturating_add(size).min(data.len());
    let items_at = start + size_of::<MetadataHeader>();
    if end < items_at + items_len {
        return Err(SnpError::TruncatedMetadata {
            num_items: header.num_items.get(),
            size: header.size.get(),
        });
    }
    let items = &data[items_at..items_at + items_len];
    items
        .chunks_exact(size_of::<SectionDesc>())
        .enumerate()
        .map(|(index, raw)| {
            let d = SectionDesc::read_from_bytes(raw).unwrap();
            let section_type = SectionType::from_u32(d.section_type.get()).ok_or(
                SnpError::UnknownSectionType {
                    index,
                    section_type: d.section_type.get(),
                },
            )?;
            Ok(Section {
                gpa: d.gpa.get(),
                size: d.size.get(),
                section_type,
            })
        })
        .collect()
}
