//! Issue 15, case 5: the SHA-256 a pack reports (and checks against a lock)
//! is over exactly the bytes that went into the image. An input rewritten
//! while it is packed, even with its size and mtime put back, fails the
//! pack and publishes nothing; a second read that disagrees with the first
//! (a Hub range, a filesystem that does not move ctime) fails it too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use camino::Utf8PathBuf;
use mpk_erofs::Tree;
use mpk_pack::pack::{Backend, PackInput, PackOptions, pack};
use mpk_pack::scan::{self, Remote, Scan, Source, Stamp, Symlinks};
use mpk_pack::{Progress, Silent};
use sha2::{Digest, Sha256};

const ID: &str = "acme/changed@00112233445566778899aabbccddeeff00112233";

fn bytes(seed: u8, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Rewrites `path` with other bytes of the same length and puts its mtime
/// back: what a careless (or hostile) writer of a shared cache does.
fn rewrite_keeping_size_and_mtime(path: &Path) {
    let old = std::fs::metadata(path).unwrap();
    let mut data = std::fs::read(path).unwrap();
    for b in &mut data {
        *b ^= 0x5a;
    }
    std::fs::write(path, &data).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(old.modified().unwrap()))
        .unwrap();
    let new = std::fs::metadata(path).unwrap();
    assert_eq!(
        (new.len(), new.modified().unwrap()),
        (old.len(), old.modified().unwrap())
    );
}

/// A progress sink that rewrites a file when a given stage begins, or at
/// that stage's last byte.
struct RewriteAt {
    stage: &'static str,
    at_end: bool,
    file: PathBuf,
    current: Mutex<(String, u64, u64)>,
    done: AtomicUsize,
}

impl RewriteAt {
    fn new(stage: &'static str, at_end: bool, file: PathBuf) -> Self {
        Self {
            stage,
            at_end,
            file,
            current: Mutex::new((String::new(), 0, 0)),
            done: AtomicUsize::new(0),
        }
    }
}

impl Progress for RewriteAt {
    fn begin(&self, label: &str, total: u64) {
        *self.current.lock().unwrap() = (label.to_owned(), total, 0);
        if label == self.stage && !self.at_end {
            rewrite_keeping_size_and_mtime(&self.file);
            self.done.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn advance(&self, n: u64) {
        let mut c = self.current.lock().unwrap();
        c.2 += n;
        if c.0 == self.stage && self.at_end && c.2 == c.1 {
            rewrite_keeping_size_and_mtime(&self.file);
            self.done.fetch_add(1, Ordering::SeqCst);
        }
    }
}

struct Folder {
    tmp: tempfile::TempDir,
    dir: PathBuf,
}

/// A model with a tail-only file (`config.json`, read once for the image
/// and, before the fix, again for its SHA-256) and a file with full blocks
/// and a tail.
fn folder() -> Folder {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("config.json"), bytes(1, 700)).unwrap();
    std::fs::write(dir.join("model.bin"), bytes(2, 3 * 4096 + 123)).unwrap();
    Folder { tmp, dir }
}

fn options(f: &Folder, key: Option<[u8; 64]>) -> (PackOptions, PathBuf) {
    let out = f
        .tmp
        .path()
        .join(if key.is_some() { "m.empk" } else { "m.mpk" });
    let o = PackOptions {
        input: PackInput::Folder {
            dir: Utf8PathBuf::from_path_buf(f.dir.clone()).unwrap(),
            symlinks: Symlinks::Contained,
        },
        identity: ID.parse().unwrap(),
        schema: Default::default(),
        output: Utf8PathBuf::from_path_buf(out.clone()).unwrap(),
        threads: Some(2),
        force: false,
        backend: Backend::Native,
        hash_files: true,
        key: key.map(|k| mpk_crypt::MasterKey::from_bytes(&k).unwrap()),
        expected: None,
    };
    (o, out)
}

fn assert_failed_and_nothing_published(
    r: anyhow::Result<mpk_pack::pack::PackReport>,
    out: &Path,
    name: &str,
) {
    let e = match r {
        Ok(report) => panic!("the pack should fail, but reported {:?}", report.files),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        e.contains(name) && e.contains("changed"),
        "the error names the changed file: {e}"
    );
    let mut info = out.as_os_str().to_owned();
    info.push(".info");
    assert!(
        !out.exists() && !Path::new(&info).exists(),
        "nothing published"
    );
    let left: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "model")
        .collect();
    assert!(left.is_empty(), "no temporary file left: {left:?}");
}

#[test]
fn rewrite_after_the_image_read_fails_the_pack() {
    // The rewrite lands after the last image byte was produced and before
    // tail-only files were hashed (the old code read them again there).
    let f = folder();
    let (o, out) = options(&f, None);
    let p = RewriteAt::new("packing", true, f.dir.join("config.json"));
    let r = pack(o, &p);
    assert_eq!(p.done.load(Ordering::SeqCst), 1, "the rewrite happened");
    assert_failed_and_nothing_published(r, &out, "config.json");
}

#[test]
fn rewrite_with_size_and_mtime_put_back_fails_the_pack() {
    // After the scan, before any byte is read: only the ctime shows it.
    let f = folder();
    let (o, out) = options(&f, None);
    let p = RewriteAt::new("packing", false, f.dir.join("model.bin"));
    let r = pack(o, &p);
    assert_eq!(p.done.load(Ordering::SeqCst), 1);
    assert_failed_and_nothing_published(r, &out, "model.bin");
}

#[test]
fn rewrite_between_the_encrypted_passes_fails_the_pack() {
    let f = folder();
    let (o, out) = options(&f, Some([7u8; 64]));
    let p = RewriteAt::new("encrypting", false, f.dir.join("model.bin"));
    let r = pack(o, &p);
    assert_eq!(p.done.load(Ordering::SeqCst), 1);
    assert_failed_and_nothing_published(r, &out, "model.bin");
}

#[test]
fn untouched_inputs_report_the_hashes_of_their_bytes() {
    // The control: the same harness without a rewrite packs, and every
    // reported SHA-256 is that of the file's bytes.
    let f = folder();
    let (o, _) = options(&f, None);
    let report = pack(o, &Silent).unwrap();
    let got: BTreeMap<_, _> = report
        .files
        .iter()
        .map(|x| (x.path.clone(), x.sha256.clone().unwrap()))
        .collect();
    for name in ["config.json", "model.bin"] {
        let want = hex::encode(Sha256::digest(std::fs::read(f.dir.join(name)).unwrap()));
        assert_eq!(got[name], want, "{name}");
    }
}

/// A remote file whose reads at one offset give other bytes from the
/// `flip_from`-th read on: a Hub range that answers differently.
#[derive(Debug)]
struct Flaky {
    data: Vec<u8>,
    reads_at: AtomicUsize,
    flip_from: usize,
}

impl Remote for Flaky {
    fn range(&self, from: u64, to: u64) -> Box<dyn std::io::Read + Send> {
        Box::new(std::io::Cursor::new(
            self.data[from as usize..to as usize].to_vec(),
        ))
    }
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        let n = self.reads_at.fetch_add(1, Ordering::SeqCst);
        buf.copy_from_slice(&self.data[off as usize..off as usize + buf.len()]);
        if n + 1 >= self.flip_from {
            buf[0] ^= 1;
        }
        Ok(())
    }
}

fn remote_scan(data: &[u8], flip_from: usize) -> (Scan, std::sync::Arc<Flaky>) {
    let mut tree = Tree::new(scan::DIR_PERM);
    tree.add_file(Tree::ROOT, b"w.bin", scan::FILE_PERM, data.len() as u64)
        .unwrap();
    let remote = std::sync::Arc::new(Flaky {
        data: data.to_vec(),
        reads_at: AtomicUsize::new(0),
        flip_from,
    });
    let src = Source {
        path: "w.bin".into(),
        size: data.len() as u64,
        stamp: Stamp::default(),
        remote: Some(remote.clone()),
    };
    (
        Scan {
            tree,
            sources: vec![None, Some(src)],
        },
        remote,
    )
}

#[test]
fn a_tail_that_reads_differently_the_second_time_fails() {
    let data = bytes(3, 2 * 4096 + 50);
    let id: mpk_model::Identity = ID.parse().unwrap();
    // Consistent reads: the tail is read twice (image, SHA-256) and the
    // file's hash is that of its bytes.
    let (s, remote) = remote_scan(&data, usize::MAX);
    let (_, sums) =
        mpk_pack::reproduce::reproduce_scan(&s, &id, Default::default(), Some(1), &Silent, true)
            .unwrap();
    assert_eq!(remote.reads_at.load(Ordering::SeqCst), 2);
    assert_eq!(
        sums.values().next().unwrap(),
        &<[u8; 32]>::from(Sha256::digest(&data))
    );
    // The second read differs: refused, naming the file and the offset.
    let (s, _) = remote_scan(&data, 2);
    let e =
        mpk_pack::reproduce::reproduce_scan(&s, &id, Default::default(), Some(1), &Silent, true)
            .unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("w.bin") && e.contains("read differently") && e.contains("8192"),
        "{e}"
    );
}
