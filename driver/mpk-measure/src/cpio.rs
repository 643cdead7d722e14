//! A reproducible initrd writer: cpio "newc" (`070701`), the format the
//! kernel unpacks into its initial rootfs.
//!
//! Reproducible by construction: entries are emitted sorted by path
//! (parents before children), every mtime is 0, owners are root (0:0),
//! inode numbers count up from 1 in that order, and no host metadata is
//! read. The same entries always give the same bytes, so a third party can
//! recompute the initrd's hash.

use std::collections::BTreeMap;
use thiserror::Error;

/// Why an entry was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CpioError {
    /// Empty, absolute, `.`/`..` or empty components, or a NUL.
    #[error("invalid initrd path `{0}`: use a relative path without `.`, `..` or empty parts")]
    BadPath(String),
    /// The path (or one of its parents) is already a different entry.
    #[error("initrd path `{0}` conflicts with an existing entry")]
    Conflict(String),
    /// newc records sizes in 32 bits.
    #[error("initrd file `{0}` is {1} bytes; cpio newc holds at most 4 GiB - 1 per file")]
    TooLarge(String, u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File(Vec<u8>),
    CharDev(u32, u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: Kind,
    perm: u32,
}

/// An initrd under construction.
#[derive(Debug, Default, Clone)]
pub struct Initrd {
    entries: BTreeMap<String, Entry>,
}

fn check_path(path: &str) -> Result<(), CpioError> {
    if path.is_empty()
        || path.contains('\0')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(CpioError::BadPath(path.to_string()));
    }
    Ok(())
}

impl Initrd {
    /// An empty initrd.
    pub fn new() -> Self {
        Self::default()
    }

    fn insert(&mut self, path: &str, e: Entry) -> Result<(), CpioError> {
        check_path(path)?;
        // Parents: directories 0755, created as needed.
        let mut parent = String::new();
        for comp in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .expect("non-empty")
            .1
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(comp);
            match self.entries.get(&parent) {
                None => {
                    self.entries.insert(
                        parent.clone(),
                        Entry {
                            kind: Kind::Dir,
                            perm: 0o755,
                        },
                    );
                }
                Some(Entry {
                    kind: Kind::Dir, ..
                }) => {}
                Some(_) => return Err(CpioError::Conflict(parent)),
            }
        }
        match self.entries.get(path) {
            None => {}
            Some(old) if old.kind == Kind::Dir && e.kind == Kind::Dir => {}
            Some(_) => return Err(CpioError::Conflict(path.to_string())),
        }
        self.entries.insert(path.to_string(), e);
        Ok(())
    }

    /// Adds a directory (mode 0755).
    pub fn dir(&mut self, path: &str) -> Result<(), CpioError> {
        self.insert(
            path,
            Entry {
                kind: Kind::Dir,
                perm: 0o755,
            },
        )
    }

    /// Adds a regular file with permission bits `perm` (e.g. 0o755).
    pub fn file(&mut self, path: &str, perm: u32, data: Vec<u8>) -> Result<(), CpioError> {
        if u32::try_from(data.len()).is_err() {
            return Err(CpioError::TooLarge(path.to_string(), data.len() as u64));
        }
        self.insert(
            path,
            Entry {
                kind: Kind::File(data),
                perm: perm & 0o7777,
            },
        )
    }

    /// Adds a character device node.
    pub fn char_dev(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.insert(
            path,
            Entry {
                kind: Kind::CharDev(major, minor),
                perm: perm & 0o7777,
            },
        )
    }

    /// The archive bytes, ending with the `TRAILER!!!` entry.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (path, e)) in self.entries.iter().enumerate() {
            let (fmt, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match &e.kind {
                Kind::Dir => (0o040000, 2, &[], (0, 0)),
                Kind::File(d) => (0o100000, 1, d, (0, 0)),
                Kind::CharDev(ma, mi) => (0o020000, 1, &[], (*ma, *mi)),
            };
            header(
                &mut out,
                i as u32 + 1,
                fmt | e.perm,
                nlink,
                data.len() as u32,
                rdev,
                path,
            );
            out.extend_from_slice(data);
            pad4(&mut out);
        }
        header(&mut out, 0, 0, 1, 0, (0, 0), "TRAILER!!!");
        out
    }
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn header(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
    name: &str,
) {
    out.extend_from_slice(b"070701");
    // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    for v in [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        size,
        0,
        0,
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0,
    ] {
        out.extend_from_slice(format!("{v:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_exact() {
        let mut i = Initrd::new();
        i.file("init", 0o755, b"hi".to_vec()).unwrap();
        let b = i.to_bytes();
        let mut want = Vec::new();
        want.extend_from_slice(b"070701");
        want.extend_from_slice(
            b"00000001000081ed0000000000000000000000010000000000000002000000000000000000000000000000000000000500000000",
        );
        want.extend_from_slice(b"init\0\0hi\0\0");
        want.extend_from_slice(b"070701");
        want.extend_from_slice(
            b"00000000000000000000000000000000000000010000000000000000000000000000000000000000000000000000000b00000000",
        );
        want.extend_from_slice(b"TRAILER!!!\0\0\0\0");
        assert_eq!(String::from_utf8_lossy(&b), String::from_utf8_lossy(&want));
        assert_eq!(b.len() % 4, 0);
    }

    #[test]
    fn order_independent_and_parents_first() {
        let mut a = Initrd::new();
        a.file("lib/modules/b.ko", 0o644, vec![1; 5]).unwrap();
        a.char_dev("dev/console", 0o600, 5, 1).unwrap();
        a.file("init", 0o755, vec![2; 7]).unwrap();
        a.dir("lib").unwrap();
        let mut b = Initrd::new();
        b.dir("lib").unwrap();
        b.file("init", 0o755, vec![2; 7]).unwrap();
        b.char_dev("dev/console", 0o600, 5, 1).unwrap();
        b.file("lib/modules/b.ko", 0o644, vec![1; 5]).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        let names: Vec<&str> = a.entries.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/b.ko"
            ]
        );
    }

    #[test]
    fn refusals() {
        let mut a = Initrd::new();
        for p in ["", "/init", "a//b", "./a", "a/..", "a\0"] {
            assert_eq!(a.dir(p), Err(CpioError::BadPath(p.into())));
        }
        a.file("x", 0o644, vec![]).unwrap();
        assert_eq!(
            a.file("x/y", 0o644, vec![]),
            Err(CpioError::Conflict("x".into()))
        );
        assert_eq!(a.dir("x"), Err(CpioError::Conflict("x".into())));
        assert_eq!(
            a.file("x", 0o644, vec![]),
            Err(CpioError::Conflict("x".into()))
        );
    }

    #[test]
    fn gnu_cpio_lists_it() {
        // Cross-check with GNU cpio: skipped when it is missing, a failure
        // under MPK_REQUIRE_TOOLS=1 (CI installs it).
        let Some(cpio) = mpk_testutil::tool("cpio") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let mut a = Initrd::new();
        a.file("bin/x", 0o755, vec![7; 9]).unwrap();
        a.char_dev("dev/console", 0o600, 5, 1).unwrap();
        let p = dir.path().join("i.cpio");
        std::fs::write(&p, a.to_bytes()).unwrap();
        let out = std::process::Command::new(cpio)
            .args(["-t", "-v", "--quiet", "-F"])
            .arg(&p)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("bin/x"), "{text}");
        assert!(text.contains("crw-------"), "{text}");
    }
}
