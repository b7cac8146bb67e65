//! Safe wrappers over the librbd calls the driver makes: an open [`Image`] closed on drop,
//! listings copied out of librbd's buffers, and progress callbacks that feed a
//! [`Progress`](crate::driver::Progress) and cancel the call when it says stop.

use std::ffi::CString;
use std::os::raw::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use super::conn::{Errno, Pool, from_c};
use super::ffi;
use crate::driver::Progress;

pub(super) fn cstr(call: &'static str, s: &str) -> Result<CString, Errno> {
    CString::new(s).map_err(|_| Errno {
        call,
        code: libc::EINVAL,
    })
}

/// An open image (or an image at one snapshot); closed on drop. Borrows its pool, so it
/// cannot outlive the I/O context.
pub struct Image<'p> {
    pub(super) raw: ffi::RbdImage,
    _pool: &'p Pool,
}

impl<'p> Image<'p> {
    /// The pool the image was opened in.
    pub(super) fn pool(&self) -> &'p Pool {
        self._pool
    }
}

impl Drop for Image<'_> {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: opened by rbd_open*, closed once; the pool outlives it (borrow).
        unsafe { ffi::rbd_close(self.raw) };
    }
}

/// How to open an image.
pub enum Open<'a> {
    Name(&'a str),
    /// At a snapshot: children listings are per snapshot.
    AtSnap(&'a str, &'a str),
    /// Read-only: no watch, no exclusive lock (listings).
    ReadOnly(&'a str),
    /// An image in the trash, by its id.
    Id(&'a str),
    /// A trash image at one of its snapshots.
    IdAtSnap(&'a str, &'a str),
}

/// A child of a snapshot, from `rbd_list_children3`.
pub struct Child {
    pub name: String,
    pub in_trash: bool,
}

#[derive(Debug, Clone)]
pub struct SnapEntry {
    pub name: String,
    pub size: u64,
}

pub struct TrashEntry {
    pub id: String,
    pub name: String,
    /// Unix seconds before which the trash keeps it (`deferred_deletion_delay`).
    pub deferment_end: i64,
}

/// Progress callback state: shared with librbd's thread for the length of one call.
struct CallbackState<'a> {
    progress: &'a dyn Progress,
    /// Image bytes, so object counts become bytes for the progress bar.
    bytes: u64,
    cancelled: AtomicBool,
    /// Cinder's `volume_copy_bps_limit` (0: none): the callback sleeps while the call is
    /// ahead of it, which holds librbd back, as a throttled copy would.
    bps_limit: u64,
    started: std::time::Instant,
    /// A panic in the callback (ember's progress code, called from librbd's thread): caught,
    /// since unwinding into C aborts the whole process, and kept as the call's error.
    panicked: std::sync::Mutex<Option<String>>,
}

/// Fault injection for tests: `EMBER_FAULT_PANIC_IN_PROGRESS=1` makes the progress callback
/// panic, as a bug in it would.
fn injected_panic() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("EMBER_FAULT_PANIC_IN_PROGRESS").is_some())
}

extern "C" fn on_progress(offset: u64, total: u64, arg: *mut c_void) -> c_int {
    #[allow(unsafe_code)]
    // SAFETY: `arg` is the &CallbackState passed to the librbd call below, alive for its
    // whole duration (librbd calls back only before it returns).
    let st = unsafe { &*(arg as *const CallbackState<'_>) };
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        report_progress(st, offset, total)
    }));
    match ran {
        Ok(rc) => rc,
        Err(p) => {
            let text = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            *st.panicked.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
            st.cancelled.store(true, Ordering::SeqCst);
            -libc::ECANCELED
        }
    }
}

fn report_progress(st: &CallbackState<'_>, offset: u64, total: u64) -> c_int {
    if injected_panic() {
        panic!("injected fault: panic in the librbd progress callback");
    }
    // librbd counts objects 0..total-1 and never reports `offset == total`.
    let done_objects = (offset + 1).min(total.max(1));
    let done = if total == 0 {
        st.bytes
    } else {
        (st.bytes as u128 * done_objects as u128 / total as u128) as u64
    };
    if st.bps_limit > 0 {
        let due = std::time::Duration::from_secs_f64(done as f64 / st.bps_limit as f64);
        if let Some(wait) = due.checked_sub(st.started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    if st.progress.update(done, st.bytes) {
        0
    } else {
        st.cancelled.store(true, Ordering::SeqCst);
        -libc::ECANCELED
    }
}

/// Outcome of a call that takes a progress callback.
pub enum Ran {
    Done,
    Cancelled,
    /// The callback panicked (the panic's text); the call was stopped.
    Panicked(String),
}

/// How a long call reports and is paced.
#[derive(Clone, Copy)]
pub struct Watch<'a> {
    pub progress: &'a dyn Progress,
    pub bps_limit: u64,
}

pub(super) fn with_progress(
    watch: Watch<'_>,
    bytes: u64,
    call: &'static str,
    f: impl FnOnce(ffi::ProgressFn, *mut c_void) -> c_int,
) -> Result<Ran, Errno> {
    let progress = watch.progress;
    let st = CallbackState {
        progress,
        bytes,
        cancelled: AtomicBool::new(false),
        bps_limit: watch.bps_limit,
        started: std::time::Instant::now(),
        panicked: std::sync::Mutex::new(None),
    };
    let rc = f(on_progress, &st as *const CallbackState<'_> as *mut c_void);
    if let Some(text) = st.panicked.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Ok(Ran::Panicked(text));
    }
    if st.cancelled.load(Ordering::SeqCst) {
        return Ok(Ran::Cancelled);
    }
    Errno::check(call, rc)?;
    progress.update(bytes, bytes);
    Ok(Ran::Done)
}

impl<'p> Image<'p> {
    #[allow(unsafe_code)]
    pub fn open(pool: &'p Pool, how: Open<'_>) -> Result<Image<'p>, Errno> {
        let mut raw: ffi::RbdImage = ptr::null_mut();
        let rc = match how {
            Open::Name(n) => {
                let n = cstr("rbd_open", n)?;
                // SAFETY: live ioctx, valid name, null snap = head; raw written on success.
                unsafe { ffi::rbd_open(pool.raw(), n.as_ptr(), &mut raw, ptr::null()) }
            }
            Open::AtSnap(n, s) => {
                let (n, s) = (cstr("rbd_open", n)?, cstr("rbd_open", s)?);
                // SAFETY: as above, opened at the named snapshot.
                unsafe { ffi::rbd_open(pool.raw(), n.as_ptr(), &mut raw, s.as_ptr()) }
            }
            Open::ReadOnly(n) => {
                let n = cstr("rbd_open_read_only", n)?;
                // SAFETY: as above.
                unsafe { ffi::rbd_open_read_only(pool.raw(), n.as_ptr(), &mut raw, ptr::null()) }
            }
            Open::Id(id) => {
                let id = cstr("rbd_open_by_id", id)?;
                // SAFETY: as above, by image id (trash entries have no name lookup).
                unsafe { ffi::rbd_open_by_id(pool.raw(), id.as_ptr(), &mut raw, ptr::null()) }
            }
            Open::IdAtSnap(id, s) => {
                let (id, s) = (cstr("rbd_open_by_id", id)?, cstr("rbd_open_by_id", s)?);
                // SAFETY: as above, at the named snapshot.
                unsafe { ffi::rbd_open_by_id(pool.raw(), id.as_ptr(), &mut raw, s.as_ptr()) }
            }
        };
        Errno::check("rbd_open", rc)?;
        Ok(Image { raw, _pool: pool })
    }

    #[allow(unsafe_code)]
    pub fn size(&self) -> Result<u64, Errno> {
        let mut size = 0u64;
        // SAFETY: open image; size written.
        Errno::check("rbd_get_size", unsafe {
            ffi::rbd_get_size(self.raw, &mut size)
        })?;
        Ok(size)
    }

    #[allow(unsafe_code)]
    pub fn features(&self) -> Result<u64, Errno> {
        let mut f = 0u64;
        // SAFETY: open image; f written.
        Errno::check("rbd_get_features", unsafe {
            ffi::rbd_get_features(self.raw, &mut f)
        })?;
        Ok(f)
    }

    #[allow(unsafe_code)]
    pub fn resize(&self, size: u64) -> Result<(), Errno> {
        // SAFETY: open image.
        Errno::check("rbd_resize", unsafe { ffi::rbd_resize(self.raw, size) }).map(drop)
    }

    /// The parent's snapshot name, if this image is a clone.
    #[allow(unsafe_code)]
    pub fn parent_snap(&self) -> Result<Option<String>, Errno> {
        // SAFETY: zeroed C structs are valid out-parameters (null pointers, zero ints).
        let mut image: ffi::LinkedImageSpec = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut snap: ffi::SnapSpec = unsafe { std::mem::zeroed() };
        // SAFETY: open image; on success librbd fills both specs, cleaned up below.
        let rc = unsafe { ffi::rbd_get_parent(self.raw, &mut image, &mut snap) };
        if rc == -libc::ENOENT {
            return Ok(None);
        }
        Errno::check("rbd_get_parent", rc)?;
        // SAFETY: librbd filled this list and cleans it up only after the copy.
        let name = unsafe { from_c(snap.name) };
        // SAFETY: filled by rbd_get_parent; cleaned once.
        unsafe {
            ffi::rbd_linked_image_spec_cleanup(&mut image);
            ffi::rbd_snap_spec_cleanup(&mut snap);
        }
        Ok(Some(name))
    }

    #[allow(unsafe_code)]
    pub fn snapshots(&self) -> Result<Vec<SnapEntry>, Errno> {
        let mut max: c_int = 16;
        loop {
            // SAFETY: zeroed SnapInfo entries are valid (null names); librbd fills up to max.
            let mut buf: Vec<ffi::SnapInfo> =
                (0..max).map(|_| unsafe { std::mem::zeroed() }).collect();
            // SAFETY: buf has `max` entries; on ERANGE max is set to the needed count.
            let rc = unsafe { ffi::rbd_snap_list(self.raw, buf.as_mut_ptr(), &mut max) };
            if rc == -libc::ERANGE {
                continue;
            }
            let n = Errno::check("rbd_snap_list", rc)? as usize;
            let out = buf[..n]
                .iter()
                .map(|s| SnapEntry {
                    // SAFETY: librbd filled this list and cleans it up only after the copy.
                    name: unsafe { from_c(s.name) },
                    size: s.size,
                })
                .collect();
            // SAFETY: frees the names librbd allocated in buf; once.
            unsafe { ffi::rbd_snap_list_end(buf.as_mut_ptr()) };
            return Ok(out);
        }
    }

    #[allow(unsafe_code)]
    pub fn snap_exists(&self, snap: &str) -> Result<bool, Errno> {
        let s = cstr("rbd_snap_exists", snap)?;
        let mut exists = false;
        // SAFETY: open image, valid name.
        Errno::check("rbd_snap_exists", unsafe {
            ffi::rbd_snap_exists(self.raw, s.as_ptr(), &mut exists)
        })?;
        Ok(exists)
    }

    /// Runs one librbd snapshot call that takes (image, name).
    #[allow(unsafe_code)]
    fn snap_call(
        &self,
        call: &'static str,
        f: unsafe extern "C" fn(ffi::RbdImage, *const std::os::raw::c_char) -> c_int,
        snap: &str,
    ) -> Result<(), Errno> {
        let s = cstr(call, snap)?;
        // SAFETY: `f` is one of librbd's (image, snap name) functions; open image, valid name.
        Errno::check(call, unsafe { f(self.raw, s.as_ptr()) }).map(drop)
    }

    pub fn snap_create(&self, snap: &str) -> Result<(), Errno> {
        self.snap_call("rbd_snap_create", ffi::rbd_snap_create, snap)
    }

    pub fn snap_remove(&self, snap: &str) -> Result<(), Errno> {
        self.snap_call("rbd_snap_remove", ffi::rbd_snap_remove, snap)
    }

    /// Puts the head back to snapshot `snap`'s content (`rbd snap rollback`).
    #[allow(unsafe_code)]
    pub fn snap_rollback(&self, snap: &str) -> Result<(), Errno> {
        let s = cstr("rbd_snap_rollback", snap)?;
        // SAFETY: open image, valid name.
        Errno::check("rbd_snap_rollback", unsafe {
            ffi::rbd_snap_rollback(self.raw, s.as_ptr())
        })
        .map(drop)
    }

    pub fn snap_protect(&self, snap: &str) -> Result<(), Errno> {
        self.snap_call("rbd_snap_protect", ffi::rbd_snap_protect, snap)
    }

    pub fn snap_unprotect(&self, snap: &str) -> Result<(), Errno> {
        self.snap_call("rbd_snap_unprotect", ffi::rbd_snap_unprotect, snap)
    }

    #[allow(unsafe_code)]
    pub fn snap_is_protected(&self, snap: &str) -> Result<bool, Errno> {
        let s = cstr("rbd_snap_is_protected", snap)?;
        let mut p: c_int = 0;
        // SAFETY: open image, valid name.
        Errno::check("rbd_snap_is_protected", unsafe {
            ffi::rbd_snap_is_protected(self.raw, s.as_ptr(), &mut p)
        })?;
        Ok(p != 0)
    }

    #[allow(unsafe_code)]
    pub fn snap_rename(&self, from: &str, to: &str) -> Result<(), Errno> {
        let (f, t) = (cstr("rbd_snap_rename", from)?, cstr("rbd_snap_rename", to)?);
        // SAFETY: open image, valid names.
        Errno::check("rbd_snap_rename", unsafe {
            ffi::rbd_snap_rename(self.raw, f.as_ptr(), t.as_ptr())
        })
        .map(drop)
    }

    /// Children of the snapshot this image was opened at ([`Open::AtSnap`]).
    #[allow(unsafe_code)]
    pub fn children(&self) -> Result<Vec<Child>, Errno> {
        let mut max: usize = 8;
        loop {
            // SAFETY: zeroed specs are valid out-parameters.
            let mut buf: Vec<ffi::LinkedImageSpec> =
                (0..max).map(|_| unsafe { std::mem::zeroed() }).collect();
            // SAFETY: buf has `max` entries; on ERANGE max holds the needed count.
            let rc = unsafe { ffi::rbd_list_children3(self.raw, buf.as_mut_ptr(), &mut max) };
            if rc == -libc::ERANGE {
                continue;
            }
            Errno::check("rbd_list_children3", rc)?;
            let out = buf[..max]
                .iter()
                .map(|c| Child {
                    // SAFETY: librbd filled this list and cleans it up only after the copy.
                    name: unsafe { from_c(c.image_name) },
                    in_trash: c.trash,
                })
                .collect();
            // SAFETY: frees what librbd allocated for the `max` filled entries; once.
            unsafe { ffi::rbd_linked_image_spec_list_cleanup(buf.as_mut_ptr(), max) };
            return Ok(out);
        }
    }

    #[allow(unsafe_code)]
    pub fn flatten(&self, watch: Watch<'_>) -> Result<Ran, Errno> {
        let bytes = self.size()?;
        with_progress(watch, bytes, "rbd_flatten_with_progress", |cb, arg| {
            // SAFETY: open image; `arg` outlives the call (with_progress's stack frame).
            unsafe { ffi::rbd_flatten_with_progress(self.raw, cb, arg) }
        })
    }

    /// Enables or disables features (`rbd feature enable|disable`).
    #[allow(unsafe_code)]
    pub fn update_features(&self, features: u64, enabled: bool) -> Result<(), Errno> {
        // SAFETY: open image.
        Errno::check("rbd_update_features", unsafe {
            ffi::rbd_update_features(self.raw, features, u8::from(enabled))
        })
        .map(drop)
    }

    /// The image's flags (`RBD_FLAG_OBJECT_MAP_INVALID`...).
    #[allow(unsafe_code)]
    pub fn flags(&self) -> Result<u64, Errno> {
        let mut f = 0u64;
        // SAFETY: open image; f written.
        Errno::check("rbd_get_flags", unsafe {
            ffi::rbd_get_flags(self.raw, &mut f)
        })?;
        Ok(f)
    }

    /// Rebuilds the object map from the objects that really exist (`rbd object-map rebuild`),
    /// dropping entries a crashed writer left marked as present. `watch` only carries the
    /// cancellation: the rebuild reports no bytes of its own.
    #[allow(unsafe_code)]
    pub fn rebuild_object_map(&self, watch: Watch<'_>) -> Result<Ran, Errno> {
        with_progress(watch, 0, "rbd_rebuild_object_map", |cb, arg| {
            // SAFETY: open image; `arg` outlives the call (with_progress's stack frame).
            unsafe { ffi::rbd_rebuild_object_map(self.raw, cb, arg) }
        })
    }
}

#[allow(unsafe_code)]
pub fn list(pool: &Pool) -> Result<Vec<String>, Errno> {
    let mut max: usize = 64;
    loop {
        // SAFETY: zeroed specs are valid out-parameters.
        let mut buf: Vec<ffi::ImageSpec> =
            (0..max).map(|_| unsafe { std::mem::zeroed() }).collect();
        // SAFETY: buf has `max` entries; on ERANGE max holds the needed count.
        let rc = unsafe { ffi::rbd_list2(pool.raw(), buf.as_mut_ptr(), &mut max) };
        if rc == -libc::ERANGE {
            continue;
        }
        Errno::check("rbd_list2", rc)?;
        // SAFETY: librbd filled this list and cleans it up only after the copy.
        let out = buf[..max]
            .iter()
            .map(|s| unsafe { from_c(s.name) })
            .collect();
        // SAFETY: frees the `max` filled entries; once.
        unsafe { ffi::rbd_image_spec_list_cleanup(buf.as_mut_ptr(), max) };
        return Ok(out);
    }
}

#[allow(unsafe_code)]
pub fn trash_list(pool: &Pool) -> Result<Vec<TrashEntry>, Errno> {
    let mut max: usize = 16;
    loop {
        // SAFETY: zeroed entries are valid out-parameters.
        let mut buf: Vec<ffi::TrashImageInfo> =
            (0..max).map(|_| unsafe { std::mem::zeroed() }).collect();
        // SAFETY: buf has `max` entries; on ERANGE max holds the needed count.
        let rc = unsafe { ffi::rbd_trash_list(pool.raw(), buf.as_mut_ptr(), &mut max) };
        if rc == -libc::ERANGE {
            continue;
        }
        let n = Errno::check("rbd_trash_list", rc)? as usize;
        let out = buf[..n]
            .iter()
            .map(|t| TrashEntry {
                // SAFETY: librbd filled this list and cleans it up only after the copy.
                id: unsafe { from_c(t.id) },
                // SAFETY: librbd filled this list and cleans it up only after the copy.
                name: unsafe { from_c(t.name) },
                deferment_end: t.deferment_end_time,
            })
            .collect();
        // SAFETY: frees the `n` filled entries; once.
        unsafe { ffi::rbd_trash_list_cleanup(buf.as_mut_ptr(), n) };
        return Ok(out);
    }
}

#[allow(unsafe_code)]
/// `order`: objects of 2^order bytes (Cinder's `rbd_store_chunk_size`; 22 is 4 MiB).
pub fn create(pool: &Pool, name: &str, size: u64, order: u32) -> Result<(), Errno> {
    let n = cstr("rbd_create", name)?;
    let mut order = order as c_int;
    // SAFETY: live ioctx, valid name; the features come from the cluster's
    // `rbd_default_features`, as Cinder does.
    Errno::check("rbd_create", unsafe {
        ffi::rbd_create(pool.raw(), n.as_ptr(), size, &mut order)
    })
    .map(drop)
}

#[allow(unsafe_code)]
pub fn clone(
    pool: &Pool,
    parent: &str,
    snap: &str,
    child: &str,
    features: u64,
) -> Result<(), Errno> {
    let (p, s, c) = (
        cstr("rbd_clone2", parent)?,
        cstr("rbd_clone2", snap)?,
        cstr("rbd_clone2", child)?,
    );
    let mut order: c_int = 0;
    // SAFETY: live ioctx for both sides, valid names; 0/0 striping = the parent's.
    Errno::check("rbd_clone2", unsafe {
        ffi::rbd_clone2(
            pool.raw(),
            p.as_ptr(),
            s.as_ptr(),
            pool.raw(),
            c.as_ptr(),
            features,
            &mut order,
            0,
            0,
        )
    })
    .map(drop)
}

#[allow(unsafe_code)]
pub fn remove(pool: &Pool, name: &str, bytes: u64, progress: &dyn Progress) -> Result<Ran, Errno> {
    let n = cstr("rbd_remove_with_progress", name)?;
    let watch = Watch {
        progress,
        bps_limit: 0,
    };
    with_progress(watch, bytes, "rbd_remove_with_progress", |cb, arg| {
        // SAFETY: live ioctx, valid name; `arg` outlives the call.
        unsafe { ffi::rbd_remove_with_progress(pool.raw(), n.as_ptr(), cb, arg) }
    })
}

#[allow(unsafe_code)]
pub fn rename(pool: &Pool, from: &str, to: &str) -> Result<(), Errno> {
    let (f, t) = (cstr("rbd_rename", from)?, cstr("rbd_rename", to)?);
    // SAFETY: live ioctx, valid names.
    Errno::check("rbd_rename", unsafe {
        ffi::rbd_rename(pool.raw(), f.as_ptr(), t.as_ptr())
    })
    .map(drop)
}

/// `delay_secs`: the trash keeps it at least this long (`deferred_deletion_delay`).
#[allow(unsafe_code)]
pub fn trash_move(pool: &Pool, name: &str, delay_secs: u64) -> Result<(), Errno> {
    let n = cstr("rbd_trash_move", name)?;
    // SAFETY: live ioctx, valid name.
    Errno::check("rbd_trash_move", unsafe {
        ffi::rbd_trash_move(pool.raw(), n.as_ptr(), delay_secs)
    })
    .map(drop)
}

#[allow(unsafe_code)]
pub fn trash_remove(pool: &Pool, id: &str) -> Result<(), Errno> {
    let i = cstr("rbd_trash_remove", id)?;
    // SAFETY: live ioctx, valid id; no force: refused while snapshots/children remain.
    Errno::check("rbd_trash_remove", unsafe {
        ffi::rbd_trash_remove(pool.raw(), i.as_ptr(), false)
    })
    .map(drop)
}
