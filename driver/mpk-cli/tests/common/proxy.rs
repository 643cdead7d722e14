//! Proxies for the Hub tests, on 127.0.0.1, a thread per connection:
//!
//! * [`TestProxy::connect`]: an HTTP CONNECT proxy. It reads the request
//!   head (`CONNECT host:port HTTP/1.1` and its header lines), records it,
//!   answers `200 Connection established`, connects to the target and
//!   copies bytes both ways until either side closes. Anything but
//!   `CONNECT` (an absolute-form request, as a forward proxy gets) is
//!   recorded and answered `405`.
//! * [`TestProxy::refusing`]: records the head and answers `CONNECT` with
//!   the given status.
//! * [`TestProxy::socks5`]: SOCKS5 without authentication, `CONNECT`
//!   command only, the target recorded as `host:port` whatever its
//!   address type.
//!
//! Each counts the connections it accepted and the tunnels it opened,
//! and keeps the first line the client sent through each tunnel (for an
//! `http` origin, the request line: origin-form, never the proxy's).
//! Dropping a proxy stops its listener and joins every thread it started;
//! a tunnel ends when both sides have closed, or after a minute without
//! a byte (a backstop so no thread outlives a hung test by long).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a tunnel waits for a byte before it gives up.
const IDLE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
enum Kind {
    Connect,
    Refuse(u16),
    Socks5,
}

/// What a proxy saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// TCP connections accepted.
    pub accepted: u64,
    /// Tunnels opened (the target connected, the client told so).
    pub tunnels: u64,
    /// Every request head as received (CONNECT proxies: request line and
    /// header lines, up to the empty line; SOCKS5: the greeting and the
    /// request bytes).
    pub heads: Vec<Vec<u8>>,
    /// The `host:port` each CONNECT (or SOCKS5 request) named.
    pub targets: Vec<String>,
    /// The first line the client sent through each tunnel.
    pub first_lines: Vec<String>,
}

/// A running test proxy; dropping it stops it.
#[derive(Debug)]
pub struct TestProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    listener: Option<JoinHandle<()>>,
}

impl TestProxy {
    /// A CONNECT proxy that opens every tunnel asked for.
    pub fn connect() -> Self {
        Self::start(Kind::Connect)
    }

    /// A CONNECT proxy that answers every request with `status`.
    pub fn refusing(status: u16) -> Self {
        Self::start(Kind::Refuse(status))
    }

    /// A SOCKS5 proxy (no authentication).
    pub fn socks5() -> Self {
        Self::start(Kind::Socks5)
    }

    fn start(kind: Kind) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = l.local_addr().expect("address");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        let listener = std::thread::spawn(move || {
            let mut conns = Vec::new();
            for c in l.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(c) = c else { continue };
                s2.lock().unwrap().accepted += 1;
                let s3 = Arc::clone(&s2);
                conns.push(std::thread::spawn(move || {
                    let _ = c.set_read_timeout(Some(IDLE));
                    let _ = match kind {
                        Kind::Connect | Kind::Refuse(_) => http_connect(c, kind, &s3),
                        Kind::Socks5 => socks5(c, &s3),
                    };
                }));
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Self {
            addr,
            seen,
            stop,
            listener: Some(listener),
        }
    }

    /// `scheme://127.0.0.1:port`.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    /// What it saw so far.
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the listener's accept.
        let _ = TcpStream::connect(self.addr);
        if let Some(l) = self.listener.take() {
            let _ = l.join();
        }
    }
}

/// Reads up to and including the empty line ending a request head (one
/// byte at a time: nothing after it is consumed); at most 64 KiB.
fn read_head(c: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if c.read(&mut b)? == 0 || head.len() > 64 << 10 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
    }
    Ok(head)
}

fn http_connect(mut c: TcpStream, kind: Kind, seen: &Mutex<Seen>) -> std::io::Result<()> {
    let head = read_head(&mut c)?;
    seen.lock().unwrap().heads.push(head.clone());
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let refuse = |mut c: TcpStream, status: u16| {
        let answer =
            format!("HTTP/1.1 {status} Refused\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        c.write_all(answer.as_bytes())?;
        c.shutdown(Shutdown::Both)
    };
    if method != "CONNECT" {
        return refuse(c, 405);
    }
    seen.lock().unwrap().targets.push(target.to_owned());
    if let Kind::Refuse(status) = kind {
        return refuse(c, status);
    }
    let Ok(up) = TcpStream::connect(target) else {
        return refuse(c, 502);
    };
    c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    seen.lock().unwrap().tunnels += 1;
    tunnel(c, up, seen)
}

fn socks5(mut c: TcpStream, seen: &Mutex<Seen>) -> std::io::Result<()> {
    let mut head = vec![0u8; 2];
    c.read_exact(&mut head)?;
    let mut methods = vec![0u8; head[1] as usize];
    c.read_exact(&mut methods)?;
    head.extend_from_slice(&methods);
    if head[0] != 5 || !methods.contains(&0) {
        seen.lock().unwrap().heads.push(head);
        c.write_all(&[5, 0xff])?;
        return c.shutdown(Shutdown::Both);
    }
    c.write_all(&[5, 0])?;
    let mut req = [0u8; 4];
    c.read_exact(&mut req)?;
    head.extend_from_slice(&req);
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            c.read_exact(&mut a)?;
            head.extend_from_slice(&a);
            std::net::Ipv4Addr::from(a).to_string()
        }
        3 => {
            let mut n = [0u8; 1];
            c.read_exact(&mut n)?;
            let mut name = vec![0u8; n[0] as usize];
            c.read_exact(&mut name)?;
            head.extend_from_slice(&n);
            head.extend_from_slice(&name);
            String::from_utf8_lossy(&name).into_owned()
        }
        4 => {
            let mut a = [0u8; 16];
            c.read_exact(&mut a)?;
            head.extend_from_slice(&a);
            format!("[{}]", std::net::Ipv6Addr::from(a))
        }
        _ => String::new(),
    };
    let mut port = [0u8; 2];
    c.read_exact(&mut port)?;
    head.extend_from_slice(&port);
    let target = format!("{host}:{}", u16::from_be_bytes(port));
    {
        let mut s = seen.lock().unwrap();
        s.heads.push(head);
        s.targets.push(target.clone());
    }
    let up = match (req[1], TcpStream::connect(&target)) {
        (1, Ok(up)) => up,
        _ => {
            // General failure.
            c.write_all(&[5, 1, 0, 1, 0, 0, 0, 0, 0, 0])?;
            return c.shutdown(Shutdown::Both);
        }
    };
    c.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0])?;
    seen.lock().unwrap().tunnels += 1;
    tunnel(c, up, seen)
}

/// Copies both ways until both directions have ended; an end on one side
/// is passed on as a half-close to the other.
fn tunnel(c: TcpStream, up: TcpStream, seen: &Mutex<Seen>) -> std::io::Result<()> {
    up.set_read_timeout(Some(IDLE))?;
    let (c2, up2) = (c.try_clone()?, up.try_clone()?);
    let back = std::thread::spawn(move || copy(up2, c2, None));
    copy(c, up, Some(seen));
    let _ = back.join();
    Ok(())
}

/// Copies `from` to `to` until `from` ends or either fails, then
/// half-closes `to`. The first line of the first bytes goes to
/// `first_lines` of `record` before they are passed on, so it is there
/// before any answer to them.
fn copy(mut from: TcpStream, mut to: TcpStream, mut record: Option<&Mutex<Seen>>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(seen) = record.take() {
                    let line = buf[..n].split(|b| *b == b'\n').next().unwrap_or(&[]);
                    seen.lock()
                        .unwrap()
                        .first_lines
                        .push(String::from_utf8_lossy(line).trim_end().to_owned());
                }
                if to.write_all(&buf[..n]).is_err() {
                    let _ = from.shutdown(Shutdown::Read);
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
