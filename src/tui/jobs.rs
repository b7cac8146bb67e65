//! A job's progress over time, as the console saw it: the samples behind the job detail's
//! throughput chart.

use std::collections::HashMap;

use crate::service::view::{JobState, JobView};

/// Samples kept per job (at one per snapshot, a long flatten keeps its last stretch).
const KEPT: usize = 600;

/// Records a running job's bytes when they moved since the last sample.
pub fn sample(samples: &mut HashMap<String, Vec<(i64, i64)>>, j: &JobView) {
    if j.state != JobState::Running || j.bytes_total <= 0 {
        return;
    }
    let s = samples.entry(j.id.clone()).or_default();
    if s.last().is_some_and(|(at, _)| *at >= j.updated_at) {
        return;
    }
    if s.is_empty()
        && let Some(start) = j.started_at
    {
        s.push((start, 0));
    }
    s.push((j.updated_at, j.bytes_done));
    if s.len() > KEPT {
        s.remove(0);
    }
}

/// Bytes per second between consecutive samples, oldest first.
pub fn throughput(samples: &[(i64, i64)]) -> Vec<f64> {
    samples
        .windows(2)
        .filter_map(|w| {
            let secs = (w[1].0 - w[0].0) as f64 / 1000.0;
            (secs > 0.0).then(|| ((w[1].1 - w[0].1) as f64 / secs).max(0.0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_follow_moving_bytes_and_give_rates() {
        let mut j = JobView {
            id: "j".into(),
            kind: crate::service::jobs::JobKind::Unknown,
            target_id: "t".into(),
            target_name: None,
            backend: "b".into(),
            state: JobState::Running,
            bytes_done: 10 << 20,
            bytes_total: 100 << 20,
            error: None,
            result: None,
            wait_reason: None,
            requested_by: "me".into(),
            claimed_by: None,
            owner: None,
            created_at: 0,
            started_at: Some(0),
            updated_at: 1_000,
            finished_at: None,
        };
        let mut m = HashMap::new();
        sample(&mut m, &j);
        sample(&mut m, &j); // the same progress again: no new sample
        j.bytes_done = 30 << 20;
        j.updated_at = 2_000;
        sample(&mut m, &j);
        let s = &m["j"];
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(throughput(s), vec![(10 << 20) as f64, (20 << 20) as f64]);
    }
}
