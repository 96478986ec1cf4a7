//! loadclient: the simulated crowdworkers of bench/load.py (``simulate``) as a compiled program.
//!
//!     loadclient --base http://127.0.0.1:8000 --slug demo --clients 1000 --duration 60 --out result.txt
//!
//! The Python workers share the machine's 2 cores with the server and PostgreSQL and cost about 0.15 ms
//! of CPU per judgment; this does the same requests with a fraction of that, so the benchmark measures
//! the server rather than its clients. ``bench/load.py --client native`` builds and runs it.
//!
//! Protocol with bench/load.py, on stderr: ``loadclient: window start`` when the judging window opens,
//! ``loadclient: judging K/N s: acked A, in flight F, errors E`` once a second in it (not with
//! ``--quiet``), ``loadclient: window end`` at its deadline. After the run, the result file (``--out``),
//! one record per line, fields separated by single spaces, times in seconds since this program started:
//!
//!     loadclient 1                                  format version
//!     window STARTED DEADLINE                       the judging window
//!     ended T                                       when the run ended
//!     stat NAME=N ...                               judge_posts retries replays replay_mismatch unacked
//!                                                   assignments completed arrived cancelled peak_in_flight
//!     active ID ...                                 workers that made at least one judgment
//!     ack UUID TOKEN POSITION CHOICE T              an acknowledged judgment (CHOICE: as stored)
//!     lat KIND SECONDS T STATUS                     an HTTP attempt that got an answer, ended at T
//!     err N TEXT                                    N errors of this kind (TEXT may contain spaces)

mod http;
mod json;
mod rng;
mod worker;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use worker::{Log, Shared};

/// Each worker's stack: it holds a 16 KiB read buffer and shallow calls; 1,000 threads x 256 KiB of
/// address space, of which only the touched pages are memory.
const STACK_BYTES: usize = 256 * 1024;
/// A request already sent at the hard stop may take this long to answer (as in bench/load.py).
const REQUEST_TIMEOUT_S: f64 = 30.0;

const USAGE: &str = "\
usage: loadclient --base http://HOST:PORT --slug SLUG --clients N --duration S --out PATH [options]

Simulated crowdworkers against the judging site, as bench/load.py's Python client (simulate).

required:
  --base URL            the server, http://HOST:PORT (no path, no https)
  --slug SLUG           the experiment's slug (/p/SLUG/)
  --clients N           simulated workers (one thread each), >= 1
  --duration S          seconds of judging once all have arrived, > 0
  --out PATH            result file (format: see the top of src/main.rs)
options:
  --think S             mean exponential think time per judgment (default 1.5), >= 0
  --replay F            fraction of acknowledged judgments posted again (default 0.05), 0..1
  --ramp S              arrivals spread uniformly over this many s (default 20), >= 0
  --grace S             s after the deadline in which retries may still start (default 30), >= 0
  --arrival-limit S     open the window after this many s even if not all arrived (default 300), > 0
  --seed N              seed for think times, choices, replays, backoff jitter (default 0)
  --images              also GET the 2-3 images of every item before judging it
  --quiet               no progress lines (the window start/end lines are always printed)
  -h, --help            this text
";

/// The run's parameters, validated.
pub struct Config {
    pub addr: SocketAddr,
    /// The Host header: ``host:port`` as given in --base.
    pub host: String,
    pub entry_path: String,
    /// The entry page's full URL (the consent POST's Referer).
    pub entry_url: String,
    pub clients: usize,
    pub duration: f64,
    pub think: f64,
    pub replay: f64,
    pub ramp: f64,
    pub grace: f64,
    pub arrival_limit: f64,
    pub seed: u64,
    pub images: bool,
    pub quiet: bool,
    pub out: PathBuf,
}

fn number<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, String> {
    text.parse::<T>().map_err(|_| format!("{name}: expected a number, got {text:?}"))
}

/// A finite number of seconds (or a fraction) at least ``min`` (above it with ``strict``).
fn seconds(name: &str, text: &str, min: f64, strict: bool) -> Result<f64, String> {
    let v: f64 = number(name, text)?;
    if !v.is_finite() || v < min || (strict && v == min) {
        let bound = if strict { "above" } else { "at least" };
        return Err(format!("{name}: expected a number {bound} {min}, got {text:?}"));
    }
    Ok(v)
}

/// (address, Host header) of ``http://HOST:PORT``.
fn parse_base(base: &str) -> Result<(SocketAddr, String), String> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("--base: expected http://HOST:PORT, got {base:?} (https is not supported)"))?;
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty() || host.contains('/') || host.contains('?') || host.contains('#') {
        return Err(format!("--base: expected http://HOST:PORT without a path, got {base:?}"));
    }
    let with_port = if host.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']')) {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("--base: cannot resolve {host:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--base: {host:?} has no address"))?;
    Ok((addr, host.to_string()))
}

/// The configuration from the command line; None for --help.
fn parse_args(args: Vec<String>) -> Result<Option<Config>, String> {
    let (mut base, mut slug, mut clients, mut duration, mut out) = (None, None, None, None, None);
    let (mut think, mut replay, mut ramp, mut grace, mut arrival_limit, mut seed) = (1.5, 0.05, 20.0, 30.0, 300.0, 0);
    let (mut images, mut quiet) = (false, false);
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let flag = matches!(name.as_str(), "--images" | "--quiet" | "-h" | "--help");
        let known = flag || matches!(name.as_str(), "--base" | "--slug" | "--out" | "--clients" | "--duration"
            | "--think" | "--replay" | "--ramp" | "--grace" | "--arrival-limit" | "--seed");
        if !known {
            return Err(format!("unknown argument {arg:?}"));
        }
        let value = if flag {
            if inline.is_some() {
                return Err(format!("{name} takes no value"));
            }
            String::new()
        } else {
            inline.or_else(|| it.next()).ok_or_else(|| format!("{name} needs a value"))?
        };
        let v = value.as_str();
        match name.as_str() {
            "--base" => base = Some(v.to_string()),
            "--slug" => slug = Some(v.to_string()),
            "--out" => out = Some(PathBuf::from(v)),
            "--clients" => clients = Some(number::<usize>(&name, v)?),
            "--duration" => duration = Some(seconds(&name, v, 0.0, true)?),
            "--think" => think = seconds(&name, v, 0.0, false)?,
            "--replay" => replay = seconds(&name, v, 0.0, false)?,
            "--ramp" => ramp = seconds(&name, v, 0.0, false)?,
            "--grace" => grace = seconds(&name, v, 0.0, false)?,
            "--arrival-limit" => arrival_limit = seconds(&name, v, 0.0, true)?,
            "--seed" => seed = number::<u64>(&name, v)?,
            "--images" => images = true,
            "--quiet" => quiet = true,
            _ => return Ok(None), // -h, --help
        }
    }
    let need = |what: &str| format!("{what} is required");
    let base = base.ok_or_else(|| need("--base"))?;
    let slug = slug.ok_or_else(|| need("--slug"))?;
    let clients = clients.ok_or_else(|| need("--clients"))?;
    let duration = duration.ok_or_else(|| need("--duration"))?;
    let out = out.ok_or_else(|| need("--out"))?;
    if !(1..=100_000).contains(&clients) {
        return Err(format!("--clients: expected 1 to 100000, got {clients}"));
    }
    if replay > 1.0 {
        return Err(format!("--replay: expected a fraction from 0 to 1, got {replay}"));
    }
    if slug.is_empty() || !slug.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(format!("--slug: expected letters, digits, - and _, got {slug:?}"));
    }
    let (addr, host) = parse_base(&base)?;
    let entry_path = format!("/p/{slug}/");
    let entry_url = format!("http://{host}{entry_path}");
    Ok(Some(Config {
        addr, host, entry_path, entry_url, clients, duration, think, replay, ramp, grace, arrival_limit, seed,
        images, quiet, out,
    }))
}

/// Seed for the uuids: different in every run (from the kernel; std's hasher keys as a fallback).
fn entropy() -> u64 {
    let mut b = [0u8; 8];
    if File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).is_ok() {
        return u64::from_le_bytes(b);
    }
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

fn main() -> ExitCode {
    let cfg = match parse_args(std::env::args().skip(1).collect()) {
        Ok(Some(cfg)) => cfg,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("loadclient: error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadclient: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cfg: Config) -> Result<(), String> {
    // opened first, so that a bad path fails before the run rather than after it
    let file = File::create(&cfg.out).map_err(|e| format!("--out {}: {e}", cfg.out.display()))?;
    let sh = Arc::new(Shared::new(cfg));
    let cfg = &sh.cfg;
    let seed = entropy();
    let mut logs = Vec::with_capacity(cfg.clients);
    for id in 0..cfg.clients {
        let log = Arc::new(Mutex::new(Log::default()));
        logs.push(log.clone());
        let sh = sh.clone();
        thread::Builder::new()
            .name(format!("worker-{id}"))
            .stack_size(STACK_BYTES)
            .spawn(move || worker::run(id, seed, &sh, &log))
            .map_err(|e| format!("cannot start the thread of worker {id}: {e}"))?;
    }
    let mut errors: HashMap<String, u64> = HashMap::new();
    let (started, cut_off) = sh.wait_for_window();
    if cut_off {
        errors.insert("arrival phase cut off".to_string(), 1);
    }
    eprintln!("loadclient: window start");
    let deadline = started + cfg.duration;
    let whole = cfg.duration.floor() as u64;
    for k in 1..=whole {
        worker::sleep_until(&sh, started + k as f64);
        if !cfg.quiet {
            let c = &sh.c;
            let errs = c.errors.load(Relaxed) + errors.values().sum::<u64>();
            eprintln!("loadclient: judging {k}/{whole} s: acked {}, in flight {}, errors {errs}",
                      c.acked.load(Relaxed), c.in_flight.load(Relaxed));
        }
    }
    worker::sleep_until(&sh, deadline);
    eprintln!("loadclient: window end");
    // retries may run into the grace period; a worker still waiting for an answer after this is cut off
    let limit = cfg.arrival_limit + cfg.duration + cfg.grace + REQUEST_TIMEOUT_S + 5.0;
    while (sh.c.finished.load(Relaxed) as usize) < cfg.clients && sh.now() < limit {
        thread::sleep(Duration::from_millis(20));
    }
    let ended = sh.now();
    let cancelled = cfg.clients - sh.c.finished.load(Relaxed) as usize;
    let panicked = sh.c.panicked.load(Relaxed);
    if panicked > 0 {
        errors.insert("worker panicked".to_string(), panicked);
    }
    write_result(BufWriter::new(file), &sh, &logs, errors, started, ended, cancelled)
        .map_err(|e| format!("--out {}: {e}", cfg.out.display()))
}

fn write_result(mut f: impl Write, sh: &Shared, logs: &[Arc<Mutex<Log>>], mut errors: HashMap<String, u64>,
                started: f64, ended: f64, cancelled: usize) -> std::io::Result<()> {
    let c = &sh.c;
    writeln!(f, "loadclient 1")?;
    writeln!(f, "window {started:.6} {:.6}", sh.deadline())?;
    writeln!(f, "ended {ended:.6}")?;
    let stats = [
        ("judge_posts", c.judge_posts.load(Relaxed)),
        ("retries", c.retries.load(Relaxed)),
        ("replays", c.replays.load(Relaxed)),
        ("replay_mismatch", c.replay_mismatch.load(Relaxed)),
        ("unacked", c.unacked.load(Relaxed)),
        ("assignments", c.assignments.load(Relaxed)),
        ("completed", c.completed.load(Relaxed)),
        ("arrived", c.arrived.load(Relaxed)),
        ("cancelled", cancelled as u64),
        ("peak_in_flight", c.peak_in_flight.load(Relaxed)),
    ];
    let stats: Vec<String> = stats.iter().map(|(k, v)| format!("{k}={v}")).collect();
    writeln!(f, "stat {}", stats.join(" "))?;
    write!(f, "active")?;
    for (id, log) in logs.iter().enumerate() {
        if worker::lock(log).active {
            write!(f, " {id}")?;
        }
    }
    writeln!(f)?;
    let mut text = [0u8; 36];
    for log in logs {
        let log = worker::lock(log);
        for a in &log.acks {
            // the stored choice comes from the server: keep the line's fields apart whatever it sent
            let choice = if a.choice.is_empty() || a.choice.contains(char::is_whitespace) { "?" } else { &a.choice };
            let uuid = rng::uuid_text(a.uuid, &mut text);
            writeln!(f, "ack {uuid} {} {} {choice} {:.6}", a.token, a.position, a.at)?;
        }
        for l in &log.latencies {
            writeln!(f, "lat {} {:.6} {:.6} {}", l.kind, l.seconds, l.at, l.status)?;
        }
        for (text, n) in &log.errors {
            *errors.entry(text.clone()).or_insert(0) += n;
        }
    }
    for (text, n) in &errors {
        writeln!(f, "err {n} {}", text.replace('\n', " "))?;
    }
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::{parse_args, parse_base};

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_and_validates_arguments() {
        let cfg = parse_args(args("--base http://127.0.0.1:8000 --slug demo --clients 5 --duration=2.5 \
                                   --out /tmp/x --think 0 --images"))
            .unwrap()
            .unwrap();
        assert_eq!((cfg.clients, cfg.duration, cfg.think, cfg.images), (5, 2.5, 0.0, true));
        assert_eq!(cfg.entry_url, "http://127.0.0.1:8000/p/demo/");
        let ok = "--base http://127.0.0.1:8000 --slug demo --clients 5 --duration 2 --out /tmp/x";
        for (extra, message) in [
            ("--clients 0", "--clients: expected 1 to 100000"),
            ("--duration 0", "--duration: expected a number above 0"),
            ("--think -1", "--think: expected a number at least 0"),
            ("--replay 1.5", "--replay: expected a fraction"),
            ("--ramp nan", "--ramp: expected a number at least 0"),
            ("--seed x", "--seed: expected a number"),
            ("--slug a/b", "--slug: expected letters"),
            ("--frobnicate", "unknown argument"),
            ("--think", "--think needs a value"),
        ] {
            let e = parse_args(args(&format!("{ok} {extra}"))).err().unwrap();
            assert!(e.starts_with(message), "{extra}: {e}");
        }
        assert!(parse_args(args("--slug demo")).err().unwrap().contains("--base is required"));
        assert!(parse_args(args("--help")).unwrap().is_none());
    }

    #[test]
    fn parses_the_base_url() {
        assert_eq!(parse_base("http://127.0.0.1:8000/").unwrap().1, "127.0.0.1:8000");
        assert_eq!(parse_base("http://127.0.0.1").unwrap().0.port(), 80);
        assert!(parse_base("https://127.0.0.1:8000").is_err());
        assert!(parse_base("http://127.0.0.1:8000/prefix").is_err());
    }
}
