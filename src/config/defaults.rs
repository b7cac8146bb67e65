//! Every default in one place, each with the reason for it. Values are Cinder's unless said.

/// Seconds between heartbeats (`report_interval`).
pub const REPORT_INTERVAL_S: i64 = 10;
/// A service whose last heartbeat is older than this many seconds is down (`service_down_time`).
pub const SERVICE_DOWN_TIME_S: i64 = 60;
/// Seconds between periodic tasks (capacity refresh, cleanup).
pub const PERIODIC_INTERVAL_S: i64 = 60;
/// The first periodic run waits a random 0..this seconds, so that many services do not hit
/// the database at once after a restart of the whole fleet.
pub const PERIODIC_FUZZY_DELAY_S: i64 = 60;
/// Storage calls that may run at once per backend (Cinder's native thread pool size).
pub const NATIVE_THREADS_POOL_SIZE: i64 = 20;
/// Cinder: 0 means never clone, always a full copy.
pub const RBD_MAX_CLONE_DEPTH: i64 = 5;
pub const RBD_POOL: &str = "rbd";
pub const RBD_CLUSTER_NAME: &str = "ceph";
/// ember's own: used when `rados_connect_timeout` is -1 (Cinder's "no timeout"), because a
/// connect that can wait forever is the hang ember exists to avoid. Long enough for a loaded
/// monitor quorum, short enough that an operator sees the error in the console.
pub const RADOS_CONNECT_TIMEOUT_S: i64 = 10;
pub const MAX_OVER_SUBSCRIPTION_RATIO: f64 = 20.0;
