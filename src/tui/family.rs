//! The clone family of a volume (k9s's xray): up its parent chain to the volume that is no
//! clone, then down through every snapshot and the clones made from it. Built from the
//! snapshot in two passes over the tables when the view opens or the picture changes.

use std::collections::HashMap;
use std::sync::Arc;

use crate::service::snapshot::Snapshot;
use crate::service::view::{SnapshotView, VolumeView};

use super::state::{App, View};

/// How deep a chain is followed (a loop in bad data must not hang the console).
const MAX_DEPTH: usize = 64;

/// One row of the tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Volume(Arc<VolumeView>),
    Snapshot(Arc<SnapshotView>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Indentation: the root is 0, its snapshots 1, their clones 2...
    pub depth: usize,
    pub node: Node,
}

impl Member {
    pub fn volume(&self) -> Option<&VolumeView> {
        match &self.node {
            Node::Volume(v) => Some(v),
            Node::Snapshot(_) => None,
        }
    }

    pub fn id(&self) -> &str {
        match &self.node {
            Node::Volume(v) => &v.id,
            Node::Snapshot(s) => &s.id,
        }
    }
}

/// The family of `volume_id`, root first, depth-first; empty if the volume is gone.
pub fn family(snap: &Snapshot, volume_id: &str) -> Vec<Member> {
    let find_volume = |id: &str| snap.volumes.iter().find(|v| &*v.id == id);
    let Some(mut root) = find_volume(volume_id) else {
        return vec![];
    };
    for _ in 0..MAX_DEPTH {
        let Some(sid) = root.source_snapshot_id.as_deref() else {
            break;
        };
        let parent = snap
            .snapshots
            .iter()
            .find(|s| &*s.id == sid)
            .and_then(|s| find_volume(&s.volume_id));
        match parent {
            Some(p) => root = p,
            None => break,
        }
    }
    let mut snaps_of: HashMap<&str, Vec<&Arc<SnapshotView>>> = HashMap::new();
    for s in snap.snapshots.iter() {
        snaps_of.entry(&s.volume_id).or_default().push(s);
    }
    let mut clones_of: HashMap<&str, Vec<&Arc<VolumeView>>> = HashMap::new();
    for v in snap.volumes.iter() {
        if let Some(sid) = v.source_snapshot_id.as_deref() {
            clones_of.entry(sid).or_default().push(v);
        }
    }
    family_below(root, 0, &snaps_of, &clones_of)
}

/// A volume and everything below it: its snapshots by age, each followed by its clones.
fn family_below(
    v: &Arc<VolumeView>,
    depth: usize,
    snaps_of: &HashMap<&str, Vec<&Arc<SnapshotView>>>,
    clones_of: &HashMap<&str, Vec<&Arc<VolumeView>>>,
) -> Vec<Member> {
    let mut out = vec![Member {
        depth,
        node: Node::Volume(v.clone()),
    }];
    if depth / 2 >= MAX_DEPTH {
        return out;
    }
    let mut snaps = snaps_of.get(&*v.id).cloned().unwrap_or_default();
    snaps.sort_by_key(|s| s.created_at);
    for s in snaps {
        out.push(Member {
            depth: depth + 1,
            node: Node::Snapshot(s.clone()),
        });
        let mut clones = clones_of.get(&*s.id).cloned().unwrap_or_default();
        clones.sort_by_key(|c| c.created_at);
        for c in clones {
            out.extend(family_below(c, depth + 2, snaps_of, clones_of));
        }
    }
    out
}

impl App {
    /// `x` on a volume: its family, with the cursor on it.
    pub(super) fn open_family(&mut self) {
        let Some(v) = self.selected_volume().map(|v| v.id.to_string()) else {
            self.toast = Some((
                "no volume selected: pick one in the volumes view (3)".into(),
                true,
            ));
            return;
        };
        self.family_of = Some(v.clone());
        self.show(View::Family);
        self.refresh_family();
        let at = self.family.iter().position(|m| m.id() == v).unwrap_or(0);
        self.selected[View::Family.index()] = at;
    }

    /// Rebuilds the tree from the current picture (the selected member stays selected).
    pub(super) fn refresh_family(&mut self) {
        if self.view != View::Family {
            return;
        }
        let Some(root) = self.family_of.clone() else {
            return;
        };
        let was = self
            .family
            .get(self.selection(View::Family))
            .map(|m| m.id().to_string());
        self.family = family(&self.snap, &root);
        if let Some(id) = was
            && let Some(at) = self.family.iter().position(|m| m.id() == id)
        {
            self.selected[View::Family.index()] = at;
        }
    }

    /// `enter` in the family view: that volume in the Volumes view, its detail open (for a
    /// snapshot, the volume it belongs to).
    pub(super) fn jump_to_member(&mut self) {
        let Some(m) = self.family.get(self.selection(View::Family)).cloned() else {
            return;
        };
        let id = match &m.node {
            Node::Volume(v) => v.id.to_string(),
            Node::Snapshot(s) => s.volume_id.to_string(),
        };
        if !self.filter.is_empty() {
            self.filter.clear();
            self.refresh_visible();
        }
        match self
            .visible
            .iter()
            .position(|i| self.snap.volumes.get(*i).is_some_and(|v| *v.id == *id))
        {
            Some(at) => {
                self.show(View::Volumes);
                self.selected[View::Volumes.index()] = at;
                self.detail = true;
            }
            None => self.toast = Some((format!("volume {id} is not in the table"), true)),
        }
    }
}
