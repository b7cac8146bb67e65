//! Flatten, made safe after a crash.
//!
//! librbd's flatten skips every object its object map marks as present (Ceph tracker 68998:
//! "avoid data corruption on flatten when object map is inconsistent", fixed in 18.2.5 and
//! 19.2.1, not in Pacific). A copy-up marks the object first and writes it second, with up to
//! `rbd_concurrent_management_ops` in flight; a writer killed in between (a flatten killed -9,
//! a crashed guest) leaves marks on objects that do not exist. The flatten run again then skips
//! them, drops the parent link, and the clone reads zeros there instead of its parent's data:
//! ember's kill rounds found exactly that (up to 9 objects of 16 lost). `rbd object-map rebuild`
//! does not help: it never clears a head object's mark (it might be being written).
//!
//! So, before flattening a clone whose map marks anything, ember makes librbd distrust the
//! map (disable and re-enable `object-map`/`fast-diff`, which flags it invalid); flatten then
//! copies up every object that is really missing. Afterwards the map is rebuilt from the
//! objects (now all present) and trusted again. A fresh clone marks nothing and pays nothing.

use super::RbdDriver;
use super::ffi;
use super::image::{Image, Open, Ran, Watch};
use crate::driver::{DriverError, Progress, volume_image};

impl RbdDriver {
    pub(super) fn flatten_image(
        &self,
        volume_id: &str,
        progress: &dyn Progress,
    ) -> Result<(), DriverError> {
        self.flatten_paced(volume_id, self.bps_limit, progress)
    }

    /// Flattens at most `bps` bytes a second (0: as fast as the cluster goes).
    ///
    /// librbd has no rate of its own, so a throttled flatten is held back in its progress
    /// callback. That callback runs where librbd finishes each object's copy-up: Ceph's
    /// `C_AsyncObjectThrottle::finish` takes the image's `owner_lock`, and `finish_op` calls
    /// `start_next_op`, which calls `update_progress` under the throttle's `m_lock`, on the
    /// client's asio threads (`librados_thread_count`, 2 by default), which complete the I/O of
    /// every image opened through that client. A pause there held up every other call of the
    /// backend (measured by `ember bench rbd-flatten`). So a throttled flatten runs on a
    /// librados client of its own: its pauses hold only its own threads and its own image's
    /// locks. That client is recorded in the job before the flatten writes anything
    /// (`Progress::storage_client`), and a peer taking the job over fences it too.
    pub fn flatten_paced(
        &self,
        volume_id: &str,
        bps: u64,
        progress: &dyn Progress,
    ) -> Result<(), DriverError> {
        let pool = self.paced_pool("flatten", bps, progress)?;
        let name = volume_image(volume_id);
        let img =
            Image::open(&pool, Open::Name(&name)).map_err(|e| self.fail("flatten", &name, e))?;
        let layered = img
            .parent_snap()
            .map_err(|e| self.fail("flatten", &name, e))?
            .is_some();
        if layered {
            self.distrust_object_map(&img, &name)?;
            let watch = Watch {
                progress,
                bps_limit: bps,
            };
            let ran = img
                .flatten(watch)
                .map_err(|e| self.fail("flatten", &name, e))?;
            self.ran("flatten", ran)?;
        }
        // Already flat (a re-run after a crash) or just flattened: a map left untrusted, by
        // this run or by one killed after distrusting it, is rebuilt.
        self.trust_object_map(&img, &name, progress)
    }

    /// The client a call paced at `bps` runs on: the shared one when unpaced, else one of
    /// its own, recorded in the job (for fencing) before anything is written with it.
    pub(super) fn paced_pool(
        &self,
        op: &'static str,
        bps: u64,
        progress: &dyn Progress,
    ) -> Result<std::sync::Arc<super::conn::Pool>, DriverError> {
        let shared = bps == 0
            || self
                .pace_on_shared
                .load(std::sync::atomic::Ordering::SeqCst);
        if shared {
            return self.pool();
        }
        let own = self.own_pool()?;
        let address = own
            .cluster()
            .address()
            .map_err(|e| self.fail(op, "its own client", e))?;
        if !progress.storage_client(&address) {
            return Err(self.io(
                op,
                format!(
                    "its own storage client {address} could not be recorded in the job (for fencing): not started"
                ),
            ));
        }
        Ok(own)
    }

    fn ran(&self, op: &'static str, ran: Ran) -> Result<(), DriverError> {
        match ran {
            Ran::Done => Ok(()),
            Ran::Cancelled => Err(DriverError::Cancelled {
                backend: self.backend.clone(),
                op,
            }),
            Ran::Panicked(p) => Err(self.io(
                op,
                format!("progress callback panicked: {p}; the call was stopped"),
            )),
        }
    }

    fn distrust_object_map(&self, img: &Image<'_>, name: &str) -> Result<(), DriverError> {
        let fail = |e| self.fail("flatten", name, e);
        let features = img.features().map_err(fail)?;
        if features & ffi::FEATURE_OBJECT_MAP == 0
            || img.flags().map_err(fail)? & ffi::FLAG_OBJECT_MAP_INVALID != 0
        {
            return Ok(()); // no map, or one librbd already distrusts
        }
        let marked = img.used_bytes().map_err(fail)?;
        if marked == 0 {
            return Ok(());
        }
        tracing::info!(
            backend = %self.backend,
            image = name,
            marked,
            "flatten: the object map marks objects of this clone; distrusting it so that none is skipped (Ceph tracker 68998)"
        );
        let map = features & (ffi::FEATURE_OBJECT_MAP | ffi::FEATURE_FAST_DIFF);
        img.update_features(map, false)
            .map_err(|e| self.fail("flatten", name, e))?;
        img.update_features(map, true)
            .map_err(|e| self.fail("flatten", name, e))
    }

    fn trust_object_map(
        &self,
        img: &Image<'_>,
        name: &str,
        progress: &dyn Progress,
    ) -> Result<(), DriverError> {
        let fail = |e| self.fail("object-map rebuild", name, e);
        if img.features().map_err(fail)? & ffi::FEATURE_OBJECT_MAP == 0
            || img.flags().map_err(fail)? & ffi::FLAG_OBJECT_MAP_INVALID == 0
        {
            return Ok(());
        }
        // The rebuild moves no bytes: the bar stays where the flatten left it (all done).
        let bytes = img.size().map_err(fail)?;
        let holding = Holding {
            inner: progress,
            bytes,
        };
        let watch = Watch {
            progress: &holding,
            bps_limit: 0,
        };
        let ran = img
            .rebuild_object_map(watch)
            .map_err(|e| self.fail("object-map rebuild", name, e))?;
        self.ran("object-map rebuild", ran)
    }
}

/// Progress for a step that moves no bytes of its own: reports the bytes already done and
/// carries the caller's cancel.
struct Holding<'a> {
    inner: &'a dyn Progress,
    bytes: u64,
}

impl Progress for Holding<'_> {
    fn update(&self, _done: u64, _total: u64) -> bool {
        self.inner.update(self.bytes, self.bytes)
    }
}
