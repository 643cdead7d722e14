//! The kernel as RTMR1 sees it: QEMU writes its loader fields into the
//! bzImage's setup header (Linux `Documentation/arch/x86/boot.rst`) before
//! OVMF measures the image, then OVMF hashes it as a PE/COFF image
//! (Authenticode, SHA-384).
//!
//! Setup header fields written (offsets from the start of the file):
//!
//! ```text
//! 0x020 u16 cmd_line_magic 0xA33F   (protocol < 2.02 only)
//! 0x022 u16 cmd_line_offset         (protocol < 2.02 only)
//! 0x206 u16 version (boot protocol; read)
//! 0x210 u8  type_of_loader = 0xB0   (QEMU)
//! 0x211 u8  loadflags |= 0x80       (CAN_USE_HEAP); bit 0 LOADED_HIGH read
//! 0x218 u32 ramdisk_image           (with an initrd)
//! 0x21C u32 ramdisk_size            (with an initrd)
//! 0x224 u16+ heap_end_ptr (written as u32)
//! 0x228 u32 cmd_line_ptr
//! 0x22C u32 initrd_addr_max (read, protocol 2.03..2.0B)
//! 0x236 u16 xloadflags (read, bit 0x40 as the reference tool tests it)
//! ```

use sha2::{Digest, Sha384};

use super::TdxError;

/// Guest memory the reference tool assumes in its runtime-only mode.
pub const RUNTIME_MEMORY: u64 = 0xB000_0000;

/// Bytes QEMU reserves below the top of low memory for ACPI data.
pub const ACPI_DATA_SIZE: u32 = 0x28000;

fn field<const N: usize>(k: &[u8], offset: usize, what: &'static str) -> Result<[u8; N], TdxError> {
    k.get(offset..offset + N)
        .map(|b| b.try_into().unwrap())
        .ok_or(TdxError::KernelTruncated {
            what,
            offset,
            len: k.len(),
        })
}

fn u16_at(k: &[u8], offset: usize, what: &'static str) -> Result<u16, TdxError> {
    field(k, offset, what).map(u16::from_le_bytes)
}

fn u32_at(k: &[u8], offset: usize, what: &'static str) -> Result<u32, TdxError> {
    field(k, offset, what).map(u32::from_le_bytes)
}

/// The bzImage with the setup-header fields QEMU's x86 direct-boot loader
/// writes, for an initrd of `initrd_size` bytes (0 = none) and `memory`
/// bytes of guest RAM.
pub fn qemu_patch(kernel: &[u8], initrd_size: u64, memory: u64) -> Result<Vec<u8>, TdxError> {
    if kernel.len() < 0x1000 {
        return Err(TdxError::KernelTruncated {
            what: "setup header",
            offset: 0x1000,
            len: kernel.len(),
        });
    }
    if &kernel[0x202..0x206] != b"HdrS" {
        return Err(TdxError::NotBzImage);
    }
    let mut k = kernel.to_vec();
    let protocol = u16_at(&k, 0x206, "boot protocol version")?;
    let loaded_high = k[0x211] & 1 != 0;
    let (real, cmd): (u32, u32) = if protocol < 0x200 || !loaded_high {
        (0x9_0000, 0x9_A000)
    } else {
        (0x1_0000, 0x2_0000)
    };
    if protocol >= 0x200 {
        k[0x210] = 0xB0;
    }
    if protocol >= 0x201 {
        k[0x211] |= 0x80;
        k[0x224..0x228].copy_from_slice(&(cmd - real - 0x200).to_le_bytes());
    }
    if protocol >= 0x202 {
        k[0x228..0x22C].copy_from_slice(&cmd.to_le_bytes());
    } else {
        k[0x20..0x22].copy_from_slice(&0xA33Fu16.to_le_bytes());
        k[0x22..0x24].copy_from_slice(&((cmd - real) as u16).to_le_bytes());
    }
    if initrd_size > 0 {
        if protocol < 0x200 {
            return Err(TdxError::ProtocolTooOldForInitrd(protocol));
        }
        let mut initrd_max: u32 = if protocol >= 0x20C {
            if u16_at(&k, 0x236, "xloadflags")? & 0x40 != 0 {
                u32::MAX
            } else {
                0x37FF_FFFF
            }
        } else if protocol >= 0x203 {
            match u32_at(&k, 0x22C, "initrd_addr_max")? {
                0 => 0x37FF_FFFF,
                m => m,
            }
        } else {
            0x37FF_FFFF
        };
        let lowmem: u64 = if memory < 0xB000_0000 {
            0xB000_0000
        } else {
            0x8000_0000
        };
        let below_4g = memory.min(lowmem) as u32;
        let top = below_4g
            .checked_sub(ACPI_DATA_SIZE)
            .filter(|&t| t > 0)
            .ok_or(TdxError::MemoryTooSmall(memory))?;
        if initrd_max >= top {
            initrd_max = top - 1;
        }
        let size = u32::try_from(initrd_size)
            .ok()
            .filter(|&s| s < initrd_max)
            .ok_or(TdxError::InitrdTooLarge {
                size: initrd_size,
                max: initrd_max,
            })?;
        k[0x218..0x21C].copy_from_slice(&((initrd_max - size) & !0xFFF).to_le_bytes());
        k[0x21C..0x220].copy_from_slice(&size.to_le_bytes());
    }
    Ok(k)
}

/// The Authenticode SHA-384 of a PE/COFF image as the reference tool
/// computes it: the headers without the checksum and the certificate-table
/// directory entry; the sections with raw data, by file offset (cut at the
/// end of the file); the data after them, minus the certificate table,
/// only when the image has one; zeros up to a multiple of 8 of the file
/// size.
pub fn authenticode_sha384(pe: &[u8]) -> Result<[u8; 48], TdxError> {
    let len = pe.len();
    let pe_off = u32_at(pe, 0x3C, "PE header offset")?;
    if field::<4>(pe, pe_off as usize, "PE signature")? != *b"PE\0\0" {
        return Err(TdxError::NotPe(pe_off));
    }
    let coff = pe_off as usize + 4;
    let sections = usize::from(u16_at(pe, coff + 2, "NumberOfSections")?);
    let opt_size = usize::from(u16_at(pe, coff + 16, "SizeOfOptionalHeader")?);
    let opt = coff + 20;
    let pe32_plus = u16_at(pe, opt, "optional header magic")? == 0x20B;
    let checksum = opt + 64;
    let cert_dir = opt + if pe32_plus { 112 } else { 96 } + 4 * 8;
    let headers = u32_at(pe, opt + 60, "SizeOfHeaders")? as usize;
    let cert_addr = u32_at(pe, cert_dir, "certificate table entry")?;
    let cert_size = u32_at(pe, cert_dir + 4, "certificate table entry")? as usize;
    if headers > len || headers < cert_dir + 8 {
        return Err(TdxError::KernelTruncated {
            what: "SizeOfHeaders bytes of headers",
            offset: headers,
            len,
        });
    }
    let mut h = Sha384::new();
    h.update(&pe[..checksum]);
    h.update(&pe[checksum + 4..cert_dir]);
    h.update(&pe[cert_dir + 8..headers]);
    let table = opt + opt_size;
    let mut raw = Vec::with_capacity(sections);
    for i in 0..sections {
        let s = table + 40 * i;
        let size = u32_at(pe, s + 16, "SizeOfRawData")? as usize;
        let ptr = u32_at(pe, s + 20, "PointerToRawData")? as usize;
        if size > 0 {
            raw.push((ptr, size));
        }
    }
    raw.sort_unstable();
    let mut hashed = headers;
    for (ptr, size) in raw {
        let end = ptr.saturating_add(size).min(len);
        if ptr < end {
            h.update(&pe[ptr..end]);
        }
        hashed += size;
    }
    if cert_addr > 0 && cert_size > 0 && len > hashed && len - hashed > cert_size {
        h.update(&pe[hashed..len - cert_size]);
    }
    if !len.is_multiple_of(8) {
        h.update(&[0u8; 8][..8 - len % 8]);
    }
    Ok(h.finalize().into())
}
