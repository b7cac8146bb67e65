//! Live migration between two pools of one cluster: librbd's `rbd_migration_prepare`, then
//! `execute` (the copy, with progress, while clients could already use the new image), then
//! `commit` (the source goes); `abort` rolls back. Snapshots and the parent link move with the
//! image, as Ceph documents.
//!
//! Every run starts from what librbd says the migration's state is (`rbd_migration_status`),
//! never from a guess: not migrating → prepare; prepared or executing → execute (again);
//! executed → commit. An image gone from the source pool but present, not migrating, in the
//! target pool was committed by an earlier run. Held to the source backend's
//! `volume_copy_bps_limit` like a flatten. Only an operator's cancel aborts: a run that
//! stops because its service stops or a peer took the job over leaves the migration for the
//! next run to carry on.

use std::os::raw::c_int;

use super::RbdDriver;
use super::conn::{Errno, Pool};
use super::ffi;
use super::image::{Image, Open, Ran, Watch, cstr, with_progress};
use crate::driver::{DriverError, LiveTarget, Progress, volume_image};

/// Where a migration stands, as librbd says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No migration: the image is where it was.
    None,
    Prepared,
    Executing,
    Executed,
    /// Preparing, aborting or failed: librbd's own word for it.
    Other(c_int),
}

/// `rbd_migration_status` of `name` in `pool`: EINVAL means the image is not migrating.
#[allow(unsafe_code)]
fn status(pool: &Pool, name: &str) -> Result<State, Errno> {
    let n = cstr("rbd_migration_status", name)?;
    // SAFETY: a zeroed status is a valid out-parameter (null strings, zero ids).
    let mut st: ffi::MigrationStatus = unsafe { std::mem::zeroed() };
    // SAFETY: live ioctx, valid name; librbd fills `st` and we clean it up below.
    let rc = unsafe {
        ffi::rbd_migration_status(
            pool.raw(),
            n.as_ptr(),
            &mut st,
            std::mem::size_of::<ffi::MigrationStatus>(),
        )
    };
    if rc == -libc::EINVAL {
        return Ok(State::None);
    }
    Errno::check("rbd_migration_status", rc)?;
    let state = st.state;
    // SAFETY: filled by rbd_migration_status above, cleaned up once.
    unsafe { ffi::rbd_migration_status_cleanup(&mut st) };
    Ok(match state {
        ffi::MIGRATION_PREPARED => State::Prepared,
        ffi::MIGRATION_EXECUTING => State::Executing,
        ffi::MIGRATION_EXECUTED => State::Executed,
        s => State::Other(s),
    })
}

impl RbdDriver {
    /// This backend's cluster and pool, for a live migration into it.
    pub(super) fn live_target_of(&self) -> Option<LiveTarget> {
        let pool = self.pool().ok()?;
        let fsid = pool.cluster().fsid().ok()?;
        Some(LiveTarget {
            cluster: fsid,
            pool: self.cfg.pool.clone(),
        })
    }

    /// Whether a live migration of the volume is under way in this backend's pool.
    pub(super) fn live_migration_of(&self, volume_id: &str) -> Result<bool, DriverError> {
        let pool = self.pool()?;
        let name = volume_image(volume_id);
        match status(&pool, &name) {
            Ok(State::None) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) if e.code == libc::ENOENT => Ok(false),
            Err(e) => Err(self.fail("migrate", &name, e)),
        }
    }

    /// Moves the volume's image to `to`'s pool, from wherever an earlier run left it.
    pub(super) fn live_migrate_image(
        &self,
        volume_id: &str,
        to: &LiveTarget,
        progress: &dyn Progress,
    ) -> Result<(), DriverError> {
        // Held to `volume_copy_bps_limit` in the progress callback, on a client of its own
        // (see `flatten.rs` for why a pause must not hold the shared client's threads).
        let src = self.paced_pool("migrate", self.bps_limit, progress)?;
        let name = volume_image(volume_id);
        let spec = format!("{}/{name}", to.pool);
        let fail = |e: Errno| self.fail("migrate", &spec, e);
        if src.cluster().fsid().map_err(fail)? != to.cluster {
            return Err(self.io(
                "migrate",
                format!(
                    "pool {} is on another cluster: a live migration stays within one",
                    to.pool
                ),
            ));
        }
        let dst = src.sibling(&to.pool).map_err(|e| {
            if e.code == libc::EACCES || e.code == libc::EPERM || e.code == libc::ENOENT {
                DriverError::Setup {
                    backend: self.backend.clone(),
                    op: "migrate",
                    cause: format!(
                        "client.{} cannot open pool {} ({})",
                        self.user(),
                        to.pool,
                        e.describe()
                    ),
                    fix: format!(
                        "give client.{} `profile rbd pool={}` as well (ceph auth caps), or create the pool",
                        self.user(),
                        to.pool
                    ),
                }
            } else {
                fail(e)
            }
        })?;
        let mut state = match status(&src, &name) {
            Ok(s) => s,
            // Gone from the source pool: committed by an earlier run if the target holds it.
            Err(e) if e.code == libc::ENOENT => {
                return match status(&dst, &name) {
                    Ok(State::None) => Ok(()),
                    Ok(s) => self.carry_on(&dst, &name, s, progress),
                    Err(e) => Err(fail(e)),
                };
            }
            Err(e) => return Err(fail(e)),
        };
        if state == State::None {
            // The image keeps its name in the target pool.
            let n = cstr("rbd_migration_prepare", &name).map_err(fail)?;
            let mut opts: *mut std::os::raw::c_void = std::ptr::null_mut();
            #[allow(unsafe_code)]
            // SAFETY: opts is created here, passed to one call, destroyed after it; both
            // ioctxs are live and the names valid.
            let rc = unsafe {
                ffi::rbd_image_options_create(&mut opts);
                let rc =
                    ffi::rbd_migration_prepare(src.raw(), n.as_ptr(), dst.raw(), n.as_ptr(), opts);
                ffi::rbd_image_options_destroy(opts);
                rc
            };
            Errno::check("rbd_migration_prepare", rc).map_err(fail)?;
            state = State::Prepared;
        }
        self.carry_on(&dst, &name, state, progress)
    }

    /// Execute and commit from `state`, with the target pool's context.
    fn carry_on(
        &self,
        dst: &Pool,
        name: &str,
        mut state: State,
        progress: &dyn Progress,
    ) -> Result<(), DriverError> {
        let spec = name.to_string();
        let fail = |e: Errno| self.fail("migrate", &spec, e);
        let n = cstr("rbd_migration_execute", name).map_err(fail)?;
        let bytes = Image::open(dst, Open::ReadOnly(name))
            .and_then(|i| i.size())
            .unwrap_or(0);
        let watch = || Watch {
            progress,
            bps_limit: self.bps_limit,
        };
        if matches!(state, State::Prepared | State::Executing) {
            let ran = with_progress(watch(), bytes, "rbd_migration_execute", |cb, arg| {
                #[allow(unsafe_code)]
                // SAFETY: live ioctx, valid name; `arg` outlives the call (with_progress).
                unsafe {
                    ffi::rbd_migration_execute_with_progress(dst.raw(), n.as_ptr(), cb, arg)
                }
            });
            match ran {
                Ok(Ran::Done) => state = State::Executed,
                Ok(Ran::Cancelled) | Ok(Ran::Panicked(_)) | Err(_) => {
                    let why = match &ran {
                        Err(e) => Some(fail(*e)),
                        Ok(Ran::Panicked(p)) => {
                            Some(self.io("migrate", format!("progress callback panicked: {p}")))
                        }
                        _ => None,
                    };
                    // Only an operator's cancel (or a failure) rolls back; a hand-back or a
                    // lost claim leaves it for the next run.
                    if why.is_some() || progress.undo_on_stop() {
                        self.abort(dst, name)?;
                    }
                    return Err(why.unwrap_or_else(|| self.cancelled("migrate")));
                }
            }
        }
        if state != State::Executed {
            return Err(self.io(
                "migrate",
                format!("{name}: the migration is in a state ember does not resume ({state:?}); see `rbd migration status`"),
            ));
        }
        // Commit removes the source: unpaced (its progress is not the copy's).
        let quick = Watch {
            progress,
            bps_limit: 0,
        };
        let ran = with_progress(quick, bytes, "rbd_migration_commit", |cb, arg| {
            #[allow(unsafe_code)]
            // SAFETY: as above.
            unsafe {
                ffi::rbd_migration_commit_with_progress(dst.raw(), n.as_ptr(), cb, arg)
            }
        })
        .map_err(fail)?;
        match ran {
            Ran::Done => Ok(()),
            // Commit is short and cannot be undone: a stop during it is finished next run.
            _ => Err(self.cancelled("migrate")),
        }
    }

    fn abort(&self, dst: &Pool, name: &str) -> Result<(), DriverError> {
        let n = cstr("rbd_migration_abort", name).map_err(|e| self.fail("migrate", name, e))?;
        let quiet = crate::driver::NoProgress;
        let ran = with_progress(
            Watch {
                progress: &quiet,
                bps_limit: 0,
            },
            0,
            "rbd_migration_abort",
            |cb, arg| {
                #[allow(unsafe_code)]
                // SAFETY: live ioctx, valid name; `arg` outlives the call.
                unsafe {
                    ffi::rbd_migration_abort_with_progress(dst.raw(), n.as_ptr(), cb, arg)
                }
            },
        )
        .map_err(|e| self.fail("migrate abort", name, e))?;
        match ran {
            Ran::Done => Ok(()),
            _ => Err(self.io("migrate abort", format!("{name}: abort did not finish"))),
        }
    }
}
