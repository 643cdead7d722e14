//! Reading a file of a repo straight from the Hub, without the cache: a
//! `Read` over a byte range that reconnects with `Range` after a dropped
//! connection or a 5xx, so `mpk reproduce` can hash a model that does not
//! fit on the disk. Nothing is written anywhere; the caller hashes the
//! bytes and compares them with the lock. Reads stop at the end of the
//! range whatever the server sends, and a stalled or trickling body is cut
//! by the client's minimum-progress rule, then resumed. A server that
//! answers a range with the whole file (`200`) is read from the start and
//! the bytes before the range are skipped. The file is resolved once
//! ([`crate::sched::Target`]); `mpk reproduce` reads the bulk of it
//! through [`crate::sched::Prefetch`], this reader serving the rest.

use std::io::Read;
use std::sync::Arc;

use crate::client::{Attempt, ByteRange, Hub};
use crate::fetch::Expected;
use crate::names::{Commit, RepoId};
use crate::sched::Target;
use crate::{Error, Result};

/// One file of a repo at a commit, checked against the lock by `HEAD`
/// (commit, ETag, size) before any byte is read.
#[derive(Debug, Clone)]
pub struct RemoteFile {
    hub: Arc<Hub>,
    target: Arc<Target>,
    path: String,
    size: u64,
}

impl RemoteFile {
    /// Resolves `exp.path` of `repo` at `commit` and checks what the Hub
    /// says about it against `exp`.
    pub fn open(hub: Arc<Hub>, repo: &RepoId, commit: &Commit, exp: &Expected) -> Result<Self> {
        let target = Arc::new(Target::resolve(&hub, repo, commit, exp)?);
        Ok(Self {
            hub,
            target,
            path: exp.path.to_string(),
            size: exp.size,
        })
    }

    /// The resolved file (for [`crate::sched::Prefetch`]).
    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    /// The client.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Size of the contents.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Path in the repo.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A reader of bytes `[from, to)`.
    pub fn range(&self, from: u64, to: u64) -> RangeReader {
        RangeReader {
            file: self.clone(),
            pos: from,
            end: to.min(self.size),
            body: None,
            failures: 0,
            since_failure: 0,
        }
    }

    /// Reads exactly `buf.len()` bytes at `off`.
    pub fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        self.range(off, off + buf.len() as u64).read_exact(buf)
    }
}

/// A `Read` over a byte range of a [`RemoteFile`] that resumes after
/// network errors (up to the client's attempt count in a row, with its
/// backoff).
pub struct RangeReader {
    file: RemoteFile,
    pos: u64,
    end: u64,
    body: Option<Box<dyn Read + Send>>,
    /// Failures in a row: reset only once a failure is followed by at
    /// least one minimum-progress window's worth of bytes, so a server
    /// that trickles a byte after each reconnect still runs out of
    /// attempts.
    failures: u32,
    since_failure: u64,
}

impl std::fmt::Debug for RangeReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeReader")
            .field("path", &self.file.path)
            .field("pos", &self.pos)
            .field("end", &self.end)
            .finish()
    }
}

impl RangeReader {
    fn connect(&mut self) -> Result<Box<dyn Read + Send>> {
        let hub = &self.file.hub;
        let (generation, url) = self.file.target.url();
        let url = &url;
        let what = format!("`{}`", self.file.path);
        let pos = self.pos;
        let range = ByteRange {
            from: pos,
            to: Some(self.end),
        };
        let r = match hub.request("GET", url, Some(range), &what) {
            Ok(r) => r,
            Err(Attempt::Fatal(
                e @ (Error::Unauthorized { .. } | Error::Status { status: 410, .. }),
            )) => {
                // An expired signed URL: resolve again (a bounded number of
                // times, else this error), then the caller retries.
                self.file.target.refresh(hub, generation, e)?;
                return Err(Error::Protocol {
                    url: url.clone(),
                    msg: format!("{what}: the download URL was refused; resolved again"),
                });
            }
            Err(Attempt::Retry(e) | Attempt::Fatal(e)) => return Err(e),
        };
        let status = r.status().as_u16();
        let ranged = status == 206
            && r.headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(&format!("bytes {pos}-")));
        if !(ranged || status == 200) {
            return Err(Error::Protocol {
                url: url.clone(),
                msg: format!("HTTP {status} to a request for bytes {pos}- of {what}"),
            });
        }
        // Never more than the range: the reader below asks for at most
        // `end - pos` bytes, and the watchdog cuts a trickle.
        let mut body = hub.guard(r.into_body().into_reader(), url);
        if status == 200 && pos > 0 {
            // The whole file: skip to the range.
            let skipped =
                std::io::copy(&mut (&mut body).take(pos), &mut std::io::sink()).map_err(|e| {
                    Error::Network {
                        url: url.clone(),
                        source: Box::new(e),
                    }
                })?;
            if skipped < pos {
                return Err(Error::Protocol {
                    url: url.clone(),
                    msg: format!("{what}: the body ended at byte {skipped}, before {pos}"),
                });
            }
        }
        Ok(Box::new(body))
    }

    fn fail(&mut self, e: Error) -> std::io::Result<()> {
        self.body = None;
        self.failures += 1;
        self.since_failure = 0;
        let cfg = self.file.hub.config();
        if self.failures >= cfg.attempts.max(1) {
            return Err(std::io::Error::other(format!(
                "`{}` at byte {}: {e}",
                self.file.path, self.pos
            )));
        }
        std::thread::sleep(cfg.backoff * 2u32.pow(self.failures.min(10)));
        Ok(())
    }
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.pos >= self.end || buf.is_empty() {
                return Ok(0);
            }
            if self.body.is_none() {
                match self.connect() {
                    Ok(b) => self.body = Some(b),
                    Err(
                        e @ (Error::Unauthorized { .. }
                        | Error::SignedUrlRefused { .. }
                        | Error::NotFound { .. }),
                    ) => {
                        return Err(std::io::Error::other(e.to_string()));
                    }
                    Err(e) => {
                        self.fail(e)?;
                        continue;
                    }
                }
            }
            let want = buf.len().min((self.end - self.pos) as usize);
            let body = self.body.as_mut().expect("connected");
            match body.read(&mut buf[..want]) {
                Ok(0) => {
                    // The server closed early: resume from here.
                    let e = Error::Protocol {
                        url: self.file.target.url().1,
                        msg: "connection closed before the end of the range".into(),
                    };
                    self.fail(e)?;
                }
                Ok(n) => {
                    self.pos += n as u64;
                    self.since_failure += n as u64;
                    if self.since_failure >= self.file.hub.config().limits.stall_min_bytes {
                        self.failures = 0;
                    }
                    return Ok(n);
                }
                Err(e) => {
                    let e = Error::Network {
                        url: self.file.target.url().1,
                        source: Box::new(e),
                    };
                    self.fail(e)?;
                }
            }
        }
    }
}
