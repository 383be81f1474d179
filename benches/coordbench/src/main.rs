//! coordbench: load generator for swarmlog's coordination routes (issue 11).
//!
//! `lock` and `cas` are closed loops like `../shared/peers/peerbench`: each of `--clients`
//! clients has its own keep-alive connection and one request in flight; after `--warmup`
//! seconds every completed operation is timed into an HDR histogram for `--secs` seconds.
//! `sse-fanout` holds `--subscribers` SSE streams on `GET /v1/events` while writers append at
//! a fixed open-loop rate, and checks that every subscriber got every event, once.
//! `read-under-append` times state reads (`GET`) from `--readers` closed-loop clients while
//! `--clients` others append durably, each side in its own histogram.
//! Each subcommand prints one JSON line with peerbench's fields (`ops_per_s`, `p50_us`,
//! `p99_us`, `p999_us`, `max_us`, `errors`, ...) plus its own.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{Barrier, Semaphore};

#[derive(Parser, Debug)]
#[command(about = "closed-loop lock / CAS load and SSE fan-out check for swarmlog")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Lock cycle: POST /v1/locks/{r}/acquire, then /release with the token it answered
    /// (2 round trips, one resource per client, uncontended)
    Lock {
        #[command(flatten)]
        common: Common,
        /// TTL of each acquisition
        #[arg(long, default_value_t = 30_000)]
        ttl_ms: u64,
    },
    /// CAS increment on a state cell per client: POST /v1/state/{key}/cas with the version
    /// the client tracks (1 round trip); --read-first GETs the cell first (2 round trips)
    Cas {
        #[command(flatten)]
        common: Common,
        /// read-then-CAS: GET /v1/state/{key} and CAS against the version it answers
        #[arg(long)]
        read_first: bool,
    },
    /// SSE fan-out: --subscribers streams on GET /v1/events while writers append at --rate
    SseFanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        fan: Fanout,
    },
    /// State reads under durable appends: --readers clients GET --read-path while --clients
    /// others POST /v1/events (256-byte events, one stream per client), closed loops both
    ReadUnderAppend {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        reads: Reads,
    },
}

#[derive(Args, Debug, Clone)]
struct Reads {
    /// closed-loop reading clients, one connection each
    #[arg(long, default_value_t = 1)]
    readers: usize,
    /// what they read; the default is a state cell created before the run
    #[arg(long, default_value = "/v1/state/bench-read")]
    read_path: String,
    /// tasks created before the run (batches of 1,000), to make the state large
    #[arg(long, default_value_t = 0)]
    tasks: usize,
    /// each reader starts a read at most every this many µs (0: back to back), so that
    /// builds whose reads answer faster are compared at the same read rate
    #[arg(long, default_value_t = 0)]
    read_interval_us: u64,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// swarmlog base URL
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    url: String,
    /// closed-loop clients, one connection each (lock, cas)
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// measured seconds (sse-fanout: seconds of writing)
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// seconds run but not measured, after all clients have connected (sse-fanout: latencies
    /// of events sent in the first --warmup seconds are not recorded; completeness still is)
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// payload bytes in each value or event
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// free text copied into the output line
    #[arg(long, default_value = "")]
    label: String,
    /// pid of the server: its utime+stime over the measured window goes into the output
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Args, Debug, Clone)]
struct Fanout {
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// events per second, open loop, all writers together
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// events per POST /v1/events batch
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// writer connections, each sending its share of the batches on its own schedule
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// after writing, seconds to wait for every subscriber to reach the last event
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
    /// subscribers that hang up halfway through the writing (to check the missing count)
    #[arg(long, default_value_t = 0)]
    stop_early: usize,
    /// subscriptions being opened at once
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// event type written and subscribed to
    #[arg(long, default_value = "bench.fanout")]
    event_type: String,
}

// ---------------------------------------------------------------- HTTP/1.1 over hyper

/// One keep-alive HTTP/1.1 connection (no pool: one request in flight at a time).
struct Conn {
    addr: String,
    tx: SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn connect(addr: &str) -> Result<Conn> {
        let s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        s.set_nodelay(true)?;
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            addr: addr.to_string(),
            tx,
        })
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<Response<Incoming>> {
        if self.tx.is_closed() {
            *self = Conn::connect(&self.addr).await?;
        }
        self.tx.ready().await?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.addr);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.unwrap_or_default()))?;
        Ok(self.tx.send_request(req).await?)
    }

    /// Sends a request and reads the whole answer; non-2xx is an error carrying the body.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<Bytes> {
        let resp = self.send(method.clone(), path, body, headers).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(HttpError {
                status,
                what: format!("{method} {path}"),
                body: bytes,
            }
            .into());
        }
        Ok(bytes)
    }
}

#[derive(Debug)]
struct HttpError {
    status: StatusCode,
    what: String,
    body: Bytes,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} answered {}: {}",
            self.what,
            self.status,
            String::from_utf8_lossy(&self.body)
        )
    }
}

impl std::error::Error for HttpError {}

static FIRST_ERROR_PRINTED: AtomicBool = AtomicBool::new(false);

/// Prints the first error of the run (with its answer's body) to stderr, once.
fn note_error(err: &anyhow::Error) {
    if !FIRST_ERROR_PRINTED.swap(true, Ordering::Relaxed) {
        eprintln!("coordbench: first error: {err:#}");
    }
}

fn host_port(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--url must start with http:// (got {url})"))?;
    let hp = rest.split('/').next().unwrap_or("");
    if hp.is_empty() {
        bail!("--url has no host:port (got {url})");
    }
    Ok(hp.to_string())
}

fn json_u64(body: &[u8], field: &str) -> Result<u64> {
    let v: Value = serde_json::from_slice(body).context("answer is not JSON")?;
    v.get(field).and_then(Value::as_u64).ok_or_else(|| {
        anyhow!(
            "answer has no integer {field:?}: {}",
            String::from_utf8_lossy(body)
        )
    })
}

// ---------------------------------------------------------------- payloads and CPU

/// The same 256-byte (by default) printable payload peerbench stores in Redis.
fn payload_bytes(size: usize) -> String {
    let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut s = String::with_capacity(size);
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for _ in 0..size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(alphabet[(x % alphabet.len() as u64) as usize] as char);
    }
    s
}

/// utime+stime of a process in clock ticks (fields 14 and 15 of /proc/PID/stat).
fn proc_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // after the comm, field 3 (state) is index 0, so fields 14/15 are indexes 11/12
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Machine busy ticks and total ticks, from the first line of /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let all = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = all
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let total: u64 = cpu.iter().take(8).sum();
    let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

#[derive(Clone, Copy)]
struct CpuMark {
    at: Instant,
    me: u64,
    server: Option<u64>,
    busy: u64,
    total: u64,
}

fn cpu_mark(server_pid: Option<u32>) -> CpuMark {
    let (busy, total) = machine_ticks();
    CpuMark {
        at: Instant::now(),
        me: proc_ticks("self").unwrap_or(0),
        server: server_pid.and_then(|p| proc_ticks(&p.to_string())),
        busy,
        total,
    }
}

/// CPU use between two marks: (machine busy cores, this process's cores, server CPU seconds).
fn cpu_between(a: CpuMark, b: CpuMark) -> (f64, f64, Option<f64>) {
    // /proc/stat counts every CPU of the machine, whatever this process is pinned to
    let per_cpu = (b.total - a.total).max(1) as f64 / num_cpus_online();
    let busy = (b.busy - a.busy) as f64 / per_cpu;
    let me = (b.me - a.me) as f64 / per_cpu;
    let server = match (a.server, b.server) {
        (Some(x), Some(y)) => Some((y - x) as f64 / ticks_per_s()),
        _ => None,
    };
    (round2(busy), round2(me), server)
}

fn num_cpus_online() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as f64
    } else {
        1.0
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (1,000 subscribers need 1,000 sockets).
fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit write to / read from a valid rlimit struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
        r.rlim_cur
    }
}

/// Starts the clients waiting at `barrier` at one instant (stored in `start_cell`) and
/// samples the server's CPU over the measured window (warm-up excluded); returns the
/// sampler.
async fn start_measured(
    barrier: &Barrier,
    start_cell: &OnceLock<Instant>,
    c: &Common,
) -> tokio::task::JoinHandle<(CpuMark, CpuMark)> {
    barrier.wait().await;
    start_cell.set(Instant::now()).unwrap();
    barrier.wait().await;
    let t0 = *start_cell.get().unwrap();
    let (warm, meas) = (
        Duration::from_secs_f64(c.warmup),
        Duration::from_secs_f64(c.secs),
    );
    let pid = c.server_pid;
    tokio::spawn(async move {
        tokio::time::sleep_until((t0 + warm).into()).await;
        let a = cpu_mark(pid);
        tokio::time::sleep_until((t0 + warm + meas).into()).await;
        (a, cpu_mark(pid))
    })
}

fn new_hist() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap()
}

fn hist_fields(h: &Histogram<u64>, unit_ns: bool) -> serde_json::Map<String, Value> {
    // values are ns when unit_ns, else µs
    let div = if unit_ns { 1000.0 } else { 1.0 };
    let us = |q: f64| round1(h.value_at_quantile(q) as f64 / div);
    let mut m = serde_json::Map::new();
    m.insert("mean_us".into(), round1(h.mean() / div).into());
    m.insert("p50_us".into(), us(0.50).into());
    m.insert("p90_us".into(), us(0.90).into());
    m.insert("p99_us".into(), us(0.99).into());
    m.insert("p999_us".into(), us(0.999).into());
    m.insert("max_us".into(), round1(h.max() as f64 / div).into());
    m
}

// ---------------------------------------------------------------- lock and cas: closed loop

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    Lock,
    Cas,
    ReadCas,
}

/// One client's connection and what it tracks between operations.
struct Client {
    conn: Conn,
    /// lock: the last fencing token (they must grow); cas: the cell's version
    last: u64,
    /// operations that did not behave as the contract says (token not growing, version not +1)
    anomalies: u64,
}

struct Bodies {
    acquire: Bytes,
    release_prefix: String,
    cas_value_tail: String,
    lock_path: String,
    release_path: String,
    cell_path: String,
    cas_path: String,
}

fn bodies(c: &Common, i: usize, ttl_ms: u64) -> Bodies {
    let owner = format!("bench-c{i}");
    let payload = payload_bytes(c.size);
    Bodies {
        acquire: Bytes::from(format!("{{\"owner\":\"{owner}\",\"ttl_ms\":{ttl_ms}}}")),
        release_prefix: format!("{{\"owner\":\"{owner}\",\"token\":"),
        cas_value_tail: format!(",\"d\":\"{payload}\"}}}}"),
        lock_path: format!("/v1/locks/bench-r{i}/acquire"),
        release_path: format!("/v1/locks/bench-r{i}/release"),
        cell_path: format!("/v1/state/bench-cell-{i}"),
        cas_path: format!("/v1/state/bench-cell-{i}/cas"),
    }
}

/// Before the clock starts: the cell exists with version 1 (`init`), or the lock is free.
async fn prepare(w: Workload, conn: &mut Conn, b: &Bodies, payload: &str) -> Result<u64> {
    match w {
        Workload::Lock => Ok(0),
        Workload::Cas | Workload::ReadCas => {
            let body = format!("{{\"value\":{{\"n\":0,\"d\":\"{payload}\"}}}}");
            conn.call(
                Method::POST,
                &format!("{}/init", b.cell_path),
                Some(body.into()),
                &[],
            )
            .await?;
            let got = conn.call(Method::GET, &b.cell_path, None, &[]).await?;
            json_u64(&got, "version")
        }
    }
}

async fn op(w: Workload, c: &mut Client, b: &Bodies, n: u64) -> Result<()> {
    match w {
        Workload::Lock => {
            let got = c
                .conn
                .call(Method::POST, &b.lock_path, Some(b.acquire.clone()), &[])
                .await?;
            let token = json_u64(&got, "token")?;
            if token <= c.last {
                c.anomalies += 1;
            }
            c.last = token;
            let body = format!("{}{token}}}", b.release_prefix);
            c.conn
                .call(Method::POST, &b.release_path, Some(body.into()), &[])
                .await?;
        }
        Workload::Cas | Workload::ReadCas => {
            let expected = if w == Workload::ReadCas {
                let got = c.conn.call(Method::GET, &b.cell_path, None, &[]).await?;
                json_u64(&got, "version")?
            } else {
                c.last
            };
            let body = format!(
                "{{\"expected_version\":{expected},\"value\":{{\"n\":{}{}",
                n + 1,
                b.cas_value_tail
            );
            let got = match c
                .conn
                .call(Method::POST, &b.cas_path, Some(body.into()), &[])
                .await
            {
                Ok(got) => got,
                Err(e) => {
                    // a conflict tells the current version: resynchronise on it
                    if let Some(h) = e.downcast_ref::<HttpError>() {
                        if let Ok(v) = json_error_u64(&h.body, "current_version") {
                            c.last = v;
                        }
                    }
                    return Err(e);
                }
            };
            let version = json_u64(&got, "version")?;
            if version != expected + 1 {
                c.anomalies += 1;
            }
            c.last = version;
        }
    }
    Ok(())
}

fn json_error_u64(body: &[u8], field: &str) -> Result<u64> {
    let v: Value = serde_json::from_slice(body)?;
    v.pointer(&format!("/error/{field}"))
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("no {field}"))
}

struct ClientResult {
    hist: Histogram<u64>,
    errors: u64,
    ok_total: u64,
    last: u64,
    first_last: u64,
    anomalies: u64,
}

async fn closed_loop(w: Workload, c: Common, ttl_ms: u64) -> Result<()> {
    let addr = host_port(&c.url)?;
    let c = Arc::new(c);
    let barrier = Arc::new(Barrier::new(c.clients + 1));
    let start_cell = Arc::new(OnceLock::<Instant>::new());
    let mut handles = Vec::new();
    for i in 0..c.clients {
        let (c, barrier, start_cell, addr) =
            (c.clone(), barrier.clone(), start_cell.clone(), addr.clone());
        handles.push(tokio::spawn(async move {
            let b = bodies(&c, i, ttl_ms);
            let ready = async {
                let mut conn = Conn::connect(&addr).await?;
                let last = prepare(w, &mut conn, &b, &payload_bytes(c.size)).await?;
                Ok::<_, anyhow::Error>(Client {
                    conn,
                    last,
                    anomalies: 0,
                })
            }
            .await;
            barrier.wait().await;
            barrier.wait().await;
            let mut cl = ready?;
            let first_last = cl.last;
            let t0 = *start_cell.get().unwrap();
            let measure_from = t0 + Duration::from_secs_f64(c.warmup);
            let end = measure_from + Duration::from_secs_f64(c.secs);
            let mut hist = new_hist();
            let (mut errors, mut ok_total, mut n) = (0u64, 0u64, 0u64);
            loop {
                let s = Instant::now();
                if s >= end {
                    break;
                }
                let r = op(w, &mut cl, &b, n).await;
                let e = Instant::now();
                n += 1;
                match r {
                    Ok(()) => {
                        ok_total += 1;
                        if s >= measure_from && e <= end {
                            hist.record((e - s).as_nanos().max(1) as u64).ok();
                        }
                    }
                    Err(err) => {
                        note_error(&err);
                        if s >= measure_from {
                            errors += 1;
                        }
                        if errors > 10_000 {
                            break;
                        }
                    }
                }
            }
            Ok::<_, anyhow::Error>(ClientResult {
                hist,
                errors,
                ok_total,
                last: cl.last,
                first_last,
                anomalies: cl.anomalies,
            })
        }));
    }
    // All connected and prepared (or failed), then go.
    let cpu = start_measured(&barrier, &start_cell, &c).await;
    let mut total = new_hist();
    let (mut errors, mut ok_total, mut advanced, mut anomalies) = (0u64, 0u64, 0u64, 0u64);
    for h in handles {
        let r = h.await?.context("client failed before the run")?;
        total.add(&r.hist).ok();
        errors += r.errors;
        ok_total += r.ok_total;
        advanced += r.last.saturating_sub(r.first_last);
        anomalies += r.anomalies;
    }
    let (a, b) = cpu.await?;
    let (busy, mine, server_s) = cpu_between(a, b);
    let ops = total.len();
    let mut out = serde_json::Map::new();
    let name = match w {
        Workload::Lock => "swarmlog-lock",
        Workload::Cas => "swarmlog-cas",
        Workload::ReadCas => "swarmlog-read-cas",
    };
    out.insert("workload".into(), name.into());
    out.insert("label".into(), c.label.clone().into());
    out.insert("clients".into(), c.clients.into());
    out.insert("secs".into(), c.secs.into());
    out.insert("size".into(), c.size.into());
    out.insert(
        "round_trips_per_op".into(),
        (if w == Workload::Cas { 1 } else { 2 }).into(),
    );
    out.insert("ops".into(), ops.into());
    out.insert("errors".into(), errors.into());
    out.insert("ops_per_s".into(), round1(ops as f64 / c.secs).into());
    out.extend(hist_fields(&total, true));
    out.insert("machine_busy_cores".into(), busy.into());
    out.insert("client_cores".into(), mine.into());
    if let Some(s) = server_s {
        out.insert("server_cores".into(), round2(s / c.secs).into());
        out.insert(
            "server_cpu_us_per_op".into(),
            round1(s * 1e6 / (ops.max(1) as f64)).into(),
        );
    }
    // checks on the answers, over every successful operation (warm-up included)
    out.insert("ok_total".into(), ok_total.into());
    match w {
        Workload::Lock => {
            // every acquire answered a fencing token above the client's previous one
            out.insert("tokens_not_increasing".into(), anomalies.into());
        }
        _ => {
            // every CAS answered version = expected + 1, and the versions advanced once per CAS
            out.insert("versions_not_plus_one".into(), anomalies.into());
            out.insert("versions_advanced".into(), advanced.into());
        }
    }
    println!("{}", Value::Object(out));
    Ok(())
}

// ---------------------------------------------------------------- reads under appends

/// What one closed-loop client measured.
struct Measured {
    hist: Histogram<u64>,
    errors: u64,
}

/// Sends one request after another on `conn`, each at least `interval` after the one
/// before, from `t0` until `t0 + warmup + secs`, timing in ns those that start after the
/// warm-up and end before the end.
async fn request_loop(
    conn: &mut Conn,
    (method, path, body): (Method, &str, Option<Bytes>),
    interval: Duration,
    t0: Instant,
    c: &Common,
) -> Measured {
    let measure_from = t0 + Duration::from_secs_f64(c.warmup);
    let end = measure_from + Duration::from_secs_f64(c.secs);
    let mut measured = Measured {
        hist: new_hist(),
        errors: 0,
    };
    loop {
        let s = Instant::now();
        if s >= end || measured.errors > 10_000 {
            return measured;
        }
        let r = conn.call(method.clone(), path, body.clone(), &[]).await;
        let e = Instant::now();
        if e < s + interval {
            tokio::time::sleep_until((s + interval).into()).await;
        }
        match r {
            Ok(_) if s >= measure_from && e <= end => {
                measured.hist.record((e - s).as_nanos().max(1) as u64).ok();
            }
            Ok(_) => {}
            Err(err) => {
                note_error(&err);
                if s >= measure_from {
                    measured.errors += 1;
                }
            }
        }
    }
}

/// Before the clock starts: the cell the readers read by default, and `tasks` tasks.
async fn prepare_reads(addr: &str, reads: &Reads) -> Result<()> {
    let mut conn = Conn::connect(addr).await?;
    conn.call(
        Method::POST,
        "/v1/state/bench-read/init",
        Some(Bytes::from_static(br#"{"value":{"n":0}}"#)),
        &[],
    )
    .await?;
    for batch in 0..reads.tasks.div_ceil(1000) {
        let tasks: Vec<Value> = (batch * 1000..((batch + 1) * 1000).min(reads.tasks))
            .map(|i| {
                serde_json::json!({
                    "id": format!("bench-t{i}"),
                    "type": "bench",
                    "title": format!("bench task {i}"),
                    "parameters": {"input": payload_bytes(100)},
                })
            })
            .collect();
        let body = serde_json::json!({ "tasks": tasks }).to_string();
        conn.call(Method::POST, "/v1/tasks", Some(body.into()), &[])
            .await?;
    }
    Ok(())
}

async fn read_under_append(c: Common, reads: Reads) -> Result<()> {
    let addr = host_port(&c.url)?;
    prepare_reads(&addr, &reads).await?;
    let c = Arc::new(c);
    let reads = Arc::new(reads);
    let clients = c.clients + reads.readers;
    let barrier = Arc::new(Barrier::new(clients + 1));
    let start_cell = Arc::new(OnceLock::<Instant>::new());
    let payload = payload_bytes(c.size);
    let mut handles = Vec::new();
    for i in 0..clients {
        let (c, reads, barrier, start_cell, addr) = (
            c.clone(),
            reads.clone(),
            barrier.clone(),
            start_cell.clone(),
            addr.clone(),
        );
        let writer = i < c.clients;
        let body = writer.then(|| {
            Bytes::from(format!(
                "{{\"type\":\"bench.event\",\"stream\":\"bench/c{i}\",\"data\":{{\"d\":\"{payload}\"}}}}"
            ))
        });
        handles.push(tokio::spawn(async move {
            let conn = Conn::connect(&addr).await;
            barrier.wait().await;
            barrier.wait().await;
            let mut conn = conn?;
            let t0 = *start_cell.get().unwrap();
            let (request, interval) = match body {
                Some(body) => ((Method::POST, "/v1/events", Some(body)), Duration::ZERO),
                None => (
                    (Method::GET, reads.read_path.as_str(), None),
                    Duration::from_micros(reads.read_interval_us),
                ),
            };
            let measured = request_loop(&mut conn, request, interval, t0, &c).await;
            Ok::<_, anyhow::Error>((writer, measured))
        }));
    }
    // All connected and prepared (or failed), then go.
    let cpu = start_measured(&barrier, &start_cell, &c).await;
    let (mut appends, mut reads_hist) = (new_hist(), new_hist());
    let mut errors = 0u64;
    for h in handles {
        let (writer, measured) = h.await?.context("client failed before the run")?;
        let hist = if writer {
            &mut appends
        } else {
            &mut reads_hist
        };
        hist.add(&measured.hist).ok();
        errors += measured.errors;
    }
    let (a, b) = cpu.await?;
    let (busy, mine, server_s) = cpu_between(a, b);
    let mut out = serde_json::Map::new();
    out.insert("workload".into(), "swarmlog-read-under-append".into());
    out.insert("label".into(), c.label.clone().into());
    out.insert("clients".into(), c.clients.into());
    out.insert("readers".into(), reads.readers.into());
    out.insert("read_path".into(), reads.read_path.clone().into());
    out.insert("tasks".into(), reads.tasks.into());
    out.insert("read_interval_us".into(), reads.read_interval_us.into());
    out.insert("secs".into(), c.secs.into());
    out.insert("errors".into(), errors.into());
    // peerbench's fields describe the appends, `read_*` the reads
    out.insert("ops".into(), appends.len().into());
    out.insert(
        "ops_per_s".into(),
        round1(appends.len() as f64 / c.secs).into(),
    );
    out.extend(hist_fields(&appends, true));
    out.insert(
        "read_ops_per_s".into(),
        round1(reads_hist.len() as f64 / c.secs).into(),
    );
    for (key, value) in hist_fields(&reads_hist, true) {
        out.insert(format!("read_{key}"), value);
    }
    out.insert("machine_busy_cores".into(), busy.into());
    out.insert("client_cores".into(), mine.into());
    if let Some(s) = server_s {
        out.insert("server_cores".into(), round2(s / c.secs).into());
    }
    println!("{}", Value::Object(out));
    Ok(())
}

// ---------------------------------------------------------------- SSE fan-out

/// What one subscriber saw: a bit per seq from `base`, duplicates, and events outside the run.
struct Seen {
    bits: Vec<u64>,
    received: u64,
    duplicates: u64,
    bytes: u64,
}

impl Seen {
    fn mark(&mut self, idx: u64) {
        let (w, b) = ((idx / 64) as usize, idx % 64);
        if w >= self.bits.len() {
            self.bits.resize((w + 1).max(self.bits.len() * 2), 0);
        }
        if self.bits[w] & (1 << b) != 0 {
            self.duplicates += 1;
        } else {
            self.bits[w] |= 1 << b;
        }
        self.received += 1;
    }

    fn has(&self, idx: u64) -> bool {
        let (w, b) = ((idx / 64) as usize, idx % 64);
        w < self.bits.len() && self.bits[w] & (1 << b) != 0
    }
}

struct SubShared {
    /// highest seq received
    max_seq: AtomicU64,
    caught_up: AtomicBool,
    /// what it received; locked once per read by its task, read at the end
    seen: Mutex<Seen>,
}

struct FanShared {
    epoch: Instant,
    base: u64,
    /// latencies are recorded for events sent at or after this offset from `epoch`, in ns
    record_from_ns: AtomicU64,
    hist: Mutex<Histogram<u64>>,
    bt_finder: memchr::memmem::Finder<'static>,
    blank_line: memchr::memmem::Finder<'static>,
    unexpected: AtomicU64,
    keepalives: AtomicU64,
}

/// Parses the complete events at the front of `buf`, returns how many bytes they took.
fn parse_events(
    buf: &[u8],
    now_ns: u64,
    fs: &FanShared,
    sub: &SubShared,
    seen: &mut Seen,
    lat: &mut Vec<u64>,
) -> usize {
    let mut pos = 0;
    while let Some(end) = fs.blank_line.find(&buf[pos..]) {
        let block = &buf[pos..pos + end];
        pos += end + 2;
        if block.first() == Some(&b':') {
            fs.keepalives.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut id: Option<u64> = None;
        let mut caught_up = false;
        let mut data: &[u8] = &[];
        let mut rest = block;
        while !rest.is_empty() {
            let (line, next) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            rest = next;
            if let Some(v) = line.strip_prefix(b"id:") {
                id = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
            } else if let Some(v) = line.strip_prefix(b"event:") {
                caught_up = v.trim_ascii() == b"caught_up";
            } else if let Some(v) = line.strip_prefix(b"data:") {
                data = v;
            }
        }
        if caught_up {
            sub.caught_up.store(true, Ordering::Release);
            continue;
        }
        let Some(seq) = id else { continue };
        if seq < fs.base {
            fs.unexpected.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        seen.mark(seq - fs.base);
        sub.max_seq.fetch_max(seq, Ordering::Release);
        if let Some(at) = fs.bt_finder.find(data) {
            let digits = &data[at + 5..];
            let n = digits.iter().take_while(|c| c.is_ascii_digit()).count();
            if let Some(bt) = std::str::from_utf8(&digits[..n])
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                if bt >= fs.record_from_ns.load(Ordering::Relaxed) {
                    lat.push(now_ns.saturating_sub(bt).max(1));
                }
            }
        }
    }
    pos
}

/// Decoder of an HTTP/1.1 chunked body, fed whatever the socket gave.
#[derive(Default)]
struct Chunked {
    /// bytes left in the current chunk's data; None while reading a size line
    left: Option<usize>,
    /// the CRLF after a chunk's data is still to be skipped
    crlf: usize,
    done: bool,
}

impl Chunked {
    /// Appends the decoded data found in `raw` to `out`; returns how many bytes of `raw` it used.
    fn decode(&mut self, raw: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        let mut pos = 0;
        while pos < raw.len() && !self.done {
            if self.crlf > 0 {
                let n = self.crlf.min(raw.len() - pos);
                pos += n;
                self.crlf -= n;
                continue;
            }
            match self.left {
                Some(left) => {
                    let n = left.min(raw.len() - pos);
                    out.extend_from_slice(&raw[pos..pos + n]);
                    pos += n;
                    if n == left {
                        self.left = None;
                        self.crlf = 2;
                    } else {
                        self.left = Some(left - n);
                    }
                }
                None => {
                    let Some(eol) = memchr::memchr(b'\n', &raw[pos..]) else {
                        break;
                    };
                    let line = &raw[pos..pos + eol];
                    pos += eol + 1;
                    let hex = line
                        .split(|&c| c == b';' || c == b'\r')
                        .next()
                        .unwrap_or(b"");
                    let size = usize::from_str_radix(std::str::from_utf8(hex)?.trim(), 16)
                        .with_context(|| {
                            format!("bad chunk size line {:?}", String::from_utf8_lossy(line))
                        })?;
                    if size == 0 {
                        self.done = true;
                    } else {
                        self.left = Some(size);
                    }
                }
            }
        }
        Ok(pos)
    }
}

/// Opens one SSE subscription on a raw socket: the request, the answer's head, then the
/// (chunked) body parsed as it arrives. Runs until aborted or the server ends the stream.
async fn subscriber(
    addr: String,
    path: String,
    fs: Arc<FanShared>,
    sub: Arc<SubShared>,
    opened: Arc<Semaphore>,
) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let permit = opened.acquire().await?;
    let mut s = TcpStream::connect(&addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    s.set_nodelay(true)?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw: Vec<u8> = Vec::with_capacity(64 * 1024);
    let head_end = loop {
        if s.read_buf(&mut raw).await? == 0 {
            bail!("GET {path}: the server closed the connection before answering");
        }
        if let Some(i) = memchr::memmem::find(&raw, b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap_or("").to_string();
    if status != "200" {
        // the error answer has a Content-Length body; give it a moment to arrive
        let _ = tokio::time::timeout(Duration::from_millis(200), s.read_buf(&mut raw)).await;
        bail!(
            "GET {path} answered {status}: {}",
            String::from_utf8_lossy(&raw[head_end..])
        );
    }
    let chunked = head.contains("transfer-encoding: chunked");
    drop(permit);
    raw.drain(..head_end);
    let mut dec = Chunked::default();
    let mut body: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut lat: Vec<u64> = Vec::new();
    loop {
        if !raw.is_empty() {
            let now_ns = fs.epoch.elapsed().as_nanos() as u64;
            let mut seen = sub.seen.lock().unwrap();
            seen.bytes += raw.len() as u64;
            if chunked {
                let used = dec.decode(&raw, &mut body)?;
                raw.drain(..used);
            } else {
                body.append(&mut raw);
            }
            let used = parse_events(&body, now_ns, &fs, &sub, &mut seen, &mut lat);
            body.drain(..used);
            drop(seen);
            if !lat.is_empty() {
                let mut h = fs.hist.lock().unwrap();
                for &l in &lat {
                    h.record(l).ok();
                }
                lat.clear();
            }
            if dec.done {
                return Ok(());
            }
        }
        raw.reserve(64 * 1024);
        if s.read_buf(&mut raw).await? == 0 {
            return Ok(());
        }
    }
}

async fn writer(
    mut conn: Conn,
    k: usize,
    f: Fanout,
    payload: String,
    epoch: Instant,
    start: Instant,
    secs: f64,
) -> (Vec<(u64, u64)>, u64, Duration, u64) {
    let interval = Duration::from_secs_f64(f.batch as f64 * f.writers as f64 / f.rate);
    let mut next = start + interval.mul_f64(k as f64 / f.writers as f64);
    let end = start + Duration::from_secs_f64(secs);
    let stream = format!("fanout/w{k}");
    let (mut ranges, mut errors, mut max_lag, mut batches) =
        (Vec::new(), 0u64, Duration::ZERO, 0u64);
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        let now = Instant::now();
        if now >= end {
            // behind schedule at the end: what was not sent in time is not sent
            break;
        }
        max_lag = max_lag.max(now - next);
        let bt = (now - epoch).as_nanos() as u64;
        let mut body = String::with_capacity(f.batch * (payload.len() + 100) + 16);
        body.push_str("{\"events\":[");
        for j in 0..f.batch {
            if j > 0 {
                body.push(',');
            }
            body.push_str(&format!(
                "{{\"type\":\"{}\",\"stream\":\"{stream}\",\"data\":{{\"bt\":{bt},\"p\":\"{payload}\"}}}}",
                f.event_type
            ));
        }
        body.push_str("]}");
        match conn
            .call(
                Method::POST,
                "/v1/events",
                Some(body.into()),
                &[("prefer", "return=minimal")],
            )
            .await
        {
            Ok(got) => match (json_u64(&got, "seq"), json_u64(&got, "count")) {
                (Ok(seq), Ok(count)) if count > 0 => ranges.push((seq + 1 - count, seq)),
                _ => {
                    errors += 1;
                    note_error(&anyhow!(
                        "append answered {}",
                        String::from_utf8_lossy(&got)
                    ));
                }
            },
            Err(e) => {
                errors += 1;
                note_error(&e);
            }
        }
        batches += 1;
        next += interval;
    }
    (ranges, errors, max_lag, batches)
}

async fn sse_fanout(c: Common, f: Fanout) -> Result<()> {
    let nofile = raise_nofile();
    let addr = host_port(&c.url)?;
    let epoch = Instant::now();
    let mut probe = Conn::connect(&addr).await?;
    let head = json_u64(
        &probe.call(Method::GET, "/v1/audit/head", None, &[]).await?,
        "seq",
    )?;
    let base = head + 1;
    let fs = Arc::new(FanShared {
        epoch,
        base,
        record_from_ns: AtomicU64::new(u64::MAX),
        hist: Mutex::new(new_hist()),
        bt_finder: memchr::memmem::Finder::new(b"\"bt\":"),
        blank_line: memchr::memmem::Finder::new(b"\n\n"),
        unexpected: AtomicU64::new(0),
        keepalives: AtomicU64::new(0),
    });
    let path = format!("/v1/events?from={base}&types={}", f.event_type);
    let opened = Arc::new(Semaphore::new(f.connect_concurrency.max(1)));
    let t_sub = Instant::now();
    let mut subs = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..f.subscribers {
        let sub = Arc::new(SubShared {
            max_seq: AtomicU64::new(0),
            caught_up: AtomicBool::new(false),
            seen: Mutex::new(Seen {
                bits: Vec::new(),
                received: 0,
                duplicates: 0,
                bytes: 0,
            }),
        });
        subs.push(sub.clone());
        handles.push(tokio::spawn(subscriber(
            addr.clone(),
            path.clone(),
            fs.clone(),
            sub,
            opened.clone(),
        )));
    }
    // every subscription open and caught up (or failed), at most 60 s
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = subs
            .iter()
            .filter(|s| s.caught_up.load(Ordering::Acquire))
            .count();
        let failed = handles.iter().filter(|h| h.is_finished()).count();
        if ready + failed >= f.subscribers || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let subscribe_s = t_sub.elapsed().as_secs_f64();
    let ready = subs
        .iter()
        .filter(|s| s.caught_up.load(Ordering::Acquire))
        .count();
    eprintln!(
        "coordbench: {ready} of {} subscribers caught up in {subscribe_s:.2} s",
        f.subscribers
    );

    // writers: open loop, each on its own connection and its own share of the schedule
    let payload = payload_bytes(c.size);
    let mut writer_conns = Vec::new();
    for _ in 0..f.writers {
        writer_conns.push(Conn::connect(&addr).await?);
    }
    let start = Instant::now() + Duration::from_millis(50);
    fs.record_from_ns.store(
        ((start - epoch) + Duration::from_secs_f64(c.warmup)).as_nanos() as u64,
        Ordering::Relaxed,
    );
    let total_secs = c.warmup + c.secs;
    let mut writers = Vec::new();
    for (k, conn) in writer_conns.into_iter().enumerate() {
        writers.push(tokio::spawn(writer(
            conn,
            k,
            f.clone(),
            payload.clone(),
            epoch,
            start,
            total_secs,
        )));
    }
    if f.stop_early > 0 {
        // these subscribers hang up halfway: their task and socket are dropped
        let when = start + Duration::from_secs_f64(total_secs / 2.0);
        let early: Vec<_> = handles
            .iter()
            .take(f.stop_early)
            .map(|h| h.abort_handle())
            .collect();
        tokio::spawn(async move {
            tokio::time::sleep_until(when.into()).await;
            for h in early {
                h.abort();
            }
        });
    }
    tokio::time::sleep_until(start.into()).await;
    let cpu0 = cpu_mark(c.server_pid);
    let mut ranges = Vec::new();
    let (mut write_errors, mut max_lag, mut batches) = (0u64, Duration::ZERO, 0u64);
    for w in writers {
        let (r, e, l, b) = w.await?;
        ranges.extend(r);
        write_errors += e;
        max_lag = max_lag.max(l);
        batches += b;
    }
    let write_s = start.elapsed().as_secs_f64();
    let written: u64 = ranges.iter().map(|(a, b)| b - a + 1).sum();
    let last_seq = ranges.iter().map(|r| r.1).max().unwrap_or(0);
    // drain: every subscriber still following (not stopped early) reaches the last event
    let t_drain = Instant::now();
    let drain_deadline = t_drain + Duration::from_secs_f64(f.drain);
    let followers: Vec<_> = subs
        .iter()
        .enumerate()
        .filter(|(i, s)| *i >= f.stop_early && s.caught_up.load(Ordering::Acquire))
        .map(|x| x.1)
        .collect();
    while Instant::now() < drain_deadline
        && followers
            .iter()
            .any(|s| s.max_seq.load(Ordering::Acquire) < last_seq)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain_s = t_drain.elapsed().as_secs_f64();
    let cpu1 = cpu_mark(c.server_pid);
    for h in &handles {
        h.abort();
    }

    // Per follower: a written seq it never got is lost if it got a later one (the stream is
    // in seq order, so it was skipped), else still undelivered when the drain ended.
    let mut subscribe_errors = 0u64;
    let (mut complete, mut with_missing, mut behind, mut lost, mut undelivered, mut max_missing) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut dups, mut deliveries, mut bytes, mut early_missing) = (0u64, 0u64, 0u64, 0u64);
    for (i, h) in handles.into_iter().enumerate() {
        // Ok(Ok(())): the server ended the stream; Err: aborted here at the end
        if let Ok(Err(e)) = h.await {
            // refused, or broken off by the server or a bad chunk
            note_error(&e);
            subscribe_errors += 1;
            if !subs[i].caught_up.load(Ordering::Acquire) {
                continue;
            }
        }
        let seen = subs[i].seen.lock().unwrap();
        let max_seq = subs[i].max_seq.load(Ordering::Acquire);
        let (mut gap, mut late) = (0u64, 0u64);
        for &(a, b) in &ranges {
            for seq in a..=b {
                if !seen.has(seq - base) {
                    if seq < max_seq {
                        gap += 1
                    } else {
                        late += 1
                    }
                }
            }
        }
        if i < f.stop_early {
            early_missing += gap + late;
        } else {
            lost += gap;
            undelivered += late;
            max_missing = max_missing.max(gap + late);
            if late > 0 {
                behind += 1;
            }
            if gap + late > 0 {
                with_missing += 1;
            } else if seen.duplicates == 0 && written > 0 {
                complete += 1;
            }
        }
        dups += seen.duplicates;
        deliveries += seen.received;
        bytes += seen.bytes;
    }
    let (busy, mine, server_s) = cpu_between(cpu0, cpu1);
    let window = cpu1.at - cpu0.at;
    let h = fs.hist.lock().unwrap();
    let mut out = serde_json::Map::new();
    out.insert("workload".into(), "swarmlog-sse-fanout".into());
    out.insert("label".into(), c.label.clone().into());
    out.insert("subscribers".into(), f.subscribers.into());
    out.insert("subscribers_caught_up".into(), ready.into());
    out.insert("subscribe_errors".into(), subscribe_errors.into());
    out.insert("subscribe_s".into(), round2(subscribe_s).into());
    out.insert("stopped_early".into(), f.stop_early.into());
    out.insert("rate".into(), f.rate.into());
    out.insert("batch".into(), f.batch.into());
    out.insert("writers".into(), f.writers.into());
    out.insert("secs".into(), c.secs.into());
    out.insert("warmup".into(), c.warmup.into());
    out.insert("size".into(), c.size.into());
    out.insert(
        "events_scheduled".into(),
        ((f.rate * total_secs).round() as u64).into(),
    );
    out.insert("events_written".into(), written.into());
    out.insert("batches".into(), batches.into());
    out.insert("errors".into(), write_errors.into());
    out.insert(
        "written_per_s".into(),
        round1(written as f64 / write_s).into(),
    );
    out.insert(
        "writer_max_lag_ms".into(),
        round1(max_lag.as_secs_f64() * 1e3).into(),
    );
    out.insert("ops_per_s".into(), round1(written as f64 / write_s).into());
    // the followers (not stopped early) that got every written event exactly once
    out.insert("subscribers_complete".into(), complete.into());
    out.insert("subscribers_missing_events".into(), with_missing.into());
    out.insert("missing".into(), (lost + undelivered).into());
    // skipped: a later event arrived but not this one (a real loss)
    out.insert("lost".into(), lost.into());
    // not yet received when the drain ended, by subscribers still behind the last event
    out.insert("undelivered_at_end".into(), undelivered.into());
    out.insert("subscribers_behind_at_end".into(), behind.into());
    out.insert("max_missing_one_subscriber".into(), max_missing.into());
    out.insert("missing_stopped_early".into(), early_missing.into());
    out.insert("duplicates".into(), dups.into());
    out.insert(
        "unexpected".into(),
        fs.unexpected.load(Ordering::Relaxed).into(),
    );
    out.insert("deliveries".into(), deliveries.into());
    out.insert(
        "deliveries_per_s".into(),
        round1(deliveries as f64 / window.as_secs_f64()).into(),
    );
    out.insert(
        "received_mb_per_s".into(),
        round1(bytes as f64 / 1e6 / window.as_secs_f64()).into(),
    );
    out.insert("latency_samples".into(), h.len().into());
    out.extend(hist_fields(&h, true));
    out.insert("drain_s".into(), round2(drain_s).into());
    out.insert("machine_busy_cores".into(), busy.into());
    out.insert("client_cores".into(), mine.into());
    if let Some(s) = server_s {
        out.insert("server_cpu_s".into(), round2(s).into());
        out.insert(
            "server_cores".into(),
            round2(s / window.as_secs_f64()).into(),
        );
        out.insert(
            "server_cpu_us_per_event".into(),
            round1(s * 1e6 / written.max(1) as f64).into(),
        );
        out.insert(
            "server_cpu_us_per_delivery".into(),
            round2(s * 1e6 / deliveries.max(1) as f64).into(),
        );
    }
    out.insert("nofile".into(), nofile.into());
    println!("{}", Value::Object(out));
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Lock { common, ttl_ms } => closed_loop(Workload::Lock, common, ttl_ms).await,
        Cmd::Cas { common, read_first } => {
            closed_loop(
                if read_first {
                    Workload::ReadCas
                } else {
                    Workload::Cas
                },
                common,
                0,
            )
            .await
        }
        Cmd::SseFanout { common, fan } => sse_fanout(common, fan).await,
        Cmd::ReadUnderAppend { common, reads } => read_under_append(common, reads).await,
    }
}
