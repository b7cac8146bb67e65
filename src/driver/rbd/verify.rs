//! `volume verify` on rbd, and a migration's reads and writes: both sides read through librbd
//! (a clone through its parent, a snapshot at its point in time), only where either side's
//! diff shows data.

use super::RbdDriver;
use std::cell::RefCell;
use std::collections::VecDeque;

use super::image::{Image, Open};
use super::image_io::{InFlight, Objects};
use crate::driver::transfer::Writable;
use crate::driver::verify::{Against, Readable, VerifyReport, compare_for};
use crate::driver::{DriverError, Progress, snapshot_image, volume_image};

/// An open image as a comparison or a copy reads it (zeros past its end), and as a copy
/// writes it.
pub(super) struct RbdReader<'a> {
    /// Writes librbd is still doing, oldest first (declared before `img`: dropped, and so
    /// waited for, before the image closes).
    in_flight: RefCell<VecDeque<InFlight>>,
    pub(super) img: Image<'a>,
    pub(super) size: u64,
    /// How its bytes map to objects, looked up at the first `stored_xxh64`.
    objects: std::sync::OnceLock<Option<Objects>>,
}

/// Writes a copy keeps in flight: librbd's own tools keep several object writes going
/// (`rbd import` 10); one at a time, each waits for the OSDs' acknowledgement.
const WRITES_IN_FLIGHT: usize = 8;

impl<'a> RbdReader<'a> {
    pub(super) fn new(img: Image<'a>, size: u64) -> Self {
        RbdReader {
            in_flight: RefCell::default(),
            img,
            size,
            objects: Default::default(),
        }
    }

    /// Waits for the writes in flight down to `keep`; the first that failed is the error.
    fn settle(&self, keep: usize) -> Result<(), String> {
        let mut q = self.in_flight.borrow_mut();
        while q.len() > keep {
            let Some(w) = q.pop_front() else { break };
            let at = w.offset();
            w.wait()
                .map_err(|e| format!("write at byte {at}: {}", e.describe()))?;
        }
        Ok(())
    }
}

impl Readable for RbdReader<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn extents(&self) -> Result<Vec<(u64, u64)>, String> {
        self.settle(0)?;
        self.img.data_extents().map_err(|e| e.describe())
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), String> {
        // What this copy wrote reads back as written.
        self.settle(0)?;
        let n = self.size.saturating_sub(off).min(buf.len() as u64) as usize;
        buf[n..].fill(0);
        if n > 0 {
            self.img
                .read_at(&mut buf[..n], off)
                .map_err(|e| e.describe())?;
        }
        Ok(())
    }
}

impl Writable for RbdReader<'_> {
    fn write_at(&self, buf: &[u8], off: u64) -> Result<(), String> {
        self.settle(WRITES_IN_FLIGHT - 1)?;
        let w = self
            .img
            .aio_write(buf.to_vec(), off)
            .map_err(|e| format!("write at byte {off}: {}", e.describe()))?;
        self.in_flight.borrow_mut().push_back(w);
        Ok(())
    }

    fn flush(&self) -> Result<(), String> {
        self.settle(0)?;
        self.img.flush().map_err(|e| e.describe())
    }

    fn stored_xxh64(&self, off: u64, len: u64) -> Option<u64> {
        let objects = self
            .objects
            .get_or_init(|| self.img.objects().ok().flatten())
            .as_ref()?;
        let (number, at) = (off / objects.object_size, off % objects.object_size);
        if len == 0 || at + len > objects.object_size || off + len > self.size {
            return None;
        }
        // Only what has reached the OSDs can be asked of them (past librbd's cache too).
        self.flush().ok()?;
        self.img.object_xxh64(objects, number, at, len).ok()
    }
}

impl RbdDriver {
    /// A volume's image open for a migration's copy: read-only (no watch, no lock) unless it
    /// is the copy's target.
    pub(super) fn with_volume_image(
        &self,
        volume_id: &str,
        write: bool,
        f: &mut dyn FnMut(&dyn Writable) -> Result<(), DriverError>,
    ) -> Result<(), DriverError> {
        let pool = self.pool()?;
        let name = volume_image(volume_id);
        let how = if write {
            Open::Name(&name)
        } else {
            Open::ReadOnly(&name)
        };
        let img = self.open(&pool, "migrate", how, &name)?;
        let size = img.size().map_err(|e| self.fail("migrate", &name, e))?;
        let image = RbdReader::new(img, size);
        f(&image)?;
        // A write still in flight that failed is this call's failure, never lost in a drop.
        image
            .settle(0)
            .map_err(|e| self.io("migrate", format!("{name}: {e}")))
    }

    /// A snapshot of a volume open to read at its point in time (a migration carrying it).
    pub(super) fn with_snapshot_image(
        &self,
        snap_id: &str,
        volume_id: &str,
        f: &mut dyn FnMut(&dyn Readable) -> Result<(), DriverError>,
    ) -> Result<(), DriverError> {
        let pool = self.pool()?;
        let (name, snap) = (volume_image(volume_id), snapshot_image(snap_id));
        let spec = format!("{name}@{snap}");
        let img = self.open(&pool, "migrate", Open::AtSnap(&name, &snap), &spec)?;
        let size = img.size().map_err(|e| self.fail("migrate", &spec, e))?;
        f(&RbdReader::new(img, size))
    }

    pub(super) fn verify_image(
        &self,
        volume_id: &str,
        against: &Against,
        bps_limit: u64,
        progress: &dyn Progress,
    ) -> Result<VerifyReport, DriverError> {
        let pool = self.pool()?;
        let name = volume_image(volume_id);
        let (src, snap) = (
            volume_image(&against.volume_id),
            snapshot_image(&against.snapshot_id),
        );
        let spec = format!("{src}@{snap}");
        let open = |how, what: &str| -> Result<RbdReader<'_>, DriverError> {
            let img = self.open(&pool, "verify", how, what)?;
            let size = img.size().map_err(|e| self.fail("verify", what, e))?;
            Ok(RbdReader::new(img, size))
        };
        let a = open(Open::ReadOnly(&name), &name)?;
        let b = open(Open::AtSnap(&src, &snap), &spec)?;
        compare_for(&self.backend, &a, &b, bps_limit, progress, |e| {
            self.io("verify", format!("{name} against {spec}: {e}"))
        })
    }
}
