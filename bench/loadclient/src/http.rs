//! A minimal blocking HTTP/1.1 client over one kept-alive TCP connection, and a cookie jar.
//!
//! Requests are written by hand and answers parsed just enough (status line, the few headers the
//! workers use, a body framed by Content-Length, chunked or the connection's end), like ``KeepAlive`` in
//! bench/load.py: the point of this program is to spend as little of the machine's CPU as possible on
//! the client side, so a judge answer costs one allocation (its body) and no copy of its head.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The whole of one attempt (connect, write, answer) must fit in this, as in bench/load.py.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Why an attempt got no answer.
#[derive(Debug)]
pub enum Error {
    Timeout,
    /// The server closed the connection before the answer was complete.
    Closed,
    Io(io::ErrorKind),
    /// Not an HTTP/1.x answer we can frame (bad status line, Content-Length, chunk size; head too long).
    Malformed,
}

impl Error {
    /// The name the Python client counts the same failure under (``"<kind> <name>"`` in the errors), so
    /// that the two clients' reports read alike.
    pub fn name(&self) -> &'static str {
        use io::ErrorKind::*;
        match self {
            Error::Timeout => "TimeoutError",
            Error::Closed => "IncompleteReadError",
            Error::Malformed => "ValueError",
            Error::Io(kind) => match kind {
                ConnectionRefused => "ConnectionRefusedError",
                ConnectionReset => "ConnectionResetError",
                ConnectionAborted => "ConnectionAbortedError",
                BrokenPipe => "BrokenPipeError",
                _ => "OSError",
            },
        }
    }
}

fn io_error(e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout,
        io::ErrorKind::UnexpectedEof => Error::Closed,
        kind => Error::Io(kind),
    }
}

/// An answer, with only the headers the workers use.
pub struct Response {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: Vec<u8>,
}

/// One persistent connection to the server, opened on first use and again after any failure.
pub struct Conn {
    addr: SocketAddr,
    host: String,
    /// Reconnect rather than reuse a connection idle for longer than this (aiohttp's keep-alive timeout;
    /// granian drops connections idle for 30 s, and a request written into one of those is lost).
    idle_limit: Option<Duration>,
    stream: Option<TcpStream>,
    read_timeout: Duration,
    last_used: Instant,
    /// Bytes received and not consumed yet.
    buf: Vec<u8>,
    /// The request being written (kept to reuse its allocation).
    out: Vec<u8>,
    /// Where reads land (allocated once: a fresh zeroed array per read would cost a memset each).
    scratch: Box<[u8]>,
}

impl Conn {
    /// ``host`` is the Host header's value (``host:port``).
    pub fn new(addr: SocketAddr, host: String, idle_limit: Option<Duration>) -> Conn {
        Conn {
            addr,
            host,
            idle_limit,
            stream: None,
            read_timeout: REQUEST_TIMEOUT,
            last_used: Instant::now(),
            buf: Vec::with_capacity(16 * 1024),
            out: Vec::with_capacity(512),
            scratch: vec![0; 16 * 1024].into_boxed_slice(),
        }
    }

    pub fn close(&mut self) {
        self.stream = None; // dropping the stream closes the socket
        self.buf.clear();
    }

    /// One attempt: the answer, or why there is none (the connection is then closed, so the next
    /// attempt starts on a fresh one). Content-Length is always sent; ``headers`` must not repeat it.
    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8])
                   -> Result<Response, Error> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let answer = self.exchange(method, path, headers, body, deadline);
        match &answer {
            Ok((_, true)) | Err(_) => self.close(),
            Ok((_, false)) => {}
        }
        self.last_used = Instant::now();
        answer.map(|(r, _)| r)
    }

    fn connect(&mut self, deadline: Instant) -> Result<(), Error> {
        let stale = self.idle_limit.is_some_and(|limit| self.last_used.elapsed() > limit);
        if stale {
            self.close();
        }
        if self.stream.is_some() {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let s = TcpStream::connect_timeout(&self.addr, left).map_err(io_error)?;
        // requests are single small writes: send each at once rather than wait for an ACK (Nagle)
        s.set_nodelay(true).map_err(io_error)?;
        s.set_write_timeout(Some(REQUEST_TIMEOUT)).map_err(io_error)?;
        s.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(io_error)?;
        self.read_timeout = REQUEST_TIMEOUT;
        self.buf.clear();
        self.stream = Some(s);
        Ok(())
    }

    /// (answer, whether the connection must be closed after it).
    fn exchange(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8], deadline: Instant)
                -> Result<(Response, bool), Error> {
        self.connect(deadline)?;
        self.out.clear();
        // writes into a Vec cannot fail
        let _ = write!(self.out, "{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (name, value) in headers {
            let _ = write!(self.out, "{name}: {value}\r\n");
        }
        let _ = write!(self.out, "Content-Length: {}\r\n\r\n", body.len());
        self.out.extend_from_slice(body);
        let stream = self.stream.as_mut().expect("connected above");
        stream.write_all(&self.out).map_err(io_error)?;
        let mut reader = Reader {
            stream,
            buf: &mut self.buf,
            scratch: &mut self.scratch,
            timeout: &mut self.read_timeout,
            deadline,
        };
        loop {
            let head = reader.head()?;
            if (100..200).contains(&head.status) {
                continue; // an interim answer (100 Continue, 103 Early Hints): the real one follows
            }
            let mut close = head.close;
            let body = if method == "HEAD" || head.status == 204 || head.status == 304 {
                Vec::new()
            } else if head.chunked {
                reader.chunked()?
            } else if let Some(n) = head.length {
                reader.exactly(n)?
            } else {
                close = true; // the body runs to the end of the connection
                reader.until_closed()?
            };
            let Head { status, location, set_cookies, .. } = head;
            return Ok((Response { status, location, set_cookies, body }, close));
        }
    }
}

/// What a response head says.
struct Head {
    status: u16,
    length: Option<usize>,
    chunked: bool,
    /// Connection: close, or HTTP/1.0 without keep-alive.
    close: bool,
    location: Option<String>,
    set_cookies: Vec<String>,
}

/// Parse a response head (without its final blank line).
fn parse_head(raw: &[u8]) -> Result<Head, Error> {
    let text = String::from_utf8_lossy(raw); // borrowed, not copied, when it is valid UTF-8
    let mut lines = text.split("\r\n");
    let mut parts = lines.next().unwrap_or("").splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(Error::Malformed);
    }
    let status = parts.next().and_then(|s| s.parse::<u16>().ok()).ok_or(Error::Malformed)?;
    let mut head = Head { status, length: None, chunked: false, close: false, location: None, set_cookies: vec![] };
    let mut keep_alive = false;
    for (name, value) in lines.filter_map(|l| l.split_once(':')) {
        let (name, value) = (name.trim(), value.trim());
        let has = |word: &str| value.split(',').any(|v| v.trim().eq_ignore_ascii_case(word));
        if name.eq_ignore_ascii_case("content-length") {
            head.length = Some(value.parse().map_err(|_| Error::Malformed)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = has("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            head.close |= has("close");
            keep_alive |= has("keep-alive");
        } else if name.eq_ignore_ascii_case("location") {
            head.location = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("set-cookie") {
            head.set_cookies.push(value.to_string());
        }
    }
    head.close |= version == "HTTP/1.0" && !keep_alive;
    Ok(head)
}

/// Reads one answer off a connection, keeping any bytes beyond it in ``buf``.
struct Reader<'a> {
    stream: &'a mut TcpStream,
    buf: &'a mut Vec<u8>,
    scratch: &'a mut [u8],
    timeout: &'a mut Duration,
    deadline: Instant,
}

impl Reader<'_> {
    /// Receive more bytes into ``buf``; Closed at the end of the stream.
    fn fill(&mut self) -> Result<(), Error> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout);
        }
        // the socket's read timeout bounds each read; lower it so the attempt as a whole keeps its limit
        // (a syscall only in the rare answer that takes longer than a moment)
        if left + Duration::from_millis(100) < *self.timeout {
            self.stream.set_read_timeout(Some(left)).map_err(io_error)?;
            *self.timeout = left;
        }
        loop {
            match self.stream.read(self.scratch) {
                Ok(0) => return Err(Error::Closed),
                Ok(n) => {
                    self.buf.extend_from_slice(&self.scratch[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(e)),
            }
        }
    }

    /// Read until ``buf`` holds ``end``; where it starts.
    fn until(&mut self, end: &[u8], limit: usize) -> Result<usize, Error> {
        let mut from = 0;
        loop {
            if let Some(at) = find(&self.buf[from..], end) {
                return Ok(from + at);
            }
            if self.buf.len() > limit {
                return Err(Error::Malformed);
            }
            from = self.buf.len().saturating_sub(end.len() - 1);
            self.fill()?;
        }
    }

    /// The bytes up to the next CRLF (consumed with it, not returned with it).
    fn line(&mut self, limit: usize) -> Result<Vec<u8>, Error> {
        let at = self.until(b"\r\n", limit)?;
        let line = self.buf[..at].to_vec();
        self.buf.drain(..at + 2);
        Ok(line)
    }

    fn head(&mut self) -> Result<Head, Error> {
        let end = self.until(b"\r\n\r\n", MAX_HEAD)?;
        let head = parse_head(&self.buf[..end]);
        self.buf.drain(..end + 4);
        head
    }

    fn exactly(&mut self, n: usize) -> Result<Vec<u8>, Error> {
        while self.buf.len() < n {
            self.fill()?;
        }
        // copied out, so that ``buf`` keeps its allocation for the next answer
        let body = self.buf[..n].to_vec();
        self.buf.drain(..n);
        Ok(body)
    }

    fn chunked(&mut self) -> Result<Vec<u8>, Error> {
        let mut body = Vec::new();
        loop {
            let line = self.line(MAX_HEAD)?;
            let text = String::from_utf8_lossy(&line);
            let size = text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| Error::Malformed)?;
            if size == 0 {
                while !self.line(MAX_HEAD)?.is_empty() {} // trailers, up to the blank line
                return Ok(body);
            }
            body.extend_from_slice(&self.exactly(size)?);
            if !self.line(2)?.is_empty() {
                return Err(Error::Malformed); // a chunk must end with CRLF
            }
        }
    }

    fn until_closed(&mut self) -> Result<Vec<u8>, Error> {
        loop {
            match self.fill() {
                Ok(()) => {}
                Err(Error::Closed) => return Ok(std::mem::take(self.buf)),
                Err(e) => return Err(e),
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The cookies of one participant (one browser profile): name -> value, sent back on every page request.
/// Domain and path are not tracked: there is one server, and the site sets every cookie on ``/``.
#[derive(Default)]
pub struct Jar {
    cookies: Vec<(String, String)>,
}

impl Jar {
    pub fn clear(&mut self) {
        self.cookies.clear();
    }

    /// Take the Set-Cookie headers of ``r`` (a cookie set with Max-Age=0 is deleted).
    pub fn store(&mut self, r: &Response) {
        for header in &r.set_cookies {
            let mut attrs = header.split(';');
            let Some((name, value)) = attrs.next().and_then(|pair| pair.split_once('=')) else { continue };
            let (name, value) = (name.trim(), value.trim().trim_matches('"'));
            if name.is_empty() {
                continue;
            }
            let expired = attrs.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            self.cookies.retain(|(n, _)| n != name);
            if !expired {
                self.cookies.push((name.to_string(), value.to_string()));
            }
        }
    }

    /// The Cookie header's value, if there is any cookie.
    pub fn header(&self) -> Option<String> {
        if self.cookies.is_empty() {
            return None;
        }
        let pairs: Vec<String> = self.cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
        Some(pairs.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A one-connection server that answers each request with the next canned answer.
    fn serve(answers: Vec<&'static [u8]>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = Vec::new();
            for answer in answers {
                // wait for a whole request (these have no body)
                while find(&buf, b"\r\n\r\n").is_none() {
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let end = find(&buf, b"\r\n\r\n").unwrap();
                buf.drain(..end + 4);
                s.write_all(answer).unwrap();
            }
        });
        addr
    }

    #[test]
    fn frames_bodies_and_keeps_the_connection() {
        let addr = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie:  csrftoken=abc; Path=/\r\n\r\nhello",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nfoo\r\n4;x=y\r\nbar!\r\n0\r\n\r\n",
            b"HTTP/1.1 302 Found\r\nLocation: /a/t/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ]);
        let mut c = Conn::new(addr, addr.to_string(), None);
        let mut jar = Jar::default();
        let r = c.request("GET", "/", &[], b"").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        jar.store(&r);
        assert_eq!(jar.header().as_deref(), Some("csrftoken=abc"));
        let r = c.request("GET", "/", &[], b"").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"foobar!"[..]));
        let r = c.request("GET", "/", &[], b"").unwrap();
        assert_eq!((r.status, r.location.as_deref()), (302, Some("/a/t/")));
        assert!(c.stream.is_none(), "Connection: close was not honoured");
    }

    #[test]
    fn a_closed_connection_is_an_error_and_reconnects() {
        let addr = serve(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"]);
        let mut c = Conn::new(addr, addr.to_string(), None);
        let e = c.request("GET", "/", &[], b"").err().unwrap();
        assert_eq!(e.name(), "IncompleteReadError");
        assert!(c.stream.is_none());
    }

    #[test]
    fn reads_heads() {
        let h = parse_head(b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\nSET-COOKIE: a=b").unwrap();
        assert_eq!((h.status, h.length, h.close, h.set_cookies.len()), (200, Some(3), true, 1));
        let h = parse_head(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close").unwrap();
        assert!(h.close);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x").is_err());
        assert!(parse_head(b"SSH-2.0 hello").is_err());
    }

    #[test]
    fn jar_replaces_and_deletes() {
        let mut jar = Jar::default();
        let answer = |cookies: &[&str]| Response {
            status: 200,
            location: None,
            set_cookies: cookies.iter().map(|c| c.to_string()).collect(),
            body: vec![],
        };
        let r = answer(&["a=1; Path=/", "b=2", "a=3"]);
        jar.store(&r);
        assert_eq!(jar.header().as_deref(), Some("b=2; a=3"));
        let r = answer(&["b=; Max-Age=0"]);
        jar.store(&r);
        assert_eq!(jar.header().as_deref(), Some("a=3"));
    }
}
