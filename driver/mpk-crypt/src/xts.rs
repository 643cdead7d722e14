//! AES-256-XTS per 4096-byte sector, as dm-crypt `aes-xts-plain64` with
//! `sector_size:4096` (no `iv_large_sectors`): the tweak of the sector at
//! payload byte offset `o` is the little-endian 128-bit number `o / 512`
//! (so it advances by 8 per sector). Identical to OpenSSL `aes-256-xts`
//! with that tweak as the IV.

use aes::Aes256;
use aes::cipher::KeyInit;
use xts_mode::Xts128;

use crate::{CRYPT_SECTOR, DmCryptKey, Error, LBA};

/// Encrypts and decrypts whole 4096-byte sectors of one payload.
pub struct SectorCipher(Xts128<Aes256>);

impl std::fmt::Debug for SectorCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SectorCipher(<redacted>)")
    }
}

/// The XTS tweak of the 4096-byte sector at payload byte offset `offset`.
pub fn tweak(offset: u64) -> [u8; 16] {
    u128::from(offset / LBA).to_le_bytes()
}

impl SectorCipher {
    /// A cipher keyed with the 512-bit dm-crypt key (first half: data key,
    /// second half: tweak key, as dm-crypt and OpenSSL split it).
    pub fn new(key: &DmCryptKey) -> Self {
        let k = key.expose();
        let c1 = Aes256::new_from_slice(&k[..32]).expect("32-byte key");
        let c2 = Aes256::new_from_slice(&k[32..]).expect("32-byte key");
        Self(Xts128::new(c1, c2))
    }

    fn check(buf: &[u8], offset: u64) -> Result<(), Error> {
        if !buf.len().is_multiple_of(CRYPT_SECTOR) || !offset.is_multiple_of(CRYPT_SECTOR as u64) {
            return Err(Error::Unaligned {
                len: buf.len(),
                offset,
            });
        }
        Ok(())
    }

    /// Encrypts `buf` in place; `offset` is its byte offset in the payload
    /// (partition). Both must be whole 4096-byte sectors.
    pub fn encrypt(&self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        Self::check(buf, offset)?;
        for (i, s) in buf.chunks_exact_mut(CRYPT_SECTOR).enumerate() {
            self.0
                .encrypt_sector(s, tweak(offset + (i * CRYPT_SECTOR) as u64));
        }
        Ok(())
    }

    /// Decrypts `buf` in place; same rules as [`SectorCipher::encrypt`].
    pub fn decrypt(&self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        Self::check(buf, offset)?;
        for (i, s) in buf.chunks_exact_mut(CRYPT_SECTOR).enumerate() {
            self.0
                .decrypt_sector(s, tweak(offset + (i * CRYPT_SECTOR) as u64));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tweak_counts_512_byte_sectors() {
        assert_eq!(tweak(0), [0; 16]);
        let mut t = [0u8; 16];
        t[0] = 8;
        assert_eq!(tweak(4096), t);
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert_eq!(tweak(1 << 49), t);
    }

    #[test]
    fn roundtrip_and_alignment() {
        let key = crate::MasterKey::from_bytes(&[7; 64])
            .unwrap()
            .derive(&[1; 32], &uuid::Uuid::nil());
        let c = SectorCipher::new(&key);
        let plain: Vec<u8> = (0..3 * CRYPT_SECTOR).map(|i| (i % 251) as u8).collect();
        let mut buf = plain.clone();
        c.encrypt(&mut buf, 8192).unwrap();
        assert!(buf != plain);
        // Same plaintext at another offset encrypts differently.
        let mut other = plain.clone();
        c.encrypt(&mut other, 0).unwrap();
        assert!(buf[..CRYPT_SECTOR] != other[..CRYPT_SECTOR]);
        c.decrypt(&mut buf, 8192).unwrap();
        assert!(buf == plain);
        assert!(c.encrypt(&mut buf[..100], 0).is_err());
        assert!(c.encrypt(&mut buf[..4096], 512).is_err());
    }
}
