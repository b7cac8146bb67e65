//! The volume filter: words, each a substring of the name or an id prefix, or `field:value` on
//! status, backend or name; then a sort by one column. Matching allocates nothing per row, so a
//! keystroke over 100,000 volumes stays a linear scan.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::service::snapshot::{Snapshot, VolumeView};

pub(crate) fn filter_words(filter: &str) -> Vec<String> {
    filter.split_whitespace().map(str::to_lowercase).collect()
}

/// Case-insensitive "contains" without allocating per row (names are mostly ASCII).
pub(crate) fn contains_ci(hay: &str, needle: &str) -> bool {
    needle.is_empty()
        || hay
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

pub(crate) fn matches(v: &VolumeView, words: &[String]) -> bool {
    words.iter().all(|w| match w.split_once(':') {
        Some(("status", s)) => v
            .status
            .as_str()
            .get(..s.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(s)),
        Some(("backend", b)) => contains_ci(&v.backend, b),
        Some(("name", n)) => contains_ci(&v.name, n),
        _ => contains_ci(&v.name, w) || v.id.starts_with(w.as_str()),
    })
}

/// The volume rows to show: `filter` is words, each a substring of the id or name, or
/// `field:value` on status, backend or name; then sorted by a column.
pub fn filter_sort(snap: &Snapshot, filter: &str, sort: usize, desc: bool) -> Vec<usize> {
    let words = filter_words(filter);
    let mut idx: Vec<usize> = snap
        .volumes
        .iter()
        .enumerate()
        .filter(|(_, v)| matches(v, &words))
        .map(|(i, _)| i)
        .collect();
    let vols = &snap.volumes;
    idx.sort_unstable_by(|a, b| cmp_rows(vols, *a, *b, sort, desc));
    idx
}

/// The order of two rows (by position) under a sort column: the column's value (reversed
/// with `desc`), then the position, so that every order is total and an incremental insert
/// lands exactly where a full sort puts the row.
pub(crate) fn cmp_rows(
    vols: &[Arc<VolumeView>],
    a: usize,
    b: usize,
    sort: usize,
    desc: bool,
) -> Ordering {
    let (x, y) = (&vols[a], &vols[b]);
    let o = match sort {
        0 => x.name.cmp(&y.name),
        1 => x.size_bytes.cmp(&y.size_bytes),
        2 => x.status.cmp(&y.status),
        3 => x.attached.cmp(&y.attached),
        4 => x.backend.cmp(&y.backend),
        5 => x.parent_name.cmp(&y.parent_name),
        6 => x.clone_depth.cmp(&y.clone_depth),
        7 => x.created_at.cmp(&y.created_at),
        _ => x.id.cmp(&y.id),
    };
    let o = if desc { o.reverse() } else { o };
    o.then(a.cmp(&b))
}

/// `visible` (filtered and sorted over `old`) brought to `new` without sorting again. The
/// live model patches its table in place (a changed row keeps its position, a new one is
/// appended, a removed one is replaced by the last): rows whose position still holds the very
/// same row keep their place, and each changed position is inserted where it sorts, a binary
/// search each. None when much changed: a full [`filter_sort`] is cheaper then.
pub fn patch_visible(
    old: &[Arc<VolumeView>],
    new: &[Arc<VolumeView>],
    visible: &[usize],
    filter: &str,
    sort: usize,
    desc: bool,
) -> Option<Vec<usize>> {
    let same = |i: usize| i < old.len() && i < new.len() && Arc::ptr_eq(&old[i], &new[i]);
    let mut changed = vec![];
    for i in 0..new.len() {
        if !same(i) {
            changed.push(i);
            if changed.len() > (new.len() / 16).max(64) {
                return None;
            }
        }
    }
    let words = filter_words(filter);
    let mut out: Vec<usize> = visible.iter().copied().filter(|i| same(*i)).collect();
    for c in changed {
        if matches(&new[c], &words) {
            let at = out.partition_point(|x| cmp_rows(new, *x, c, sort, desc) == Ordering::Less);
            out.insert(at, c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::view::Interner;
    use crate::service::view::Status;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn vol(rng: &mut StdRng, strings: &mut Interner, n: usize) -> Arc<VolumeView> {
        let names = ["db", "web", "cache", "log", "app"];
        Arc::new(VolumeView {
            id: uuid::Uuid::new_v4().to_string().into(),
            // Few distinct values: ties are common, as in real tables.
            name: format!(
                "{}-{}",
                names[rng.random_range(0..5)],
                rng.random_range(0..8)
            )
            .into(),
            size_bytes: rng.random_range(1..4) << 30,
            status: Status::ALL[rng.random_range(0..Status::ALL.len())],
            status_reason: None,
            backend: strings.get(["file0", "rbd0"][rng.random_range(0..2)]),
            host: None,
            source_snapshot_id: None,
            parent_name: None,
            clone_depth: rng.random_range(0..3),
            created_at: n as i64 % 7,
            updated_at: 0,
            attached: rng.random_range(0..3),
        })
    }

    /// A patched list equals a full filter and sort after every change the live model makes
    /// (a row replaced in place, one appended, one swap-removed), over random sorts and
    /// filters. EMBER_SEED replays a round.
    #[test]
    fn patching_the_sorted_list_equals_sorting_again() {
        let seed = std::env::var("EMBER_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random::<u64>);
        eprintln!("seed {seed}");
        let mut rng = StdRng::seed_from_u64(seed);
        let mut strings = Interner::default();
        let mut made = 0;
        let mut rows: Vec<Arc<VolumeView>> = (0..500)
            .map(|_| {
                made += 1;
                vol(&mut rng, &mut strings, made)
            })
            .collect();
        for round in 0..300 {
            let sort = rng.random_range(0..9);
            let desc = rng.random_bool(0.5);
            let filter = ["", "db", "status:av", "backend:rbd", "web-1"][rng.random_range(0..5)];
            let before = Snapshot {
                volumes: Arc::new(rows.clone()),
                ..Default::default()
            };
            let visible = filter_sort(&before, filter, sort, desc);
            for _ in 0..rng.random_range(1..5) {
                made += 1;
                match rng.random_range(0..3) {
                    0 if !rows.is_empty() => {
                        let i = rng.random_range(0..rows.len());
                        rows[i] = vol(&mut rng, &mut strings, made);
                    }
                    1 if !rows.is_empty() => {
                        let i = rng.random_range(0..rows.len());
                        rows.swap_remove(i);
                    }
                    _ => rows.push(vol(&mut rng, &mut strings, made)),
                }
            }
            let after = Snapshot {
                volumes: Arc::new(rows.clone()),
                ..Default::default()
            };
            let patched = patch_visible(
                &before.volumes,
                &after.volumes,
                &visible,
                filter,
                sort,
                desc,
            )
            .unwrap_or_else(|| panic!("seed {seed} round {round}: a small change fell back"));
            assert_eq!(
                patched,
                filter_sort(&after, filter, sort, desc),
                "seed {seed} round {round}: sort {sort} desc {desc} filter {filter:?}"
            );
        }
    }
}
