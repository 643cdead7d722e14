//! Pure builder of encrypted packs (`.empk`, Modelwrap's "EMWP" format):
//! the plaintext is an ordinary `.mpk` (EROFS + dm-verity), encrypted with
//! raw dm-crypt `aes-xts-plain64` (512-bit key, 4096-byte sectors, IV = the
//! 512-byte sector number) and placed in the single partition of a GPT disk
//! image, byte-compatible with `sgdisk`.
//!
//! - [`key`]: master key, HKDF-SHA256 derivation of the dm-crypt key.
//! - [`xts`]: AES-256-XTS per 4096-byte sector (IEEE 1619, as dm-crypt and
//!   OpenSSL's `aes-256-xts`).
//! - [`gpt`]: the GPT container (protective MBR, headers, entry arrays).
//! - [`layout`]: where the payload sits and how large the image is.
//!
//! No I/O happens here; callers stream the payload through
//! [`xts::SectorCipher`] and write [`layout::Layout::head`] before and
//! [`layout::Layout::tail`] after it.
#![forbid(unsafe_code)]

pub mod gpt;
pub mod key;
pub mod layout;
pub mod xts;

pub use key::{DmCryptKey, MasterKey};
pub use layout::Layout;
pub use xts::SectorCipher;

/// dm-crypt sector size used by encrypted packs.
pub const CRYPT_SECTOR: usize = 4096;

/// Logical (GPT, IV numbering) sector size.
pub const LBA: u64 = 512;

/// Errors of the pure encrypted-pack builder. Never carries key bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A master key of the wrong length.
    #[error("a master key must be exactly {want} bytes, this one has {got}")]
    KeyLength {
        /// Bytes found.
        got: usize,
        /// Bytes required.
        want: usize,
    },
    /// The payload is empty or not a whole number of 4096-byte sectors.
    #[error("the payload is {0} bytes: it must be a positive multiple of 4096")]
    PayloadSize(u64),
    /// The payload is too large for the container.
    #[error("the payload of {0} bytes is too large for a GPT image")]
    TooLarge(u64),
    /// A buffer or offset not aligned to whole 4096-byte sectors.
    #[error("buffer of {len} bytes at payload offset {offset} is not whole 4096-byte sectors")]
    Unaligned {
        /// Buffer length.
        len: usize,
        /// Byte offset in the payload.
        offset: u64,
    },
}

/// The disk GUID: `UUIDv5(NAMESPACE_URL, rootHash + "-emwp-disk")` with
/// `rootHash` the 64 lowercase hex digits of the verity root.
pub fn disk_guid(root: &[u8; 32]) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("{}-emwp-disk", hex_lower(root)).as_bytes(),
    )
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
