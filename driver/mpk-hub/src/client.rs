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
//! Nor does the token go in clear text across a network
//! ([`token_in_clear`]): over plain `http` it goes only to this machine's
//! loopback, with no proxy in between; otherwise it is held back and a
//! 401/403 from the endpoint says so ([`Error::TokenWithheld`]).
//!
//! Proxies ([`ProxyConfig`], read once by [`HubConfig::from_env`]): one
//! proxy serves every connection (the Hub and its CDN), taken from the
//! first variable set (and not empty) of: the endpoint's own scheme's
//! (`HTTPS_PROXY` for an `https` endpoint, `HTTP_PROXY` for `http`), then
//! `ALL_PROXY`, then the other scheme's (so a lone `HTTP_PROXY` is used
//! for the `https` Hub too, as most command-line tools behind a proxy
//! expect), each upper case before lower case. ureq alone would take
//! `ALL_PROXY` first and skip, then connect around, a value it cannot
//! parse; mpk refuses such a value instead. Schemes: `http://` and
//! `https://` (a CONNECT tunnel; TLS to the proxy for `https://`), and
//! `socks4`, `socks4a`, `socks5`, `socks5h` (the `a`/`h` forms let the
//! proxy resolve names); no scheme means `http://`; credentials in the
//! URL go to the proxy only (`Proxy-Authorization`, or SOCKS's own) and
//! are never printed. `NO_PROXY` (else `no_proxy`) lists hosts reached
//! directly, matched as curl does ([`ProxyConfig::from_vars`]). A proxy is
//! only ever a tunnel: mpk sends `CONNECT host:port` (for an `http`
//! origin too; ureq never sends a request in absolute form to a proxy),
//! and the request, with the token when it goes to the endpoint's origin,
//! goes through the tunnel to the origin, never to the proxy as a
//! request of its own; over `https` the proxy sees only TLS. A network
//! error through a proxy names the proxy and its variable. Tests:
//! `mpk-cli/tests/hub_proxy.rs`.

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
    /// The proxy every connection goes through (unless `NO_PROXY` names
    /// its host), from the environment ([`ProxyConfig::from_vars`]);
    /// `None`: direct connections, whatever the environment says.
    pub proxy: Option<ProxyConfig>,
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
            .field("proxy", &self.proxy)
            .finish()
    }
}

/// A proxy from the environment, as mpk uses it: a CONNECT tunnel
/// (`http://` or `https://` proxy: mpk sends `CONNECT host:port`, then
/// speaks to the origin through the tunnel, TLS included for an `https`
/// origin) or SOCKS (`socks4`, `socks4a`, `socks5`, `socks5h`). Never an
/// HTTP forward proxy: no request (and no token) is ever sent to the
/// proxy as a request of its own, for `http` origins too. Its `Debug`
/// never shows the proxy's credentials.
#[derive(Clone)]
pub struct ProxyConfig {
    /// The variable it came from (`HTTPS_PROXY`, `all_proxy`, …).
    pub var: &'static str,
    proxy: ureq::Proxy,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("var", &self.var)
            .field("address", &self.address())
            .finish()
    }
}

impl ProxyConfig {
    /// The proxy variables in the order they are tried for an endpoint of
    /// `scheme`: that scheme's own (`HTTPS_PROXY` for `https`, as curl and
    /// `huggingface_hub` read them), then `ALL_PROXY`, then the other
    /// scheme's (so a lone `HTTP_PROXY` serves an `https` Hub too, as it
    /// does for ureq); each upper case first, then lower case.
    pub fn variables(scheme: &str) -> [&'static str; 6] {
        if scheme.eq_ignore_ascii_case("http") {
            [
                "HTTP_PROXY",
                "http_proxy",
                "ALL_PROXY",
                "all_proxy",
                "HTTPS_PROXY",
                "https_proxy",
            ]
        } else {
            [
                "HTTPS_PROXY",
                "https_proxy",
                "ALL_PROXY",
                "all_proxy",
                "HTTP_PROXY",
                "http_proxy",
            ]
        }
    }

    /// The proxy for an endpoint of `scheme`, from the first of
    /// [`ProxyConfig::variables`] that `var` (a lookup such as
    /// [`std::env::var_os`]) finds set and not empty, with the hosts of
    /// `NO_PROXY` (else `no_proxy`) going direct; `None` when no proxy
    /// variable is set. A value that is not a proxy URL mpk can use
    /// (another scheme, no host, not UTF-8) is refused, naming the
    /// variable but not the value (it may hold a password): ureq alone
    /// would skip it and connect directly, around the proxy.
    ///
    /// `NO_PROXY` is a comma-separated list (spaces around entries
    /// ignored) of host names and IP addresses, matched as curl matches
    /// them: `example.com`, `.example.com` and `*.example.com` all match
    /// `example.com` and every name under it, `*` alone matches every
    /// host, an IPv6 address may be written with or without brackets.
    /// Ports and CIDR ranges are not understood (such an entry matches
    /// nothing), nor is any other `*`, which is ignored: what NO_PROXY
    /// fails to name goes through the proxy.
    pub fn from_vars(
        scheme: &str,
        var: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Option<Self>> {
        let set = |k: &str| var(k).filter(|v| !v.is_empty());
        let Some((name, value)) = Self::variables(scheme)
            .into_iter()
            .find_map(|k| set(k).map(|v| (k, v)))
        else {
            return Ok(None);
        };
        let bad = |why: &str| Error::Invalid {
            field: "proxy setting",
            value: format!("{name} (its value not shown)"),
            why: format!(
                "{why}; refused rather than connecting around the proxy (unset {name} to connect directly)"
            ),
        };
        let value = value.to_str().ok_or_else(|| bad("not UTF-8"))?;
        let parsed = ureq::Proxy::new(value).map_err(|_| {
            bad("not a proxy URL mpk can use (`http://`, `https://`, `socks4://`, `socks4a://`, `socks5://` or `socks5h://`, then [user:password@]host[:port])")
        })?;
        let mut b = ureq::Proxy::builder(parsed.protocol())
            .host(parsed.host())
            .port(parsed.port());
        if let Some(u) = parsed.username() {
            b = b.username(u);
        }
        if let Some(p) = parsed.password() {
            b = b.password(p);
        }
        let no_proxy = set("NO_PROXY").or_else(|| set("no_proxy"));
        let no_proxy = no_proxy.as_deref().and_then(std::ffi::OsStr::to_str);
        for entry in no_proxy.unwrap_or("").split(',') {
            for pattern in no_proxy_patterns(entry) {
                b = b.no_proxy(&pattern);
            }
        }
        let proxy = b.build().map_err(|_| bad("not a usable proxy address"))?;
        Ok(Some(Self { var: name, proxy }))
    }

    /// [`ProxyConfig::from_vars`] on the process environment.
    pub fn from_env(scheme: &str) -> Result<Option<Self>> {
        Self::from_vars(scheme, |k| std::env::var_os(k))
    }

    /// `scheme://host:port` of the proxy, without credentials.
    pub fn address(&self) -> String {
        let scheme = match self.proxy.protocol() {
            ureq::ProxyProtocol::Http => "http",
            ureq::ProxyProtocol::Https => "https",
            ureq::ProxyProtocol::Socks4 => "socks4",
            ureq::ProxyProtocol::Socks4A => "socks4a",
            ureq::ProxyProtocol::Socks5 => "socks5",
            ureq::ProxyProtocol::Socks5h => "socks5h",
            _ => "proxy",
        };
        format!("{scheme}://{}:{}", self.proxy.host(), self.proxy.port())
    }

    /// Whether a request to `url` goes directly (`NO_PROXY` names its
    /// host) rather than through the proxy.
    pub fn bypasses(&self, url: &str) -> bool {
        url.parse::<ureq::http::Uri>()
            .is_ok_and(|u| self.proxy.is_no_proxy(&u))
    }
}

/// ureq's patterns for one `NO_PROXY` entry, with curl's meaning: the
/// name and every name under it.
fn no_proxy_patterns(entry: &str) -> Vec<String> {
    let e = entry.trim();
    if e == "*" {
        return vec!["*".into()];
    }
    let name = e.strip_prefix("*.").unwrap_or(e);
    let name = name.trim_start_matches('.').trim_end_matches('.');
    if name.is_empty() || name.contains('*') {
        return Vec::new();
    }
    let name = if name.contains(':') && !name.starts_with('[') {
        format!("[{name}]")
    } else {
        name.to_owned()
    };
    vec![format!(".{name}"), name]
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

impl HubConfig {
    /// Reads `HF_ENDPOINT`, `HF_TOKEN` (else the token file in `HF_HOME`,
    /// default `~/.cache/huggingface`), `HF_HUB_OFFLINE`, the proxy
    /// variables ([`ProxyConfig::from_env`], for the endpoint's scheme) and
    /// the `MPK_HUB_*` bounds ([`Limits`]).
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
        let proxy = ProxyConfig::from_env(endpoint.split_once("://").map_or("https", |(s, _)| s))?;
        let offline = env("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
        });
        Ok(Self {
            token,
            offline,
            attempts: 5,
            backoff: Duration::from_millis(200),
            limits: Limits::from_env()?,
            connections: crate::sched::connections_from_env()?,
            proxy,
            endpoint,
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

impl Origin {
    /// Whether the host is this machine by its loopback address or name
    /// (`localhost`, 127.0.0.0/8, `::1`): traffic to it never crosses a
    /// network.
    pub fn is_loopback(&self) -> bool {
        let h = self.host.trim_start_matches('[').trim_end_matches(']');
        h == "localhost"
            || h.ends_with(".localhost")
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
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
    /// A token is configured but is not sent ([`token_in_clear`]).
    withhold_token: bool,
}

/// Whether a token sent to `origin` would cross a network readable by
/// anyone on the path: plain `http` to a host that is not this machine,
/// or to this machine through a proxy (the tunnel carries the request in
/// clear to the proxy).
pub fn token_in_clear(origin: &Origin, proxy: Option<&ProxyConfig>) -> bool {
    let proxied = proxy.is_some_and(|p| !p.bypasses(&origin.to_string()));
    origin.scheme == "http" && (!origin.is_loopback() || proxied)
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
                // Only the proxy of the configuration: ureq's default
                // would read the environment again, by its own rules.
                .proxy(cfg.proxy.as_ref().map(|p| p.proxy.clone()))
                .build(),
        );
        let withhold_token = cfg.token.is_some() && token_in_clear(&origin, cfg.proxy.as_ref());
        Ok(Self {
            cfg,
            origin,
            agent,
            pause: std::sync::Mutex::new(None),
            withhold_token,
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
        if let (Some(t), true, false) = (&self.cfg.token, same, self.withhold_token) {
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
            // A failure through a proxy says so: a refused CONNECT, or a
            // proxy that is not there, is not the Hub's.
            let url = match self.cfg.proxy.as_ref().filter(|p| !p.bypasses(url)) {
                Some(p) => format!("{url} (through the proxy {} from {})", p.address(), p.var),
                None => url.to_owned(),
            };
            Attempt::Retry(Error::Network {
                url,
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
                401 | 403 if self.withhold_token && self.same_origin(&url)? => {
                    Err(Attempt::Fatal(Error::TokenWithheld {
                        origin: self.origin.to_string(),
                        status,
                    }))
                }
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
    fn when_a_token_would_cross_a_network_in_clear() {
        let clear = |url: &str, proxy: Option<&str>| {
            let p = proxy.map(|v| {
                ProxyConfig::from_vars("http", |k| (k == "HTTP_PROXY").then(|| v.into()))
                    .unwrap()
                    .unwrap()
            });
            token_in_clear(&Origin::of(url).unwrap(), p.as_ref())
        };
        for url in [
            "https://huggingface.co",
            "https://10.0.0.7:8443",
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://localhost:1",
            "http://LOCALHOST",
            "http://mirror.localhost",
            "http://[::1]:80",
        ] {
            assert!(!clear(url, None), "{url}");
        }
        for url in [
            "http://huggingface.co",
            "http://10.0.0.7",
            "http://192.168.1.1:80",
            "http://0.0.0.0:9",
            "http://[::2]",
            "http://localhost.example.com",
            "http://127.0.0.1.nip.io",
        ] {
            assert!(clear(url, None), "{url}");
        }
        // Through a proxy, a loopback http endpoint travels in clear to
        // the proxy; https never does.
        assert!(clear("http://127.0.0.1:8080", Some("http://proxy:3128")));
        assert!(!clear("https://huggingface.co", Some("http://proxy:3128")));
        // ... unless NO_PROXY sends it direct.
        let p = ProxyConfig::from_vars("http", |k| match k {
            "HTTP_PROXY" => Some("http://proxy:3128".into()),
            "NO_PROXY" => Some("127.0.0.1".into()),
            _ => None,
        })
        .unwrap()
        .unwrap();
        assert!(!token_in_clear(
            &Origin::of("http://127.0.0.1:8080").unwrap(),
            Some(&p)
        ));
    }

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
            proxy: None,
        };
        assert!(!format!("{c:?}").contains("hf_secret"));
        c.endpoint = "https://u@h".into();
        let e = Hub::new(c).unwrap_err().to_string();
        assert!(e.contains("userinfo") && !e.contains("hf_secret"), "{e}");
    }

    /// A lookup over `pairs` in place of the environment.
    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<std::ffi::OsString> + use<> {
        let m: std::collections::HashMap<String, std::ffi::OsString> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).into()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn the_proxy_variable_by_scheme_and_precedence() {
        let pick = |scheme: &str, pairs: &[(&str, &str)]| {
            ProxyConfig::from_vars(scheme, vars(pairs))
                .unwrap()
                .map(|p| (p.var, p.address()))
        };
        assert_eq!(pick("https", &[]), None);
        assert_eq!(
            pick("https", &[("HTTPS_PROXY", ""), ("NO_PROXY", "*")]),
            None
        );
        let all = [
            ("HTTP_PROXY", "http://h:1"),
            ("ALL_PROXY", "socks5h://a:2"),
            ("HTTPS_PROXY", "http://s:3"),
        ];
        // The endpoint's own scheme first, then ALL_PROXY, then the other.
        assert_eq!(
            pick("https", &all),
            Some(("HTTPS_PROXY", "http://s:3".into()))
        );
        assert_eq!(
            pick("http", &all),
            Some(("HTTP_PROXY", "http://h:1".into()))
        );
        assert_eq!(
            pick("HTTPS", &all[..2]),
            Some(("ALL_PROXY", "socks5h://a:2".into()))
        );
        assert_eq!(
            pick("http", &all[1..]),
            Some(("ALL_PROXY", "socks5h://a:2".into()))
        );
        // A lone HTTP_PROXY serves an https Hub; no scheme means http.
        assert_eq!(
            pick("https", &[("HTTP_PROXY", "p:8080")]),
            Some(("HTTP_PROXY", "http://p:8080".into()))
        );
        assert_eq!(
            pick("http", &[("https_proxy", "https://p")]),
            Some(("https_proxy", "https://p:443".into()))
        );
        // Upper case before lower case; an empty value is unset.
        assert_eq!(
            pick(
                "https",
                &[("HTTPS_PROXY", "http://u:1"), ("https_proxy", "http://l:1")]
            ),
            Some(("HTTPS_PROXY", "http://u:1".into()))
        );
        assert_eq!(
            pick(
                "https",
                &[("HTTPS_PROXY", ""), ("https_proxy", "http://l:1")]
            ),
            Some(("https_proxy", "http://l:1".into()))
        );
        // A value mpk cannot use is refused, naming the variable and not
        // the value, rather than skipped (which would connect directly).
        for bad in [
            "ftp://u:hunter2@p:21",
            "http://",
            "http://u:hunter2@ p",
            "gopher://p",
        ] {
            let e = ProxyConfig::from_vars(
                "https",
                vars(&[("HTTPS_PROXY", bad), ("HTTP_PROXY", "http://h:1")]),
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("HTTPS_PROXY") && e.contains("refused"),
                "{bad}: {e}"
            );
            assert!(!e.contains("hunter2") && !e.contains("h:1"), "{bad}: {e}");
        }
        let not_utf8 = |k: &str| {
            (k == "ALL_PROXY").then(|| std::os::unix::ffi::OsStringExt::from_vec(vec![0xff]))
        };
        assert!(ProxyConfig::from_vars("https", not_utf8).is_err());
        // Credentials reach the proxy (ureq's Proxy-Authorization) but no
        // message or Debug output.
        let p = ProxyConfig::from_vars(
            "https",
            vars(&[("ALL_PROXY", "http://u%40x:hunter2@p:3128")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.address(), "http://p:3128");
        assert_eq!(
            (p.proxy.username(), p.proxy.password()),
            (Some("u@x"), Some("hunter2"))
        );
        let c = HubConfig {
            endpoint: "https://h".into(),
            token: None,
            offline: false,
            attempts: 1,
            backoff: Duration::ZERO,
            limits: Limits::default(),
            connections: 1,
            proxy: Some(p),
        };
        let d = format!("{c:?}");
        assert!(d.contains("http://p:3128") && !d.contains("hunter2"), "{d}");
    }

    #[test]
    fn no_proxy_matches_names_as_curl_does() {
        let with = |pairs: &[(&str, &str)]| {
            let mut v = vec![("HTTPS_PROXY", "http://p:1")];
            v.extend_from_slice(pairs);
            ProxyConfig::from_vars("https", vars(&v)).unwrap().unwrap()
        };
        let p = with(&[(
            "NO_PROXY",
            " Example.com , .corp.net,*.lan, 10.1.2.3, ::1, internal:8080, 192.168.*,,",
        )]);
        for direct in [
            "https://example.com/x",
            "https://cdn.EXAMPLE.com:8443/",
            "https://corp.net/",
            "https://a.b.corp.net/",
            "https://x.lan/",
            "https://lan/",
            "http://10.1.2.3:8080/",
            "http://[::1]:5/",
        ] {
            assert!(p.bypasses(direct), "{direct}");
        }
        for proxied in [
            "https://notexample.com/",
            "https://example.org/",
            "https://10.1.2.34/",
            "https://internal/",
            "https://internal:8080/",
            "https://192.168.1.1/",
        ] {
            assert!(!p.bypasses(proxied), "{proxied}");
        }
        assert!(with(&[("NO_PROXY", "*")]).bypasses("https://huggingface.co/x"));
        assert!(!with(&[]).bypasses("https://huggingface.co/x"));
        // no_proxy when NO_PROXY is unset or empty; NO_PROXY first.
        let lower = with(&[("NO_PROXY", ""), ("no_proxy", "huggingface.co")]);
        assert!(lower.bypasses("https://cdn-lfs.huggingface.co/x"));
        let both = with(&[("NO_PROXY", "a.org"), ("no_proxy", "huggingface.co")]);
        assert!(!both.bypasses("https://huggingface.co/x"));
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
