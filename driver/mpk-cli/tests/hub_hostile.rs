//! Issue 13: a lying Hub cannot hurt. The mock Hub's hostile mode lies in
//! every way the issue lists (path-like oids and revisions, endless and
//! trickling bodies, self-linking, endless and oversized listing pages,
//! redirects to another origin, plain or disguised as `hub@other`), and
//! each test checks what must hold whatever the server says: nothing
//! outside the cache is created, changed or deleted; the `mpk` process
//! stays under 256 MiB (its `VmHWM`, polled); it ends within a minute; no
//! request to another origin carries the token, and no output shows it.

mod common;

use mpk_hub::mock::MockHub;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const C1: &str = "1111111111111111111111111111111111111111";
const REPO: &str = "acme/tiny";
const MEMORY_LIMIT_KIB: u64 = 256 << 10;

use mpk_testutil::lcg_bytes as bytes;

/// One LFS and one non-LFS file, in a subfolder too.
fn model() -> Vec<(&'static str, Vec<u8>, bool)> {
    vec![
        ("config.json", b"{\"hidden_size\": 1}\n".to_vec(), false),
        ("model.safetensors", bytes(1, 300_000), true),
        ("sub/tokenizer.json", bytes(2, 9000), false),
    ]
}

/// How long any one `mpk` run may take before the test kills it and
/// fails: the issue's "ends within a minute" (`MPK_TEST_GUARD_SECS` may
/// only shorten it, to check quickly that the tests fail without the
/// fixes).
fn guard() -> Duration {
    let s = std::env::var("MPK_TEST_GUARD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60u64);
    Duration::from_secs(s.min(60))
}

struct Env {
    hub: MockHub,
    tmp: tempfile::TempDir,
}

/// What one bounded run of `mpk` did.
struct Run {
    out: Output,
    peak_kib: u64,
    took: Duration,
}

impl Env {
    fn with(hub: MockHub) -> Self {
        hub.put(REPO, "main", C1, model());
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("tmp")).unwrap();
        let e = Self { hub, tmp };
        e.sentinels();
        e
    }
    fn new() -> Self {
        Self::with(MockHub::start())
    }
    fn root(&self) -> &Path {
        self.tmp.path()
    }
    fn cache(&self) -> PathBuf {
        self.root().join("cache")
    }
    fn out(&self) -> PathBuf {
        self.root().join("out")
    }
    /// Files beside the cache, where the hostile values point.
    fn sentinels(&self) {
        for name in [
            "victim",
            "victim.lock",
            "victim.incomplete",
            "abs-victim",
            "cache-sibling",
        ] {
            std::fs::write(self.root().join(name), format!("sentinel {name}\n")).unwrap();
        }
    }
    fn mpk(&self) -> Command {
        let mut c = common::mpk();
        c.env("HF_ENDPOINT", &self.hub.endpoint)
            .env("HF_HUB_CACHE", self.cache())
            .env("HOME", self.root())
            .env("TMPDIR", self.root().join("tmp"))
            .env_remove("HF_TOKEN")
            .env_remove("HF_HOME")
            .env_remove("HF_HUB_OFFLINE");
        common::without_proxies(&mut c);
        for (k, _) in std::env::vars() {
            if k.starts_with("MPK_HUB_") {
                c.env_remove(k);
            }
        }
        c
    }
    fn run(&self, args: &[&str]) -> Run {
        let mut c = self.mpk();
        c.args(args);
        bounded(c)
    }
    fn lock(&self) -> PathBuf {
        let l = self.root().join("tiny.lock.json");
        ok(&self.run(&["lock", REPO, "-q", "-o", l.to_str().unwrap()]));
        l
    }
    /// Everything under the temp root except the cache folder.
    fn outside(&self) -> BTreeMap<PathBuf, String> {
        snapshot(self.root(), Some(&self.cache()))
    }
    /// Everything under the temp root.
    fn everything(&self) -> BTreeMap<PathBuf, String> {
        snapshot(self.root(), None)
    }
    /// No partial download left (`.incomplete`, or mpk's `.mpk-partial`
    /// and `.mpk-ranges`), and every blob holds what its name says.
    fn cache_is_clean(&self) {
        for (p, _) in snapshot(&self.cache(), None) {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            for ext in [".incomplete", ".mpk-partial", ".mpk-ranges"] {
                assert!(!name.ends_with(ext), "partial left: {p:?}");
            }
            if p.parent().is_some_and(|d| d.ends_with("blobs")) {
                let d = std::fs::read(&p).unwrap();
                let good = hex::encode(Sha256::digest(&d)) == name
                    || mpk_hub::oid::git_blob_sha1(&d) == name;
                assert!(good, "bad blob kept: {p:?}");
            }
        }
    }
}

/// Runs `c`, polling its peak RSS (`VmHWM`); kills it and fails the test
/// after [`guard`].
fn bounded(mut c: Command) -> Run {
    let t = Instant::now();
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let so = pipe(child.stdout.take().map(|s| Box::new(s) as _));
    let se = pipe(child.stderr.take().map(|s| Box::new(s) as _));
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > guard() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "mpk ran longer than {:?} (peak {} MiB): {:?}",
                guard(),
                peak_kib >> 10,
                c
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = Output {
        status,
        stdout: so.join().unwrap(),
        stderr: se.join().unwrap(),
    };
    let took = t.elapsed();
    assert!(
        peak_kib < MEMORY_LIMIT_KIB,
        "mpk peaked at {} MiB: {:?}",
        peak_kib >> 10,
        c
    );
    eprintln!(
        "measured: {:?}: {:.1} s, peak {} MiB",
        c.get_args().next().unwrap_or_default(),
        took.as_secs_f64(),
        peak_kib >> 10
    );
    Run {
        out,
        peak_kib,
        took,
    }
}

fn ok(r: &Run) -> String {
    assert!(
        r.out.status.success(),
        "mpk failed: {}",
        String::from_utf8_lossy(&r.out.stderr)
    );
    String::from_utf8_lossy(&r.out.stdout).trim().to_owned()
}

fn fails(r: &Run, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&r.out.stderr).into_owned();
    assert!(!r.out.status.success(), "mpk succeeded; stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "error lacks `{n}`: {err}");
    }
    err
}

/// Every entry under `root` (not below `skip`): folders, links with their
/// targets, files with their SHA-256.
fn snapshot(root: &Path, skip: Option<&Path>) -> BTreeMap<PathBuf, String> {
    fn walk(d: &Path, skip: Option<&Path>, m: &mut BTreeMap<PathBuf, String>) {
        let Ok(rd) = std::fs::read_dir(d) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if Some(p.as_path()) == skip {
                continue;
            }
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_symlink() {
                m.insert(p.clone(), format!("link {:?}", std::fs::read_link(&p)));
            } else if meta.is_dir() {
                m.insert(p.clone(), "dir".into());
                walk(&p, skip, m);
            } else {
                let d = std::fs::read(&p).unwrap_or_default();
                m.insert(p.clone(), hex::encode(Sha256::digest(&d)));
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(root, skip, &mut m);
    m
}

/// The hostile forms of a value that becomes a path: the shared list,
/// plus ones aimed at the sentinels beside the cache.
fn hostile_values(e: &Env) -> Vec<String> {
    // The ones aimed at the sentinels first: they do the harm.
    let mut v = vec![
        "../../../victim".into(),
        e.root().join("abs-victim").to_string_lossy().into_owned(),
    ];
    v.extend(mpk_hub::names::hostile_strings());
    v
}

#[test]
fn hostile_oids_touch_nothing_outside_the_cache() {
    let e = Env::new();
    let before = e.outside();
    for form in hostile_values(&e) {
        for (file, lfs) in [("config.json", false), ("model.safetensors", true)] {
            e.hub.hostile(|h| {
                h.oid.clear();
                h.lfs_oid.clear();
                let m = if lfs { &mut h.lfs_oid } else { &mut h.oid };
                m.insert(file.into(), form.clone());
            });
            let out = e.out();
            for args in [
                vec!["lock", REPO, "-q"],
                vec!["build", REPO, "-q", "-o", out.to_str().unwrap()],
            ] {
                let r = e.run(&args);
                assert_eq!(e.outside(), before, "{args:?} with {file} oid {form:?}");
                let want = if lfs {
                    "not 64 lowercase hex"
                } else {
                    "not 40 lowercase hex"
                };
                fails(&r, &[file, want]);
            }
        }
    }
    e.cache_is_clean();
}

#[test]
fn hostile_tree_paths_touch_nothing_outside_the_cache() {
    let e = Env::new();
    let before = e.outside();
    let out = e.out();
    for form in hostile_values(&e) {
        // A long or odd but legal name is not hostile.
        let legal = form.len() < 256
            && (form.bytes().all(|b| b.is_ascii_alphanumeric())
                || (form.len() > 2 && form.bytes().all(|b| b == b'.')));
        if legal {
            continue;
        }
        for file in ["config.json", "model.safetensors"] {
            e.hub.hostile(|h| {
                h.path.clear();
                h.path.insert(file.into(), form.clone());
            });
            let r = e.run(&["build", REPO, "-q", "-o", out.to_str().unwrap()]);
            assert_eq!(e.outside(), before, "{file} listed as {form:?}");
            fails(&r, &["path"]);
        }
    }
    e.cache_is_clean();
}

#[test]
fn hostile_lock_values_touch_nothing_outside_the_cache() {
    let e = Env::new();
    let l = e.lock();
    let good = std::fs::read_to_string(&l).unwrap();
    let lock = mpk_hub::Lock::load(&l).unwrap();
    let before = e.outside();
    let bad = e.root().join("bad.lock.json");
    for form in hostile_values(&e) {
        for field in ["git_oid", "path", "sha256", "revision"] {
            let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
            if field == "revision" {
                v["revision"] = form.clone().into();
            } else {
                v["files"][0][field] = form.clone().into();
            }
            std::fs::write(&bad, serde_json::to_string_pretty(&v).unwrap()).unwrap();
            let before_bad = e.outside();
            let r = e.run(&["fetch", bad.to_str().unwrap(), "-q"]);
            // A long or upper-case name is a legal branch or file name
            // (the Hub then has no such file); the rest breaks a rule.
            let alnum = form.len() < 256 && form.bytes().all(|b| b.is_ascii_alphanumeric());
            let dots = form.len() > 2 && form.bytes().all(|b| b == b'.');
            let legal =
                (alnum && (field == "revision" || field == "path")) || (dots && field == "path");
            if !legal {
                assert!(!r.out.status.success(), "{field} = {form:?} accepted");
                fails(&r, &["invalid lock", field]);
            }
            assert_eq!(e.outside(), before_bad, "{field} = {form:?}");
        }
    }
    std::fs::remove_file(&bad).unwrap();
    assert_eq!(lock.files.len(), 3);
    assert_eq!(
        e.outside().keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
}

#[test]
fn hostile_revisions_touch_nothing_outside_the_cache() {
    let e = Env::new();
    // The Hub answers any revision, so only mpk's own rules stand between
    // the revision and `refs/<rev>`.
    e.hub.hostile(|h| h.any_revision = true);
    let abs = e.root().join("abs-victim");
    let before = e.outside();
    for rev in [
        "../../../victim",
        "a/../../../../victim",
        "refs/../../../../victim",
        abs.to_str().unwrap(),
        "/victim",
        "..",
        "main/",
        "main.",
        "a//b",
        "main\n",
        "main\r",
        "a\\..\\b",
        "x.lock",
        "a@{1}",
        "a b",
        "a:b",
        "@",
        &"r".repeat(300),
    ] {
        let r = e.run(&["lock", &format!("{REPO}@{rev}"), "-q"]);
        assert_eq!(e.outside(), before, "revision {rev:?}");
        fails(&r, &["revision"]);
    }
    // Hub revisions with `/` stay legal and land inside the cache.
    ok(&e.run(&["lock", &format!("{REPO}@refs/pr/1"), "-q"]));
    let r = e.cache().join("models--acme--tiny/refs/refs/pr/1");
    assert_eq!(std::fs::read_to_string(r).unwrap(), C1);
    assert_eq!(e.outside(), before);
}

#[test]
fn hostile_endless_body_is_cut_at_the_expected_size() {
    for file in ["config.json", "model.safetensors"] {
        let e = Env::new();
        e.hub.hostile(|h| h.endless = vec![file.into()]);
        let before = e.outside();
        let out = e.out();
        let r = e.run(&["build", REPO, "-q", "-o", out.to_str().unwrap()]);
        fails(&r, &["goes on past", "refused", file]);
        e.cache_is_clean();
        assert_eq!(e.outside(), before);
    }
    // Streaming stops at the end of each range: the reference is right.
    let e = Env::new();
    let l = e.lock();
    let out = e.out();
    let reference = ok(&e.run(&[
        "build",
        REPO,
        "--lock",
        l.to_str().unwrap(),
        "-q",
        "-o",
        out.to_str().unwrap(),
    ]));
    std::fs::remove_dir_all(e.cache()).unwrap();
    e.hub
        .hostile(|h| h.endless = vec!["model.safetensors".into()]);
    let r = e.run(&[
        "reproduce",
        "--lock",
        l.to_str().unwrap(),
        "--expect",
        &reference,
        "-q",
    ]);
    assert_eq!(ok(&r), reference);
}

#[test]
fn hostile_trickle_is_cut_by_the_watchdog() {
    let e = Env::new();
    let l = e.lock();
    let out = e.out();
    let reference = ok(&e.run(&[
        "build",
        REPO,
        "--lock",
        l.to_str().unwrap(),
        "-q",
        "-o",
        out.to_str().unwrap(),
    ]));
    std::fs::remove_dir_all(e.cache()).unwrap();
    std::fs::remove_dir_all(e.out()).unwrap();
    // A byte every 100 ms never trips a per-read timeout.
    e.hub.hostile(|h| {
        h.trickle_ms.insert("model.safetensors".into(), 100);
    });
    for args in [
        vec![
            "build",
            REPO,
            "--lock",
            l.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        vec![
            "reproduce",
            "--lock",
            l.to_str().unwrap(),
            "--expect",
            &reference,
            "-q",
        ],
    ] {
        let mut c = e.mpk();
        c.env("MPK_HUB_STALL_SECS", "1").args(&args);
        let r = bounded(c);
        fails(&r, &["model.safetensors", "stalled", "MPK_HUB_STALL_SECS"]);
        assert!(r.took < guard());
    }
    // What a resume needs may stay, but never a bad blob under a name.
    let sha = hex::encode(Sha256::digest(&model()[1].1));
    for (p, _) in snapshot(&e.cache(), None) {
        if p.parent().is_some_and(|d| d.ends_with("blobs")) {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            assert_ne!(n, sha, "the trickled blob was accepted");
            if ![".incomplete", ".mpk-partial", ".mpk-ranges"]
                .iter()
                .any(|x| n.ends_with(x))
            {
                assert_eq!(mpk_hub::oid::git_blob_sha1(&std::fs::read(&p).unwrap()), n);
            }
        }
    }
}

#[test]
fn hostile_slow_api_is_cut_by_the_watchdog() {
    let e = Env::new();
    // JSON a byte every 100 ms, then no answer at all.
    e.hub.hostile(|h| h.trickle_api_ms = Some(100));
    let mut c = e.mpk();
    c.env("MPK_HUB_STALL_SECS", "1").args(["lock", REPO, "-q"]);
    fails(&bounded(c), &["revision", "stalled", "MPK_HUB_STALL_SECS"]);
    e.hub.hostile(|h| {
        h.trickle_api_ms = None;
        h.hang = true;
    });
    let mut c = e.mpk();
    c.env("MPK_HUB_STALL_SECS", "1").args(["lock", REPO, "-q"]);
    fails(&bounded(c), &["revision", "imeout"]);
}

#[test]
fn hostile_self_linking_page_is_refused() {
    let e = Env::new();
    e.hub.hostile(|h| h.self_link = true);
    fails(&e.run(&["lock", REPO, "-q"]), &["already listed"]);
    let pages = e.hub.log().iter().filter(|l| l.contains("/tree/")).count();
    // The first URL has no cursor; its `Link` names cursor 0, which
    // names itself.
    assert_eq!(pages, 2, "{:?}", e.hub.log());
}

#[test]
fn hostile_endless_listing_is_capped() {
    let e = Env::new();
    e.hub.hostile(|h| h.endless_pages = true);
    let mut c = e.mpk();
    c.env("MPK_HUB_MAX_PAGES", "50").args(["lock", REPO, "-q"]);
    fails(&bounded(c), &["more than 50 pages", "MPK_HUB_MAX_PAGES"]);
    let mut c = e.mpk();
    c.env("MPK_HUB_MAX_ENTRIES", "100")
        .args(["lock", REPO, "-q"]);
    fails(
        &bounded(c),
        &["more than 100 entries", "MPK_HUB_MAX_ENTRIES"],
    );
    let pages = e.hub.log().iter().filter(|l| l.contains("/tree/")).count();
    // 50 pages, then at most 100 pages of at least one entry.
    assert!(pages <= 50 + 100, "{pages} page requests");
}

#[test]
fn hostile_oversized_page_is_refused() {
    let e = Env::new();
    // A 400 MiB page (no Content-Length), under the default settings.
    e.hub.hostile(|h| h.page_bytes = Some(400 << 20));
    let r = e.run(&["lock", REPO, "-q"]);
    fails(&r, &["larger than", "MPK_HUB_MAX_JSON_BYTES"]);
    assert!(r.peak_kib < 128 << 10, "peak {} KiB", r.peak_kib);
}

/// A Hub and a second server on another port whose decimal starts with
/// the Hub's (the string-prefix trap), or any other port.
fn hub_and_other_origin() -> (MockHub, MockHub) {
    let seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    for i in 0..200u64 {
        let p = 2000 + ((seed.wrapping_mul(2654435761) + i * 7919) % 4500) as u16;
        let Ok(hub) = MockHub::start_on(p) else {
            continue;
        };
        for d in 0..10u16 {
            if let Ok(other) = MockHub::start_on(p * 10 + d) {
                return (hub, other);
            }
        }
    }
    eprintln!("no port pair with a common prefix; using any two ports");
    (MockHub::start(), MockHub::start())
}

#[test]
fn hostile_redirect_to_another_origin_gets_no_token() {
    let (hub, cdn) = hub_and_other_origin();
    cdn.put(REPO, "main", C1, model());
    let e = Env::with(hub);
    e.hub.gate(REPO);
    e.hub
        .hostile(|h| h.lfs_location = Some(cdn.endpoint.clone()));
    let token = e.hub.token.clone();
    let out = e.out();
    let mut c = e.mpk();
    c.env("HF_TOKEN", &token)
        .args(["build", REPO, "-o", out.to_str().unwrap()]);
    let r = bounded(c);
    let reference = ok(&r);
    // The LFS bytes came from the other origin, without the token.
    assert!(
        cdn.log().iter().any(|l| l.starts_with("GET /lfs-cdn/")),
        "{:?}",
        cdn.log()
    );
    assert_eq!(cdn.authed(), Vec::<String>::new(), "token sent to the CDN");
    assert!(!e.hub.authed().is_empty(), "the Hub itself got the token");
    assert!(!String::from_utf8_lossy(&r.out.stderr).contains(&token));
    // Streaming (reproduce) follows the same rule.
    std::fs::remove_dir_all(e.cache()).unwrap();
    let mut c = e.mpk();
    c.env("HF_TOKEN", &token)
        .args(["reproduce", &format!("{REPO}@main"), "--expect", &reference]);
    assert_eq!(ok(&bounded(c)), reference);
    assert_eq!(cdn.authed(), Vec::<String>::new(), "token sent to the CDN");
}

#[test]
fn hostile_userinfo_redirect_is_refused() {
    let cdn = MockHub::start();
    cdn.put(REPO, "main", C1, model());
    let e = Env::new();
    e.hub.gate(REPO);
    let token = e.hub.token.clone();
    let out = e.out();
    let l = e.root().join("l.json");
    let mut c = e.mpk();
    c.env("HF_TOKEN", &token)
        .args(["build", REPO, "-q", "-o", out.to_str().unwrap()]);
    let reference = ok(&bounded(c));
    std::fs::remove_dir_all(e.cache()).unwrap();
    std::fs::remove_dir_all(e.out()).unwrap();
    // Looks like the Hub's host:port, goes to the other server.
    let hub_authority = e.hub.endpoint.trim_start_matches("http://").to_owned();
    let cdn_authority = cdn.endpoint.trim_start_matches("http://").to_owned();
    e.hub.hostile(|h| {
        h.lfs_location = Some(format!("http://{hub_authority}@{cdn_authority}"));
    });
    let mut c = e.mpk();
    c.env("HF_TOKEN", &token)
        .args(["lock", REPO, "-q", "-o", l.to_str().unwrap()]);
    ok(&bounded(c));
    for args in [
        vec!["build", REPO, "-o", out.to_str().unwrap()],
        vec![
            "reproduce",
            "--lock",
            l.to_str().unwrap(),
            "--expect",
            &reference,
        ],
    ] {
        let mut c = e.mpk();
        c.env("HF_TOKEN", &token).args(&args);
        let r = bounded(c);
        let err = fails(&r, &["userinfo", "model.safetensors"]);
        assert!(!err.contains(&token), "{err}");
    }
    assert_eq!(cdn.authed(), Vec::<String>::new(), "token sent to the CDN");
    assert!(cdn.log().is_empty(), "{:?}", cdn.log());
}

#[test]
fn reproduce_from_the_hub_writes_nothing_in_any_form() {
    let e = Env::new();
    let l = e.lock();
    let out = e.out();
    let reference = ok(&e.run(&[
        "build",
        REPO,
        "--lock",
        l.to_str().unwrap(),
        "-q",
        "-o",
        out.to_str().unwrap(),
    ]));
    let main = format!("{REPO}@main");
    let commit = format!("{REPO}@{C1}");
    let forms: Vec<Vec<&str>> = vec![
        vec!["reproduce", &main, "--expect", &reference, "-q"],
        vec!["reproduce", &commit, "--expect", &reference, "-q"],
        vec![
            "reproduce",
            "--lock",
            l.to_str().unwrap(),
            "--expect",
            &reference,
            "-q",
        ],
        vec![
            "reproduce",
            &main,
            "--lock",
            l.to_str().unwrap(),
            "--expect",
            &reference,
            "-q",
        ],
    ];
    // With a full cache (as `build` left it), then with none.
    for empty in [false, true] {
        if empty {
            std::fs::remove_dir_all(e.cache()).unwrap();
        }
        for args in &forms {
            let before = e.everything();
            assert_eq!(ok(&e.run(args)), reference, "{args:?}");
            assert_eq!(
                e.everything(),
                before,
                "{args:?} wrote (empty cache: {empty})"
            );
        }
    }
    // Offline, from the cache: verified in place, still nothing written.
    ok(&e.run(&["fetch", l.to_str().unwrap(), "-q"]));
    let before = e.everything();
    let mut c = e.mpk();
    c.env("HF_HUB_OFFLINE", "1").args([
        "reproduce",
        "--lock",
        l.to_str().unwrap(),
        "--expect",
        &reference,
        "-q",
    ]);
    assert_eq!(ok(&bounded(c)), reference);
    assert_eq!(e.everything(), before, "offline reproduce wrote");
    // A bad cached blob is refused, and left for `mpk fetch` to replace.
    let blob = e.cache().join(format!(
        "models--acme--tiny/blobs/{}",
        mpk_hub::oid::git_blob_sha1(&model()[0].1)
    ));
    std::fs::write(&blob, b"{\"hidden_size\": 2}\n").unwrap();
    let before = e.everything();
    let mut c = e.mpk();
    c.env("HF_HUB_OFFLINE", "1").args([
        "reproduce",
        "--lock",
        l.to_str().unwrap(),
        "--expect",
        &reference,
        "-q",
    ]);
    fails(&bounded(c), &["config.json", "git blob sha1"]);
    assert_eq!(e.everything(), before, "offline reproduce wrote");
}
