//! `--schema` of `mpk pack`, `mpk build` and `mpk reproduce` (shared by
//! the command modules, which never import each other).

use clap::ValueEnum;
use mpk_pack::reproduce;

/// The pack schema: which mkfs.erofs the image is byte-identical to
/// (README, "Schemas").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaArg {
    /// Modelwrap schema 1: mkfs.erofs 1.5 (the default).
    ModelwrapV1,
    /// Modelwrap schema 2: mkfs.erofs 1.8.6 with 4096-byte blocks.
    ModelwrapV2,
}

impl From<SchemaArg> for mpk_pack::Schema {
    fn from(s: SchemaArg) -> Self {
        match s {
            SchemaArg::ModelwrapV1 => Self::ModelwrapV1,
            SchemaArg::ModelwrapV2 => Self::ModelwrapV2,
        }
    }
}

/// `mpk reproduce --schema`: one schema, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReproduceSchemaArg {
    /// Modelwrap schema 1: mkfs.erofs 1.5 (the default).
    ModelwrapV1,
    /// Modelwrap schema 2: mkfs.erofs 1.8.6 with 4096-byte blocks.
    ModelwrapV2,
    /// modelwrap-v1, then modelwrap-v2, until one matches.
    Auto,
}

impl From<ReproduceSchemaArg> for reproduce::Schemas {
    fn from(s: ReproduceSchemaArg) -> Self {
        match s {
            ReproduceSchemaArg::ModelwrapV1 => Self::One(SchemaArg::ModelwrapV1.into()),
            ReproduceSchemaArg::ModelwrapV2 => Self::One(SchemaArg::ModelwrapV2.into()),
            ReproduceSchemaArg::Auto => Self::Auto,
        }
    }
}
