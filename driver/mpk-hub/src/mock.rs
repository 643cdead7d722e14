//! A mock Hugging Face Hub for tests (feature `mock`): an HTTP/1.1 server
//! on 127.0.0.1 (std only, one thread per connection, `Connection: close`)
//! that speaks the Hub's real interface: revision info, the recursive tree
//! with `Link` pagination, `resolve` with `X-Repo-Commit`, `ETag`,
//! `X-Linked-Etag`/`X-Linked-Size` and a redirect of LFS files to a
//! separate download path, `Range` requests, and a bearer token for gated
//! repos. File contents are sent from shared memory, counted
//! ([`MockHub::served`]) and optionally capped per connection
//! ([`MockHub::cap`]). Faults can be injected per file path (including
//! refused ranges, a `200` to a range, a tampered range), and a hostile mode
//! ([`Hostile`]) makes it lie: path-like oids and revisions, endless and
//! trickling bodies, self-linking, endless and oversized listing pages,
//! and redirects of LFS downloads to another origin (a second mock, which
//! records whether a request carried `Authorization`).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use crate::oid::{git_blob_sha1, lfs_pointer, sha256_hex};

/// A file of a mock repo.
#[derive(Debug, Clone)]
pub struct MockFile {
    /// Contents.
    pub data: Arc<Vec<u8>>,
    /// Stored in LFS.
    pub lfs: bool,
    /// (tree oid, ETag), computed once: every request looks files up by
    /// them, and hashing the contents each time would make the mock,
    /// not the client, the bottleneck of a benchmark.
    ids: (String, String),
}

impl MockFile {
    /// A file with these contents.
    pub fn new(data: Vec<u8>, lfs: bool) -> Self {
        let ids = if lfs {
            let sha = sha256_hex(&data);
            let oid = git_blob_sha1(lfs_pointer(&sha, data.len() as u64).as_bytes());
            (oid, sha)
        } else {
            let oid = git_blob_sha1(&data);
            (oid.clone(), oid)
        };
        Self {
            data: Arc::new(data),
            lfs,
            ids,
        }
    }
    /// The tree `oid`.
    pub fn oid(&self) -> String {
        self.ids.0.clone()
    }
    /// The ETag (LFS sha256 or git oid).
    pub fn etag(&self) -> String {
        self.ids.1.clone()
    }
}

/// Injected faults, by file path.
#[derive(Debug, Default)]
pub struct Faults {
    /// Flip the first byte of the served contents (same size).
    pub corrupt: Vec<String>,
    /// Serve the contents short by 1 byte, with a matching Content-Length.
    pub truncate: Vec<String>,
    /// 404 on resolve.
    pub missing: Vec<String>,
    /// Answer this many 500s before serving the contents.
    pub fail_500: HashMap<String, u32>,
    /// Drop the connection after this many body bytes, this many times.
    pub drop_after: HashMap<String, (usize, u32)>,
    /// Wait this many milliseconds before sending the contents.
    pub slow_ms: HashMap<String, u64>,
    /// Flip the byte at this offset of the served contents (a tampered
    /// range in the middle of a file).
    pub corrupt_at: HashMap<String, usize>,
    /// Ignore `Range` on every file: always `200` and the whole file.
    pub no_ranges: bool,
    /// Answer this many ranged requests of the file (not from byte 0)
    /// with `200` and the whole file, then honour ranges again.
    pub range_200: HashMap<String, u32>,
    /// Answer a ranged request of the file starting at this offset with a
    /// 500, this many times.
    pub fail_range: HashMap<String, (usize, u32)>,
    /// Answer this many downloads of the file with 429 and `Retry-After:`
    /// this many seconds.
    pub rate_limit: HashMap<String, (u32, u64)>,
    /// Answer this many requests to the LFS download path with 403 (an
    /// expired signed URL).
    pub cdn_403: u32,
}

/// A lying Hub: each field turns on one hostile behaviour.
#[derive(Debug, Default, Clone)]
pub struct Hostile {
    /// Tree `oid` (and `ETag`) of these non-LFS files, replaced.
    pub oid: HashMap<String, String>,
    /// `lfs.oid` (and `X-Linked-Etag`) of these LFS files, replaced; the
    /// tree `oid` becomes the blob of the matching pointer, so the lie is
    /// consistent.
    pub lfs_oid: HashMap<String, String>,
    /// Tree `path` of these files, replaced (the listing lies about where
    /// a file is).
    pub path: HashMap<String, String>,
    /// Answer the revision info of any revision (not only known branches)
    /// with the main branch's commit.
    pub any_revision: bool,
    /// After these files' contents, send bytes forever (no
    /// `Content-Length`).
    pub endless: Vec<String>,
    /// Send these files' contents one byte every this many milliseconds.
    pub trickle_ms: HashMap<String, u64>,
    /// Send the API's JSON (revision info, tree pages) one byte every this
    /// many milliseconds.
    pub trickle_api_ms: Option<u64>,
    /// Accept connections but never answer.
    pub hang: bool,
    /// Every tree page's `Link` points to itself.
    pub self_link: bool,
    /// The tree never ends: every page links to a new cursor.
    pub endless_pages: bool,
    /// Tree pages of this many bytes (JSON whitespace, no
    /// `Content-Length`).
    pub page_bytes: Option<u64>,
    /// `/lfs-cdn/<sha>` answers with a redirect to `<prefix>/lfs-cdn/<sha>`
    /// instead of the bytes (a redirect chain, or a loop when the prefix
    /// is the server's own).
    pub cdn_redirect: Option<String>,
    /// Redirect LFS files to this URL prefix (`<prefix>/lfs-cdn/<sha>`)
    /// instead of the Hub's own `/lfs-cdn`.
    pub lfs_location: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    /// repo → branch → commit.
    refs: HashMap<String, HashMap<String, String>>,
    /// (repo, commit) → files.
    commits: HashMap<(String, String), BTreeMap<String, MockFile>>,
    gated: Vec<String>,
    faults: Faults,
    hostile: Hostile,
    log: Vec<String>,
    authed: Vec<String>,
    /// Bytes per second each connection may send (file contents).
    cap: Option<u64>,
    /// File content bytes sent so far.
    served: u64,
    /// TCP connections accepted so far.
    connections: u64,
    /// Serve several requests per connection (HTTP/1.1 keep-alive).
    keep_alive: bool,
}

/// A running mock Hub.
#[derive(Debug, Clone)]
pub struct MockHub {
    state: Arc<Mutex<State>>,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The token gated repos require.
    pub token: String,
    /// Tree page size (the real Hub uses 1000).
    pub page: usize,
}

impl MockHub {
    /// Starts a server on a free port; it lives as long as the process.
    pub fn start() -> Self {
        Self::start_on(0).expect("bind 127.0.0.1")
    }

    /// Starts a server on `port` of 127.0.0.1 (0: any free port).
    pub fn start_on(port: u16) -> std::io::Result<Self> {
        let l = TcpListener::bind(("127.0.0.1", port))?;
        let endpoint = format!("http://{}", l.local_addr().expect("address"));
        let hub = Self {
            state: Arc::default(),
            endpoint,
            token: "hf_mocktoken".into(),
            page: 3,
        };
        let h = hub.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let h = h.clone();
                h.state.lock().expect("lock").connections += 1;
                std::thread::spawn(move || {
                    let _ = h.serve(s);
                });
            }
        });
        Ok(hub)
    }

    /// Changes the hostile behaviours.
    pub fn hostile(&self, f: impl FnOnce(&mut Hostile)) {
        f(&mut self.state.lock().expect("lock").hostile);
    }

    /// Every request that carried an `Authorization` header, as `METHOD
    /// path`.
    pub fn authed(&self) -> Vec<String> {
        self.state.lock().expect("lock").authed.clone()
    }

    /// Adds (or replaces) commit `commit` of `repo` with `files`
    /// (`path → (bytes, lfs)`) and points `branch` at it.
    pub fn put(&self, repo: &str, branch: &str, commit: &str, files: Vec<(&str, Vec<u8>, bool)>) {
        let mut s = self.state.lock().expect("lock");
        let m = files
            .into_iter()
            .map(|(p, d, lfs)| (p.to_owned(), MockFile::new(d, lfs)))
            .collect();
        s.commits.insert((repo.into(), commit.into()), m);
        s.refs
            .entry(repo.into())
            .or_default()
            .insert(branch.into(), commit.into());
    }

    /// Requires the token for `repo`.
    pub fn gate(&self, repo: &str) {
        self.state.lock().expect("lock").gated.push(repo.into());
    }

    /// Changes the faults.
    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.state.lock().expect("lock").faults);
    }

    /// Caps every connection's throughput for file contents at this many
    /// bytes per second (a CDN-like per-connection limit; no aggregate
    /// limit); `None` lifts it.
    pub fn cap(&self, bytes_per_sec: Option<u64>) {
        self.state.lock().expect("lock").cap = bytes_per_sec;
    }

    /// File content bytes written to clients so far (bodies of downloads,
    /// counted as they are sent).
    pub fn served(&self) -> u64 {
        self.state.lock().expect("lock").served
    }

    /// Keeps connections open between requests (`Connection: keep-alive`)
    /// unless the client or a fault closes them; off by default.
    pub fn keep_alive(&self, on: bool) {
        self.state.lock().expect("lock").keep_alive = on;
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.lock().expect("lock").connections
    }

    /// Every request so far, as `METHOD path [range]`.
    pub fn log(&self) -> Vec<String> {
        self.state.lock().expect("lock").log.clone()
    }

    fn serve(&self, s: TcpStream) -> std::io::Result<()> {
        let mut rd = BufReader::new(s.try_clone()?);
        while self.serve_one(&s, &mut rd)? {}
        Ok(())
    }

    /// Answers one request; whether the connection stays open for another.
    fn serve_one(&self, s: &TcpStream, rd: &mut BufReader<TcpStream>) -> std::io::Result<bool> {
        let mut line = String::new();
        if rd.read_line(&mut line)? == 0 {
            return Ok(false);
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if rd.read_line(&mut h)? == 0 || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let range = headers
            .get("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| {
                let a = a.parse::<usize>().ok()?;
                let b = if b.is_empty() {
                    None
                } else {
                    Some(b.parse::<usize>().ok()?)
                };
                Some((a, b))
            });
        self.state.lock().expect("lock").log.push(format!(
            "{method} {target}{}",
            range
                .map(|(a, b)| format!(
                    " range={a}-{}",
                    b.map(|b| b.to_string()).unwrap_or_default()
                ))
                .unwrap_or_default()
        ));
        let auth = headers.get("authorization").cloned();
        if auth.is_some() {
            self.state
                .lock()
                .expect("lock")
                .authed
                .push(format!("{method} {target}"));
        }
        let r = self.route(&method, &target, range, auth.as_deref());
        let (hang, keep) = {
            let st = self.state.lock().expect("lock");
            (st.hostile.hang, st.keep_alive)
        };
        if hang {
            // Hold the connection open without a byte until the client goes.
            let mut buf = [0u8; 1];
            let _ = std::io::Read::read(rd, &mut buf);
            return Ok(false);
        }
        let keep = keep
            && headers
                .get("connection")
                .is_none_or(|c| !c.eq_ignore_ascii_case("close"))
            && r.stream.is_none()
            && r.drop_after.is_none();
        r.write(s, method == "HEAD", self, keep)?;
        Ok(keep)
    }

    fn route(
        &self,
        method: &str,
        target: &str,
        range: Option<(usize, Option<usize>)>,
        auth: Option<&str>,
    ) -> Resp {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let segs: Vec<String> = path.split('/').skip(1).map(decode).collect();
        let mut st = self.state.lock().expect("lock");
        let authed = auth == Some(&format!("Bearer {}", self.token));
        if segs.first().map(String::as_str) == Some("lfs-cdn") {
            // /lfs-cdn/<sha256>: the separate download path of LFS files.
            let sha = segs.get(1).cloned().unwrap_or_default();
            if st.faults.cdn_403 > 0 {
                st.faults.cdn_403 -= 1;
                return Resp::status(403);
            }
            if let Some(prefix) = &st.hostile.cdn_redirect {
                let mut r = Resp::status(302);
                r.headers.push((
                    "Location".into(),
                    format!("{prefix}/lfs-cdn/{}", crate::client::encode(&sha, false)),
                ));
                return r;
            }
            let found = st
                .commits
                .values()
                .flat_map(|m| m.iter())
                .find_map(|(p, f)| {
                    (f.lfs && etag_of(&st.hostile, p, f) == sha).then(|| (p.clone(), f.clone()))
                });
            return match found {
                Some((p, f)) => content(&mut st, &p, &f, range, Vec::new()),
                None => Resp::status(404),
            };
        }
        let api = segs.first().map(String::as_str) == Some("api");
        let rest = if api {
            &segs[2.min(segs.len())..]
        } else {
            &segs[..]
        };
        if rest.len() < 4 {
            return Resp::status(404);
        }
        let repo = format!("{}/{}", rest[0], rest[1]);
        if st.gated.contains(&repo) && !authed {
            return Resp::status(401);
        }
        let rev = rest[3].clone();
        let commit = match st.refs.get(&repo) {
            Some(r) if r.contains_key(&rev) => r[&rev].clone(),
            Some(r) if st.hostile.any_revision && r.contains_key("main") => r["main"].clone(),
            _ => rev.clone(),
        };
        let Some(files) = st.commits.get(&(repo.clone(), commit.clone())).cloned() else {
            return Resp::status(404);
        };
        let trickle = st.hostile.trickle_api_ms.map(Stream::Trickle);
        let api_json = |mut r: Resp| {
            if r.stream.is_none() {
                r.stream = trickle;
            }
            r
        };
        match (api, rest[2].as_str()) {
            (true, "revision") => {
                let sib: Vec<_> = files
                    .keys()
                    .map(|p| serde_json::json!({ "rfilename": p }))
                    .collect();
                api_json(Resp::json(
                    serde_json::json!({ "id": repo, "sha": commit, "siblings": sib }),
                ))
            }
            (true, "tree") => {
                let mut entries = Vec::new();
                let mut dirs = std::collections::BTreeSet::new();
                for (p, f) in &files {
                    let mut d = String::new();
                    for seg in p
                        .split('/')
                        .rev()
                        .skip(1)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                    {
                        d = if d.is_empty() {
                            seg.to_owned()
                        } else {
                            format!("{d}/{seg}")
                        };
                        dirs.insert(d.clone());
                    }
                    let mut e = serde_json::json!({
                        "type": "file", "oid": oid_of(&st.hostile, p, f), "size": f.data.len(),
                        "path": st.hostile.path.get(p).unwrap_or(p),
                    });
                    if f.lfs {
                        let etag = etag_of(&st.hostile, p, f);
                        e["lfs"] = serde_json::json!({
                            "oid": etag, "size": f.data.len(),
                            "pointerSize": lfs_pointer(&etag, f.data.len() as u64).len(),
                        });
                    }
                    entries.push(e);
                }
                for d in dirs {
                    entries.push(serde_json::json!({
                        "type": "directory", "oid": "0".repeat(40), "path": d,
                    }));
                }
                let start: usize = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("cursor="))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                // Endless pages repeat the entries, so the count grows.
                let first = if st.hostile.endless_pages {
                    start % entries.len().max(1)
                } else {
                    start
                };
                let end = (first + self.page).min(entries.len());
                let mut r = Resp::json(serde_json::Value::Array(
                    entries[first.min(end)..end].to_vec(),
                ));
                let h = &st.hostile;
                if let Some(n) = h.page_bytes {
                    r.stream = Some(Stream::Huge(n));
                }
                if h.self_link || h.endless_pages {
                    let next = if h.self_link { start } else { start + 1 };
                    r.headers.push((
                        "Link".into(),
                        format!(
                            "<{}/api/models/{repo}/tree/{}?recursive=true&cursor={next}>; rel=\"next\"",
                            self.endpoint,
                            crate::client::encode(&rev, false)
                        ),
                    ));
                } else if end < entries.len() {
                    r.headers.push((
                        "Link".into(),
                        format!(
                            "<{}/api/models/{repo}/tree/{}?recursive=true&cursor={end}>; rel=\"next\"",
                            self.endpoint,
                            crate::client::encode(&rev, false)
                        ),
                    ));
                }
                api_json(r)
            }
            (false, "resolve") => {
                let fpath = rest[4..].join("/");
                if st.faults.missing.contains(&fpath) {
                    return Resp::status(404);
                }
                let Some(f) = files.get(&fpath).cloned() else {
                    return Resp::status(404);
                };
                let mut h = vec![
                    ("X-Repo-Commit".to_owned(), commit.clone()),
                    (
                        "ETag".to_owned(),
                        format!("\"{}\"", oid_of(&st.hostile, &fpath, &f)),
                    ),
                ];
                if f.lfs {
                    let etag = etag_of(&st.hostile, &fpath, &f);
                    h.push(("X-Linked-Etag".into(), format!("\"{etag}\"")));
                    h.push(("X-Linked-Size".into(), f.data.len().to_string()));
                    let prefix = st.hostile.lfs_location.clone().unwrap_or_default();
                    h.push((
                        "Location".into(),
                        format!(
                            "{prefix}/lfs-cdn/{}?sig=x",
                            crate::client::encode(&etag, false)
                        ),
                    ));
                    let ptr = lfs_pointer(&etag, f.data.len() as u64);
                    Resp {
                        status: 302,
                        headers: h,
                        body: ptr.into_bytes(),
                        shared: None,
                        drop_after: None,
                        stream: None,
                    }
                } else if method == "HEAD" {
                    let mut r = Resp::status(200);
                    r.headers = h;
                    r.shared = Some(Shared {
                        data: Arc::clone(&f.data),
                        start: 0,
                        end: f.data.len(),
                        flip: Vec::new(),
                    });
                    r
                } else {
                    content(&mut st, &fpath, &f, range, h)
                }
            }
            _ => Resp::status(404),
        }
    }
}

fn content(
    st: &mut State,
    path: &str,
    f: &MockFile,
    range: Option<(usize, Option<usize>)>,
    mut headers: Vec<(String, String)>,
) -> Resp {
    if let Some(n) = st.faults.fail_500.get_mut(path) {
        if *n > 0 {
            *n -= 1;
            return Resp::status(500);
        }
    }
    if let Some((n, secs)) = st.faults.rate_limit.get_mut(path) {
        if *n > 0 {
            *n -= 1;
            let mut r = Resp::status(429);
            r.headers.push(("Retry-After".into(), secs.to_string()));
            return r;
        }
    }
    if let (Some((from, _)), Some((at, n))) = (range, st.faults.fail_range.get_mut(path)) {
        if from == *at && *n > 0 {
            *n -= 1;
            return Resp::status(500);
        }
    }
    let mut total = f.data.len();
    let mut flip = Vec::new();
    if st.faults.corrupt.iter().any(|p| p == path) && total > 0 {
        flip.push(0);
    }
    if let Some(&at) = st.faults.corrupt_at.get(path) {
        flip.push(at);
    }
    if st.faults.truncate.iter().any(|p| p == path) {
        total = total.saturating_sub(1);
    }
    let mut drop_after = None;
    if let Some((n, times)) = st.faults.drop_after.get_mut(path) {
        if *times > 0 {
            *times -= 1;
            drop_after = Some(*n);
        }
    }
    if let Some(ms) = st.faults.slow_ms.get(path) {
        headers.push(("X-Mock-Delay-Ms".into(), ms.to_string()));
    }
    let stream = if st.hostile.endless.iter().any(|p| p == path) {
        Some(Stream::Endless)
    } else {
        st.hostile
            .trickle_ms
            .get(path)
            .map(|ms| Stream::Trickle(*ms))
    };
    let mut range = range;
    if st.faults.no_ranges {
        range = None;
    }
    if let (Some((from, _)), Some(n)) = (range, st.faults.range_200.get_mut(path)) {
        if from > 0 && *n > 0 {
            *n -= 1;
            range = None;
        }
    }
    let (status, start, end) = match range {
        Some((from, last)) if from < total => {
            let end = last.map_or(total, |l| (l + 1).min(total));
            if end <= from {
                (416, 0, 0)
            } else {
                headers.push((
                    "Content-Range".into(),
                    format!("bytes {from}-{}/{total}", end - 1),
                ));
                (206, from, end)
            }
        }
        Some(_) => (416, 0, 0),
        None => (200, 0, total),
    };
    if !st.faults.no_ranges {
        headers.push(("Accept-Ranges".into(), "bytes".into()));
    }
    let shared = Shared {
        data: Arc::clone(&f.data),
        start,
        end,
        flip,
    };
    let (body, shared) = if stream.is_some() {
        (shared.to_vec(), None)
    } else {
        (Vec::new(), Some(shared))
    };
    Resp {
        status,
        headers,
        body,
        shared,
        drop_after,
        stream,
    }
}

/// A slice of a file's contents, sent without copying the file, with
/// bytes flipped where a fault says so.
struct Shared {
    data: Arc<Vec<u8>>,
    start: usize,
    end: usize,
    /// Offsets in the file whose byte is sent flipped.
    flip: Vec<usize>,
}

impl Shared {
    fn len(&self) -> usize {
        self.end - self.start
    }
    /// Bytes `[a, b)` of the slice (offsets within it), flips applied.
    fn piece(&self, a: usize, b: usize) -> std::borrow::Cow<'_, [u8]> {
        let (fa, fb) = (self.start + a, self.start + b);
        let s = &self.data[fa..fb];
        if self.flip.iter().any(|&o| (fa..fb).contains(&o)) {
            let mut v = s.to_vec();
            for &o in &self.flip {
                if (fa..fb).contains(&o) {
                    v[o - fa] ^= 1;
                }
            }
            std::borrow::Cow::Owned(v)
        } else {
            std::borrow::Cow::Borrowed(s)
        }
    }
    fn to_vec(&self) -> Vec<u8> {
        self.piece(0, self.len()).into_owned()
    }
}

/// The tree `oid` the (maybe lying) Hub publishes for a file.
fn oid_of(h: &Hostile, path: &str, f: &MockFile) -> String {
    if let Some(o) = h.oid.get(path) {
        return o.clone();
    }
    if f.lfs && h.lfs_oid.contains_key(path) {
        let e = etag_of(h, path, f);
        return git_blob_sha1(lfs_pointer(&e, f.data.len() as u64).as_bytes());
    }
    f.oid()
}

/// The ETag (LFS oid for LFS files) the (maybe lying) Hub publishes.
fn etag_of(h: &Hostile, path: &str, f: &MockFile) -> String {
    match (f.lfs, h.lfs_oid.get(path), h.oid.get(path)) {
        (true, Some(e), _) => e.clone(),
        (false, _, Some(o)) => o.clone(),
        _ => f.etag(),
    }
}

/// How a body is sent when the Hub lies about it.
#[derive(Debug, Clone, Copy)]
enum Stream {
    /// The body, then bytes forever; no `Content-Length`.
    Endless,
    /// The body one byte at a time, this many milliseconds apart.
    Trickle(u64),
    /// A JSON array padded with whitespace to this many bytes; no
    /// `Content-Length`.
    Huge(u64),
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut o = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                o.push(v);
                i += 3;
                continue;
            }
        }
        o.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&o).into_owned()
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// File contents (instead of `body`).
    shared: Option<Shared>,
    drop_after: Option<usize>,
    stream: Option<Stream>,
}

impl Resp {
    fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: format!("status {status}").into_bytes(),
            shared: None,
            drop_after: None,
            stream: None,
        }
    }
    fn json(v: serde_json::Value) -> Self {
        Self {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: v.to_string().into_bytes(),
            shared: None,
            drop_after: None,
            stream: None,
        }
    }
    fn write(
        self,
        mut s: &TcpStream,
        head: bool,
        hub: &MockHub,
        keep: bool,
    ) -> std::io::Result<()> {
        let mut out = format!(
            "HTTP/1.1 {} X\r\nConnection: {}\r\n",
            self.status,
            if keep { "keep-alive" } else { "close" }
        );
        let unannounced = matches!(self.stream, Some(Stream::Endless | Stream::Huge(_)));
        let len = self.shared.as_ref().map_or(self.body.len(), Shared::len);
        if (!self.headers.iter().any(|(k, _)| k == "X-Linked-Size") || !head) && !unannounced {
            out.push_str(&format!("Content-Length: {len}\r\n"));
        }
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        s.write_all(out.as_bytes())?;
        if let Some((_, ms)) = self.headers.iter().find(|(k, _)| k == "X-Mock-Delay-Ms") {
            s.flush()?;
            std::thread::sleep(std::time::Duration::from_millis(ms.parse().unwrap_or(0)));
        }
        if let (false, Some(st)) = (head, self.stream) {
            return write_stream(s, &self.body, st);
        }
        if !head {
            let n = self.drop_after.unwrap_or(len).min(len);
            match &self.shared {
                Some(sh) => {
                    // In pieces, each counted, at most `cap` bytes per
                    // second on this connection.
                    let cap = hub.state.lock().expect("lock").cap;
                    let t0 = std::time::Instant::now();
                    let mut sent = 0usize;
                    // Small pieces keep a cap smooth; without one, 1 MiB
                    // pieces spare the loopback benchmark's two cores.
                    let piece = if cap.is_some_and(|c| c > 0) {
                        64 << 10
                    } else {
                        1 << 20
                    };
                    while sent < n {
                        let k = (n - sent).min(piece);
                        s.write_all(&sh.piece(sent, sent + k))?;
                        sent += k;
                        hub.state.lock().expect("lock").served += k as u64;
                        if let Some(c) = cap.filter(|c| *c > 0) {
                            let due = std::time::Duration::from_secs_f64(sent as f64 / c as f64);
                            if let Some(w) = due.checked_sub(t0.elapsed()) {
                                std::thread::sleep(w);
                            }
                        }
                    }
                }
                None => s.write_all(&self.body[..n])?,
            }
        }
        s.flush()?;
        if keep {
            return Ok(());
        }
        s.shutdown(std::net::Shutdown::Both)
    }
}

/// Sends a hostile body until it ends or the client goes away.
fn write_stream(mut s: &TcpStream, body: &[u8], st: Stream) -> std::io::Result<()> {
    match st {
        Stream::Endless => {
            s.write_all(body)?;
            let chunk = vec![b'x'; 1 << 16];
            loop {
                s.write_all(&chunk)?;
            }
        }
        Stream::Trickle(ms) => {
            for b in body {
                s.write_all(std::slice::from_ref(b))?;
                s.flush()?;
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
        }
        Stream::Huge(n) => {
            // `[` … `]` around the page's entries, padded with spaces.
            let inner = body.strip_prefix(b"[").unwrap_or(body);
            s.write_all(b"[")?;
            let pad = n.saturating_sub(body.len() as u64);
            let chunk = vec![b' '; 1 << 16];
            let mut left = pad;
            while left > 0 {
                let k = left.min(chunk.len() as u64) as usize;
                s.write_all(&chunk[..k])?;
                left -= k as u64;
            }
            s.write_all(inner)?;
        }
    }
    s.flush()?;
    s.shutdown(std::net::Shutdown::Both)
}
