//! Heartbeat lateness: how long after its scheduled time each heartbeat really fired.
//!
//! A heartbeat that fires late is the first sign of a starved reactor (Cinder's failure:
//! blocking storage work on the only thread). The recent values are kept per service, written
//! with each heartbeat, and drawn by the console.

use std::collections::VecDeque;
use std::time::Duration;

/// How many recent heartbeats are kept: ten minutes at the default 10 s interval.
pub const KEEP: usize = 60;

#[derive(Debug, Clone, Default)]
pub struct Lateness {
    recent: VecDeque<Duration>,
}

impl Lateness {
    pub fn record(&mut self, late: Duration) {
        if self.recent.len() == KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back(late);
    }

    pub fn recent(&self) -> impl Iterator<Item = Duration> + '_ {
        self.recent.iter().copied()
    }

    /// The stored form: milliseconds with 0.1 ms resolution, comma-separated, oldest first.
    pub fn encode(&self) -> String {
        self.recent
            .iter()
            .map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// p50 / p99 / max of a set of milliseconds (nearest-rank), for tables and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some(Summary {
        count: v.len(),
        p50: rank(0.50),
        p99: rank(0.99),
        max: v[v.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_values_and_encodes_them() {
        let mut l = Lateness::default();
        for i in 0..(KEEP + 5) {
            l.record(Duration::from_micros(i as u64 * 100));
        }
        let enc = l.encode();
        assert_eq!(enc.split(',').count(), KEEP);
        assert!(enc.starts_with("0.5,"), "{enc}");
    }

    #[test]
    fn summary_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summarize(&v).expect("non-empty");
        assert_eq!((s.p50, s.p99, s.max), (50.0, 99.0, 100.0));
        assert!(summarize(&[]).is_none());
    }
}
