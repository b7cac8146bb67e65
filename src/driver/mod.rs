//! Storage drivers: the `VolumeDriver` trait and its implementations.
//!
//! Owner: `driver/`. May import `config` (its own section types) only: a driver knows nothing of
//! the database, the service or the console. Every method is **blocking by contract**: the
//! service calls drivers only from `spawn_blocking`/its bounded pool, never on the reactor,
//! so a call that takes hours (an RBD flatten) cannot stop heartbeats or the screen.

pub mod fake;
pub mod file;

use std::sync::Arc;

use thiserror::Error;

use crate::config::{BackendConfig, DriverConfig};

/// Space on a backend, for the capacity gauges and over-subscription checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Capacity {
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// Sum of the sizes of the volumes on the backend (thin: may exceed total).
    pub provisioned_bytes: u64,
}

/// One image (volume or snapshot) as the storage sees it, to reconcile with the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub name: String,
    pub size_bytes: u64,
    /// Bytes really allocated (sparse files, thin images).
    pub used_bytes: u64,
}

#[derive(Debug, Error, Clone, PartialEq)]
pub enum DriverError {
    #[error("backend {backend}: {op}: {message}")]
    Io {
        backend: String,
        op: &'static str,
        message: String,
    },
    #[error("backend {backend}: the {driver} driver is not available in this build: {why}")]
    Unavailable {
        backend: String,
        driver: &'static str,
        why: &'static str,
    },
    #[error("backend {backend}: {op}: injected failure")]
    Injected { backend: String, op: &'static str },
}

/// What every backend can do. Blocking: call only off the reactor.
pub trait VolumeDriver: Send + Sync + std::fmt::Debug {
    fn backend(&self) -> &str;
    /// Cinder's `do_setup` + `check_for_setup_error`: is the backend usable at all?
    fn check_setup(&self) -> Result<(), DriverError>;
    fn capacity(&self) -> Result<Capacity, DriverError>;
    /// Every image the backend holds, to compare with the database.
    fn list(&self) -> Result<Vec<ImageInfo>, DriverError>;
}

/// Builds the driver a backend's section names. Builds only; `check_setup` tells if it works.
pub fn open(cfg: &BackendConfig) -> Result<Arc<dyn VolumeDriver>, DriverError> {
    match &cfg.driver {
        DriverConfig::File { dir } => Ok(Arc::new(file::FileDriver::new(&cfg.name, dir.clone()))),
        DriverConfig::Fake(f) => Ok(Arc::new(fake::FakeDriver::new(&cfg.name, f.clone()))),
        DriverConfig::Rbd(_) => Err(DriverError::Unavailable {
            backend: cfg.name.clone(),
            driver: "rbd",
            why: "the Ceph RBD driver has not landed yet; use volume_driver = \"file\" meanwhile",
        }),
    }
}
