//! The `fake` driver, for tests and benchmarks only: images live in memory; every call can be
//! slowed (really blocking its thread, as librbd does), made to copy memory like a real data
//! path, or made to fail, so tests can inject faults and prove that blocking storage calls
//! never starve heartbeats or the screen.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::FakeConfig;

use super::{
    Capacity, Deleted, DriverError, ImageInfo, NoProgress, Progress, VolumeDriver, snapshot_image,
    volume_image,
};

#[derive(Debug, Clone)]
struct Image {
    size: u64,
    parent: Option<String>,
    deferred: bool,
}

#[derive(Debug)]
pub struct FakeDriver {
    backend: String,
    cfg: FakeConfig,
    images: Mutex<BTreeMap<String, Image>>,
    /// Calls of the op named by `fail_op`, to fail the Nth.
    calls: AtomicU64,
}

impl FakeDriver {
    pub fn new(backend: &str, cfg: FakeConfig) -> Self {
        Self {
            backend: backend.to_string(),
            cfg,
            images: Mutex::default(),
            calls: AtomicU64::new(0),
        }
    }

    fn images(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Image>> {
        self.images.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Latency, then the injected failure if this call is the one.
    fn enter(&self, op: &'static str) -> Result<(), DriverError> {
        if self.cfg.blocking && self.cfg.latency_ms > 0 {
            std::thread::sleep(Duration::from_millis(self.cfg.latency_ms));
        }
        if self.fails(op) && self.cfg.fail_at_percent.is_none() {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if self.cfg.fail_call == 0 || n == self.cfg.fail_call {
                return Err(self.injected(op));
            }
        }
        Ok(())
    }

    fn fails(&self, op: &str) -> bool {
        self.cfg
            .fail_op
            .as_deref()
            .is_some_and(|l| l.split(',').any(|o| o.trim() == op))
    }

    fn injected(&self, op: &'static str) -> DriverError {
        if self.cfg.fail_busy {
            DriverError::Busy {
                backend: self.backend.clone(),
                image: format!("({op}: injected)"),
                dependents: vec!["an injected holder".into()],
            }
        } else {
            DriverError::Injected {
                backend: self.backend.clone(),
                op,
            }
        }
    }

    /// A long call's data path: copies `copy_mib` of memory in 1 MiB steps, reporting progress,
    /// honouring cancellation and the fail-at-percent injection.
    fn work(&self, op: &'static str, progress: &dyn Progress) -> Result<(), DriverError> {
        let total_mib = self.cfg.copy_mib.max(1);
        let total = total_mib << 20;
        let src = vec![0x5au8; 1 << 20];
        let mut dst = vec![0u8; 1 << 20];
        for i in 0..total_mib {
            if self.cfg.copy_mib > 0 {
                dst.copy_from_slice(&src);
                std::hint::black_box(&mut dst);
            }
            let done = (i + 1) << 20;
            if self.fails(op)
                && let Some(pct) = self.cfg.fail_at_percent
                && done * 100 >= total * u64::from(pct)
            {
                return Err(self.injected(op));
            }
            if !progress.update(done, total) {
                return Err(DriverError::Cancelled {
                    backend: self.backend.clone(),
                    op,
                });
            }
        }
        Ok(())
    }

    fn not_found(&self, image: &str) -> DriverError {
        DriverError::NotFound {
            backend: self.backend.clone(),
            image: image.to_string(),
        }
    }

    fn children(images: &BTreeMap<String, Image>, name: &str) -> Vec<String> {
        images
            .iter()
            .filter(|(_, i)| i.parent.as_deref() == Some(name))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

impl VolumeDriver for FakeDriver {
    fn backend(&self) -> &str {
        &self.backend
    }

    fn check_setup(&self) -> Result<(), DriverError> {
        self.enter("check_setup")
    }

    fn capacity(&self) -> Result<Capacity, DriverError> {
        self.enter("capacity")?;
        let provisioned = self
            .images()
            .iter()
            .filter(|(n, _)| n.starts_with("volume-"))
            .map(|(_, i)| i.size)
            .sum();
        Ok(Capacity {
            total_bytes: 1 << 40,
            free_bytes: 1 << 40,
            provisioned_bytes: Some(provisioned),
        })
    }

    fn list(&self) -> Result<Vec<ImageInfo>, DriverError> {
        self.enter("list")?;
        Ok(self
            .images()
            .iter()
            .map(|(n, i)| ImageInfo {
                name: n.clone(),
                size_bytes: i.size,
                used_bytes: 0,
                parent: i.parent.clone(),
                deferred_delete: i.deferred,
                volume: None,
            })
            .collect())
    }

    fn create_volume(&self, id: &str, size: u64) -> Result<(), DriverError> {
        self.enter("create")?;
        self.images().entry(volume_image(id)).or_insert(Image {
            size,
            parent: None,
            deferred: false,
        });
        Ok(())
    }

    fn delete_volume(&self, id: &str, progress: &dyn Progress) -> Result<(), DriverError> {
        self.enter("delete")?;
        let name = volume_image(id);
        let children = Self::children(&self.images(), &name);
        if !children.is_empty() {
            return Err(DriverError::Busy {
                backend: self.backend.clone(),
                image: name,
                dependents: children,
            });
        }
        self.work("delete", progress)?;
        self.images().remove(&name);
        Ok(())
    }

    fn extend_volume(&self, id: &str, size: u64) -> Result<(), DriverError> {
        self.enter("extend")?;
        let name = volume_image(id);
        let mut images = self.images();
        let img = images.get_mut(&name).ok_or_else(|| self.not_found(&name))?;
        if size < img.size {
            return Err(DriverError::Invalid {
                backend: self.backend.clone(),
                op: "extend",
                message: "shrinking is not allowed".into(),
            });
        }
        img.size = size;
        Ok(())
    }

    fn create_snapshot(
        &self,
        snap_id: &str,
        volume_id: &str,
        progress: &dyn Progress,
    ) -> Result<(), DriverError> {
        self.enter("snapshot")?;
        let src = self
            .images()
            .get(&volume_image(volume_id))
            .cloned()
            .ok_or_else(|| self.not_found(&volume_image(volume_id)))?;
        self.work("snapshot", progress)?;
        self.images().insert(
            snapshot_image(snap_id),
            Image {
                size: src.size,
                parent: src.parent,
                deferred: false,
            },
        );
        Ok(())
    }

    fn delete_snapshot(
        &self,
        snap_id: &str,
        _volume_id: &str,
        deferred: bool,
    ) -> Result<Deleted, DriverError> {
        self.enter("delete_snapshot")?;
        let name = snapshot_image(snap_id);
        let mut images = self.images();
        let children = Self::children(&images, &name);
        if children.is_empty() {
            images.remove(&name);
            return Ok(Deleted::Now);
        }
        if !deferred {
            return Err(DriverError::Busy {
                backend: self.backend.clone(),
                image: name,
                dependents: children,
            });
        }
        if let Some(i) = images.get_mut(&name) {
            i.deferred = true;
        }
        Ok(Deleted::Deferred)
    }

    fn clone_snapshot(
        &self,
        snap_id: &str,
        _source_volume_id: &str,
        volume_id: &str,
        size: u64,
    ) -> Result<(), DriverError> {
        self.enter("clone")?;
        let snap = snapshot_image(snap_id);
        let mut images = self.images();
        if !images.contains_key(&snap) {
            return Err(self.not_found(&snap));
        }
        images.entry(volume_image(volume_id)).or_insert(Image {
            size,
            parent: Some(snap),
            deferred: false,
        });
        Ok(())
    }

    fn flatten(&self, volume_id: &str, progress: &dyn Progress) -> Result<(), DriverError> {
        self.enter("flatten")?;
        let name = volume_image(volume_id);
        if !self.images().contains_key(&name) {
            return Err(self.not_found(&name));
        }
        self.work("flatten", progress)?;
        if let Some(i) = self.images().get_mut(&name) {
            i.parent = None;
        }
        Ok(())
    }

    fn purge_deferred(&self) -> Result<Vec<String>, DriverError> {
        let mut images = self.images();
        let mut purged = vec![];
        loop {
            let gone: Vec<String> = images
                .iter()
                .filter(|(n, i)| i.deferred && Self::children(&images, n).is_empty())
                .map(|(n, _)| n.clone())
                .collect();
            if gone.is_empty() {
                return Ok(purged);
            }
            for n in gone {
                images.remove(&n);
                purged.push(n);
            }
        }
    }
}

impl FakeDriver {
    /// Runs the copying data path alone: the heartbeat benchmark's job body.
    pub fn copy_work(&self) -> Result<(), DriverError> {
        self.work("bench", &NoProgress)
    }
}
