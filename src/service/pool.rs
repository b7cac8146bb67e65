//! The storage pool: dedicated OS threads for blocking driver calls, one pool per backend,
//! sized by `backend_native_threads_pool_size` (Cinder's native thread pool).
//!
//! Why not plain `spawn_blocking`: on a 2-core host, dozens of threads copying data compete
//! with the runtime's worker threads for the CPU, and a heartbeat timer that wakes up waits
//! its turn: measured with 64 copying jobs, p99 lateness ~20 ms and spikes past 200 ms
//! (`ember bench heartbeat` prints the baseline beside this pool). These threads run under
//! `SCHED_BATCH` at the lowest priority (nice 19), so the kernel lets a waking runtime thread
//! preempt them at once; they still get every CPU cycle nobody else wants, so throughput is
//! unchanged on an idle host. Lowering a thread's own priority needs no privilege.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use thiserror::Error;
use tracing::warn;

type Task = Box<dyn FnOnce() + Send + 'static>;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum PoolError {
    #[error("the storage pool is shut down")]
    Closed,
    #[error("the driver call panicked: {0}")]
    Panicked(String),
}

/// A fixed set of low-priority threads running blocking closures.
#[derive(Debug, Clone)]
pub struct StoragePool {
    tx: mpsc::Sender<Task>,
}

/// Lowers the calling thread to SCHED_BATCH, nice 19. Best effort: a failure is logged once
/// per thread and the thread keeps its normal priority.
pub fn lower_current_thread_priority() {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id,
    };
    use thread_priority::{ThreadPriority, ThreadPriorityValue};
    let policy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
    // Cross-platform 0 is the lowest priority: nice 19 on Linux.
    let lowest = ThreadPriority::Crossplatform(ThreadPriorityValue::MIN);
    if let Err(e) = set_thread_priority_and_policy(thread_native_id(), lowest, policy) {
        warn!("storage thread keeps its normal priority: {e:?}");
    }
}

impl StoragePool {
    /// Starts `threads` threads named `ember-<name>-N`.
    pub fn new(name: &str, threads: usize) -> StoragePool {
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ember-{name}-{i}"))
                .spawn(move || {
                    lower_current_thread_priority();
                    loop {
                        // The lock is held only while waiting for the next task, not while running it.
                        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match next {
                            Ok(task) => task(),
                            Err(_) => return, // every sender dropped: the pool is gone
                        }
                    }
                });
            if let Err(e) = spawned {
                warn!("storage pool {name}: thread {i} not started: {e}");
            }
        }
        StoragePool { tx }
    }

    /// Runs `f` on a pool thread and waits for it without blocking the runtime.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let task: Task = Box::new(move || {
            let out = std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
                let text = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                PoolError::Panicked(text)
            });
            let _ = done_tx.send(out);
        });
        self.tx.send(task).map_err(|_| PoolError::Closed)?;
        done_rx.await.map_err(|_| PoolError::Closed)?
    }
}

/// Why a bounded call gave no answer.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum BoundedError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("the service is stopping")]
    Closed,
    /// `in_use` of `slots` were taken when the time ran out: a saturated backend (every slot
    /// busy, some perhaps by calls that timed out but still run in the storage) is said so.
    #[error("no answer within {}s{}", secs, if *in_use >= *slots {
        format!("; the backend is saturated: all {slots} storage slots are busy (a call that timed out keeps its slot until the storage returns it)")
    } else {
        String::new()
    })]
    Timeout {
        secs: u64,
        in_use: usize,
        slots: usize,
    },
}

impl BoundedError {
    /// As the driver error of `op` on `backend`: a call past its limit is a timeout.
    pub fn into_driver(self, backend: String, op: &'static str) -> crate::driver::DriverError {
        use crate::driver::DriverError;
        let message = self.to_string();
        match self {
            BoundedError::Timeout { .. } => DriverError::Timeout {
                backend,
                op,
                message,
            },
            BoundedError::Pool(_) | BoundedError::Closed => DriverError::Io {
                backend,
                op,
                message,
            },
        }
    }
}

/// Runs `f` on `pool` once one of `slots` is free, giving up after `timeout`. The slot goes
/// with the closure to the storage thread and is released only when that thread returns: a
/// call that timed out but still runs in the storage keeps counting against the bound
/// (dropping the slot at the timeout let hung calls pile up past it, issue 23).
pub async fn bounded<T, F>(
    slots: &Arc<tokio::sync::Semaphore>,
    size: usize,
    pool: &StoragePool,
    timeout: std::time::Duration,
    f: F,
) -> Result<T, BoundedError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let work = async {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BoundedError::Closed)?;
        pool.run(move || {
            let _slot = permit;
            f()
        })
        .await
        .map_err(BoundedError::from)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(BoundedError::Timeout {
            secs: timeout.as_secs(),
            in_use: size.saturating_sub(slots.available_permits()),
            slots: size,
        }),
    }
}

/// Slots of the operator pool: storage calls an operator's command or a service's side task
/// makes (who has a volume open, used bytes, reconcile, break-lock, the storage's health, the
/// client address) run here, not on the runtime's unbounded blocking threads. At most this many
/// run at once in a process; a hung one keeps its slot, so a storage that hangs cannot pile up
/// threads, and the next caller is told the pool is saturated.
pub const OPERATOR_SLOTS: usize = 4;

/// The process's operator pool and its slots (made on first use).
fn operator() -> &'static (StoragePool, Arc<tokio::sync::Semaphore>) {
    static POOL: std::sync::OnceLock<(StoragePool, Arc<tokio::sync::Semaphore>)> =
        std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        (
            StoragePool::new("operator", OPERATOR_SLOTS),
            Arc::new(tokio::sync::Semaphore::new(OPERATOR_SLOTS)),
        )
    })
}

/// Runs `f` on the operator pool, giving up after `timeout` (see [`OPERATOR_SLOTS`]).
pub async fn operator_call<T, F>(timeout: std::time::Duration, f: F) -> Result<T, BoundedError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (pool, slots) = operator();
    bounded(slots, OPERATOR_SLOTS, pool, timeout, f).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call that timed out keeps its slot until the storage returns: the next call waits
    /// (and is told the backend is saturated) instead of running past the bound.
    #[tokio::test]
    async fn a_timed_out_call_keeps_its_slot_until_the_storage_returns() {
        use std::time::Duration;
        let pool = StoragePool::new("b", 2);
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let (release, hung) = std::sync::mpsc::channel::<()>();
        let first = bounded(&slots, 1, &pool, Duration::from_millis(100), move || {
            let _ = hung.recv();
        })
        .await;
        assert!(
            matches!(first, Err(BoundedError::Timeout { .. })),
            "{first:?}"
        );
        assert_eq!(
            slots.available_permits(),
            0,
            "the hung call still holds its slot"
        );
        let second = bounded(&slots, 1, &pool, Duration::from_millis(100), || 1).await;
        let text = second
            .map(|_| ())
            .expect_err("a second call must wait")
            .to_string();
        assert!(
            text.contains("saturated: all 1 storage slots are busy"),
            "{text}"
        );
        release.send(()).expect("release");
        let third = bounded(&slots, 1, &pool, Duration::from_secs(5), || 3).await;
        assert_eq!(third, Ok(3));
    }

    #[tokio::test]
    async fn runs_closures_and_reports_panics() {
        let pool = StoragePool::new("t", 2);
        assert_eq!(pool.run(|| 40 + 2).await, Ok(42));
        let r: Result<(), _> = pool.run(|| panic!("boom")).await;
        assert_eq!(r, Err(PoolError::Panicked("boom".into())));
        // The thread that caught the panic still serves.
        assert_eq!(pool.run(|| "ok").await, Ok("ok"));
    }
}
