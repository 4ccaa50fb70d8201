//! The HTTP driver: keep-alive HTTP/1.1 connections (hyper), each sending its next request as soon
//! as the previous answer is read, on one pinned thread; latencies in an HDR histogram.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::procfs;

/// Largest latency the histogram holds: one hour, in microseconds.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Error examples kept (with their bodies) per run.
const MAX_EXAMPLES: usize = 5;
/// A connection that fails this many times in a row gives up.
const MAX_CONSECUTIVE_FAILURES: u32 = 20;

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// One request of a workload: `POST path` with `body`; `tag` identifies it to the workload.
pub struct PreparedRequest {
    pub path: String,
    pub body: Bytes,
    pub tag: usize,
    /// Headers of this request alone (a v3 notification's signature).
    pub headers: Vec<(&'static str, String)>,
}

/// What to send and what counts as a success.
pub trait Workload: Send + Sync {
    /// The next request, or `None` when the work is done.
    fn next_request(&self) -> Option<PreparedRequest>;
    /// Whether this answer is a success.
    fn is_success(&self, status: u16, body: &[u8]) -> bool;
    /// `Content-Type` of every request.
    fn content_type(&self) -> &'static str {
        "application/json"
    }
    /// `Authorization` header value, if any.
    fn authorization(&self) -> Option<&str>;
}

/// How to drive a workload.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub request_timeout: Duration,
    /// The core the driver thread is pinned to.
    pub driver_core: Option<usize>,
    /// The gateway, whose CPU time is sampled at both edges of the measured window.
    pub gateway_pid: Option<u32>,
    /// The gateway's core, whose I/O wait and steal time (a VM's lost CPU) are sampled the same
    /// way.
    pub gateway_core: Option<usize>,
}

/// What a run measured. Counts and latencies cover the measured window (answers completed in
/// it); `success_tags` covers every success, warm-up included.
pub struct LoadResult {
    pub successes: u64,
    pub errors: BTreeMap<String, u64>,
    pub warmup_successes: u64,
    pub warmup_errors: u64,
    pub error_examples: Vec<String>,
    /// Latency of measured successes, in microseconds.
    pub latency_us: Histogram<u64>,
    pub window: Duration,
    /// Gateway CPU clock ticks (utime + stime) spent in the window.
    pub gateway_cpu_ticks: Option<u64>,
    /// Clock ticks the hypervisor took from the gateway's core during the window.
    pub steal_ticks: Option<u64>,
    /// Clock ticks the gateway's core sat idle waiting for the disk during the window.
    pub iowait_ticks: Option<u64>,
    pub success_tags: Vec<usize>,
    /// The workload ran out before the duration ended.
    pub exhausted: bool,
}

impl LoadResult {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn throughput(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            f64_of(self.successes) / secs
        } else {
            0.0
        }
    }
}

/// `u64` to `f64` without an `as` conversion (exact below 2^53, which every count here is).
pub fn f64_of(x: u64) -> f64 {
    let high = u32::try_from(x >> 32).unwrap_or(u32::MAX);
    let low = u32::try_from(x & 0xFFFF_FFFF).unwrap_or(u32::MAX);
    f64::from(high) * 4_294_967_296.0 + f64::from(low)
}

pub fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("latency histogram")
}

/// Drive `workload` against `addr` from a new thread (pinned to `driver_core`), and wait for it.
pub async fn run(
    addr: SocketAddr,
    workload: Arc<dyn Workload>,
    config: LoadConfig,
) -> anyhow::Result<LoadResult> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-driver".to_owned())
        .spawn(move || {
            let result = (|| {
                if let Some(core) = config.driver_core {
                    pin_current_thread(core)?;
                }
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("driver runtime")?;
                runtime.block_on(drive(addr, workload, config))
            })();
            // The receiver is gone only when the benchmark was interrupted.
            let _ = tx.send(result);
        })
        .context("cannot start the driver thread")?;
    rx.await
        .map_err(|_| anyhow!("the driver thread ended without a result"))?
}

/// Pin the calling thread (and the threads it creates later) to one core.
pub fn pin_current_thread(core: usize) -> anyhow::Result<()> {
    let available = core_affinity::get_core_ids().unwrap_or_default();
    let Some(id) = available.into_iter().find(|c| c.id == core) else {
        return Err(anyhow!(
            "core {core} is not available to this process (see `nproc` / taskset)"
        ));
    };
    if core_affinity::set_for_current(id) {
        Ok(())
    } else {
        Err(anyhow!("cannot pin a thread to core {core}"))
    }
}

struct Shared {
    phase: AtomicU8,
    active: AtomicUsize,
    all_done: Notify,
}

struct WorkerStats {
    successes: u64,
    errors: BTreeMap<String, u64>,
    warmup_successes: u64,
    warmup_errors: u64,
    examples: Vec<String>,
    latency_us: Histogram<u64>,
    tags: Vec<usize>,
}

impl WorkerStats {
    fn new() -> anyhow::Result<Self> {
        Ok(WorkerStats {
            successes: 0,
            errors: BTreeMap::new(),
            warmup_successes: 0,
            warmup_errors: 0,
            examples: Vec::new(),
            latency_us: new_histogram()?,
            tags: Vec::new(),
        })
    }

    fn error(&mut self, phase: u8, kind: String, example: impl FnOnce() -> String) {
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(format!("{kind}: {}", example()));
        }
        if phase == MEASURE {
            *self.errors.entry(kind).or_insert(0) += 1;
        } else {
            self.warmup_errors += 1;
        }
    }
}

async fn drive(
    addr: SocketAddr,
    workload: Arc<dyn Workload>,
    config: LoadConfig,
) -> anyhow::Result<LoadResult> {
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(if config.warmup.is_zero() {
            MEASURE
        } else {
            WARMUP
        }),
        active: AtomicUsize::new(config.connections),
        all_done: Notify::new(),
    });
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..config.connections {
        let stats = WorkerStats::new()?;
        workers.spawn(worker(
            addr,
            workload.clone(),
            shared.clone(),
            config.request_timeout,
            stats,
        ));
    }

    let sample_cpu = || {
        (
            config.gateway_pid.and_then(|p| procfs::cpu_ticks(p).ok()),
            config.gateway_core.and_then(|c| procfs::core_ticks(c).ok()),
        )
    };
    let (window_start, cpu_start) = if config.warmup.is_zero() {
        (started, sample_cpu())
    } else {
        wait_until(&shared, started + config.warmup).await;
        let cpu = sample_cpu();
        shared.phase.store(MEASURE, Ordering::SeqCst);
        (Instant::now(), cpu)
    };
    wait_until(&shared, window_start + config.duration).await;
    shared.phase.store(STOP, Ordering::SeqCst);
    let window = window_start.elapsed();
    let cpu_end = sample_cpu();
    let exhausted = shared.active.load(Ordering::SeqCst) == 0;

    let mut total = WorkerStats::new()?;
    let drain = async {
        while let Some(joined) = workers.join_next().await {
            if let Ok(stats) = joined {
                merge(&mut total, stats)?;
            }
        }
        anyhow::Ok(())
    };
    // Answers still in flight at the end are waited for (bounded), not counted.
    match tokio::time::timeout(config.request_timeout + Duration::from_secs(2), drain).await {
        Ok(merged) => merged?,
        Err(_) => {
            workers.abort_all();
            total
                .examples
                .push("some connections were still waiting for an answer after the run".to_owned());
        }
    }

    Ok(LoadResult {
        successes: total.successes,
        errors: total.errors,
        warmup_successes: total.warmup_successes,
        warmup_errors: total.warmup_errors,
        error_examples: total.examples,
        latency_us: total.latency_us,
        window,
        gateway_cpu_ticks: delta(cpu_start.0, cpu_end.0),
        steal_ticks: delta(cpu_start.1.map(|t| t.steal), cpu_end.1.map(|t| t.steal)),
        iowait_ticks: delta(cpu_start.1.map(|t| t.iowait), cpu_end.1.map(|t| t.iowait)),
        success_tags: total.tags,
        exhausted,
    })
}

fn delta(start: Option<u64>, end: Option<u64>) -> Option<u64> {
    Some(end?.saturating_sub(start?))
}

fn merge(total: &mut WorkerStats, stats: WorkerStats) -> anyhow::Result<()> {
    total.successes += stats.successes;
    total.warmup_successes += stats.warmup_successes;
    total.warmup_errors += stats.warmup_errors;
    for (kind, n) in stats.errors {
        *total.errors.entry(kind).or_insert(0) += n;
    }
    for example in stats.examples {
        if total.examples.len() < MAX_EXAMPLES {
            total.examples.push(example);
        }
    }
    total
        .latency_us
        .add(&stats.latency_us)
        .context("merging latency histograms")?;
    total.tags.extend(stats.tags);
    Ok(())
}

/// Sleep until `deadline`, or until every worker has run out of work.
async fn wait_until(shared: &Shared, deadline: Instant) {
    loop {
        if shared.active.load(Ordering::SeqCst) == 0 {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => return,
            _ = shared.all_done.notified() => {}
        }
    }
}

async fn worker(
    addr: SocketAddr,
    workload: Arc<dyn Workload>,
    shared: Arc<Shared>,
    request_timeout: Duration,
    mut stats: WorkerStats,
) -> WorkerStats {
    let host = addr.to_string();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut failures_in_a_row = 0u32;
    while shared.phase.load(Ordering::SeqCst) != STOP
        && failures_in_a_row < MAX_CONSECUTIVE_FAILURES
    {
        // Connect before taking work, so a failed connect loses no request.
        let mut connection = match sender.take() {
            Some(s) => s,
            None => match tokio::time::timeout(request_timeout, connect::<Full<Bytes>>(addr))
                .await
                .unwrap_or_else(|_| Err("connect timed out".to_owned()))
            {
                Ok(s) => s,
                Err(e) => {
                    failures_in_a_row += 1;
                    let phase = shared.phase.load(Ordering::SeqCst);
                    stats.error(phase, "connect failed".to_owned(), || e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(request) = workload.next_request() else {
            break;
        };
        let start = Instant::now();
        let answer = tokio::time::timeout(
            request_timeout,
            send(&mut connection, &host, workload.as_ref(), &request),
        )
        .await
        .unwrap_or_else(|_| Err("no answer within the request timeout".to_owned()));
        let latency = start.elapsed();
        let phase = shared.phase.load(Ordering::SeqCst);
        match answer {
            Ok((status, body)) => {
                sender = Some(connection);
                if workload.is_success(status, &body) {
                    failures_in_a_row = 0;
                    stats.tags.push(request.tag);
                    if phase == MEASURE {
                        stats.successes += 1;
                        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                        stats.latency_us.saturating_record(us.max(1));
                    } else {
                        stats.warmup_successes += 1;
                    }
                } else {
                    stats.error(phase, format!("HTTP {status}"), || {
                        let text = String::from_utf8_lossy(&body);
                        text.chars().take(300).collect()
                    });
                }
            }
            Err(e) => {
                // The connection is dropped; the next turn opens a new one.
                failures_in_a_row += 1;
                stats.error(phase, "transport error".to_owned(), || e);
            }
        }
    }
    if shared.active.fetch_sub(1, Ordering::SeqCst) == 1 {
        shared.all_done.notify_one();
    }
    stats
}

async fn connect<B>(addr: SocketAddr) -> Result<SendRequest<B>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; errors show up on the sender.
        let _ = connection.await;
    });
    Ok(sender)
}

async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    host: &str,
    workload: &dyn Workload,
    request: &PreparedRequest,
) -> Result<(u16, Bytes), String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(request.path.as_str())
        .header(HOST, host)
        .header(CONTENT_TYPE, workload.content_type());
    if let Some(auth) = workload.authorization() {
        builder = builder.header(AUTHORIZATION, auth);
    }
    for (name, value) in &request.headers {
        builder = builder.header(*name, value.as_str());
    }
    let http_request = builder
        .body(Full::new(request.body.clone()))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(http_request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// One request on a new connection (set-up, health checks, verification): `(status, body)`.
pub async fn one_request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    json_body: Option<String>,
    bearer: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<(u16, Bytes)> {
    let exchange = async {
        let host = addr.to_string();
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, host.as_str());
        if let Some(key) = bearer {
            builder = builder.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        let response = match json_body {
            Some(body) => {
                let mut sender = connect::<Full<Bytes>>(addr).await.map_err(|e| anyhow!(e))?;
                let request = builder
                    .header(CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(body)))?;
                sender.send_request(request).await?
            }
            None => {
                let mut sender = connect::<Empty<Bytes>>(addr)
                    .await
                    .map_err(|e| anyhow!(e))?;
                sender.send_request(builder.body(Empty::new())?).await?
            }
        };
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow!("{path}: no answer within {timeout:?}"))?
}
