//! One simulated crowdworker per OS thread, doing what ``_worker`` in bench/load.py does: arrive
//! (consent page, consent POST, state, device), wait for the judging window, judge item after item over
//! one kept-alive connection with exponential think times, retries and replays, complete, start over.
//!
//! A thread per worker with blocking sockets keeps the logic a straight line, as in the Python
//! coroutines; the threads spend nearly all their time asleep (think times) or blocked on a read, so on
//! 2 cores they cost far less than an event loop in Python.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::http::{self, Conn, Jar, Response};
use crate::json;
use crate::rng::{uuid_text, Rng};
use crate::Config;

/// Backoff between attempts, as task.js (and bench/load.py): 0.5 s doubling to 30 s, each ×U(0.8, 1.2).
const RETRY_START_S: f64 = 0.5;
const RETRY_MAX_S: f64 = 30.0;
/// aiohttp's keep-alive timeout, which the Python client's page requests get.
const PAGE_IDLE_LIMIT: Duration = Duration::from_secs(15);
const USER_AGENT: &str = concat!("bench-loadclient/", env!("CARGO_PKG_VERSION"));
const CSRF_FIELD: &[u8] = b"name=\"csrfmiddlewaretoken\" value=\"";

/// What all workers share: the configuration, the clock, the window, the counters.
pub struct Shared {
    pub cfg: Config,
    clock: Instant,
    /// The judging window's deadline (f64 seconds on ``clock``, as bits); +inf until it starts.
    deadline: AtomicU64,
    gate: Mutex<Gate>,
    opened: Condvar,
    pub c: Counters,
}

struct Gate {
    arrived: usize,
    started: Option<f64>,
}

/// Counts that have no per-event detail (those go into each worker's ``Log``).
#[derive(Default)]
pub struct Counters {
    pub judge_posts: AtomicU64,
    pub retries: AtomicU64,
    pub replays: AtomicU64,
    pub replay_mismatch: AtomicU64,
    pub unacked: AtomicU64,
    pub assignments: AtomicU64,
    pub completed: AtomicU64,
    pub arrived: AtomicU64,
    pub in_flight: AtomicU64,
    pub peak_in_flight: AtomicU64,
    /// For the progress line only: judgments acknowledged, errors counted.
    pub acked: AtomicU64,
    pub errors: AtomicU64,
    /// Workers whose thread has ended (``panicked`` of them by a panic).
    pub finished: AtomicU64,
    pub panicked: AtomicU64,
}

impl Shared {
    pub fn new(cfg: Config) -> Shared {
        Shared {
            cfg,
            clock: Instant::now(),
            deadline: AtomicU64::new(f64::INFINITY.to_bits()),
            gate: Mutex::new(Gate { arrived: 0, started: None }),
            opened: Condvar::new(),
            c: Counters::default(),
        }
    }

    /// Seconds since the client started: every time in the output is on this clock.
    pub fn now(&self) -> f64 {
        self.clock.elapsed().as_secs_f64()
    }

    pub fn deadline(&self) -> f64 {
        f64::from_bits(self.deadline.load(Relaxed))
    }

    /// No retry starts after this.
    fn hard_stop(&self) -> f64 {
        self.deadline() + self.cfg.grace
    }

    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self, g: &mut Gate) -> f64 {
        let started = self.now();
        g.started = Some(started);
        self.deadline.store((started + self.cfg.duration).to_bits(), Relaxed);
        self.opened.notify_all();
        started
    }

    /// A worker has taken its first assignment (or failed to): count it, open the window if it is the
    /// last one, and wait until the window is open.
    fn arrive(&self) {
        self.c.arrived.fetch_add(1, Relaxed);
        let mut g = self.gate();
        g.arrived += 1;
        if g.arrived == self.cfg.clients && g.started.is_none() {
            self.open(&mut g);
        }
        while g.started.is_none() {
            g = self.opened.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Wait until every worker has arrived, at most until ``arrival_limit`` s after the start (then the
    /// window opens anyway); (window start, whether it was cut off).
    pub fn wait_for_window(&self) -> (f64, bool) {
        let mut g = self.gate();
        loop {
            if let Some(started) = g.started {
                return (started, false);
            }
            let left = self.cfg.arrival_limit - self.now();
            if left <= 0.0 {
                return (self.open(&mut g), true);
            }
            g = self.opened.wait_timeout(g, Duration::from_secs_f64(left)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

pub fn sleep_until(sh: &Shared, t: f64) {
    let left = t - sh.now();
    if left > 0.0 {
        thread::sleep(Duration::from_secs_f64(left));
    }
}

fn sleep_s(s: f64) {
    if s > 0.0 {
        thread::sleep(Duration::from_secs_f64(s));
    }
}

/// An acknowledged judgment: our uuid, the assignment, the position, the choice the server stored.
pub struct Ack {
    pub uuid: u128,
    pub token: std::sync::Arc<str>,
    pub position: i64,
    pub choice: Cow<'static, str>,
    pub at: f64,
}

/// The judgment a 200/201 answer says is stored.
struct Stored {
    /// Its uuid is the one sent.
    same_uuid: bool,
    choice: Cow<'static, str>,
}

/// One HTTP attempt that got an answer: kind, seconds from its start to the end of the answer, when it
/// ended, status.
pub struct Latency {
    pub kind: &'static str,
    pub seconds: f64,
    pub at: f64,
    pub status: u16,
}

/// What one worker saw. Each worker has its own behind an (uncontended) mutex, so that the main thread
/// can read it even from a worker still stuck in a request when the run is cut off.
#[derive(Default)]
pub struct Log {
    pub acks: Vec<Ack>,
    pub latencies: Vec<Latency>,
    pub errors: HashMap<String, u64>,
    /// Made at least one judgment.
    pub active: bool,
}

pub fn lock(log: &Mutex<Log>) -> MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// The assignment is no longer open (403/404): the page stops, so does the worker's participant.
struct Gone;

struct Item {
    position: i64,
    images: Vec<String>, // left, right and ref image paths that the state gives
}

#[derive(Clone, Copy, PartialEq)]
enum Via {
    /// The connection for the judge POSTs (a browser tab's).
    Judge,
    /// The one for everything else, with the participant's cookies.
    Page,
}

struct Worker<'a> {
    sh: &'a Shared,
    log: &'a Mutex<Log>,
    /// Think times, choices, response times, replays, backoff jitter: reproducible from --seed.
    rng: Rng,
    /// uuids: never the same in two runs (Python's uuid4), or a second run against the same database
    /// would post uuids already stored.
    ids: Rng,
    judge: Conn,
    page: Conn,
    jar: Jar,
}

/// Counts the worker's end (also if it panics), so that the main thread can tell when all are done.
struct Finished<'a>(&'a Shared);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.c.panicked.fetch_add(1, Relaxed);
        }
        self.0.c.finished.fetch_add(1, Relaxed);
    }
}

/// The life of worker ``id``; ``entropy`` seeds its uuids.
pub fn run(id: usize, entropy: u64, sh: &Shared, log: &Mutex<Log>) {
    let _finished = Finished(sh);
    let cfg = &sh.cfg;
    let mut w = Worker {
        sh,
        log,
        rng: Rng::new(cfg.seed, id as u64),
        ids: Rng::new(entropy, id as u64),
        judge: Conn::new(cfg.addr, cfg.host.clone(), None),
        page: Conn::new(cfg.addr, cfg.host.clone(), Some(PAGE_IDLE_LIMIT)),
        jar: Jar::default(),
    };
    w.run();
}

impl Worker<'_> {
    fn run(&mut self) {
        let sh = self.sh;
        sleep_s(self.rng.range(0.0, sh.cfg.ramp));
        let mut arriving = true;
        while arriving || sh.now() < sh.deadline() {
            self.jar.clear(); // a new browser profile = a new participant
            let started = self.start();
            if arriving {
                arriving = false;
                sh.arrive();
            }
            let Some((token, items)) = started else {
                thread::sleep(Duration::from_secs(1));
                continue;
            };
            match self.judge_items(&token, &items) {
                Ok(true) => {
                    let path = format!("/a/{token}/complete");
                    let answer = self.send(Via::Page, "complete", "POST", &path, &[("X-Assignment-Token", &token)], b"");
                    if answer.is_some_and(|r| r.status == 200) {
                        sh.c.completed.fetch_add(1, Relaxed);
                    }
                }
                Ok(false) => {}
                Err(Gone) => self.error("assignment closed mid-run"),
            }
        }
        self.judge.close();
        self.page.close();
    }

    fn error(&self, what: &str) {
        self.sh.c.errors.fetch_add(1, Relaxed);
        let mut log = lock(self.log);
        match log.errors.get_mut(what) {
            Some(n) => *n += 1,
            None => {
                log.errors.insert(what.to_string(), 1);
            }
        }
    }

    /// One attempt, counted (in flight, latency, HTTP errors); page requests carry and keep the cookies.
    fn attempt(&mut self, via: Via, kind: &'static str, method: &str, path: &str, headers: &[(&str, &str)],
               body: &[u8]) -> Result<Response, http::Error> {
        let c = &self.sh.c;
        let cookie;
        let mut all: Vec<(&str, &str)>;
        let headers = match via {
            Via::Judge => headers, // as the Python client's KeepAlive: nothing else
            Via::Page => {
                all = headers.to_vec();
                all.push(("User-Agent", USER_AGENT)); // aiohttp sends one; the device POST stores it
                cookie = self.jar.header();
                if let Some(value) = &cookie {
                    all.push(("Cookie", value));
                }
                &all[..]
            }
        };
        let conn = if via == Via::Judge { &mut self.judge } else { &mut self.page };
        let n = c.in_flight.fetch_add(1, Relaxed) + 1;
        c.peak_in_flight.fetch_max(n, Relaxed);
        let t0 = Instant::now();
        let answer = conn.request(method, path, headers, body);
        let seconds = t0.elapsed().as_secs_f64();
        c.in_flight.fetch_sub(1, Relaxed);
        if let Ok(r) = &answer {
            let at = self.sh.now();
            lock(self.log).latencies.push(Latency { kind, seconds, at, status: r.status });
            if r.status >= 400 {
                self.error(&format!("{kind} HTTP {}", r.status));
            }
            if via == Via::Page {
                self.jar.store(r);
            }
        }
        answer
    }

    /// Attempt until an answer below 500 (and not 429), backing off in between as task.js does; None
    /// when the next try would start after the hard stop (``_with_retries``).
    fn send(&mut self, via: Via, kind: &'static str, method: &str, path: &str, headers: &[(&str, &str)],
            body: &[u8]) -> Option<Response> {
        let sh = self.sh;
        let mut backoff = RETRY_START_S;
        loop {
            if kind == "judge" {
                sh.c.judge_posts.fetch_add(1, Relaxed);
            }
            match self.attempt(via, kind, method, path, headers, body) {
                Ok(r) if r.status < 500 && r.status != 429 => return Some(r),
                Ok(_) => {}
                Err(e) => self.error(&format!("{kind} {}", e.name())),
            }
            if sh.now() + backoff > sh.hard_stop() {
                return None;
            }
            sh.c.retries.fetch_add(1, Relaxed);
            sleep_s(backoff * self.rng.range(0.8, 1.2));
            backoff = (backoff * 2.0).min(RETRY_MAX_S);
        }
    }

    /// Consent on /p/<slug>/ (GET the form, POST it with the CSRF token), read the state, post the device
    /// facts: (token, items), or None (``_start``).
    fn start(&mut self) -> Option<(String, Vec<Item>)> {
        let cfg = &self.sh.cfg;
        let page = self.send(Via::Page, "entry", "GET", &cfg.entry_path, &[], b"")?;
        if page.status != 200 {
            return None;
        }
        let Some(csrf) = csrf_token(&page.body) else {
            self.error("entry no CSRF field");
            return None;
        };
        let form = format!("consent=yes&csrfmiddlewaretoken={}", form_escape(&csrf));
        let hdr = [("Content-Type", "application/x-www-form-urlencoded"), ("Referer", cfg.entry_url.as_str())];
        let consent = self.send(Via::Page, "consent", "POST", &cfg.entry_path, &hdr, form.as_bytes())?;
        let location = consent.location.as_deref().unwrap_or("");
        if consent.status != 302 || !location.contains("/a/") {
            return None;
        }
        let token = location.trim_end_matches('/').rsplit('/').next().unwrap_or("").to_string();
        // the token goes into paths, headers and the output's space-separated lines
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            self.error("consent unexpected Location");
            return None;
        }
        self.sh.c.assignments.fetch_add(1, Relaxed);
        let state = self.send(Via::Page, "state", "GET", &format!("/a/{token}/state"), &[], b"")?;
        if state.status != 200 {
            return None;
        }
        let Some(items) = state_items(&state.body) else {
            self.error("state unreadable answer");
            return None;
        };
        let hdr = [("X-Assignment-Token", token.as_str()), ("Content-Type", "application/json")];
        let device = br#"{"viewport": [1600, 1000], "dpr": 1, "screen": [1920, 1080]}"#;
        self.send(Via::Page, "device", "POST", &format!("/a/{token}/device"), &hdr, device);
        Some((token, items))
    }

    /// POST one judgment (uuid ``uuid``), retrying with the same body until answered: what the server
    /// stored, None if nothing (given up at the hard stop, or 400/409: dropped as the page drops it), Gone
    /// on 403/404.
    fn judge(&mut self, path: &str, token: &str, body: &[u8], uuid: &str) -> Result<Option<Stored>, Gone> {
        let hdr = [("X-Assignment-Token", token), ("Content-Type", "application/json")];
        let Some(r) = self.send(Via::Judge, "judge", "POST", path, &hdr, body) else { return Ok(None) };
        match r.status {
            200 | 201 => {
                let stored = stored_judgment(&r.body, uuid);
                if stored.is_none() {
                    self.error("judge answer without a judgment");
                }
                Ok(stored)
            }
            403 | 404 => Err(Gone),
            _ => Ok(None),
        }
    }

    /// Judge the items one after the other until the deadline; true when all were judged
    /// (``_judge_items``).
    fn judge_items(&mut self, token: &str, items: &[Item]) -> Result<bool, Gone> {
        let sh = self.sh;
        let cfg = &sh.cfg;
        let shared_token: std::sync::Arc<str> = token.into();
        let path = format!("/a/{token}/judge");
        let mut body = String::with_capacity(160); // reused: no allocation per judgment
        let mut text = [0u8; 36];
        let mut done = 0;
        for item in items {
            if cfg.images {
                for url in &item.images {
                    self.send(Via::Page, "image", "GET", url, &[], b"");
                }
            }
            if cfg.think > 0.0 {
                sleep_s(self.rng.exponential(cfg.think));
            }
            if sh.now() >= sh.deadline() {
                return Ok(false);
            }
            let uuid = self.ids.uuid4();
            let uuid_str = uuid_text(uuid, &mut text);
            let choice = if self.rng.coin() { "left" } else { "right" };
            let response_ms = self.rng.int_inclusive(300, 4000);
            body.clear();
            let _ = write!(
                body,
                r#"{{"uuid": "{uuid_str}", "position": {}, "choice": "{choice}", "response_ms": {response_ms}, "client_time": null}}"#,
                item.position
            );
            let Some(stored) = self.judge(&path, token, body.as_bytes(), uuid_str)? else {
                sh.c.unacked.fetch_add(1, Relaxed);
                continue;
            };
            let differs = !stored.same_uuid || stored.choice != choice;
            {
                let mut log = lock(self.log);
                let at = sh.now();
                let token = shared_token.clone();
                log.acks.push(Ack { uuid, token, position: item.position, choice: stored.choice, at });
                log.active = true;
            }
            sh.c.acked.fetch_add(1, Relaxed);
            done += 1;
            if differs {
                self.error("judge ack differs from the answer sent");
            }
            if self.rng.uniform() < cfg.replay {
                // the ack was lost: the page sends the same judgment again
                sh.c.replays.fetch_add(1, Relaxed);
                let again = self.judge(&path, token, body.as_bytes(), uuid_str)?;
                if !again.is_some_and(|a| a.same_uuid && a.choice == choice) {
                    sh.c.replay_mismatch.fetch_add(1, Relaxed);
                }
            }
        }
        Ok(done == items.len())
    }
}

/// The value of the consent form's csrfmiddlewaretoken field.
fn csrf_token(html: &[u8]) -> Option<String> {
    let at = html.windows(CSRF_FIELD.len()).position(|w| w == CSRF_FIELD)? + CSRF_FIELD.len();
    let len = html[at..].iter().position(|&b| b == b'"')?;
    (len > 0).then(|| String::from_utf8_lossy(&html[at..at + len]).into_owned())
}

/// application/x-www-form-urlencoded escaping of one value.
fn form_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The state's items in order: position and the image paths it gives (``left``, ``right``, ``ref``).
fn state_items(body: &[u8]) -> Option<Vec<Item>> {
    let state = json::parse(body).ok()?;
    let mut items = Vec::new();
    for it in state.get("items")?.as_array()? {
        let images = ["left", "right", "ref"]
            .iter()
            .filter_map(|side| it.get(side).and_then(json::Value::as_str))
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        items.push(Item { position: it.get("position")?.as_i64()?, images });
    }
    Some(items)
}

/// The judgment in a 200/201 answer, its uuid compared with ``sent``.
fn stored_judgment(body: &[u8], sent: &str) -> Option<Stored> {
    let answer = json::parse(body).ok()?;
    let j = answer.get("judgment")?;
    let same_uuid = j.get("uuid")?.as_str()? == sent;
    let choice = match j.get("choice")?.as_str()? {
        "left" => Cow::Borrowed("left"), // the usual answers, without an allocation
        "right" => Cow::Borrowed("right"),
        other => Cow::Owned(other.to_string()),
    };
    Some(Stored { same_uuid, choice })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_csrf_token() {
        let html = br#"<form><input type="hidden" name="csrfmiddlewaretoken" value="abc123XYZ"></form>"#;
        assert_eq!(csrf_token(html).as_deref(), Some("abc123XYZ"));
        assert_eq!(csrf_token(b"<form></form>"), None);
        assert_eq!(csrf_token(br#"name="csrfmiddlewaretoken" value="""#), None);
    }

    #[test]
    fn escapes_form_values() {
        assert_eq!(form_escape("aZ9-_.~ +/&="), "aZ9-_.~%20%2B%2F%26%3D");
    }

    #[test]
    fn reads_the_state_and_a_judge_answer() {
        let state = br#"{"state": "active", "next": 0, "items": [
            {"position": 0, "left": "/a/t/img/0/left", "right": "/a/t/img/0/right", "ref": null, "correct": "right"},
            {"position": 1, "left": "/a/t/img/1/left", "right": "/a/t/img/1/right", "ref": "/a/t/img/1/ref"}]}"#;
        let items = state_items(state).unwrap();
        assert_eq!(items.iter().map(|i| i.position).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(items[0].images.len(), 2);
        assert_eq!(items[1].images[2], "/a/t/img/1/ref");
        assert!(state_items(br#"{"items": [{"left": "x"}]}"#).is_none());
        let answer = br#"{"status": "duplicate", "judgment": {"uuid": "u", "position": 3, "choice": "left", "response_ms": 9}}"#;
        let stored = stored_judgment(answer, "u").unwrap();
        assert!(stored.same_uuid && stored.choice == "left");
        assert!(!stored_judgment(answer, "v").unwrap().same_uuid);
        assert!(stored_judgment(br#"{"error": "x"}"#, "u").is_none());
    }
}
