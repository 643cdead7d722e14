//! Hashing outside the pack pipeline: the leaf digests of a run of
//! contiguous blocks ([`hash_blocks`], the one read → hash loop of `verify`
//! and `verity format`), and the whole-file SHA-256 of every scanned file
//! (where contents are not streamed through the native writer, e.g.
//! `--backend tools`). The pack pipeline (`pipeline`) has its own staged
//! loop, because it reads many files into each batch and writes as it
//! hashes.

use anyhow::{Context, Result};
use mpk_erofs::{NodeId, NodeKind};
use mpk_verity::{BLOCK, DIGEST, Hasher};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

use crate::scan::Scan;

/// Reads `blocks` 4096-byte blocks through `read(buf, first_block)` in
/// chunks of at most `chunk_blocks`, hashes each chunk with `hasher` on
/// all cores of the current rayon pool while the next chunk is read, and
/// hands each chunk's digests, in order, to `sink(first_block, digests)`.
/// Memory: two chunk buffers and one chunk of digests.
pub fn hash_blocks(
    blocks: u64,
    chunk_blocks: u64,
    hasher: &Hasher,
    mut read: impl FnMut(&mut Vec<u8>, u64) -> Result<()> + Send,
    mut sink: impl FnMut(u64, &[[u8; DIGEST]]) -> Result<()>,
) -> Result<()> {
    let fill = |read: &mut dyn FnMut(&mut Vec<u8>, u64) -> Result<()>,
                buf: &mut Vec<u8>,
                first: u64|
     -> Result<()> {
        let n = chunk_blocks.min(blocks - first);
        buf.resize(n as usize * BLOCK, 0);
        read(buf, first)
    };
    let (mut cur, mut next) = (Vec::new(), Vec::new());
    let mut digests: Vec<[u8; DIGEST]> = Vec::new();
    if blocks == 0 {
        return Ok(());
    }
    fill(&mut read, &mut cur, 0)?;
    let mut pos = 0u64;
    while pos < blocks {
        let after = pos + (cur.len() / BLOCK) as u64;
        // Read the next chunk while this one is hashed on the other threads.
        let (got, ()) = rayon::join(
            || {
                if after < blocks {
                    fill(&mut read, &mut next, after)
                } else {
                    Ok(())
                }
            },
            || {
                cur.par_chunks_exact(BLOCK)
                    .map(|b| hasher.hash(b))
                    .collect_into_vec(&mut digests)
            },
        );
        got?;
        sink(pos, &digests)?;
        std::mem::swap(&mut cur, &mut next);
        pos = after;
    }
    Ok(())
}

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
