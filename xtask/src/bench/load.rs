//! The load client and the echo server of `cargo xtask bench`, run as hidden subcommands of
//! the release-built xtask inside the client and server namespaces:
//!
//! - `cargo xtask bench-server ADDR…`: echoes whatever arrives, on every address.
//! - `cargo xtask bench-load --addr IP:PORT --mode rr|newconn|hold|probe …`: prints one JSON
//!   line of results ([`Summary`]).
//!
//! Open loop with coordinated-omission correction: every request has an intended send time
//! on a fixed schedule, and its latency is counted from that time, not from when it was
//! actually sent. A stalled response therefore counts against every request queued behind it,
//! as a user would see it (the wrk2 method). `rr` and `newconn` use blocking threads with a
//! 1 ns timer slack, so sends leave within microseconds of their intended time (tokio's timer
//! wheel has a 1 ms tick, which would swamp 100 µs latencies); `hold` (1000 connections)
//! uses tokio, where a millisecond of timer slack does not matter.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

/// Request and response size.
pub const MSG: usize = 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// A schedule running this late past its end is abandoned (the rest counted as errors).
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Request/response on persistent connections at a fixed total rate.
    Rr,
    /// A new connection per request at a fixed rate.
    NewConn,
    /// Many connections held open, each making one request per second.
    Hold,
    /// One request; exit status says whether the path works.
    Probe,
}

#[derive(Debug, Clone)]
pub struct Opts {
    pub addr: SocketAddr,
    pub mode: Mode,
    pub rate: f64,
    pub conns: usize,
    pub secs: f64,
    pub warmup: f64,
}

/// What one load run measured (the JSON line `bench-load` prints).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// Most connections open at once (hold).
    pub max_open: u64,
}

impl Summary {
    fn from_parts(
        mut lat: Vec<Duration>,
        sent: u64,
        errors: u64,
        first_error: Option<String>,
    ) -> Self {
        lat.sort_unstable();
        let pct = |p: f64| -> f64 {
            if lat.is_empty() {
                return f64::NAN;
            }
            // Nearest rank.
            let rank = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len());
            lat[rank - 1].as_secs_f64() * 1e6
        };
        Self {
            sent,
            ok: lat.len() as u64,
            errors,
            first_error,
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            p999_us: pct(0.999),
            max_us: pct(1.0),
            max_open: 0,
        }
    }

    pub fn to_json(&self) -> String {
        json!({
            "sent": self.sent, "ok": self.ok, "errors": self.errors,
            "first_error": self.first_error,
            "p50_us": self.p50_us, "p99_us": self.p99_us, "p999_us": self.p999_us,
            "max_us": self.max_us, "max_open": self.max_open,
        })
        .to_string()
    }

    pub fn from_json(line: &str) -> Result<Self> {
        let v: serde_json::Value =
            serde_json::from_str(line.trim()).with_context(|| format!("load output {line:?}"))?;
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let u = |k: &str| v[k].as_u64().unwrap_or(0);
        Ok(Self {
            sent: u("sent"),
            ok: u("ok"),
            errors: u("errors"),
            first_error: v["first_error"].as_str().map(str::to_owned),
            p50_us: f("p50_us"),
            p99_us: f("p99_us"),
            p999_us: f("p999_us"),
            max_us: f("max_us"),
            max_open: u("max_open"),
        })
    }
}

/// `bench-load` arguments.
pub fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        addr: "127.0.0.1:9000".parse()?,
        mode: Mode::Probe,
        rate: 1000.0,
        conns: 4,
        secs: 30.0,
        warmup: 2.0,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().context(format!("{a} needs a value"));
        match a.as_str() {
            "--addr" => o.addr = val()?.parse().context("--addr IP:PORT")?,
            "--mode" => {
                o.mode = match val()?.as_str() {
                    "rr" => Mode::Rr,
                    "newconn" => Mode::NewConn,
                    "hold" => Mode::Hold,
                    "probe" => Mode::Probe,
                    m => bail!("unknown mode {m}"),
                }
            }
            "--rate" => o.rate = val()?.parse()?,
            "--conns" => o.conns = val()?.parse()?,
            "--secs" => o.secs = val()?.parse()?,
            "--warmup" => o.warmup = val()?.parse()?,
            other => bail!("bench-load: unknown argument {other}"),
        }
    }
    Ok(o)
}

/// Entry point of `cargo xtask bench-load`.
pub fn main(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let summary = match o.mode {
        Mode::Probe => {
            return probe(o.addr).with_context(|| format!("no echo from {}", o.addr));
        }
        Mode::Rr => rr(&o),
        Mode::NewConn => newconn(&o),
        Mode::Hold => hold(&o)?,
    };
    println!("{}", summary.to_json());
    Ok(())
}

fn probe(addr: SocketAddr) -> Result<()> {
    let mut s = connect(addr)?;
    exchange(&mut s, 1)?;
    Ok(())
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// One 1 KiB request, its 1 KiB echo checked.
fn exchange(s: &mut TcpStream, seq: u64) -> std::io::Result<()> {
    let mut req = [0x5au8; MSG];
    req[..8].copy_from_slice(&seq.to_be_bytes());
    s.write_all(&req)?;
    let mut resp = [0u8; MSG];
    s.read_exact(&mut resp)?;
    if resp != req {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "echo differs from the request",
        ));
    }
    Ok(())
}

/// Sleep precisely: this thread's timer slack is 1 ns.
fn precise_timers() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and touches only this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

struct Part {
    lat: Vec<Duration>,
    sent: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Part {
    fn new() -> Self {
        Self {
            lat: Vec::new(),
            sent: 0,
            errors: 0,
            first_error: None,
        }
    }
    fn error(&mut self, e: std::io::Error) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }
}

fn merge(parts: Vec<Part>) -> Summary {
    let mut lat = Vec::new();
    let (mut sent, mut errors, mut first) = (0, 0, None);
    for p in parts {
        lat.extend(p.lat);
        sent += p.sent;
        errors += p.errors;
        first = first.or(p.first_error);
    }
    Summary::from_parts(lat, sent, errors, first)
}

/// `lanes` threads share one schedule of `rate` requests a second: lane `l` takes slots
/// `l, l + lanes, …`. Each request's latency counts from its slot's time.
fn schedule<F>(o: &Opts, lanes: usize, mut make: impl FnMut(usize) -> F) -> Summary
where
    F: FnMut(u64) -> std::io::Result<()> + Send + 'static,
{
    let slot = Duration::from_secs_f64(1.0 / o.rate);
    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + Duration::from_secs_f64(o.warmup);
    let end = measure_from + Duration::from_secs_f64(o.secs);
    let threads: Vec<_> = (0..lanes)
        .map(|l| {
            let mut request = make(l);
            std::thread::spawn(move || {
                precise_timers();
                let mut part = Part::new();
                for i in 0u64.. {
                    let intended = start + slot * (l as u32) + slot * (lanes as u32) * (i as u32);
                    if intended >= end {
                        break;
                    }
                    let measured = intended >= measure_from;
                    if Instant::now() > end + GIVE_UP_AFTER {
                        // The path stalled: what was never sent counts as failed.
                        if measured {
                            part.sent += 1;
                            part.error(std::io::Error::other("not sent: the path stalled"));
                        }
                        continue;
                    }
                    sleep_until(intended);
                    let r = request(i);
                    if !measured {
                        continue;
                    }
                    part.sent += 1;
                    match r {
                        Ok(()) => part.lat.push(intended.elapsed()),
                        Err(e) => part.error(e),
                    }
                }
                part
            })
        })
        .collect();
    merge(
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| Part::new()))
            .collect(),
    )
}

/// Persistent connections: one per lane, reconnecting after an error.
fn rr(o: &Opts) -> Summary {
    let addr = o.addr;
    schedule(o, o.conns, |_| {
        let mut conn: Option<TcpStream> = None;
        move |seq| {
            let r = (|| {
                if conn.is_none() {
                    conn = Some(connect(addr)?);
                }
                exchange(conn.as_mut().expect("just set"), seq)
            })();
            if r.is_err() {
                conn = None;
            }
            r
        }
    })
}

/// A new connection per request; enough lanes that a slow connect does not hold up the
/// next one's send (and if it does, the wait is counted).
fn newconn(o: &Opts) -> Summary {
    let addr = o.addr;
    schedule(o, 8, |_| {
        move |seq| {
            let mut s = connect(addr)?;
            exchange(&mut s, seq)
        }
    })
}

/// `conns` connections opened over 2 s, all held for `secs`, each making a checked 1 KiB
/// request once a second (at staggered times); errors are counted, not retried.
fn hold(o: &Opts) -> Result<Summary> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let n = o.conns;
    let addr = o.addr;
    let ramp = Duration::from_secs(2);
    let every = Duration::from_secs(1);
    let start = tokio::time::Instant::now();
    let hold_from = start + ramp;
    let end = hold_from + Duration::from_secs_f64(o.secs);
    let open = Arc::new(AtomicUsize::new(0));
    let max_open = Arc::new(AtomicUsize::new(0));
    let parts = Arc::new(Mutex::new(Vec::new()));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..n {
            let (open, max_open, parts) = (open.clone(), max_open.clone(), parts.clone());
            tasks.push(tokio::spawn(async move {
                let mut part = Part::new();
                let frac = |d: Duration| d.mul_f64(i as f64 / n as f64);
                tokio::time::sleep_until(start + frac(ramp)).await;
                let conn = tokio::time::timeout(IO_TIMEOUT, tokio::net::TcpStream::connect(addr))
                    .await
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
                let mut s = match conn {
                    Ok(s) => s,
                    Err(e) => {
                        part.sent += 1;
                        part.error(e);
                        parts.lock().expect("lock").push(part);
                        return;
                    }
                };
                let _ = s.set_nodelay(true);
                let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                max_open.fetch_max(now_open, Ordering::SeqCst);
                let mut next = hold_from + frac(every);
                let mut seq = 0u64;
                while next < end {
                    tokio::time::sleep_until(next).await;
                    seq += 1;
                    part.sent += 1;
                    let mut req = [0x5au8; MSG];
                    req[..8].copy_from_slice(&seq.to_be_bytes());
                    let mut resp = [0u8; MSG];
                    let r = tokio::time::timeout(IO_TIMEOUT, async {
                        s.write_all(&req).await?;
                        s.read_exact(&mut resp).await?;
                        Ok::<_, std::io::Error>(())
                    })
                    .await
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
                    match r {
                        Ok(()) if resp == req => part.lat.push(next.elapsed()),
                        Ok(()) => part.error(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "echo differs from the request",
                        )),
                        Err(e) => {
                            part.error(e);
                            break;
                        }
                    }
                    next += every;
                }
                // Held until the end, then closed together.
                tokio::time::sleep_until(end).await;
                open.fetch_sub(1, Ordering::SeqCst);
                drop(s);
                parts.lock().expect("lock").push(part);
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let parts = std::mem::take(&mut *parts.lock().expect("lock"));
    let mut s = merge(parts);
    s.max_open = max_open.load(Ordering::SeqCst) as u64;
    Ok(s)
}

/// Entry point of `cargo xtask bench-server ADDR…`: echo on every address until killed.
pub fn server(args: &[String]) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if args.is_empty() {
        bail!("usage: cargo xtask bench-server IP:PORT…");
    }
    let addrs: Vec<SocketAddr> = args
        .iter()
        .map(|a| a.parse().with_context(|| format!("address {a:?}")))
        .collect::<Result<_>>()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut loops = Vec::new();
        for addr in addrs {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            loops.push(tokio::spawn(async move {
                loop {
                    let Ok((mut s, _)) = l.accept().await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let _ = s.set_nodelay(true);
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            }));
        }
        for l in loops {
            let _ = l.await;
        }
        Ok(())
    })
}
