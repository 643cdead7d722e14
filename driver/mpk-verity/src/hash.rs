//! Salted block hashing: format 1 digests are `SHA256(salt || block)`.

use sha2::{Digest, Sha256};

use crate::{BLOCK, DIGEST};

/// A sha256 state that has already absorbed the salt.
///
/// Hashing a block clones this prefix state, so the salt is absorbed once
/// rather than per block. `Hasher` is cheap to clone and `Sync`, so one
/// instance can be shared by threads hashing blocks in parallel.
#[derive(Clone)]
pub struct Hasher {
    prefix: Sha256,
}

impl Hasher {
    /// A hasher for `salt` (any length; the 256-byte limit of the on-disk
    /// format is enforced by [`crate::TreeBuilder`] and [`crate::superblock`]).
    pub fn new(salt: &[u8]) -> Self {
        let mut prefix = Sha256::new();
        prefix.update(salt);
        Self { prefix }
    }

    /// `SHA256(salt || block)`. `block` is normally one 4096-byte data or
    /// hash block, but any length is hashed as given.
    pub fn hash(&self, block: &[u8]) -> [u8; DIGEST] {
        let mut h = self.prefix.clone();
        h.update(block);
        h.finalize().into()
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

/// `SHA256(salt || block)`: the digest of one data or hash block.
pub fn hash_block(salt: &[u8], block: &[u8; BLOCK]) -> [u8; DIGEST] {
    Hasher::new(salt).hash(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_state_equals_one_shot() {
        let salt = [7u8; 33];
        let block = [0xa5u8; BLOCK];
        let mut one = Sha256::new();
        one.update(salt);
        one.update(block);
        let expect: [u8; 32] = one.finalize().into();
        assert_eq!(hash_block(&salt, &block), expect);
        let h = Hasher::new(&salt);
        assert_eq!(h.hash(&block), expect);
        // The prefix state is not consumed by hashing.
        assert_eq!(h.hash(&block), expect);
    }

    #[test]
    fn empty_salt_is_plain_sha256() {
        let block = [0u8; BLOCK];
        let expect: [u8; 32] = Sha256::digest(block).into();
        assert_eq!(hash_block(&[], &block), expect);
    }
}
