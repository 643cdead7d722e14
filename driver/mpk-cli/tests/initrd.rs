//! `mpk initrd` (issue 6): the base image's initrd is reproducible (the same
//! inputs give the same bytes, whatever their mtimes and owners), holds
//! exactly /init, /dev/console, the modules under /lib/modules/mpk/ with
//! /etc/mpk/modules in the order given, and the extra files; missing or
//! unsuitable inputs (including a dynamically linked or non-x86-64 init)
//! are refused by name and nothing is written. GNU cpio
//! (Debian package `cpio`) lists the archive; without it that check skips
//! unless `MPK_REQUIRE_TOOLS=1`.

mod common;

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Output;

/// One newc entry: name, mode, uid, gid, mtime, data.
#[derive(Debug)]
struct Entry {
    name: String,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u32,
    data: Vec<u8>,
}

/// A strict newc reader (the trailer is checked and not returned).
fn parse(mut b: &[u8]) -> Vec<Entry> {
    let total = b.len();
    let mut out = Vec::new();
    let field = |h: &[u8], i: usize| {
        u32::from_str_radix(std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).unwrap(), 16).unwrap()
    };
    let pad = |n: usize| (4 - n % 4) % 4;
    loop {
        assert_eq!(&b[..6], b"070701", "magic at {}", total - b.len());
        let h = &b[..110];
        let namesize = field(h, 11) as usize;
        let size = field(h, 6) as usize;
        let name = std::str::from_utf8(&b[110..110 + namesize - 1])
            .unwrap()
            .to_string();
        assert_eq!(b[110 + namesize - 1], 0);
        let start = 110 + namesize + pad(110 + namesize);
        let data = b[start..start + size].to_vec();
        let e = Entry {
            name,
            mode: field(h, 1),
            uid: field(h, 2),
            gid: field(h, 3),
            mtime: field(h, 5),
            data,
        };
        b = &b[start + size + pad(size)..];
        if e.name == "TRAILER!!!" {
            assert!(b.is_empty(), "bytes after the trailer");
            return out;
        }
        out.push(e);
    }
}

fn mpk(args: &[&str]) -> Output {
    common::mpk().args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = mpk(args);
    assert!(
        out.status.success(),
        "mpk {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let out = mpk(args);
    assert!(!out.status.success(), "mpk {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

/// A minimal x86-64 ELF header with `phdrs` program headers of these types
/// (PT_INTERP = 3 makes it dynamically linked).
fn elf(phdrs: &[u32], machine: u16) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    b[0x10..0x12].copy_from_slice(&2u16.to_le_bytes());
    b[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
    b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
    b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    b[0x38..0x3a].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
    for t in phdrs {
        let mut h = vec![0u8; 56];
        h[..4].copy_from_slice(&t.to_le_bytes());
        b.extend(h);
    }
    b.extend_from_slice(b"static init stand-in");
    b
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Inputs {
    dir: tempfile::TempDir,
}

impl Inputs {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let w = |n: &str, d: &[u8]| std::fs::write(dir.path().join(n), d).unwrap();
        w("mpk-init", &elf(&[1, 1], 62));
        w("dynamic-init", &elf(&[6, 3, 1], 62));
        w("arm-init", &elf(&[1], 183));
        w("short-init", &elf(&[1], 62)[..66]);
        w("virtio_blk.ko", b"module virtio_blk");
        w("dm-verity.ko", b"module dm-verity");
        w("erofs.ko", b"module erofs");
        w("agent", b"#!/bin/sh\nexit 0\n");
        w("note.txt", b"hello\n");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("agent"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        Self { dir }
    }
    fn p(&self, n: &str) -> PathBuf {
        self.dir.path().join(n)
    }
    /// `mpk initrd` with modules in `order`, the two extra files, to `out`.
    fn args(&self, order: &[&str], out: &Path) -> Vec<String> {
        let mut a = vec![
            "initrd".to_string(),
            "--init".into(),
            s(&self.p("mpk-init")).into(),
        ];
        for m in order {
            a.push("--module".into());
            a.push(s(&self.p(m)).into());
        }
        a.push("--file".into());
        a.push(format!("{}:/bin/agent", s(&self.p("agent"))));
        a.push("--file".into());
        a.push(format!("{}:etc/note.txt", s(&self.p("note.txt"))));
        a.push("-o".into());
        a.push(s(out).into());
        a
    }
}

fn run(args: &[String]) -> String {
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn reproducible_and_complete() {
    let i = Inputs::new();
    let order = ["virtio_blk.ko", "dm-verity.ko", "erofs.ko"];
    let a = i.p("a.cpio");
    let printed = run(&i.args(&order, &a));
    let bytes = std::fs::read(&a).unwrap();
    assert_eq!(
        printed,
        format!("{}\n", hex::encode(Sha256::digest(&bytes)))
    );

    // Again, after changing every input's mtime and the output folder: the
    // same bytes.
    for n in [
        "mpk-init",
        "virtio_blk.ko",
        "dm-verity.ko",
        "erofs.ko",
        "note.txt",
    ] {
        let d = std::fs::read(i.p(n)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(i.p(n), d).unwrap();
    }
    let sub = i.p("sub");
    std::fs::create_dir(&sub).unwrap();
    let b = sub.join("b.cpio");
    assert_eq!(run(&i.args(&order, &b)), printed);
    assert!(std::fs::read(&b).unwrap() == bytes, "not byte-identical");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&b).unwrap().permissions().mode() & 0o777,
        0o644
    );
    // No temporary file is left beside the outputs.
    let left: Vec<_> = std::fs::read_dir(&sub)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["b.cpio"]);

    let entries = parse(&bytes);
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "bin",
            "bin/agent",
            "dev",
            "dev/console",
            "etc",
            "etc/mpk",
            "etc/mpk/modules",
            "etc/note.txt",
            "init",
            "lib",
            "lib/modules",
            "lib/modules/mpk",
            "lib/modules/mpk/dm-verity.ko",
            "lib/modules/mpk/erofs.ko",
            "lib/modules/mpk/virtio_blk.ko",
        ]
    );
    for e in &entries {
        assert_eq!((e.uid, e.gid, e.mtime), (0, 0, 0), "{}", e.name);
    }
    let get = |n: &str| entries.iter().find(|e| e.name == n).unwrap();
    assert_eq!(get("init").mode, 0o100755);
    assert_eq!(get("init").data, std::fs::read(i.p("mpk-init")).unwrap());
    assert_eq!(get("dev/console").mode, 0o020600);
    assert_eq!(get("bin/agent").mode, 0o100755);
    assert_eq!(get("etc/note.txt").mode, 0o100644);
    assert_eq!(get("etc/note.txt").data, b"hello\n");
    assert_eq!(get("lib/modules/mpk").mode, 0o040755);
    assert_eq!(
        get("lib/modules/mpk/erofs.ko").data,
        std::fs::read(i.p("erofs.ko")).unwrap()
    );
    // The load order is the order given, not the archive's sorted order.
    assert_eq!(
        String::from_utf8(get("etc/mpk/modules").data.clone()).unwrap(),
        "/lib/modules/mpk/virtio_blk.ko\n/lib/modules/mpk/dm-verity.ko\n/lib/modules/mpk/erofs.ko\n"
    );

    // Another order: another list (and so another initrd).
    let c = i.p("c.cpio");
    let other = run(&i.args(&["erofs.ko", "virtio_blk.ko", "dm-verity.ko"], &c));
    assert_ne!(other, printed);
    let entries = parse(&std::fs::read(&c).unwrap());
    let list = entries
        .iter()
        .find(|e| e.name == "etc/mpk/modules")
        .unwrap();
    assert_eq!(
        String::from_utf8(list.data.clone()).unwrap(),
        "/lib/modules/mpk/erofs.ko\n/lib/modules/mpk/virtio_blk.ko\n/lib/modules/mpk/dm-verity.ko\n"
    );

    // No modules: an empty list (everything built into the kernel).
    let d = i.p("d.cpio");
    ok(&["initrd", "--init", s(&i.p("mpk-init")), "-o", s(&d)]);
    let entries = parse(&std::fs::read(&d).unwrap());
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "dev",
            "dev/console",
            "etc",
            "etc/mpk",
            "etc/mpk/modules",
            "init"
        ]
    );
    assert!(entries[4].data.is_empty());
}

#[test]
fn refusals_name_the_input_and_write_nothing() {
    let i = Inputs::new();
    let out = i.p("out.cpio");
    let init = i.p("mpk-init");
    let missing = i.p("no-such.ko");
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec![
                "--init".into(),
                s(&i.p("no-init")).into(),
                "-o".into(),
                s(&out).into(),
            ],
            s(&i.p("no-init")).into(),
        ),
        (
            vec![
                "--init".into(),
                s(&i.p("dynamic-init")).into(),
                "-o".into(),
                s(&out).into(),
            ],
            "is dynamically linked".into(),
        ),
        (
            vec![
                "--init".into(),
                s(&i.p("arm-init")).into(),
                "-o".into(),
                s(&out).into(),
            ],
            "not a 64-bit x86-64 ELF".into(),
        ),
        (
            vec![
                "--init".into(),
                s(&i.p("short-init")).into(),
                "-o".into(),
                s(&out).into(),
            ],
            "truncated ELF program headers".into(),
        ),
        (
            vec![
                "--init".into(),
                s(&init).into(),
                "--module".into(),
                s(&missing).into(),
                "-o".into(),
                s(&out).into(),
            ],
            s(&missing).into(),
        ),
        (
            vec![
                "--init".into(),
                s(&init).into(),
                "--file".into(),
                format!("{}:/x", s(&i.p("gone.txt"))),
                "-o".into(),
                s(&out).into(),
            ],
            s(&i.p("gone.txt")).into(),
        ),
        (
            vec![
                "--init".into(),
                s(&init).into(),
                "--module".into(),
                s(&i.p("erofs.ko.xz")).into(),
                "-o".into(),
                s(&out).into(),
            ],
            "is compressed".into(),
        ),
        (
            vec![
                "--init".into(),
                s(&init).into(),
                "--module".into(),
                s(&i.p("note.txt")).into(),
                "-o".into(),
                s(&out).into(),
            ],
            "not a kernel module".into(),
        ),
        (
            vec![
                "--init".into(),
                s(&init).into(),
                "--module".into(),
                s(&i.p("erofs.ko")).into(),
                "--module".into(),
                s(&i.p("erofs.ko")).into(),
                "-o".into(),
                s(&out).into(),
            ],
            "two modules are named `erofs.ko`".into(),
        ),
        (
            vec![
                "--init".into(),
                s(&init).into(),
                "--file".into(),
                format!("{}:/init", s(&i.p("note.txt"))),
                "-o".into(),
                s(&out).into(),
            ],
            "conflicts".into(),
        ),
        (
            vec![
                "--init".into(),
                s(&init).into(),
                "--file".into(),
                format!("{}:../x", s(&i.p("note.txt"))),
                "-o".into(),
                s(&out).into(),
            ],
            "invalid initrd path".into(),
        ),
        (
            vec![
                "--init".into(),
                s(&init).into(),
                "-o".into(),
                s(&i.p("no-dir/out.cpio")).into(),
            ],
            "no-dir".into(),
        ),
    ];
    for (args, want) in cases {
        let mut a = vec!["initrd"];
        a.extend(args.iter().map(String::as_str));
        let err = fails(&a);
        assert!(err.contains(&want), "{a:?}: `{want}` not in {err}");
        assert!(!out.exists(), "{a:?} wrote the output");
    }
    let left: Vec<_> = std::fs::read_dir(i.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // An existing output is kept unless --force.
    std::fs::write(&out, b"keep").unwrap();
    let err = fails(&["initrd", "--init", s(&init), "-o", s(&out)]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"keep");
    ok(&["initrd", "--init", s(&init), "-o", s(&out), "--force"]);
    assert_eq!(&std::fs::read(&out).unwrap()[..6], b"070701");
}

#[test]
fn gnu_cpio_lists_the_paths() {
    let Some(cpio) = common::tool("cpio") else {
        return;
    };
    let i = Inputs::new();
    let out = i.p("i.cpio");
    run(&i.args(&["erofs.ko", "virtio_blk.ko"], &out));
    let o = std::process::Command::new(&cpio)
        .args(["-t", "--quiet", "-F"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed = String::from_utf8(o.stdout).unwrap();
    let listed: Vec<&str> = listed.lines().collect();
    assert_eq!(
        listed,
        [
            "bin",
            "bin/agent",
            "dev",
            "dev/console",
            "etc",
            "etc/mpk",
            "etc/mpk/modules",
            "etc/note.txt",
            "init",
            "lib",
            "lib/modules",
            "lib/modules/mpk",
            "lib/modules/mpk/erofs.ko",
            "lib/modules/mpk/virtio_blk.ko",
        ]
    );
    // And extracts the module list byte for byte.
    let o = std::process::Command::new(&cpio)
        .args(["-i", "--quiet", "--to-stdout", "-F"])
        .arg(&out)
        .arg("etc/mpk/modules")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "/lib/modules/mpk/erofs.ko\n/lib/modules/mpk/virtio_blk.ko\n"
    );
}
