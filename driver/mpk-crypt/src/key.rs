//! Key material: the operator's 64-byte master key and the dm-crypt key
//! derived from it with HKDF-SHA256 (IKM = master key, salt =
//! `"<rootHash>_<partuuid>"`, info = `"tinfoil/emwp/dm-crypt-key/v1"`,
//! L = 64). Both are zeroized on drop and never shown by `Debug`.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::Error;

/// Length of a master key and of the derived dm-crypt key (AES-256-XTS
/// takes two 256-bit keys).
pub const KEY_LEN: usize = 64;

/// HKDF `info` of the dm-crypt key.
pub const HKDF_INFO: &[u8] = b"tinfoil/emwp/dm-crypt-key/v1";

/// The operator's master key (64 secret bytes).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; KEY_LEN]);

/// The dm-crypt key of one pack (`aes-xts-plain64`, 512 bits).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DmCryptKey([u8; KEY_LEN]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl std::fmt::Debug for DmCryptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DmCryptKey(<redacted>)")
    }
}

impl MasterKey {
    /// Takes a master key from exactly 64 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let arr: [u8; KEY_LEN] = bytes.try_into().map_err(|_| Error::KeyLength {
            got: bytes.len(),
            want: KEY_LEN,
        })?;
        Ok(Self(arr))
    }

    /// Derives the dm-crypt key of the pack with verity root `root` and
    /// partition GUID `partuuid`.
    pub fn derive(&self, root: &[u8; 32], partuuid: &uuid::Uuid) -> DmCryptKey {
        let salt = format!("{}_{}", crate::hex_lower(root), partuuid.hyphenated());
        let hk = Hkdf::<Sha256>::new(Some(salt.as_bytes()), &self.0);
        let mut out = DmCryptKey([0; KEY_LEN]);
        hk.expand(HKDF_INFO, &mut out.0)
            .expect("64 bytes is a valid HKDF-SHA256 output length");
        out
    }
}

impl DmCryptKey {
    /// The raw key bytes (for a dm-crypt table or a cipher); handle with care.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hkdf_rfc5869_case_1() {
        // RFC 5869 A.1, checks the crate wiring of HKDF-SHA256.
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0u8..=0x0c).collect();
        let info: Vec<u8> = (0xf0u8..=0xf9).collect();
        let mut okm = [0u8; 42];
        Hkdf::<Sha256>::new(Some(&salt), &ikm)
            .expand(&info, &mut okm)
            .unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    #[test]
    fn debug_is_redacted_and_length_checked() {
        let k = MasterKey::from_bytes(&[0xab; 64]).unwrap();
        assert_eq!(format!("{k:?}"), "MasterKey(<redacted>)");
        let d = k.derive(&[0; 32], &uuid::Uuid::nil());
        assert!(!format!("{d:?}").contains("ab"));
        let e = MasterKey::from_bytes(&[0xab; 63]).unwrap_err();
        assert!(!e.to_string().to_lowercase().contains("ab"), "{e}");
    }
}
