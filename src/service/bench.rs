//! Benchmarks run by `ember bench`: figures, each beside a baseline measured in the same run.
//!
//! - heartbeat: lateness of a 100 ms timer on the runtime (the heartbeat's mechanism) while
//!   N jobs copy data flat out, through ember's storage pool versus plain `spawn_blocking`.
//! - flatten / clone: the file driver on a 1 GiB volume with data, versus `cp --sparse=always`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;

use super::lateness::{Summary, summarize};
use super::pool::StoragePool;

/// How the jobs' blocking work is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The naive baseline: one `spawn_blocking` per job, normal priority.
    SpawnBlocking,
    /// ember: the backend's storage pool (`threads` low-priority threads).
    Pool { threads: usize },
}

/// One job's body: copy memory in 8 MiB steps until told to stop, as a flatten's data path.
fn copy_until(stop: &AtomicBool, copied: &AtomicU64) {
    let src = vec![0x5au8; 8 << 20];
    let mut dst = vec![0u8; 8 << 20];
    while !stop.load(Ordering::Relaxed) {
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
        copied.fetch_add(8 << 20, Ordering::Relaxed);
    }
}

/// Result of one heartbeat run.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct HeartbeatRun {
    pub jobs: usize,
    pub lateness_ms: Summary,
    /// Data the jobs copied per second: the price, if any, of keeping the timer on time.
    pub copied_mib_s: f64,
}

/// Scrapes `GET /metrics` at `addr` every second until `stop` (the cost `bench heartbeat`
/// compares): a plain HTTP/1.0 request, the whole answer read.
async fn scrape_every_second(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    scrapes: Arc<AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
            let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await;
            let mut body = vec![];
            if s.read_to_end(&mut body).await.is_ok() && body.starts_with(b"HTTP/1.") {
                scrapes.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// With `metrics`: the metrics endpoint served as `serve` serves it (over a SQLite database in
/// a temp dir) and scraped every second, and every tick observed into the heartbeat
/// histogram as the real heartbeat does. Returns the run and the scrapes answered.
pub async fn heartbeat(
    jobs: usize,
    duration: Duration,
    strategy: Strategy,
    metrics: bool,
) -> anyhow::Result<(HeartbeatRun, u64)> {
    let scrapes = Arc::new(AtomicU64::new(0));
    let stop_scraping = Arc::new(AtomicBool::new(false));
    let cancel = tokio_util::sync::CancellationToken::new();
    let _dir = if metrics {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("ember.db").display());
        let db = crate::db::Db::connect(&url).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(super::metrics::serve_on(
            listener,
            db,
            Duration::from_secs(60),
            cancel.clone(),
        ));
        tokio::spawn(scrape_every_second(
            addr,
            stop_scraping.clone(),
            scrapes.clone(),
        ));
        Some(dir)
    } else {
        None
    };
    let run = heartbeat_run(jobs, duration, strategy, metrics).await;
    stop_scraping.store(true, Ordering::Relaxed);
    cancel.cancel();
    Ok((run, scrapes.load(Ordering::Relaxed)))
}

async fn heartbeat_run(
    jobs: usize,
    duration: Duration,
    strategy: Strategy,
    observe: bool,
) -> HeartbeatRun {
    let labels = super::metrics::ServiceLabels {
        backend: "bench".into(),
        service: "bench@bench".into(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let copied = Arc::new(AtomicU64::new(0));
    let pool = match strategy {
        Strategy::Pool { threads } => Some(StoragePool::new("bench", threads)),
        Strategy::SpawnBlocking => None,
    };
    let mut handles = vec![];
    for _ in 0..jobs {
        let (stop, copied) = (stop.clone(), copied.clone());
        let body = move || copy_until(&stop, &copied);
        handles.push(match &pool {
            Some(p) => {
                let p = p.clone();
                tokio::spawn(async move {
                    let _ = p.run(body).await;
                })
            }
            None => tokio::spawn(async move {
                let _ = tokio::task::spawn_blocking(body).await;
            }),
        });
    }
    let period = Duration::from_millis(100);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut late = vec![];
    ticker.tick().await; // the first tick is immediate
    while started.elapsed() < duration {
        let scheduled = ticker.tick().await;
        let l = tokio::time::Instant::now().saturating_duration_since(scheduled);
        if observe {
            super::metrics::get()
                .heartbeat_lateness
                .get_or_create(&labels)
                .observe(l.as_secs_f64());
        }
        late.push(l.as_secs_f64() * 1000.0);
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.await;
    }
    HeartbeatRun {
        jobs,
        lateness_ms: summarize(&late).unwrap_or(Summary {
            count: 0,
            p50: 0.0,
            p99: 0.0,
            max: 0.0,
        }),
        copied_mib_s: copied.load(Ordering::Relaxed) as f64 / (1 << 20) as f64 / elapsed,
    }
}

/// Time of one blocking action, for throughput figures.
pub fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed())
}

/// Fills `path` (a sparse file of `size`) with `data` bytes of non-zero data in 4 MiB pieces
/// spread over the file, as a used volume looks.
pub fn fill_volume(path: &Path, size: u64, data: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    let piece = 4u64 << 20;
    let pieces = data / piece;
    let stride = (size / pieces.max(1)).max(piece);
    let mut buf: Vec<u8> = (0..piece).map(|i| (i % 251) as u8 + 1).collect();
    for i in 0..pieces {
        // Each piece different, as real data is (identical pieces would let a deduplicating
        // backup store one and look faster than it is).
        buf[..8].copy_from_slice(&(i + 1).to_le_bytes());
        f.write_all_at(&buf, i * stride)?;
    }
    f.sync_all()
}
