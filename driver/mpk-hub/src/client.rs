//! A small blocking client for the Hub's HTTP interface (revision info,
//! recursive tree with `Link` pagination, `resolve` metadata and ranged
//! downloads), with retries and exponential backoff on 5xx, 429 and
//! network errors. Configured from the environment like `huggingface_hub`:
//! `HF_ENDPOINT`, `HF_TOKEN` (else `$HF_HOME/token`), `HF_HUB_OFFLINE`.

use serde::Deserialize;
use std::time::Duration;

use crate::{Error, Result};

/// Where and how to reach the Hub.
#[derive(Debug, Clone)]
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
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

impl HubConfig {
    /// Reads `HF_ENDPOINT`, `HF_TOKEN` (else the token file in `HF_HOME`,
    /// default `~/.cache/huggingface`) and `HF_HUB_OFFLINE`.
    pub fn from_env() -> Self {
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
        Self {
            endpoint,
            token,
            offline,
            attempts: 5,
            backoff: Duration::from_millis(200),
        }
    }
}

/// One entry of the recursive tree listing (our own types: hf-hub's lose
/// `lfs.oid`).
#[derive(Debug, Clone, Deserialize)]
pub struct TreeEntry {
    /// `file` or `directory`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Git blob SHA-1 (of the pointer, for LFS files).
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

/// What `HEAD …/resolve/<commit>/<path>` says about a file.
#[derive(Debug, Clone)]
pub struct FileMeta {
    /// `X-Repo-Commit`.
    pub commit: Option<String>,
    /// `X-Linked-Etag` or `ETag`, without quotes.
    pub etag: Option<String>,
    /// `X-Linked-Size` or `Content-Length`.
    pub size: Option<u64>,
    /// Where the bytes are (the redirect target, or the resolve URL).
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
    agent: ureq::Agent,
}

/// Response type of the HTTP client.
pub type Response = ureq::http::Response<ureq::Body>;

fn header(r: &Response, k: &str) -> Option<String> {
    r.headers()
        .get(k)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl Hub {
    /// A client for `cfg`.
    pub fn new(cfg: HubConfig) -> Self {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .max_redirects_will_error(false)
                .accept_encoding("identity")
                .user_agent(concat!("mpk/", env!("CARGO_PKG_VERSION")))
                .timeout_connect(Some(Duration::from_secs(30)))
                .timeout_per_read(Some(Duration::from_secs(60)))
                .build(),
        );
        Self { cfg, agent }
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.cfg
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

    fn send(&self, method: &str, url: &str, range_from: Option<u64>) -> Result<Response, Attempt> {
        if self.cfg.offline {
            return Err(Attempt::Fatal(Error::Offline(url.to_owned())));
        }
        let mut req = match method {
            "HEAD" => self.agent.head(url),
            _ => self.agent.get(url),
        };
        if let Some(t) = &self.cfg.token {
            if url.starts_with(&self.cfg.endpoint) {
                req = req.header("Authorization", &format!("Bearer {t}"));
            }
        }
        if let Some(from) = range_from {
            req = req.header("Range", &format!("bytes={from}-"));
        }
        req.call().map_err(|e| {
            Attempt::Retry(Error::Network {
                url: url.to_owned(),
                source: Box::new(e),
            })
        })
    }

    /// Sends a request and sorts out the status: 2xx and 3xx are returned;
    /// 401/403 and 404 are final errors; 5xx and 429 are retried.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        range_from: Option<u64>,
        what: &str,
    ) -> Result<Response, Attempt> {
        let r = self.send(method, url, range_from)?;
        let status = r.status().as_u16();
        let url = url.to_owned();
        match status {
            200..=399 => Ok(r),
            401 | 403 => Err(Attempt::Fatal(Error::Unauthorized { url, status })),
            404 => Err(Attempt::Fatal(Error::NotFound {
                url,
                what: what.to_owned(),
            })),
            416 => Ok(r),
            429 | 500..=599 => Err(Attempt::Retry(Error::Status { url, status })),
            _ => Err(Attempt::Fatal(Error::Status { url, status })),
        }
    }

    fn get_json(&self, url: &str, what: &str) -> Result<(serde_json::Value, Option<String>)> {
        self.retry(|_| {
            let mut r = self.request("GET", url, None, what)?;
            let link = header(&r, "link");
            let body = r
                .body_mut()
                .with_config()
                .limit(256 << 20)
                .read_to_vec()
                .map_err(|e| {
                    Attempt::Retry(Error::Network {
                        url: url.to_owned(),
                        source: Box::new(e),
                    })
                })?;
            let v = serde_json::from_slice(&body).map_err(|e| {
                Attempt::Fatal(Error::Protocol {
                    url: url.to_owned(),
                    msg: format!("invalid JSON: {e}"),
                })
            })?;
            Ok((v, link))
        })
    }

    /// Resolves a branch, tag or commit of `repo` to its 40-hex commit.
    pub fn revision(&self, repo: &str, rev: &str) -> Result<String> {
        let url = format!(
            "{}/api/models/{repo}/revision/{}",
            self.cfg.endpoint,
            encode(rev, false)
        );
        let (v, _) = self.get_json(&url, &format!("repo {repo} at revision {rev}"))?;
        match v.get("sha").and_then(|s| s.as_str()) {
            Some(s) if crate::oid::is_hex(s, 40) => Ok(s.to_owned()),
            _ => Err(Error::Protocol {
                url,
                msg: "no 40-hex `sha` in the revision info".into(),
            }),
        }
    }

    /// Every entry of `repo` at `commit`, all pages (`Link: <…>; rel="next"`).
    pub fn tree(&self, repo: &str, commit: &str) -> Result<Vec<TreeEntry>> {
        let mut url = format!(
            "{}/api/models/{repo}/tree/{commit}?recursive=true",
            self.cfg.endpoint
        );
        let mut out = Vec::new();
        for _page in 0..100_000 {
            let (v, link) = self.get_json(&url, &format!("tree of {repo} at {commit}"))?;
            let page: Vec<TreeEntry> = serde_json::from_value(v).map_err(|e| Error::Protocol {
                url: url.clone(),
                msg: format!("unexpected tree JSON: {e}"),
            })?;
            out.extend(page);
            match link.as_deref().and_then(next_link) {
                Some(next) => url = self.absolute(&next),
                None => return Ok(out),
            }
        }
        Err(Error::Protocol {
            url,
            msg: "too many tree pages".into(),
        })
    }

    fn absolute(&self, u: &str) -> String {
        if u.starts_with("http://") || u.starts_with("https://") {
            u.to_owned()
        } else {
            format!("{}/{}", self.cfg.endpoint, u.trim_start_matches('/'))
        }
    }

    /// The resolve URL of a file at a commit.
    pub fn resolve_url(&self, repo: &str, commit: &str, path: &str) -> String {
        format!(
            "{}/{repo}/resolve/{commit}/{}",
            self.cfg.endpoint,
            encode(path, true)
        )
    }

    /// `HEAD` on the resolve URL, not following redirects.
    pub fn file_meta(&self, repo: &str, commit: &str, path: &str) -> Result<FileMeta> {
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
            let location = if r.status().is_redirection() {
                header(&r, "location").map(|l| self.absolute(&l))
            } else {
                None
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
}
