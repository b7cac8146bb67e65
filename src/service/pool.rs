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

#[cfg(test)]
mod tests {
    use super::*;

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
