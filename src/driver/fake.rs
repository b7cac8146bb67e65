//! The `fake` driver, for tests only: configurable latency that really blocks its thread,
//! so tests can prove that blocking storage calls never starve heartbeats or the screen.

use std::time::Duration;

use crate::config::FakeConfig;

use super::{Capacity, DriverError, ImageInfo, VolumeDriver};

#[derive(Debug)]
pub struct FakeDriver {
    backend: String,
    cfg: FakeConfig,
}

impl FakeDriver {
    pub fn new(backend: &str, cfg: FakeConfig) -> Self {
        Self {
            backend: backend.to_string(),
            cfg,
        }
    }

    /// Waits the configured latency. In blocking mode the thread really sleeps, as librbd does.
    fn delay(&self) {
        if self.cfg.blocking && self.cfg.latency_ms > 0 {
            std::thread::sleep(Duration::from_millis(self.cfg.latency_ms));
        }
    }
}

impl VolumeDriver for FakeDriver {
    fn backend(&self) -> &str {
        &self.backend
    }

    fn check_setup(&self) -> Result<(), DriverError> {
        self.delay();
        Ok(())
    }

    fn capacity(&self) -> Result<Capacity, DriverError> {
        self.delay();
        Ok(Capacity {
            total_bytes: 1 << 40,
            free_bytes: 1 << 40,
            provisioned_bytes: 0,
        })
    }

    fn list(&self) -> Result<Vec<ImageInfo>, DriverError> {
        self.delay();
        Ok(vec![])
    }
}
