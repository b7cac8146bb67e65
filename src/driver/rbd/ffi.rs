//! The librbd C functions ember calls, declared by hand from Pacific's `rbd/librbd.h`
//! (LIBRBD_VER 1.16): the `ceph` crate binds librados only. Only what the driver uses is here;
//! the safe wrappers are in `image.rs` and `conn.rs`.

use std::os::raw::{c_char, c_int, c_void};

pub use ceph::rados::{rados_ioctx_t, rados_t};

pub type RbdImage = *mut c_void;

/// `rbd_completion_t`: one asynchronous request.
pub type RbdCompletion = *mut c_void;

/// `rbd_callback_t` (unused: ember waits on the completion instead).
pub type CompletionFn = extern "C" fn(c: RbdCompletion, arg: *mut c_void);

/// `int (*librbd_progress_fn_t)(uint64_t offset, uint64_t total, void *ptr)`; a non-zero
/// return aborts the operation.
pub type ProgressFn = extern "C" fn(offset: u64, total: u64, arg: *mut c_void) -> c_int;

/// `rbd_diff_iterate2`'s callback: (offset, length, exists, arg).
pub type DiffFn = extern "C" fn(offset: u64, len: usize, exists: c_int, arg: *mut c_void) -> c_int;

/// `LIBRADOS_CHECKSUM_TYPE_XXHASH64`.
pub const CHECKSUM_XXHASH64: c_int = 1;

/// `RBD_FEATURE_LAYERING` (rbd/features.h): clones need it on the parent.
pub const FEATURE_LAYERING: u64 = 1;
/// `RBD_FEATURE_STRIPINGV2`: a stripe unit and count of the image's own (without it, the
/// stripe unit is the object size and the count 1).
pub const FEATURE_STRIPINGV2: u64 = 1 << 1;
/// `RBD_FEATURE_OBJECT_MAP`: which objects exist, kept by librbd (and trusted by flatten).
pub const FEATURE_OBJECT_MAP: u64 = 1 << 3;
/// `RBD_FEATURE_FAST_DIFF`: needs the object map; disabled and enabled with it.
pub const FEATURE_FAST_DIFF: u64 = 1 << 4;
/// `RBD_FLAG_OBJECT_MAP_INVALID`: librbd does not trust the map (a rebuild clears it).
pub const FLAG_OBJECT_MAP_INVALID: u64 = 1;

/// `rbd_image_migration_state_t`.
pub const MIGRATION_PREPARED: c_int = 2;
pub const MIGRATION_EXECUTING: c_int = 3;
pub const MIGRATION_EXECUTED: c_int = 4;

/// `rbd_image_migration_status_t`: strings owned by librbd until
/// `rbd_migration_status_cleanup`.
#[repr(C)]
pub struct MigrationStatus {
    pub source_pool_id: i64,
    pub source_pool_namespace: *mut c_char,
    pub source_image_name: *mut c_char,
    pub source_image_id: *mut c_char,
    pub dest_pool_id: i64,
    pub dest_pool_namespace: *mut c_char,
    pub dest_image_name: *mut c_char,
    pub dest_image_id: *mut c_char,
    pub state: c_int,
    pub state_description: *mut c_char,
}

#[repr(C)]
pub struct ImageSpec {
    pub id: *mut c_char,
    pub name: *mut c_char,
}

#[repr(C)]
pub struct LinkedImageSpec {
    pub pool_id: i64,
    pub pool_name: *mut c_char,
    pub pool_namespace: *mut c_char,
    pub image_id: *mut c_char,
    pub image_name: *mut c_char,
    pub trash: bool,
}

#[repr(C)]
pub struct SnapSpec {
    pub id: u64,
    /// `rbd_snap_namespace_type_t`, a C enum (int).
    pub namespace_type: c_int,
    pub name: *mut c_char,
}

#[repr(C)]
pub struct SnapInfo {
    pub id: u64,
    pub size: u64,
    pub name: *const c_char,
}

/// `rbd_image_watcher_t`: one client watching an image's header (it has the image open).
#[repr(C)]
pub struct ImageWatcher {
    pub addr: *mut c_char,
    pub id: i64,
    pub cookie: u64,
}

#[repr(C)]
pub struct TrashImageInfo {
    pub id: *mut c_char,
    pub name: *mut c_char,
    /// `rbd_trash_image_source_t`, a C enum (int).
    pub source: c_int,
    pub deletion_time: libc::time_t,
    pub deferment_end_time: libc::time_t,
}

// SAFETY: the signatures are copied from Pacific's rbd/librbd.h (LIBRBD_VER 1.16.0).
#[allow(unsafe_code)]
#[link(name = "rbd", kind = "dylib")]
unsafe extern "C" {
    pub fn rbd_list2(io: rados_ioctx_t, images: *mut ImageSpec, max: *mut usize) -> c_int;
    pub fn rbd_image_spec_list_cleanup(images: *mut ImageSpec, n: usize);
    pub fn rbd_create(
        io: rados_ioctx_t,
        name: *const c_char,
        size: u64,
        order: *mut c_int,
    ) -> c_int;
    pub fn rbd_clone2(
        p_ioctx: rados_ioctx_t,
        p_name: *const c_char,
        p_snapname: *const c_char,
        c_ioctx: rados_ioctx_t,
        c_name: *const c_char,
        features: u64,
        c_order: *mut c_int,
        stripe_unit: u64,
        stripe_count: c_int,
    ) -> c_int;
    pub fn rbd_remove_with_progress(
        io: rados_ioctx_t,
        name: *const c_char,
        cb: ProgressFn,
        arg: *mut c_void,
    ) -> c_int;
    pub fn rbd_rename(io: rados_ioctx_t, src: *const c_char, dst: *const c_char) -> c_int;
    pub fn rbd_trash_move(io: rados_ioctx_t, name: *const c_char, delay: u64) -> c_int;
    pub fn rbd_trash_list(io: rados_ioctx_t, entries: *mut TrashImageInfo, n: *mut usize) -> c_int;
    pub fn rbd_trash_list_cleanup(entries: *mut TrashImageInfo, n: usize);
    pub fn rbd_trash_remove(io: rados_ioctx_t, id: *const c_char, force: bool) -> c_int;

    pub fn rbd_open(
        io: rados_ioctx_t,
        name: *const c_char,
        image: *mut RbdImage,
        snap: *const c_char,
    ) -> c_int;
    pub fn rbd_open_by_id(
        io: rados_ioctx_t,
        id: *const c_char,
        image: *mut RbdImage,
        snap: *const c_char,
    ) -> c_int;
    pub fn rbd_open_read_only(
        io: rados_ioctx_t,
        name: *const c_char,
        image: *mut RbdImage,
        snap: *const c_char,
    ) -> c_int;
    pub fn rbd_close(image: RbdImage) -> c_int;
    pub fn rbd_resize(image: RbdImage, size: u64) -> c_int;
    pub fn rbd_get_size(image: RbdImage, size: *mut u64) -> c_int;
    pub fn rbd_get_features(image: RbdImage, features: *mut u64) -> c_int;
    pub fn rbd_get_parent(
        image: RbdImage,
        parent: *mut LinkedImageSpec,
        snap: *mut SnapSpec,
    ) -> c_int;
    pub fn rbd_linked_image_spec_cleanup(spec: *mut LinkedImageSpec);
    pub fn rbd_linked_image_spec_list_cleanup(specs: *mut LinkedImageSpec, n: usize);
    pub fn rbd_snap_spec_cleanup(spec: *mut SnapSpec);
    pub fn rbd_list_children3(
        image: RbdImage,
        images: *mut LinkedImageSpec,
        max: *mut usize,
    ) -> c_int;

    pub fn rbd_snap_list(image: RbdImage, snaps: *mut SnapInfo, max: *mut c_int) -> c_int;
    pub fn rbd_snap_list_end(snaps: *mut SnapInfo);
    pub fn rbd_snap_exists(image: RbdImage, name: *const c_char, exists: *mut bool) -> c_int;
    pub fn rbd_snap_create(image: RbdImage, name: *const c_char) -> c_int;
    pub fn rbd_snap_remove(image: RbdImage, name: *const c_char) -> c_int;
    pub fn rbd_snap_rename(image: RbdImage, from: *const c_char, to: *const c_char) -> c_int;
    pub fn rbd_snap_protect(image: RbdImage, name: *const c_char) -> c_int;
    pub fn rbd_snap_unprotect(image: RbdImage, name: *const c_char) -> c_int;
    pub fn rbd_snap_is_protected(
        image: RbdImage,
        name: *const c_char,
        protected: *mut c_int,
    ) -> c_int;
    pub fn rbd_watchers_list(
        image: RbdImage,
        watchers: *mut ImageWatcher,
        max: *mut usize,
    ) -> c_int;
    pub fn rbd_watchers_list_cleanup(watchers: *mut ImageWatcher, n: usize);
    /// Advisory lockers and librbd's own exclusive lock (cookie `auto <n>`): clients, cookies
    /// and addresses as NUL-separated lists; ERANGE with the lengths filled in when short.
    pub fn rbd_list_lockers(
        image: RbdImage,
        exclusive: *mut c_int,
        tag: *mut c_char,
        tag_len: *mut usize,
        clients: *mut c_char,
        clients_len: *mut usize,
        cookies: *mut c_char,
        cookies_len: *mut usize,
        addrs: *mut c_char,
        addrs_len: *mut usize,
    ) -> isize;
    pub fn rbd_break_lock(image: RbdImage, client: *const c_char, cookie: *const c_char) -> c_int;
    pub fn rbd_update_features(image: RbdImage, features: u64, enabled: u8) -> c_int;
    pub fn rbd_get_flags(image: RbdImage, flags: *mut u64) -> c_int;
    pub fn rbd_rebuild_object_map(image: RbdImage, cb: ProgressFn, arg: *mut c_void) -> c_int;
    pub fn rbd_flatten_with_progress(image: RbdImage, cb: ProgressFn, arg: *mut c_void) -> c_int;
    /// Reads `len` bytes at `ofs` (zeros where neither the image nor its parent hold data);
    /// returns the bytes read or a negative errno.
    pub fn rbd_read2(
        image: RbdImage,
        ofs: u64,
        len: usize,
        buf: *mut c_char,
        op_flags: c_int,
    ) -> isize;
    /// Writes `len` bytes at `ofs`; returns the bytes written or a negative errno.
    pub fn rbd_write2(
        image: RbdImage,
        ofs: u64,
        len: usize,
        buf: *const c_char,
        op_flags: c_int,
    ) -> isize;
    /// Makes `len` bytes at `ofs` read as zeros (whole objects are removed); returns the
    /// bytes zeroed or a negative errno. Unlike `rbd_discard`, never skips a partial range.
    pub fn rbd_write_zeroes(
        image: RbdImage,
        ofs: u64,
        len: usize,
        zero_flags: c_int,
        op_flags: c_int,
    ) -> isize;
    /// Starts writing `len` bytes of `buf` at `off`; `buf` must stay alive until `c` completes.
    pub fn rbd_aio_write(
        image: RbdImage,
        off: u64,
        len: usize,
        buf: *const c_char,
        c: RbdCompletion,
    ) -> c_int;
    pub fn rbd_aio_create_completion(
        cb_arg: *mut c_void,
        complete_cb: Option<CompletionFn>,
        c: *mut RbdCompletion,
    ) -> c_int;
    pub fn rbd_aio_wait_for_complete(c: RbdCompletion) -> c_int;
    /// The request's result: bytes written, or a negative errno.
    pub fn rbd_aio_get_return_value(c: RbdCompletion) -> isize;
    pub fn rbd_aio_release(c: RbdCompletion);
    /// Puts the image's head back to what snapshot `snapname` holds.
    pub fn rbd_snap_rollback(image: RbdImage, snapname: *const c_char) -> c_int;
    /// Waits until every write so far is stable on the OSDs.
    pub fn rbd_flush(image: RbdImage) -> c_int;
    pub fn rbd_diff_iterate2(
        image: RbdImage,
        from_snap: *const c_char,
        ofs: u64,
        len: u64,
        include_parent: u8,
        whole_object: u8,
        cb: DiffFn,
        arg: *mut c_void,
    ) -> c_int;

    // Live migration (librbd.h, Pacific): prepare links the two images, execute copies with
    // progress, commit removes the source, abort rolls back.
    pub fn rbd_image_options_create(opts: *mut *mut c_void);
    pub fn rbd_image_options_destroy(opts: *mut c_void);
    pub fn rbd_migration_prepare(
        io: rados_ioctx_t,
        image_name: *const c_char,
        dest_io: rados_ioctx_t,
        dest_image_name: *const c_char,
        opts: *mut c_void,
    ) -> c_int;
    pub fn rbd_migration_execute_with_progress(
        io: rados_ioctx_t,
        image_name: *const c_char,
        cb: ProgressFn,
        arg: *mut c_void,
    ) -> c_int;
    pub fn rbd_migration_commit_with_progress(
        io: rados_ioctx_t,
        image_name: *const c_char,
        cb: ProgressFn,
        arg: *mut c_void,
    ) -> c_int;
    pub fn rbd_migration_abort_with_progress(
        io: rados_ioctx_t,
        image_name: *const c_char,
        cb: ProgressFn,
        arg: *mut c_void,
    ) -> c_int;
    pub fn rbd_migration_status(
        io: rados_ioctx_t,
        image_name: *const c_char,
        status: *mut MigrationStatus,
        status_size: usize,
    ) -> c_int;
    pub fn rbd_migration_status_cleanup(status: *mut MigrationStatus);

    // Where an image's data objects are: `rbd_data.<id>.<object number, 16 hex digits>`.
    pub fn rbd_get_block_name_prefix(image: RbdImage, prefix: *mut c_char, len: usize) -> c_int;
    pub fn rbd_get_stripe_unit(image: RbdImage, stripe_unit: *mut u64) -> c_int;
    pub fn rbd_get_stripe_count(image: RbdImage, stripe_count: *mut u64) -> c_int;
    pub fn rbd_get_data_pool_id(image: RbdImage) -> i64;

    // librados (the `ceph` crate binds only the deprecated `rados_blacklist_add`).
    /// This client's addresses (`v2:10.0.0.5:0/123456`), `strdup`ed: freed with `free`.
    pub fn rados_getaddrs(cluster: rados_t, addrs: *mut *mut c_char) -> c_int;
    pub fn rados_ioctx_get_id(io: rados_ioctx_t) -> i64;
    /// Checksums of an object's bytes, computed by its OSD (`type` 1: XXHASH64, le64 init
    /// value); the result is a le32 count, then each checksum (le64).
    pub fn rados_checksum(
        io: rados_ioctx_t,
        oid: *const c_char,
        kind: c_int,
        init_value: *const c_char,
        init_value_len: usize,
        len: usize,
        off: u64,
        chunk_size: usize,
        checksum: *mut c_char,
        checksum_len: usize,
    ) -> c_int;
    /// Adds a client address to the OSD blocklist for `expire_seconds` (0: Ceph's default).
    pub fn rados_blocklist_add(
        cluster: rados_t,
        client_address: *mut c_char,
        expire_seconds: u32,
    ) -> c_int;
}
