//! The initial VMSA (VM save area) of each vCPU as QEMU/KVM creates it for an
//! SEV-SNP guest. Layout: AMD APM vol. 2, table B-4 "VMSA Layout, State Save
//! Area for SEV-ES" (Linux `struct sev_es_save_area`); only the fields QEMU
//! sets are named, every other byte is zero.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::gctx::PAGE;

/// The reset vector of the boot vCPU.
pub(crate) const BSP_EIP: u32 = 0xFFFF_FFF0;

/// A VMCB segment register (Linux `struct vmcb_seg`), 16 bytes.
#[derive(IntoBytes, FromZeros, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct VmcbSeg {
    selector: U16, // 0x0
    attrib: U16,   // 0x2
    limit: U32,    // 0x4
    base: U64,     // 0x8
}
const _: () = assert!(size_of::<VmcbSeg>() == 16);

impl VmcbSeg {
    fn new(selector: u16, attrib: u16, limit: u32, base: u64) -> Self {
        Self {
            selector: U16::new(selector),
            attrib: U16::new(attrib),
            limit: U32::new(limit),
            base: U64::new(base),
        }
    }
}

/// One VMSA page.
#[derive(IntoBytes, FromZeros, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct Vmsa {
    es: VmcbSeg,               // 0x000
    cs: VmcbSeg,               // 0x010
    ss: VmcbSeg,               // 0x020
    ds: VmcbSeg,               // 0x030
    fs: VmcbSeg,               // 0x040
    gs: VmcbSeg,               // 0x050
    gdtr: VmcbSeg,             // 0x060
    ldtr: VmcbSeg,             // 0x070
    idtr: VmcbSeg,             // 0x080
    tr: VmcbSeg,               // 0x090
    _r0a0: [u8; 0x30],         // 0x0A0 vmpl0..3_ssp, u_cet, reserved, vmpl, cpl, reserved
    efer: U64,                 // 0x0D0
    _r0d8: [u8; 0x70],         // 0x0D8 reserved, xss (0x140)
    cr4: U64,                  // 0x148
    cr3: U64,                  // 0x150
    cr0: U64,                  // 0x158
    dr7: U64,                  // 0x160
    dr6: U64,                  // 0x168
    rflags: U64,               // 0x170
    rip: U64,                  // 0x178
    _r180: [u8; 0xE8],         // 0x180 dr0..3, masks, rsp, ..., cr2, reserved
    g_pat: U64,                // 0x268
    _r270: [u8; 0xA0],         // 0x270 dbgctrl, branch records, pkru, tsc_aux, rcx
    rdx: U64,                  // 0x310
    _r318: [u8; 0x98],         // 0x318 rbx .. r15, guest exit info, nrip
    sev_features: U64,         // 0x3B0
    _r3b8: [u8; 0x30],         // 0x3B8 vintr_ctrl .. event_inj
    xcr0: U64,                 // 0x3E8
    _r3f0: [u8; 0x18],         // 0x3F0 reserved, x87_dp
    mxcsr: U32,                // 0x408
    _r40c: [u8; 4],            // 0x40C x87_ftw, x87_fsw
    x87_fcw: U16,              // 0x410
    _r412: [u8; PAGE - 0x412], // 0x412 to the end of the page
}
const _: () = assert!(size_of::<Vmsa>() == PAGE);

/// The VMSA of a vCPU starting at `eip`, as QEMU sets it (VMM type QEMU of
/// `sev-snp-measure`).
pub(crate) fn qemu_vmsa(eip: u32, vcpu_sig: u32, sev_features: u64) -> [u8; PAGE] {
    let mut v = Vmsa::new_zeroed();
    v.es = VmcbSeg::new(0, 0x93, 0xFFFF, 0);
    v.cs = VmcbSeg::new(0xF000, 0x9B, 0xFFFF, u64::from(eip & 0xFFFF_0000));
    v.ss = VmcbSeg::new(0, 0x93, 0xFFFF, 0);
    v.ds = VmcbSeg::new(0, 0x93, 0xFFFF, 0);
    v.fs = VmcbSeg::new(0, 0x93, 0xFFFF, 0);
    v.gs = VmcbSeg::new(0, 0x93, 0xFFFF, 0);
    v.gdtr = VmcbSeg::new(0, 0, 0xFFFF, 0);
    v.idtr = VmcbSeg::new(0, 0, 0xFFFF, 0);
    v.ldtr = VmcbSeg::new(0, 0x82, 0xFFFF, 0);
    v.tr = VmcbSeg::new(0, 0x8B, 0xFFFF, 0);
    v.efer = U64::new(0x1000); // KVM sets EFER.SVME
    v.cr4 = U64::new(0x40); // KVM sets CR4.MCE
    v.cr0 = U64::new(0x10);
    v.dr7 = U64::new(0x400);
    v.dr6 = U64::new(0xFFFF_0FF0);
    v.rflags = U64::new(0x2);
    v.rip = U64::new(u64::from(eip & 0xFFFF));
    v.g_pat = U64::new(0x0007_0406_0007_0406); // APM vol. 2, A.3
    v.rdx = U64::new(u64::from(vcpu_sig));
    v.sev_features = U64::new(sev_features);
    v.xcr0 = U64::new(0x1);
    v.mxcsr = U32::new(0x1F80);
    v.x87_fcw = U16::new(0x37F);
    let mut page = [0u8; PAGE];
    page.copy_from_slice(v.as_bytes());
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_offsets_match_the_reference_table() {
        let p = qemu_vmsa(0x0080_B004, 0x00A0_0F11, 0x21);
        let u64_at = |o: usize| u64::from_le_bytes(p[o..o + 8].try_into().unwrap());
        assert_eq!(u64_at(0xD0), 0x1000);
        assert_eq!(u64_at(0x148), 0x40);
        assert_eq!(u64_at(0x158), 0x10);
        assert_eq!(u64_at(0x178), 0xB004);
        assert_eq!(u64_at(0x268), 0x0007_0406_0007_0406);
        assert_eq!(u64_at(0x310), 0x00A0_0F11);
        assert_eq!(u64_at(0x3B0), 0x21);
        assert_eq!(u64_at(0x3E8), 1);
        assert_eq!(&p[0x408..0x40C], &0x1F80u32.to_le_bytes());
        assert_eq!(&p[0x410..0x412], &0x37Fu16.to_le_bytes());
        assert_eq!(u64_at(0x18), 0x0080_0000); // cs.base
    }
}
