//! Errors of the Hub client, the cache and lock files. Messages name the
//! file and, for a bad hash, the expected and the actual value.

use std::path::PathBuf;

/// Everything that can go wrong talking to the Hub or the cache.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 401/403: a gated or private repo, or a bad token.
    #[error(
        "{url}: HTTP {status}: the repo is gated or private, or the token is not allowed to read it; set HF_TOKEN to a token with access"
    )]
    Unauthorized {
        /// The URL asked for.
        url: String,
        /// 401 or 403.
        status: u16,
    },
    /// 401/403 from the endpoint while the token was held back: sent over
    /// plain `http` to another machine (or through a proxy), anyone on
    /// the path could read it.
    #[error(
        "{origin}: HTTP {status}: the repo needs a token, and HF_TOKEN was not sent: HF_ENDPOINT is plain http to {origin}, which is not this machine or is reached through a proxy, so the token would cross the network in clear text; use an https endpoint (plain http is fine for localhost, 127.0.0.0/8 and ::1 without a proxy)"
    )]
    TokenWithheld {
        /// The endpoint's origin.
        origin: String,
        /// 401 or 403.
        status: u16,
    },
    /// 401/403/410 from the server a file's signed download URL points to
    /// (where the Hub's resolver redirected: the CDN), again after the
    /// file was resolved anew: the Hub authorised the download and the
    /// CDN refused it, so the token is not what to change.
    #[error(
        "`{path}`: the signed download URL the Hub redirected to was refused by the CDN at {origin} (HTTP {status}), also after resolving the file again {times} times; the Hub itself authorised the download, so the token and the repo's access are not the cause: most likely the system clock is off (a skewed clock makes a fresh signed URL look expired), the URLs expired before use, or the CDN is failing; check the clock and try again later"
    )]
    SignedUrlRefused {
        /// Path in the repo.
        path: String,
        /// Scheme, host and port of the refused URL (never its query,
        /// which holds the signature).
        origin: String,
        /// 401, 403 or 410.
        status: u16,
        /// Re-resolutions tried.
        times: u32,
    },
    /// 404.
    #[error("{url}: HTTP 404: not found ({what})")]
    NotFound {
        /// The URL asked for.
        url: String,
        /// What was looked up.
        what: String,
    },
    /// Any other unexpected status, after the retries.
    #[error("{url}: HTTP {status}")]
    Status {
        /// The URL asked for.
        url: String,
        /// The status.
        status: u16,
    },
    /// Network failure, after the retries.
    #[error("{url}: {source}")]
    Network {
        /// The URL asked for.
        url: String,
        /// The cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The Hub answered something we cannot use.
    #[error("{url}: {msg}")]
    Protocol {
        /// The URL asked for.
        url: String,
        /// What is wrong.
        msg: String,
    },
    /// A file's bytes do not match a published or locked hash.
    #[error("`{path}`: {kind} mismatch: expected {expected}, got {actual}{note}")]
    HashMismatch {
        /// Path in the repo.
        path: String,
        /// Which hash (or size).
        kind: &'static str,
        /// Expected value.
        expected: String,
        /// Actual value.
        actual: String,
        /// What happened to the bad copy.
        note: &'static str,
    },
    /// The Hub and the lock disagree about a file or the commit.
    #[error("the lock disagrees with the Hub: {0}")]
    LockMismatch(String),
    /// A branch or tag no longer points at the locked commit.
    #[error(
        "revision `{rev}` of {repo} now points to commit {hub}, but the lock pins commit {lock}; refusing (make a new lock or ask for @{lock})"
    )]
    RevisionMoved {
        /// org/name.
        repo: String,
        /// The branch or tag.
        rev: String,
        /// Commit it points to now.
        hub: String,
        /// Commit in the lock.
        lock: String,
    },
    /// `HF_HUB_OFFLINE` is set and a file is not in the cache.
    #[error("HF_HUB_OFFLINE is set and `{0}` is not in the cache")]
    Offline(String),
    /// A value from the Hub or a lock that breaks its rule (see
    /// [`crate::names`]); it is never used.
    #[error("{field} {value}: {why}")]
    Invalid {
        /// Which kind of value (`git oid`, `revision`, `path`, …).
        field: &'static str,
        /// The value, quoted and escaped, cut if long.
        value: String,
        /// The rule it breaks.
        why: String,
    },
    /// A transfer broke one of the bounds of [`crate::client::Limits`].
    #[error("{url}: {msg}")]
    Bound {
        /// The URL.
        url: String,
        /// Which bound, and the setting that raises it.
        msg: String,
    },
    /// An invalid lock file.
    #[error("invalid lock: {0}")]
    InvalidLock(String),
    /// A local file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// A negative finding: bytes that were read are not what the Hub
    /// published or the lock pins (the CLI exits 1 for these, 2 for the
    /// rest).
    pub fn is_finding(&self) -> bool {
        matches!(self, Self::HashMismatch { .. } | Self::LockMismatch(_))
    }

    /// The error for `path` whose signed download URL was refused
    /// (`refused`: the 401/403 or 410 of the last try) after `times`
    /// re-resolutions; any other error is returned as it is.
    pub fn signed_url_refused(path: &str, refused: Self, times: u32) -> Self {
        match refused {
            Self::Unauthorized { url, status } | Self::Status { url, status } => {
                Self::SignedUrlRefused {
                    path: path.to_owned(),
                    origin: crate::client::Origin::of(&url)
                        .map_or_else(|_| "an invalid URL".to_owned(), |o| o.to_string()),
                    status,
                    times,
                }
            }
            e => e,
        }
    }

    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
