//! ember: a terminal operations console for block-storage volumes that is also the volume
//! service (modelled on OpenStack Cinder's `cinder-volume`).
//!
//! # Layout
//! - [`config`]: where the config is, what it says (ember TOML or Cinder's `cinder.conf`).
//! - [`db`]: the shared state (services, volumes, snapshots, jobs, events) on SQLite or PostgreSQL.
//! - [`driver`]: storage drivers; blocking by contract, never called on the reactor.
//! - [`backup`]: the backup store (content-addressed chunks and manifests); blocking too.
//! - [`service`]: the volume services: registration, heartbeats, periodic tasks.
//! - [`tui`]: the full-screen console; it reads service snapshots and sends commands.
//! - [`cli`]: the subcommands and their text/JSON output.
//!
//! Imports go one way: `cli` → `service` → (`db`, `backup` → `driver`) → `config`.

pub mod backup;
pub mod cli;
pub mod config;
pub mod db;
pub mod doctor;
pub mod driver;
pub mod service;
pub mod tui;
