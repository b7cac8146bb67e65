//! Who has an image open: its watchers (`rbd_watchers_list`, what `rbd status` shows) and its
//! lockers (`rbd_list_lockers`, what `rbd lock ls` shows: advisory locks and librbd's own
//! exclusive lock, whose cookie starts with `auto`); and breaking a stale lock.

use std::os::raw::{c_char, c_int};

use super::RbdDriver;
use super::conn::{Errno, from_c};
use super::ffi;
use super::image::{Image, Open};
use crate::driver::{DriverError, Holder, address_key, volume_image};

/// One watcher: `client.<id>` at its address.
pub struct Watcher {
    pub id: i64,
    pub address: String,
}

/// One lock holder.
pub struct Locker {
    /// `client.4242`
    pub client: String,
    pub cookie: String,
    pub address: String,
    /// The lock is exclusive (else shared).
    pub exclusive: bool,
}

/// NUL-separated strings from a librbd buffer of `len` bytes.
fn split(buf: &[u8], len: usize) -> Vec<String> {
    buf[..len.min(buf.len())]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

impl Image<'_> {
    /// Clients watching the image's header: every client that has it open read-write (a
    /// read-only open, as this module's callers use, does not watch).
    #[allow(unsafe_code)]
    pub fn watchers(&self) -> Result<Vec<Watcher>, Errno> {
        let mut max: usize = 8;
        loop {
            // SAFETY: zeroed entries (null pointers) are valid out-parameters.
            let mut buf: Vec<ffi::ImageWatcher> =
                (0..max).map(|_| unsafe { std::mem::zeroed() }).collect();
            // SAFETY: buf has `max` entries; on ERANGE max holds the needed count.
            let rc = unsafe { ffi::rbd_watchers_list(self.raw, buf.as_mut_ptr(), &mut max) };
            if rc == -libc::ERANGE {
                continue;
            }
            Errno::check("rbd_watchers_list", rc)?;
            let out = buf[..max]
                .iter()
                .map(|w| Watcher {
                    id: w.id,
                    // SAFETY: librbd filled this list and cleans it up only after the copy.
                    address: unsafe { from_c(w.addr) },
                })
                .collect();
            // SAFETY: frees what librbd allocated for the `max` filled entries; once.
            unsafe { ffi::rbd_watchers_list_cleanup(buf.as_mut_ptr(), max) };
            return Ok(out);
        }
    }

    /// The image's lockers (`rbd lock ls`).
    #[allow(unsafe_code)]
    pub fn lockers(&self) -> Result<Vec<Locker>, Errno> {
        let (mut tag_len, mut clients_len, mut cookies_len, mut addrs_len) =
            (256usize, 1024usize, 1024usize, 1024usize);
        loop {
            let mut exclusive: c_int = 0;
            let mut tag = vec![0u8; tag_len];
            let mut clients = vec![0u8; clients_len];
            let mut cookies = vec![0u8; cookies_len];
            let mut addrs = vec![0u8; addrs_len];
            // SAFETY: open image; each buffer has the length passed beside it; librbd writes
            // the needed lengths back (and returns ERANGE) when one is too short.
            let rc = unsafe {
                ffi::rbd_list_lockers(
                    self.raw,
                    &mut exclusive,
                    tag.as_mut_ptr().cast::<c_char>(),
                    &mut tag_len,
                    clients.as_mut_ptr().cast::<c_char>(),
                    &mut clients_len,
                    cookies.as_mut_ptr().cast::<c_char>(),
                    &mut cookies_len,
                    addrs.as_mut_ptr().cast::<c_char>(),
                    &mut addrs_len,
                )
            };
            if rc == -(libc::ERANGE as isize) {
                continue;
            }
            if rc == -(libc::ENOENT as isize) {
                return Ok(vec![]);
            }
            Errno::check("rbd_list_lockers", rc as i32)?;
            let (clients, cookies, addrs) = (
                split(&clients, clients_len),
                split(&cookies, cookies_len),
                split(&addrs, addrs_len),
            );
            return Ok(clients
                .into_iter()
                .zip(cookies)
                .zip(addrs)
                .map(|((client, cookie), address)| Locker {
                    client,
                    cookie,
                    address,
                    exclusive: exclusive != 0,
                })
                .collect());
        }
    }

    /// Removes one lock (`rbd lock rm`); the caller blocklists the locker first.
    #[allow(unsafe_code)]
    pub fn break_lock(&self, client: &str, cookie: &str) -> Result<(), Errno> {
        let client = std::ffi::CString::new(client).map_err(|_| Errno {
            call: "rbd_break_lock",
            code: libc::EINVAL,
        })?;
        let cookie = std::ffi::CString::new(cookie).map_err(|_| Errno {
            call: "rbd_break_lock",
            code: libc::EINVAL,
        })?;
        // SAFETY: open image, valid NUL-terminated strings, only read by librbd.
        Errno::check("rbd_break_lock", unsafe {
            ffi::rbd_break_lock(self.raw, client.as_ptr(), cookie.as_ptr())
        })
        .map(drop)
    }
}

impl RbdDriver {
    /// Watchers and lockers of an image, this driver's own client marked `ember`.
    pub(super) fn image_holders(&self, name: &str) -> Result<Vec<Holder>, DriverError> {
        let pool = self.pool()?;
        // Read-only: no watch of our own, as `rbd status` does.
        let img =
            Image::open(&pool, Open::ReadOnly(name)).map_err(|e| self.fail("status", name, e))?;
        let own = pool.cluster().address().ok().map(|a| address_key(&a));
        let mine = |addr: &str| own.as_deref() == Some(address_key(addr).as_str());
        let mut out: Vec<Holder> = img
            .watchers()
            .map_err(|e| self.fail("status", name, e))?
            .into_iter()
            .map(|w| Holder {
                client: format!("client.{}", w.id),
                ember: mine(&w.address),
                address: w.address,
                how: "watcher".into(),
                cookie: None,
                host: None,
            })
            .collect();
        for l in img.lockers().map_err(|e| self.fail("lock ls", name, e))? {
            let how = if l.cookie.starts_with("auto ") {
                "exclusive lock"
            } else if l.exclusive {
                "lock"
            } else {
                "shared lock"
            };
            out.push(Holder {
                client: l.client,
                ember: mine(&l.address),
                address: l.address,
                how: how.into(),
                cookie: Some(l.cookie),
                host: None,
            });
        }
        Ok(out)
    }

    /// `rbd du` of one volume's image (its own objects, not its parent's).
    pub(super) fn image_used_bytes(&self, volume_id: &str) -> Result<u64, DriverError> {
        let pool = self.pool()?;
        let name = volume_image(volume_id);
        let img =
            Image::open(&pool, Open::ReadOnly(&name)).map_err(|e| self.fail("du", &name, e))?;
        img.used_bytes().map_err(|e| self.fail("du", &name, e))
    }

    pub(super) fn status_command(&self, image: &str) -> String {
        format!("rbd status {}/{image}", self.cfg.pool)
    }

    /// `rbd rename`: within the pool.
    pub(super) fn rename(&self, from: &str, to: &str) -> Result<(), DriverError> {
        let pool = self.pool()?;
        super::image::rename(&pool, from, to).map_err(|e| self.fail("rename", from, e))
    }

    /// One image by name: size, what it uses, its parent snapshot.
    pub(super) fn inspect(&self, name: &str) -> Result<crate::driver::ImageInfo, DriverError> {
        let pool = self.pool()?;
        let img =
            Image::open(&pool, Open::ReadOnly(name)).map_err(|e| self.fail("info", name, e))?;
        let fail = |e| self.fail("info", name, e);
        Ok(crate::driver::ImageInfo {
            name: name.to_string(),
            size_bytes: img.size().map_err(fail)?,
            used_bytes: img.used_bytes().map_err(fail)?,
            parent: img.parent_snap().map_err(fail)?,
            deferred_delete: false,
            volume: None,
        })
    }

    /// Ceph's way: blocklist the locker's address, then remove its lock.
    pub(super) fn break_image_lock(
        &self,
        volume_id: &str,
        holder: &Holder,
        expire_secs: u32,
    ) -> Result<(), DriverError> {
        use crate::driver::VolumeDriver;
        let Some(cookie) = &holder.cookie else {
            return Err(self.io(
                "break-lock",
                format!(
                    "{} holds no lock (a watcher only): nothing to break",
                    holder.client
                ),
            ));
        };
        self.fence_client(&holder.address, expire_secs)?;
        let pool = self.pool()?;
        let name = volume_image(volume_id);
        let img =
            Image::open(&pool, Open::Name(&name)).map_err(|e| self.fail("break-lock", &name, e))?;
        match img.break_lock(&holder.client, cookie) {
            Ok(()) => Ok(()),
            Err(e) if e.code == libc::ENOENT => Ok(()), // already gone
            Err(e) => Err(self.fail("break-lock", &name, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_nul_separated_lists() {
        assert_eq!(
            split(b"client.1\0client.22\0\0\0", 20),
            vec!["client.1", "client.22"]
        );
        assert!(split(b"\0\0", 2).is_empty());
    }
}
