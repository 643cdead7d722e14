//! Reading a reference given on the command line: the string itself, or
//! the `.info` file holding it. The grammar is `mpk_model::Reference`'s;
//! this module only bounds and names the file.

use anyhow::{Context, Result, bail};
use mpk_model::Reference;

/// A reference file holds one line of about 120 bytes; anything longer is
/// not one (and is not read further, so `/dev/zero` cannot exhaust memory).
pub const MAX_REFERENCE_FILE: u64 = 512;

/// Parses `arg` as a reference string, or else reads it from the file it
/// names (an `.info` file; one trailing newline is tolerated). The file
/// must be a regular file of at most [`MAX_REFERENCE_FILE`] bytes.
pub fn load(arg: &str) -> Result<Reference> {
    if let Ok(r) = arg.parse() {
        return Ok(r);
    }
    let path = std::path::Path::new(arg);
    if !path.exists() {
        return arg
            .parse::<Reference>()
            .with_context(|| format!("`{arg}` is neither a reference nor an existing .info file"));
    }
    // Regular, bounded, and opened without blocking (a FIFO is refused).
    let bytes = mpk_pack::input::read_regular("reference file", path, MAX_REFERENCE_FILE)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| anyhow::anyhow!("`{arg}` is not UTF-8 text (byte {})", e.valid_up_to()))?;
    let line = text.strip_suffix('\n').unwrap_or(text);
    // Text that is not one short line is not echoed into the error.
    if line.contains('\n') || line.len() > 200 {
        bail!(
            "`{arg}` does not hold a reference: expected one line <64 lowercase hex root>_<hash offset>_<uuid>"
        );
    }
    line.parse::<Reference>()
        .with_context(|| format!("in `{arg}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "17c6605f3becf63a63da37cc6958b2d18f8abc750f9f546b9f57133db40c4326_2142208_905785b4-b198-5ed6-b97d-e7c36a0be1df";

    #[test]
    fn strings_files_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(GOOD).unwrap().to_string(), GOOD);
        let f = dir.path().join("m.info");
        std::fs::write(&f, format!("{GOOD}\n")).unwrap();
        assert_eq!(load(f.to_str().unwrap()).unwrap().to_string(), GOOD);
        // A long file: refused by size, its contents not echoed.
        let big = dir.path().join("big");
        std::fs::write(&big, "secret line\n".repeat(100)).unwrap();
        let e = format!("{:#}", load(big.to_str().unwrap()).unwrap_err());
        assert!(
            e.contains("longer than 512 bytes") && !e.contains("secret"),
            "{e}"
        );
        // Many short lines: not echoed either.
        let lines = dir.path().join("lines");
        std::fs::write(&lines, "secret\n".repeat(20)).unwrap();
        let e = format!("{:#}", load(lines.to_str().unwrap()).unwrap_err());
        assert!(
            e.contains("does not hold a reference") && !e.contains("secret"),
            "{e}"
        );
        // A wrong reference: the field is named.
        std::fs::write(&f, GOOD.replace("_2142208_", "_2142209_")).unwrap();
        let e = format!("{:#}", load(f.to_str().unwrap()).unwrap_err());
        assert!(e.contains("positive multiple of 4096"), "{e}");
        // Not a regular file.
        let e = format!("{:#}", load(dir.path().to_str().unwrap()).unwrap_err());
        assert!(e.contains("not a regular file"), "{e}");
        // A FIFO with no writer is refused at once, not waited on.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = format!("{:#}", load(fifo.to_str().unwrap()).unwrap_err());
        assert!(e.contains("not a regular file"), "{e}");
        let e = format!("{:#}", load("/dev/zero").unwrap_err());
        assert!(e.contains("not a regular file"), "{e}");
        let e = format!("{:#}", load("nope_nope").unwrap_err());
        assert!(e.contains("neither a reference nor an existing"), "{e}");
    }
}
