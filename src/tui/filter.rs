//! The volume filter: words, each a substring of the name or an id prefix, or `field:value` on
//! status, backend or name; then a sort by one column. Matching allocates nothing per row, so a
//! keystroke over 100,000 volumes stays a linear scan.

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
    idx.sort_by(|a, b| {
        let (x, y) = (&vols[*a], &vols[*b]);
        let o = match sort {
            0 => x.name.cmp(&y.name),
            1 => x.size_bytes.cmp(&y.size_bytes),
            2 => x.status.cmp(&y.status),
            3 => x.backend.cmp(&y.backend),
            4 => x.parent_name.cmp(&y.parent_name),
            5 => x.clone_depth.cmp(&y.clone_depth),
            6 => x.created_at.cmp(&y.created_at),
            _ => x.id.cmp(&y.id),
        };
        if desc { o.reverse() } else { o }
    });
    idx
}
