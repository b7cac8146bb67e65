//! A librados connection and an I/O context on one pool, as owned, thread-safe handles.
//!
//! The `ceph` crate's `connect_to_ceph` cannot set options between `rados_create` and
//! `rados_connect`, and its `Rados` is not `Send`; ember needs both (timeouts so that no call
//! waits forever, and a connection shared by the backend's storage threads). So the connection
//! is made here with the crate's raw librados bindings. librados handles are thread-safe; what
//! the types guarantee is the order of teardown: a [`Pool`] holds an `Arc` of its [`Cluster`],
//! so the I/O context is destroyed before the connection is shut down, and never used after.

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::path::PathBuf;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use ceph::rados::{
    rados_buffer_free, rados_conf_read_file, rados_conf_set, rados_connect, rados_create2,
    rados_ioctx_create, rados_ioctx_destroy, rados_ioctx_t, rados_mon_command, rados_shutdown,
    rados_t,
};

/// A negative errno from librados/librbd, with the call that returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno {
    pub call: &'static str,
    pub code: i32,
}

impl Errno {
    pub fn check(call: &'static str, rc: i32) -> Result<i32, Errno> {
        if rc < 0 {
            Err(Errno { call, code: -rc })
        } else {
            Ok(rc)
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} failed: {} ({})",
            self.call,
            std::io::Error::from_raw_os_error(self.code),
            errno_name(self.code)
        )
    }
}

fn errno_name(code: i32) -> &'static str {
    match code {
        libc::ENOENT => "ENOENT",
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EDQUOT => "EDQUOT",
        libc::ESHUTDOWN => "ESHUTDOWN",
        libc::ENOTCONN => "ENOTCONN",
        libc::ECANCELED => "ECANCELED",
        libc::ERESTART => "ERESTART",
        _ => "errno",
    }
}

/// What a connection needs, from the backend's section.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub cluster_name: String,
    /// Without the `client.` prefix, as `rbd_user` is written.
    pub user: String,
    /// None: librados' default search ($CEPH_CONF, /etc/ceph/$cluster.conf, ...).
    pub conf: Option<PathBuf>,
    pub keyring: Option<PathBuf>,
    /// Bounds the connect and every monitor command (`client_mount_timeout`,
    /// `rados_mon_op_timeout`).
    pub timeout: Duration,
    /// Bounds each OSD operation (`rados_osd_op_timeout`): an object copy in a flatten is one
    /// such operation, so a stopped OSD fails the call instead of hanging it.
    pub op_timeout: Duration,
}

/// A connected cluster handle; shut down on drop.
#[derive(Debug)]
pub struct Cluster {
    handle: rados_t,
}

// SAFETY: a rados_t is documented thread-safe (librados serialises internally); `Cluster`
// never hands out the raw pointer beyond its own methods and `Pool`, which keeps it alive.
#[allow(unsafe_code)]
unsafe impl Send for Cluster {}
// SAFETY: as above; all methods take &self and librados allows concurrent calls.
#[allow(unsafe_code)]
unsafe impl Sync for Cluster {}

impl Drop for Cluster {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the handle came from rados_create2 and is shut down exactly once; every Pool
        // holds an Arc<Cluster>, so no ioctx outlives it.
        unsafe { rados_shutdown(self.handle) }
    }
}

fn cstring(what: &'static str, s: &str) -> Result<CString, Errno> {
    CString::new(s).map_err(|_| Errno {
        call: what,
        code: libc::EINVAL,
    })
}

impl Cluster {
    /// Creates, configures and connects a handle. Fails within `opts.timeout` when no monitor
    /// answers (librados' own default would be 300 s).
    #[allow(unsafe_code)]
    pub fn connect(opts: &ConnectOptions) -> Result<Cluster, Errno> {
        let cluster = cstring("rados_create2", &opts.cluster_name)?;
        let name = cstring("rados_create2", &format!("client.{}", opts.user))?;
        let mut handle: rados_t = ptr::null_mut();
        // SAFETY: valid C strings; `handle` is written on success only.
        Errno::check("rados_create2", unsafe {
            rados_create2(&mut handle, cluster.as_ptr(), name.as_ptr(), 0)
        })?;
        // From here on, Drop shuts the handle down whatever fails.
        let me = Cluster { handle };
        let conf = match &opts.conf {
            Some(p) => Some(cstring("rados_conf_read_file", &p.to_string_lossy())?),
            None => None,
        };
        // SAFETY: handle is live and not yet connected; a null path means the default search.
        Errno::check("rados_conf_read_file", unsafe {
            rados_conf_read_file(me.handle, conf.as_ref().map_or(ptr::null(), |c| c.as_ptr()))
        })?;
        let secs = |d: Duration| d.as_secs().max(1).to_string();
        let mut settings = vec![
            ("client_mount_timeout", secs(opts.timeout)),
            ("rados_mon_op_timeout", secs(opts.timeout)),
            ("rados_osd_op_timeout", secs(opts.op_timeout)),
            // librados logs to stderr by default, which would scribble over the console.
            ("log_to_stderr", "false".into()),
            ("err_to_stderr", "false".into()),
        ];
        if let Some(k) = &opts.keyring {
            settings.push(("keyring", k.to_string_lossy().into_owned()));
        }
        for (k, v) in settings {
            let (ck, cv) = (
                cstring("rados_conf_set", k)?,
                cstring("rados_conf_set", &v)?,
            );
            // SAFETY: handle live, not connected; valid C strings.
            Errno::check("rados_conf_set", unsafe {
                rados_conf_set(me.handle, ck.as_ptr(), cv.as_ptr())
            })?;
        }
        // SAFETY: handle configured above; blocking, bounded by client_mount_timeout.
        Errno::check("rados_connect", unsafe { rados_connect(me.handle) })?;
        Ok(me)
    }

    /// A monitor command (JSON in, JSON out), as `ceph ... -f json` sends it.
    #[allow(unsafe_code)]
    pub fn mon_command(&self, cmd: &serde_json::Value) -> Result<Vec<u8>, (Errno, String)> {
        let text =
            cstring("rados_mon_command", &cmd.to_string()).map_err(|e| (e, String::new()))?;
        let mut cmds = [text.as_ptr()];
        let (mut out, mut outlen): (*mut c_char, usize) = (ptr::null_mut(), 0);
        let (mut status, mut statuslen): (*mut c_char, usize) = (ptr::null_mut(), 0);
        // SAFETY: one valid command string; librados allocates out/status, freed below.
        let rc = unsafe {
            rados_mon_command(
                self.handle,
                cmds.as_mut_ptr(),
                1,
                ptr::null(),
                0,
                &mut out,
                &mut outlen,
                &mut status,
                &mut statuslen,
            )
        };
        let take = |p: *mut c_char, n: usize| -> Vec<u8> {
            if p.is_null() {
                return vec![];
            }
            // SAFETY: librados returned p with n bytes; copied, then freed exactly once.
            let v = unsafe { std::slice::from_raw_parts(p as *const u8, n) }.to_vec();
            // SAFETY: p came from librados' allocator.
            unsafe { rados_buffer_free(p) };
            v
        };
        let (out, status) = (take(out, outlen), take(status, statuslen));
        match Errno::check("rados_mon_command", rc) {
            Ok(_) => Ok(out),
            Err(e) => Err((e, String::from_utf8_lossy(&status).trim().to_string())),
        }
    }

    /// This client's address as the OSDs see it (what a peer blocklists to fence it).
    #[allow(unsafe_code)]
    pub fn address(&self) -> Result<String, Errno> {
        let mut out: *mut c_char = ptr::null_mut();
        // SAFETY: connected handle; librados writes a strdup'ed string into `out` on success.
        Errno::check("rados_getaddrs", unsafe {
            super::ffi::rados_getaddrs(self.handle, &mut out)
        })?;
        // SAFETY: librados's string, freed below.
        let addr = unsafe { from_c(out) };
        if !out.is_null() {
            // SAFETY: `out` was allocated by strdup in librados and is freed exactly once.
            unsafe { libc::free(out.cast()) };
        }
        Ok(addr)
    }

    /// The cluster's fsid: two backends on the same cluster (whatever their conf files say)
    /// can move images between their pools with librbd's live migration.
    #[allow(unsafe_code)]
    pub fn fsid(&self) -> Result<String, Errno> {
        let mut buf = [0u8; 64];
        // SAFETY: connected handle; librados writes at most buf.len() bytes, NUL-terminated.
        let n = unsafe {
            ceph::rados::rados_cluster_fsid(self.handle, buf.as_mut_ptr().cast(), buf.len())
        };
        let n = Errno::check("rados_cluster_fsid", n)? as usize;
        Ok(String::from_utf8_lossy(&buf[..n.min(buf.len())])
            .trim_end_matches('\0')
            .to_string())
    }

    /// `ceph osd blocklist add ADDR EXPIRE`: the OSDs refuse that client's operations from now
    /// on. Needs the `osd blocklist` monitor capability (`profile rbd` has it).
    #[allow(unsafe_code)]
    pub fn blocklist_add(&self, address: &str, expire_secs: u32) -> Result<(), Errno> {
        let addr = cstring("rados_blocklist_add", address)?;
        // SAFETY: connected handle; librados only reads the string (the C signature lacks const).
        Errno::check("rados_blocklist_add", unsafe {
            super::ffi::rados_blocklist_add(self.handle, addr.as_ptr().cast_mut(), expire_secs)
        })?;
        Ok(())
    }

    /// An I/O context on `pool`; ENOENT when the pool does not exist.
    #[allow(unsafe_code)]
    pub fn open_pool(self: &Arc<Self>, pool: &str) -> Result<Pool, Errno> {
        let name = cstring("rados_ioctx_create", pool)?;
        let mut io: rados_ioctx_t = ptr::null_mut();
        // SAFETY: connected handle, valid name; io written on success only.
        Errno::check("rados_ioctx_create", unsafe {
            rados_ioctx_create(self.handle, name.as_ptr(), &mut io)
        })?;
        Ok(Pool {
            io,
            _cluster: self.clone(),
        })
    }
}

/// An I/O context on one pool; destroyed on drop, before its cluster.
#[derive(Debug)]
pub struct Pool {
    io: rados_ioctx_t,
    _cluster: Arc<Cluster>,
}

// SAFETY: librados ioctx handles may be used from several threads at once (librbd does);
// the pointer is only passed to librados/librbd while `self` is alive.
#[allow(unsafe_code)]
unsafe impl Send for Pool {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl Sync for Pool {}

impl Pool {
    pub fn raw(&self) -> rados_ioctx_t {
        self.io
    }

    pub fn cluster(&self) -> &Cluster {
        &self._cluster
    }

    /// The whole of RADOS object `oid`; None when there is no such object.
    #[allow(unsafe_code)]
    pub fn read_object(&self, oid: &str) -> Result<Option<Vec<u8>>, Errno> {
        let o = super::image::cstr("rados_stat", oid)?;
        let (mut size, mut mtime) = (0u64, 0 as libc::time_t);
        // SAFETY: live ioctx, valid name, out-pointers to locals.
        let rc = unsafe { ceph::rados::rados_stat(self.io, o.as_ptr(), &mut size, &mut mtime) };
        if rc == -libc::ENOENT {
            return Ok(None);
        }
        Errno::check("rados_stat", rc)?;
        let mut buf = vec![0u8; size as usize];
        let mut done = 0;
        while done < buf.len() {
            let rest = &mut buf[done..];
            // SAFETY: as above; rest is a live buffer of rest.len() bytes.
            let n = unsafe {
                ceph::rados::rados_read(
                    self.io,
                    o.as_ptr(),
                    rest.as_mut_ptr().cast(),
                    rest.len(),
                    done as u64,
                )
            };
            let n = Errno::check("rados_read", n)?;
            if n == 0 {
                // Shorter than its stat said (rewritten meanwhile): read it again.
                return self.read_object(oid);
            }
            done += n as usize;
        }
        Ok(Some(buf))
    }

    /// Replaces RADOS object `oid` with `data`, at once (readers see the old or the new).
    #[allow(unsafe_code)]
    pub fn write_object(&self, oid: &str, data: &[u8]) -> Result<(), Errno> {
        let o = super::image::cstr("rados_write_full", oid)?;
        // SAFETY: live ioctx, valid name, data a live buffer of data.len() bytes.
        Errno::check("rados_write_full", unsafe {
            ceph::rados::rados_write_full(self.io, o.as_ptr(), data.as_ptr().cast(), data.len())
        })
        .map(drop)
    }

    /// Removes RADOS object `oid`; one that is not there is gone already.
    #[allow(unsafe_code)]
    pub fn remove_object(&self, oid: &str) -> Result<(), Errno> {
        let o = super::image::cstr("rados_remove", oid)?;
        // SAFETY: live ioctx, valid name.
        match unsafe { ceph::rados::rados_remove(self.io, o.as_ptr()) } {
            rc if rc == -libc::ENOENT => Ok(()),
            rc => Errno::check("rados_remove", rc).map(drop),
        }
    }

    /// Another pool of the same cluster, on the same client (a live migration's target).
    pub fn sibling(&self, pool: &str) -> Result<Pool, Errno> {
        self._cluster.open_pool(pool)
    }
}

impl Drop for Pool {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: created by rados_ioctx_create, destroyed once, while the cluster is alive
        // (we hold an Arc to it).
        unsafe { rados_ioctx_destroy(self.io) }
    }
}

/// Copies a C string librados/librbd returned (null: empty).
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that stays alive for the call (librbd's
/// strings live until their list is cleaned up: copy before cleanup).
#[allow(unsafe_code)]
pub unsafe fn from_c(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the caller's promise above.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}
