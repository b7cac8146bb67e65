//! Every health check Ceph 16 (Pacific) raises about pools, placement groups, OSDs, monitors,
//! the manager or clocks, and what each means for a volume service: how bad it is for volumes,
//! why, and the fix.
//!
//! The list was taken from the installed Ceph 16.2 daemons and manager modules
//! (`scripts/ceph-health-codes.sh` prints it again; `tests/ceph_health_codes.rs` fails when a
//! code it finds is missing here) and reads with Ceph's own health-checks page. The README's
//! table is generated from it (`ember doctor --ceph-checks`).
//!
//! In `fix`, `{pool}` is the backend's pool, `{osds}` the OSDs the check names, `{mons}` the
//! monitors, `{item}` the first thing its detail names.

use crate::driver::health::Impact::{self, Blocks, Info, Slows};

/// What a check is about, which decides how it is matched to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// Names pools (`pool 'volumes' is full`): bears on a backend whose pool it names.
    Pool,
    /// Names placement groups (`pg 1.a is stuck inactive`): bears on a backend whose pool id
    /// prefixes one of them.
    Pg,
    /// The cluster as a whole: OSDs, monitors, the manager, clocks, daemons.
    Cluster,
}

/// One health check code.
#[derive(Debug, Clone, Copy)]
pub struct CodeInfo {
    pub code: &'static str,
    pub area: Area,
    /// Its effect on volumes where it reaches this backend.
    pub impact: Impact,
    /// What it means for volumes, after the check's own summary.
    pub means: &'static str,
    pub fix: &'static str,
}

const fn c(
    code: &'static str,
    area: Area,
    impact: Impact,
    means: &'static str,
    fix: &'static str,
) -> CodeInfo {
    CodeInfo {
        code,
        area,
        impact,
        means,
        fix,
    }
}

use Area::{Cluster, Pg, Pool};

/// The table. `OSD_<crush type>_DOWN` codes not listed (rack, row, datacenter...) are read as
/// `OSD_HOST_DOWN`; `MDS_*` and `FS_*` (CephFS) as information.
#[rustfmt::skip]
pub const CODES: &[CodeInfo] = &[
    // Pools.
    c("POOL_FULL", Pool, Blocks,
      "writes to the pool are refused: creates, clones, extends, snapshots and flattens fail, and writes by attached clients hang",
      "raise or clear the quota (ceph osd pool set-quota {pool} max_bytes N), delete volumes or snapshots, or add OSDs"),
    c("POOL_NEARFULL", Pool, Slows,
      "the pool is close to its quota or its OSDs to full; writes will be refused when it is reached",
      "raise the quota (ceph osd pool set-quota {pool} max_bytes N) or free space before it fills"),
    c("POOL_BACKFILLFULL", Pool, Slows,
      "the pool's OSDs are too full to take rebalanced data; a further failure leaves data with fewer copies",
      "add OSDs or free space (ceph df; ceph osd df)"),
    c("POOL_NO_REDUNDANCY", Pool, Slows,
      "the pool keeps one copy: losing one OSD loses volumes",
      "ceph osd pool set {pool} size 3 (once there are enough OSDs)"),
    c("POOL_APP_NOT_ENABLED", Pool, Slows,
      "the pool is not tagged for rbd; it works, but tools that check the tag refuse it",
      "ceph osd pool application enable {pool} rbd (for a pool ember uses: rbd pool init {pool})"),
    c("POOL_TOO_FEW_PGS", Pool, Info,
      "the pool has fewer placement groups than its data warrants: I/O spreads over fewer OSDs",
      "let the autoscaler act (ceph osd pool set {pool} pg_autoscale_mode on) or raise pg_num"),
    c("POOL_TOO_MANY_PGS", Pool, Info,
      "the pool has more placement groups than its data warrants: more OSD memory and peering work",
      "let the autoscaler act (ceph osd pool set {pool} pg_autoscale_mode on) or lower pg_num"),
    c("POOL_TARGET_SIZE_BYTES_OVERCOMMITTED", Pool, Info,
      "the pools' target sizes add up to more than the cluster holds",
      "correct target_size_bytes (ceph osd pool set {pool} target_size_bytes N)"),
    c("POOL_HAS_TARGET_SIZE_BYTES_AND_RATIO", Pool, Info,
      "the pool has both target_size_bytes and target_size_ratio set; the ratio is ignored",
      "ceph osd pool set {pool} target_size_bytes 0 (or the ratio 0)"),
    c("POOL_PG_NUM_NOT_POWER_OF_TWO", Pool, Info,
      "pg_num is not a power of two: placement groups hold unequal amounts of data",
      "ceph osd pool set {pool} pg_num <power of two>"),
    c("POOL_SCRUB_FLAGS", Pool, Info,
      "scrubbing is switched off for the pool: silent corruption goes unnoticed",
      "ceph osd pool unset {pool} noscrub; ceph osd pool unset {pool} nodeep-scrub"),
    c("SMALLER_PGP_NUM", Pool, Info,
      "pgp_num is below pg_num: new placement groups are not yet placed on their own OSDs",
      "ceph osd pool set {pool} pgp_num <pg_num>"),
    c("MANY_OBJECTS_PER_PG", Pool, Info,
      "the pool holds many more objects per placement group than others: slower recovery",
      "raise the pool's pg_num, or let the autoscaler act"),
    c("CACHE_POOL_NEAR_FULL", Pool, Slows,
      "a cache tier pool is nearly full: I/O through it slows while it flushes",
      "check the cache tier's target_max_bytes / target_max_objects"),
    c("CACHE_POOL_NO_HIT_SET", Pool, Info,
      "a cache tier pool has no hit set: the tier cannot tell hot data from cold",
      "ceph osd pool set <cache pool> hit_set_type bloom"),
    // Placement groups.
    c("PG_AVAILABILITY", Pg, Blocks,
      "some placement groups are inactive: I/O to the objects in them hangs until the op timeout, so jobs and attached clients touching them stall and fail",
      "bring back the OSDs that hold them (ceph pg dump_stuck inactive; ceph osd tree)"),
    c("PG_DAMAGED", Pg, Blocks,
      "placement groups are inconsistent or have unfound objects: reads or writes of the affected objects fail or hang",
      "ceph health detail names them: ceph pg repair <pgid> for inconsistent ones; for unfound objects see ceph pg <pgid> list_unfound"),
    c("PG_DEGRADED", Pg, Slows,
      "placement groups have fewer copies than the pool asks for: I/O goes on, a further failure may stop it",
      "bring back down OSDs (ceph osd tree) and let recovery finish (ceph -s)"),
    c("PG_RECOVERY_FULL", Pg, Slows,
      "recovery stopped because OSDs are full: data stays with fewer copies",
      "free space or add OSDs (ceph osd df)"),
    c("PG_BACKFILL_FULL", Pg, Slows,
      "backfill stopped because OSDs are too full: data stays misplaced or with fewer copies",
      "free space or add OSDs (ceph osd df)"),
    c("PG_NOT_SCRUBBED", Pg, Info,
      "placement groups have not been scrubbed in time",
      "check for noscrub flags (ceph osd dump | grep flags) and OSD load"),
    c("PG_NOT_DEEP_SCRUBBED", Pg, Info,
      "placement groups have not been deep-scrubbed in time",
      "check for nodeep-scrub flags and OSD load"),
    c("PG_SLOW_SNAP_TRIMMING", Pg, Slows,
      "deleted snapshots are trimmed slowly: the space of deleted snapshots and volumes comes back late",
      "check OSD load; osd_snap_trim_sleep may be set too high"),
    c("PENDING_CREATING_PGS", Cluster, Slows,
      "placement groups wait to be created: a new or grown pool is not fully usable",
      "add OSDs or check mon_max_pg_per_osd (ceph osd df)"),
    c("TOO_FEW_PGS", Cluster, Info,
      "the cluster has few placement groups for its OSDs: uneven use of them",
      "raise pg_num of the busiest pools, or enable the autoscaler"),
    c("TOO_MANY_PGS", Cluster, Slows,
      "OSDs hold more placement groups than mon_max_pg_per_osd: new pools or pg_num increases are refused and peering is slow",
      "add OSDs or lower pg_num of some pools"),
    c("LARGE_OMAP_OBJECTS", Cluster, Info,
      "objects with very large omap (for rbd, an rbd_directory or rbd_children with very many entries): slow recovery of them",
      "ceph health detail names the pool and object; usually harmless for rbd"),
    // OSDs.
    c("OSD_DOWN", Cluster, Slows,
      "I/O to placement groups on the down OSDs pauses until they re-peer elsewhere; if one held the last copy, PG_AVAILABILITY follows and I/O hangs",
      "start {osds} (systemctl start ceph-osd@<id> on its host) and read its log if it does not stay up"),
    c("OSD_HOST_DOWN", Cluster, Slows,
      "every OSD of a host is down: as OSD_DOWN, for a whole failure domain at once",
      "check the host {item} (power, network), then start its OSDs"),
    c("OSD_ROOT_DOWN", Cluster, Blocks,
      "every OSD under a CRUSH root is down: pools placed there have no OSD left, so all I/O hangs until the op timeout",
      "start the OSDs under that root (ceph osd tree down); until then no volume placed there can be read or written"),
    c("OSD_ORPHAN", Cluster, Info,
      "an OSD is in the CRUSH map but does not exist",
      "ceph osd crush rm {item}"),
    c("OSD_OUT_OF_ORDER_FULL", Cluster, Slows,
      "the nearfull/backfillfull/full ratios are not in ascending order: full protection may trigger late or never",
      "ceph osd set-nearfull-ratio 0.85; ceph osd set-backfillfull-ratio 0.90; ceph osd set-full-ratio 0.95"),
    c("OSD_FULL", Cluster, Blocks,
      "an OSD is full: writes to pools on it are refused, so jobs writing to this backend fail",
      "add OSDs or delete data; raising ceph osd set-full-ratio briefly only to let deletes through"),
    c("OSD_BACKFILLFULL", Cluster, Slows,
      "OSDs are too full to take rebalanced data: a failure leaves data with fewer copies",
      "add OSDs or free space (ceph osd df)"),
    c("OSD_NEARFULL", Cluster, Slows,
      "OSDs are nearly full: writes will be refused when one is full",
      "add OSDs or free space now (ceph osd df)"),
    c("OSDMAP_FLAGS", Cluster, Info,
      "cluster-wide OSD flags are set (pause or full stop all writes; noout and the like only change recovery)",
      "ceph osd unset <flag> once the maintenance that set it is over"),
    c("OSD_FLAGS", Cluster, Info,
      "flags (noup, nodown, noin, noout) are set on single OSDs or CRUSH nodes: recovery behaves differently",
      "ceph osd rm-noup / rm-nodown / rm-noin / rm-noout for {item} when maintenance is over"),
    c("OSD_NO_DOWN_OUT_INTERVAL", Cluster, Info,
      "mon_osd_down_out_interval is 0: a down OSD is never marked out, so its data is not re-replicated",
      "ceph config set mon mon_osd_down_out_interval 600"),
    c("OSD_NO_SORTBITWISE", Cluster, Slows,
      "the sortbitwise flag is not set: newer OSDs cannot start",
      "ceph osd set sortbitwise"),
    c("OSD_UPGRADE_FINISHED", Cluster, Info,
      "every OSD runs the new release but require_osd_release is not raised",
      "ceph osd require-osd-release pacific"),
    c("OSD_SCRUB_ERRORS", Cluster, Slows,
      "scrubs found copies of objects that disagree: reads of them may return old data",
      "ceph health detail names the placement groups: ceph pg repair <pgid>"),
    c("OSD_TOO_MANY_REPAIRS", Cluster, Slows,
      "an OSD repaired many reads: its disk is probably failing",
      "replace the disk of {osds} (ceph device ls)"),
    c("OSD_SLOW_PING_TIME_BACK", Cluster, Slows,
      "OSDs answer each other slowly on the cluster network: replication and volume writes slow down",
      "check the cluster network between the OSDs named (ceph daemon osd.N dump_osd_network)"),
    c("OSD_SLOW_PING_TIME_FRONT", Cluster, Slows,
      "OSDs answer slowly on the public network: client I/O and volume jobs slow down",
      "check the public network between the OSDs named (ceph daemon osd.N dump_osd_network)"),
    c("TOO_FEW_OSDS", Cluster, Slows,
      "fewer OSDs than a pool's size: placement groups stay degraded",
      "add OSDs, or lower the pool's size"),
    c("SLOW_OPS", Cluster, Slows,
      "requests take longer than 30 s: volume I/O and jobs slow down, and may time out",
      "see the daemons named (ceph daemon osd.N dump_ops_in_flight): usually a sick disk, a full OSD or the network"),
    c("BLUESTORE_DISK_SIZE_MISMATCH", Cluster, Slows,
      "an OSD's device size disagrees with its label: it may fail at start",
      "redeploy the OSD named"),
    c("BLUESTORE_LEGACY_STATFS", Cluster, Info,
      "OSDs keep old-style usage statistics: pool usage figures are approximate",
      "ceph-bluestore-tool repair on each OSD (stopped), or ignore"),
    c("BLUESTORE_NO_COMPRESSION", Cluster, Info,
      "an OSD cannot load its compression plugin: data is stored uncompressed",
      "install the compression libraries on the OSD host"),
    c("BLUESTORE_NO_PER_PG_OMAP", Cluster, Info,
      "OSDs keep omap in the old layout: slower snapshot trimming",
      "ceph-bluestore-tool repair on each OSD (stopped)"),
    c("BLUESTORE_NO_PER_POOL_OMAP", Cluster, Info,
      "OSDs keep omap in the old layout: per-pool omap usage is not reported",
      "ceph-bluestore-tool repair on each OSD (stopped)"),
    c("BLUESTORE_SPURIOUS_READ_ERRORS", Cluster, Slows,
      "an OSD's disk returned read errors that a retry fixed: it is probably failing",
      "check the disk of {osds} (smartctl; ceph device ls)"),
    c("BLUEFS_SPILLOVER", Cluster, Slows,
      "an OSD's metadata spilled from its fast device to its slow one: I/O on it slows down",
      "give the OSD a bigger DB device, or compact it (ceph tell osd.N compact)"),
    c("DEVICE_HEALTH", Cluster, Slows,
      "a disk is expected to fail soon: the OSD on it will go down",
      "mark the OSD out so its data moves (ceph osd out {osds}), then replace the disk"),
    c("DEVICE_HEALTH_IN_USE", Cluster, Slows,
      "a disk expected to fail is still in use, as its data cannot move elsewhere",
      "add capacity so the data can move, then replace the disk"),
    c("DEVICE_HEALTH_TOOMANY", Cluster, Slows,
      "too many disks are expected to fail to mark them all out",
      "add OSDs, then replace the failing disks one by one"),
    c("DEVICE_FAULT_ON", Cluster, Info,
      "a disk's fault light is on (an operator marked it for replacement)",
      "ceph orch device light off <host> <device> fault once it is replaced"),
    c("DEVICE_IDENT_ON", Cluster, Info,
      "a disk's identification light is on",
      "ceph orch device light off <host> <device> ident"),
    c("RECENT_CRASH", Cluster, Info,
      "a Ceph daemon crashed recently (it may have restarted)",
      "ceph crash ls; ceph crash info <id>; then ceph crash archive-all"),
    c("DEGRADED_STRETCH_MODE", Cluster, Slows,
      "a stretch cluster lost a site: it runs degraded on the other",
      "bring the lost site back"),
    c("RECOVERING_STRETCH_MODE", Cluster, Slows,
      "a stretch cluster is recovering after a site came back",
      "wait for recovery (ceph -s)"),
    c("INCORRECT_NUM_BUCKETS_STRETCH_MODE", Cluster, Info,
      "stretch mode needs exactly two data sites",
      "correct the CRUSH map's stretch buckets"),
    c("UNEVEN_WEIGHTS_STRETCH_MODE", Cluster, Info,
      "the two stretch sites have unequal weights",
      "balance the sites' CRUSH weights"),
    c("OLD_CRUSH_TUNABLES", Cluster, Info,
      "CRUSH tunables are old: data is placed less evenly",
      "ceph osd crush tunables optimal (moves data)"),
    c("OLD_CRUSH_STRAW_CALC_VERSION", Cluster, Info,
      "CRUSH uses the old straw calculation",
      "ceph osd crush set-tunable straw_calc_version 1"),
    // Monitors and clocks.
    c("MON_DOWN", Cluster, Slows,
      "a monitor is down: volumes work while a majority is up, new connections may take longer; if the majority goes, every backend on this cluster stops",
      "start {mons} (systemctl start ceph-mon@<id>); ceph mon stat"),
    c("MON_CLOCK_SKEW", Cluster, Slows,
      "the monitors' clocks disagree: leases and cephx tickets may fail, which stalls connections and I/O",
      "sync the monitor hosts' clocks (chronyc tracking; timedatectl)"),
    c("MON_MSGR2_NOT_ENABLED", Cluster, Info,
      "monitors do not listen on the v2 protocol",
      "ceph mon enable-msgr2"),
    c("MON_DISK_LOW", Cluster, Slows,
      "a monitor's disk is low; when it is critical the monitor stops, and with the majority gone every backend stops",
      "free space under the monitor's data directory on {mons}"),
    c("MON_DISK_CRIT", Cluster, Slows,
      "a monitor's disk is critically low: it will stop soon",
      "free space under the monitor's data directory on {mons} now"),
    c("MON_DISK_BIG", Cluster, Info,
      "a monitor's store is very large: slow monitor restarts",
      "ceph tell mon.<id> compact"),
    c("MON_LOCATION_NOT_SET", Cluster, Info,
      "a monitor has no location in a stretch cluster",
      "ceph mon set_location <mon> datacenter=<site>"),
    c("AUTH_BAD_CAPS", Cluster, Slows,
      "a client or daemon has caps the monitors cannot parse: it may be refused",
      "ceph auth ls; correct the caps of the entity named (ceph auth caps ...)"),
    c("AUTH_INSECURE_GLOBAL_ID_RECLAIM", Cluster, Info,
      "clients that do not reclaim their global_id securely are connected (old librados)",
      "upgrade those clients; then ceph config set mon auth_allow_insecure_global_id_reclaim false"),
    c("AUTH_INSECURE_GLOBAL_ID_RECLAIM_ALLOWED", Cluster, Info,
      "the monitors allow insecure global_id reclaim",
      "once all clients are current: ceph config set mon auth_allow_insecure_global_id_reclaim false"),
    c("DAEMON_OLD_VERSION", Cluster, Info,
      "daemons run different releases (an upgrade in progress)",
      "finish the upgrade (ceph versions)"),
    // The manager and its modules.
    c("MGR_DOWN", Cluster, Slows,
      "no manager is active: pool usage figures stop (capacity shows unknown, placement cannot check free space) and health from PG stats goes stale; I/O is unaffected",
      "start a ceph-mgr (systemctl start ceph-mgr@<id>)"),
    c("MGR_MODULE_DEPENDENCY", Cluster, Info,
      "a manager module cannot run: a dependency is missing",
      "ceph mgr module ls; install what the detail names"),
    c("MGR_MODULE_ERROR", Cluster, Info,
      "a manager module failed (for rbd_support: scheduled trash purges and mgr flatten tasks stop)",
      "ceph health detail names the module; ceph mgr fail to restart the manager"),
    c("MGR_INSIGHTS_WARNING", Cluster, Info,
      "the insights module reports a warning",
      "ceph insights"),
    c("MGR_INFLUX_DB_LIST_FAILED", Cluster, Info,
      "the influx module cannot list databases: metrics stop",
      "check the module's influx settings"),
    c("MGR_INFLUX_NO_SERVER", Cluster, Info,
      "the influx module has no server configured",
      "ceph config set mgr mgr/influx/hostname <host>, or disable the module"),
    c("MGR_INFLUX_QUEUE_FULL", Cluster, Info,
      "the influx module drops metrics",
      "check the influx server"),
    c("MGR_INFLUX_SEND_FAILED", Cluster, Info,
      "the influx module cannot send metrics",
      "check the influx server"),
    c("MGR_ZABBIX_NO_SERVER", Cluster, Info,
      "the zabbix module has no server configured",
      "configure it or disable the module"),
    c("MGR_ZABBIX_SEND_FAILED", Cluster, Info,
      "the zabbix module cannot send metrics",
      "check the zabbix server"),
    c("ALERTS_SMTP_ERROR", Cluster, Info,
      "the alerts module cannot send mail: nobody else is told about health changes",
      "check mgr/alerts/smtp_* settings"),
    c("TELEMETRY_CHANGED", Cluster, Info,
      "telemetry content changed and needs consent again",
      "ceph telemetry on --license sharing-1-0 (or off)"),
];

/// The table's entry for `code`, with the patterns the table states for codes Ceph builds at
/// run time: `OSD_<crush type>_DOWN` reads as `OSD_HOST_DOWN`.
pub fn lookup(code: &str) -> Option<&'static CodeInfo> {
    CODES.iter().find(|c| c.code == code).or_else(|| {
        (code.starts_with("OSD_") && code.ends_with("_DOWN"))
            .then(|| CODES.iter().find(|c| c.code == "OSD_HOST_DOWN"))
            .flatten()
    })
}

/// CephFS's own checks: no bearing on volumes.
pub fn is_cephfs(code: &str) -> bool {
    code.starts_with("MDS_") || code.starts_with("FS_") || code == "MULTIMDS_WITH_OLDSNAPS"
}

/// How bad a check is for volumes, in the doctor's words, with when it applies.
pub fn severity_text(c: &CodeInfo) -> String {
    if c.code == "OSDMAP_FLAGS" {
        return "FAIL when pause, pausewr or full is set; else info".into();
    }
    let sev = match c.impact {
        Blocks => "FAIL",
        Slows => "WARN",
        Info => "info",
    };
    let scope = match (c.area, c.impact) {
        (_, Info) | (Cluster, _) => "",
        (Pool, _) => " when it names the backend's pool; else info",
        (Pg, _) => " when its PGs are in the backend's pool; else info",
    };
    format!("{sev}{scope}")
}

/// The README's table: code, ember's severity, what it means for volumes, the fix.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| Code | Severity for volumes | What it means for volumes | Fix |\n|---|---|---|---|\n",
    );
    for c in CODES {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            c.code,
            severity_text(c),
            c.means.replace('|', "\\|"),
            c.fix.replace('|', "\\|")
        ));
    }
    out
}
