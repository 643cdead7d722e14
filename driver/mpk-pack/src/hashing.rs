//! Whole-file SHA-256 of every scanned file (used where the contents are
//! not streamed through the native writer, e.g. `--backend tools`).

use anyhow::{Context, Result};
use mpk_erofs::{NodeId, NodeKind};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

use crate::scan::Scan;

/// SHA-256 of each file node's contents, read in 1 MiB chunks.
pub fn file_sha256s(scan: &Scan) -> Result<HashMap<NodeId, [u8; 32]>> {
    let mut out = HashMap::new();
    for i in 0..scan.tree.len() {
        let id = NodeId(i);
        if let NodeKind::File { .. } = scan.tree.node(id).kind {
            let src = scan.source(id);
            let mut f = std::fs::File::open(&src.path)
                .with_context(|| format!("cannot open `{}`", src.path.display()))?;
            let mut h = Sha256::new();
            std::io::copy(&mut f, &mut h)
                .with_context(|| format!("cannot read `{}`", src.path.display()))?;
            out.insert(id, h.finalize().into());
        }
    }
    Ok(out)
}
