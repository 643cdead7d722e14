//! Synthetic TDX inputs for tests: a TDVF image (pseudo-random pages, an
//! OVMF footer table with the TDX metadata entry and a `TDVF` descriptor)
//! and a minimal EFI-stub bzImage (setup header `HdrS` + PE32+ headers).

/// TDVF section types.
pub const BFV: u32 = 0;
/// Configuration firmware volume.
pub const CFV: u32 = 1;
/// TD HOB.
pub const TD_HOB: u32 = 2;
/// Temporary memory.
pub const TEMP_MEM: u32 = 3;
/// Attribute: extend into MRTD.
pub const MR_EXTEND: u32 = 1;
/// Attribute: added with PAGE.AUG (not measured).
pub const PAGE_AUG: u32 = 2;

const FOOTER: &str = "96b582de-1fb2-45f7-baea-a366c55a082d";
const TDX_METADATA: &str = "e47a6535-984a-4798-865e-4685a7bf8ec2";
const TDVF_DESCRIPTOR: &str = "e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae";

/// The little-endian (`bytes_le`) form of a GUID string.
fn guid_le(s: &str) -> [u8; 16] {
    let h: Vec<u8> = (0..s.len())
        .filter(|&i| s.as_bytes()[i] != b'-')
        .collect::<Vec<_>>()
        .chunks(2)
        .map(|c| u8::from_str_radix(&s[c[0]..=c[1]], 16).unwrap())
        .collect();
    let mut b: [u8; 16] = h.try_into().unwrap();
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One section: (data_offset, raw_data_size, memory_address,
/// memory_data_size, type, attributes).
pub type Section = (u32, u32, u64, u64, u32, u32);

/// Sections covering every type and attribute: BFV measured, CFV not
/// extended, TD_HOB and TEMP_MEM with no raw data, a PAGE.AUG section, and
/// an extended section whose raw data is shorter than its memory.
pub fn sections() -> Vec<Section> {
    vec![
        (0x0000, 0x3000, 0xFFFF_D000, 0x3000, BFV, MR_EXTEND),
        (0x3000, 0x1000, 0x0080_0000, 0x1000, CFV, 0),
        (0, 0, 0x0080_9000, 0x2000, TD_HOB, 0),
        (0, 0, 0x0080_B000, 0x3000, TEMP_MEM, 0),
        (0, 0, 0x0090_0000, 0x2000, TEMP_MEM, PAGE_AUG),
        (0x1800, 0x0900, 0x0081_0000, 0x2000, BFV, MR_EXTEND),
    ]
}

/// A TDVF image of `pages` 4 KiB pages with these sections; the descriptor
/// sits 3 KiB before the end.
pub fn tdvf(pages: usize, seed: u64, sections: &[Section]) -> Vec<u8> {
    let len = pages * 4096;
    let mut data = filler(len, seed);
    let desc_from_end = 3072usize;
    let mut d = Vec::new();
    d.extend_from_slice(b"TDVF");
    d.extend_from_slice(&((16 + 32 * sections.len()) as u32).to_le_bytes());
    d.extend_from_slice(&1u32.to_le_bytes());
    d.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for &(off, raw, addr, size, ty, attr) in sections {
        d.extend_from_slice(&off.to_le_bytes());
        d.extend_from_slice(&raw.to_le_bytes());
        d.extend_from_slice(&addr.to_le_bytes());
        d.extend_from_slice(&size.to_le_bytes());
        d.extend_from_slice(&ty.to_le_bytes());
        d.extend_from_slice(&attr.to_le_bytes());
    }
    let at = len - desc_from_end;
    data[at - 16..at].copy_from_slice(&guid_le(TDVF_DESCRIPTOR));
    data[at..at + d.len()].copy_from_slice(&d);
    let mut table = Vec::new();
    table.extend_from_slice(&(desc_from_end as u32).to_le_bytes());
    table.extend_from_slice(&22u16.to_le_bytes());
    table.extend_from_slice(&guid_le(TDX_METADATA));
    table.extend_from_slice(&((table.len() + 18) as u16).to_le_bytes());
    table.extend_from_slice(&guid_le(FOOTER));
    let end = len - 32;
    data[end - table.len()..end].copy_from_slice(&table);
    data
}

/// A minimal EFI-stub bzImage: MZ + PE32+ headers at 0x40, setup header
/// with boot protocol `protocol`, `loadflags` and `xloadflags`, two
/// sections, optionally trailing data and a certificate table.
pub fn bzimage(protocol: u16, loadflags: u8, xloadflags: u16, cert: bool, seed: u64) -> Vec<u8> {
    let body = 0x1000usize;
    let sec = [(0x1000u32, 0x2000u32), (0x3000, 0x0800)];
    let trailing = 0x123usize;
    let cert_len = if cert { 0x40 } else { 0 };
    let len = body + 0x2800 + trailing + cert_len;
    let mut k = filler(len, seed);
    k[..0x1000].fill(0);
    k[0..2].copy_from_slice(b"MZ");
    let pe = 0x40usize;
    k[0x3C..0x40].copy_from_slice(&(pe as u32).to_le_bytes());
    k[pe..pe + 4].copy_from_slice(b"PE\0\0");
    let coff = pe + 4;
    k[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
    k[coff + 2..coff + 4].copy_from_slice(&(sec.len() as u16).to_le_bytes());
    k[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
    let opt = coff + 20;
    k[opt..opt + 2].copy_from_slice(&0x20Bu16.to_le_bytes());
    k[opt + 60..opt + 64].copy_from_slice(&0x1000u32.to_le_bytes()); // SizeOfHeaders
    k[opt + 64..opt + 68].copy_from_slice(&0xDEAD_BEEFu32.to_le_bytes()); // CheckSum
    if cert {
        let dir = opt + 112 + 32;
        k[dir..dir + 4].copy_from_slice(&((len - cert_len) as u32).to_le_bytes());
        k[dir + 4..dir + 8].copy_from_slice(&(cert_len as u32).to_le_bytes());
    }
    let table = opt + 240;
    // Sections listed out of file order, to exercise the sort.
    for (i, &(ptr, size)) in sec.iter().rev().enumerate() {
        let s = table + 40 * i;
        k[s..s + 5].copy_from_slice(b".sect");
        k[s + 16..s + 20].copy_from_slice(&size.to_le_bytes());
        k[s + 20..s + 24].copy_from_slice(&ptr.to_le_bytes());
    }
    assert!(table + 40 * sec.len() <= 0x1F1);
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k[0x206..0x208].copy_from_slice(&protocol.to_le_bytes());
    k[0x211] = loadflags;
    k[0x22C..0x230].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
    k[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
    k
}
