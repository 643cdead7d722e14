//! MRTD: the TDX module's SHA-384 over the build of the initial TD memory.
//! Each TDH.MEM.PAGE.ADD and TDH.MR.EXTEND contributes one 128-byte record
//! (Intel TDX Module spec, "MRTD"); an extend is followed by the 256 bytes
//! it measures.
//!
//! ```text
//! 0x00 16  operation, ASCII zero padded: "MEM.PAGE.ADD" or "MR.EXTEND"
//! 0x10  8  u64 gpa (page for an add, 256-byte chunk for an extend)
//! 0x18 104 zero
//! ```

use sha2::{Digest, Sha384};
use zerocopy::little_endian::U64;
use zerocopy::{Immutable, IntoBytes, KnownLayout, Unaligned};

use super::tdvf::{ATTR_MR_EXTEND, ATTR_PAGE_AUG, TdvfSection, tdvf_sections};
use super::{TdxDigest, TdxError};

/// One MRTD record.
#[derive(IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct Record {
    operation: [u8; 16], // 0x00 ASCII, zero padded
    gpa: U64,            // 0x10
    zero: [u8; 104],     // 0x18
}
const _: () = assert!(size_of::<Record>() == 128);

const PAGE: usize = 4096;
const CHUNK: usize = 256;

fn record(op: &[u8], gpa: u64) -> Record {
    let mut operation = [0; 16];
    operation[..op.len()].copy_from_slice(op);
    Record {
        operation,
        gpa: U64::new(gpa),
        zero: [0; 104],
    }
}

/// In which order the host adds and extends the pages of a TDVF section;
/// it depends on the QEMU/KVM version that launches the TD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MrtdOrder {
    /// Page by page: add a page, then extend its 16 chunks.
    #[default]
    SinglePass,
    /// Per section: add every page, then extend every page.
    TwoPass,
}

struct Mrtd<'a> {
    h: Sha384,
    firmware: &'a [u8],
}

impl Mrtd<'_> {
    fn add(&mut self, gpa: u64) {
        self.h.update(record(b"MEM.PAGE.ADD", gpa).as_bytes());
    }

    /// Extends page `page` of section `s`; memory past the raw data is zero.
    fn extend(&mut self, s: &TdvfSection, page: u64) {
        let base = s.memory_address + page * PAGE as u64;
        for c in 0..PAGE / CHUNK {
            self.h
                .update(record(b"MR.EXTEND", base + (c * CHUNK) as u64).as_bytes());
            let rel = page as usize * PAGE + c * CHUNK;
            let raw = s.raw_data_size as usize;
            let mut chunk = [0u8; CHUNK];
            if rel < raw {
                let n = (raw - rel).min(CHUNK);
                let at = s.data_offset as usize + rel;
                chunk[..n].copy_from_slice(&self.firmware[at..at + n]);
            }
            self.h.update(chunk);
        }
    }
}

/// MRTD of a TD launched from this TDVF image.
pub fn mrtd(firmware: &[u8], order: MrtdOrder) -> Result<TdxDigest, TdxError> {
    let sections = tdvf_sections(firmware)?;
    let mut m = Mrtd {
        h: Sha384::new(),
        firmware,
    };
    for s in &sections {
        let add = s.attributes & ATTR_PAGE_AUG == 0;
        let extend = s.attributes & ATTR_MR_EXTEND != 0;
        match order {
            MrtdOrder::SinglePass => {
                for p in 0..s.pages() {
                    if add {
                        m.add(s.memory_address + p * PAGE as u64);
                    }
                    if extend {
                        m.extend(s, p);
                    }
                }
            }
            MrtdOrder::TwoPass => {
                if add {
                    (0..s.pages()).for_each(|p| m.add(s.memory_address + p * PAGE as u64));
                }
                if extend {
                    (0..s.pages()).for_each(|p| m.extend(s, p));
                }
            }
        }
    }
    Ok(TdxDigest(m.h.finalize().into()))
}
