//! A small blocking client for the Hub's HTTP interface (revision info,
//! recursive tree with `Link` pagination, `resolve` metadata and ranged
//! downloads), with retries and exponential backoff on 5xx, 429 and
//! network errors. Configured from the environment like `huggingface_hub`:
//! `HF_ENDPOINT`, `HF_TOKEN` (else `$HF_HOME/token`), `HF_HUB_OFFLINE`,
//! plus the bounds of [`Limits`] (`MPK_HUB_*`).
//!
//! The Hub is not trusted. Every value it sends is validated
//! ([`crate::names`]) before use; every body is read under a size cap and
//! a minimum-progress watchdog ([`Guarded`]); listings are capped in pages
//! and entries, and a `Link` seen twice is refused. The token goes only to
//! the endpoint's origin (scheme, host and port, compared parsed, default
//! ports normalised): redirects are followed by hand, at most
//! [`Limits::max_redirects`] hops, and a hop to another origin goes without
//! `Authorization`; a URL with userinfo (`http://hub@evil/`) is refused.
//! Proxies from the environment (`ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY`,
//! `NO_PROXY`, as ureq reads them) are only ever CONNECT tunnels or SOCKS:
//! the request (and the token) goes to the target origin through the
//! tunnel, never to the proxy as a request of its own; over `https` the
//! proxy sees only TLS.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::io::Read;
use std::time::{Duration, Instant};

use crate::names::{Commit, GitOid, RepoId, RepoPath, Revision, Sha256Hex, check_size};
use crate::{Error, Result};

/// Bounds on what the Hub may make mpk do, each with its environment
/// variable (a positive integer; unset or empty: the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `MPK_HUB_STALL_SECS` (default 30): the minimum-progress window. A
    /// transfer that, over this many seconds spent waiting for the server,
    /// receives fewer than [`Limits::stall_min_bytes`] bytes is cut and
    /// retried (then fails); a single read also times out after it.
    pub stall: Duration,
    /// `MPK_HUB_STALL_MIN_BYTES` (default 16384): the bytes each window
    /// must bring.
    pub stall_min_bytes: u64,
    /// `MPK_HUB_MAX_PAGES` (default 10000): tree listing pages.
    pub max_pages: u64,
    /// `MPK_HUB_MAX_ENTRIES` (default 1000000): tree listing entries.
    pub max_entries: u64,
    /// `MPK_HUB_MAX_JSON_BYTES` (default 33554432, 32 MiB): one JSON body
    /// (a listing page, a revision info) read into memory.
    pub max_json_bytes: u64,
    /// `MPK_HUB_MAX_REDIRECTS` (default 10): redirect hops per request.
    pub max_redirects: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            stall: Duration::from_secs(30),
            stall_min_bytes: 16 << 10,
            max_pages: 10_000,
            max_entries: 1_000_000,
            max_json_bytes: 32 << 20,
            max_redirects: 10,
        }
    }
}

fn env_num(k: &str, default: u64) -> Result<u64> {
    match env(k) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| Error::Invalid {
                field: "setting",
                value: format!("{k}={v:?}"),
                why: "not a positive integer".into(),
            }),
    }
}

impl Limits {
    /// The defaults, overridden by the `MPK_HUB_*` variables.
    pub fn from_env() -> Result<Self> {
        let d = Self::default();
        Ok(Self {
            stall: Duration::from_secs(env_num("MPK_HUB_STALL_SECS", d.stall.as_secs())?),
            stall_min_bytes: env_num("MPK_HUB_STALL_MIN_BYTES", d.stall_min_bytes)?,
            max_pages: env_num("MPK_HUB_MAX_PAGES", d.max_pages)?,
            max_entries: env_num("MPK_HUB_MAX_ENTRIES", d.max_entries)?,
            max_json_bytes: env_num("MPK_HUB_MAX_JSON_BYTES", d.max_json_bytes)?,
            max_redirects: u32::try_from(env_num("MPK_HUB_MAX_REDIRECTS", d.max_redirects.into())?)
                .unwrap_or(u32::MAX),
        })
    }
}

/// Where and how to reach the Hub. Its `Debug` never shows the token.
#[derive(Clone)]
pub struct HubConfig {
    /// Base URL, no trailing slash (default `https://huggingface.co`).
    pub endpoint: String,
    /// Bearer token for gated or private repos.
    pub token: Option<String>,
    /// No network at all: only the cache.
    pub offline: bool,
    /// Attempts per request (at least 1).
    pub attempts: u32,
    /// First backoff; doubles after each failed attempt.
    pub backoff: Duration,
    /// Bounds on transfers and listings.
    pub limits: Limits,
    /// Connections at once for downloads (`MPK_CONNECTIONS`, `--connections`;
    /// default [`crate::sched::DEFAULT_CONNECTIONS`], at most
    /// [`crate::sched::MAX_CONNECTIONS`]).
    pub connections: usize,
}

impl std::fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConfig")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("offline", &self.offline)
            .field("attempts", &self.attempts)
            .field("backoff", &self.backoff)
            .field("limits", &self.limits)
            .field("connections", &self.connections)
            .finish()
    }
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

impl HubConfig {
    /// Reads `HF_ENDPOINT`, `HF_TOKEN` (else the token file in `HF_HOME`,
    /// default `~/.cache/huggingface`), `HF_HUB_OFFLINE` and the
    /// `MPK_HUB_*` bounds ([`Limits`]).
    pub fn from_env() -> Result<Self> {
        let endpoint = env("HF_ENDPOINT")
            .unwrap_or_else(|| "https://huggingface.co".into())
            .trim_end_matches('/')
            .to_owned();
        let token = env("HF_TOKEN").or_else(|| {
            let home = env("HF_HOME").unwrap_or_else(|| {
                format!("{}/.cache/huggingface", env("HOME").unwrap_or_default())
            });
            std::fs::read_to_string(format!("{home}/token"))
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
        });
        let offline = env("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
        });
        Ok(Self {
            endpoint,
            token,
            offline,
            attempts: 5,
            backoff: Duration::from_millis(200),
            limits: Limits::from_env()?,
            connections: crate::sched::connections_from_env()?,
        })
    }
}

/// The origin of a URL: scheme, lowercase host and port (80 and 443
/// filled in), compared to decide where the token may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses the origin of an absolute `http` or `https` URL; refuses
    /// userinfo (`http://user@host/`), which only serves to disguise a
    /// host.
    pub fn of(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::Invalid {
            field: "URL",
            value: format!("{:?}", url.chars().take(200).collect::<String>()),
            why: why.to_owned(),
        };
        let uri: ureq::http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let scheme = uri
            .scheme_str()
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| bad("not absolute"))?;
        let default = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(bad("not http or https")),
        };
        let auth = uri.authority().ok_or_else(|| bad("has no host"))?;
        if auth.as_str().contains('@') {
            return Err(bad("holds userinfo (`user@host`), refused"));
        }
        if auth.host().is_empty() {
            return Err(bad("has no host"));
        }
        Ok(Self {
            scheme,
            host: auth.host().to_ascii_lowercase(),
            port: auth.port_u16().unwrap_or(default),
        })
    }
}

impl std::fmt::Display for Origin {
    /// `scheme://host:port`, the port always written.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Resolves a `Location` or `Link` target against the URL it came from:
/// absolute, scheme-relative (`//host/…`) or absolute-path (`/…`)
/// references; the result's origin is checked ([`Origin::of`]).
pub fn join_url(base: &str, reference: &str) -> Result<String> {
    let r = reference.trim();
    let joined = if r.starts_with("http://") || r.starts_with("https://") {
        r.to_owned()
    } else if let Some(rest) = r.strip_prefix("//") {
        let scheme = base.split_once("://").map_or("https", |(s, _)| s);
        format!("{scheme}://{rest}")
    } else if r.starts_with('/') {
        let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        format!("{scheme}://{authority}{r}")
    } else {
        return Err(Error::Invalid {
            field: "redirect or link target",
            value: format!("{:?}", r.chars().take(200).collect::<String>()),
            why: "not an absolute URL or an absolute path".into(),
        });
    };
    Origin::of(&joined)?;
    Ok(joined)
}

/// A body reader under the minimum-progress rule: over each window of
/// [`Limits::stall`] spent waiting inside `read` (time the caller spends
/// elsewhere does not count), at least [`Limits::stall_min_bytes`] must
/// arrive, or the read fails with `TimedOut`. With the per-read timeout
/// (also the window), a server that sends nothing, or trickles a byte
/// every few seconds, is cut within two windows.
pub struct Guarded<R> {
    inner: R,
    url: String,
    limits: Limits,
    waited: Duration,
    got: u64,
}

impl<R> std::fmt::Debug for Guarded<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded").field("url", &self.url).finish()
    }
}

impl<R: Read> Guarded<R> {
    /// Guards `inner`, a body of `url`.
    pub fn new(inner: R, url: &str, limits: Limits) -> Self {
        Self {
            inner,
            url: url.to_owned(),
            limits,
            waited: Duration::ZERO,
            got: 0,
        }
    }
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let t = Instant::now();
        let r = self.inner.read(buf);
        self.waited += t.elapsed();
        let n = *r.as_ref().unwrap_or(&0);
        self.got += n as u64;
        if self.waited >= self.limits.stall {
            if self.got < self.limits.stall_min_bytes && !matches!(r, Ok(0)) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "{}: stalled: {} bytes in {} s, fewer than {} (MPK_HUB_STALL_SECS, MPK_HUB_STALL_MIN_BYTES)",
                        self.url,
                        self.got,
                        self.waited.as_secs(),
                        self.limits.stall_min_bytes
                    ),
                ));
            }
            self.waited = Duration::ZERO;
            self.got = 0;
        }
        r
    }
}

/// One entry of the recursive tree listing, as the Hub sends it (our own
/// types: hf-hub's lose `lfs.oid`); nothing in it is trusted until
/// [`TreeFile::from_entry`] checked it.
#[derive(Debug, Clone, Deserialize)]
pub struct TreeEntry {
    /// `file` or `directory`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Git blob SHA-1 (of the pointer, for LFS files).
    #[serde(default)]
    pub oid: String,
    /// Size of the contents (files).
    #[serde(default)]
    pub size: u64,
    /// Path in the repo.
    pub path: String,
    /// LFS details.
    #[serde(default)]
    pub lfs: Option<TreeLfs>,
}

/// LFS details of a tree entry.
#[derive(Debug, Clone, Deserialize)]
pub struct TreeLfs {
    /// SHA-256 of the contents.
    pub oid: String,
    /// Size of the contents.
    pub size: u64,
}

/// A file of the tree listing, validated.
#[derive(Debug, Clone)]
pub struct TreeFile {
    /// Path in the repo.
    pub path: RepoPath,
    /// Size of the contents.
    pub size: u64,
    /// Git blob SHA-1 (of the pointer, for LFS files).
    pub oid: GitOid,
    /// LFS SHA-256 of the contents, for LFS files.
    pub lfs: Option<Sha256Hex>,
}

impl TreeFile {
    /// Checks a `file` entry: path, oid, LFS oid, sizes (within bounds,
    /// and `lfs.size` equal to `size`).
    pub fn from_entry(e: &TreeEntry) -> Result<Self> {
        let path = RepoPath::parse(&e.path)?;
        let in_entry = |err: Error| Error::Invalid {
            field: "tree entry",
            value: format!("`{path}`"),
            why: err.to_string(),
        };
        let size = check_size("size", e.size).map_err(in_entry)?;
        let oid = GitOid::parse(&e.oid).map_err(in_entry)?;
        let lfs = match &e.lfs {
            None => None,
            Some(l) => {
                if l.size != size {
                    return Err(in_entry(Error::Invalid {
                        field: "lfs.size",
                        value: l.size.to_string(),
                        why: format!("differs from size {size}"),
                    }));
                }
                Some(Sha256Hex::parse(&l.oid).map_err(in_entry)?)
            }
        };
        Ok(Self {
            path,
            size,
            oid,
            lfs,
        })
    }
}

/// What `HEAD …/resolve/<commit>/<path>` says about a file.
#[derive(Debug, Clone)]
pub struct FileMeta {
    /// `X-Repo-Commit`.
    pub commit: Option<String>,
    /// `X-Linked-Etag` or `ETag`, without quotes.
    pub etag: Option<String>,
    /// `X-Linked-Size` or `Content-Length`.
    pub size: Option<u64>,
    /// Where the bytes are (the redirect target, or the resolve URL);
    /// absolute, without userinfo.
    pub url: String,
}

/// Whether a failed attempt may be retried.
#[derive(Debug)]
pub enum Attempt {
    /// Worth another try (5xx, 429, network).
    Retry(Error),
    /// Final.
    Fatal(Error),
}

impl From<Error> for Attempt {
    fn from(e: Error) -> Self {
        Self::Fatal(e)
    }
}

/// Bytes `[from, to)` of a body (`to: None`: to the end), sent as
/// `Range: bytes=from-(to-1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub from: u64,
    /// One past the last byte, or the end of the file.
    pub to: Option<u64>,
}

/// The longest wait a 429 may ask for before mpk gives up instead.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Idle keep-alive connections the client keeps (one per download
/// connection, and then some).
const MAX_IDLE: usize = 2 * crate::sched::MAX_CONNECTIONS;

/// The wait a 429 asks for: `Retry-After` (seconds; an HTTP date is not
/// parsed and counts as the default backoff), else the IETF `RateLimit`
/// header's `t=` (seconds to reset, as the Hub sends:
/// `"api";r=0;t=55`), else `RateLimit-Reset` / `X-RateLimit-Reset`
/// (seconds).
pub fn retry_after(r: &Response) -> Option<Duration> {
    let secs = |s: &str| s.trim().parse::<u64>().ok();
    if let Some(v) = header(r, "retry-after").as_deref().and_then(secs) {
        return Some(Duration::from_secs(v));
    }
    if let Some(v) = header(r, "ratelimit") {
        let t = v
            .split([';', ','])
            .find_map(|p| p.trim().strip_prefix("t=").and_then(secs));
        if let Some(t) = t {
            return Some(Duration::from_secs(t));
        }
    }
    ["ratelimit-reset", "x-ratelimit-reset"]
        .iter()
        .find_map(|k| header(r, k).as_deref().and_then(secs))
        .map(Duration::from_secs)
}

/// Percent-encodes a repo path or revision, keeping `/` when `keep_slash`.
pub fn encode(s: &str, keep_slash: bool) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// A Hub client.
#[derive(Debug)]
pub struct Hub {
    cfg: HubConfig,
    origin: Origin,
    agent: ureq::Agent,
    /// No request leaves before this instant: set by a 429's
    /// `Retry-After` (or `RateLimit` reset), shared by every connection.
    pause: std::sync::Mutex<Option<Instant>>,
}

/// Response type of the HTTP client.
pub type Response = ureq::http::Response<ureq::Body>;

fn header(r: &Response, k: &str) -> Option<String> {
    r.headers()
        .get(k)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The body of `r`, at most `limit` bytes, under the watchdog.
fn read_capped(
    r: &mut Response,
    url: &str,
    limits: Limits,
    limit: u64,
) -> Result<Vec<u8>, Attempt> {
    if let Some(n) = header(r, "content-length").and_then(|s| s.parse::<u64>().ok()) {
        if n > limit {
            return Err(Attempt::Fatal(Error::Bound {
                url: url.to_owned(),
                msg: format!(
                    "a JSON body of {n} bytes is larger than {limit} (MPK_HUB_MAX_JSON_BYTES)"
                ),
            }));
        }
    }
    let mut body = Vec::new();
    Guarded::new(r.body_mut().as_reader(), url, limits)
        .take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| {
            Attempt::Retry(Error::Network {
                url: url.to_owned(),
                source: Box::new(e),
            })
        })?;
    if body.len() as u64 > limit {
        return Err(Attempt::Fatal(Error::Bound {
            url: url.to_owned(),
            msg: format!("a JSON body larger than {limit} bytes (MPK_HUB_MAX_JSON_BYTES)"),
        }));
    }
    Ok(body)
}

#[derive(Deserialize)]
struct RevisionInfo {
    sha: Option<String>,
}

impl Hub {
    /// A client for `cfg`; refuses an endpoint that is not an `http(s)`
    /// origin without userinfo.
    pub fn new(cfg: HubConfig) -> Result<Self> {
        let origin = Origin::of(&cfg.endpoint).map_err(|e| Error::Protocol {
            url: "HF_ENDPOINT".into(),
            msg: e.to_string(),
        })?;
        let stall = Some(cfg.limits.stall);
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .max_redirects_will_error(false)
                .accept_encoding("identity")
                .user_agent(concat!("mpk/", env!("CARGO_PKG_VERSION")))
                .timeout_connect(Some(Duration::from_secs(30)))
                .timeout_recv_response(stall)
                .timeout_per_read(stall)
                .max_idle_connections(MAX_IDLE)
                .max_idle_connections_per_host(MAX_IDLE)
                .build(),
        );
        Ok(Self {
            cfg,
            origin,
            agent,
            pause: std::sync::Mutex::new(None),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.cfg
    }

    /// Guards a body reader of `url` with the minimum-progress rule.
    pub fn guard<R: Read>(&self, inner: R, url: &str) -> Guarded<R> {
        Guarded::new(inner, url, self.cfg.limits)
    }

    /// Whether the token may go to `url`: same origin as the endpoint.
    /// Refuses a URL with userinfo or without an http(s) origin.
    pub fn same_origin(&self, url: &str) -> Result<bool> {
        Ok(Origin::of(url)? == self.origin)
    }

    /// Runs `f` until it succeeds, fails finally, or runs out of attempts,
    /// sleeping `backoff · 2^n` between attempts.
    pub fn retry<T>(&self, mut f: impl FnMut(u32) -> Result<T, Attempt>) -> Result<T> {
        let mut n = 0;
        loop {
            match f(n) {
                Ok(v) => return Ok(v),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(e)) if n + 1 >= self.cfg.attempts.max(1) => return Err(e),
                Err(Attempt::Retry(_)) => {
                    std::thread::sleep(self.cfg.backoff * 2u32.pow(n.min(10)));
                    n += 1;
                }
            }
        }
    }

    /// Waits while a 429 asked every connection to pause.
    fn wait_pause(&self) {
        let until = *self.pause.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = until {
            let now = Instant::now();
            if t > now {
                std::thread::sleep(t - now);
            }
        }
    }

    /// Records a 429's wait (`Retry-After` seconds, else the `RateLimit`
    /// header's `t=` reset, else `RateLimit-Reset`/`X-RateLimit-Reset`
    /// seconds) for every connection; a wait longer than
    /// [`MAX_RETRY_AFTER`] is refused.
    fn note_429(&self, r: &Response, url: &str) -> Result<(), Attempt> {
        let Some(wait) = retry_after(r) else {
            return Ok(());
        };
        if wait > MAX_RETRY_AFTER {
            return Err(Attempt::Fatal(Error::Status {
                url: format!(
                    "{url} (rate limited: the Hub asks to wait {} s, more than {} s; try again later)",
                    wait.as_secs(),
                    MAX_RETRY_AFTER.as_secs()
                ),
                status: 429,
            }));
        }
        let until = Instant::now() + wait;
        let mut p = self.pause.lock().unwrap_or_else(|p| p.into_inner());
        if p.is_none_or(|t| t < until) {
            *p = Some(until);
        }
        Ok(())
    }

    fn send(&self, method: &str, url: &str, range: Option<ByteRange>) -> Result<Response, Attempt> {
        if self.cfg.offline {
            return Err(Attempt::Fatal(Error::Offline(url.to_owned())));
        }
        self.wait_pause();
        let same = self.same_origin(url)?;
        let mut req = match method {
            "HEAD" => self.agent.head(url),
            _ => self.agent.get(url),
        };
        if let (Some(t), true) = (&self.cfg.token, same) {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        match range {
            Some(ByteRange { from, to: None }) => {
                req = req.header("Range", &format!("bytes={from}-"));
            }
            Some(ByteRange { from, to: Some(to) }) => {
                req = req.header("Range", &format!("bytes={from}-{}", to - 1));
            }
            None => {}
        }
        req.call().map_err(|e| {
            Attempt::Retry(Error::Network {
                url: url.to_owned(),
                source: Box::new(e),
            })
        })
    }

    /// Sends a request and sorts out the status: 2xx (and, for `HEAD`,
    /// 3xx) are returned; a `GET` follows redirects by hand (at most
    /// [`Limits::max_redirects`] hops; the token only on hops to the
    /// endpoint's origin); 401/403 and 404 are final errors; 5xx and 429
    /// are retried (a 429's `Retry-After` pauses every connection).
    pub fn request(
        &self,
        method: &str,
        url: &str,
        range: Option<ByteRange>,
        what: &str,
    ) -> Result<Response, Attempt> {
        let mut at = url.to_owned();
        let mut hops = 0;
        loop {
            let r = self.send(method, &at, range)?;
            let status = r.status().as_u16();
            let url = at.clone();
            return match status {
                300..=399 if method == "GET" => {
                    hops += 1;
                    if hops > self.cfg.limits.max_redirects {
                        return Err(Attempt::Fatal(Error::Bound {
                            url,
                            msg: format!(
                                "more than {} redirects (MPK_HUB_MAX_REDIRECTS)",
                                self.cfg.limits.max_redirects
                            ),
                        }));
                    }
                    let Some(loc) = header(&r, "location") else {
                        return Err(Attempt::Fatal(Error::Protocol {
                            url,
                            msg: format!("HTTP {status} without a Location"),
                        }));
                    };
                    at = join_url(&url, &loc)?;
                    continue;
                }
                200..=399 => Ok(r),
                401 | 403 => Err(Attempt::Fatal(Error::Unauthorized { url, status })),
                404 => Err(Attempt::Fatal(Error::NotFound {
                    url,
                    what: what.to_owned(),
                })),
                416 => Ok(r),
                429 => {
                    self.note_429(&r, &url)?;
                    Err(Attempt::Retry(Error::Status { url, status }))
                }
                500..=599 => Err(Attempt::Retry(Error::Status { url, status })),
                _ => Err(Attempt::Fatal(Error::Status { url, status })),
            };
        }
    }

    fn get_json<T: DeserializeOwned>(&self, url: &str, what: &str) -> Result<(T, Option<String>)> {
        self.retry(|_| {
            let mut r = self.request("GET", url, None, what)?;
            let link = header(&r, "link");
            let body = read_capped(&mut r, url, self.cfg.limits, self.cfg.limits.max_json_bytes)?;
            let v = serde_json::from_slice(&body).map_err(|e| {
                Attempt::Fatal(Error::Protocol {
                    url: url.to_owned(),
                    msg: format!("unexpected JSON for {what}: {e}"),
                })
            })?;
            Ok((v, link))
        })
    }

    /// Resolves a branch, tag or commit of `repo` to its 40-hex commit.
    pub fn revision(&self, repo: &RepoId, rev: &Revision) -> Result<Commit> {
        let url = format!(
            "{}/api/models/{repo}/revision/{}",
            self.cfg.endpoint,
            encode(rev.as_str(), false)
        );
        let (v, _): (RevisionInfo, _) =
            self.get_json(&url, &format!("repo {repo} at revision {rev}"))?;
        v.sha
            .as_deref()
            .ok_or_else(|| Error::Protocol {
                url: url.clone(),
                msg: "no `sha` in the revision info".into(),
            })
            .and_then(|s| {
                Commit::parse(s).map_err(|e| Error::Protocol {
                    url: url.clone(),
                    msg: format!("revision info `sha`: {e}"),
                })
            })
    }

    /// Every file of `repo` at `commit` (directories left out), all pages
    /// (`Link: <…>; rel="next"`), each entry validated; at most
    /// [`Limits::max_pages`] pages and [`Limits::max_entries`] entries,
    /// every page on the endpoint's origin, no page URL twice.
    pub fn tree(&self, repo: &RepoId, commit: &Commit) -> Result<Vec<TreeFile>> {
        let lim = self.cfg.limits;
        let mut url = format!(
            "{}/api/models/{repo}/tree/{commit}?recursive=true",
            self.cfg.endpoint
        );
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut entries = 0u64;
        for _page in 0..lim.max_pages {
            seen.insert(url.clone());
            let (page, link): (Vec<TreeEntry>, _) =
                self.get_json(&url, &format!("tree of {repo} at {commit}"))?;
            entries += page.len() as u64;
            if entries > lim.max_entries {
                return Err(Error::Bound {
                    url,
                    msg: format!(
                        "the tree listing has more than {} entries (MPK_HUB_MAX_ENTRIES)",
                        lim.max_entries
                    ),
                });
            }
            for e in page.iter().filter(|e| e.kind == "file") {
                out.push(TreeFile::from_entry(e).map_err(|err| Error::Protocol {
                    url: url.clone(),
                    msg: err.to_string(),
                })?);
            }
            let Some(next) = link.as_deref().and_then(next_link) else {
                return Ok(out);
            };
            let next = join_url(&url, &next).map_err(|e| Error::Protocol {
                url: url.clone(),
                msg: format!("`Link`: {e}"),
            })?;
            if !self.same_origin(&next)? {
                return Err(Error::Protocol {
                    url,
                    msg: format!("`Link` leaves the Hub's origin: {next}"),
                });
            }
            if seen.contains(&next) {
                return Err(Error::Protocol {
                    url,
                    msg: format!("`Link` points to a page already listed: {next}"),
                });
            }
            url = next;
        }
        Err(Error::Bound {
            url,
            msg: format!(
                "the tree listing has more than {} pages (MPK_HUB_MAX_PAGES)",
                lim.max_pages
            ),
        })
    }

    /// The resolve URL of a file at a commit.
    pub fn resolve_url(&self, repo: &RepoId, commit: &Commit, path: &RepoPath) -> String {
        format!(
            "{}/{repo}/resolve/{commit}/{}",
            self.cfg.endpoint,
            encode(path.as_str(), true)
        )
    }

    /// `HEAD` on the resolve URL, not following redirects; a `Location`
    /// is resolved against it and must be a URL without userinfo.
    pub fn file_meta(&self, repo: &RepoId, commit: &Commit, path: &RepoPath) -> Result<FileMeta> {
        let url = self.resolve_url(repo, commit, path);
        self.retry(|_| {
            let r = self.request(
                "HEAD",
                &url,
                None,
                &format!("`{path}` in {repo} at {commit}"),
            )?;
            let unq = |s: String| s.trim_start_matches("W/").trim_matches('"').to_owned();
            let size = header(&r, "x-linked-size")
                .or_else(|| header(&r, "content-length"))
                .and_then(|s| s.parse().ok());
            let location = match header(&r, "location") {
                Some(l) if r.status().is_redirection() => {
                    Some(join_url(&url, &l).map_err(|e| Error::Protocol {
                        url: url.clone(),
                        msg: format!("`Location`: {e}"),
                    })?)
                }
                _ => None,
            };
            Ok(FileMeta {
                commit: header(&r, "x-repo-commit"),
                etag: header(&r, "x-linked-etag")
                    .or_else(|| header(&r, "etag"))
                    .map(unq),
                size,
                url: location.unwrap_or_else(|| url.clone()),
            })
        })
    }
}

/// The target of `rel="next"` in a `Link` header.
pub fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (u, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next")
            .then(|| {
                u.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_encoding() {
        assert_eq!(
            next_link(r#"<https://h/api/models/a/b/tree/c?cursor=x>; rel="next""#).as_deref(),
            Some("https://h/api/models/a/b/tree/c?cursor=x")
        );
        assert_eq!(next_link(r#"<https://h/x>; rel="prev""#), None);
        assert_eq!(encode("dir/é b.txt", true), "dir/%C3%A9%20b.txt");
        assert_eq!(encode("refs/pr/1", false), "refs%2Fpr%2F1");
    }

    #[test]
    fn the_wait_a_429_asks_for() {
        let r = |h: &[(&str, &str)]| {
            let mut b = ureq::http::Response::builder().status(429);
            for (k, v) in h {
                b = b.header(*k, *v);
            }
            b.body(ureq::Body::builder().data(Vec::new())).unwrap()
        };
        let s = Duration::from_secs;
        assert_eq!(retry_after(&r(&[("Retry-After", "7")])), Some(s(7)));
        assert_eq!(
            retry_after(&r(&[("RateLimit", "\"api\";r=0;t=55")])),
            Some(s(55))
        );
        assert_eq!(retry_after(&r(&[("X-RateLimit-Reset", "3")])), Some(s(3)));
        assert_eq!(
            retry_after(&r(&[
                ("Retry-After", "2"),
                ("RateLimit", "\"api\";r=0;t=55")
            ])),
            Some(s(2))
        );
        // An HTTP date, or nothing: the ordinary backoff.
        assert_eq!(
            retry_after(&r(&[("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")])),
            None
        );
        assert_eq!(retry_after(&r(&[])), None);
    }

    #[test]
    fn debug_hides_the_token() {
        let mut c = HubConfig {
            endpoint: "https://h".into(),
            token: Some("hf_secret".into()),
            offline: false,
            attempts: 1,
            backoff: Duration::ZERO,
            limits: Limits::default(),
            connections: 1,
        };
        assert!(!format!("{c:?}").contains("hf_secret"));
        c.endpoint = "https://u@h".into();
        let e = Hub::new(c).unwrap_err().to_string();
        assert!(e.contains("userinfo") && !e.contains("hf_secret"), "{e}");
    }

    #[test]
    fn origins() {
        let o = |u: &str| Origin::of(u).unwrap();
        assert_eq!(
            o("https://huggingface.co/x"),
            o("HTTPS://HuggingFace.co:443/y")
        );
        assert_eq!(o("http://h/"), o("http://h:80/"));
        assert_ne!(o("http://h:1234/"), o("http://h:12345/"));
        assert_ne!(o("http://h/"), o("https://h/"));
        assert_ne!(o("http://h/"), o("http://h.evil/"));
        for bad in [
            "http://127.0.0.1:80@evil/x",
            "http://user:pw@h/",
            "ftp://h/",
            "/relative",
            "http://",
        ] {
            assert!(Origin::of(bad).is_err(), "{bad}");
        }
        assert_eq!(
            join_url("http://h:1/a/b?c", "/cdn/x?s=1").unwrap(),
            "http://h:1/cdn/x?s=1"
        );
        assert_eq!(join_url("https://h/a", "//cdn/x").unwrap(), "https://cdn/x");
        assert!(join_url("http://h/a", "http://h@evil/x").is_err());
        assert!(join_url("http://h/a", "x/y").is_err());
    }
}
