//! Issue 16: the usual proxy variables. The `mpk` binary against the mock
//! Hub (plain `http` on 127.0.0.1) through the test proxies of
//! `common::proxy`, each variable set on the child process only:
//!
//! * `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` (and lower case): `mpk lock`
//!   and `mpk fetch` on several connections succeed, every connection the
//!   Hub accepted came through a tunnel to exactly its `host:port`, every
//!   tunnel carried an origin-form request (ureq tunnels `http` origins
//!   too; the proxy never gets a request of its own), and the proxy's
//!   CONNECT heads hold no `Authorization` and no token bytes. `HF_TOKEN`
//!   is set, but the mock Hub is plain `http`, which a proxy could read
//!   inside its tunnel: the token is held back (a gated repo then fails,
//!   saying why), and goes only on direct connections to this machine.
//!   Proxy credentials go as `Proxy-Authorization` to the proxy only.
//! * SOCKS5 (`socks5h://`, `socks5://`) from `ALL_PROXY` the same way.
//! * The endpoint's own scheme's variable wins over `ALL_PROXY`, which
//!   wins over the other scheme's.
//! * `NO_PROXY` (or `no_proxy`) naming the Hub's host: the proxy sees no
//!   connection at all.
//! * A proxy that refuses CONNECT (403): mpk fails, naming the proxy, the
//!   variable and the refusal, and keeps nothing in the cache; a proxy
//!   value mpk cannot use is refused before any connection, without
//!   printing it.

mod common;

use common::proxy::{Seen, TestProxy};
use mpk_hub::mock::MockHub;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const C1: &str = "1111111111111111111111111111111111111111";
const REPO: &str = "acme/tiny";
/// The range size of the transfer scheduler.
const CHUNK: usize = 8 << 20;

use common::{fails, ok, walk};
use mpk_testutil::lcg_bytes as bytes;

/// A shard of three ranges, a small LFS file and two non-LFS files.
fn model() -> Vec<(&'static str, Vec<u8>, bool)> {
    vec![
        ("config.json", b"{\"hidden_size\": 8}\n".to_vec(), false),
        ("model.safetensors", bytes(1, 2 * CHUNK + 4321), true),
        ("sub/extra.bin", bytes(2, 70_000), true),
        ("tokenizer.json", bytes(3, 9000), false),
    ]
}

struct Env {
    hub: MockHub,
    tmp: tempfile::TempDir,
}

impl Env {
    /// A mock Hub with a public repo (`mpk` runs with `HF_TOKEN` set).
    fn new() -> Self {
        let hub = MockHub::start();
        hub.put(REPO, "main", C1, model());
        Self {
            hub,
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }
    fn lockf(&self) -> PathBuf {
        self.tmp.path().join("tiny.lock.json")
    }
    /// `host:port` of the mock Hub.
    fn hostport(&self) -> &str {
        self.hub.endpoint.strip_prefix("http://").unwrap()
    }
    /// `mpk` with the token, the mock Hub, a private cache and exactly
    /// the proxy variables in `vars`.
    fn mpk(&self, vars: &[(&str, &str)]) -> Command {
        let mut c = common::mpk();
        common::without_proxies(&mut c)
            .env("HF_ENDPOINT", &self.hub.endpoint)
            .env("HF_HUB_CACHE", self.cache())
            .env("HF_TOKEN", &self.hub.token)
            .env("HOME", self.tmp.path())
            .env_remove("HF_HOME")
            .env_remove("HF_HUB_OFFLINE");
        for (k, v) in vars {
            c.env(k, v);
        }
        c
    }
    fn lock(&self, vars: &[(&str, &str)]) -> Output {
        let l = self.lockf();
        self.mpk(vars)
            .args(["lock", REPO, "-q", "-o"])
            .arg(l)
            .output()
            .unwrap()
    }
    /// `mpk fetch` of the lock into an empty cache, on 4 connections.
    fn fetch(&self, vars: &[(&str, &str)]) -> Output {
        let _ = std::fs::remove_dir_all(self.cache());
        self.mpk(vars)
            .arg("fetch")
            .arg(self.lockf())
            .args(["-q", "--connections", "4"])
            .output()
            .unwrap()
    }
    /// The fetched snapshot holds the model's bytes; nothing but finished
    /// blobs is in the cache.
    fn assert_fetched(&self, o: &Output) {
        let snap = PathBuf::from(ok(o));
        for (p, d, _) in model() {
            assert!(std::fs::read(snap.join(p)).unwrap() == d, "{p} differs");
        }
        assert_eq!(unfinished(&self.cache()), Vec::<PathBuf>::new());
    }
    /// Every connection the Hub accepted came through one of `proxy`'s
    /// tunnels, to the Hub's own `host:port`, with an origin-form request;
    /// the proxy saw the token nowhere.
    fn assert_all_through(&self, seen: &Seen) {
        assert!(seen.tunnels >= 1, "{seen:?}");
        assert_eq!(seen.tunnels, self.hub.connections(), "{seen:?}");
        assert_eq!(seen.accepted, seen.tunnels, "{seen:?}");
        assert!(
            seen.targets.iter().all(|t| t == self.hostport()),
            "{:?}, not {}",
            seen.targets,
            self.hostport()
        );
        assert_eq!(seen.first_lines.len() as u64, seen.tunnels);
        for l in &seen.first_lines {
            assert!(
                (l.starts_with("GET /") || l.starts_with("HEAD /")) && l.ends_with(" HTTP/1.1"),
                "not an origin-form request line: {l:?}"
            );
        }
        assert_no_token(seen, &self.hub.token);
        // Plain http through a proxy: the token was held back altogether.
        assert_eq!(self.hub.authed(), Vec::<String>::new());
    }
}

/// No head the proxy received carries an `Authorization` header or the
/// token's bytes.
fn assert_no_token(seen: &Seen, token: &str) {
    for h in &seen.heads {
        let text = String::from_utf8_lossy(h);
        for line in text.split("\r\n").skip(1) {
            let name = line.split(':').next().unwrap_or("").trim();
            assert!(
                !name.eq_ignore_ascii_case("authorization"),
                "a proxy got the token: {text:?}"
            );
        }
        let has = |needle: &[u8]| h.windows(needle.len()).any(|w| w == needle);
        assert!(!has(token.as_bytes()) && !has(b"Bearer"), "{text:?}");
    }
}

/// Files under `dir` that are not finished blobs, snapshot links or refs.
fn unfinished(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    walk(dir, &mut |p| {
        let name = p.file_name().unwrap().to_string_lossy();
        let in_blobs = p.parent().is_some_and(|d| d.ends_with("blobs"));
        if (in_blobs && name.contains('.')) || name.ends_with(".incomplete") {
            v.push(p.to_owned());
        }
    });
    v
}

/// Finished blobs under `dir`.
fn blobs(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    walk(dir, &mut |p| {
        if p.parent().is_some_and(|d| d.ends_with("blobs")) {
            v.push(p.to_owned());
        }
    });
    v
}

#[test]
fn lock_and_fetch_go_through_a_connect_proxy_from_each_variable() {
    for var in ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy"] {
        let (e, proxy) = (Env::new(), TestProxy::connect());
        let url = proxy.url("http");
        let vars = [(var, url.as_str())];
        ok(&e.lock(&vars));
        let o = e.fetch(&vars);
        e.assert_fetched(&o);
        let seen = proxy.seen();
        e.assert_all_through(&seen);
        // The shard went in ranges, on several connections, all tunnelled.
        let log = e.hub.log();
        assert!(
            log.iter()
                .any(|l| l.ends_with(&format!("range={CHUNK}-{}", 2 * CHUNK - 1))),
            "{var}: {log:?}"
        );
        assert!(seen.tunnels >= 6, "{var}: {seen:?}");
        for h in &seen.heads {
            let want = format!("CONNECT {} HTTP/1.1\r\n", e.hostport());
            assert!(h.starts_with(want.as_bytes()), "{var}: {h:?}");
        }
    }
}

#[test]
fn proxy_credentials_go_to_the_proxy_only() {
    let (e, proxy) = (Env::new(), TestProxy::connect());
    let url = proxy.url("http").replace("://", "://user:pa%20ss@");
    let vars = [("ALL_PROXY", url.as_str())];
    ok(&e.lock(&vars));
    e.assert_fetched(&e.fetch(&vars));
    let seen = proxy.seen();
    e.assert_all_through(&seen);
    for h in &seen.heads {
        let text = String::from_utf8_lossy(h);
        // base64("user:pa ss")
        assert!(
            text.contains("\r\nProxy-Authorization: Basic dXNlcjpwYSBzcw==\r\n"),
            "{text:?}"
        );
    }
    assert!(e.hub.log().iter().all(|l| !l.contains("pa ss")));
}

#[test]
fn a_socks5_proxy_from_all_proxy_carries_every_connection() {
    for scheme in ["socks5h", "socks5"] {
        let (e, proxy) = (Env::new(), TestProxy::socks5());
        let url = proxy.url(scheme);
        let vars = [("ALL_PROXY", url.as_str())];
        ok(&e.lock(&vars));
        e.assert_fetched(&e.fetch(&vars));
        e.assert_all_through(&proxy.seen());
    }
}

#[test]
fn the_endpoints_own_variable_wins() {
    // The mock Hub is `http`: HTTP_PROXY, then ALL_PROXY, then HTTPS_PROXY.
    let e = Env::new();
    let (good, refusing) = (TestProxy::connect(), TestProxy::refusing(403));
    let (g, r) = (good.url("http"), refusing.url("http"));
    ok(&e.lock(&[("ALL_PROXY", &r), ("HTTP_PROXY", &g), ("HTTPS_PROXY", &r)]));
    let o = e.fetch(&[("HTTPS_PROXY", &r), ("ALL_PROXY", &g)]);
    e.assert_fetched(&o);
    e.assert_all_through(&good.seen());
    assert_eq!(refusing.seen().accepted, 0, "{:?}", refusing.seen());
}

#[test]
fn no_proxy_naming_the_hub_host_goes_direct() {
    for no_proxy in [
        ("NO_PROXY", "127.0.0.1"),
        ("NO_PROXY", "example.org , 127.0.0.1"),
        ("no_proxy", "localhost,127.0.0.1"),
        ("NO_PROXY", "*"),
    ] {
        let (e, proxy) = (Env::new(), TestProxy::connect());
        let url = proxy.url("http");
        let vars = [("HTTPS_PROXY", url.as_str()), no_proxy];
        ok(&e.lock(&vars));
        e.assert_fetched(&e.fetch(&vars));
        let seen = proxy.seen();
        assert_eq!(seen.accepted, 0, "{no_proxy:?}: {seen:?}");
        assert!(e.hub.connections() >= 6, "{no_proxy:?}");
        // Direct to this machine: the token goes.
        assert!(!e.hub.authed().is_empty(), "{no_proxy:?}");
    }
    // A NO_PROXY that names another host leaves the proxy in use.
    let (e, proxy) = (Env::new(), TestProxy::connect());
    let url = proxy.url("http");
    let vars = [
        ("HTTPS_PROXY", url.as_str()),
        ("NO_PROXY", "localhost,127.0.0.2"),
    ];
    ok(&e.lock(&vars));
    e.assert_all_through(&proxy.seen());
}

#[test]
fn a_proxy_that_refuses_connect_fails_clearly_and_keeps_nothing() {
    let (e, proxy) = (Env::new(), TestProxy::refusing(403));
    ok(&e.lock(&[]));
    let (conns, reqs) = (e.hub.connections(), e.hub.log().len());
    let url = proxy.url("http");
    let o = e.fetch(&[("HTTPS_PROXY", url.as_str())]);
    assert_eq!(o.status.code(), Some(2));
    let err = fails(
        &o,
        &[
            &format!("through the proxy {url} from HTTPS_PROXY"),
            "CONNECT proxy failed",
            "403",
        ],
    );
    assert!(!err.contains(&e.hub.token), "{err}");
    let seen = proxy.seen();
    assert!(!seen.targets.is_empty(), "{seen:?}");
    assert!(seen.targets.iter().all(|t| t == e.hostport()), "{seen:?}");
    assert_no_token(&seen, &e.hub.token);
    // Nothing reached the Hub, nothing is in the cache.
    assert_eq!((e.hub.connections(), e.hub.log().len()), (conns, reqs));
    assert_eq!(blobs(&e.cache()), Vec::<PathBuf>::new());
    assert_eq!(unfinished(&e.cache()), Vec::<PathBuf>::new());
}

#[test]
fn an_unusable_proxy_value_is_refused_before_any_connection() {
    let e = Env::new();
    ok(&e.lock(&[]));
    let conns = e.hub.connections();
    for (var, bad) in [
        ("HTTPS_PROXY", "ftp://user:hunter2@127.0.0.1:21"),
        ("ALL_PROXY", "http://user:hunter2@ bad host"),
    ] {
        let o = e.fetch(&[(var, bad)]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        let err = fails(
            &o,
            &[var, "refused rather than connecting around the proxy"],
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
    assert_eq!(e.hub.connections(), conns);
    assert_eq!(blobs(&e.cache()), Vec::<PathBuf>::new());
}

#[test]
fn a_gated_repo_through_a_proxy_over_plain_http_gets_no_token() {
    // The proxy could read the token inside its tunnel: mpk holds it back
    // and says why; with NO_PROXY naming the Hub, it goes direct, token
    // and all.
    let (e, proxy) = (Env::new(), TestProxy::connect());
    e.hub.gate(REPO);
    let url = proxy.url("http");
    let o = e.lock(&[("HTTPS_PROXY", url.as_str())]);
    let err = fails(&o, &["HF_TOKEN was not sent", "use an https endpoint"]);
    assert!(!err.contains(&e.hub.token), "{err}");
    assert_no_token(&proxy.seen(), &e.hub.token);
    assert_eq!(e.hub.authed(), Vec::<String>::new());
    // Nothing is left behind: no lock file, nothing in the cache.
    assert!(!e.lockf().exists());
    assert_eq!(blobs(&e.cache()), Vec::<PathBuf>::new());
    assert_eq!(unfinished(&e.cache()), Vec::<PathBuf>::new());
    ok(&e.lock(&[("HTTPS_PROXY", url.as_str()), ("NO_PROXY", "127.0.0.1")]));
    assert!(e.lockf().exists());
    assert!(!e.hub.authed().is_empty());
}
