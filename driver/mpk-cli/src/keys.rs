//! Master keys on the host: key files are read here and only here, into a
//! zeroized buffer, after the process made itself non-dumpable. Key bytes
//! never reach an error message or the output: errors name the key file
//! and its length only.

use anyhow::{Result, anyhow, bail};
use camino::Utf8Path;
use mpk_crypt::MasterKey;
use std::fs::File;
use zeroize::Zeroizing;

/// Makes this process non-dumpable before any key byte is in memory: no
/// core dump (and no ptrace by other users) can carry key material.
pub fn no_core_dumps() -> Result<()> {
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| anyhow!("cannot disable core dumps before handling a key: {e}"))
}

/// Reads a master key file: exactly 64 bytes. The bytes are read into one
/// fixed, zeroized buffer (no growing `Vec` leaves copies behind).
pub fn read_master_key(path: &Utf8Path) -> Result<MasterKey> {
    use std::io::Read;
    no_core_dumps()?;
    let mut f = File::open(path).map_err(|e| anyhow!("cannot read the key file `{path}`: {e}"))?;
    let mut buf = Zeroizing::new([0u8; mpk_crypt::key::KEY_LEN + 1]);
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => bail!("cannot read the key file `{path}`: {e}"),
        }
    }
    if n > mpk_crypt::key::KEY_LEN {
        let len = f.metadata().map(|m| m.len()).unwrap_or(n as u64);
        bail!(
            "key file `{path}`: a master key must be exactly {} bytes, this file has {len}",
            mpk_crypt::key::KEY_LEN
        );
    }
    MasterKey::from_bytes(&buf[..n]).map_err(|e| anyhow!("key file `{path}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_a_key_makes_the_process_non_dumpable() {
        let dir = tempfile::tempdir().unwrap();
        let path = camino::Utf8PathBuf::from_path_buf(dir.path().join("k")).unwrap();
        std::fs::write(&path, [9u8; mpk_crypt::key::KEY_LEN]).unwrap();
        nix::sys::prctl::set_dumpable(true).unwrap();
        read_master_key(&path).unwrap();
        assert!(
            !nix::sys::prctl::get_dumpable().unwrap(),
            "a process holding a master key must not be dumpable"
        );
    }
}
