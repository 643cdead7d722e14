//! The robustness harness (issue 15): every parser of untrusted bytes is
//! fed generated and mutated inputs and must return, `Ok` or `Err`, without
//! a panic, within a time limit per case, and without allocating beyond a
//! process-wide cap.
//!
//! - Inputs: mostly valid seeds (real or synthetic files the parser
//!   accepts) changed by a few [`Mutation`]s (bit flips, boundary integers
//!   written at any offset, cuts, splices, dictionary tokens), some fully
//!   random bytes. proptest draws them from a fixed seed per campaign (so
//!   a run is repeatable; `MPK_ROBUST_SEED` changes it) and shrinks a
//!   failing case to a small one.
//! - Time: each case must finish within [`CASE_LIMIT`] (a hang detector:
//!   the slowest legitimate cases take under a second, the defects it is
//!   for took 10 to 30 s); a watchdog aborts the process, naming the
//!   campaign, when a case never returns.
//! - Memory: this crate's global allocator ([`ALLOC`]) refuses to hold more
//!   than [`MEMORY_LIMIT`] at once, so an input that makes a parser
//!   allocate by a length it read aborts the run.
//! - Volume: [`cases`] scales the counts with `MPK_ROBUST_SCALE` (default 1).

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Most bytes the whole test process may hold at once.
pub const MEMORY_LIMIT: usize = 1 << 30;

/// The global allocator: the system's, capped at [`MEMORY_LIMIT`].
#[global_allocator]
pub static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, MEMORY_LIMIT);

/// The longest one case may take.
pub const CASE_LIMIT: Duration = Duration::from_secs(10);

/// Without progress for this long, the watchdog aborts the process.
const HANG: Duration = Duration::from_secs(60);

/// Integers that sit on boundaries parsers get wrong: zero, one, sign
/// bits, all ones, block and page sizes around 4096, 2^32 and 2^63.
const INTERESTING: [u64; 18] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0x8000,
    0xffff,
    4095,
    4096,
    4097,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// One change to an input. Offsets are taken modulo the input's length
/// when applied, so every mutation applies to every input.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flip one bit.
    FlipBit {
        /// Byte offset.
        at: u32,
        /// Bit 0–7.
        bit: u8,
    },
    /// Overwrite one byte.
    SetByte {
        /// Byte offset.
        at: u32,
        /// The new value.
        value: u8,
    },
    /// Overwrite a little-endian integer of 1, 2, 4 or 8 bytes with a
    /// boundary value.
    SetInt {
        /// Byte offset.
        at: u32,
        /// Width in bytes.
        width: u8,
        /// Index into the boundary values.
        which: u8,
    },
    /// Cut the input at an offset.
    Truncate {
        /// New length.
        at: u32,
    },
    /// Remove a run of bytes.
    Delete {
        /// Start.
        at: u32,
        /// Bytes removed.
        len: u16,
    },
    /// Insert random bytes.
    Insert {
        /// Where.
        at: u32,
        /// What.
        bytes: Vec<u8>,
    },
    /// Insert a token of the campaign's dictionary.
    Token {
        /// Where.
        at: u32,
        /// Index into the dictionary.
        which: u16,
    },
    /// Copy a run of the input over another place of it.
    Copy {
        /// Source offset.
        from: u32,
        /// Destination offset.
        to: u32,
        /// Bytes copied.
        len: u16,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<u32>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => (any::<u32>(), any::<u8>()).prop_map(|(at, value)| Mutation::SetByte { at, value }),
        3 => (any::<u32>(), prop::sample::select(vec![1u8, 2, 4, 8]), 0..INTERESTING.len() as u8)
            .prop_map(|(at, width, which)| Mutation::SetInt { at, width, which }),
        1 => any::<u32>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<u32>(), 1u16..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => (any::<u32>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        2 => (any::<u32>(), any::<u16>()).prop_map(|(at, which)| Mutation::Token { at, which }),
        1 => (any::<u32>(), any::<u32>(), 1u16..256)
            .prop_map(|(from, to, len)| Mutation::Copy { from, to, len }),
    ]
}

/// Applies `m` to `data` (tokens from `dict`).
pub fn apply(data: &mut Vec<u8>, m: &Mutation, dict: &[&[u8]]) {
    let at = |a: u32, extra: usize| (a as usize) % (data.len() + extra).max(1);
    match m {
        Mutation::FlipBit { at: a, bit } if !data.is_empty() => {
            let i = at(*a, 0);
            data[i] ^= 1 << bit;
        }
        Mutation::SetByte { at: a, value } if !data.is_empty() => {
            let i = at(*a, 0);
            data[i] = *value;
        }
        Mutation::SetInt {
            at: a,
            width,
            which,
        } if data.len() >= usize::from(*width) => {
            let w = usize::from(*width);
            let i = (*a as usize) % (data.len() - w + 1);
            let v = INTERESTING[usize::from(*which) % INTERESTING.len()].to_le_bytes();
            data[i..i + w].copy_from_slice(&v[..w]);
        }
        Mutation::Truncate { at: a } => {
            let n = at(*a, 1);
            data.truncate(n);
        }
        Mutation::Delete { at: a, len } if !data.is_empty() => {
            let i = at(*a, 0);
            let end = (i + usize::from(*len)).min(data.len());
            data.drain(i..end);
        }
        Mutation::Insert { at: a, bytes } => {
            let i = at(*a, 1);
            data.splice(i..i, bytes.iter().copied());
        }
        Mutation::Token { at: a, which } if !dict.is_empty() => {
            let i = at(*a, 1);
            let t = dict[usize::from(*which) % dict.len()];
            data.splice(i..i, t.iter().copied());
        }
        Mutation::Copy { from, to, len } if !data.is_empty() => {
            let (f, t) = (at(*from, 0), at(*to, 0));
            let n = usize::from(*len).min(data.len() - f).min(data.len() - t);
            data.copy_within(f..f + n, t);
        }
        _ => {}
    }
}

/// One generated input: bytes that print as one line of hex (a failing
/// case is reported that way, ready to paste into a test).
#[derive(Clone, PartialEq, Eq)]
pub struct Input(pub Vec<u8>);

impl std::ops::Deref for Input {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes: ", self.0.len())?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Inputs for a parser: nine in ten are a seed with one to six
/// mutations, one in ten is random bytes (up to `max_random` long).
pub fn inputs(
    seeds: Vec<Vec<u8>>,
    dict: &'static [&'static [u8]],
    max_random: usize,
) -> impl Strategy<Value = Input> {
    assert!(!seeds.is_empty(), "a campaign needs a seed");
    let n = seeds.len();
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..max_random).prop_map(Input),
        9 => (0..n, prop::collection::vec(mutation(), 1..7)).prop_map(move |(i, ms)| {
            let mut d = seeds[i].clone();
            for m in &ms {
                apply(&mut d, m, dict);
            }
            Input(d)
        }),
    ]
}

/// Tokens for JSON documents: structure, boundary numbers, odd strings.
pub const JSON_TOKENS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1e309",
    b"-0",
    b"18446744073709551616",
    b"4294967296",
    b"4096",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"\"../../etc/passwd\"",
    b"\"/\"",
    b"{\"a\":",
    b"[[[[[[[[[[[[[[[[",
    b"\"00000000000000000000000000000000000000000000000000000000000000000\"",
];

/// Tokens for text with `key=value` words and `_`/`@`/`/` separators.
pub const TEXT_TOKENS: &[&[u8]] = &[
    b" ",
    b"=",
    b"_",
    b"@",
    b"/",
    b":",
    b",",
    b"\"",
    b"\\",
    b"\0",
    b"\n",
    b"-",
    b"0",
    b"9",
    b"f",
    b"g",
    b"A",
    b"18446744073709551615",
    b"18446744073709551616",
    b"4096",
    b"..",
    b"mpk.model=",
    b"crypt",
    b"\xff",
    b"\xc3\xa9",
];

/// `n` scaled by `MPK_ROBUST_SCALE` (a positive number; default 1).
pub fn cases(n: u32) -> u32 {
    let scale: f64 = std::env::var("MPK_ROBUST_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(1.0);
    ((f64::from(n) * scale) as u32).max(1)
}

/// What a finished campaign saw.
#[derive(Debug)]
pub struct Summary {
    /// Cases run.
    pub cases: u32,
    /// Cases the parser accepted (returned `Ok`).
    pub accepted: u64,
    /// The slowest case.
    pub slowest: Duration,
    /// The whole campaign.
    pub elapsed: Duration,
}

/// Runs `cases` cases of `strategy` through `parse`, which returns whether
/// the parser accepted the input. Fails (panics, with proptest's shrunk
/// case) on a panic or a case over [`CASE_LIMIT`]; aborts the process on a
/// hang or an allocation over the cap. Prints a summary line.
pub fn run<T: Debug>(
    name: &str,
    cases: u32,
    strategy: impl Strategy<Value = T>,
    parse: impl Fn(&T) -> bool,
) -> Summary {
    run_limited(name, cases, CASE_LIMIT, strategy, parse)
}

/// [`run`] with another time limit per case.
pub fn run_limited<T: Debug>(
    name: &str,
    cases: u32,
    case_limit: Duration,
    strategy: impl Strategy<Value = T>,
    parse: impl Fn(&T) -> bool,
) -> Summary {
    let seed = std::env::var("MPK_ROBUST_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0x6d70_6b21);
    let mut key = [0u8; 32];
    for (i, b) in name.bytes().chain(seed.to_le_bytes()).enumerate() {
        key[i % 32] = key[i % 32].wrapping_mul(31).wrapping_add(b);
    }
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2048,
        // A failure is reported after at most this much shrinking.
        max_shrink_time: 30_000,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key));
    let progress = AtomicU64::new(0);
    let accepted = AtomicU64::new(0);
    let slowest = std::sync::Mutex::new(Duration::ZERO);
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let (result, elapsed) = std::thread::scope(|s| {
        s.spawn(|| watchdog(name, &progress, &done));
        let r = runner.run(&strategy, |input| {
            let t = Instant::now();
            let ok = parse(&input);
            let took = t.elapsed();
            progress.fetch_add(1, Ordering::Relaxed);
            accepted.fetch_add(u64::from(ok), Ordering::Relaxed);
            let mut sl = slowest.lock().expect("not poisoned");
            *sl = (*sl).max(took);
            if took > case_limit {
                return Err(TestCaseError::fail(format!(
                    "one case took {took:?} (limit {case_limit:?})"
                )));
            }
            Ok(())
        });
        let elapsed = start.elapsed();
        done.store(true, Ordering::Relaxed);
        (r, elapsed)
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    let summary = Summary {
        cases,
        accepted: accepted.into_inner(),
        slowest: slowest.into_inner().expect("not poisoned"),
        elapsed,
    };
    eprintln!(
        "{name}: {} cases ({} accepted) in {:.2?}, slowest {:.2?}; {} MiB allocated now, peak RSS {}",
        summary.cases,
        summary.accepted,
        summary.elapsed,
        summary.slowest,
        ALLOC.allocated() >> 20,
        peak_rss()
    );
    summary
}

/// Aborts the process when `progress` stops moving for [`HANG`].
fn watchdog(name: &str, progress: &AtomicU64, done: &AtomicBool) {
    let mut last = (progress.load(Ordering::Relaxed), Instant::now());
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        let now = progress.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > HANG {
            eprintln!("{name}: case {now} has not returned for {HANG:?}: a hang");
            std::process::abort();
        }
    }
}

/// The process's peak resident set (`VmHWM`), as Linux reports it.
pub fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l["VmHWM:".len()..].trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The accepted-or-not of a parser result (every parser returns a
/// `Result`; the harness only counts acceptances).
pub fn accepted<T, E>(r: Result<T, E>) -> bool {
    r.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_apply_to_any_input() {
        let ms = [
            Mutation::FlipBit { at: 7, bit: 3 },
            Mutation::SetInt {
                at: 1,
                width: 8,
                which: 17,
            },
            Mutation::Truncate { at: 3 },
            Mutation::Delete { at: 0, len: 9 },
            Mutation::Insert {
                at: 99,
                bytes: vec![1, 2],
            },
            Mutation::Token { at: 5, which: 2 },
            Mutation::Copy {
                from: 1,
                to: 0,
                len: 200,
            },
        ];
        for len in [0usize, 1, 2, 8, 100] {
            for m in &ms {
                let mut d = vec![0xaa; len];
                apply(&mut d, m, JSON_TOKENS);
            }
        }
        let mut d = vec![0u8; 16];
        apply(
            &mut d,
            &Mutation::SetInt {
                at: 4,
                width: 4,
                which: 13,
            },
            &[],
        );
        assert_eq!(&d[4..8], &[0xff; 4]);
    }

    #[test]
    #[should_panic(expected = "boom")]
    fn a_panicking_parser_fails_the_campaign() {
        run("panics", 50, inputs(vec![vec![1, 2, 3]], &[], 8), |d| {
            assert!(d.len() < 2, "boom");
            true
        });
    }

    #[test]
    #[should_panic(expected = "limit")]
    fn a_slow_case_fails_the_campaign() {
        // `Just`: nothing to shrink, so the failure is reported at once.
        let limit = Duration::from_millis(20);
        run_limited("slow", 3, limit, Just(vec![1u8]), |_| {
            std::thread::sleep(limit * 2);
            true
        });
    }
}
