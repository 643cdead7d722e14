//! The pack schemas: which encoder (mkfs.erofs version) an image is
//! byte-identical to. The schema is part of the commitment (a reference
//! does not name it), so it is chosen when packing and recorded in the
//! report and the manifest; verification never needs it.
//!
//! Both are Tinfoil Modelwrap's (its `schema.go`): the same dm-verity
//! parameters and reference string, different EROFS layouts.

use serde::Serialize;

/// A pack schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum Schema {
    /// Modelwrap schema 1: erofs-utils 1.5 (`--all-root -T0 -U<uuid>`),
    /// cryptsetup 2.6.1. The default.
    #[default]
    #[serde(rename = "modelwrap-v1")]
    ModelwrapV1,
    /// Modelwrap schema 2: erofs-utils 1.8.6 (`--all-root -T0 -U<uuid>
    /// -b4096 --workers=<cpus>`; the worker count never changes the bytes),
    /// the same verity (cryptsetup 2.7.5 in Modelwrap's image; 2.6.1 gives
    /// the same bytes).
    #[serde(rename = "modelwrap-v2")]
    ModelwrapV2,
}

impl Schema {
    /// Every schema, in the order `reproduce --schema auto` tries them.
    pub const ALL: [Schema; 2] = [Schema::ModelwrapV1, Schema::ModelwrapV2];

    /// The name on the command line, in reports and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Schema::ModelwrapV1 => "modelwrap-v1",
            Schema::ModelwrapV2 => "modelwrap-v2",
        }
    }

    /// The EROFS layout model.
    pub fn mkfs(self) -> mpk_erofs::Mkfs {
        match self {
            Schema::ModelwrapV1 => mpk_erofs::Mkfs::V1_5,
            Schema::ModelwrapV2 => mpk_erofs::Mkfs::V1_8_6,
        }
    }
}

impl std::fmt::Display for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Schema {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| anyhow::anyhow!("unknown schema `{s}` (modelwrap-v1 or modelwrap-v2)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_serialize_as_names() {
        for s in Schema::ALL {
            assert_eq!(s.name().parse::<Schema>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        assert!("modelwrap-v3".parse::<Schema>().is_err());
        assert_eq!(Schema::default(), Schema::ModelwrapV1);
    }
}
