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
/// ember's own (`drain_timeout`): on SIGTERM a service stops claiming and gives its running
/// jobs this many seconds to finish before it hands the rest back to the queue. Long enough
/// for a create or a snapshot; a flatten of hours is handed back with its progress, and a
/// peer (or the next start) runs it again.
pub const DRAIN_TIMEOUT_S: i64 = 30;
/// Storage calls that may run at once per backend (`backend_native_threads_pool_size`).
/// Cinder's default is 20. ember's is the number of CPUs: data copies are CPU- and disk-bound,
/// and more copying threads than cores add no throughput but make a waking heartbeat wait for
/// a CPU (measured with `ember bench heartbeat`, 64 copying jobs on 2 cores: 20 threads gave
/// p99 ~9-10 ms, 2 threads ~1.6 ms, with the same bytes copied per second). Backends whose
/// calls mostly wait on the network (rbd) may want Cinder's 20: set it in their section.
pub fn native_threads_pool_size() -> i64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(2)
}
/// Cinder: 0 means never clone, always a full copy.
pub const RBD_MAX_CLONE_DEPTH: i64 = 5;
pub const RBD_POOL: &str = "rbd";
/// Object size of new images, MiB (`rbd_store_chunk_size`): librbd's default order 22.
pub const RBD_STORE_CHUNK_MIB: i64 = 4;
/// Flattens at once per backend (`rbd_concurrent_flatten_operations`).
pub const RBD_CONCURRENT_FLATTENS: i64 = 3;
pub const RBD_CLUSTER_NAME: &str = "ceph";
/// ember's own: used when `rados_connect_timeout` is -1 (Cinder's "no timeout"), because a
/// connect that can wait forever is the hang ember exists to avoid. Long enough for a loaded
/// monitor quorum, short enough that an operator sees the error in the console.
pub const RADOS_CONNECT_TIMEOUT_S: i64 = 10;
pub const MAX_OVER_SUBSCRIPTION_RATIO: f64 = 20.0;
