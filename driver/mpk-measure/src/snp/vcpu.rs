//! vCPU signatures (CPUID Fn0000_0001_EAX) for the QEMU CPU models that
//! `sev-snp-measure` 0.0.13 knows, placed in each VMSA's RDX.

/// The CPUID signature of a family, model and stepping, as AMD's CPUID
/// specification #25481 ("CPUID Fn0000_0001_EAX Family, Model, Stepping
/// Identifiers") encodes it:
///
/// | bits | field |
/// |---|---|
/// | 27:20 | ExtFamily (family - 0xF when family > 0xF) |
/// | 19:16 | ExtModel (model bits 7:4) |
/// | 11:8 | BaseFamily (min(family, 0xF)) |
/// | 7:4 | BaseModel (model bits 3:0) |
/// | 3:0 | Stepping |
pub fn cpu_signature(family: u32, model: u32, stepping: u32) -> u32 {
    let (family_low, family_high) = if family > 0xF {
        (0xF, (family - 0xF) & 0xFF)
    } else {
        (family, 0)
    };
    (family_high << 20)
        | (((model >> 4) & 0xF) << 16)
        | (family_low << 8)
        | ((model & 0xF) << 4)
        | (stepping & 0xF)
}

/// A QEMU CPU model name accepted by `sev-snp-measure --vcpu-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VcpuType {
    name: &'static str,
    family: u32,
    model: u32,
    stepping: u32,
}

const fn t(name: &'static str, family: u32, model: u32, stepping: u32) -> VcpuType {
    VcpuType {
        name,
        family,
        model,
        stepping,
    }
}

impl VcpuType {
    /// Every name, in `sev-snp-measure`'s order (its `CPU_SIGS` table).
    pub const ALL: [VcpuType; 16] = [
        t("EPYC", 23, 1, 2),
        t("EPYC-v1", 23, 1, 2),
        t("EPYC-v2", 23, 1, 2),
        t("EPYC-IBPB", 23, 1, 2),
        t("EPYC-v3", 23, 1, 2),
        t("EPYC-v4", 23, 1, 2),
        t("EPYC-Rome", 23, 49, 0),
        t("EPYC-Rome-v1", 23, 49, 0),
        t("EPYC-Rome-v2", 23, 49, 0),
        t("EPYC-Rome-v3", 23, 49, 0),
        t("EPYC-Milan", 25, 1, 1),
        t("EPYC-Milan-v1", 25, 1, 1),
        t("EPYC-Milan-v2", 25, 1, 1),
        t("EPYC-Genoa", 25, 17, 0),
        t("EPYC-Genoa-v1", 25, 17, 0),
        t("EPYC-Turin", 26, 0, 0),
    ];

    /// Looks a name up exactly (case-sensitive, as the reference does).
    pub fn from_name(name: &str) -> Option<VcpuType> {
        Self::ALL.into_iter().find(|t| t.name == name)
    }

    /// The QEMU CPU model name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The CPUID signature.
    pub fn signature(&self) -> u32 {
        cpu_signature(self.family, self.model, self.stepping)
    }
}
