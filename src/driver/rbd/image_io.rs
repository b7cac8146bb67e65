//! An open image's data: where it holds data (`rbd_diff_iterate2`), reads and writes, flush
//! and `rbd du`, for verify, migrations and backups. The handle itself is `image.rs`'s.

use std::os::raw::{c_int, c_void};
use std::ptr;

use super::conn::Errno;
use super::ffi;
use super::image::{Image, cstr};

/// Where an image's bytes are stored, when each object holds one plain run of them: object
/// `n` holds `[n * object_size, (n + 1) * object_size)`, in the pool the image was opened in.
#[derive(Debug, Clone)]
pub struct Objects {
    /// `rbd_data.<image id>`.
    pub prefix: String,
    pub object_size: u64,
}

impl Image<'_> {
    /// The image's objects, if they map to its bytes plainly (no striping of its own, no
    /// separate data pool); None otherwise.
    #[allow(unsafe_code)]
    pub fn objects(&self) -> Result<Option<Objects>, Errno> {
        if self.features()? & ffi::FEATURE_STRIPINGV2 != 0 {
            return Ok(None);
        }
        // Without striping v2 the stripe unit is the object size.
        let (mut unit, mut count) = (0u64, 0u64);
        // SAFETY: open image; out-parameters written.
        unsafe {
            Errno::check(
                "rbd_get_stripe_unit",
                ffi::rbd_get_stripe_unit(self.raw, &mut unit),
            )?;
            Errno::check(
                "rbd_get_stripe_count",
                ffi::rbd_get_stripe_count(self.raw, &mut count),
            )?;
        }
        // SAFETY: open image; the pool's ioctx is live while the image is.
        let (data_pool, pool) = unsafe {
            (
                ffi::rbd_get_data_pool_id(self.raw),
                ffi::rados_ioctx_get_id(self.pool().raw()),
            )
        };
        if count != 1 || unit == 0 || data_pool != pool {
            return Ok(None);
        }
        let mut buf = [0u8; 64];
        // SAFETY: open image; buf holds buf.len() bytes, NUL-terminated by librbd.
        Errno::check("rbd_get_block_name_prefix", unsafe {
            ffi::rbd_get_block_name_prefix(self.raw, buf.as_mut_ptr().cast(), buf.len())
        })?;
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        Ok(Some(Objects {
            prefix: String::from_utf8_lossy(&buf[..end]).into_owned(),
            object_size: unit,
        }))
    }

    /// The XXH64 (seed 0) of `len` bytes at `at` in object `number`, computed by the OSD that
    /// stores it (`rados_checksum`): nothing is read back through this host.
    #[allow(unsafe_code)]
    pub fn object_xxh64(
        &self,
        objects: &Objects,
        number: u64,
        at: u64,
        len: u64,
    ) -> Result<u64, Errno> {
        let oid = cstr(
            "rados_checksum",
            &format!("{}.{number:016x}", objects.prefix),
        )?;
        let init = 0u64.to_le_bytes();
        let mut out = [0u8; 12];
        // SAFETY: live ioctx; the name, init value and result buffer live across the call,
        // with their lengths.
        let rc = unsafe {
            ffi::rados_checksum(
                self.pool().raw(),
                oid.as_ptr(),
                ffi::CHECKSUM_XXHASH64,
                init.as_ptr().cast(),
                init.len(),
                len as usize,
                at,
                0,
                out.as_mut_ptr().cast(),
                out.len(),
            )
        };
        Errno::check("rados_checksum", rc)?;
        let n = u32::from_le_bytes([out[0], out[1], out[2], out[3]]);
        if n != 1 {
            return Err(Errno {
                call: "rados_checksum",
                code: libc::EIO,
            });
        }
        let mut h = [0u8; 8];
        h.copy_from_slice(&out[4..12]);
        Ok(u64::from_le_bytes(h))
    }

    /// Where the image holds data, its parent's included (`rbd diff --whole-object` off):
    /// `[start, end)` in offset order, adjacent extents merged. For `volume verify`.
    pub fn data_extents(&self) -> Result<Vec<(u64, u64)>, Errno> {
        self.diff_extents(None, true, false, true)
    }

    /// What changed between snapshot `since` and the point this image is open at (a later
    /// snapshot, or the head), holes punched since included: `rbd diff --from-snap`. For
    /// incremental backups.
    pub fn changed_since(&self, since: &str) -> Result<Vec<(u64, u64)>, Errno> {
        self.diff_extents(Some(since), true, false, false)
    }

    /// The extents `rbd_diff_iterate2` reports (only those that exist when `only_data`), merged.
    #[allow(unsafe_code)]
    fn diff_extents(
        &self,
        from: Option<&str>,
        include_parent: bool,
        whole_object: bool,
        only_data: bool,
    ) -> Result<Vec<(u64, u64)>, Errno> {
        struct Found {
            out: Vec<(u64, u64)>,
            only_data: bool,
        }
        extern "C" fn add(ofs: u64, len: usize, exists: c_int, arg: *mut c_void) -> c_int {
            #[allow(unsafe_code)]
            // SAFETY: arg is the &mut Found below, alive for the call.
            let found = unsafe { &mut *(arg as *mut Found) };
            if exists != 0 || !found.only_data {
                match found.out.last_mut() {
                    Some(last) if last.1 == ofs => last.1 += len as u64,
                    _ => found.out.push((ofs, ofs + len as u64)),
                }
            }
            0
        }
        let from = from.map(|s| cstr("rbd_diff_iterate2", s)).transpose()?;
        let size = self.size()?;
        let mut found = Found {
            out: vec![],
            only_data,
        };
        // SAFETY: open image; `from` outlives the call; the callback's state lives on this
        // frame for the whole call. (librbd reads the parent only in a diff from the image's
        // start, not from a snapshot.)
        Errno::check("rbd_diff_iterate2", unsafe {
            ffi::rbd_diff_iterate2(
                self.raw,
                from.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
                0,
                size,
                u8::from(include_parent),
                u8::from(whole_object),
                add,
                &mut found as *mut Found as *mut c_void,
            )
        })?;
        let mut out = found.out;
        out.sort_unstable();
        Ok(out)
    }

    /// Reads `buf.len()` bytes at `off`, as a client sees the image (through its parent).
    #[allow(unsafe_code)]
    pub fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), Errno> {
        let mut done = 0;
        while done < buf.len() {
            let rest = &mut buf[done..];
            // SAFETY: open image; rest is a live, writable buffer of rest.len() bytes.
            let n = unsafe {
                ffi::rbd_read2(
                    self.raw,
                    off + done as u64,
                    rest.len(),
                    rest.as_mut_ptr().cast(),
                    0,
                )
            };
            if n < 0 {
                return Err(Errno {
                    call: "rbd_read2",
                    code: -(n as c_int),
                });
            }
            if n == 0 {
                rest.fill(0); // past the end
                return Ok(());
            }
            done += n as usize;
        }
        Ok(())
    }

    /// Starts writing `buf` at `off` (`rbd_aio_write`); [`InFlight::wait`] says how it ended.
    #[allow(unsafe_code)]
    pub fn aio_write(&self, buf: Vec<u8>, off: u64) -> Result<InFlight, Errno> {
        let mut c: ffi::RbdCompletion = ptr::null_mut();
        // SAFETY: out-pointer to a local; no callback.
        Errno::check("rbd_aio_create_completion", unsafe {
            ffi::rbd_aio_create_completion(ptr::null_mut(), None, &mut c)
        })?;
        // The completion is released on every path from here (InFlight's drop).
        let w = InFlight { c, buf, off };
        // SAFETY: open image; w.buf lives in w, which waits for the completion before it lets
        // the buffer go (drop).
        let rc =
            unsafe { ffi::rbd_aio_write(self.raw, off, w.buf.len(), w.buf.as_ptr().cast(), w.c) };
        if rc < 0 {
            // Not started: nothing to wait for.
            // SAFETY: created above, never submitted.
            unsafe { ffi::rbd_aio_release(w.c) };
            std::mem::forget(w);
            return Err(Errno {
                call: "rbd_aio_write",
                code: -rc,
            });
        }
        Ok(w)
    }

    /// Writes all of `buf` at `off` (a migration's copy into its new image).
    #[allow(unsafe_code)]
    pub fn write_at(&self, buf: &[u8], off: u64) -> Result<(), Errno> {
        let mut done = 0;
        while done < buf.len() {
            let rest = &buf[done..];
            // SAFETY: open image; rest is a live buffer of rest.len() bytes.
            let n = unsafe {
                ffi::rbd_write2(
                    self.raw,
                    off + done as u64,
                    rest.len(),
                    rest.as_ptr().cast(),
                    0,
                )
            };
            if n <= 0 {
                return Err(Errno {
                    call: "rbd_write2",
                    code: if n == 0 { libc::EIO } else { -(n as c_int) },
                });
            }
            done += n as usize;
        }
        Ok(())
    }

    /// Makes `len` bytes at `off` read as zeros (`rbd_write_zeroes`: a partial object is
    /// zeroed, never skipped as a partial discard may be).
    #[allow(unsafe_code)]
    pub fn write_zeroes(&self, off: u64, len: u64) -> Result<(), Errno> {
        // SAFETY: open image; no buffer.
        let n = unsafe { ffi::rbd_write_zeroes(self.raw, off, len as usize, 0, 0) };
        if n < 0 {
            return Err(Errno {
                call: "rbd_write_zeroes",
                code: -(n as c_int),
            });
        }
        Ok(())
    }

    /// Waits until what was written is stable (`rbd_flush`).
    #[allow(unsafe_code)]
    pub fn flush(&self) -> Result<(), Errno> {
        // SAFETY: open image.
        Errno::check("rbd_flush", unsafe { ffi::rbd_flush(self.raw) }).map(drop)
    }

    /// Bytes allocated in the image itself (not its parent), per whole object: `rbd du`.
    pub fn used_bytes(&self) -> Result<u64, Errno> {
        Ok(self
            .diff_extents(None, false, true, true)?
            .iter()
            .map(|(a, b)| b - a)
            .sum())
    }
}

/// A write librbd is doing: its completion, and the buffer librbd reads from until then.
pub struct InFlight {
    c: ffi::RbdCompletion,
    buf: Vec<u8>,
    off: u64,
}

impl InFlight {
    /// Where it writes.
    pub fn offset(&self) -> u64 {
        self.off
    }

    /// Waits until the write ended; an error or a short write is its errno.
    #[allow(unsafe_code)]
    pub fn wait(self) -> Result<(), Errno> {
        // SAFETY: a submitted completion, released once (drop, after this).
        let n = unsafe {
            ffi::rbd_aio_wait_for_complete(self.c);
            ffi::rbd_aio_get_return_value(self.c)
        };
        if n < 0 {
            return Err(Errno {
                call: "rbd_aio_write",
                code: -(n as c_int),
            });
        }
        if (n as usize) < self.buf.len() && n != 0 {
            return Err(Errno {
                call: "rbd_aio_write",
                code: libc::EIO,
            });
        }
        Ok(())
    }
}

impl Drop for InFlight {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the buffer may be freed only once librbd is done with it: wait (again, if
        // `wait` did: returns at once), then release the completion, once.
        unsafe {
            ffi::rbd_aio_wait_for_complete(self.c);
            ffi::rbd_aio_release(self.c);
        }
    }
}
