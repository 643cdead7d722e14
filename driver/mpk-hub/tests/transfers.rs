//! The transfer scheduler against the mock Hub (issue 16): files in
//! parallel and large files in ranges give the same verified cache for 1,
//! 2 and 16 connections; a resumed download fetches only the ranges it
//! lacks (counted in bytes the mock serves) and re-hashes the ones it
//! keeps; a tampered range fails its file and leaves nothing; a `200` to a
//! range, and a server that refuses ranges, fall back to whole files; a
//! 429 with `Retry-After` is waited out; a signed URL the CDN refuses is
//! resolved again, and one it refuses for good is reported as the CDN's
//! refusal, not a token problem; reproduce's ordered window returns the
//! bytes in order.

use mpk_hub::client::Limits;
use mpk_hub::fetch::{Event, Expected, fetch_lock, lock_repo};
use mpk_hub::mock::MockHub;
use mpk_hub::names::{Commit, RepoId};
use mpk_hub::sched::{CHUNK, Prefetch};
use mpk_hub::stream::RemoteFile;
use mpk_hub::{HfCache, Hub, HubConfig, Lock};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mpk_testutil::xorshift_bytes as bytes;

const C1: &str = "1111111111111111111111111111111111111111";
const REPO: &str = "acme/big";
const BIG: &str = "model-00001.safetensors";
const BIG_LEN: usize = 2 * CHUNK as usize + 12_345;

/// Two LFS shards (one of three ranges, one of two), a non-LFS file and
/// small files.
fn model() -> Vec<(&'static str, Vec<u8>, bool)> {
    vec![
        ("config.json", b"{\"a\": 1}\n".to_vec(), false),
        ("empty.txt", Vec::new(), false),
        (BIG, bytes(1, BIG_LEN), true),
        (
            "model-00002.safetensors",
            bytes(2, CHUNK as usize + 1),
            true,
        ),
        ("tokenizer.json", bytes(3, 70_000), false),
    ]
}

fn hub_with(mock: &MockHub, connections: usize) -> Hub {
    Hub::new(HubConfig {
        endpoint: mock.endpoint.clone(),
        token: None,
        offline: false,
        attempts: 3,
        backoff: Duration::from_millis(1),
        limits: Limits::default(),
        connections,
        proxy: None,
    })
    .unwrap()
}

fn start() -> MockHub {
    let m = MockHub::start();
    m.put(REPO, "main", C1, model());
    m
}

fn lock_of(mock: &MockHub) -> Lock {
    lock_repo(&hub_with(mock, 4), None, REPO, "main", None, &mut |_| {}).unwrap()
}

/// Every file of the snapshot, read through its link, by path.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = model()
        .into_iter()
        .map(|(p, _, _)| (p.to_owned(), std::fs::read(dir.join(p)).unwrap()))
        .collect();
    v.sort();
    v
}

/// Every file left in the blobs folder that is not a finished blob.
fn partials(cache: &Path) -> Vec<PathBuf> {
    let blobs = cache.join("models--acme--big/blobs");
    let Ok(rd) = std::fs::read_dir(&blobs) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains('.'))
        .collect()
}

/// `fetch_lock` of `lock` from `mock` on `n` connections into the cache
/// in `d`, no progress.
fn fetch_into(
    d: &tempfile::TempDir,
    mock: &MockHub,
    n: usize,
    lock: &Lock,
) -> mpk_hub::Result<PathBuf> {
    fetch_lock(
        &hub_with(mock, n),
        &HfCache::new(d.path()),
        lock,
        &mut |_| {},
    )
}

fn big_etag() -> String {
    mpk_hub::oid::sha256_hex(&bytes(1, BIG_LEN))
}

#[test]
fn results_do_not_depend_on_the_number_of_connections() {
    let mock = start();
    let lock = lock_of(&mock);
    let want: Vec<_> = {
        let mut v: Vec<_> = model()
            .into_iter()
            .map(|(p, d, _)| (p.to_owned(), d))
            .collect();
        v.sort();
        v
    };
    for n in [1, 2, 16] {
        let d = tempfile::tempdir().unwrap();
        let cache = HfCache::new(d.path());
        let mut total = None;
        let mut bytes_seen = 0u64;
        let dir = fetch_lock(&hub_with(&mock, n), &cache, &lock, &mut |e| match e {
            Event::Total(t) => total = Some(t),
            Event::Bytes(b) => bytes_seen += b,
            _ => {}
        })
        .unwrap();
        assert_eq!(snapshot(&dir), want, "{n} connections");
        assert!(partials(d.path()).is_empty(), "{:?}", partials(d.path()));
        let size: u64 = model().iter().map(|f| f.1.len() as u64).sum();
        assert_eq!(total, Some(size));
        assert_eq!(bytes_seen, size, "{n} connections");
    }
    // The big shard went in ranges of CHUNK bytes, from its CDN URL.
    let log = mock.log();
    let second = format!("range={}-{}", CHUNK, 2 * CHUNK - 1);
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET /lfs-cdn/") && l.ends_with(&second)),
        "{log:?}"
    );
    // Resolved once per file and run, however many ranges.
    let heads = log
        .iter()
        .filter(|l| l.starts_with("HEAD ") && l.contains(BIG))
        .count();
    assert_eq!(heads, 3, "{log:?}");
}

#[test]
fn resume_fetches_only_the_missing_ranges_and_rehashes_the_kept_ones() {
    let mock = start();
    let lock = lock_of(&mock);
    let d = tempfile::tempdir().unwrap();
    let cache = HfCache::new(d.path());
    // The second range of the big shard fails every time: the fetch fails,
    // its first range stays recorded beside the partial file.
    mock.faults(|f| {
        f.fail_range.insert(BIG.into(), (CHUNK as usize, 1000));
    });
    let e = fetch_lock(&hub_with(&mock, 1), &cache, &lock, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains(BIG), "{e}");
    let blobs = d.path().join("models--acme--big/blobs");
    let part = blobs.join(format!("{}.mpk-partial", big_etag()));
    let ranges = blobs.join(format!("{}.mpk-ranges", big_etag()));
    assert!(part.exists() && ranges.exists(), "{:?}", partials(d.path()));
    assert!(!blobs.join(big_etag()).exists());
    assert!(!blobs.join(format!("{}.incomplete", big_etag())).exists());
    let recorded = |ranges: &Path| -> u64 {
        std::fs::read_to_string(ranges)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let mut w = l.split(' ');
                let a: u64 = w.next().unwrap().parse().unwrap();
                let b: u64 = w.next().unwrap().parse().unwrap();
                b - a
            })
            .sum()
    };
    let kept = recorded(&ranges);
    assert_eq!(kept, CHUNK, "the first range is recorded");

    // Resume: only the missing bytes of the big shard are served (the
    // other files are already verified blobs).
    mock.faults(|f| f.fail_range.clear());
    let before = mock.served();
    let dir = fetch_lock(&hub_with(&mock, 1), &cache, &lock, &mut |_| {}).unwrap();
    // The files after it had not started.
    let rest = (CHUNK + 1) + 70_000;
    assert_eq!(mock.served() - before, BIG_LEN as u64 - kept + rest);
    assert_eq!(std::fs::read(dir.join(BIG)).unwrap(), bytes(1, BIG_LEN));
    assert!(partials(d.path()).is_empty(), "{:?}", partials(d.path()));

    // A kept range whose bytes changed on disk is fetched again.
    let d2 = tempfile::tempdir().unwrap();
    let cache2 = HfCache::new(d2.path());
    mock.faults(|f| {
        f.fail_range.insert(BIG.into(), (2 * CHUNK as usize, 1000));
    });
    fetch_lock(&hub_with(&mock, 1), &cache2, &lock, &mut |_| {}).unwrap_err();
    let blobs2 = d2.path().join("models--acme--big/blobs");
    let part2 = blobs2.join(format!("{}.mpk-partial", big_etag()));
    assert_eq!(
        recorded(&blobs2.join(format!("{}.mpk-ranges", big_etag()))),
        2 * CHUNK
    );
    let mut p = std::fs::read(&part2).unwrap();
    p[10] ^= 0xff; // inside the first recorded range
    std::fs::write(&part2, &p).unwrap();
    mock.faults(|f| f.fail_range.clear());
    let before = mock.served();
    let dir = fetch_lock(&hub_with(&mock, 2), &cache2, &lock, &mut |_| {}).unwrap();
    assert_eq!(mock.served() - before, BIG_LEN as u64 - CHUNK + rest);
    assert_eq!(std::fs::read(dir.join(BIG)).unwrap(), bytes(1, BIG_LEN));
}

#[test]
fn a_tampered_range_fails_its_file_and_leaves_nothing() {
    for n in [1, 8] {
        let mock = start();
        let lock = lock_of(&mock);
        let d = tempfile::tempdir().unwrap();
        let cache = HfCache::new(d.path());
        mock.faults(|f| {
            f.corrupt_at.insert(BIG.into(), CHUNK as usize + 77);
        });
        let e = fetch_lock(&hub_with(&mock, n), &cache, &lock, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains(BIG) && e.contains("mismatch"), "{e}");
        let blobs = d.path().join("models--acme--big/blobs");
        assert!(!blobs.join(big_etag()).exists());
        assert!(
            !partials(d.path())
                .iter()
                .any(|p| p.to_string_lossy().contains(&big_etag())),
            "{:?}",
            partials(d.path())
        );
    }
}

#[test]
fn a_200_to_a_range_falls_back_to_the_whole_file() {
    let mock = start();
    let lock = lock_of(&mock);
    let d = tempfile::tempdir().unwrap();
    mock.faults(|f| {
        f.range_200.insert(BIG.into(), 1);
    });
    let dir = fetch_into(&d, &mock, 4, &lock).unwrap();
    assert_eq!(std::fs::read(dir.join(BIG)).unwrap(), bytes(1, BIG_LEN));
    assert!(partials(d.path()).is_empty());
    mock.faults(|f| assert_eq!(f.range_200[BIG], 0, "the 200 was sent"));
}

#[test]
fn a_server_that_refuses_ranges_gets_whole_files() {
    let mock = start();
    let lock = lock_of(&mock);
    mock.faults(|f| f.no_ranges = true);
    for n in [1, 16] {
        let d = tempfile::tempdir().unwrap();
        let before = mock.served();
        let dir = fetch_into(&d, &mock, n, &lock).unwrap();
        for (p, data, _) in model() {
            assert_eq!(std::fs::read(dir.join(p)).unwrap(), data, "{p}");
        }
        // Whole files: at least every byte once; each range request of a
        // split file that was already sent is cut short by the fallback.
        assert!(mock.served() - before >= model().iter().map(|f| f.1.len() as u64).sum());
    }
}

#[test]
fn a_429_with_retry_after_is_waited_out() {
    let mock = start();
    let lock = lock_of(&mock);
    mock.faults(|f| {
        f.rate_limit.insert("tokenizer.json".into(), (1, 1));
    });
    let d = tempfile::tempdir().unwrap();
    let mut retries = Vec::new();
    let dir = fetch_lock(
        &hub_with(&mock, 2),
        &HfCache::new(d.path()),
        &lock,
        &mut |e| {
            if let Event::Retry(p, why) = e {
                retries.push(format!("{p}: {why}"));
            }
        },
    )
    .unwrap();
    assert_eq!(
        std::fs::read(dir.join("tokenizer.json")).unwrap(),
        bytes(3, 70_000)
    );
    assert!(retries.iter().any(|r| r.contains("429")), "{retries:?}");
    // A Retry-After beyond the bound is refused, not slept.
    mock.faults(|f| {
        f.rate_limit.insert("tokenizer.json".into(), (1, 100_000));
    });
    let d = tempfile::tempdir().unwrap();
    let e = fetch_into(&d, &mock, 2, &lock).unwrap_err().to_string();
    assert!(e.contains("429") && e.contains("100000"), "{e}");
}

#[test]
fn a_refused_signed_url_is_resolved_again() {
    let mock = start();
    let lock = lock_of(&mock);
    let heads = |m: &MockHub| {
        m.log()
            .iter()
            .filter(|l| l.starts_with("HEAD ") && l.contains(BIG))
            .count()
    };
    // Two refusals: resolved once more each time, then it goes through.
    mock.faults(|f| f.cdn_403 = 2);
    let d = tempfile::tempdir().unwrap();
    let dir = fetch_into(&d, &mock, 1, &lock).unwrap();
    assert_eq!(std::fs::read(dir.join(BIG)).unwrap(), bytes(1, BIG_LEN));
    assert_eq!(heads(&mock), 1 + 2);
    // Refused for good: at most MAX_RERESOLVE more resolutions, then a
    // clear error naming the file.
    mock.faults(|f| f.cdn_403 = 1000);
    let before = heads(&mock);
    let d = tempfile::tempdir().unwrap();
    let e = fetch_into(&d, &mock, 1, &lock).unwrap_err().to_string();
    assert!(
        e.contains("HTTP 403") && e.contains("refused by the CDN"),
        "{e}"
    );
    assert!(!e.contains("HF_TOKEN"), "{e}");
    assert_eq!(
        heads(&mock) - before,
        1 + mpk_hub::sched::MAX_RERESOLVE as usize
    );
    // Reproduce's window and its tail reads resolve again too.
    mock.faults(|f| f.cdn_403 = 2);
    let got = read_through_window(&mock, 2);
    assert!(got.iter().any(|d| *d == bytes(1, BIG_LEN)));
    mock.faults(|f| assert_eq!(f.cdn_403, 0, "the refusals were sent"));
}

#[test]
fn a_signed_url_refused_for_good_blames_the_cdn_not_the_token() {
    // The LFS files live on a CDN of another origin, which refuses every
    // signed URL: the Hub authorised the download, so the error names the
    // CDN's refusal and the likely causes, and does not send the user to
    // HF_TOKEN.
    let (mock, cdn) = (start(), MockHub::start());
    cdn.put(REPO, "main", C1, model());
    mock.hostile(|h| h.lfs_location = Some(cdn.endpoint.clone()));
    let lock = lock_of(&mock);
    cdn.faults(|f| f.cdn_403 = 1000);
    let blames_the_cdn = |e: &str| {
        for want in [
            "safetensors`: the signed download URL the Hub redirected to",
            &format!("refused by the CDN at {} (HTTP 403)", cdn.endpoint),
            "also after resolving the file again 3 times",
            "clock",
        ] {
            assert!(e.contains(want), "lacks {want:?}: {e}");
        }
        assert!(!e.contains("HF_TOKEN") && !e.contains("sig="), "{e}");
    };
    for n in [1, 4] {
        let d = tempfile::tempdir().unwrap();
        let e = fetch_into(&d, &mock, n, &lock).unwrap_err().to_string();
        blames_the_cdn(&e);
        let blobs = d.path().join("models--acme--big/blobs");
        assert!(!blobs.join(big_etag()).exists(), "{n}: a final blob");
    }
    // Reproduce's readers (with the client's real 5 attempts) say the same.
    let hub = Arc::new(
        Hub::new(HubConfig {
            attempts: 5,
            ..hub_with(&mock, 1).config().clone()
        })
        .unwrap(),
    );
    let f = lock.files.iter().find(|f| f.path.as_str() == BIG).unwrap();
    let (repo, commit) = (RepoId::parse(REPO).unwrap(), Commit::parse(C1).unwrap());
    let remote = RemoteFile::open(hub, &repo, &commit, &Expected::try_from(f).unwrap()).unwrap();
    let e = remote
        .range(0, remote.size())
        .read_to_end(&mut Vec::new())
        .unwrap_err()
        .to_string();
    blames_the_cdn(&e);
    // A 401 from the Hub's own origin (the resolver) still means the
    // token: a gated repo without one.
    cdn.faults(|f| f.cdn_403 = 0);
    mock.gate(REPO);
    let d = tempfile::tempdir().unwrap();
    let e = fetch_into(&d, &mock, 2, &lock).unwrap_err().to_string();
    assert!(e.contains("HTTP 401") && e.contains("HF_TOKEN"), "{e}");
    assert!(e.starts_with(&mock.endpoint) && !e.contains("CDN"), "{e}");
}

#[test]
fn hashing_a_file_survives_a_restart_of_a_whole_file_request() {
    // Locking without a cache streams and hashes the non-LFS files; a
    // server that refuses ranges and drops the connection makes the
    // retry a new whole-file request from byte 0.
    let mock = start();
    let want = lock_of(&mock);
    mock.faults(|f| {
        f.no_ranges = true;
        f.drop_after.insert("tokenizer.json".into(), (30_000, 1));
    });
    assert_eq!(lock_of(&mock).files, want.files);
    mock.faults(|f| assert_eq!(f.drop_after["tokenizer.json"].1, 0, "the drop happened"));
}

#[test]
fn connections_are_kept_alive_where_the_server_allows() {
    let mock = start();
    let lock = lock_of(&mock);
    mock.keep_alive(true);
    let (c0, r0) = (mock.connections(), mock.log().len());
    let d = tempfile::tempdir().unwrap();
    let dir = fetch_into(&d, &mock, 2, &lock).unwrap();
    assert_eq!(std::fs::read(dir.join(BIG)).unwrap(), bytes(1, BIG_LEN));
    let (conns, reqs) = (mock.connections() - c0, mock.log().len() - r0);
    eprintln!("{reqs} requests on {conns} connections");
    assert!(reqs >= 10, "{reqs}");
    assert!(conns <= 4, "{reqs} requests on {conns} connections");
    // The reorder window's ranges too (resolves and tails aside).
    let c0 = mock.connections();
    read_through_window(&mock, 2);
    let ranged = mock
        .log()
        .iter()
        .filter(|l| l.starts_with("GET /lfs-cdn/"))
        .count();
    let conns = mock.connections() - c0;
    assert!(
        conns < 2 + 4 + 2,
        "{conns} connections, {ranged} ranges so far"
    );
    mock.keep_alive(false);
}

#[test]
fn the_token_goes_to_the_hub_only_on_every_connection() {
    // A gated repo whose LFS files live on a CDN of another origin: every
    // range of every connection goes there without `Authorization`.
    let (mock, cdn) = (start(), MockHub::start());
    cdn.put(REPO, "main", C1, model());
    mock.gate(REPO);
    mock.hostile(|h| h.lfs_location = Some(cdn.endpoint.clone()));
    let hub = |n| {
        Hub::new(HubConfig {
            token: Some(mock.token.clone()),
            ..hub_with(&mock, n).config().clone()
        })
        .unwrap()
    };
    let lock = lock_repo(&hub(4), None, REPO, "main", None, &mut |_| {}).unwrap();
    let d = tempfile::tempdir().unwrap();
    let dir = fetch_lock(&hub(8), &HfCache::new(d.path()), &lock, &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(dir.join(BIG)).unwrap(), bytes(1, BIG_LEN));
    let ranges = cdn.log().iter().filter(|l| l.contains("range=")).count();
    assert!(ranges >= 5, "{:?}", cdn.log());
    assert_eq!(cdn.authed(), Vec::<String>::new());
    assert!(!mock.authed().is_empty());
}

/// Reads every file through the ordered window, in the lock's order.
fn read_through_window(mock: &MockHub, n: usize) -> Vec<Vec<u8>> {
    let hub = Arc::new(hub_with(mock, n));
    let lock = lock_of(mock);
    let (repo, commit) = (RepoId::parse(REPO).unwrap(), Commit::parse(C1).unwrap());
    let files: Vec<RemoteFile> = lock
        .files
        .iter()
        .map(|f| {
            RemoteFile::open(
                Arc::clone(&hub),
                &repo,
                &commit,
                &Expected::try_from(f).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let plan: Vec<_> = files
        .iter()
        .map(|f| (Arc::clone(f.target()), 0, f.size()))
        .collect();
    let pf = Prefetch::start(Arc::clone(&hub), &plan);
    assert_eq!(pf.window(), (2 * n).min(mpk_hub::sched::MAX_WINDOW));
    files
        .iter()
        .map(|f| {
            let g = f.clone();
            let mut r = pf.reader(
                f.target(),
                0,
                f.size(),
                Box::new(move |pos| Box::new(g.range(pos, g.size()))),
            );
            let mut v = Vec::new();
            r.read_to_end(&mut v).unwrap();
            v
        })
        .collect()
}

#[test]
fn the_reorder_window_hands_out_bytes_in_order() {
    let mock = start();
    let mut want: Vec<_> = model().into_iter().map(|(p, d, _)| (p, d)).collect();
    want.sort();
    let want: Vec<_> = want.into_iter().map(|(_, d)| d).collect();
    for n in [1, 2, 16] {
        assert_eq!(read_through_window(&mock, n), want, "{n} connections");
    }
    // With refused ranges each file is read whole, still in order.
    mock.faults(|f| f.no_ranges = true);
    assert_eq!(read_through_window(&mock, 4), want);
    // A tampered range reaches the reader as it was sent (the caller's
    // hashes catch it).
    mock.faults(|f| {
        f.no_ranges = false;
        f.corrupt_at.insert(BIG.into(), CHUNK as usize + 5);
    });
    let got = read_through_window(&mock, 4);
    let big = want.iter().position(|d| d.len() == BIG_LEN).unwrap();
    assert_ne!(got[big], want[big]);
    assert_eq!(
        got[big][CHUNK as usize + 5],
        want[big][CHUNK as usize + 5] ^ 1
    );
}

/// A repository of many small (non-LFS) files, each answered after a
/// delay.
fn many_small(mock: &MockHub, repo: &str) -> Vec<(String, Vec<u8>)> {
    let files: Vec<(String, Vec<u8>)> = (0..12u64)
        .map(|i| {
            (
                format!("shard/{i:02}.json"),
                bytes(100 + i, 500 + i as usize),
            )
        })
        .collect();
    mock.put(
        repo,
        "main",
        C1,
        files
            .iter()
            .map(|(p, d)| (p.as_str(), d.clone(), false))
            .collect(),
    );
    mock.faults(|f| {
        for (p, _) in &files {
            f.slow_ms.insert(p.clone(), 150);
        }
    });
    files
}

/// Locks `acme/small` with nothing written, on `n` connections; returns
/// the lock and the most files between their Start and Done events at
/// one time (events reach the caller in the order they were sent).
fn lock_small(mock: &MockHub, n: usize) -> (Lock, usize) {
    let (mut open, mut most) = (0usize, 0usize);
    let lock = lock_repo(
        &hub_with(mock, n),
        None,
        "acme/small",
        "main",
        None,
        &mut |e| {
            match e {
                Event::Start(..) => open += 1,
                Event::Done(_) => open -= 1,
                _ => {}
            }
            most = most.max(open);
        },
    )
    .unwrap();
    assert_eq!(open, 0, "a Done for every Start");
    (lock, most)
}

#[test]
fn lock_without_a_cache_hashes_small_files_on_all_connections() {
    // `mpk lock` with nothing written: each small file is one request
    // (answered after 150 ms), so N connections wait on N round trips at
    // once. One connection hashes one file at a time; eight overlap.
    let mock = MockHub::start();
    let files = many_small(&mock, "acme/small");
    let (lock1, most1) = lock_small(&mock, 1);
    assert_eq!(most1, 1, "one connection, one file at a time");
    let (lock8, most8) = lock_small(&mock, 8);
    assert!(most8 >= 2, "8 connections, at most {most8} file at a time");
    assert_eq!(lock1.to_json(), lock8.to_json(), "same lock either way");
    assert_eq!(lock8.files.len(), files.len());
    for ((p, d), f) in files.iter().zip(&lock8.files) {
        assert_eq!(&f.path, p);
        assert_eq!(f.sha256, mpk_hub::oid::sha256_hex(d), "{p}");
    }
}

#[test]
fn lock_without_a_cache_names_the_file_the_hub_corrupts() {
    let mock = MockHub::start();
    many_small(&mock, "acme/small");
    mock.faults(|f| f.corrupt.push("shard/09.json".into()));
    let err = lock_repo(
        &hub_with(&mock, 8),
        None,
        "acme/small",
        "main",
        None,
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("shard/09.json"), "{err}");
}
