//! Live progress of the jobs this process runs, for its own console: the runners post it at
//! most [`POST_EVERY`] per job, and the console's publisher patches its picture from it
//! without a database round trip (other consoles see the 1 s progress writes, pushed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

/// How often a running job posts its progress here (at most 4 times a second).
pub const POST_EVERY: Duration = Duration::from_millis(250);

/// One job's bytes, and when they were posted (Unix ms).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Live {
    pub done: u64,
    pub total: u64,
    pub at_ms: i64,
}

#[derive(Debug, Default)]
pub struct ProgressBoard {
    jobs: Mutex<HashMap<String, Live>>,
    /// Woken when a post changed something.
    pub changed: Notify,
}

impl ProgressBoard {
    /// Posts a job's progress; wakes the publisher only when the bytes moved.
    pub fn post(&self, job: &str, done: u64, total: u64) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let moved = jobs
            .get(job)
            .is_none_or(|l| l.done != done || l.total != total);
        if moved {
            jobs.insert(
                job.to_string(),
                Live {
                    done,
                    total,
                    at_ms: crate::db::now_ms(),
                },
            );
            drop(jobs);
            self.changed.notify_one();
        }
    }

    /// The job ended here: its row is the truth again.
    pub fn remove(&self, job: &str) {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(job);
    }

    pub fn read(&self) -> HashMap<String, Live> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
