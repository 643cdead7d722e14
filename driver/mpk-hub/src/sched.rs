//! The transfer scheduler: every download from the Hub goes through here,
//! on up to [`HubConfig::connections`](crate::HubConfig) connections at
//! once (default [`DEFAULT_CONNECTIONS`]; `MPK_CONNECTIONS`,
//! `--connections`). It owns:
//!
//! - [`Target`]: a file resolved once (`HEAD resolve/<commit>/<path>`,
//!   checked against the lock); its redirect target is reused for every
//!   range and re-resolved only when the CDN refuses it (401/403/410: an
//!   expired signed URL), at most [`MAX_RERESOLVE`] times per file. So a
//!   135 GiB model costs one resolver call per file, however small the
//!   ranges.
//! - [`transfer`]: one byte range, `Range: bytes=a-b`, retried and resumed
//!   on its own (from the last byte received) under the client's rules
//!   (watchdog, caps, token only to the endpoint's origin, 429 pauses
//!   every connection). A `200` to a range that is not the whole file
//!   means the server refuses ranges: the file falls back to one
//!   whole-file request.
//! - [`fetch_files`]: files in parallel, large ones split into
//!   [`CHUNK`]-byte ranges, each written at its offset into
//!   `blobs/<etag>.mpk-partial` (never `.incomplete`: `huggingface_hub`
//!   resumes that name from its length, and ours is sparse and out of
//!   order) with the SHA-256 of every finished range appended to
//!   `blobs/<etag>.mpk-ranges`; a later run re-hashes those ranges and
//!   fetches only the rest. A file is verified whole before it gets its
//!   final name, under the shared `.locks` protocol.
//! - [`Prefetch`]: for `mpk reproduce`, ranges fetched out of order into a
//!   bounded reorder window ([`Prefetch::window`] chunks) and handed out
//!   in image order; nothing is written to disk.
//!
//! Why [`CHUNK`] = 8 MiB: enough ranges per shard to keep every
//! connection busy to the end of a file (a 32 MiB shard is 4 ranges, the
//! benchmark's 228 MiB model 28, a 5 GB shard 600); `reproduce` holds at
//! most `2 × connections + 1` of them (its reorder window and the one
//! being read: 136 MiB with the default 8), well inside a 512 MiB budget; a failed range costs at most 8 MiB again;
//! it equals the packing pipeline's batch; and a 135 GiB model is 17,280
//! range requests, all to the CDN (one resolver call per file). The cost
//! is one request round trip per range on a kept-alive connection: at
//! 300–450 MiB/s per connection a range takes 18–27 ms, so a 10 ms round
//! trip idles each connection about a third of the time, which the
//! default 8 connections cover (8 × 300 MiB/s × 2/3 ≈ 1.6 GB/s, the
//! aggregate the issue measured with 8 files in parallel); over a longer
//! round trip, raise `--connections`. The size is fixed (not derived from
//! the connection count) so a resume with other settings still finds the
//! ranges it recorded.

use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::cache::{BlobLock, HfCache};
use crate::client::{Attempt, ByteRange, Hub, Response};
use crate::fetch::{DELETED, Event, Expected, Progress, check_meta, verify};
use crate::names::{Commit, RepoId};
use crate::{Error, Result};

/// Range size (see the module documentation for the choice).
pub const CHUNK: u64 = 8 << 20;
/// Connections at once unless `MPK_CONNECTIONS` or `--connections` say
/// otherwise.
pub const DEFAULT_CONNECTIONS: usize = 8;
/// The most connections mpk opens to one Hub.
pub const MAX_CONNECTIONS: usize = 64;
/// Re-resolutions of one file after its signed URL was refused.
pub const MAX_RERESOLVE: u32 = 3;
/// Chunks in `reproduce`'s reorder window, at most (256 MiB).
pub const MAX_WINDOW: usize = 32;

/// `MPK_CONNECTIONS` (1 to [`MAX_CONNECTIONS`]; unset or empty: the
/// default).
pub fn connections_from_env() -> Result<usize> {
    match std::env::var("MPK_CONNECTIONS")
        .ok()
        .filter(|v| !v.is_empty())
    {
        None => Ok(DEFAULT_CONNECTIONS),
        Some(v) => check_connections(v.parse().ok(), &format!("MPK_CONNECTIONS={v:?}")),
    }
}

/// Checks a number of connections (1 to [`MAX_CONNECTIONS`]).
pub fn check_connections(n: Option<usize>, what: &str) -> Result<usize> {
    n.filter(|n| (1..=MAX_CONNECTIONS).contains(n))
        .ok_or_else(|| Error::Invalid {
            field: "setting",
            value: what.to_owned(),
            why: format!("the number of connections must be 1 to {MAX_CONNECTIONS}"),
        })
}

/// A file resolved once: where its bytes are, reused for every range.
#[derive(Debug)]
pub struct Target {
    repo: RepoId,
    commit: Commit,
    exp: Expected,
    /// (generation, URL): bumped by each re-resolution.
    url: Mutex<(u32, String)>,
    /// Its bytes sit behind a redirect (a CDN), so ranges do not cost
    /// resolver calls; a file served by the resolver itself is fetched
    /// in one request.
    ranged: bool,
    /// The server answered a range with the whole file: no more ranges.
    no_ranges: AtomicBool,
}

impl Target {
    /// `HEAD resolve/<commit>/<path>`, checked against `exp` (commit, ETag,
    /// size).
    pub fn resolve(hub: &Hub, repo: &RepoId, commit: &Commit, exp: &Expected) -> Result<Self> {
        if hub.config().offline {
            return Err(Error::Offline(format!("{repo}@{commit}/{}", exp.path)));
        }
        let meta = hub.file_meta(repo, commit, &exp.path)?;
        check_meta(&meta, commit, exp)?;
        let resolve_url = hub.resolve_url(repo, commit, &exp.path);
        Ok(Self {
            repo: repo.clone(),
            commit: commit.clone(),
            exp: exp.clone(),
            ranged: meta.url != resolve_url,
            url: Mutex::new((0, meta.url)),
            no_ranges: AtomicBool::new(false),
        })
    }

    /// What the lock expects.
    pub fn expected(&self) -> &Expected {
        &self.exp
    }

    /// Path in the repo.
    pub fn path(&self) -> &str {
        self.exp.path.as_str()
    }

    /// Size of the contents.
    pub fn size(&self) -> u64 {
        self.exp.size
    }

    /// The current download URL and its generation.
    pub fn url(&self) -> (u32, String) {
        self.url.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the server refused ranges for this file.
    pub fn refuses_ranges(&self) -> bool {
        self.no_ranges.load(Ordering::Relaxed)
    }

    /// Resolves again after generation `gen` was refused (unless another
    /// connection already did).
    pub(crate) fn refresh(&self, hub: &Hub, seen: u32, why: Error) -> Result<()> {
        let mut u = self.url.lock().unwrap_or_else(|p| p.into_inner());
        if u.0 != seen {
            return Ok(());
        }
        if !self.ranged {
            // The resolver itself refused: the token or the repo's access.
            return Err(why);
        }
        if u.0 >= MAX_RERESOLVE {
            return Err(Error::signed_url_refused(self.path(), why, u.0));
        }
        let meta = hub.file_meta(&self.repo, &self.commit, &self.exp.path)?;
        check_meta(&meta, &self.commit, &self.exp)?;
        *u = (u.0 + 1, meta.url);
        Ok(())
    }

    /// The ranges a download of the whole file is made of.
    fn chunks(&self) -> Vec<(u64, u64)> {
        let size = self.exp.size;
        if size == 0 {
            return Vec::new();
        }
        if !self.ranged {
            return vec![(0, size)];
        }
        (0..size.div_ceil(CHUNK))
            .map(|k| (k * CHUNK, ((k + 1) * CHUNK).min(size)))
            .collect()
    }
}

/// Why a range failed.
pub enum RangeFail {
    /// The server answered a range with the whole file (`200`); the
    /// response is handed back so its body can serve as the whole file.
    NoRanges(Box<Response>),
    /// A final error (after the retries), naming the file and offset.
    Err(Error),
    /// Not fetched: the file is being fetched whole.
    Skipped,
}

impl From<Error> for RangeFail {
    fn from(e: Error) -> Self {
        Self::Err(e)
    }
}

/// Receives the bytes of a range: `(offset in the file, bytes)`, in order.
pub type Sink<'a> = &'a mut dyn FnMut(u64, &[u8]) -> Result<()>;

fn content_range(r: &Response) -> Option<String> {
    r.headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// How [`transfer`] asks for and reads a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// `Range: bytes=a-b`; a body that goes on past `b` is refused.
    Range,
    /// `Range: bytes=a-b`, reading stops at `b` whatever follows (for a
    /// stream whose bytes are hashed anyway: `reproduce`).
    RangeUpToEnd,
    /// No `Range`: only a `200` of the whole file is accepted, each
    /// attempt from byte 0.
    Whole,
}

/// Bytes `[from, to)` of `t` into `sink`, retried and resumed on its own
/// (see [`How`]); `first` is a response already in hand for that request.
/// `retried` hears each retry.
pub fn transfer(
    hub: &Hub,
    t: &Target,
    (from, to): (u64, u64),
    how: How,
    mut first: Option<Response>,
    sink: Sink<'_>,
    retried: &mut dyn FnMut(&Error),
) -> Result<(), RangeFail> {
    let cfg = hub.config();
    let size = t.exp.size;
    let path = t.path();
    let whole = how == How::Whole;
    let mut pos = from;
    let mut failures = 0u32;
    loop {
        if whole {
            pos = 0;
        }
        if pos >= to && !(whole && first.is_some()) {
            return Ok(());
        }
        let (generation, url) = t.url();
        let mut since = 0u64;
        let res = match first.take() {
            Some(r) => Ok(r),
            None => {
                let range = (!whole).then_some(ByteRange {
                    from: pos,
                    to: Some(to),
                });
                hub.request("GET", &url, range, &format!("`{path}`"))
            }
        };
        let err = match res {
            Ok(mut r) => {
                let status = r.status().as_u16();
                let expect = format!("bytes {pos}-{}/", to - 1);
                let whole_body = status == 200 && (whole || (pos == 0 && to == size));
                if status == 200 && !whole_body {
                    return Err(RangeFail::NoRanges(Box::new(r)));
                }
                let cr = content_range(&r);
                // A server that says the file has another size: the bytes
                // are not the locked ones, whatever else it sends.
                let total = cr
                    .as_deref()
                    .and_then(|c| c.rsplit_once('/'))
                    .and_then(|(_, t)| t.parse::<u64>().ok());
                if let Some(n) = total.filter(|n| status == 206 && *n != size) {
                    return Err(RangeFail::Err(Error::HashMismatch {
                        path: path.to_owned(),
                        kind: "size",
                        expected: format!("{size} bytes"),
                        actual: format!("{n} bytes (the server's Content-Range)"),
                        note: "",
                    }));
                }
                let ok_range = status == 206
                    && !whole
                    && cr.as_deref().is_some_and(|c| {
                        c.strip_prefix(&expect)
                            .is_some_and(|total| total == "*" || total == size.to_string())
                    });
                if whole_body || ok_range {
                    let want = if whole { size } else { to - pos };
                    let before = pos;
                    let stop_at_end = how == How::RangeUpToEnd;
                    match read_body(hub, &mut r, &url, path, (&mut pos, want), stop_at_end, sink) {
                        Ok(()) => return Ok(()),
                        Err(Attempt::Fatal(e)) => return Err(RangeFail::Err(e)),
                        Err(Attempt::Retry(e)) => {
                            since = pos - before;
                            e
                        }
                    }
                } else {
                    Error::Protocol {
                        url: url.clone(),
                        msg: format!(
                            "`{path}`: HTTP {status} ({}) to a request for bytes {pos}-{}",
                            cr.as_deref().unwrap_or("no Content-Range"),
                            to - 1
                        ),
                    }
                }
            }
            Err(Attempt::Fatal(e @ Error::Unauthorized { .. }))
            | Err(Attempt::Fatal(e @ Error::Status { status: 410, .. }))
                if t.ranged =>
            {
                // An expired or refused signed URL: resolve again (the
                // refusal blames the CDN, not the token, once that fails).
                failures += 1;
                if failures >= cfg.attempts.max(1) + MAX_RERESOLVE {
                    return Err(RangeFail::Err(Error::signed_url_refused(
                        path, e, generation,
                    )));
                }
                t.refresh(hub, generation, e)?;
                continue;
            }
            Err(Attempt::Fatal(e)) => return Err(RangeFail::Err(e)),
            Err(Attempt::Retry(e)) => e,
        };
        if since >= cfg.limits.stall_min_bytes {
            failures = 0;
        }
        failures += 1;
        if failures >= cfg.attempts.max(1) {
            // A connection that kept failing leaves its file resumable;
            // bytes the server got wrong do not.
            return Err(RangeFail::Err(match err {
                Error::Network { .. } | Error::Status { .. } => Error::Network {
                    url: format!("`{path}` at byte {pos}"),
                    source: Box::new(err),
                },
                err => Error::Protocol {
                    url,
                    msg: format!("`{path}` at byte {pos}: {err}"),
                },
            }));
        }
        retried(&err);
        std::thread::sleep(cfg.backoff * 2u32.pow((failures - 1).min(10)));
    }
}

/// Reads a body of exactly `want` bytes starting at file offset `*pos`
/// into `sink`, under the watchdog, advancing `*pos`; a body that goes on
/// past `want` is a final error (read no further than one byte past it)
/// unless `stop_at_end`, one that ends early is retried from `*pos`.
fn read_body(
    hub: &Hub,
    r: &mut Response,
    url: &str,
    path: &str,
    (pos, want): (&mut u64, u64),
    stop_at_end: bool,
    sink: Sink<'_>,
) -> Result<(), Attempt> {
    let announced = r
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = announced.filter(|_| !stop_at_end) {
        if n > want {
            return Err(Attempt::Fatal(Error::Bound {
                url: url.to_owned(),
                msg: format!(
                    "`{path}` at byte {}: the server announces {n} bytes, {want} expected",
                    *pos
                ),
            }));
        }
    }
    let mut rd = hub.guard(r.body_mut().as_reader(), url);
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    loop {
        if got == want && announced == Some(want) {
            // The client stops at the announced length by itself; this
            // read sees the body's end, which hands the connection back to
            // the pool for the next request (keep-alive).
            let _ = rd.read(&mut buf[..1]);
            return Ok(());
        }
        if got == want && stop_at_end {
            return Ok(());
        }
        let room = (want - got)
            .saturating_add(u64::from(!stop_at_end))
            .min(buf.len() as u64) as usize;
        let n = match rd.read(&mut buf[..room]) {
            Ok(0) if got == want => return Ok(()),
            Ok(0) => {
                return Err(Attempt::Retry(Error::Network {
                    url: url.to_owned(),
                    source: Box::new(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("`{path}`: the connection closed at byte {}", *pos),
                    )),
                }));
            }
            Ok(n) => n,
            Err(e) => {
                return Err(Attempt::Retry(Error::Network {
                    url: url.to_owned(),
                    source: Box::new(e),
                }));
            }
        };
        if got + n as u64 > want {
            return Err(Attempt::Fatal(Error::Bound {
                url: url.to_owned(),
                msg: format!("`{path}`: the body goes on past the {want} bytes expected; refused"),
            }));
        }
        sink(*pos, &buf[..n]).map_err(Attempt::Fatal)?;
        got += n as u64;
        *pos += n as u64;
    }
}

/// A progress event with owned strings, sent from the connections to the
/// caller's thread.
enum Msg {
    Cached(String, u64),
    Start(String, u64, u64),
    Bytes(u64),
    Done(String),
    Retry(String, String),
}

impl Msg {
    fn emit(&self, progress: Progress<'_>) {
        progress(match self {
            Msg::Cached(p, n) => Event::Cached(p, *n),
            Msg::Start(p, from, n) => Event::Start(p, *from, *n),
            Msg::Bytes(n) => Event::Bytes(*n),
            Msg::Done(p) => Event::Done(p),
            Msg::Retry(p, why) => Event::Retry(p, why),
        });
    }
}

/// The header line of a ranges file: what the partial file is of.
fn ranges_header(exp: &Expected) -> String {
    format!("mpk-ranges 1 {} {} {CHUNK}\n", exp.etag(), exp.size)
}

/// A file being downloaded.
struct Active {
    idx: usize,
    target: Target,
    part: File,
    part_path: PathBuf,
    log: Mutex<File>,
    log_path: PathBuf,
    /// Ranges not yet written.
    remaining: AtomicUsize,
    /// Ranges with a digest in the log (kept or new).
    recorded: AtomicUsize,
    whole_claimed: AtomicBool,
    _lock: BlobLock,
}

impl Active {
    fn remove_partial(&self) {
        let _ = std::fs::remove_file(&self.part_path);
        let _ = std::fs::remove_file(&self.log_path);
    }
}

struct Chunk {
    file: Arc<Active>,
    from: u64,
    to: u64,
}

#[derive(Default)]
struct State {
    next_file: usize,
    chunks: VecDeque<Chunk>,
    active: Vec<Arc<Active>>,
    /// Files being started (their ranges not queued yet).
    starting: usize,
    failed: Option<Error>,
    shas: Vec<Option<String>>,
}

struct Fetch<'a> {
    hub: &'a Hub,
    cache: &'a HfCache,
    repo: &'a RepoId,
    commit: &'a Commit,
    files: &'a [Expected],
    state: Mutex<State>,
    cv: Condvar,
    stop: AtomicBool,
}

enum Job {
    File(usize),
    Chunk(Chunk),
}

/// Whether an error means the bytes (not the connection) were bad: the
/// partial file is then deleted instead of kept for a resume.
fn bad_data(e: &Error) -> bool {
    matches!(
        e,
        Error::HashMismatch { .. }
            | Error::LockMismatch(_)
            | Error::Protocol { .. }
            | Error::Bound { .. }
            | Error::Invalid { .. }
    )
}

impl Fetch<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_job(&self) -> Option<Job> {
        let mut s = self.lock();
        loop {
            if s.failed.is_some() {
                return None;
            }
            if let Some(c) = s.chunks.pop_front() {
                return Some(Job::Chunk(c));
            }
            if s.next_file < self.files.len() {
                s.next_file += 1;
                s.starting += 1;
                return Some(Job::File(s.next_file - 1));
            }
            if s.active.is_empty() && s.starting == 0 {
                return None;
            }
            s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn fail(&self, e: Error, file: Option<&Active>) {
        if let Some(f) = file {
            if bad_data(&e) {
                f.remove_partial();
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        let mut s = self.lock();
        if s.failed.is_none() {
            s.failed = Some(e);
        }
        self.cv.notify_all();
    }

    fn worker(&self, tx: &std::sync::mpsc::Sender<Msg>) {
        while let Some(job) = self.next_job() {
            let r = match job {
                Job::File(i) => {
                    let r = self.start_file(i, tx).map_err(|e| (e, None));
                    let mut s = self.lock();
                    s.starting -= 1;
                    self.cv.notify_all();
                    r
                }
                Job::Chunk(c) => self.chunk(&c, tx).map_err(|e| (e, Some(c.file))),
            };
            if let Err((e, f)) = r {
                self.fail(e, f.as_deref());
                return;
            }
        }
    }

    /// Takes the blob's lock, reuses a verified cached copy, else resolves
    /// the file, opens its partial download (keeping the ranges whose
    /// recorded digest still matches) and queues the missing ranges.
    fn start_file(&self, idx: usize, tx: &std::sync::mpsc::Sender<Msg>) -> Result<()> {
        let exp = &self.files[idx];
        let (cache, repo) = (self.cache, self.repo);
        let etag = exp.etag();
        let lock = cache.lock_blob(repo, &etag)?;
        let blob = cache.blob_path(repo, &etag);
        if std::fs::symlink_metadata(&blob).is_ok() {
            match verify(&blob, exp, DELETED) {
                Ok(sha) => {
                    cache.link_snapshot(repo, self.commit, &exp.path, &etag)?;
                    let _ = tx.send(Msg::Cached(exp.path.to_string(), exp.size));
                    self.lock().shas[idx] = Some(sha);
                    return Ok(());
                }
                // Never keep a bad blob under a valid name.
                Err(_) => std::fs::remove_file(&blob).map_err(Error::io(&blob))?,
            }
        }
        let target = Target::resolve(self.hub, repo, self.commit, exp)?;
        let plan = target.chunks();
        let (part, part_path) = cache.open_partial(repo, &etag, exp.size)?;
        let log_path = cache.ranges_path(repo, &etag);
        let kept = kept_ranges(&part, &part_path, &log_path, exp, &plan);
        let log = cache.open_ranges(repo, &etag, kept.is_empty())?;
        if kept.is_empty() {
            let mut l = &log;
            l.write_all(ranges_header(exp).as_bytes())
                .map_err(Error::io(&log_path))?;
        }
        let missing: Vec<_> = plan.into_iter().filter(|r| !kept.contains(r)).collect();
        let have: u64 = kept.iter().map(|(a, b)| b - a).sum();
        let _ = tx.send(Msg::Start(exp.path.to_string(), have, exp.size));
        let file = Arc::new(Active {
            idx,
            target,
            part,
            part_path,
            log: Mutex::new(log),
            log_path,
            remaining: AtomicUsize::new(missing.len()),
            recorded: AtomicUsize::new(kept.len()),
            whole_claimed: AtomicBool::new(false),
            _lock: lock,
        });
        if missing.is_empty() {
            return self.finish(&file, tx);
        }
        let mut s = self.lock();
        s.active.push(Arc::clone(&file));
        for (from, to) in missing {
            s.chunks.push_back(Chunk {
                file: Arc::clone(&file),
                from,
                to,
            });
        }
        self.cv.notify_all();
        Ok(())
    }

    /// Fetches one range into the partial file and records its digest; the
    /// connection that writes a file's last range verifies and names it.
    fn chunk(&self, c: &Chunk, tx: &std::sync::mpsc::Sender<Msg>) -> Result<()> {
        let f = &c.file;
        let t = &f.target;
        let path = t.path().to_owned();
        let mut h = Sha256::new();
        let mut sink = |off: u64, b: &[u8]| -> Result<()> {
            self.write_at(f, off, b, tx)?;
            h.update(b);
            Ok(())
        };
        let mut retried = |e: &Error| {
            let _ = tx.send(Msg::Retry(path.clone(), e.to_string()));
        };
        // Popped before the server was found to refuse ranges: the
        // whole-file download covers it.
        let res = if t.refuses_ranges() {
            Err(RangeFail::Skipped)
        } else {
            transfer(
                self.hub,
                t,
                (c.from, c.to),
                How::Range,
                None,
                &mut sink,
                &mut retried,
            )
        };
        match res {
            Ok(()) => {
                let line = format!("{} {} {}\n", c.from, c.to, hex::encode(h.finalize()));
                let log = f.log.lock().unwrap_or_else(|p| p.into_inner());
                (&*log)
                    .write_all(line.as_bytes())
                    .map_err(Error::io(&f.log_path))?;
                f.recorded.fetch_add(1, Ordering::Relaxed);
            }
            Err(RangeFail::Err(e)) => return Err(e),
            Err(RangeFail::Skipped) => {}
            Err(RangeFail::NoRanges(r)) => {
                // The server sends whole files: drop this file's other
                // ranges; one connection fetches it whole, starting with
                // the body in hand.
                t.no_ranges.store(true, Ordering::Relaxed);
                let dropped = {
                    let mut s = self.lock();
                    let before = s.chunks.len();
                    s.chunks.retain(|q| !Arc::ptr_eq(&q.file, f));
                    before - s.chunks.len()
                };
                f.remaining.fetch_sub(dropped, Ordering::AcqRel);
                if !f.whole_claimed.swap(true, Ordering::AcqRel) {
                    let mut sink =
                        |off: u64, b: &[u8]| -> Result<()> { self.write_at(f, off, b, tx) };
                    match transfer(
                        self.hub,
                        t,
                        (0, t.size()),
                        How::Whole,
                        Some(*r),
                        &mut sink,
                        &mut retried,
                    ) {
                        Ok(()) => {}
                        Err(RangeFail::Err(e)) => return Err(e),
                        Err(RangeFail::NoRanges(_) | RangeFail::Skipped) => {
                            unreachable!("a whole-file request")
                        }
                    }
                }
            }
        }
        if f.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish(f, tx)?;
        }
        Ok(())
    }

    /// Writes bytes of a range at their offset in the partial file.
    fn write_at(
        &self,
        f: &Active,
        off: u64,
        b: &[u8],
        tx: &std::sync::mpsc::Sender<Msg>,
    ) -> Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(Error::Io {
                path: f.part_path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::Interrupted, "stopped"),
            });
        }
        f.part
            .write_all_at(b, off)
            .map_err(Error::io(&f.part_path))?;
        let _ = tx.send(Msg::Bytes(b.len() as u64));
        Ok(())
    }

    /// Verifies a complete partial file and gives it its final name.
    fn finish(&self, f: &Arc<Active>, tx: &std::sync::mpsc::Sender<Msg>) -> Result<()> {
        let exp = &f.target.exp;
        let etag = exp.etag();
        let _ = f.part.sync_all();
        let sha = match verify(&f.part_path, exp, DELETED) {
            Ok(s) => s,
            Err(e) => {
                f.remove_partial();
                return Err(e);
            }
        };
        let blob = self.cache.blob_path(self.repo, &etag);
        std::fs::rename(&f.part_path, &blob).map_err(Error::io(&blob))?;
        let _ = std::fs::remove_file(&f.log_path);
        self.cache
            .link_snapshot(self.repo, self.commit, &exp.path, &etag)?;
        let _ = tx.send(Msg::Done(exp.path.to_string()));
        let mut s = self.lock();
        s.shas[f.idx] = Some(sha);
        s.active.retain(|a| !Arc::ptr_eq(a, f));
        self.cv.notify_all();
        Ok(())
    }
}

/// The ranges of `plan` whose digest in the ranges file still matches the
/// partial file's bytes (re-hashed now); empty when the ranges file is
/// missing or describes another file.
fn kept_ranges(
    part: &File,
    part_path: &Path,
    log_path: &Path,
    exp: &Expected,
    plan: &[(u64, u64)],
) -> Vec<(u64, u64)> {
    // A line per 8 MiB range: under 64 MiB for the largest file allowed.
    let Ok(text) = crate::cache::read_small(log_path, 64 << 20) else {
        return Vec::new();
    };
    let mut lines = text.lines();
    if lines.next().map(|l| format!("{l}\n")) != Some(ranges_header(exp)) {
        return Vec::new();
    }
    let mut recorded = HashMap::new();
    for l in lines {
        let mut w = l.split(' ');
        let (Some(a), Some(b), Some(d), None) = (w.next(), w.next(), w.next(), w.next()) else {
            continue; // a torn last line
        };
        if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
            recorded.insert((a, b), d.to_owned());
        }
    }
    let _ = part_path;
    let mut buf = vec![0u8; 1 << 20];
    plan.iter()
        .copied()
        .filter(|&(a, b)| {
            let Some(d) = recorded.get(&(a, b)) else {
                return false;
            };
            let mut h = Sha256::new();
            let mut off = a;
            while off < b {
                let n = ((b - off) as usize).min(buf.len());
                if part.read_exact_at(&mut buf[..n], off).is_err() {
                    return false;
                }
                h.update(&buf[..n]);
                off += n as u64;
            }
            hex::encode(h.finalize()) == *d
        })
        .collect()
}

/// Makes every file of `files` (of `repo` at `commit`) present and
/// verified in the cache and linked from the snapshot, on up to
/// `hub.config().connections` connections; returns each file's SHA-256
/// hex, in order. Stops at the first error; a partial download whose
/// bytes were not refused is kept (with its ranges file) for the next
/// run to resume.
pub fn fetch_files(
    hub: &Hub,
    cache: &HfCache,
    repo: &RepoId,
    commit: &Commit,
    files: &[Expected],
    progress: Progress<'_>,
) -> Result<Vec<String>> {
    if hub.config().offline {
        return files
            .iter()
            .map(|e| crate::fetch::fetch_file(hub, cache, repo, commit, e, progress))
            .collect();
    }
    let f = Fetch {
        hub,
        cache,
        repo,
        commit,
        files,
        state: Mutex::new(State {
            shas: vec![None; files.len()],
            ..State::default()
        }),
        cv: Condvar::new(),
        stop: AtomicBool::new(false),
    };
    progress(Event::Total(files.iter().map(|e| e.size).sum()));
    let n = hub.config().connections.clamp(1, MAX_CONNECTIONS);
    let (tx, rx) = std::sync::mpsc::channel::<Msg>();
    std::thread::scope(|s| {
        for _ in 0..n {
            let tx = tx.clone();
            let f = &f;
            s.spawn(move || f.worker(&tx));
        }
        drop(tx);
        for m in rx {
            m.emit(progress);
        }
    });
    let st = f.state.into_inner().unwrap_or_else(|p| p.into_inner());
    for a in &st.active {
        // Interrupted downloads with nothing recorded leave nothing.
        if a.recorded.load(Ordering::Relaxed) == 0 {
            a.remove_partial();
        }
    }
    if let Some(e) = st.failed {
        return Err(e);
    }
    st.shas
        .into_iter()
        .zip(files)
        .map(|(s, e)| {
            s.ok_or_else(|| Error::Protocol {
                url: String::new(),
                msg: format!("`{}` was not fetched", e.path),
            })
        })
        .collect()
}

/// Streams every file of `files` (of `repo` at `commit`) and hashes it,
/// writing nothing ([`crate::fetch::hash_remote`] for each), files in
/// parallel on up to `hub.config().connections` connections; returns each
/// file's SHA-256 hex, in order. `mpk lock` without a cache hashes the
/// repository's small (non-LFS) files this way: one request per file, so
/// a repository of many small files waits on N round trips at a time, not
/// one. Stops at the first error; with several, the first file's.
pub fn hash_files(
    hub: &Hub,
    repo: &RepoId,
    commit: &Commit,
    files: &[Expected],
    progress: Progress<'_>,
) -> Result<Vec<String>> {
    progress(Event::Total(files.iter().map(|e| e.size).sum()));
    let n = hub
        .config()
        .connections
        .clamp(1, MAX_CONNECTIONS)
        .min(files.len());
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<String>>>> =
        Mutex::new(files.iter().map(|_| None).collect());
    let (tx, rx) = std::sync::mpsc::channel::<Msg>();
    std::thread::scope(|s| {
        for _ in 0..n {
            let tx = tx.clone();
            let (next, stop, results) = (&next, &stop, &results);
            s.spawn(move || {
                let mut forward = |ev: Event<'_>| {
                    let _ = tx.send(match ev {
                        Event::Start(p, a, b) => Msg::Start(p.to_owned(), a, b),
                        Event::Bytes(k) => Msg::Bytes(k),
                        Event::Done(p) => Msg::Done(p.to_owned()),
                        Event::Retry(p, why) => Msg::Retry(p.to_owned(), why.to_owned()),
                        Event::Cached(p, k) => Msg::Cached(p.to_owned(), k),
                        Event::Total(_) => return,
                    });
                };
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(exp) = files.get(i) else { break };
                    let r = crate::fetch::hash_remote(hub, repo, commit, exp, &mut forward);
                    if r.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
                }
            });
        }
        drop(tx);
        for m in rx {
            m.emit(progress);
        }
    });
    let mut shas = Vec::with_capacity(files.len());
    let mut undone = None;
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    for (r, e) in results.into_iter().zip(files) {
        match r {
            Some(Ok(sha)) => shas.push(sha),
            Some(Err(err)) => return Err(err),
            // Left undone after another file failed: that file's error is
            // the one to report.
            None => {
                undone.get_or_insert_with(|| Error::Protocol {
                    url: String::new(),
                    msg: format!("`{}` was not hashed", e.path),
                });
            }
        }
    }
    undone.map_or(Ok(shas), Err)
}

/// One chunk handed to `reproduce`, or why it is not there.
enum Got {
    Bytes(Vec<u8>),
    NoRanges,
    Err(String),
}

struct Window {
    /// Every chunk, in the order the reader takes them.
    plan: Vec<(Arc<Target>, u64, u64)>,
    next_issue: usize,
    next_take: usize,
    done: HashMap<usize, Got>,
    free: Vec<Vec<u8>>,
    cancel: bool,
}

struct Shared {
    hub: Arc<Hub>,
    window: usize,
    state: Mutex<Window>,
    cv: Condvar,
    stop: AtomicBool,
}

/// `reproduce`'s ordered prefetch: the chunks of the given file ranges,
/// in the order given (image order), fetched on up to
/// `min(connections, window)` connections, at most [`Prefetch::window`]
/// chunks ahead of the reader; each buffer is reused, so the memory it
/// holds is at most `(window + 1) × CHUNK` bytes whatever the model's
/// size.
pub struct Prefetch {
    shared: Arc<Shared>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Prefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetch")
            .field("window", &self.shared.window)
            .finish()
    }
}

impl Prefetch {
    /// Starts fetching `ranges` (each `(file, from, to)`, split into
    /// chunks) in order.
    pub fn start(hub: Arc<Hub>, ranges: &[(Arc<Target>, u64, u64)]) -> Self {
        let conns = hub.config().connections.clamp(1, MAX_CONNECTIONS);
        let window = (2 * conns).min(MAX_WINDOW);
        let mut plan = Vec::new();
        for (t, from, to) in ranges {
            let mut a = *from;
            while a < *to {
                let b = (a + CHUNK).min(*to);
                plan.push((Arc::clone(t), a, b));
                a = b;
            }
        }
        let workers = conns.min(window).min(plan.len());
        let shared = Arc::new(Shared {
            hub,
            window,
            state: Mutex::new(Window {
                plan,
                next_issue: 0,
                next_take: 0,
                done: HashMap::new(),
                free: Vec::new(),
                cancel: false,
            }),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let workers = (0..workers)
            .map(|_| {
                let s = Arc::clone(&shared);
                std::thread::spawn(move || s.worker())
            })
            .collect();
        Self { shared, workers }
    }

    /// Chunks the reorder window holds at most (fetching or fetched, not
    /// yet read).
    pub fn window(&self) -> usize {
        self.shared.window
    }

    /// A reader of bytes `[from, to)` of `t`: from the window when they are
    /// the next planned chunks, else straight from the Hub (`direct`).
    pub fn reader(
        &self,
        t: &Arc<Target>,
        from: u64,
        to: u64,
        direct: Box<dyn FnMut(u64) -> Box<dyn Read + Send> + Send>,
    ) -> WindowReader {
        WindowReader {
            shared: Arc::clone(&self.shared),
            target: Arc::clone(t),
            pos: from,
            end: to,
            cur: None,
            direct,
            fallback: None,
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        {
            let mut w = self.shared.lock();
            w.cancel = true;
            self.shared.cv.notify_all();
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn worker(&self) {
        loop {
            let (i, t, from, to, mut buf) = {
                let mut w = self.lock();
                loop {
                    if w.cancel || w.next_issue >= w.plan.len() {
                        return;
                    }
                    if w.next_issue - w.next_take < self.window {
                        break;
                    }
                    w = self.cv.wait(w).unwrap_or_else(|p| p.into_inner());
                }
                let i = w.next_issue;
                w.next_issue += 1;
                let (t, a, b) = w.plan[i].clone();
                let buf = w.free.pop().unwrap_or_default();
                (i, t, a, b, buf)
            };
            let got = if t.refuses_ranges() {
                Got::NoRanges
            } else {
                buf.clear();
                buf.reserve_exact((to - from) as usize);
                let stop = &self.stop;
                let mut sink = |off: u64, b: &[u8]| -> Result<()> {
                    if stop.load(Ordering::Relaxed) {
                        return Err(Error::Protocol {
                            url: String::new(),
                            msg: "stopped".into(),
                        });
                    }
                    buf.truncate((off - from) as usize);
                    buf.extend_from_slice(b);
                    Ok(())
                };
                match transfer(
                    &self.hub,
                    &t,
                    (from, to),
                    How::RangeUpToEnd,
                    None,
                    &mut sink,
                    &mut |_| {},
                ) {
                    Ok(()) => Got::Bytes(std::mem::take(&mut buf)),
                    Err(RangeFail::NoRanges(_) | RangeFail::Skipped) => {
                        t.no_ranges.store(true, Ordering::Relaxed);
                        Got::NoRanges
                    }
                    Err(RangeFail::Err(e)) => Got::Err(e.to_string()),
                }
            };
            let mut w = self.lock();
            if !buf.is_empty() || buf.capacity() > 0 {
                w.free.push(buf);
            }
            w.done.insert(i, got);
            self.cv.notify_all();
        }
    }

    /// The next planned chunk if it is `[pos, …)` of `t`, waiting for it;
    /// planned chunks of files that refuse ranges (read whole by their own
    /// reader) are passed over first.
    fn take(&self, t: &Arc<Target>, pos: u64) -> Option<Got> {
        let mut w = self.lock();
        loop {
            let i = w.next_take;
            let (head, from) = match w.plan.get(i) {
                Some((pt, a, _)) => (Arc::clone(pt), *a),
                None => return None,
            };
            let mine = Arc::ptr_eq(&head, t) && from == pos;
            if !mine && !head.refuses_ranges() {
                return None;
            }
            let got = loop {
                if let Some(g) = w.done.remove(&i) {
                    break g;
                }
                w = self.cv.wait(w).unwrap_or_else(|p| p.into_inner());
            };
            w.next_take += 1;
            self.cv.notify_all();
            if mine {
                return Some(got);
            }
            if let Got::Bytes(b) = got {
                w.free.push(b);
            }
        }
    }

    fn give_back(&self, buf: Vec<u8>) {
        self.lock().free.push(buf);
    }
}

/// A `Read` over bytes of a file from [`Prefetch`]'s window, in order.
pub struct WindowReader {
    shared: Arc<Shared>,
    target: Arc<Target>,
    pos: u64,
    end: u64,
    cur: Option<(Vec<u8>, usize)>,
    direct: Box<dyn FnMut(u64) -> Box<dyn Read + Send> + Send>,
    fallback: Option<Box<dyn Read + Send>>,
}

impl std::fmt::Debug for WindowReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowReader")
            .field("path", &self.target.path())
            .field("pos", &self.pos)
            .field("end", &self.end)
            .finish()
    }
}

impl Drop for WindowReader {
    fn drop(&mut self) {
        if let Some((b, _)) = self.cur.take() {
            self.shared.give_back(b);
        }
    }
}

impl Read for WindowReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.pos >= self.end || out.is_empty() {
                return Ok(0);
            }
            if let Some(r) = &mut self.fallback {
                let want = out.len().min((self.end - self.pos) as usize);
                let n = r.read(&mut out[..want])?;
                self.pos += n as u64;
                return Ok(n);
            }
            if let Some((b, off)) = &mut self.cur {
                if *off < b.len() {
                    let n = out.len().min(b.len() - *off);
                    out[..n].copy_from_slice(&b[*off..*off + n]);
                    *off += n;
                    self.pos += n as u64;
                    return Ok(n);
                }
                let (b, _) = self.cur.take().expect("a chunk");
                self.shared.give_back(b);
                continue;
            }
            match self.shared.take(&self.target, self.pos) {
                Some(Got::Bytes(b)) => self.cur = Some((b, 0)),
                Some(Got::Err(e)) => {
                    return Err(std::io::Error::other(format!(
                        "`{}` at byte {}: {e}",
                        self.target.path(),
                        self.pos
                    )));
                }
                // Not planned here, or the server refuses ranges: read the
                // rest in one request.
                Some(Got::NoRanges) | None => {
                    self.fallback = Some((self.direct)(self.pos));
                }
            }
        }
    }
}
