//! Synthetic OVMF images for tests: pseudo-random pages ending in an OVMF
//! footer table (SEV metadata, SEV-ES reset block, SEV hashes table and
//! secret block entries) and an `ASEV` metadata block, laid out as in
//! OvmfPkg's ResetVectorVtf0.asm / OvmfSevMetadata.asm.

/// Section types of the SEV metadata.
pub const SEC_MEM: u32 = 1;
/// The secrets page.
pub const SECRETS: u32 = 2;
/// The CPUID page.
pub const CPUID: u32 = 3;
/// The SVSM calling area.
pub const SVSM_CAA: u32 = 4;
/// The kernel-hashes page.
pub const KERNEL_HASHES: u32 = 0x10;

const FOOTER: &str = "96b582de-1fb2-45f7-baea-a366c55a082d";
const METADATA: &str = "dc886566-984a-4798-a75e-5585a7bf67cc";
const RESET: &str = "00f771de-1a7e-4fcb-890e-68c77e2fb44e";
const HASHES: &str = "7255371f-3a3b-4b04-927b-1da6efa8d454";
const SECRET: &str = "4c2eb361-7d9b-4cc3-8081-127c90d3d294";

/// The little-endian (`bytes_le`) form of a GUID string.
pub fn guid_le(s: &str) -> [u8; 16] {
    let h: Vec<u8> = s
        .split('-')
        .flat_map(|p| {
            (0..p.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&p[i..i + 2], 16).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut b = [0u8; 16];
    b.copy_from_slice(&h);
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

/// What to put in a synthetic image.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Size in 4 KiB pages (at least 1).
    pub pages: usize,
    /// Seed of the filler bytes.
    pub seed: u64,
    /// SEV metadata sections (gpa, size, type), in file order; `None`
    /// leaves out the metadata entry.
    pub sections: Option<Vec<(u32, u32, u32)>>,
    /// AP reset EIP (the SEV-ES reset block entry), if any.
    pub reset_eip: Option<u32>,
    /// SEV hashes table (gpa, size), if any.
    pub hashes_table: Option<(u32, u32)>,
    /// Whether to write the footer GUID at all.
    pub footer: bool,
}

impl Spec {
    /// An AmdSev-like layout: every section type, SECRETS/CPUID/SVSM_CAA
    /// and the hashes page in the order OVMF declares them.
    pub fn amdsev(pages: usize, seed: u64) -> Spec {
        Spec {
            pages,
            seed,
            sections: Some(vec![
                (0x80_0000, 0x9000, SEC_MEM),
                (0x80_9000, 0x2000, SEC_MEM),
                (0x80_D000, 0x1000, SECRETS),
                (0x80_E000, 0x1000, CPUID),
                (0x80_F000, 0x1000, SVSM_CAA),
                (0x81_1000, 0xF000, SEC_MEM),
                (0x81_0000, 0x1000, KERNEL_HASHES),
            ]),
            reset_eip: Some(0x0080_B004),
            hashes_table: Some((0x0081_0C00, 0x400)),
            footer: true,
        }
    }

    /// Kernel-hashes section first, the table at the start of its page,
    /// another AP reset EIP, an SVSM calling area last (16 pages).
    pub fn reordered() -> Spec {
        let mut s = Spec::amdsev(16, 2);
        s.sections = Some(vec![
            (0x81_0000, 0x1000, KERNEL_HASHES),
            (0x80_0000, 0x3000, SEC_MEM),
            (0x80_E000, 0x1000, CPUID),
            (0x80_D000, 0x1000, SECRETS),
            (0x82_0000, 0x2000, SVSM_CAA),
        ]);
        s.hashes_table = Some((0x81_0000, 0x400));
        s.reset_eip = Some(0x0100_0A30);
        s
    }

    /// SEV metadata without a kernel-hashes section and no hashes table, as
    /// in Debian bookworm's OVMF.fd (32 pages).
    pub fn without_kernel_hashes() -> Spec {
        let mut s = Spec::amdsev(32, 3);
        s.sections
            .as_mut()
            .unwrap()
            .retain(|x| x.2 != KERNEL_HASHES);
        s.hashes_table = None;
        s
    }
}

/// Builds the image.
pub fn build(spec: &Spec) -> Vec<u8> {
    let len = spec.pages * 4096;
    let mut data = vec![0u8; len];
    let mut x = spec.seed ^ 0x9E37_79B9_7F4A_7C15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    if !spec.footer {
        return data;
    }
    let mut entries: Vec<(Vec<u8>, &str)> = Vec::new();
    // The metadata block sits 2 KiB before the end (far from the table).
    let meta_from_end = 2048usize;
    if let Some(sections) = &spec.sections {
        let mut m = Vec::new();
        m.extend_from_slice(b"ASEV");
        m.extend_from_slice(&((16 + 12 * sections.len()) as u32).to_le_bytes());
        m.extend_from_slice(&1u32.to_le_bytes());
        m.extend_from_slice(&(sections.len() as u32).to_le_bytes());
        for (gpa, size, ty) in sections {
            for v in [gpa, size, ty] {
                m.extend_from_slice(&v.to_le_bytes());
            }
        }
        let at = len - meta_from_end;
        data[at..at + m.len()].copy_from_slice(&m);
        entries.push(((meta_from_end as u32).to_le_bytes().to_vec(), METADATA));
    }
    let mut secret = 0x80_D000u32.to_le_bytes().to_vec();
    secret.extend_from_slice(&0x1000u32.to_le_bytes());
    entries.push((secret, SECRET));
    if let Some((gpa, size)) = spec.hashes_table {
        let mut d = gpa.to_le_bytes().to_vec();
        d.extend_from_slice(&size.to_le_bytes());
        entries.push((d, HASHES));
    }
    if let Some(eip) = spec.reset_eip {
        entries.push((eip.to_le_bytes().to_vec(), RESET));
    }
    let mut table = Vec::new();
    for (d, guid) in &entries {
        table.extend_from_slice(d);
        table.extend_from_slice(&((d.len() + 18) as u16).to_le_bytes());
        table.extend_from_slice(&guid_le(guid));
    }
    table.extend_from_slice(&((table.len() + 18) as u16).to_le_bytes());
    table.extend_from_slice(&guid_le(FOOTER));
    let end = len - 32;
    data[end - table.len()..end].copy_from_slice(&table);
    data
}

/// Overwrites the footer's u16 size field.
pub fn set_footer_size(data: &mut [u8], size: u16) {
    let at = data.len() - 50;
    data[at..at + 2].copy_from_slice(&size.to_le_bytes());
}
