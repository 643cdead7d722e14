//! The hashes the Hub publishes: the git blob SHA-1 of a file (the tree's
//! `oid` for regular files), the Git LFS pointer whose blob SHA-1 is the
//! `oid` of an LFS file, and SHA-256 (the LFS `oid`, and the plain hash a
//! lock records for every file).

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The git blob SHA-1 of `data`: SHA-1 over `"blob <len>\0"` then the bytes.
pub fn git_blob_sha1(data: &[u8]) -> String {
    let mut h = GitBlobHasher::new(data.len() as u64);
    h.update(data);
    h.finish()
}

/// The Git LFS pointer file of a content with this SHA-256 and size.
pub fn lfs_pointer(sha256_hex: &str, size: u64) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256_hex}\nsize {size}\n")
}

/// Streaming git blob SHA-1; the length must be known up front.
#[derive(Debug, Clone)]
pub struct GitBlobHasher(Sha1);

impl GitBlobHasher {
    /// Starts a blob of `len` bytes.
    pub fn new(len: u64) -> Self {
        let mut h = Sha1::new();
        h.update(format!("blob {len}\0").as_bytes());
        Self(h)
    }
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// Lowercase hex digest.
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// True for `n` lowercase hex digits (mpk-model's rule).
pub use mpk_model::names::is_lower_hex as is_hex;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // hub.md: "Hello, World!" → b45ef6fe…; `git hash-object` of an empty file.
        assert!(git_blob_sha1(b"Hello, World!").starts_with("b45ef6fe"));
        assert_eq!(
            git_blob_sha1(b""),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
    }
}
